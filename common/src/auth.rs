//! API tokens (SPEC §8): the `[auth]` table, roles, and checking a presented token.
//!
//! A token is only ever stored as the hex SHA-256 of its text. The master hashes what a
//! client presents and compares the digest with every configured one in constant time
//! (`subtle`), so neither the comparison's timing nor the config file gives a token away.
//! Tokens are long random strings (see [`mint_token`]), so a plain SHA-256 is enough: there
//! is nothing to brute-force that a slow password hash would protect.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// Longest token text accepted, bytes; anything longer is refused before hashing.
pub const MAX_TOKEN_BYTES: usize = 1024;
/// Prefix of minted tokens, so they are recognizable in a secret scanner.
pub const TOKEN_PREFIX: &str = "jf_";

/// What a token may do. Roles nest: `Read` ⊂ `Submit` ⊂ `Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every GET.
    Read,
    /// Read, plus submitting and cancelling jobs.
    Submit,
    /// Submit, plus deleting jobs and every group and fleet action.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Submit, Role::Admin];

    /// The role's name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
        }
    }

    /// Whether this role includes everything `needed` may do.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("unknown role {text:?}: use read, submit or admin"))
    }
}

/// One configured token: `{ name = "billing", role = "submit", sha256 = "<hex>" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds the token; shown in the audit trail, never secret.
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// Hex SHA-256 of the token's text.
    pub sha256: String,
}

/// The `[auth]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The accepted tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Serve `/metrics` without a token; default false (it needs `read`).
    #[serde(default)]
    pub open_metrics: bool,
    /// Serve without tokens on any address (only for a network that is itself trusted).
    #[serde(default)]
    pub disabled: bool,
}

/// Why an `[auth]` table is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// A token's `sha256` is not 64 hex digits.
    #[error("[auth] token {name:?}: sha256 must be 64 hex digits (see `jobfleet token new`)")]
    BadHash {
        /// The token's name.
        name: String,
    },
    /// A token's name is empty or not printable.
    #[error("[auth] token name {0:?}: use 1..64 printable characters")]
    BadName(String),
    /// Two entries carry one hash: one token would have two names.
    #[error("[auth] tokens {0:?} and {1:?} have the same sha256")]
    SameHash(String, String),
    /// Auth is on but no token is configured: nobody could use the API.
    #[error("[auth] has no tokens: add one (`jobfleet token new`) or set disabled = true")]
    NoTokens,
}

/// Who made a request: a configured token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// The configured tokens, ready for checking presented ones.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Principal)>,
}

impl TokenTable {
    /// The table of `config`'s tokens, after checking every entry.
    pub fn new(config: &AuthConfig) -> Result<TokenTable, AuthConfigError> {
        if config.tokens.is_empty() && !config.disabled {
            return Err(AuthConfigError::NoTokens);
        }
        let mut entries: Vec<([u8; 32], Principal)> = Vec::with_capacity(config.tokens.len());
        for token in &config.tokens {
            let name = &token.name;
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(AuthConfigError::BadName(name.clone()));
            }
            let hash =
                decode_hash(&token.sha256).ok_or_else(|| AuthConfigError::BadHash { name: name.clone() })?;
            if let Some((_, other)) = entries.iter().find(|(h, _)| *h == hash) {
                return Err(AuthConfigError::SameHash(other.name.clone(), name.clone()));
            }
            let principal = Principal {
                name: name.clone(),
                role: token.role,
            };
            entries.push((hash, principal));
        }
        Ok(TokenTable { entries })
    }

    /// The principal `token` belongs to, if any. Every entry is compared, in constant
    /// time, whether or not an earlier one matched.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let digest = hash_token(token);
        let mut found = None;
        for (hash, principal) in &self.entries {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(principal);
            }
        }
        found
    }

    /// Whether a configured token has `principal`'s name and role (a web UI session stands
    /// for a token only while the configuration still holds one like it).
    pub fn holds(&self, principal: &Principal) -> bool {
        self.entries.iter().any(|(_, entry)| entry == principal)
    }
}

/// The SHA-256 of a token's text.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The hex SHA-256 of a token's text, as the config file stores it.
pub fn token_hash_hex(token: &str) -> String {
    hex::encode(hash_token(token))
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut hash).ok()?;
    Some(hash)
}

/// A new random token: [`TOKEN_PREFIX`] and 256 bits from the OS's generator, in hex.
pub fn mint_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// The config line of a token entry (what `jobfleet token new` prints).
pub fn config_line(name: &str, role: Role, token: &str) -> String {
    format!(
        "{{ name = {}, role = \"{role}\", sha256 = \"{}\" }}",
        toml_string(name),
        token_hash_hex(token)
    )
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(tokens: &[(&str, Role, &str)]) -> TokenTable {
        let config = AuthConfig {
            tokens: tokens
                .iter()
                .map(|(name, role, token)| TokenEntry {
                    name: name.to_string(),
                    role: *role,
                    sha256: token_hash_hex(token),
                })
                .collect(),
            ..AuthConfig::default()
        };
        TokenTable::new(&config).unwrap()
    }

    #[test]
    fn a_configured_token_authenticates_as_its_name_and_role() {
        let table = table(&[("ops", Role::Admin, "secret-1"), ("ci", Role::Read, "secret-2")]);
        let ci = table.authenticate("secret-2").unwrap();
        assert_eq!((ci.name.as_str(), ci.role), ("ci", Role::Read));
        assert_eq!(table.authenticate("secret-1").unwrap().role, Role::Admin);
        for wrong in [
            "",
            "secret",
            "secret-3",
            "SECRET-1",
            &"x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(table.authenticate(wrong).is_none(), "{wrong:?}");
        }
    }

    #[test]
    fn roles_nest_read_submit_admin() {
        assert!(Role::Admin.allows(Role::Submit) && Role::Submit.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Submit) && !Role::Submit.allows(Role::Admin));
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        let entry = |name: &str, sha256: &str| TokenEntry {
            name: name.into(),
            role: Role::Read,
            sha256: sha256.into(),
        };
        let refuse = |tokens: Vec<TokenEntry>| {
            TokenTable::new(&AuthConfig {
                tokens,
                ..AuthConfig::default()
            })
            .unwrap_err()
        };
        let good = token_hash_hex("t");
        assert!(matches!(
            refuse(vec![entry("a", "abc")]),
            AuthConfigError::BadHash { .. }
        ));
        assert!(matches!(
            refuse(vec![entry("a", &"g".repeat(64))]),
            AuthConfigError::BadHash { .. }
        ));
        assert!(matches!(
            refuse(vec![entry("", &good)]),
            AuthConfigError::BadName(_)
        ));
        assert!(matches!(
            refuse(vec![entry("a", &good), entry("b", &good)]),
            AuthConfigError::SameHash(..)
        ));
        assert_eq!(refuse(vec![]), AuthConfigError::NoTokens);
    }

    #[test]
    fn a_minted_token_and_its_config_line_fit_together() {
        let token = mint_token().unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(token, mint_token().unwrap());
        let line = config_line("billing \"svc\"", Role::Submit, &token);
        let parsed: AuthConfig = toml::from_str(&format!("tokens = [{line}]")).unwrap();
        let table = TokenTable::new(&parsed).unwrap();
        assert_eq!(table.authenticate(&token).unwrap().name, "billing \"svc\"");
    }
}
