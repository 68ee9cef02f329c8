//! Lenient reading of the scalars inside a WDT order.
//!
//! WDT sends the same field as a JSON number on one path and as a string on another, money as
//! four-decimal strings, and unset times as `0000-00-00 00:00:00`. Every typed field of
//! [`crate::order`] goes through [`field`], which takes the raw JSON text of the value, so a number
//! is read from its literal digits and never through a binary float. What WDT sends in a shape
//! that cannot mean the field's type is an error naming the value, not a silent gap: the raw order
//! is kept anyway, so nothing is lost by being strict here.
//!
//! Because the raw text is needed, the order types deserialize from JSON text
//! (`serde_json::from_str` and friends), not from a `serde_json::Value`.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde_json::value::RawValue;

use crate::time::parse_wdt_time;

/// A type that can be read from any JSON shape WDT uses for it.
pub trait Lenient: Sized {
    /// Reads the value from its raw JSON text; `Ok(None)` when WDT means "no value".
    fn from_json(raw: &str) -> Result<Option<Self>, String>;
}

/// A scalar as WDT sent it: the JSON string's content, or a number's or boolean's literal.
enum Scalar {
    Null,
    Text(String),
    Literal(String),
}

fn scalar(raw: &str) -> Result<Scalar, String> {
    let raw = raw.trim();
    if raw.is_empty() || raw == "null" {
        return Ok(Scalar::Null);
    }
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw)
            .map(Scalar::Text)
            .map_err(|e| e.to_string()),
        Some(b'{') | Some(b'[') => Err(format!("expected a scalar, got {}", excerpt(raw))),
        _ => Ok(Scalar::Literal(raw.to_owned())),
    }
}

/// The start of a value, for error messages that must stay short.
fn excerpt(raw: &str) -> String {
    let mut end = raw.len().min(40);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    if end < raw.len() {
        format!("{}…", &raw[..end])
    } else {
        raw.to_owned()
    }
}

impl Lenient for String {
    fn from_json(raw: &str) -> Result<Option<Self>, String> {
        Ok(match scalar(raw)? {
            Scalar::Null => None,
            Scalar::Text(text) | Scalar::Literal(text) => Some(text),
        })
    }
}

impl Lenient for i64 {
    fn from_json(raw: &str) -> Result<Option<Self>, String> {
        let text = match scalar(raw)? {
            Scalar::Null => return Ok(None),
            Scalar::Text(text) | Scalar::Literal(text) => text,
        };
        let text = text.trim();
        match text {
            "" => Ok(None),
            "true" => Ok(Some(1)),
            "false" => Ok(Some(0)),
            _ => i64::from_str(text)
                .map(Some)
                .or_else(|_| integral_decimal(text)),
        }
    }
}

/// Accepts `"2.0000"` where an integer is expected, as WDT writes counts that way.
fn integral_decimal(text: &str) -> Result<Option<i64>, String> {
    let value = parse_decimal(text)?;
    if value.fract().is_zero() {
        i64::try_from(value)
            .map(Some)
            .map_err(|_| format!("integer out of range: {text}"))
    } else {
        Err(format!("expected an integer, got {text}"))
    }
}

impl Lenient for Decimal {
    fn from_json(raw: &str) -> Result<Option<Self>, String> {
        match scalar(raw)? {
            Scalar::Null => Ok(None),
            Scalar::Text(text) if text.trim().is_empty() => Ok(None),
            Scalar::Text(text) | Scalar::Literal(text) => parse_decimal(text.trim()).map(Some),
        }
    }
}

fn parse_decimal(text: &str) -> Result<Decimal, String> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("expected a decimal, got {}", excerpt(text)))
}

impl Lenient for DateTime<FixedOffset> {
    fn from_json(raw: &str) -> Result<Option<Self>, String> {
        match scalar(raw)? {
            Scalar::Null => Ok(None),
            Scalar::Text(text) => parse_wdt_time(&text).map_err(|e| e.to_string()),
            Scalar::Literal(text) => Err(format!("expected a time, got {}", excerpt(&text))),
        }
    }
}

impl<T: DeserializeOwned> Lenient for Vec<T> {
    fn from_json(raw: &str) -> Result<Option<Self>, String> {
        let trimmed = raw.trim();
        // An absent list arrives as null or as an empty string on some paths.
        if trimmed == "null" || trimmed == "\"\"" {
            return Ok(None);
        }
        serde_json::from_str(trimmed)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// `deserialize_with` target for every typed order field.
pub fn field<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Lenient,
{
    let raw = Option::<Box<RawValue>>::deserialize(deserializer)?;
    match raw {
        None => Ok(None),
        Some(raw) => T::from_json(raw.get()).map_err(D::Error::custom),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn integers_come_from_numbers_strings_and_integral_decimals() {
        assert_eq!(i64::from_json("58231"), Ok(Some(58231)));
        assert_eq!(i64::from_json("\"58231\""), Ok(Some(58231)));
        assert_eq!(i64::from_json("\"2.0000\""), Ok(Some(2)));
        assert_eq!(i64::from_json("\"\""), Ok(None));
        assert_eq!(i64::from_json("null"), Ok(None));
        assert_eq!(i64::from_json("true"), Ok(Some(1)));
        assert!(i64::from_json("\"2.5\"").is_err());
        assert!(i64::from_json("[1]").is_err());
    }

    #[test]
    fn decimals_are_exact_from_strings_and_numbers() {
        let expected = Decimal::from_str_exact("89.1000").unwrap();
        assert_eq!(Decimal::from_json("\"89.1000\""), Ok(Some(expected)));
        assert_eq!(Decimal::from_json("89.1000"), Ok(Some(expected)));
        // Digits a binary float would lose survive because the literal is read as text.
        let long = Decimal::from_json("0.1000000000000000000001")
            .unwrap()
            .unwrap();
        assert_eq!(long.to_string(), "0.1000000000000000000001");
        assert_eq!(
            Decimal::from_json("1e2").unwrap().unwrap(),
            Decimal::from(100)
        );
        assert_eq!(Decimal::from_json("\"\""), Ok(None));
        assert!(Decimal::from_json("\"九十\"").is_err());
    }

    #[test]
    fn text_takes_numbers_as_their_literal() {
        assert_eq!(
            String::from_json("3601234567890123456"),
            Ok(Some("3601234567890123456".into()))
        );
        assert_eq!(
            String::from_json("\"旗舰店01\""),
            Ok(Some("旗舰店01".into()))
        );
        assert_eq!(String::from_json("null"), Ok(None));
        assert!(String::from_json("{\"a\":1}").is_err());
    }

    #[test]
    fn zero_times_are_absent_and_numbers_are_not_times() {
        type Time = DateTime<FixedOffset>;
        assert_eq!(Time::from_json("\"0000-00-00 00:00:00\""), Ok(None));
        assert_eq!(Time::from_json("\"\""), Ok(None));
        let time = Time::from_json("\"2024-05-01 16:45:09\"").unwrap().unwrap();
        assert_eq!(time.to_rfc3339(), "2024-05-01T16:45:09+08:00");
        assert!(Time::from_json("1714553109").is_err());
    }

    #[test]
    fn lists_may_be_null_or_empty_strings() {
        assert_eq!(Vec::<i64>::from_json("null"), Ok(None));
        assert_eq!(Vec::<i64>::from_json("\"\""), Ok(None));
        assert_eq!(Vec::<i64>::from_json("[1,2]"), Ok(Some(vec![1, 2])));
    }
}
