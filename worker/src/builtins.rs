//! The built-in functions of SPEC §6, for demos and tests: echo, sleep, fail, wordcount, crash;
//! and `chatty`, which logs lines through its [`JobContext`] (SPEC §10; the benchmark's logs
//! row).

use crate::activity::JobContext;
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

/// Most lines one `chatty` job may ask for.
pub const CHATTY_MAX_LINES: u32 = 10_000;

/// Args of `chatty`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChattyArgs {
    /// How many lines to log, up to [`CHATTY_MAX_LINES`]; none when absent.
    #[serde(default)]
    pub lines: u32,
}

/// `chatty`: logs `lines` lines through `context`, answers `{"logged": lines}`.
pub fn chatty(args: ChattyArgs, context: &JobContext) -> Result<Value, JobError> {
    if args.lines > CHATTY_MAX_LINES {
        return Err(JobError::invalid_args(format!(
            "lines: {} is over {CHATTY_MAX_LINES}",
            args.lines
        )));
    }
    for line in chatty_lines(args.lines) {
        context.log(&line);
    }
    Ok(serde_json::json!({"logged": args.lines}))
}

/// The lines `chatty` logs: `line 1 of n` … `line n of n`.
fn chatty_lines(lines: u32) -> impl Iterator<Item = String> {
    (1..=lines).map(move |i| format!("line {i} of {lines}"))
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
        "chatty",
        plain(handler(|args: ChattyArgs| async move {
            chatty(args, &JobContext::current())
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

    #[test]
    fn chatty_logs_numbered_lines_and_refuses_too_many() {
        let lines: Vec<String> = chatty_lines(3).collect();
        assert_eq!(lines, ["line 1 of 3", "line 2 of 3", "line 3 of 3"]);
        assert_eq!(chatty_lines(0).count(), 0);
        let context = JobContext::default();
        let logged = chatty(ChattyArgs { lines: 10 }, &context).unwrap();
        assert_eq!(logged, serde_json::json!({"logged": 10}));
        let refused = chatty(
            ChattyArgs {
                lines: CHATTY_MAX_LINES + 1,
            },
            &context,
        )
        .unwrap_err();
        assert_eq!(refused.kind, jobfleet_common::message::ErrorKind::InvalidArgs);
    }

    #[tokio::test]
    async fn chatty_is_registered_and_takes_no_lines_by_default() {
        let mut registry = FunctionRegistry::default();
        register(&mut registry);
        let chatty = registry.get("chatty").expect("chatty is a built-in");
        let answer = (chatty.handler)(serde_json::json!({})).await.unwrap();
        assert_eq!(answer, serde_json::json!({"logged": 0}));
        let unknown = (chatty.handler)(serde_json::json!({"line": 1}))
            .await
            .unwrap_err();
        assert_eq!(unknown.kind, jobfleet_common::message::ErrorKind::InvalidArgs);
    }
}
