//! The V1 master-data endpoints: `customer_list`/`_detail`, `material_list`/`_detail`,
//! `store_list`/`_detail` under `/jdy/basedata/`, rendered with V1 wire names.
//!
//! Lists are paged with `page`/`pagesize` (at most [`MAX_PAGE_SIZE`] rows, whatever is asked) and
//! filtered by `search` on number or name; details take `number` or `id`. The gateway checks
//! before these answers are left to the gateway module.

use axum::response::Response;
use serde_json::{Value, json};

use super::gateway::{v1_fail, v1_ok};
use super::state::{SimCustomer, SimMaterial, SimStore, XingchenState};

/// The most rows one list page returns.
pub const MAX_PAGE_SIZE: u64 = 100;
/// The page size when the request names none.
const DEFAULT_PAGE_SIZE: u64 = 10;

/// Answers a `/jdy/basedata/*` path, or `None` when the path is not one of them.
pub(super) fn answer(state: &XingchenState, path: &str, body: &Value) -> Option<Response> {
    let name = path.strip_prefix("/jdy/basedata/")?;
    let (kind, action) = name.rsplit_once('_')?;
    let rows: Vec<Value> = match kind {
        "customer" => state.customers().iter().map(customer_row).collect(),
        "material" => state.materials().iter().map(material_row).collect(),
        "store" => state.stores().iter().map(store_row).collect(),
        _ => return None,
    };
    match action {
        "list" => Some(v1_ok(page(filter(rows, body), body))),
        "detail" => Some(detail(rows, body)),
        _ => None,
    }
}

fn customer_row(customer: &SimCustomer) -> Value {
    json!({
        "id": customer.id, "number": customer.number, "name": customer.name,
        "enable": "1", "group_id": "", "clevel_id": "",
    })
}

fn material_row(material: &SimMaterial) -> Value {
    let mut row = json!({
        "id": material.id, "number": material.number, "name": material.name,
        "checktype": 1, "baseunitid_id": material.base_unit_id, "isbatch": false,
        "isserial": false, "enable": "1",
    });
    let further = material
        .unit_ids
        .iter()
        .filter(|id| **id != material.base_unit_id);
    for (i, unit_id) in further.take(3).enumerate() {
        row[format!("fixunit{}_id", i + 1)] = json!(unit_id);
        row[format!("coefficient{}", i + 1)] = json!("1");
    }
    row
}

fn store_row(store: &SimStore) -> Value {
    json!({
        "id": store.id, "number": store.number, "name": store.name,
        "isallowneg": false, "isallowfreight": false, "enable": "1",
    })
}

/// Reads a positive integer sent as a number or a string.
pub(super) fn positive(body: &Value, name: &str) -> Option<u64> {
    let value = &body[name];
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|n| *n > 0)
}

fn filter(rows: Vec<Value>, body: &Value) -> Vec<Value> {
    let search = body["search"].as_str().unwrap_or("");
    if search.is_empty() {
        return rows;
    }
    let matches =
        |row: &Value, field: &str| row[field].as_str().is_some_and(|t| t.contains(search));
    rows.into_iter()
        .filter(|row| matches(row, "number") || matches(row, "name"))
        .collect()
}

/// One page of rows in the V1 list shape (`count` as a string, as the docs show).
pub(super) fn page(rows: Vec<Value>, body: &Value) -> Value {
    let page_no = positive(body, "page").unwrap_or(1);
    let page_size = positive(body, "pagesize")
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .min(MAX_PAGE_SIZE);
    let count = rows.len() as u64;
    let total_pages = count.div_ceil(page_size);
    let start = ((page_no - 1) * page_size).min(count) as usize;
    let slice: Vec<Value> = rows
        .into_iter()
        .skip(start)
        .take(page_size as usize)
        .collect();
    json!({
        "rows": slice.clone(), "totalpage": total_pages, "curpagesize": slice.len(),
        "count": count.to_string(), "pagesize": page_size, "page": page_no,
    })
}

fn detail(rows: Vec<Value>, body: &Value) -> Response {
    for key in ["number", "id"] {
        let wanted = match &body[key] {
            Value::String(text) if !text.is_empty() => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => continue,
        };
        return match rows.into_iter().find(|row| row[key] == wanted.as_str()) {
            Some(row) => v1_ok(row),
            None => v1_fail(&format!("参数{key}[{wanted}]不存在")),
        };
    }
    v1_fail("参数id和number不能同时为空")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_every_row_once() {
        let rows: Vec<Value> = (0..23)
            .map(|i| json!({ "number": i.to_string() }))
            .collect();
        let mut seen = Vec::new();
        for page_no in 1..=3 {
            let data = page(rows.clone(), &json!({ "page": page_no, "pagesize": "10" }));
            assert_eq!(data["totalpage"], 3);
            assert_eq!(data["count"], "23");
            seen.extend(data["rows"].as_array().expect("rows").iter().cloned());
        }
        assert_eq!(seen, rows);
    }

    #[test]
    fn page_size_is_capped() {
        let rows: Vec<Value> = (0..250)
            .map(|i| json!({ "number": i.to_string() }))
            .collect();
        let data = page(rows, &json!({ "page": 1, "pagesize": 1000 }));
        assert_eq!(data["curpagesize"], 100);
        assert_eq!(data["totalpage"], 3);
    }
}
