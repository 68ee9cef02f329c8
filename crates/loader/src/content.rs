//! Whether a bill 星辰 holds already has the content of an incoming bill.
//!
//! After an ambiguous save, a repeated bill number or a crash between save and record, the
//! loader finds the bill by its number and must tell "this is the bill I meant to post" (record
//! it and stop) from "this is an older or foreign version" (modify it). Ids are ignored, since the
//! incoming bill has none. Fields the incoming bill does not carry are ignored too, since 星辰
//! adds its own (a status, say); every field it does carry must match. Decimals compare by
//! value (`2` equals `2.00`), other scalars by their text (`13` equals `"13"`), because 星辰
//! may echo a string as a number. Finding the bill and acting on the answer is left to
//! [`crate::load`].

use std::collections::BTreeMap;

use serde_json::Value;
use xingchen::{Bill, BillLine};

/// Whether `held` (as 星辰 returned it) carries everything `incoming` would post.
pub fn same_content(incoming: &Bill, held: &Bill) -> bool {
    incoming.billdate == held.billdate
        && incoming.billno == held.billno
        && incoming.customerid_id == held.customerid_id
        && incoming.material_entity.len() == held.material_entity.len()
        && incoming
            .material_entity
            .iter()
            .zip(&held.material_entity)
            .all(|(line, held_line)| same_line(line, held_line))
        && carries(&incoming.custom, &held.custom)
}

fn same_line(incoming: &BillLine, held: &BillLine) -> bool {
    incoming.materialid_id == held.materialid_id
        && incoming.stockid_id == held.stockid_id
        && incoming.qty == held.qty
        && incoming.unit_id == held.unit_id
        && incoming.taxprice == held.taxprice
        && incoming.cess == held.cess
        && carries(&incoming.custom, &held.custom)
}

/// Whether every field of `wanted` is in `held` with the same value.
fn carries(wanted: &BTreeMap<String, Value>, held: &BTreeMap<String, Value>) -> bool {
    wanted
        .iter()
        .all(|(name, value)| held.get(name).is_some_and(|held| same_value(value, held)))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (scalar_text(a), scalar_text(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bill() -> Bill {
        serde_json::from_value(json!({
            "billdate": "2024-05-01", "billno": "CK1", "customerid_id": "11",
            "material_entity": [{
                "materialid_id": "21", "stockid_id": "31", "qty": "2", "unit_id": "41",
                "taxprice": "113.5", "cess": "13", "custom_field42obgp309axx5_number": "TM001",
            }],
        }))
        .expect("bill")
    }

    #[test]
    fn a_bill_as_held_with_ids_status_and_other_number_forms_is_the_same() {
        let held: Bill = serde_json::from_value(json!({
            "id": "1890000", "billstatus": "Z",
            "billdate": "2024-05-01", "billno": "CK1", "customerid_id": 11,
            "material_entity": [{
                "id": "77", "materialid_id": "21", "stockid_id": "31", "qty": "2.000",
                "unit_id": "41", "taxprice": 113.50, "cess": 13,
                "custom_field42obgp309axx5_number": "TM001",
            }],
        }))
        .expect("held bill");
        assert!(same_content(&bill(), &held));
    }

    #[test]
    fn any_changed_field_makes_it_different() {
        let changes: [fn(&mut Bill); 6] = [
            |b| b.material_entity[0].qty += rust_decimal::Decimal::ONE,
            |b| b.material_entity[0].unit_id = "42".into(),
            |b| b.customerid_id = "12".into(),
            |b| b.billdate = b.billdate.succ_opt().expect("date"),
            |b| {
                b.material_entity[0]
                    .custom
                    .insert("custom_field42obgp309axx5_number".into(), json!("JD001"));
            },
            |b| b.material_entity.push(b.material_entity[0].clone()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut held = bill();
            change(&mut held);
            assert!(!same_content(&bill(), &held), "change {i} went unnoticed");
        }
    }

    #[test]
    fn a_field_the_held_bill_lacks_makes_it_different() {
        let mut held = bill();
        held.material_entity[0].custom.clear();
        assert!(!same_content(&bill(), &held));
    }
}
