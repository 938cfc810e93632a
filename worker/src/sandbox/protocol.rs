//! The line protocol of `shared` process sandboxes (SPEC §6, §10): what one stdout line is.
//! An answer `{"result": ...}` or `{"error": ...}` (optionally naming the request's `"id"`),
//! a progress report `{"progress": n, "message"?: "..."}`, or a break of the protocol.

use crate::function::HandlerResult;
use jobfleet_common::message::JobError;
use serde_json::{Map, Value};

/// How much of an offending line an error message quotes, characters.
const EXCERPT_CHARS: usize = 200;

/// What one stdout line of a shared process is.
#[derive(Debug)]
pub(super) enum Line {
    /// A progress report, allowed before the answer.
    Progress {
        /// How far, as reported (0 to 100 by the protocol; clamped when recorded).
        percent: f64,
        /// What the job is doing, if it said.
        message: Option<String>,
    },
    /// An answer: the request id it names, if any, and the job's outcome.
    Answer {
        /// The `"id"` of the answer line.
        id: Option<Value>,
        /// The result, or the job's own error (`function_error`).
        outcome: HandlerResult,
    },
    /// Not part of the protocol: why.
    Broken(String),
}

/// Reads one line (with or without its newline).
pub(super) fn classify(line: &[u8]) -> Line {
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(_) => return Line::Broken(format!("a line that is not JSON: {}", excerpt(line))),
    };
    let Some(object) = value.as_object() else {
        return Line::Broken(format!("a JSON line that is not an object: {}", excerpt(line)));
    };
    if object.contains_key("result") || object.contains_key("error") {
        return Line::Answer {
            id: object.get("id").cloned(),
            outcome: outcome(object),
        };
    }
    if is_progress(object) {
        return Line::Progress {
            percent: object["progress"].as_f64().unwrap_or(0.0),
            message: object.get("message").and_then(Value::as_str).map(String::from),
        };
    }
    Line::Broken(format!(
        "a JSON line that is neither an answer nor a progress report: {}",
        excerpt(line)
    ))
}

/// `{"progress": number, "message"?: string}` and no other key (SPEC §10).
fn is_progress(object: &Map<String, Value>) -> bool {
    object.get("progress").is_some_and(Value::is_number)
        && matches!(object.get("message"), None | Some(Value::String(_)))
        && object.keys().all(|key| key == "progress" || key == "message")
}

/// The outcome an answer carries: a non-null `error` wins over `result`.
fn outcome(answer: &Map<String, Value>) -> HandlerResult {
    match (answer.get("result"), answer.get("error")) {
        (_, Some(error)) if !error.is_null() => {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| error.as_str())
                .map(String::from)
                .unwrap_or_else(|| error.to_string());
            Err(JobError::function(message))
        }
        (result, _) => Ok(result.cloned().unwrap_or(Value::Null)),
    }
}

/// The start of some output, as text for an error message.
pub(super) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::message::ErrorKind;
    use serde_json::json;

    fn answer(line: &str) -> (Option<Value>, HandlerResult) {
        match classify(line.as_bytes()) {
            Line::Answer { id, outcome } => (id, outcome),
            other => panic!("not an answer: {other:?}"),
        }
    }

    fn broken(line: &str) -> String {
        match classify(line.as_bytes()) {
            Line::Broken(reason) => reason,
            other => panic!("not broken: {other:?}"),
        }
    }

    #[test]
    fn answers_are_read_as_results_or_errors() {
        assert_eq!(answer("{\"result\": [1, 2]}\n").1.unwrap(), json!([1, 2]));
        assert_eq!(answer("{\"result\": null}").1.unwrap(), Value::Null);
        let err = answer("{\"error\": {\"message\": \"bad\"}}").1.unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::FunctionError, "bad")
        );
        assert_eq!(answer("{\"error\": \"plain\"}").1.unwrap_err().message, "plain");
        assert_eq!(answer("{\"error\": null, \"result\": 3}").1.unwrap(), json!(3));
        let (id, outcome) = answer("{\"id\": \"j1\", \"result\": 1}");
        assert_eq!((id, outcome.unwrap()), (Some(json!("j1")), json!(1)));
    }

    #[test]
    fn progress_lines_are_not_answers() {
        for line in ["{\"progress\": 50, \"message\": \"half\"}", "{\"progress\": 0.5}"] {
            assert!(
                matches!(classify(line.as_bytes()), Line::Progress { .. }),
                "{line}"
            );
        }
        // Only those keys, of those types.
        assert!(broken("{\"progress\": 5, \"eta\": 3}").contains("neither"));
        assert!(broken("{\"progress\": \"5\"}").contains("neither"));
        assert!(broken("{\"progress\": 5, \"message\": 1}").contains("neither"));
    }

    #[test]
    fn anything_else_breaks_the_protocol() {
        assert!(broken("starting up...").contains("not JSON: \"starting up...\""));
        assert!(broken("{}").contains("neither"));
        assert!(broken("{\"status\": \"ready\"}").contains("neither"));
        assert!(broken("42").contains("not an object"));
        assert!(broken("[{\"result\": 1}]").contains("not an object"));
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(b"  hello \n"), "\"hello\"");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), EXCERPT_CHARS + 3);
    }
}
