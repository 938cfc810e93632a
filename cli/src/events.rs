//! Reading a Server-Sent Events stream (`GET /v1/jobs/{id}/events`): the text is cut into
//! events at blank lines; `event:`, `data:` and `id:` fields are kept, comments dropped.

/// One event of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// Its type (`status`, `progress`, `log`, `gone`); `message` when unnamed.
    pub event: String,
    /// Its data (lines joined with `\n`).
    pub data: String,
    /// Its id, if it had one.
    pub id: Option<String>,
}

/// Cuts a stream's bytes into events as they arrive (a character may straddle chunks).
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    /// Adds bytes that arrived; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend(bytes.iter().filter(|&&b| b != b'\r'));
        let mut events = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            if let Some(event) = parse_block(&String::from_utf8_lossy(&block)) {
                events.push(event);
            }
        }
        events
    }
}

/// The event of one block of lines; `None` for a block of comments only (a keep-alive).
fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent::default();
    let mut data: Vec<&str> = Vec::new();
    let mut any = false;
    for line in block.lines().filter(|l| !l.is_empty() && !l.starts_with(':')) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "event" => event.event = value.to_string(),
            "data" => data.push(value),
            "id" => event.id = Some(value.to_string()),
            _ => {}
        }
    }
    if !any {
        return None;
    }
    if event.event.is_empty() {
        event.event = "message".into();
    }
    event.data = data.join("\n");
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_at_blank_lines_across_chunks() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"event: log\ndata: {\"line\":").is_empty());
        let events =
            parser.push(b"\"hi\"}\nid: 5-0\n\n: keep-alive\n\nevent: status\r\ndata: a\r\ndata: b\r\n\r\n");
        assert_eq!(
            events,
            [
                SseEvent {
                    event: "log".into(),
                    data: "{\"line\":\"hi\"}".into(),
                    id: Some("5-0".into())
                },
                SseEvent {
                    event: "status".into(),
                    data: "a\nb".into(),
                    id: None
                },
            ]
        );
    }
}
