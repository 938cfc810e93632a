//! `jobfleet cancel --filter` and `jobfleet retry --filter`: the bulk actions, followed page
//! by page (each request acts on at most 1000 jobs and answers where to go on from).

use super::Context;
use crate::error::CliError;
use crate::output;
use jobfleet_api::{BulkFilter, BulkResult};
use serde_json::json;

/// Runs the bulk `action` (`cancel` or `retry`) over every job the `--filter` pairs match
/// and prints how many matched and changed (`--json`: `{matched, changed, ids}`).
pub async fn run(context: &Context, action: &str, pairs: &[Vec<(String, String)>]) -> Result<(), CliError> {
    let mut filter = filter_of(pairs);
    let mut total = BulkResult::default();
    loop {
        let raw = context.client.bulk(action, &filter).await?;
        let page: BulkResult = crate::client::decode(&raw, "bulk answer")?;
        total.matched += page.matched;
        total.changed += page.changed;
        total.ids.extend(page.ids);
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => break,
        }
    }
    if context.json {
        let value = json!({"matched": total.matched, "changed": total.changed, "ids": total.ids});
        return output::json(&value, true);
    }
    let done = if action == "cancel" { "canceled" } else { "retried" };
    output::line(&format!(
        "{done} {} of {} matching jobs",
        total.changed, total.matched
    ))?;
    for id in &total.ids {
        output::line(id)?;
    }
    Ok(())
}

/// The bulk filter of the `--filter` pairs (a later value of a key wins, ids add up).
fn filter_of(pairs: &[Vec<(String, String)>]) -> BulkFilter {
    let mut filter = BulkFilter::default();
    for (key, value) in pairs.iter().flatten() {
        let value = value.clone();
        match key.as_str() {
            "group" => filter.group = Some(value),
            "function" => filter.function = Some(value),
            "status" => filter.status = Some(value),
            _ => filter.ids.get_or_insert_with(Vec::new).push(value),
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_pairs_make_one_filter() {
        let pairs = vec![
            vec![("group".to_string(), "etl".to_string())],
            vec![
                ("id".to_string(), "a".to_string()),
                ("id".to_string(), "b".to_string()),
            ],
        ];
        let filter = filter_of(&pairs);
        assert_eq!(filter.group.as_deref(), Some("etl"));
        assert_eq!(filter.ids, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(filter.status, None);
    }
}
