//! The bill the seed's table asks for, computed here from a raw order and the 星辰 simulator's
//! master data, and the field-by-field comparison with the bill the simulator holds.
//!
//! This is deliberately a second, plain reading of the seed, written without the `scheme` crate:
//! if the scheme or a worker maps a field wrongly, the two readings disagree and the test says
//! which field of which bill. Decimals are compared as decimals (`"99.0000"` equals `"99"`).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use simulator::xingchen::XingchenState;

/// The `material_entity` custom field that carries the shop number (项目).
pub const PROJECT_FIELD: &str = "custom_field42obgp309axx5_number";

/// Header fields the simulator adds to every bill it stores.
const SIMULATOR_HEADER_FIELDS: [&str; 2] = ["id", "billstatus"];

/// The 星辰 ids a bill may name, by number, as the simulator holds them now.
#[derive(Debug, Clone)]
pub struct MasterData {
    customers: HashMap<String, String>,
    materials: HashMap<String, (String, String)>,
    stores: HashMap<String, String>,
}

impl MasterData {
    /// Reads the customers, materials and stores the simulator holds.
    pub fn of(state: &XingchenState) -> MasterData {
        MasterData {
            customers: state
                .customers()
                .into_iter()
                .map(|c| (c.number, c.id))
                .collect(),
            materials: state
                .materials()
                .into_iter()
                .map(|m| (m.number, (m.id, m.base_unit_id)))
                .collect(),
            stores: state
                .stores()
                .into_iter()
                .map(|s| (s.number, s.id))
                .collect(),
        }
    }

    /// Whether a material with this number exists.
    pub fn has_material(&self, goods_no: &str) -> bool {
        self.materials.contains_key(goods_no)
    }
}

/// One expected line of a bill.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedLine {
    /// `materialid_id`: the material id of the row's `goods_no`.
    pub materialid_id: String,
    /// `stockid_id`: the store id of the order's `warehouse_no`.
    pub stockid_id: String,
    /// `qty`: the row's `goods_count`.
    pub qty: Decimal,
    /// `unit_id`: the base unit id of the row's material.
    pub unit_id: String,
    /// `taxprice`: the row's `market_price`.
    pub taxprice: Decimal,
    /// `cess`: always 13.
    pub cess: Decimal,
    /// The project custom field: the order's `shop_no`.
    pub project: String,
}

/// The bill one order should become.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedBill {
    /// `billdate`: the date part of `consign_time`, as WDT wrote it.
    pub billdate: String,
    /// `billno`: the order's `stockout_no`.
    pub billno: String,
    /// `customerid_id`: the customer id of the order's `shop_no`.
    pub customerid_id: String,
    /// One line per `details_list` row, in order.
    pub lines: Vec<ExpectedLine>,
}

/// Why an order has no expected bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoBill(pub String);

impl fmt::Display for NoBill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The expected bill of `order`, or why the seed's table gives none (a number 星辰 lacks, a
/// field absent).
pub fn expected_bill(
    order: &Map<String, Value>,
    master: &MasterData,
) -> Result<ExpectedBill, NoBill> {
    let field = |name: &str| text(order, name).ok_or_else(|| NoBill(format!("no {name}")));
    let consign_time = field("consign_time")?;
    let shop_no = field("shop_no")?;
    let warehouse_no = field("warehouse_no")?;
    let customerid_id = master
        .customers
        .get(&shop_no)
        .ok_or_else(|| NoBill(format!("no customer {shop_no}")))?;
    let stockid_id = master
        .stores
        .get(&warehouse_no)
        .ok_or_else(|| NoBill(format!("no store {warehouse_no}")))?;

    let rows = order
        .get("details_list")
        .and_then(Value::as_array)
        .ok_or_else(|| NoBill("no details_list".to_owned()))?;
    let lines = rows
        .iter()
        .map(|row| {
            let row = row
                .as_object()
                .ok_or_else(|| NoBill("a details_list row is no object".to_owned()))?;
            expected_line(row, master, stockid_id, &shop_no)
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(ExpectedBill {
        billdate: consign_time.chars().take(10).collect(),
        billno: field("stockout_no")?,
        customerid_id: customerid_id.clone(),
        lines,
    })
}

fn expected_line(
    row: &Map<String, Value>,
    master: &MasterData,
    stockid_id: &str,
    shop_no: &str,
) -> Result<ExpectedLine, NoBill> {
    let goods_no = text(row, "goods_no").ok_or_else(|| NoBill("a row has no goods_no".into()))?;
    let (material_id, base_unit_id) = master
        .materials
        .get(&goods_no)
        .ok_or_else(|| NoBill(format!("no material {goods_no}")))?;
    let number = |name: &str| {
        row.get(name)
            .and_then(decimal)
            .ok_or_else(|| NoBill(format!("row of {goods_no} has no decimal {name}")))
    };
    Ok(ExpectedLine {
        materialid_id: material_id.clone(),
        stockid_id: stockid_id.to_owned(),
        qty: number("goods_count")?,
        unit_id: base_unit_id.clone(),
        taxprice: number("market_price")?,
        cess: Decimal::from(13),
        project: shop_no.to_owned(),
    })
}

/// Every difference between the bill the simulator holds and the expected one; empty when
/// they agree field by field.
pub fn differences(actual: &Value, expected: &ExpectedBill) -> Vec<String> {
    let mut found = Vec::new();
    let Some(bill) = actual.as_object() else {
        return vec![format!("bill {} is not an object", expected.billno)];
    };
    let mut check_text = |name: &str, wanted: &str| {
        let got = text(bill, name);
        if got.as_deref() != Some(wanted) {
            found.push(format!("{name}: expected {wanted:?}, found {got:?}"));
        }
    };
    check_text("billdate", &expected.billdate);
    check_text("billno", &expected.billno);
    check_text("customerid_id", &expected.customerid_id);

    let known = ["billdate", "billno", "customerid_id", "material_entity"];
    for key in bill.keys() {
        if !known.contains(&key.as_str()) && !SIMULATOR_HEADER_FIELDS.contains(&key.as_str()) {
            found.push(format!("unexpected header field {key}"));
        }
    }

    let lines = bill
        .get("material_entity")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if lines.len() != expected.lines.len() {
        found.push(format!(
            "material_entity: expected {} lines, found {}",
            expected.lines.len(),
            lines.len()
        ));
    }
    for (i, (line, wanted)) in lines.iter().zip(&expected.lines).enumerate() {
        found.extend(
            line_differences(line, wanted)
                .into_iter()
                .map(|d| format!("line {}: {d}", i + 1)),
        );
    }
    found
}

fn line_differences(line: &Value, expected: &ExpectedLine) -> Vec<String> {
    let mut found = Vec::new();
    let Some(line) = line.as_object() else {
        return vec!["not an object".to_owned()];
    };
    let texts = [
        ("materialid_id", &expected.materialid_id),
        ("stockid_id", &expected.stockid_id),
        ("unit_id", &expected.unit_id),
        (PROJECT_FIELD, &expected.project),
    ];
    for (name, wanted) in texts {
        let got = text(line, name);
        if got.as_deref() != Some(wanted.as_str()) {
            found.push(format!("{name}: expected {wanted:?}, found {got:?}"));
        }
    }
    let decimals = [
        ("qty", expected.qty),
        ("taxprice", expected.taxprice),
        ("cess", expected.cess),
    ];
    for (name, wanted) in decimals {
        let got = line.get(name).and_then(decimal);
        if got != Some(wanted) {
            found.push(format!(
                "{name}: expected {wanted}, found {:?}",
                line.get(name)
            ));
        }
    }
    let known = [
        "materialid_id",
        "stockid_id",
        "qty",
        "unit_id",
        "taxprice",
        "cess",
        PROJECT_FIELD,
        // A modification may name the line it replaces.
        "id",
    ];
    for key in line.keys() {
        if !known.contains(&key.as_str()) {
            found.push(format!("unexpected line field {key}"));
        }
    }
    found
}

/// A field as text: strings as they are, numbers as written; `None` for anything else or empty.
fn text(object: &Map<String, Value>, name: &str) -> Option<String> {
    match object.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use simulator::world::World;
    use simulator::xingchen::SimulatorConfig;

    fn order(world: &World) -> Map<String, Value> {
        let goods = &world.goods[0];
        json!({
            "stockout_no": "CK1", "consign_time": "2024-05-01 23:59:59",
            "shop_no": world.shops[0].shop_no, "warehouse_no": world.warehouses[0].warehouse_no,
            "details_list": [{"goods_no": goods.goods_no, "goods_count": "2.0000",
                              "market_price": "19.9000"}],
        })
        .as_object()
        .cloned()
        .expect("an object")
    }

    #[test]
    fn a_bill_as_the_seed_maps_it_has_no_differences_and_a_wrong_field_is_named() {
        let world = World::generate(1);
        let master = MasterData::of(&XingchenState::new(&world, SimulatorConfig::default()));
        let expected = expected_bill(&order(&world), &master).expect("a bill");
        let goods = &world.goods[0];
        let mut bill = json!({
            "id": "9", "billstatus": "Z", "billdate": "2024-05-01", "billno": "CK1",
            "customerid_id": world.shops[0].customer_id,
            "material_entity": [{
                "materialid_id": goods.material_id, "stockid_id": world.warehouses[0].store_id,
                "qty": "2", "unit_id": goods.base_unit_id, "taxprice": "19.9", "cess": "13",
                PROJECT_FIELD: world.shops[0].shop_no,
            }],
        });
        assert_eq!(differences(&bill, &expected), Vec::<String>::new());

        bill["material_entity"][0]["qty"] = json!("3");
        bill["billdate"] = json!("2024-05-02");
        let found = differences(&bill, &expected).join("\n");
        assert!(
            found.contains("qty") && found.contains("billdate"),
            "{found}"
        );
    }

    #[test]
    fn an_unknown_material_gives_no_bill() {
        let world = World::generate(1);
        let state = XingchenState::new(&world, SimulatorConfig::default());
        state.remove_material(&world.goods[0].goods_no);
        let missing = expected_bill(&order(&world), &MasterData::of(&state)).expect_err("none");
        assert!(missing.0.contains(&world.goods[0].goods_no), "{missing}");
    }
}
