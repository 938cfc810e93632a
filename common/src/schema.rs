//! The JSON Schemas of function args, compiled once from the configuration; the master
//! checks args at submit and workers check them again (producers may publish straight to
//! AMQP).

use crate::config::{Config, ConfigError};
use serde_json::Value;
use std::collections::HashMap;

/// Compiled args schemas by (group, function).
#[derive(Default)]
pub struct ArgSchemas {
    validators: HashMap<(String, String), jsonschema::Validator>,
}

impl std::fmt::Debug for ArgSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgSchemas")
            .field("functions", &self.validators.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ArgSchemas {
    /// Compiles every configured schema; an invalid one is a configuration error.
    pub fn compile(config: &Config) -> Result<ArgSchemas, ConfigError> {
        let mut validators = HashMap::new();
        for (group, group_config) in &config.groups {
            for (name, function) in &group_config.functions {
                if let Some(schema) = &function.schema {
                    let validator =
                        jsonschema::validator_for(schema).map_err(|source| ConfigError::Schema {
                            function: format!("{group}.{name}"),
                            source: Box::new(source),
                        })?;
                    validators.insert((group.clone(), name.clone()), validator);
                }
            }
        }
        Ok(ArgSchemas { validators })
    }

    /// Checks `args` of `group.function` against its schema (if it has one); the error
    /// names up to five violations.
    pub fn check(&self, group: &str, function: &str, args: &Value) -> Result<(), String> {
        let Some(validator) = self.validators.get(&(group.to_string(), function.to_string())) else {
            return Ok(());
        };
        let problems: Vec<String> = validator
            .iter_errors(args)
            .take(5)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "args do not match the schema of {group}.{function}: {}",
                problems.join("; ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_are_checked_against_the_configured_schema() {
        let config = Config::from_toml("[groups.g.functions.wc]\nschema = { type = \"object\", required = [\"text\"] }\n[groups.g.functions.free]").unwrap();
        let schemas = ArgSchemas::compile(&config).unwrap();
        assert!(schemas.check("g", "wc", &json!({"text": "a"})).is_ok());
        let err = schemas.check("g", "wc", &json!({"txt": "a"})).unwrap_err();
        assert!(err.contains("text"), "{err}");
        assert!(schemas.check("g", "free", &json!(5)).is_ok());
    }

    #[test]
    fn an_invalid_schema_is_a_config_error_that_keeps_the_validator_error() {
        use std::error::Error;
        let broken = Config::from_toml("[groups.g.functions.wc]\nschema = { type = 5 }").unwrap();
        let err = ArgSchemas::compile(&broken).unwrap_err();
        let source = err.source().expect("the validator's error is kept");
        assert_eq!(
            err.to_string(),
            format!("invalid config: function g.wc: invalid JSON Schema: {source}")
        );
    }
}
