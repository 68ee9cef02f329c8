//! Reading 旺店通's values leniently and writing 星辰's strictly: a scalar may come as a JSON
//! string or number, decimals are exact and normalised, dates are taken as WDT wrote them (Beijing
//! time, never through the host's zone), and `0000-00-00 00:00:00` means "no time".

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::target::ValueType;

/// Why a value cannot be used; the text completes a sentence that starts with the source's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Absent, null, empty, or WDT's empty time.
    Missing(String),
    /// Present but not what the field needs.
    Malformed(String),
}

/// WDT's way of writing "no time".
const EMPTY_TIME: &str = "0000-00-00 00:00:00";

/// The text of a scalar, strings as written and numbers as JSON wrote them.
pub(crate) fn scalar_text(value: Option<&Value>) -> Result<String, Fault> {
    match value {
        None => Err(Fault::Missing("is absent".into())),
        Some(Value::Null) => Err(Fault::Missing("is null".into())),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        Some(other) => Err(Fault::Malformed(format!(
            "is {}, expected a string or a number",
            json_type(other)
        ))),
    }
}

/// Checks and normalises a value for a target field of type `value_type`.
pub(crate) fn typed(text: String, value_type: ValueType) -> Result<String, Fault> {
    match value_type {
        ValueType::Text => Ok(text),
        ValueType::Key | ValueType::Id | ValueType::Rows if text.trim().is_empty() => {
            Err(Fault::Missing("is empty".into()))
        }
        ValueType::Key | ValueType::Id | ValueType::Rows => Ok(text),
        ValueType::Date => match parse_date(&text) {
            Some(date) => Ok(date),
            None => Err(Fault::Malformed(format!(
                "is {text:?}, expected a date yyyy-MM-dd"
            ))),
        },
        ValueType::Decimal => match decimal_text(&text) {
            Some(decimal) => Ok(decimal),
            None => Err(Fault::Malformed(format!(
                "is {text:?}, expected a decimal number"
            ))),
        },
    }
}

/// An exact decimal with trailing zeros dropped (`"99.0000"` → `"99"`), or `None` when the text
/// is not a decimal that 28 significant digits can hold.
pub(crate) fn decimal_text(text: &str) -> Option<String> {
    let text = text.trim();
    let decimal = Decimal::from_str_exact(text)
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())?;
    Some(decimal.normalize().to_string())
}

/// The date a WDT time was on, `yyyy-MM-dd`, as WDT wrote it.
pub(crate) fn date_of(text: &str) -> Result<String, Fault> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Fault::Missing("is empty".into()));
    }
    if text == EMPTY_TIME || text == &EMPTY_TIME[..10] {
        return Err(Fault::Missing(format!("is {text}, 旺店通's empty time")));
    }
    let date = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .map(|time| time.date())
        .or_else(|_| NaiveDate::parse_from_str(text, "%Y-%m-%d"));
    match date {
        Ok(date) => Ok(date.format("%Y-%m-%d").to_string()),
        Err(_) => Err(Fault::Malformed(format!(
            "is {text:?}, expected a time yyyy-MM-dd HH:mm:ss"
        ))),
    }
}

fn parse_date(text: &str) -> Option<String> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let canonical = date.format("%Y-%m-%d").to_string();
    (canonical == text).then_some(canonical)
}

/// A JSON type's name for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a constant written in a scheme suits a target field.
pub(crate) fn constant_fits(text: &str, value_type: ValueType) -> bool {
    typed(text.to_string(), value_type).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_are_exact_and_normalised() {
        assert_eq!(decimal_text("99.0000").as_deref(), Some("99"));
        assert_eq!(decimal_text("0.0100").as_deref(), Some("0.01"));
        assert_eq!(decimal_text(" 1.50 ").as_deref(), Some("1.5"));
        assert_eq!(decimal_text("-0.000").as_deref(), Some("0"));
        assert_eq!(decimal_text("0.1").as_deref(), Some("0.1"));
        assert_eq!(decimal_text("1e3").as_deref(), Some("1000"));
        for bad in ["", "abc", "1,5", "1.2.3", "NaN"] {
            assert_eq!(decimal_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_and_strings_are_both_scalars() {
        assert_eq!(scalar_text(Some(&json!(42))), Ok("42".into()));
        assert_eq!(scalar_text(Some(&json!(2.5))), Ok("2.5".into()));
        assert_eq!(scalar_text(Some(&json!("TM001"))), Ok("TM001".into()));
        assert!(matches!(scalar_text(None), Err(Fault::Missing(_))));
        assert!(matches!(
            scalar_text(Some(&json!(null))),
            Err(Fault::Missing(_))
        ));
        assert!(matches!(
            scalar_text(Some(&json!([1]))),
            Err(Fault::Malformed(_))
        ));
    }

    #[test]
    fn the_date_of_a_time_is_taken_as_written() {
        // 23:30 Beijing is 15:30 UTC the same day, and the day before in zones west of UTC-8:30;
        // the date must be the one WDT wrote whatever the host's zone.
        assert_eq!(date_of("2022-11-01 23:30:00"), Ok("2022-11-01".into()));
        assert_eq!(date_of("2022-11-01 00:00:01"), Ok("2022-11-01".into()));
        assert_eq!(date_of("2022-11-01"), Ok("2022-11-01".into()));
        assert!(matches!(
            date_of("0000-00-00 00:00:00"),
            Err(Fault::Missing(_))
        ));
        assert!(matches!(date_of(""), Err(Fault::Missing(_))));
        assert!(matches!(
            date_of("2022-13-01 00:00:00"),
            Err(Fault::Malformed(_))
        ));
        assert!(matches!(date_of("1667318400"), Err(Fault::Malformed(_))));
    }

    #[test]
    fn ids_and_keys_are_never_empty() {
        assert!(matches!(
            typed(" ".into(), ValueType::Id),
            Err(Fault::Missing(_))
        ));
        assert!(matches!(
            typed(String::new(), ValueType::Key),
            Err(Fault::Missing(_))
        ));
        assert_eq!(typed(String::new(), ValueType::Text), Ok(String::new()));
        assert!(matches!(
            typed("2022-1-1".into(), ValueType::Date),
            Err(Fault::Malformed(_))
        ));
    }
}
