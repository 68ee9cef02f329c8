//! Beijing time, the only clock WDT speaks.
//!
//! WDT writes and reads every time as `yyyy-MM-dd HH:mm:ss` in UTC+8, whatever the zone of the host
//! that runs the bridge, and writes an unset time as `0000-00-00 00:00:00`. This module owns that
//! format in both directions and the parser for times typed on a command line. The lenient reading
//! of times inside orders is in [`crate::lenient`], which calls [`parse_wdt_time`].

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

/// A WDT time: Beijing wall time, always carried with its +08:00 offset.
pub type WdtTime = DateTime<FixedOffset>;

/// The `strftime` format of every WDT time.
pub const WDT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// What WDT writes for a time it does not have.
pub const ZERO_TIME: &str = "0000-00-00 00:00:00";

/// UTC+8, the zone of every WDT time.
pub fn beijing() -> FixedOffset {
    // Invariant: 8 hours is well inside the ±24 h range FixedOffset accepts.
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The current time in Beijing.
pub fn now_beijing() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&beijing())
}

/// Writes a time the way WDT reads it: Beijing wall time, to the second.
pub fn format_wdt_time(time: &DateTime<FixedOffset>) -> String {
    time.with_timezone(&beijing())
        .format(WDT_TIME_FORMAT)
        .to_string()
}

/// Reads a WDT time; `Ok(None)` for the empty string and for the all-zero time.
pub fn parse_wdt_time(text: &str) -> Result<Option<DateTime<FixedOffset>>, TimeParseError> {
    let text = text.trim();
    if text.is_empty() || text.starts_with("0000-00-00") {
        return Ok(None);
    }
    let naive =
        NaiveDateTime::parse_from_str(text, WDT_TIME_FORMAT).map_err(|_| TimeParseError {
            input: text.to_owned(),
        })?;
    Ok(Some(from_beijing_wall_time(naive)))
}

/// Reads a time given on a command line: Beijing `YYYY-MM-DD HH:MM:SS`, or RFC 3339 (any offset).
///
/// The result is always in UTC+8, so the same text means the same instant on every host.
pub fn parse_cli_time(text: &str) -> Result<DateTime<FixedOffset>, TimeParseError> {
    let text = text.trim();
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, WDT_TIME_FORMAT) {
        return Ok(from_beijing_wall_time(naive));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&beijing()))
        .map_err(|_| TimeParseError {
            input: text.to_owned(),
        })
}

fn from_beijing_wall_time(naive: NaiveDateTime) -> DateTime<FixedOffset> {
    // A fixed offset has no gaps or folds, so every wall time maps to exactly one instant.
    beijing().from_utc_datetime(&(naive - beijing()))
}

/// A time that is neither `yyyy-MM-dd HH:mm:ss` nor RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {input:?}: expected \"YYYY-MM-DD HH:MM:SS\" (Beijing time) or RFC 3339")]
pub struct TimeParseError {
    /// The text that did not parse.
    pub input: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_read_as_beijing_whatever_the_host_zone() {
        let time = parse_cli_time("2024-05-01 00:00:00").unwrap();
        assert_eq!(time.to_rfc3339(), "2024-05-01T00:00:00+08:00");
        assert_eq!(
            time.with_timezone(&Utc).to_rfc3339(),
            "2024-04-30T16:00:00+00:00"
        );
    }

    #[test]
    fn rfc3339_is_converted_to_beijing() {
        let time = parse_cli_time("2024-04-30T16:00:00Z").unwrap();
        assert_eq!(format_wdt_time(&time), "2024-05-01 00:00:00");
        assert!(parse_cli_time("yesterday").is_err());
        assert!(parse_cli_time("2024-05-01").is_err());
    }

    #[test]
    fn zero_and_empty_wdt_times_are_absent() {
        assert_eq!(parse_wdt_time(ZERO_TIME), Ok(None));
        assert_eq!(parse_wdt_time(""), Ok(None));
        let time = parse_wdt_time("2024-05-01 16:45:09").unwrap().unwrap();
        assert_eq!(format_wdt_time(&time), "2024-05-01 16:45:09");
        assert!(parse_wdt_time("2024-13-01 00:00:00").is_err());
    }
}
