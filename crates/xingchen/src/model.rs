//! The 星辰 records this bridge reads and writes, in V1 wire names: customers, materials and
//! stores (master data), and the sales outbound bill.
//!
//! Reading is lenient (ids and counts may be numbers or strings; fields the bridge does not use
//! are kept in `extra` so an operator still sees them); writing is strict (decimals as exact
//! strings, dates as `yyyy-MM-dd`). Fetching them is left to [`crate::client`].

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lenient;

/// A 星辰 customer; the bridge's customer number is the WDT `shop_no`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// The internal id a bill refers to (`customerid_id`).
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    /// The customer number.
    #[serde(deserialize_with = "lenient::string")]
    pub number: String,
    /// The customer name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// Every other field 星辰 sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A 星辰 material (goods item); its number is the WDT `goods_no`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Material {
    /// The internal id a bill line refers to (`materialid_id`).
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    /// The material number.
    #[serde(deserialize_with = "lenient::string")]
    pub number: String,
    /// The material name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// The id of the base unit (`baseunitid_id`), the unit a bill line is written in.
    #[serde(
        rename = "baseunitid_id",
        alias = "base_unit_id",
        default,
        deserialize_with = "lenient::opt_string"
    )]
    pub base_unit_id: Option<String>,
    /// Every other field 星辰 sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The wire names of a material's further units, after the base unit.
const FURTHER_UNIT_FIELDS: &[&str] = &["fixunit1_id", "fixunit2_id", "fixunit3_id"];

impl Material {
    /// Every unit id the material carries, the base unit first.
    pub fn unit_ids(&self) -> Vec<String> {
        let further = FURTHER_UNIT_FIELDS
            .iter()
            .filter_map(|field| match self.extra.get(*field) {
                Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
                Some(Value::Number(id)) => Some(id.to_string()),
                _ => None,
            });
        self.base_unit_id.iter().cloned().chain(further).collect()
    }
}

/// A 星辰 store (warehouse); its number is the WDT `warehouse_no`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// The internal id a bill line refers to (`stockid_id`).
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    /// The store number.
    #[serde(deserialize_with = "lenient::string")]
    pub number: String,
    /// The store name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// Every other field 星辰 sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A V1 sales outbound bill (`sal_outbound_save`), as posted and as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bill {
    /// The bill id; present means "replace that bill", absent means "create".
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub id: Option<String>,
    /// The outbound date, written `yyyy-MM-dd`.
    pub billdate: NaiveDate,
    /// The bill number; the bridge uses the WDT `stockout_no`.
    #[serde(deserialize_with = "lenient::string")]
    pub billno: String,
    /// The customer's internal id.
    #[serde(deserialize_with = "lenient::string")]
    pub customerid_id: String,
    /// The lines.
    pub material_entity: Vec<BillLine>,
    /// Further header fields (remark, custom fields such as `custom_field…_number`).
    #[serde(flatten)]
    pub custom: BTreeMap<String, Value>,
}

/// One line of a [`Bill`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillLine {
    /// The line id, only when modifying an existing line.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub id: Option<String>,
    /// The material's internal id.
    #[serde(deserialize_with = "lenient::string")]
    pub materialid_id: String,
    /// The store's internal id.
    #[serde(deserialize_with = "lenient::string")]
    pub stockid_id: String,
    /// The quantity, in the line's unit.
    #[serde(with = "lenient::decimal")]
    pub qty: Decimal,
    /// The unit id; must be one of the material's units (the bridge uses the base unit).
    #[serde(deserialize_with = "lenient::string")]
    pub unit_id: String,
    /// The unit price including tax.
    #[serde(with = "lenient::decimal")]
    pub taxprice: Decimal,
    /// The VAT rate in percent, such as 13.
    #[serde(with = "lenient::decimal")]
    pub cess: Decimal,
    /// Further line fields.
    #[serde(flatten)]
    pub custom: BTreeMap<String, Value>,
}

/// A bill 星辰 holds, found by its number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundBill {
    /// The bill id.
    pub id: String,
    /// The bill as 星辰 returned it.
    pub bill: Bill,
}

/// The outcome of saving a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBill {
    /// The bill id 星辰 assigned (or kept, for a modify).
    pub id: String,
    /// The bill number.
    pub billno: String,
    /// True when the save's answer was lost and the bill was found by number instead.
    pub recovered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bill() -> Bill {
        let mut custom = BTreeMap::new();
        custom.insert(
            "custom_field42obgp309axx5_number".to_owned(),
            json!("TM001"),
        );
        Bill {
            id: None,
            billdate: NaiveDate::from_ymd_opt(2024, 5, 20).expect("date"),
            billno: "CK2024052000001".into(),
            customerid_id: "1786".into(),
            material_entity: vec![BillLine {
                id: None,
                materialid_id: "17".into(),
                stockid_id: "18".into(),
                qty: Decimal::new(2, 0),
                unit_id: "19".into(),
                taxprice: Decimal::new(1_130_000, 4),
                cess: Decimal::new(13, 0),
                custom: BTreeMap::new(),
            }],
            custom,
        }
    }

    #[test]
    fn bill_serialises_decimals_as_strings_and_flattens_custom_fields() {
        let value = serde_json::to_value(bill()).expect("json");
        assert_eq!(value["billdate"], "2024-05-20");
        assert_eq!(value["custom_field42obgp309axx5_number"], "TM001");
        assert_eq!(value["material_entity"][0]["taxprice"], "113.0000");
        assert_eq!(value["material_entity"][0]["qty"], "2");
        assert!(value.get("id").is_none());
        let back: Bill = serde_json::from_value(value).expect("bill");
        assert_eq!(back, bill());
    }

    #[test]
    fn material_reads_numeric_ids_and_lists_its_units() {
        let material: Material = serde_json::from_value(json!({
            "id": 17, "number": "G-1001", "name": "杯", "baseunitid_id": 19, "fixunit1_id": "20"
        }))
        .expect("material");
        assert_eq!(material.id, "17");
        assert_eq!(material.base_unit_id.as_deref(), Some("19"));
        assert_eq!(material.unit_ids(), ["19", "20"]);
    }
}
