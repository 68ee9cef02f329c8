//! Sales outbound bills: `sal_outbound_save` validated as 星辰 would, and `sal_outbound_list`
//! searched by number.
//!
//! A save checks `billdate` (`yyyy-MM-dd`), the customer, each line's material, store, quantity
//! and unit against the master data held now, then creates a bill (no `id`, number not yet used)
//! or replaces one (`id` given). Rejections come back in the V1 save reply with Chinese messages
//! in the style of the real service. A stalled save stores first and answers late, to exercise
//! the client's recovery.

use std::str::FromStr;
use std::time::Duration;

use axum::response::Response;
use chrono::NaiveDate;
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::gateway::v1_ok;
use super::masterdata::page;
use super::state::{Data, XingchenState};

/// Where bills are saved.
pub const SAVE_PATH: &str = "/jdy/sal/sal_outbound_save";
/// Where bills are listed and searched.
pub const LIST_PATH: &str = "/jdy/sal/sal_outbound_list";

/// Saves a bill, or answers why not.
pub(super) async fn save(state: &XingchenState, body: Value) -> Response {
    let outcome = store(&mut state.lock(), body);
    match outcome {
        Ok(id) => {
            let knobs = state.knobs();
            if rand::rng().random::<f64>() < knobs.fraction_stall {
                // The bill is stored; only the answer is late, past the client's patience.
                tokio::time::sleep(Duration::from_millis(knobs.stall_ms)).await;
            }
            save_reply(vec![id], Vec::new())
        }
        Err(messages) => save_reply(Vec::new(), messages),
    }
}

fn save_reply(ids: Vec<String>, messages: Vec<String>) -> Response {
    let error_info: Vec<Value> = messages
        .iter()
        .map(|m| json!({ "id": "", "msg": m }))
        .collect();
    v1_ok(json!({
        "success": messages.is_empty(), "successPkIds": ids, "errorInfo": error_info,
        "message": messages.join("; "),
        "errorLevel": if messages.is_empty() { "" } else { "error" },
    }))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn decimal(value: &Value) -> Option<Decimal> {
    text(value).and_then(|t| Decimal::from_str(&t).ok())
}

/// Validates and stores; the bill's id, or every message that rejects it.
fn store(data: &mut Data, body: Value) -> Result<String, Vec<String>> {
    let Value::Object(mut bill) = body else {
        return Err(vec!["请求参数格式错误".to_owned()]);
    };
    let mut messages = validate(data, &bill);

    let existing = bill.get("id").and_then(text);
    if let Some(id) = &existing {
        if !data.bills.contains_key(id) {
            messages.push(format!("单据id[{id}]不存在"));
        }
    }
    let billno = match bill.get("billno").and_then(text) {
        Some(billno) => billno,
        None => generated_billno(data, &bill),
    };
    if let Some(holder) = data.bill_id_by_number(&billno) {
        if existing.as_deref() != Some(holder.as_str()) {
            messages.push(format!("单据编号[{billno}]已存在，组合值与其他表单重复"));
        }
    }
    if !messages.is_empty() {
        return Err(messages);
    }

    let id = existing.unwrap_or_else(|| data.next_id());
    bill.insert("id".to_owned(), json!(id));
    bill.insert("billno".to_owned(), json!(billno));
    bill.entry("billstatus").or_insert(json!("Z"));
    data.bills.insert(id.clone(), Value::Object(bill));
    Ok(id)
}

fn generated_billno(data: &Data, bill: &Map<String, Value>) -> String {
    let date = bill
        .get("billdate")
        .and_then(text)
        .unwrap_or_default()
        .replace('-', "");
    format!("XSCKD-{date}-{:04}", data.bills.len() + 1)
}

fn validate(data: &Data, bill: &Map<String, Value>) -> Vec<String> {
    let mut messages = Vec::new();
    let field = |name: &str| bill.get(name).unwrap_or(&Value::Null);

    match text(field("billdate")) {
        None => messages.push("单据日期billdate不能为空".to_owned()),
        Some(date) => {
            let valid = date.len() == 10 && NaiveDate::parse_from_str(&date, "%Y-%m-%d").is_ok();
            if !valid {
                messages.push(format!("单据日期billdate[{date}]格式错误，应为yyyy-MM-dd"));
            }
        }
    }
    match text(field("customerid_id")) {
        None => messages.push("客户customerid_id不能为空".to_owned()),
        Some(id) if !data.customers.iter().any(|c| c.id == id) => {
            messages.push(format!("参数customerid_id[{id}]不存在"));
        }
        Some(_) => {}
    }
    match field("material_entity").as_array() {
        Some(lines) if !lines.is_empty() => {
            for (i, line) in lines.iter().enumerate() {
                validate_line(data, i + 1, line, &mut messages);
            }
        }
        _ => messages.push("商品分录material_entity不能为空".to_owned()),
    }
    messages
}

fn validate_line(data: &Data, row: usize, line: &Value, messages: &mut Vec<String>) {
    let material = match text(&line["materialid_id"]) {
        None => {
            messages.push(format!("第{row}行商品materialid_id不能为空"));
            None
        }
        Some(id) => {
            let found = data.materials.iter().find(|m| m.id == id);
            if found.is_none() {
                messages.push(format!("第{row}行参数materialid_id[{id}]不存在"));
            }
            found
        }
    };
    match text(&line["stockid_id"]) {
        None => messages.push(format!("第{row}行非服务类商品仓库stockid_id不能为空")),
        Some(id) if !data.stores.iter().any(|s| s.id == id) => {
            messages.push(format!("第{row}行参数stockid_id[{id}]不存在"));
        }
        Some(_) => {}
    }
    if decimal(&line["qty"]).is_none_or(|qty| qty <= Decimal::ZERO) {
        messages.push(format!("第{row}行数量qty必须大于0"));
    }
    let price = &line["taxprice"];
    if !price.is_null() && decimal(price).is_none_or(|p| p < Decimal::ZERO) {
        messages.push(format!("第{row}行含税单价taxprice格式错误"));
    }
    match (text(&line["unit_id"]), material) {
        (None, _) => messages.push(format!("第{row}行基础资料\"unit\"字段不能为空")),
        (Some(unit), Some(material)) if !material.unit_ids.contains(&unit) => {
            messages.push(format!(
                "第{row}行计量单位unit_id[{unit}]不是商品[{}]的计量单位",
                material.number
            ))
        }
        _ => {}
    }
}

/// Lists bills whose number contains `search`, paged like master data.
pub(super) fn list(state: &XingchenState, body: &Value) -> Response {
    let search = body["search"].as_str().unwrap_or("").to_owned();
    let rows: Vec<Value> = state
        .bills()
        .into_iter()
        .filter(|bill| {
            bill["billno"]
                .as_str()
                .is_some_and(|no| no.contains(&search))
        })
        .collect();
    v1_ok(page(rows, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::World;
    use crate::xingchen::SimulatorConfig;

    fn bill(world: &World, billno: &str) -> Value {
        let goods = &world.goods[0];
        json!({
            "billdate": "2024-05-20", "billno": billno, "customerid_id": world.shops[0].customer_id,
            "material_entity": [{
                "materialid_id": goods.material_id, "stockid_id": world.warehouses[0].store_id,
                "qty": "2", "unit_id": goods.base_unit_id, "taxprice": "113.00", "cess": "13",
            }],
        })
    }

    #[test]
    fn a_valid_bill_is_stored_and_its_number_cannot_be_reused() {
        let world = World::generate(3);
        let state = XingchenState::new(&world, SimulatorConfig::default());
        let id = store(&mut state.lock(), bill(&world, "CK1")).expect("stored");
        let again = store(&mut state.lock(), bill(&world, "CK1")).expect_err("duplicate");
        assert!(again[0].contains("已存在"), "{again:?}");

        let mut modify = bill(&world, "CK1");
        modify["id"] = json!(id);
        modify["material_entity"][0]["qty"] = json!("5");
        assert_eq!(store(&mut state.lock(), modify).expect("replaced"), id);
        assert_eq!(state.bills().len(), 1);
        assert_eq!(
            state.bill("CK1").expect("bill")["material_entity"][0]["qty"],
            "5"
        );
    }

    #[test]
    fn every_rule_names_what_is_wrong() {
        let world = World::generate(3);
        let state = XingchenState::new(&world, SimulatorConfig::default());
        let mut bad = bill(&world, "CK2");
        bad["billdate"] = json!("2024/05/20");
        bad["customerid_id"] = json!("42");
        bad["material_entity"][0]["qty"] = json!("0");
        bad["material_entity"][0]["unit_id"] = json!("43");
        bad["material_entity"][0]["stockid_id"] = json!("44");
        let messages = store(&mut state.lock(), bad)
            .expect_err("rejected")
            .join("\n");
        for expected in [
            "格式错误，应为yyyy-MM-dd",
            "参数customerid_id[42]不存在",
            "第1行数量qty必须大于0",
            "第1行计量单位unit_id[43]不是商品",
            "第1行参数stockid_id[44]不存在",
        ] {
            assert!(
                messages.contains(expected),
                "{expected} missing from {messages}"
            );
        }
        assert!(state.bills().is_empty());
    }
}
