//! Control messages on the fanout exchange `NS.control` (SPEC §3): the master broadcasts
//! them and every worker reads them from its own exclusive queue. Today: `cancel`.

use crate::client::ClientError;
use crate::codec::{self, DecodeError, Format, MSGPACK};
use crate::message::is_valid_job_id;
use crate::publish::confirmed;
use crate::topology::Topology;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};
use serde::{Deserialize, Serialize};

/// A control message: a MessagePack map with named fields, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// `{type: "cancel", id}`: stop the running job `id`; its outcome becomes `canceled`.
    Cancel {
        /// The job to stop.
        id: String,
    },
}

/// The control message types this version understands; others are ignored.
const KNOWN_TYPES: [&str; 1] = ["cancel"];

/// Just the tag, read first so that unknown types can be told from malformed messages.
#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: String,
}

/// Decodes a control message body: `Ok(None)` for a well-formed message of a type this
/// version does not know (newer masters may send more), an error for a malformed one.
pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Option<ControlMessage>, DecodeError> {
    let fail = |reason: String| DecodeError {
        reason,
        id: None,
        function: None,
    };
    let format = Format::from_content_type(content_type).map_err(fail)?;
    let tag: TypeOnly = match format {
        Format::MsgPack => rmp_serde::from_slice(body)
            .map_err(|e| fail(format!("undecodable msgpack control message: {e}")))?,
        Format::Json => serde_json::from_slice(body)
            .map_err(|e| fail(format!("undecodable json control message: {e}")))?,
    };
    if !KNOWN_TYPES.contains(&tag.kind.as_str()) {
        return Ok(None);
    }
    let message: ControlMessage = match format {
        Format::MsgPack => {
            rmp_serde::from_slice(body).map_err(|e| fail(format!("invalid {} message: {e}", tag.kind)))?
        }
        Format::Json => {
            serde_json::from_slice(body).map_err(|e| fail(format!("invalid {} message: {e}", tag.kind)))?
        }
    };
    Ok(Some(message))
}

/// Broadcasts `{type: "cancel", id}` on `NS.control` (declared by
/// [`Topology::declare_exchanges`]). On a channel in confirm mode it returns once the broker
/// confirmed the publish. The workers' queues are transient, so a cancel reaches only the
/// workers alive now: move the job's record to `canceled` first, so that a worker that
/// misses the broadcast still cannot record another outcome.
pub async fn publish_cancel(channel: &Channel, topology: &Topology, id: &str) -> Result<(), ClientError> {
    if !is_valid_job_id(id) {
        return Err(ClientError::InvalidJob(format!(
            "id {id:?}: 1..128 chars of [A-Za-z0-9._:-]"
        )));
    }
    let body = codec::encode(&ControlMessage::Cancel { id: id.to_string() });
    let properties = BasicProperties::default().with_content_type(MSGPACK.into());
    let confirm = channel
        .basic_publish(
            topology.control_exchange().into(),
            "".into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?;
    confirmed(confirm, id, "control").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cancel_is_a_named_map_tagged_by_type_and_round_trips() {
        let cancel = ControlMessage::Cancel { id: "job-1".into() };
        let body = codec::encode(&cancel);
        assert_eq!(body[0] & 0xf0, 0x80, "a map, not an array");
        let as_value: serde_json::Value = rmp_serde::from_slice(&body).unwrap();
        assert_eq!(as_value, json!({"type": "cancel", "id": "job-1"}));
        assert_eq!(decode(Some(MSGPACK), &body).unwrap(), Some(cancel.clone()));
        assert_eq!(decode(None, &body).unwrap(), Some(cancel.clone()));
        let from_json = decode(
            Some("application/json"),
            br#"{"type":"cancel","id":"job-1","extra":1}"#,
        )
        .unwrap();
        assert_eq!(from_json, Some(cancel));
    }

    #[test]
    fn unknown_types_are_ignored_and_malformed_messages_are_errors() {
        let pause = codec::encode(&json!({"type": "pause", "group": "etl"}));
        assert_eq!(decode(None, &pause).unwrap(), None);
        assert!(
            decode(None, &codec::encode(&json!({"id": "x"}))).is_err(),
            "no type"
        );
        assert!(
            decode(None, &codec::encode(&json!({"type": "cancel"}))).is_err(),
            "a cancel without id"
        );
        assert!(decode(None, &codec::encode(&json!({"type": 7}))).is_err());
        assert!(decode(None, b"\xc1").is_err());
        assert!(decode(Some("text/plain"), b"cancel").is_err());
    }
}
