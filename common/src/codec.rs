//! Encoding and decoding of the wire messages: MessagePack maps with named fields
//! (rmp-serde), JSON accepted on input by content type.

use crate::message::{
    is_valid_job_id, is_valid_name, JobMessage, Membership, ResultMessage, MAX_DELAY_MS, MAX_PRIORITY,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The content type of every message jobfleet publishes.
pub const MSGPACK: &str = "application/msgpack";
/// The JSON content type, accepted on input.
pub const JSON: &str = "application/json";

/// Why a message could not be decoded. Carries the job id (and function) when they could
/// still be read, so the job can be recorded as failed with `bad_message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    /// What is wrong with the message, for the `x-jobfleet-reason` header.
    pub reason: String,
    /// The job id, when the body holds a valid one.
    pub id: Option<String>,
    /// The function, when the body holds a usable name.
    pub function: Option<String>,
}

impl DecodeError {
    fn new(reason: String, id: Option<String>) -> Self {
        DecodeError {
            reason,
            id,
            function: None,
        }
    }
}

/// The body format named by a message's `content_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// MessagePack (the default when no content type is set).
    MsgPack,
    /// JSON.
    Json,
}

impl Format {
    /// The format of a content type; `None` means MessagePack, parameters such as
    /// `; charset=utf-8` are ignored.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Format, String> {
        let Some(content_type) = content_type else {
            return Ok(Format::MsgPack);
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" | MSGPACK | "application/x-msgpack" | "application/vnd.msgpack" => Ok(Format::MsgPack),
            JSON => Ok(Format::Json),
            other => Err(format!("unsupported content type {other:?}")),
        }
    }
}

/// Encodes any message as a MessagePack map with named fields.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing our own types (strings, integers, JSON values) into a Vec cannot fail.
    rmp_serde::to_vec_named(message).expect("message types always encode")
}

fn decode_as<T: DeserializeOwned>(format: Format, body: &[u8]) -> Result<T, String> {
    match format {
        Format::MsgPack => rmp_serde::from_slice(body).map_err(|e| format!("undecodable msgpack body: {e}")),
        Format::Json => serde_json::from_slice(body).map_err(|e| format!("undecodable json body: {e}")),
    }
}

/// The fields of a job message as they arrive, before the required ones are checked.
#[derive(Deserialize)]
struct WireJob {
    id: Option<String>,
    group: Option<String>,
    function: Option<String>,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    submitted_at: Option<i64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    run_at: Option<i64>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    priority: Option<u64>,
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    batch: Option<String>,
}

/// A field read leniently: a string, or anything else (ignored).
#[derive(Deserialize)]
#[serde(untagged)]
enum Loose {
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl Loose {
    fn text(self) -> Option<String> {
        match self {
            Loose::Text(text) => Some(text),
            Loose::Other(_) => None,
        }
    }
}

/// The id and function, read from a body that failed to decode as a whole.
#[derive(Deserialize)]
struct Readable {
    #[serde(default)]
    id: Option<Loose>,
    #[serde(default)]
    function: Option<Loose>,
}

/// Decodes a job message body. `routing_key`, when given, must equal the job's group.
pub fn decode_job(
    content_type: Option<&str>,
    body: &[u8],
    routing_key: Option<&str>,
) -> Result<JobMessage, DecodeError> {
    let format = Format::from_content_type(content_type).map_err(|reason| DecodeError::new(reason, None))?;
    let wire: WireJob = match decode_as(format, body) {
        Ok(wire) => wire,
        Err(reason) => {
            let readable = decode_as::<Readable>(format, body).ok();
            let (id, function) = readable
                .map(|r| (r.id.and_then(Loose::text), r.function.and_then(Loose::text)))
                .unwrap_or_default();
            return Err(DecodeError {
                reason,
                id: id.filter(|id| is_valid_job_id(id)),
                function: function.filter(|f| is_valid_name(f)),
            });
        }
    };
    let function = wire.function.clone().filter(|f| is_valid_name(f));
    let fail = |reason: String, id: Option<String>| {
        Err(DecodeError {
            reason,
            id,
            function: function.clone(),
        })
    };
    let id = match wire.id {
        Some(id) if is_valid_job_id(&id) => id,
        Some(id) => {
            return fail(
                format!("invalid id {:?}: 1..128 chars of [A-Za-z0-9._:-]", truncate(&id)),
                None,
            )
        }
        None => return fail("missing field `id`".into(), None),
    };
    let Some(group) = wire.group else {
        return fail("missing field `group`".into(), Some(id));
    };
    let Some(function) = wire.function else {
        return fail("missing field `function`".into(), Some(id));
    };
    if let Some(routing_key) = routing_key {
        if routing_key != group {
            return fail(
                format!("group {group:?} differs from the routing key {routing_key:?}"),
                Some(id),
            );
        }
    }
    if !is_valid_name(&function) {
        return fail(
            format!(
                "invalid function name {:?}: 1..64 chars of [A-Za-z0-9_-]",
                truncate(&function)
            ),
            Some(id),
        );
    }
    let now = crate::now_ms();
    if let Err(reason) = check_plausible(&wire.args, wire.submitted_at, now) {
        return fail(reason, Some(id));
    }
    if let Err(reason) = check_delay(wire.run_at, wire.delay_ms, now) {
        return fail(reason, Some(id));
    }
    let priority = match wire.priority {
        Some(p) if p > u64::from(MAX_PRIORITY) => {
            return fail(format!("priority {p} is not in 0..={MAX_PRIORITY}"), Some(id))
        }
        p => p.map(|p| p as u8),
    };
    let member = Membership {
        workflow: wire.workflow,
        step: wire.step,
        batch: wire.batch,
    };
    if let Err(reason) = member.check() {
        return fail(reason, Some(id));
    }
    Ok(JobMessage {
        id,
        group,
        function,
        args: wire.args,
        submitted_at: wire.submitted_at,
        timeout_ms: wire.timeout_ms,
        run_at: wire.run_at,
        delay_ms: wire.delay_ms,
        priority,
        member,
    })
}

/// Checks a delayed job's `run_at` and `delay_ms` against [`MAX_DELAY_MS`] (a `run_at`
/// in the past is fine: the job runs now).
fn check_delay(run_at: Option<i64>, delay_ms: Option<u64>, now_ms: i64) -> Result<(), String> {
    if delay_ms.is_some_and(|delay| delay > MAX_DELAY_MS) {
        return Err(format!(
            "delay_ms {} is beyond the maximum of {MAX_DELAY_MS} ms (30 days)",
            delay_ms.unwrap_or_default()
        ));
    }
    let latest = now_ms.saturating_add(MAX_DELAY_MS as i64 + MAX_CLOCK_SKEW_MS);
    match run_at {
        Some(at) if at > latest => Err(format!(
            "run_at {at} is more than the maximum delay of 30 days ahead"
        )),
        _ => Ok(()),
    }
}

/// How deep `args` may nest: the API reads stored records back with serde_json, whose
/// recursion limit is 128, so anything deeper could be stored but never shown.
pub const MAX_ARGS_DEPTH: usize = 64;
/// How far ahead of this machine's clock a producer's `submitted_at` may be (clock skew).
pub const MAX_CLOCK_SKEW_MS: i64 = 24 * 3600 * 1000;

/// Checks what a producer wrote that a stored record must be able to show: `args` nested
/// at most [`MAX_ARGS_DEPTH`] levels, `submitted_at` neither negative nor far in the future.
fn check_plausible(args: &Value, submitted_at: Option<i64>, now_ms: i64) -> Result<(), String> {
    if depth(args) > MAX_ARGS_DEPTH {
        return Err(format!("args nest deeper than {MAX_ARGS_DEPTH} levels"));
    }
    match submitted_at {
        Some(at) if at < 0 => Err(format!("submitted_at {at} is before 1970")),
        Some(at) if at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) => {
            Err(format!("submitted_at {at} is more than a day in the future"))
        }
        _ => Ok(()),
    }
}

/// The nesting depth of a JSON value (a scalar is 0, `[1]` is 1), without recursion.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// Decodes a result message body.
pub fn decode_result(content_type: Option<&str>, body: &[u8]) -> Result<ResultMessage, DecodeError> {
    let format = Format::from_content_type(content_type).map_err(|reason| DecodeError::new(reason, None))?;
    decode_as(format, body).map_err(|reason| DecodeError::new(reason, None))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ErrorKind, JobError, JobStatus};
    use serde_json::json;

    fn job() -> JobMessage {
        JobMessage::new("etl", "echo", json!({"a": [1, 2.5, "x", null, true]})).with_timeout_ms(500)
    }

    #[test]
    fn a_job_round_trips_through_msgpack_as_a_named_map() {
        let job = job();
        let body = encode(&job);
        // A map (fixmap marker 0x8X), not an array: foreign clients read fields by name.
        assert_eq!(body[0] & 0xf0, 0x80);
        assert_eq!(decode_job(Some(MSGPACK), &body, Some("etl")).unwrap(), job);
        assert_eq!(decode_job(None, &body, None).unwrap(), job);
    }

    #[test]
    fn json_bodies_are_accepted_and_unknown_fields_ignored() {
        let body = br#"{"id":"j1","group":"g","function":"f","args":{"n":1},"future_field":7}"#;
        let job = decode_job(Some("application/json; charset=utf-8"), body, Some("g")).unwrap();
        assert_eq!(job.id, "j1");
        assert_eq!(job.args, json!({"n": 1}));
        assert_eq!(job.submitted_at, None);
    }

    #[test]
    fn missing_args_decode_as_nil() {
        let body = encode(&json!({"id": "j2", "group": "g", "function": "f"}));
        assert_eq!(decode_job(None, &body, None).unwrap().args, Value::Null);
    }

    #[test]
    fn implausible_args_and_times_are_bad_messages_with_the_id() {
        let mut deep = json!(1);
        for _ in 0..=MAX_ARGS_DEPTH {
            deep = json!([deep]);
        }
        let body = |args: &Value, at: i64| {
            serde_json::to_vec(
                &json!({"id": "j1", "group": "g", "function": "f", "args": args, "submitted_at": at}),
            )
            .unwrap()
        };
        let now = crate::now_ms();
        let err = decode_job(Some(JSON), &body(&deep, now), None).unwrap_err();
        assert!(err.reason.contains("deeper"), "{}", err.reason);
        assert_eq!(err.id.as_deref(), Some("j1"));
        let far = now + 400 * 24 * 3600 * 1000;
        let err = decode_job(Some(JSON), &body(&json!({}), far), None).unwrap_err();
        assert!(err.reason.contains("future"), "{}", err.reason);
        assert!(decode_job(Some(JSON), &body(&json!({"a": [[1]]}), now), None).is_ok());
    }

    #[test]
    fn delays_are_read_and_checked_against_the_maximum() {
        let body = |extra: Value| {
            let mut job = json!({"id": "j1", "group": "g", "function": "f"});
            job.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            encode(&job)
        };
        let job = decode_job(None, &body(json!({"delay_ms": 1500})), None).unwrap();
        assert_eq!((job.delay_ms, job.run_at), (Some(1500), None));
        let job = decode_job(None, &body(json!({"run_at": 5})), None).unwrap();
        assert_eq!(
            job.run_at,
            Some(5),
            "a run_at in the past is fine: the job runs now"
        );
        let err = decode_job(None, &body(json!({"delay_ms": MAX_DELAY_MS + 1})), None).unwrap_err();
        assert!(err.reason.contains("maximum"), "{}", err.reason);
        assert_eq!(err.id.as_deref(), Some("j1"));
        let far = crate::now_ms() + 2 * MAX_DELAY_MS as i64;
        let err = decode_job(None, &body(json!({"run_at": far})), None).unwrap_err();
        assert!(err.reason.contains("maximum"), "{}", err.reason);
    }

    #[test]
    fn a_priority_is_read_and_one_past_the_maximum_is_a_bad_message() {
        let body = |priority: Value| {
            encode(&json!({"id": "j1", "group": "g", "function": "f", "priority": priority}))
        };
        assert_eq!(decode_job(None, &body(json!(9)), None).unwrap().priority, Some(9));
        let plain = encode(&json!({"id": "j1", "group": "g", "function": "f"}));
        assert_eq!(decode_job(None, &plain, None).unwrap().priority, None);
        for bad in [json!(10), json!(300), json!(-1), json!("high")] {
            let err = decode_job(None, &body(bad.clone()), None).unwrap_err();
            assert_eq!(err.id.as_deref(), Some("j1"), "{bad}");
        }
        let err = decode_job(None, &body(json!(10)), None).unwrap_err();
        assert!(err.reason.contains("priority 10"), "{}", err.reason);
        // A job without one sends none: old consumers see no new field.
        assert!(serde_json::to_value(JobMessage::new("g", "f", Value::Null))
            .unwrap()
            .get("priority")
            .is_none());
    }

    #[test]
    fn malformed_bodies_give_a_reason_and_the_id_when_readable() {
        let err = decode_job(None, b"\xc1garbage", None).unwrap_err();
        assert!(err.reason.contains("msgpack"), "{}", err.reason);
        assert_eq!(err.id, None);

        let missing_function = encode(&json!({"id": "j3", "group": "g"}));
        let err = decode_job(None, &missing_function, None).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("j3"));
        assert!(err.reason.contains("function"));

        let wrong_type = encode(&json!({"id": "j4", "group": 5, "function": "f"}));
        let err = decode_job(None, &wrong_type, None).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("j4"));
        assert_eq!(err.function.as_deref(), Some("f"));

        let bad_function = encode(&json!({"id": "j6", "group": "g", "function": "a.b"}));
        let err = decode_job(None, &bad_function, None).unwrap_err();
        assert_eq!((err.id.as_deref(), err.function), (Some("j6"), None));

        let bad_id = encode(&json!({"id": "no spaces", "group": "g", "function": "f"}));
        assert_eq!(decode_job(None, &bad_id, None).unwrap_err().id, None);

        let wrong_queue = encode(&json!({"id": "j5", "group": "g", "function": "f"}));
        let err = decode_job(None, &wrong_queue, Some("other")).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("j5"));

        let err = decode_job(Some("text/plain"), b"hello", None).unwrap_err();
        assert!(err.reason.contains("content type"));
    }

    #[test]
    fn a_result_round_trips() {
        let result = ResultMessage {
            id: "j".into(),
            group: "g".into(),
            function: "fail".into(),
            status: JobStatus::Failed,
            result: None,
            error: Some(JobError::new(ErrorKind::FunctionError, "boom")),
            attempts: 2,
            worker: "w1".into(),
            submitted_at: Some(1),
            started_at: Some(2),
            finished_at: 3,
            duration_ms: Some(1),
            member: Membership {
                workflow: Some("wf".into()),
                step: Some("s1".into()),
                batch: None,
            },
        };
        let decoded = decode_result(Some(MSGPACK), &encode(&result)).unwrap();
        assert_eq!(decoded, result);
        assert_eq!(result.routing_key(), "g.fail.failed");
    }
}
