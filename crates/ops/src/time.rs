//! Times as the operator reads them: Beijing time, whatever the host's zone.
//!
//! Reports hold instants in UTC; JSON shows them as RFC 3339 in Beijing time with milliseconds
//! (`2024-05-01T12:00:00.250+08:00`), tables as WDT writes them (`2024-05-01 12:00:00`). The
//! conversions from the NATS client's time type go through [`SystemTime`], which both of its
//! backends (`time` and `chrono`) convert to and from, so this crate works whichever is built.

use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::Serializer;

/// An instant from the NATS client, in UTC.
pub(crate) fn from_nats(time: async_nats::datetime::DateTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(SystemTime::from(time))
}

/// An instant for the NATS client.
pub(crate) fn to_nats(time: DateTime<FixedOffset>) -> async_nats::datetime::DateTime {
    async_nats::datetime::DateTime::from(SystemTime::from(time))
}

/// `time` in Beijing time as WDT writes it, `YYYY-MM-DD HH:MM:SS`.
pub fn format_beijing(time: &DateTime<Utc>) -> String {
    wdt::format_wdt_time(&time.with_timezone(&wdt::beijing()))
}

/// `time` in Beijing time as RFC 3339 with milliseconds.
pub(crate) fn rfc3339_beijing(time: &DateTime<Utc>) -> String {
    time.with_timezone(&wdt::beijing())
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// Serialises an instant as [`rfc3339_beijing`].
pub(crate) fn beijing<S: Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339_beijing(time))
}

/// Serialises an optional instant as [`rfc3339_beijing`] or `null`.
pub(crate) fn beijing_opt<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => beijing(time, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_beijing_whatever_the_instants_zone() {
        let time = DateTime::parse_from_rfc3339("2024-05-01T04:00:00.25Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(format_beijing(&time), "2024-05-01 12:00:00");
        assert_eq!(rfc3339_beijing(&time), "2024-05-01T12:00:00.250+08:00");
    }

    #[test]
    fn an_instant_survives_the_trip_through_the_nats_time_type() {
        let time = wdt::parse_cli_time("2024-05-01 12:00:00").expect("time");
        assert_eq!(from_nats(to_nats(time)), time.with_timezone(&Utc));
    }
}
