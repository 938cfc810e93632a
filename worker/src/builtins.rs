//! The built-in functions of SPEC §6, for demos and tests: echo, sleep, fail, wordcount, crash.

use crate::function::{handler, Function, FunctionRegistry};
use jobfleet_common::message::JobError;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Args of `sleep`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long to sleep.
    pub ms: u64,
}

/// Args of `fail`.
#[derive(Debug, Deserialize, Default)]
pub struct FailArgs {
    /// The error message to fail with.
    #[serde(default)]
    pub message: Option<String>,
}

/// Args of `wordcount`.
#[derive(Debug, Deserialize)]
pub struct WordcountArgs {
    /// The text whose words are counted.
    pub text: String,
}

/// Counts whitespace-separated words, lowercased, with surrounding punctuation trimmed.
pub fn wordcount(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        if !word.is_empty() {
            *counts.entry(word).or_insert(0) += 1;
        }
    }
    counts
}

/// Registers the built-ins.
pub fn register(registry: &mut FunctionRegistry) {
    let plain = |h| Function {
        handler: h,
        timeout: None,
    };
    registry.insert(
        "echo",
        plain(handler(|args: Value| async move { Ok::<_, JobError>(args) })),
    );
    registry.insert(
        "sleep",
        plain(handler(|args: SleepArgs| async move {
            tokio::time::sleep(Duration::from_millis(args.ms)).await;
            Ok::<_, JobError>(serde_json::json!({"slept_ms": args.ms}))
        })),
    );
    registry.insert(
        "fail",
        plain(handler(|args: Option<FailArgs>| async move {
            let message = args
                .and_then(|a| a.message)
                .unwrap_or_else(|| "failed on request".to_string());
            Err::<Value, _>(JobError::function(message))
        })),
    );
    registry.insert(
        "wordcount",
        plain(handler(|args: WordcountArgs| async move {
            Ok::<_, JobError>(wordcount(&args.text))
        })),
    );
    registry.insert(
        "crash",
        plain(handler(|_: Value| async move {
            if true {
                panic!("crash requested");
            }
            Ok::<Value, JobError>(Value::Null)
        })),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wordcount_counts_words_case_and_punctuation_blind() {
        let counts = wordcount("The cat, the HAT. the -- end");
        assert_eq!(counts.get("the"), Some(&3));
        assert_eq!(counts.get("cat"), Some(&1));
        assert_eq!(counts.get("end"), Some(&1));
        assert_eq!(counts.len(), 4);
        assert!(wordcount("  ").is_empty());
    }
}
