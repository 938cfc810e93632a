//! The rule that keeps an unauthenticated master off the network (SPEC §8): without an
//! `[auth]` table it serves only on loopback; `[auth] disabled = true` lifts the rule.

use crate::error::MasterError;
use jobfleet_common::config::Config;
use std::net::{SocketAddr, ToSocketAddrs};

/// Refuses `config.listen` when it would serve without tokens on a non-loopback address.
/// An address that does not resolve is left for the bind to report.
pub fn check(config: &Config) -> Result<(), MasterError> {
    if config.auth.is_some() {
        return Ok(());
    }
    let Ok(addresses) = config.listen.to_socket_addrs() else {
        return Ok(());
    };
    let addresses: Vec<SocketAddr> = addresses.collect();
    if addresses.iter().all(|a| a.ip().is_loopback()) {
        return Ok(());
    }
    Err(MasterError::Exposed(format!(
        "refusing to serve without tokens on {} (not a loopback address): add an [auth] table \
         with tokens (`jobfleet token new`), or set [auth] disabled = true for a trusted network",
        config.listen
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, auth: &str) -> Config {
        let mut config = Config::from_toml(auth).unwrap();
        config.listen = listen.into();
        config
    }

    #[test]
    fn without_auth_only_loopback_is_served() {
        for listen in ["127.0.0.1:8080", "[::1]:8080", "localhost:8080", "127.0.0.2:0"] {
            assert!(check(&config(listen, "")).is_ok(), "{listen}");
        }
        for listen in ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:8080"] {
            assert!(check(&config(listen, "")).is_err(), "{listen}");
        }
        assert!(check(&config("0.0.0.0:8080", "[auth]\ndisabled = true\n")).is_ok());
        let token = jobfleet_common::auth::token_hash_hex("t");
        let with_tokens =
            format!("[auth]\ntokens = [{{ name = \"a\", role = \"read\", sha256 = \"{token}\" }}]\n");
        assert!(check(&config("0.0.0.0:8080", &with_tokens)).is_ok());
    }
}
