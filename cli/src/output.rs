//! Text output of the CLI: aligned tables, job records, times and durations, and the
//! writer that stdout goes through (a closed pipe ends the command quietly).

use crate::error::CliError;
use jobfleet_api::JobView;
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// Writes `text` and a newline to stdout and flushes, so pipes see each line at once.
pub fn line(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Writes a JSON document to stdout, pretty when `pretty`, else on one line.
pub fn json(value: &Value, pretty: bool) -> Result<(), CliError> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    line(&text.unwrap_or_else(|_| "null".into()))
}

/// One-line JSON text of a value.
pub fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// A value cut to `max` characters with an ellipsis, for table cells.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A table with a header row, columns padded to their widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, without a trailing newline; the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(columns).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let render_row = |cells: &[String]| {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                if i + 1 == columns {
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
                }
            }
            text.trim_end().to_string()
        };
        let mut lines = vec![render_row(&self.header)];
        lines.extend(self.rows.iter().map(|row| render_row(row)));
        lines.join("\n")
    }
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS` (UTC), or the text unchanged if it is not one.
pub fn short_time(rfc3339: &str) -> String {
    match rfc3339.get(..19) {
        Some(prefix) if rfc3339.as_bytes().get(10) == Some(&b'T') => prefix.replacen('T', " ", 1),
        _ => rfc3339.to_string(),
    }
}

/// How long ago an RFC 3339 time was, e.g. `3s ago`.
pub fn ago(rfc3339: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z')) else {
        return rfc3339.to_string();
    };
    match SystemTime::now().duration_since(then) {
        Ok(elapsed) => format!("{} ago", human_duration(elapsed)),
        Err(_) => "just now".into(),
    }
}

/// A duration in its largest sensible unit: `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", d.as_secs_f64()),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1_000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// A job's outcome in a few words: its result, its error, or nothing yet.
pub fn outcome(record: &JobView) -> String {
    match (&record.result, &record.error) {
        (_, Some(error)) => format!("{}: {}", error.kind, error.message),
        (Some(result), None) => compact(result),
        (None, None) => String::new(),
    }
}

/// A job record as aligned `field  value` lines.
pub fn job_details(record: &JobView) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("id", record.id.clone()),
        ("group", record.group.clone()),
        ("function", record.function.clone()),
        ("status", record.status.clone()),
        ("attempts", record.attempts.to_string()),
    ];
    let mut optional = |name, value: Option<String>| {
        if let Some(value) = value {
            rows.push((name, value));
        }
    };
    optional("worker", record.worker.clone());
    optional("submitted", Some(short_time(&record.submitted_at)));
    optional("started", record.started_at.as_deref().map(short_time));
    optional("finished", record.finished_at.as_deref().map(short_time));
    optional(
        "duration",
        record
            .duration_ms
            .map(|ms| human_duration(Duration::from_millis(ms))),
    );
    rows.push(("args", compact(&record.args)));
    if let Some(result) = &record.result {
        rows.push(("result", compact(result)));
    }
    if let Some(error) = &record.error {
        rows.push(("error", format!("{}: {}", error.kind, error.message)));
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(name, value)| format!("{name:<width$}  {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["ID", "STATUS", "RESULT"]);
        table.row(vec!["a".into(), "finished".into(), "1".into()]);
        table.row(vec!["bbbb".into(), "failed".into()]);
        assert_eq!(
            table.render(),
            "ID    STATUS    RESULT\na     finished  1\nbbbb  failed"
        );
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B");
    }

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(short_time("2025-01-02T03:04:05.678Z"), "2025-01-02 03:04:05");
        assert_eq!(short_time("soon"), "soon");
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(human_duration(Duration::from_secs(7_800)), "2h10m");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert!(ago("2000-01-01T00:00:00.000Z").ends_with(" ago"));
    }
}
