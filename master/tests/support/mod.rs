//! What the router tests of a fleet with `[auth]` share: a token per role, the fleet, and
//! a router over it with no services behind (nothing listens on port 1).

use axum::Router;
use jobfleet_common::auth::{token_hash_hex, Role};
use jobfleet_common::config::Config;
use jobfleet_master::http::router;
use jobfleet_master::state::AppState;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A token per role; the file holds their hashes only.
pub const TOKENS: [(Role, &str); 3] = [
    (Role::Read, "jf_read_token"),
    (Role::Submit, "jf_submit_token"),
    (Role::Admin, "jf_admin_token"),
];

/// A fleet with [`TOKENS`] (token `<role>-user` of each role) and the group `etl`; `auth`
/// goes into the `[auth]` table, `tables` after everything.
pub fn auth_fleet(auth: &str, tables: &str) -> Config {
    let entries: Vec<String> = TOKENS
        .iter()
        .map(|(role, token)| {
            format!(
                r#"{{ name = "{role}-user", role = "{role}", sha256 = "{}" }}"#,
                token_hash_hex(token)
            )
        })
        .collect();
    let toml = format!(
        "amqp_url = \"amqp://127.0.0.1:1\"\nredis_url = \"redis://127.0.0.1:1\"\n\
         [auth]\n{auth}tokens = [{}]\n[groups.etl.functions.echo]\n{tables}",
        entries.join(", ")
    );
    Config::from_toml(&toml).expect("valid config")
}

/// The router over `config`, connecting nothing.
pub fn app_of(config: Config) -> Router {
    router(Arc::new(
        AppState::new(config, CancellationToken::new()).expect("state without connecting"),
    ))
}
