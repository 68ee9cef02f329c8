//! Stock-out orders generated from a [`World`], as `wdt.stockout.order.query.trade` returns them.
//!
//! Each order is the JSON object WDT would send, with every field of the seed's response table:
//! ids and statuses as JSON numbers, money, counts and weights as four-decimal strings, times in
//! Beijing `yyyy-MM-dd HH:mm:ss` (`0000-00-00 00:00:00` where WDT has none), Chinese text, emoji in
//! some buyer messages, several goods lines with gifts among them, and a position list per line.
//! The privacy fields the Qimen path withholds are present and empty. The same seed and settings
//! always give the same orders. Serving and filtering them is [`crate::wdt`]'s job.

use chrono::{DateTime, Duration, FixedOffset, NaiveDateTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use crate::world::{Goods, Shop, Warehouse, World};

/// One order as WDT sends it.
pub type OrderJson = Map<String, Value>;

/// The format of every WDT time.
pub const WDT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// What WDT writes for a time it does not have.
pub const ZERO_TIME: &str = "0000-00-00 00:00:00";

/// UTC+8, the zone of every WDT time.
pub fn beijing() -> FixedOffset {
    // Invariant: 8 hours is well inside the ±24 h range FixedOffset accepts.
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The current time in Beijing.
pub fn now_beijing() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&beijing())
}

/// Writes a time as WDT does.
pub fn format_time(time: &DateTime<FixedOffset>) -> String {
    time.with_timezone(&beijing())
        .format(WDT_TIME_FORMAT)
        .to_string()
}

/// Reads a WDT time (Beijing wall time); `None` for the zero time, the empty string and garbage.
pub fn parse_time(text: &str) -> Option<DateTime<FixedOffset>> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), WDT_TIME_FORMAT).ok()?;
    beijing().from_local_datetime(&naive).single()
}

/// Reads a time given to the simulator binary: Beijing `YYYY-MM-DD HH:MM:SS` or RFC 3339.
pub fn parse_cli_time(text: &str) -> Result<DateTime<FixedOffset>, String> {
    parse_time(text)
        .or_else(|| DateTime::parse_from_rfc3339(text.trim()).ok())
        .map(|time| time.with_timezone(&beijing()))
        .ok_or_else(|| {
            format!("invalid time {text:?}: expected \"YYYY-MM-DD HH:MM:SS\" or RFC 3339")
        })
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderGenConfig {
    /// The seed; the same seed gives the same orders.
    pub seed: u64,
    /// How many orders.
    pub count: usize,
    /// The earliest consign time; the first order is consigned exactly then.
    pub consign_from: DateTime<FixedOffset>,
    /// The latest consign time; the last order is consigned exactly then.
    pub consign_to: DateTime<FixedOffset>,
    /// The `stockout_id` of the first order; the others follow in consign-time order.
    pub first_stockout_id: i64,
    /// The share of orders not shipped (cancelled or only audited), which default queries skip.
    pub unshipped_fraction: f64,
}

impl OrderGenConfig {
    /// `count` orders consigned between `consign_from` and `consign_to`, 4 % of them unshipped.
    pub fn new(
        seed: u64,
        count: usize,
        consign_from: DateTime<FixedOffset>,
        consign_to: DateTime<FixedOffset>,
    ) -> OrderGenConfig {
        OrderGenConfig {
            seed,
            count,
            consign_from,
            consign_to,
            first_stockout_id: 58_001,
            unshipped_fraction: 0.04,
        }
    }
}

/// Generates the orders of `config` from `world`, in `stockout_id` order.
pub fn generate_orders(world: &World, config: &OrderGenConfig) -> Vec<OrderJson> {
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5354_4f43_4b4f_5554);
    let mut times = consign_times(&mut rng, config);
    times.sort();
    times
        .into_iter()
        .enumerate()
        .map(|(i, consign_time)| {
            let shipped = !rng.random_bool(config.unshipped_fraction.clamp(0.0, 1.0));
            let stockout_id = config.first_stockout_id + i as i64;
            generate_order(world, &mut rng, stockout_id, consign_time, shipped)
        })
        .collect()
}

/// The consign times: both ends of the range exactly, the rest uniform in between.
fn consign_times(rng: &mut StdRng, config: &OrderGenConfig) -> Vec<DateTime<FixedOffset>> {
    let span_secs = (config.consign_to - config.consign_from)
        .num_seconds()
        .max(0);
    (0..config.count)
        .map(|i| match i {
            0 => config.consign_from,
            1 => config.consign_to,
            _ => config.consign_from + Duration::seconds(rng.random_range(0..=span_secs)),
        })
        .collect()
}

/// Generates one order; unshipped orders have no consign time and status 5 or 55.
pub fn generate_order(
    world: &World,
    rng: &mut StdRng,
    stockout_id: i64,
    consign_time: DateTime<FixedOffset>,
    shipped: bool,
) -> OrderJson {
    let shop = &world.shops[rng.random_range(0..world.shops.len())];
    let warehouse = &world.warehouses[rng.random_range(0..world.warehouses.len())];
    let times = OrderTimes::around(rng, consign_time);
    let details = generate_details(world, rng, stockout_id, &times);

    let mut order = Map::new();
    identity(&mut order, rng, stockout_id, shop, &times);
    status(&mut order, rng, shipped);
    places(&mut order, shop, warehouse);
    totals(&mut order, rng, &details);
    logistics(&mut order, rng, stockout_id);
    people(&mut order, rng);
    times.write(&mut order, shipped);
    remarks(&mut order, rng);
    leftovers(&mut order);
    order.insert(
        "details_list".into(),
        Value::Array(details.into_iter().map(Value::Object).collect()),
    );
    order
}

/// The times of one order, all derived from its consign time.
struct OrderTimes {
    trade: DateTime<FixedOffset>,
    pay: Option<DateTime<FixedOffset>>,
    created: DateTime<FixedOffset>,
    checked: Option<DateTime<FixedOffset>>,
    consign: DateTime<FixedOffset>,
    modified: DateTime<FixedOffset>,
}

impl OrderTimes {
    fn around(rng: &mut StdRng, consign: DateTime<FixedOffset>) -> OrderTimes {
        let trade = consign - Duration::seconds(rng.random_range(3_600..=72 * 3_600));
        // Cash on delivery and offline orders have no payment time; WDT writes zeros.
        let pay =
            (!rng.random_bool(0.06)).then(|| trade + Duration::seconds(rng.random_range(5..=600)));
        let created = pay.unwrap_or(trade) + Duration::seconds(rng.random_range(30..=1_800));
        let checked = (!rng.random_bool(0.03))
            .then(|| created + Duration::seconds(rng.random_range(60..=3_600)));
        // Most orders change right after shipping; a few again days later (refunds, completion).
        let later = if rng.random_bool(0.1) {
            rng.random_range(86_400..=5 * 86_400)
        } else {
            0
        };
        let modified = consign + Duration::seconds(rng.random_range(1..=600) + later);
        OrderTimes {
            trade,
            pay,
            created,
            checked,
            consign,
            modified,
        }
    }

    fn write(&self, order: &mut OrderJson, shipped: bool) {
        let time = |t: Option<DateTime<FixedOffset>>| {
            json!(t.map_or(ZERO_TIME.to_owned(), |t| format_time(&t)))
        };
        order.insert("trade_time".into(), time(Some(self.trade)));
        order.insert("pay_time".into(), time(self.pay));
        order.insert("created".into(), time(Some(self.created)));
        order.insert("stock_check_time".into(), time(self.checked));
        order.insert("consign_time".into(), time(shipped.then_some(self.consign)));
        order.insert("modified".into(), time(Some(self.modified)));
        order.insert("to_deliver_time".into(), json!(""));
        order.insert("pre_charge_time".into(), json!(ZERO_TIME));
    }
}

fn identity(order: &mut OrderJson, rng: &mut StdRng, id: i64, shop: &Shop, times: &OrderTimes) {
    let day = times.created.format("%Y%m%d");
    let stockout_no = format!("CK{day}{id:07}");
    let trade_no = format!("JY{day}{:07}", id + 400_000);
    // Offline shops have no platform order number.
    let tid = if shop.platform_id == 0 {
        String::new()
    } else {
        format!("36{:017}", rng.random_range(0..100_000_000_000_000_000_u64))
    };
    order.insert("stockout_id".into(), json!(id));
    order.insert("order_no".into(), json!(stockout_no));
    order.insert("stockout_no".into(), json!(stockout_no));
    order.insert("src_order_no".into(), json!(trade_no));
    order.insert("trade_no".into(), json!(trade_no));
    order.insert("trade_id".into(), json!(90_000 + id));
    order.insert("src_tids".into(), json!(tid));
    order.insert("src_trade_no".into(), json!(tid));
    order.insert("outer_no".into(), json!(""));
    order.insert(
        "md5_str".into(),
        json!(format!("{:032x}", rng.random::<u128>())),
    );
}

fn status(order: &mut OrderJson, rng: &mut StdRng, shipped: bool) {
    let status = if shipped {
        *pick(rng, &[95, 95, 95, 110, 110, 105, 113])
    } else {
        *pick(rng, &[5, 55])
    };
    let trade_status = if status == 55 { 55 } else { status };
    let (order_type, name) = (1, "销售出库");
    order.insert("status".into(), json!(status));
    order.insert("trade_status".into(), json!(trade_status));
    order.insert("order_type".into(), json!(order_type));
    order.insert("order_type_name".into(), json!(name));
    order.insert("trade_type".into(), json!(*pick(rng, &[1, 1, 1, 1, 2, 4])));
    order.insert("subtype".into(), json!(0));
    order.insert("src_order_type".into(), json!(1));
    order.insert("consign_status".into(), json!(if shipped { 12 } else { 0 }));
    order.insert("wms_status".into(), json!(if shipped { 3 } else { 0 }));
    order.insert(
        "refund_status".into(),
        json!(if rng.random_bool(0.05) { 2 } else { 0 }),
    );
    order.insert("ebill_status".into(), json!(if shipped { 2 } else { 0 }));
    order.insert("is_allocated".into(), json!(1));
    order.insert("bad_reason".into(), json!(0));
    order.insert("block_reason".into(), json!(0));
    order.insert("freeze_reason".into(), json!(0));
}

fn places(order: &mut OrderJson, shop: &Shop, warehouse: &Warehouse) {
    order.insert("shop_no".into(), json!(shop.shop_no));
    order.insert("shop_name".into(), json!(shop.shop_name));
    order.insert("platform_id".into(), json!(shop.platform_id));
    order.insert("shop_remark".into(), json!(""));
    order.insert("warehouse_no".into(), json!(warehouse.warehouse_no));
    order.insert("warehouse_name".into(), json!(warehouse.warehouse_name));
    order.insert("warehouse_id".into(), json!(warehouse.warehouse_id));
    order.insert("warehouse_type".into(), json!(1));
    order.insert("customer_id".into(), json!(0));
    order.insert("customer_no".into(), json!(""));
    order.insert("customer_name".into(), json!(""));
    order.insert("nick_name".into(), json!(""));
    for field in [
        "receiver_name",
        "receiver_address",
        "receiver_mobile",
        "receiver_telno",
    ] {
        order.insert(field.into(), json!(""));
    }
    order.insert("receiver_country".into(), json!(0));
    order.insert("receiver_province".into(), json!("浙江省"));
    order.insert("receiver_city".into(), json!("杭州市"));
    order.insert("receiver_district".into(), json!("西湖区"));
    order.insert("receiver_area".into(), json!("浙江省 杭州市 西湖区"));
    order.insert("receiver_zip".into(), json!(""));
    order.insert("receiver_dtb".into(), json!(""));
    order.insert("receiver_ring".into(), json!(0));
    order.insert("id_card_type".into(), json!(0));
    order.insert("id_card".into(), json!(""));
}

fn totals(order: &mut OrderJson, rng: &mut StdRng, details: &[OrderJson]) {
    let sum = |field: &str| -> Decimal { details.iter().map(|d| decimal_of(&d[field])).sum() };
    let goods_total = sum("total_amount");
    let discount = sum("discount");
    let post_amount = Decimal::new(*pick(rng, &[0, 0, 800, 1000, 1200]) * 100, 4);
    let paid = goods_total + post_amount;
    let weight = sum("weight");
    order.insert("goods_count".into(), money(sum("goods_count")));
    order.insert("goods_type_count".into(), json!(details.len()));
    order.insert("goods_total_amount".into(), money(goods_total + discount));
    order.insert(
        "goods_total_cost".into(),
        money(
            details
                .iter()
                .map(|d| decimal_of(&d["cost_price"]) * decimal_of(&d["goods_count"]))
                .sum(),
        ),
    );
    order.insert("discount".into(), money(discount));
    order.insert("post_amount".into(), money(post_amount));
    order.insert("paid".into(), money(paid));
    order.insert("receivable".into(), money(paid));
    order.insert("cod_amount".into(), money(Decimal::ZERO));
    order.insert("tax".into(), money(Decimal::ZERO));
    order.insert("tax_rate".into(), money(Decimal::ZERO));
    order.insert("currency".into(), json!(""));
    order.insert("weight".into(), money(weight));
    order.insert("calc_weight".into(), money(weight));
    order.insert("post_weight".into(), money(weight));
    order.insert(
        "post_fee".into(),
        money(Decimal::new(rng.random_range(400..=1500) * 100, 4)),
    );
    order.insert("calc_post_cost".into(), money(Decimal::new(800 * 100, 4)));
    order.insert("post_cost".into(), money(Decimal::new(800 * 100, 4)));
    order.insert("package_fee".into(), money(Decimal::ZERO));
    order.insert("package_cost".into(), money(Decimal::new(50 * 100, 4)));
    order.insert("unknown_goods_amount".into(), money(Decimal::ZERO));
}

fn logistics(order: &mut OrderJson, rng: &mut StdRng, id: i64) {
    let (code, name, kind, logistics_id) = *pick(
        rng,
        &[
            ("SF", "顺丰速运", 2, 11),
            ("ZTO", "中通快递", 4, 12),
            ("YTO", "圆通速递", 5, 13),
        ],
    );
    order.insert(
        "logistics_no".into(),
        json!(format!("{code}{}", 7_000_000_000_i64 + id * 37)),
    );
    order.insert("logistics_code".into(), json!(code));
    order.insert("logistics_name".into(), json!(name));
    order.insert("logistics_type".into(), json!(kind));
    order.insert("logistics_id".into(), json!(logistics_id));
    order.insert("logistics_template_id".into(), json!(logistics_id + 100));
    order.insert("sendbill_template_id".into(), json!(201));
    order.insert("package_id".into(), json!(0));
    order.insert("delivery_term".into(), json!(1));
    order.insert("batch_no".into(), json!(""));
    order.insert("print_batch_no".into(), json!(""));
    order.insert("picklist_no".into(), json!(format!("PL{}", id / 50)));
    order.insert("picklist_seq".into(), json!(id % 50 + 1));
    for field in [
        "sendbill_print_status",
        "logistics_print_status",
        "picklist_print_status",
    ] {
        order.insert(field.into(), json!(1));
    }
    order.insert("invoice_print_status".into(), json!(0));
    order.insert("pos_allocate_mode".into(), json!(0));
}

fn people(order: &mut OrderJson, rng: &mut StdRng) {
    let (no, name) = *pick(rng, &[("E01", "张三"), ("E02", "李四"), ("E03", "王五")]);
    let employee_id = 100 + i64::from(no.as_bytes()[2] - b'0');
    for role in ["salesman", "packager", "picker", "printer", "examiner"] {
        order.insert(format!("{role}_no"), json!(no));
        order.insert(format!("{role}_name"), json!(name));
    }
    order.insert("fullname".into(), json!(name));
    order.insert("employee_no".into(), json!(no));
    order.insert("checker_name".into(), json!(name));
    order.insert("operator_name".into(), json!(name));
    for role in [
        "operator",
        "printer",
        "picker",
        "sorter",
        "examiner",
        "consigner",
        "packager",
    ] {
        order.insert(format!("{role}_id"), json!(employee_id));
    }
    order.insert("checkouter_id".into(), json!(0));
    order.insert("watcher_id".into(), json!(0));
    order.insert("pick_error_count".into(), json!(0));
    order.insert("pack_score".into(), money(Decimal::ONE));
    order.insert("pick_score".into(), money(Decimal::ONE));
}

const BUYER_MESSAGES: &[&str] = &[
    "",
    "",
    "请尽快发货🙏",
    "包装好一点😊",
    "不要放快递柜",
    "送人的，别放发票🎁",
    "周末送货",
];
const CS_REMARKS: &[&str] = &["", "", "老客户，优先发", "已电话确认地址"];

fn remarks(order: &mut OrderJson, rng: &mut StdRng) {
    order.insert("buyer_message".into(), json!(*pick(rng, BUYER_MESSAGES)));
    order.insert("cs_remark".into(), json!(*pick(rng, CS_REMARKS)));
    order.insert("remark".into(), json!(""));
    order.insert("print_remark".into(), json!(""));
    order.insert("flag_name".into(), json!(""));
    order.insert("flag_id".into(), json!(0));
    order.insert("stockout_reason".into(), json!(""));
    order.insert("error_info".into(), json!(""));
    let with_invoice = rng.random_bool(0.1);
    order.insert("has_invoice".into(), json!(i32::from(with_invoice)));
    order.insert("invoice_type".into(), json!(i32::from(with_invoice)));
    order.insert(
        "invoice_title".into(),
        json!(if with_invoice {
            "杭州示例科技有限公司"
        } else {
            ""
        }),
    );
    order.insert(
        "invoice_content".into(),
        json!(if with_invoice { "明细" } else { "" }),
    );
    order.insert("invoice_id".into(), json!(0));
}

/// The fields the simulator has no story for, with the values WDT sends when they are unused.
fn leftovers(order: &mut OrderJson) {
    for field in [
        "fenxiao_type",
        "custom_type",
        "note_count",
        "reason_id",
        "lock_id",
    ] {
        order.insert(field.into(), json!(0));
    }
    order.insert("fenxiao_nick".into(), json!(""));
    order.insert("reserve".into(), json!(""));
}

fn generate_details(
    world: &World,
    rng: &mut StdRng,
    id: i64,
    times: &OrderTimes,
) -> Vec<OrderJson> {
    let lines = rng.random_range(1..=4_usize);
    let with_gift = lines > 1 && rng.random_bool(0.3);
    let src_tid = format!("36{:017}", rng.random_range(0..100_000_000_000_000_000_u64));
    (0..lines)
        .map(|line| {
            let goods = &world.goods[rng.random_range(0..world.goods.len())];
            let gift_type = if with_gift && line == lines - 1 {
                *pick(rng, &[1, 2])
            } else {
                0
            };
            let rec_id = id * 10 + line as i64;
            let mut detail = generate_detail(rng, goods, rec_id, id, gift_type, times);
            detail.insert("src_tid".into(), json!(src_tid));
            detail.insert("src_oid".into(), json!(format!("{src_tid}{line}")));
            detail
        })
        .collect()
}

fn generate_detail(
    rng: &mut StdRng,
    goods: &Goods,
    rec_id: i64,
    stockout_id: i64,
    gift_type: i64,
    times: &OrderTimes,
) -> OrderJson {
    let count = Decimal::from(rng.random_range(1..=5));
    let market = goods.market_price;
    // Gifts ship at no charge; other lines sell at 80 to 100 % of the retail price.
    let sell = if gift_type == 0 {
        (market * Decimal::new(rng.random_range(80..=100), 2)).round_dp(2)
    } else {
        Decimal::ZERO
    };
    let discount = (market - sell) * count;
    let total = sell * count;
    let cost = (market * Decimal::new(45, 2)).round_dp(2);
    let weight = Decimal::new(rng.random_range(50..=2_000), 3) * count;

    let mut d = Map::new();
    d.insert("rec_id".into(), json!(rec_id));
    d.insert("stockout_id".into(), json!(stockout_id));
    d.insert("sale_order_id".into(), json!(660_000 + rec_id));
    d.insert("src_order_detail_id".into(), json!(660_000 + rec_id));
    d.insert("goods_id".into(), json!(goods.goods_id));
    d.insert("goods_no".into(), json!(goods.goods_no));
    d.insert("goods_name".into(), json!(goods.goods_name));
    d.insert("goods_type".into(), json!(1));
    d.insert("spec_id".into(), json!(goods.spec_id));
    d.insert("spec_no".into(), json!(goods.spec_no));
    d.insert("spec_code".into(), json!(goods.spec_code));
    d.insert("spec_name".into(), json!(goods.spec_name));
    d.insert("barcode".into(), json!(goods.barcode));
    d.insert("brand_no".into(), json!(goods.brand_no));
    d.insert("brand_name".into(), json!(goods.brand_name));
    d.insert("unit_name".into(), json!(goods.unit_name));
    d.insert("suite_no".into(), json!(""));
    d.insert("gift_type".into(), json!(gift_type));
    d.insert("goods_count".into(), money(count));
    d.insert("num".into(), money(count));
    d.insert("num2".into(), money(count));
    d.insert("unit_ratio".into(), money(Decimal::ONE));
    d.insert("market_price".into(), money(market));
    d.insert("sell_price".into(), money(sell));
    d.insert("price".into(), money(sell));
    d.insert("cost_price".into(), money(cost));
    d.insert("total_amount".into(), money(total));
    d.insert("discount".into(), money(discount));
    d.insert("share_amount".into(), money(total));
    d.insert("paid".into(), money(total));
    d.insert("share_post".into(), money(Decimal::ZERO));
    d.insert("tax_rate".into(), money(Decimal::ZERO));
    d.insert("weight".into(), money(weight));
    d.insert(
        "remark".into(),
        json!(if gift_type == 0 { "" } else { "满赠" }),
    );
    d.insert("refund_status".into(), json!(0));
    d.insert("base_unit_id".into(), json!(1));
    d.insert("unit_id".into(), json!(1));
    for field in [
        "from_mask",
        "batch_id",
        "is_package",
        "is_zero_cost",
        "scan_type",
    ] {
        d.insert(field.into(), json!(0));
    }
    d.insert("src_order_type".into(), json!(1));
    d.insert("is_examined".into(), json!(1));
    for i in 1..=6 {
        d.insert(format!("good_prop{i}"), json!(""));
        d.insert(format!("prop{i}"), json!(""));
    }
    d.insert("batch_no".into(), json!(""));
    d.insert("batch_remark".into(), json!(""));
    d.insert("expire_date".into(), json!(ZERO_TIME));
    let positions = generate_positions(rng, rec_id, count, cost, times);
    d.insert("position_list".into(), Value::Array(positions));
    d
}

fn generate_positions(
    rng: &mut StdRng,
    rec_id: i64,
    count: Decimal,
    cost: Decimal,
    times: &OrderTimes,
) -> Vec<Value> {
    // A line of more than one piece is sometimes picked from two shelves.
    let split = count > Decimal::ONE && rng.random_bool(0.3);
    let parts = if split {
        vec![Decimal::ONE, count - Decimal::ONE]
    } else {
        vec![count]
    };
    parts
        .into_iter()
        .enumerate()
        .map(|(i, num)| {
            let position_id = rng.random_range(1..=400_i64);
            json!({
                "rec_id": rec_id * 10 + i as i64,
                "position_id": position_id,
                "position_no": format!("A-{:02}-{:02}", position_id / 20 + 1, position_id % 20 + 1),
                "stockout_order_detail_id": rec_id,
                "stockin_detail_id": 880_000 + rec_id,
                "stock_spec_detail_id": 990_000 + rec_id,
                "num": money(num),
                "position_goods_count": money(num),
                "batch_id": 0,
                "batch_no": "",
                "cost_price": money(cost),
                "modified": format_time(&times.consign),
            })
        })
        .collect()
}

/// Money, counts and weights as WDT writes them: a string with four decimals.
pub fn money(value: Decimal) -> Value {
    let mut value = value;
    value.rescale(4);
    Value::String(value.to_string())
}

/// Reads a money string or number back; zero for anything else.
pub fn decimal_of(value: &Value) -> Decimal {
    match value {
        Value::String(text) => text.parse().unwrap_or_default(),
        Value::Number(number) => number.to_string().parse().unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;

    fn config(count: usize) -> OrderGenConfig {
        let from = parse_cli_time("2024-05-01 00:00:00").unwrap();
        let to = parse_cli_time("2024-06-09 23:59:59").unwrap();
        OrderGenConfig::new(3, count, from, to)
    }

    #[test]
    fn same_seed_gives_same_orders_with_both_ends_of_the_range() {
        let world = World::generate(1);
        let orders = generate_orders(&world, &config(200));
        assert_eq!(orders, generate_orders(&world, &config(200)));
        let consigned: Vec<_> = orders
            .iter()
            .map(|o| o["consign_time"].as_str().unwrap())
            .collect();
        assert!(consigned.contains(&"2024-05-01 00:00:00") || consigned.contains(&ZERO_TIME));
        let ids: Vec<_> = orders
            .iter()
            .map(|o| o["stockout_id"].as_i64().unwrap())
            .collect();
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "ids rise with consign time"
        );
    }

    #[test]
    fn orders_look_like_wdt_sends_them() {
        let world = World::generate(1);
        let orders = generate_orders(&world, &config(300));
        let details = || {
            orders
                .iter()
                .flat_map(|o| o["details_list"].as_array().unwrap().iter())
        };
        assert!(
            orders
                .iter()
                .all(|o| o["stockout_id"].is_number() && o["paid"].is_string())
        );
        assert!(orders.iter().any(|o| o["pay_time"] == ZERO_TIME));
        assert!(
            orders
                .iter()
                .any(|o| o["buyer_message"].as_str().unwrap().contains('🙏'))
        );
        assert!(
            orders
                .iter()
                .any(|o| o["details_list"].as_array().unwrap().len() > 1)
        );
        assert!(details().any(|d| d["gift_type"] != 0));
        assert!(details().all(|d| {
            d["market_price"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .map(str::len)
                == Some(4)
        }));
        assert!(details().all(|d| !d["position_list"].as_array().unwrap().is_empty()));
    }

    #[test]
    fn totals_add_up() {
        let world = World::generate(2);
        for order in generate_orders(&world, &config(50)) {
            let lines = order["details_list"].as_array().unwrap();
            let count: Decimal = lines.iter().map(|d| decimal_of(&d["goods_count"])).sum();
            assert_eq!(decimal_of(&order["goods_count"]), count);
            let paid = decimal_of(&order["paid"]);
            let shares: Decimal = lines.iter().map(|d| decimal_of(&d["share_amount"])).sum();
            assert_eq!(paid, shares + decimal_of(&order["post_amount"]));
        }
    }
}
