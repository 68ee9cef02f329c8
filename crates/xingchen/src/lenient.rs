//! Lenient readers for 星辰's JSON, which sends the same field as a number in one answer and as a
//! string in the next, and strict writers for amounts.
//!
//! Amounts and quantities are [`Decimal`] written as strings, so no binary float ever touches
//! them on the way out. On the way in, a JSON number is read through its shortest decimal text.

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Reads a string, a number or null as a `String` (null becomes empty).
pub fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(opt_string(deserializer)?.unwrap_or_default())
}

/// Reads a string or a number as `Some`; null and the empty string as `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
        Some(other) => return Err(de::Error::custom(format!("expected a scalar, got {other}"))),
    })
}

/// Reads a count sent as a number or a numeric string; null and empty as 0.
pub fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    match opt_string(deserializer)? {
        None => Ok(0),
        Some(text) => text.trim().parse().map_err(de::Error::custom),
    }
}

/// Serde for a [`Decimal`] written as a string and read from a string or a number.
pub mod decimal {
    use super::*;

    /// Writes the decimal as its exact string.
    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    /// Reads a decimal from a string or a JSON number.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        deserializer.deserialize_any(DecimalVisitor)
    }
}

struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal as a string or a number")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Decimal, E> {
        let text = text.trim();
        Decimal::from_str(text)
            .or_else(|_| Decimal::from_scientific(text))
            .map_err(|e| E::custom(format!("invalid decimal {text:?}: {e}")))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Decimal, E> {
        // Rust prints the shortest text that reads back as the same float, which is the text
        // the sender most likely wrote.
        self.visit_str(&value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Deserialize, Serialize)]
    struct Row {
        #[serde(deserialize_with = "string")]
        id: String,
        #[serde(deserialize_with = "count")]
        count: u64,
        #[serde(with = "decimal")]
        qty: Decimal,
    }

    #[test]
    fn numbers_and_strings_read_alike() {
        let a: Row = serde_json::from_str(r#"{"id":1786,"count":"12","qty":"2.50"}"#).expect("row");
        let b: Row = serde_json::from_str(r#"{"id":"1786","count":12,"qty":2.5}"#).expect("row");
        assert_eq!(a.id, b.id);
        assert_eq!(a.count, b.count);
        assert_eq!(a.qty, b.qty);
        assert_eq!(serde_json::to_value(&a).expect("json")["qty"], "2.50");
    }

    proptest::proptest! {
        #[test]
        fn decimals_survive_a_json_round_trip(
            mantissa in -10_000_000_000i64..10_000_000_000,
            scale in 0u32..8,
        ) {
            let qty = Decimal::new(mantissa, scale);
            let row = Row { id: "1".into(), count: 0, qty };
            let text = serde_json::to_string(&row).expect("json");
            let back: Row = serde_json::from_str(&text).expect("row");
            proptest::prop_assert_eq!(back.qty, qty);
            proptest::prop_assert_eq!(back.qty.scale(), qty.scale());
        }
    }
}
