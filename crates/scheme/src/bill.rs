//! The bill an order becomes: a plain JSON object with 星辰 V1's wire names, decimals as strings,
//! ready for `jdy/sal/sal_outbound_save`. Posting it, and remembering that it was posted, are the
//! loader's business; this module only holds it and gives it a canonical form to compare.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The header field holding the bill number.
pub const BILLNO_FIELD: &str = "billno";
/// The header field holding the lines.
pub const LINES_FIELD: &str = "material_entity";

/// A sales outbound bill as the scheme made it, not yet posted.
///
/// Serialises as the V1 request body itself. It always has a non-empty `billno`.
#[derive(Debug, Clone, PartialEq)]
pub struct BillDraft {
    billno: String,
    fields: Map<String, Value>,
}

/// Why a JSON object is not a bill draft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillDraftError {
    /// `billno` is absent, empty or not a string; the ledger of posted bills keys on it.
    #[error("bill draft: billno is absent, empty or not a string")]
    NoBillno,
}

impl BillDraftError {
    /// A malformed bill stays malformed.
    pub fn is_transient(&self) -> bool {
        false
    }
}

impl TryFrom<Map<String, Value>> for BillDraft {
    type Error = BillDraftError;

    fn try_from(fields: Map<String, Value>) -> Result<Self, Self::Error> {
        let billno = match fields.get(BILLNO_FIELD) {
            Some(Value::String(billno)) if !billno.trim().is_empty() => billno.clone(),
            _ => return Err(BillDraftError::NoBillno),
        };
        Ok(BillDraft { billno, fields })
    }
}

impl BillDraft {
    /// The bill number (`billno`).
    pub fn billno(&self) -> &str {
        &self.billno
    }

    /// The bill date (`billdate`, yyyy-MM-dd), when the scheme maps it.
    pub fn billdate(&self) -> Option<&str> {
        self.fields.get("billdate").and_then(Value::as_str)
    }

    /// The lines (`material_entity`), empty when there are none.
    pub fn lines(&self) -> &[Value] {
        match self.fields.get(LINES_FIELD) {
            Some(Value::Array(lines)) => lines,
            _ => &[],
        }
    }

    /// One header field.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }

    /// The whole body.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The whole body, owned.
    pub fn into_map(self) -> Map<String, Value> {
        self.fields
    }

    /// The body as compact JSON with every object's keys in byte order, whatever order the map
    /// keeps them in, so that two equal bills always give the same text.
    pub fn canonical_json(&self) -> String {
        let mut text = String::new();
        write_canonical(&mut text, &Value::Object(self.fields.clone()));
        text
    }

    /// The SHA-256 of [`BillDraft::canonical_json`], lowercase hex: what the loader compares to
    /// tell whether a bill changed since it was posted.
    pub fn fingerprint(&self) -> String {
        crate::sha256_hex(self.canonical_json().as_bytes())
    }
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, &Value::String(key.clone()));
                out.push(':');
                write_canonical(out, &map[key]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        // Scalars have one compact form in serde_json; writing to a String cannot fail.
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

impl Serialize for BillDraft {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BillDraft {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = Map::deserialize(deserializer)?;
        BillDraft::try_from(fields).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(value: Value) -> BillDraft {
        let Value::Object(map) = value else {
            panic!("an object")
        };
        BillDraft::try_from(map).expect("a bill draft")
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let bill = draft(json!({
            "billno": "CK1", "billdate": "2022-11-01",
            "material_entity": [{"qty": "2", "materialid_id": "m\"1"}]
        }));
        let expected = concat!(
            r#"{"billdate":"2022-11-01","billno":"CK1","#,
            r#""material_entity":[{"materialid_id":"m\"1","qty":"2"}]}"#
        );
        assert_eq!(bill.canonical_json(), expected);
        assert_eq!(bill.fingerprint().len(), 64);
        assert_ne!(
            bill.fingerprint(),
            draft(json!({"billno": "CK2"})).fingerprint()
        );
    }

    #[test]
    fn a_draft_always_has_a_bill_number() {
        for body in [json!({}), json!({"billno": ""}), json!({"billno": 7})] {
            let Value::Object(map) = body else { continue };
            assert_eq!(BillDraft::try_from(map), Err(BillDraftError::NoBillno));
        }
        let bill: BillDraft = serde_json::from_str(r#"{"billno":"CK1"}"#).expect("a draft");
        assert_eq!((bill.billno(), bill.lines().len()), ("CK1", 0));
        assert!(serde_json::from_str::<BillDraft>(r#"{"billno":" "}"#).is_err());
    }
}
