//! The client against the 星辰 simulator on a free port: signatures, tokens, saves, recovery,
//! validation, overload and master data, end to end over HTTP.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use simulator::world::World;
use simulator::xingchen::{Knobs, SimulatorConfig, XingchenSimulator, defaults};
use xingchen::sign::SignatureHeaders;
use xingchen::{Bill, BillLine, Client, Error, Secret, XingchenConfig};

const WAIT: Duration = Duration::from_secs(30);

async fn start() -> (World, XingchenSimulator) {
    let world = World::generate(11);
    let sim = XingchenSimulator::start(&world, SimulatorConfig::default())
        .await
        .expect("simulator");
    (world, sim)
}

fn config(sim: &XingchenSimulator) -> XingchenConfig {
    let mut config = XingchenConfig::new(
        sim.url(),
        defaults::CLIENT_ID,
        Secret::new(defaults::CLIENT_SECRET),
        defaults::OUTER_INSTANCE_ID,
    );
    config.retry_attempts = 6;
    config.retry_min_delay = Duration::from_millis(5);
    config.retry_max_delay = Duration::from_millis(40);
    config.timeout = Duration::from_secs(5);
    config
}

fn client(sim: &XingchenSimulator) -> Client {
    Client::new(config(sim)).expect("client")
}

fn bill(world: &World, billno: &str) -> Bill {
    let goods = &world.goods[3];
    let mut custom = BTreeMap::new();
    custom.insert(
        "custom_field42obgp309axx5_number".into(),
        world.shops[0].shop_no.clone().into(),
    );
    Bill {
        id: None,
        billdate: NaiveDate::from_ymd_opt(2024, 5, 20).expect("date"),
        billno: billno.to_owned(),
        customerid_id: world.shops[0].customer_id.clone(),
        material_entity: vec![BillLine {
            id: None,
            materialid_id: goods.material_id.clone(),
            stockid_id: world.warehouses[1].store_id.clone(),
            qty: Decimal::new(3, 0),
            unit_id: goods.base_unit_id.clone(),
            taxprice: goods.market_price,
            cess: Decimal::new(13, 0),
            custom: BTreeMap::new(),
        }],
        custom,
    }
}

/// Awaits `future`, failing the test with `what` if it takes longer than [`WAIT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls `condition` until it holds, failing the test with `what` after [`WAIT`].
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

fn calls_to(sim: &XingchenSimulator, endpoint: &str) -> usize {
    sim.state()
        .log()
        .iter()
        .filter(|e| e.endpoint == endpoint)
        .count()
}

/// Sends a push_app_authorize signed over `signed_*` but sent as `sent_query`, with overrides.
struct Probe<'a> {
    client_id: &'a str,
    secret: &'a str,
    signed_path: &'a str,
    signed_query: &'a str,
    sent_query: &'a str,
    timestamp_ms: i64,
    sent_timestamp_ms: Option<i64>,
    sign_headers: &'a str,
}

impl Default for Probe<'_> {
    fn default() -> Self {
        let now = chrono::Utc::now().timestamp_millis();
        Probe {
            client_id: defaults::CLIENT_ID,
            secret: defaults::CLIENT_SECRET,
            signed_path: xingchen::AUTHORIZE_PATH,
            signed_query: defaults::OUTER_INSTANCE_ID,
            sent_query: defaults::OUTER_INSTANCE_ID,
            timestamp_ms: now,
            sent_timestamp_ms: None,
            sign_headers: "X-Api-Nonce,X-Api-TimeStamp",
        }
    }
}

/// The HTTP status and the gateway code or errcode of the answer.
async fn probe(sim: &XingchenSimulator, probe: Probe<'_>) -> (u16, i64) {
    let timestamp = probe.timestamp_ms.to_string();
    let headers = SignatureHeaders::sign(
        probe.client_id,
        probe.secret,
        "POST",
        probe.signed_path,
        &[("outerInstanceId", probe.signed_query)],
        "1234567890",
        &timestamp,
    );
    let mut headers_sent = reqwest::header::HeaderMap::new();
    for (name, value) in headers.pairs() {
        headers_sent.insert(name, value.parse().expect("header value"));
    }
    headers_sent.insert(
        "X-Api-SignHeaders",
        probe.sign_headers.parse().expect("header value"),
    );
    if let Some(sent) = probe.sent_timestamp_ms {
        headers_sent.insert(
            "X-Api-TimeStamp",
            sent.to_string().parse().expect("header value"),
        );
    }
    let url = format!(
        "{}{}?outerInstanceId={}",
        sim.url(),
        xingchen::AUTHORIZE_PATH,
        probe.sent_query
    );
    let request = reqwest::Client::new()
        .post(url)
        .headers(headers_sent)
        .body("{}");
    let response = request.send().await.expect("simulator answers");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("json body");
    let code = body["code"]
        .as_i64()
        .or(body["errcode"].as_i64())
        .unwrap_or(-1);
    (status, code)
}

#[tokio::test]
async fn client_signatures_verify_and_tampered_requests_are_refused() {
    let (_world, sim) = start().await;
    assert!(
        client(&sim).authorize().await.is_ok(),
        "the client's own signature must verify"
    );

    assert_eq!(probe(&sim, Probe::default()).await, (200, 0));
    let doc_order = Probe {
        sign_headers: "X-Api-TimeStamp,X-Api-Nonce",
        ..Probe::default()
    };
    assert_eq!(
        probe(&sim, doc_order).await,
        (200, 0),
        "either header order is accepted"
    );

    let path = Probe {
        signed_path: "/jdyconnector/app_management/other",
        ..Probe::default()
    };
    assert_eq!(probe(&sim, path).await, (519, 4008), "tampered path");
    let query = Probe {
        signed_query: "509132114453729281",
        ..Probe::default()
    };
    assert_eq!(probe(&sim, query).await, (519, 4008), "tampered query");
    let moved = Probe {
        sent_timestamp_ms: Some(Probe::default().timestamp_ms + 1),
        ..Probe::default()
    };
    assert_eq!(probe(&sim, moved).await, (519, 4008), "tampered timestamp");
    let secret = Probe {
        secret: "0123456789abcdef0123456789abcdef",
        ..Probe::default()
    };
    assert_eq!(probe(&sim, secret).await, (519, 4008), "wrong secret");
    let stale = Probe {
        timestamp_ms: Probe::default().timestamp_ms - 6 * 60_000,
        ..Probe::default()
    };
    assert_eq!(
        probe(&sim, stale).await,
        (519, 4006),
        "timestamp outside five minutes"
    );
    let stranger = Probe {
        client_id: "999",
        ..Probe::default()
    };
    assert_eq!(
        probe(&sim, stranger).await,
        (519, 4003),
        "unknown client id"
    );
    let partial = Probe {
        sign_headers: "X-Api-Nonce",
        ..Probe::default()
    };
    assert_eq!(
        probe(&sim, partial).await,
        (519, 4007),
        "incomplete sign headers"
    );

    let mut wrong = config(&sim);
    wrong.client_secret = Secret::new("ffffffffffffffffffffffffffffffff");
    let error = Client::new(wrong)
        .expect("client")
        .customers()
        .await
        .expect_err("refused");
    assert_eq!(error.gateway_code(), Some(4008));
    assert!(!error.is_transient());
}

#[tokio::test]
async fn hundred_concurrent_saves_share_a_handful_of_tokens() {
    let (world, sim) = start().await;
    sim.state()
        .update_knobs(|k| k.token_expires_after_calls = Some(20));
    let client = client(&sim);
    let bills: Vec<Bill> = (0..100)
        .map(|i| bill(&world, &format!("CK-CONC-{i:03}")))
        .collect();

    let saves = futures::future::join_all(bills.iter().map(|b| client.save_bill(b)));
    for (i, saved) in within("100 concurrent saves", saves)
        .await
        .into_iter()
        .enumerate()
    {
        let saved = saved.unwrap_or_else(|e| panic!("save {i} failed: {e}"));
        assert!(!saved.recovered);
    }

    assert_eq!(sim.state().bills().len(), 100);
    let token_calls = calls_to(&sim, xingchen::TOKEN_PATH);
    // 100 saves need five 20-call tokens; a stampede would ask once per refused request.
    assert!((5..=8).contains(&token_calls), "{token_calls} token calls");
    assert_eq!(sim.state().stats().token_calls as usize, token_calls);
}

#[tokio::test]
async fn a_save_that_stored_and_timed_out_is_found_by_number_not_posted_twice() {
    let (world, sim) = start().await;
    sim.state().update_knobs(|k| {
        k.fraction_stall = 1.0;
        k.stall_ms = 3_000;
    });
    let mut config = config(&sim);
    config.timeout = Duration::from_millis(400);
    let client = Client::new(config).expect("client");
    client.customers().await.expect("tokens before the stall");

    let plain = client
        .save(&bill(&world, "CK-STALL-1"))
        .await
        .expect_err("the answer never comes");
    assert!(plain.is_ambiguous(), "{plain}");
    assert_eq!(
        calls_to(&sim, xingchen::SAVE_PATH),
        1,
        "an ambiguous create is not re-posted"
    );

    let saved = within("save_bill", client.save_bill(&bill(&world, "CK-STALL-2"))).await;
    let saved = saved.expect("recovered by number");
    assert!(saved.recovered);
    assert_eq!(
        saved.id,
        sim.state().bill("CK-STALL-2").expect("stored")["id"]
    );
    assert_eq!(
        sim.state().bills().len(),
        2,
        "one bill per number, never two"
    );
}

#[tokio::test]
async fn validation_failures_are_permanent_and_carry_the_simulators_message() {
    let (world, sim) = start().await;
    let client = client(&sim);
    let original = bill(&world, "CK-VAL-0");
    client
        .save_bill(&original)
        .await
        .expect("a valid bill saves");

    let mut zero = bill(&world, "CK-VAL-1");
    zero.material_entity[0].qty = Decimal::ZERO;
    let mut foreign_unit = bill(&world, "CK-VAL-2");
    foreign_unit.material_entity[0].unit_id = world.goods[4].base_unit_id.clone();
    let mut no_store = bill(&world, "CK-VAL-3");
    no_store.material_entity[0].stockid_id = "42".into();
    let mut no_material = bill(&world, "CK-VAL-4");
    no_material.material_entity[0].materialid_id = "43".into();
    let mut no_bill = bill(&world, "CK-VAL-5");
    no_bill.id = Some("44".into());
    let removed = bill(&world, "CK-VAL-6");
    assert!(sim.state().remove_customer(&world.shops[0].shop_no));

    let cases = [
        (zero, "第1行数量qty必须大于0"),
        (foreign_unit, "不是商品"),
        (no_store, "参数stockid_id[42]不存在"),
        (no_material, "参数materialid_id[43]不存在"),
        (no_bill, "单据id[44]不存在"),
        (
            removed,
            &format!("参数customerid_id[{}]不存在", world.shops[0].customer_id),
        ),
    ];
    let saves_before = calls_to(&sim, xingchen::SAVE_PATH);
    for (bill, message) in &cases {
        let error = client.save_bill(bill).await.expect_err("rejected");
        assert!(matches!(error, Error::Rejected { .. }), "{error:?}");
        assert!(!error.is_transient() && !error.is_ambiguous());
        assert!(
            error.to_string().contains(message),
            "{error} lacks {message}"
        );
    }
    assert_eq!(
        calls_to(&sim, xingchen::SAVE_PATH) - saves_before,
        cases.len(),
        "no retries"
    );

    let error = client
        .save_bill(&bill(&world, "CK-VAL-0"))
        .await
        .expect_err("duplicate");
    assert!(error.is_duplicate_bill(), "{error:?}");
    assert!(error.to_string().contains("已存在"));
}

#[tokio::test]
async fn overload_answers_are_retried_until_the_fault_stops() {
    let (world, sim) = start().await;
    let mut config = config(&sim);
    config.retry_attempts = 1_000;
    let client = Client::new(config).expect("client");
    client.customers().await.expect("tokens before the faults");

    for (status, knob) in [(429u16, "fraction_429"), (519, "fraction_519")] {
        let set = |fraction: f64| {
            let mut knobs = Knobs::default();
            match knob {
                "fraction_429" => knobs.fraction_429 = fraction,
                _ => knobs.fraction_519 = fraction,
            }
            sim.state().set_knobs(knobs);
        };
        set(1.0);
        let billno = format!("CK-OVER-{status}");
        let save = tokio::spawn({
            let (client, bill) = (client.clone(), bill(&world, &billno));
            async move { client.save_bill(&bill).await }
        });
        let faults = || {
            sim.state()
                .log()
                .iter()
                .filter(|e| e.status == status)
                .count()
        };
        until(&format!("three {status} answers"), || faults() >= 3).await;
        set(0.0);
        let saved = within("save after the fault", save)
            .await
            .expect("task")
            .expect("saved");
        assert_eq!(saved.billno, billno);
    }
    assert_eq!(sim.state().bills().len(), 2);
    let codes: Vec<_> = sim.state().log().iter().filter_map(|e| e.code).collect();
    assert!(codes.iter().all(|c| [5003, 5007].contains(c)), "{codes:?}");
}

#[tokio::test]
async fn lists_read_every_page_and_unknown_numbers_are_none() {
    let (world, sim) = start().await;
    let mut config = config(&sim);
    config.page_size = 7;
    let client = Client::new(config).expect("client");

    let materials = client.materials().await.expect("materials");
    assert_eq!(materials.len(), world.goods.len());
    assert_eq!(
        calls_to(&sim, xingchen::MasterData::Material.list_path()),
        60usize.div_ceil(7)
    );
    let numbers: Vec<_> = materials.iter().map(|m| m.number.as_str()).collect();
    let expected: Vec<_> = world.goods.iter().map(|g| g.goods_no.as_str()).collect();
    assert_eq!(numbers, expected);
    assert_eq!(
        client.customers().await.expect("customers").len(),
        world.shops.len()
    );
    assert_eq!(
        client.stores().await.expect("stores").len(),
        world.warehouses.len()
    );

    let goods = &world.goods[5];
    let material = client
        .material(&goods.goods_no)
        .await
        .expect("detail")
        .expect("known");
    assert_eq!(material.id, goods.material_id);
    assert_eq!(
        material.base_unit_id.as_deref(),
        Some(goods.base_unit_id.as_str())
    );
    assert_eq!(material.unit_ids(), goods.unit_ids);
    for shop in &world.shops {
        let customer = client
            .customer(&shop.shop_no)
            .await
            .expect("detail")
            .expect("known");
        assert_eq!(customer.id, shop.customer_id);
    }
    let store = client
        .store(&world.warehouses[2].warehouse_no)
        .await
        .expect("detail");
    assert_eq!(store.expect("known").id, world.warehouses[2].store_id);

    assert!(
        client
            .material("NO-SUCH")
            .await
            .expect("not an error")
            .is_none()
    );
    assert!(
        client
            .customer("NO-SUCH")
            .await
            .expect("not an error")
            .is_none()
    );
    assert!(
        client
            .store("NO-SUCH")
            .await
            .expect("not an error")
            .is_none()
    );

    let mut changed = sim.state().materials().remove(5);
    changed.base_unit_id = "1999".into();
    sim.state().upsert_material(changed);
    let material = client
        .material(&goods.goods_no)
        .await
        .expect("detail")
        .expect("known");
    assert_eq!(material.base_unit_id.as_deref(), Some("1999"));
}

#[tokio::test]
async fn a_rotated_secret_leads_to_a_new_authorisation() {
    let (_world, sim) = start().await;
    sim.state()
        .update_knobs(|k| k.authorize_code_envelope = true);
    let client = client(&sim);
    client.stores().await.expect("first call");
    assert_eq!(sim.state().stats().authorize_calls, 1);

    sim.state().rotate_app_secret();
    sim.state().expire_tokens();
    client.stores().await.expect("call after rotation");

    assert_eq!(sim.state().stats().authorize_calls, 2);
    let stale = sim
        .state()
        .log()
        .iter()
        .filter(|e| e.code == Some(1_030_002_006))
        .count();
    assert_eq!(stale, 1, "exactly one token request used the old secret");
}

#[tokio::test]
async fn a_saved_bill_is_found_by_its_exact_number_and_can_be_replaced() {
    let (world, sim) = start().await;
    let client = client(&sim);
    let first = bill(&world, "CK-FIND-1");
    let saved = client.save_bill(&first).await.expect("saved");
    client
        .save_bill(&bill(&world, "CK-FIND-10"))
        .await
        .expect("saved");

    let found = client
        .find_bill_by_number("CK-FIND-1")
        .await
        .expect("search")
        .expect("found");
    assert_eq!(found.id, saved.id);
    assert_eq!(found.bill.material_entity, first.material_entity);
    assert_eq!(
        found.bill.custom["custom_field42obgp309axx5_number"],
        world.shops[0].shop_no
    );
    assert!(
        client
            .find_bill_by_number("CK-FIND-2")
            .await
            .expect("search")
            .is_none()
    );

    let mut modify = found.bill.clone();
    modify.material_entity[0].qty = Decimal::new(75, 1);
    let replaced = client.save_bill(&modify).await.expect("replaced");
    assert_eq!(replaced.id, saved.id);
    assert_eq!(sim.state().bills().len(), 2);
    assert_eq!(
        sim.state().bill("CK-FIND-1").expect("bill")["material_entity"][0]["qty"],
        "7.5"
    );
}
