//! `jobfleet token new` (offline) and `jobfleet audit`.

use super::Context;
use crate::error::CliError;
use crate::output::{self, Table};
use jobfleet_api::AuditPage;
use jobfleet_common::auth::{config_line, mint_token, token_hash_hex, Role};
use serde_json::json;

/// Mints a token and prints it with the `[auth]` entry that accepts it. The token is shown
/// this once: the fleet file keeps only its hash.
pub fn new_token(context: &Context, name: &str, role: Role) -> Result<(), CliError> {
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(CliError::Usage(format!(
            "--name {name:?}: use 1..64 printable characters"
        )));
    }
    let token = mint_token().map_err(|e| CliError::Usage(format!("no random numbers from the OS: {e}")))?;
    let entry = config_line(name, role, &token);
    if context.json {
        let document = json!({
            "name": name, "role": role.as_str(), "token": token,
            "sha256": token_hash_hex(&token), "config_line": entry,
        });
        return output::json(&document, true);
    }
    output::line(&format!(
        "token:  {token}\n\
         Give it to {name:?} (JOBFLEET_TOKEN or --token); it is not shown again.\n\
         Add this entry to `tokens` in the [auth] table of the fleet file, then restart the masters:\n\
         {entry}"
    ))
}

/// Prints the newest audit entries.
pub async fn audit(context: &Context, limit: u32) -> Result<(), CliError> {
    let raw = context.client.audit(limit).await?;
    context.print(&raw, "audit trail", |page: &AuditPage| {
        let mut table = Table::new(&["AT", "WHO", "ROLE", "ACTION", "TARGET", "STATUS"]);
        for entry in &page.entries {
            let status = entry.status.to_string();
            let cells = [
                &entry.at,
                &entry.who,
                &entry.role,
                &entry.action,
                &entry.target,
                &status,
            ];
            table.row(cells.iter().map(|c| c.to_string()).collect());
        }
        table.render()
    })?;
    Ok(())
}
