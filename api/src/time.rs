//! The API's times: unix milliseconds as RFC 3339 UTC text, for the instants text can show.

use std::time::{Duration, UNIX_EPOCH};

/// The last unix-ms time RFC 3339 can write (9999-12-31T23:59:59.999Z).
pub const LAST_RFC3339_MS: i64 = 253_402_300_799_999;

/// RFC 3339 UTC text of a unix-ms time, with milliseconds; `None` for a time before 1970
/// or after the year 9999, which a stored record or a foreign message can hold (a
/// producer's clock, an old worker) but no RFC 3339 text can show.
pub fn rfc3339(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms)
        .ok()
        .filter(|&ms| ms <= LAST_RFC3339_MS as u64)?;
    Some(humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
}

/// The unix-ms time of RFC 3339 text with any offset (`2030-01-01T09:00:00Z`,
/// `2030-01-01T10:00:00+01:00`), or why it is not one.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e}); write e.g. 2030-01-01T09:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_text_with_any_offset_is_read() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:01.5+01:00"), Ok(1500));
        assert!(parse_rfc3339("tomorrow").unwrap_err().contains("RFC 3339"));
        assert!(parse_rfc3339("2030-01-01").is_err());
    }

    #[test]
    fn times_outside_what_rfc3339_writes_are_not_shown() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            rfc3339(LAST_RFC3339_MS).as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        for ms in [LAST_RFC3339_MS + 1, i64::MAX, -1, i64::MIN] {
            assert_eq!(rfc3339(ms), None, "{ms}");
        }
    }
}
