//! The scheme crate from outside: the shipped scheme against the seed's table, broken schemes
//! against the mistakes they must produce, and properties of evaluation over generated orders.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use scheme::{Collection, LookupKey, MappingKind, MistakeKind, ProblemKind, Scheme, SchemeError};
use serde_json::{Map, Value, json};

/// The seed's 金蝶云星辰V1 request table, verbatim from `seed/000_82cca4fa75bc81a6.txt`.
const SEED_TARGET_TABLE: &str = include_str!("seed_target_table.txt");

/// The seed's 接口字段 → 预设值 pairs.
fn seed_rows() -> Vec<(String, String)> {
    SEED_TARGET_TABLE
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[0].to_string(), cells[2].to_string())
        })
        .collect()
}

#[test]
fn shipped_scheme_holds_every_row_of_the_seed_table_and_nothing_else() {
    let scheme = Scheme::builtin();
    let written: BTreeMap<&str, &str> = scheme
        .targets()
        .iter()
        .map(|t| (t.path.as_str(), t.written.as_str()))
        .collect();
    let seed = seed_rows();
    assert_eq!(seed.len(), 11, "the seed's table has 11 rows");
    for (field, value) in &seed {
        assert_eq!(
            written.get(field.as_str()),
            Some(&value.as_str()),
            "seed row {field}"
        );
    }
    assert_eq!(
        written.len(),
        seed.len(),
        "the scheme maps fields the seed does not: {written:?}"
    );
}

#[test]
fn shipped_scheme_understands_each_seed_row_as_decision_5_says() {
    let scheme = Scheme::builtin();
    let understood: BTreeMap<&str, (MappingKind, &str)> = scheme
        .targets()
        .iter()
        .map(|t| (t.path.as_str(), (t.kind, t.source.as_str())))
        .collect();
    let expected = [
        (
            "billdate",
            MappingKind::Derived,
            "date of order consign_time",
        ),
        ("billno", MappingKind::Copy, "order stockout_no"),
        (
            "customerid_id",
            MappingKind::Lookup,
            "customer.id where number = order shop_no",
        ),
        (
            "material_entity",
            MappingKind::Rows,
            "one line per `details_list` row",
        ),
        (
            "material_entity.materialid_id",
            MappingKind::Lookup,
            "material.id where number = details_list[].goods_no",
        ),
        (
            "material_entity.stockid_id",
            MappingKind::Lookup,
            "store.id where number = order warehouse_no",
        ),
        (
            "material_entity.qty",
            MappingKind::Copy,
            "details_list[].goods_count",
        ),
        (
            "material_entity.unit_id",
            MappingKind::Lookup,
            "material.baseunitid_id where number = details_list[].goods_no",
        ),
        (
            "material_entity.taxprice",
            MappingKind::Copy,
            "details_list[].market_price",
        ),
        ("material_entity.cess", MappingKind::Constant, "\"13\""),
        (
            "material_entity.custom_field42obgp309axx5_number",
            MappingKind::Copy,
            "order shop_no",
        ),
    ];
    for (path, kind, source) in expected {
        assert_eq!(understood.get(path), Some(&(kind, source)), "{path}");
    }
}

#[test]
fn shipped_scheme_declares_the_source_request_and_collections_of_the_seed() {
    let scheme = Scheme::builtin();
    let source = scheme.source();
    assert_eq!(source.method(), "wdt.stockout.order.query.trade");
    assert_eq!(source.window_field(), scheme::WindowField::ConsignTime);
    assert_eq!(
        (source.page_size(), source.start_page(), source.status()),
        (100, 0, None)
    );
    let start = chrono::DateTime::parse_from_rfc3339("2022-11-01T00:00:00+08:00");
    let end = chrono::DateTime::parse_from_rfc3339("2022-11-10T00:00:00+08:00");
    let (Ok(start), Ok(end)) = (start, end) else {
        panic!("valid times")
    };
    let params = source.render_params(&start, &end, 2);
    let expected: BTreeMap<String, String> = [
        ("start_time", "2022-11-01 00:00:00"),
        ("end_time", "2022-11-10 00:00:00"),
        ("page_size", "100"),
        ("page_no", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(params, expected);

    let collections: Vec<_> = scheme
        .collections()
        .iter()
        .map(|c| (c.id.as_str(), c.kind, c.returns.join(",")))
        .collect();
    assert_eq!(
        collections,
        [
            (
                "38d1bf66-eeed-38f7-adf6-93ae7b2c7ce8",
                Collection::Store,
                "id,number,name".into()
            ),
            (
                "87620e1d-bf21-3b1b-a036-5d64ec61ad39",
                Collection::Material,
                "id,number,name,baseunitid_id".into()
            ),
            (
                "c13d8077-6f0a-3a0e-9080-91047fe5a7b5",
                Collection::Customer,
                "id,number,name".into()
            ),
        ]
    );
}

#[test]
fn shipped_file_on_disk_is_the_built_in_scheme() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/schemes/wdt-stockout-to-xingchen-v1.toml"
    );
    let loaded = Scheme::load(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.fingerprint(), Scheme::builtin().fingerprint());
    assert_eq!(loaded.targets(), Scheme::builtin().targets());
}

// ---------------------------------------------------------------------------------------------
// Evaluation of the shipped scheme.

fn seed_order() -> Value {
    json!({
        "stockout_id": 10001,
        "stockout_no": "CK20221101588",
        "order_no": "CK20221101588",
        "shop_no": "TM001",
        "warehouse_no": "WH01",
        "consign_time": "2022-11-01 23:30:00",
        "goods_count": "3.0000",
        "status": 95,
        "details_list": [
            {"rec_id": 1, "goods_no": "G001", "goods_count": "2.0000", "market_price": "99.0000"},
            {"rec_id": 2, "goods_no": "G002", "goods_count": 1, "market_price": "12.5000"}
        ]
    })
}

fn answer(collection: Collection, field: &str, number: &str, value: &str) -> (LookupKey, String) {
    let key = LookupKey {
        collection,
        field: field.into(),
        number: number.into(),
    };
    (key, value.into())
}

fn seed_master_data() -> HashMap<LookupKey, String> {
    HashMap::from([
        answer(Collection::Customer, "id", "TM001", "C-1"),
        answer(Collection::Store, "id", "WH01", "S-1"),
        answer(Collection::Material, "id", "G001", "M-1"),
        answer(Collection::Material, "baseunitid_id", "G001", "U-1"),
        answer(Collection::Material, "id", "G002", "M-2"),
        answer(Collection::Material, "baseunitid_id", "G002", "U-2"),
    ])
}

#[test]
fn an_order_becomes_the_bill_the_seed_describes() {
    let bill = Scheme::builtin().evaluate(&seed_order(), &seed_master_data());
    let bill = bill.unwrap_or_else(|problems| panic!("{problems:?}"));
    let line = |material: &str, unit: &str, qty: &str, price: &str| {
        json!({
            "materialid_id": material, "stockid_id": "S-1", "qty": qty, "unit_id": unit,
            "taxprice": price, "cess": "13", "custom_field42obgp309axx5_number": "TM001"
        })
    };
    let expected = json!({
        "billdate": "2022-11-01",
        "billno": "CK20221101588",
        "customerid_id": "C-1",
        "material_entity": [line("M-1", "U-1", "2", "99"), line("M-2", "U-2", "1", "12.5")]
    });
    assert_eq!(serde_json::to_value(&bill).ok(), Some(expected));
    assert_eq!(bill.billno(), "CK20221101588");
    assert_eq!(bill.billdate(), Some("2022-11-01"));
}

#[test]
fn lookups_ask_each_question_once() {
    let keys = Scheme::builtin().lookups(&seed_order());
    let expected: Vec<LookupKey> = {
        let mut keys: Vec<_> = seed_master_data().into_keys().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys, expected);
    let mut twice = seed_order();
    twice["details_list"][1]["goods_no"] = json!("G001");
    assert_eq!(
        Scheme::builtin().lookups(&twice).len(),
        4,
        "G001 asked once per field"
    );
}

#[test]
fn an_unknown_goods_number_names_the_material_collection_and_the_number() {
    let mut order = seed_order();
    order["details_list"][1]["goods_no"] = json!("G404");
    let problems = Scheme::builtin()
        .evaluate(&order, &seed_master_data())
        .expect_err("G404");
    let not_found: Vec<_> = problems
        .iter()
        .map(|p| {
            (
                p.kind,
                p.target.as_str(),
                p.lookup.clone().map(|k| (k.collection, k.number)),
            )
        })
        .collect();
    let material = Some((Collection::Material, "G404".to_string()));
    assert_eq!(
        not_found,
        [
            (
                ProblemKind::LookupNotFound,
                "material_entity[1].materialid_id",
                material.clone()
            ),
            (
                ProblemKind::LookupNotFound,
                "material_entity[1].unit_id",
                material
            ),
        ]
    );
    assert!(
        problems[0].detail.contains("no material with number G404"),
        "{}",
        problems[0]
    );
}

#[test]
fn every_problem_with_an_order_is_reported_at_once() {
    let order = json!({
        "stockout_no": "CK1",
        "shop_no": "",
        "warehouse_no": "WH01",
        "consign_time": "0000-00-00 00:00:00",
        "details_list": [{"goods_no": "G001", "goods_count": "two", "market_price": "1"}, 7]
    });
    let problems = Scheme::builtin()
        .evaluate(&order, &seed_master_data())
        .expect_err("broken");
    let found: BTreeSet<(ProblemKind, &str)> = problems
        .iter()
        .map(|p| (p.kind, p.target.as_str()))
        .collect();
    let expected = BTreeSet::from([
        (ProblemKind::MissingField, "billdate"),
        (ProblemKind::MissingField, "customerid_id"),
        (ProblemKind::MalformedField, "material_entity[0].qty"),
        (
            ProblemKind::MissingField,
            "material_entity[0].custom_field42obgp309axx5_number",
        ),
        (ProblemKind::MalformedField, "material_entity[1]"),
    ]);
    assert_eq!(found, expected, "{problems:#?}");

    let no_rows = json!({"stockout_no": "CK1", "shop_no": "TM001", "warehouse_no": "WH01",
        "consign_time": "2022-11-01 10:00:00", "details_list": []});
    let problems = Scheme::builtin()
        .evaluate(&no_rows, &seed_master_data())
        .expect_err("no rows");
    assert_eq!(
        problems.iter().map(|p| p.kind).collect::<Vec<_>>(),
        [ProblemKind::NoRows]
    );
    assert_eq!(problems[0].kind.as_str(), "no_rows");
}

#[test]
fn a_lookup_answered_with_an_empty_id_is_not_found() {
    let mut master = seed_master_data();
    master.insert(
        LookupKey {
            collection: Collection::Store,
            field: "id".into(),
            number: "WH01".into(),
        },
        " ".into(),
    );
    let problems = Scheme::builtin()
        .evaluate(&seed_order(), &master)
        .expect_err("empty id");
    assert_eq!(problems.len(), 2, "one per line: {problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.kind == ProblemKind::LookupNotFound)
    );
}

// ---------------------------------------------------------------------------------------------
// Broken schemes.

/// One broken scheme: the shipped text with `from` replaced by `to`, and the mistakes it must
/// give, each as (kind, field, a unique text in the broken file where the mistake points).
struct Broken {
    from: &'static str,
    to: &'static str,
    mistakes: &'static [(MistakeKind, &'static str, &'static str)],
}

const BROKEN: &[Broken] = &[
    Broken {
        from: "{{details_list_goods_count}}",
        to: "{{details_list_goods_cnt}}",
        mistakes: &[(
            MistakeKind::UnknownSourceField,
            "material_entity.qty",
            "details_list_goods_cnt",
        )],
    },
    Broken {
        from: "\"{{stockout_no}}\"",
        to: "\"{{stockout_number}}\"",
        mistakes: &[(MistakeKind::UnknownSourceField, "billno", "stockout_number")],
    },
    Broken {
        from: "billno = \"{{stockout_no}}\"",
        to: "billno = \"{{details_list_goods_no}}\"",
        mistakes: &[(
            MistakeKind::UnknownSourceField,
            "billno",
            "details_list_goods_no}}\"\ncust",
        )],
    },
    Broken {
        from: "{{details_list.details_list_market_price}}",
        to: "{{details_list.market_price}}",
        mistakes: &[(
            MistakeKind::UnknownSourceField,
            "material_entity.taxprice",
            "details_list.market_price",
        )],
    },
    Broken {
        from: "billno = \"{{stockout_no}}\"",
        to: "billno = \"{{details_list}}\"",
        mistakes: &[(
            MistakeKind::SourceNotScalar,
            "billno",
            "details_list}}\"\ncust",
        )],
    },
    Broken {
        from: "38d1bf66-eeed-38f7-adf6-93ae7b2c7ce8 where",
        to: "38d1bf66-0000-38f7-adf6-93ae7b2c7ce8 where",
        mistakes: &[(
            MistakeKind::UnknownCollection,
            "material_entity.stockid_id",
            "38d1bf66-0000",
        )],
    },
    Broken {
        from: "find id from c13d8077",
        to: "find baseunitid_id from c13d8077",
        mistakes: &[(
            MistakeKind::UnknownReturnedField,
            "customerid_id",
            "baseunitid_id from c13d",
        )],
    },
    Broken {
        from: "kind = \"customer\"\nreturns = [\"id\"",
        to: "kind = \"customer\"\nreturns = [\"baseunitid_id\", \"id\"",
        mistakes: &[(
            MistakeKind::UnknownReturnedField,
            "collections.c13d8077-6f0a-3a0e-9080-91047fe5a7b5.returns",
            "\"baseunitid_id\", \"id\"",
        )],
    },
    Broken {
        from: "material_entity = \"details_list\"",
        to: "material_entity = \"shop_no\"",
        mistakes: &[(
            MistakeKind::RowSourceNotArray,
            "material_entity",
            "shop_no\"\n\"material_entity.",
        )],
    },
    Broken {
        from: "material_entity = \"details_list\"",
        to: "material_entity = \"position_list\"",
        mistakes: &[(
            MistakeKind::RowSourceNotArray,
            "material_entity",
            "position_list",
        )],
    },
    Broken {
        from: "\"material_entity.cess\" =",
        to: "\"material_entity.tax_rate\" =",
        mistakes: &[(
            MistakeKind::UnknownTargetField,
            "material_entity.tax_rate",
            "\"material_entity.tax_rate\" =",
        )],
    },
    Broken {
        from: "\nbillno = ",
        to: "\nbill_no = ",
        mistakes: &[
            (
                MistakeKind::MissingTargetField,
                "billno",
                "[target.fields]\nbilldate",
            ),
            (MistakeKind::UnknownTargetField, "bill_no", "bill_no = "),
        ],
    },
    Broken {
        from: "\"material_entity.qty\" = \"{{details_list_goods_count}}\"\n",
        to: "",
        mistakes: &[(
            MistakeKind::MissingTargetField,
            "material_entity.qty",
            "[target.fields]\nbilldate",
        )],
    },
    Broken {
        from: "material_entity = \"details_list\"\n",
        to: "",
        mistakes: &[
            (
                MistakeKind::MissingTargetField,
                "material_entity",
                "[target.fields]\nbilldate",
            ),
            (
                MistakeKind::MissingTargetField,
                "material_entity.materialid_id",
                "\"material_entity.materialid_id\" =",
            ),
            (
                MistakeKind::MissingTargetField,
                "material_entity.stockid_id",
                "\"material_entity.stockid_id\" =",
            ),
            (
                MistakeKind::MissingTargetField,
                "material_entity.qty",
                "\"material_entity.qty\" =",
            ),
            (
                MistakeKind::MissingTargetField,
                "material_entity.unit_id",
                "\"material_entity.unit_id\" =",
            ),
            (
                MistakeKind::MissingTargetField,
                "material_entity.taxprice",
                "\"material_entity.taxprice\" =",
            ),
            (
                MistakeKind::MissingTargetField,
                "material_entity.cess",
                "\"material_entity.cess\" =",
            ),
            (
                MistakeKind::MissingTargetField,
                "material_entity.custom_field42obgp309axx5_number",
                "\"material_entity.custom_field42obgp309axx5_number\" =",
            ),
        ],
    },
    Broken {
        from: "where number={{shop_no}}\"",
        to: "where number={{shop_no}\"",
        mistakes: &[(MistakeKind::BadExpression, "customerid_id", "{{shop_no}\"")],
    },
    Broken {
        from: "_findCollection find id from 87620e1d",
        to: "_findCollection fetch id from 87620e1d",
        mistakes: &[(
            MistakeKind::BadExpression,
            "material_entity.materialid_id",
            "fetch",
        )],
    },
    Broken {
        from: "\"{{stockout_no}}\"",
        to: "\"CK-{{stockout_no}}\"",
        mistakes: &[(MistakeKind::BadExpression, "billno", "{{stockout_no}}")],
    },
    Broken {
        from: "= \"13\"",
        to: "= \"thirteen\"",
        mistakes: &[(
            MistakeKind::BadConstant,
            "material_entity.cess",
            "\"thirteen\"",
        )],
    },
    Broken {
        from: "consign_time_new = { date_of = \"consign_time\" }",
        to: "consign_time_new = { date_of = \"consign_tim\" }",
        mistakes: &[(
            MistakeKind::UnknownSourceField,
            "derived.consign_time_new",
            "\"consign_tim\"",
        )],
    },
    Broken {
        from: "consign_time_new = { date_of = \"consign_time\" }",
        to: "shop_no = { date_of = \"consign_time\" }",
        mistakes: &[
            (
                MistakeKind::BadDerived,
                "derived.shop_no",
                "shop_no = { date_of",
            ),
            (
                MistakeKind::UnknownSourceField,
                "billdate",
                "consign_time_new}}",
            ),
        ],
    },
    Broken {
        from: "page_size = 100\nstart_page",
        to: "page_size = 0\nstart_page",
        mistakes: &[(MistakeKind::BadSource, "source.page_size", "0\nstart_page")],
    },
    Broken {
        from: "window_field = \"consign_time\"\n",
        to: "window_field = \"consign_time\"\nstatus = 55\n",
        mistakes: &[(MistakeKind::BadSource, "source.status", "55\n")],
    },
    Broken {
        from: "page_no = \"{{PAGINATION_START_PAGE}}\"",
        to: "page = \"{{PAGINATION_START_PAGE}}\"",
        mistakes: &[
            (MistakeKind::BadSource, "source.params", "[source.params]\n"),
            (
                MistakeKind::BadSource,
                "source.params.page",
                "page = \"{{PAGINATION_START",
            ),
        ],
    },
    Broken {
        from: "end_time = \"{{WINDOW_END}}\"",
        to: "end_time = \"{{WINDOW_START}}\"",
        mistakes: &[(
            MistakeKind::BadSource,
            "source.params.end_time",
            "\"{{WINDOW_START}}\"\n#",
        )],
    },
    Broken {
        from: "[target]\napi = \"jdy/sal/sal_outbound_save\"",
        to: "[target]\napi = \"jdy/v2/scm/sal_out_bound\"",
        mistakes: &[(
            MistakeKind::UnsupportedApi,
            "target.api",
            "\"jdy/v2/scm/sal_out_bound\"",
        )],
    },
    Broken {
        from: "page_size = 100\nstart_page",
        to: "page_size = 100\npage_limit = 5\nstart_page",
        mistakes: &[(MistakeKind::Toml, "", "page_limit")],
    },
    Broken {
        from: "cess\" = \"13\"",
        to: "cess\" = 13",
        mistakes: &[(MistakeKind::Toml, "", "13\n\"material")],
    },
];

/// The 1-based line and character column of `needle` in `text`, which must hold it once.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "{needle:?} is not unique in the broken file"
    );
    let offset = text.find(needle).unwrap_or_default();
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

#[test]
fn broken_schemes_name_the_field_and_the_position_of_each_mistake() {
    for broken in BROKEN {
        assert!(
            scheme::BUILTIN_TEXT.contains(broken.from),
            "{:?} is not in the shipped file",
            broken.from
        );
        let text = scheme::BUILTIN_TEXT.replacen(broken.from, broken.to, 1);
        let error = Scheme::from_str(&text, "broken.toml").expect_err(broken.to);
        let found: Vec<_> = error
            .mistakes()
            .iter()
            .map(|m| (m.kind, m.field.as_str(), (m.line, m.column)))
            .collect();
        let expected: Vec<_> = broken
            .mistakes
            .iter()
            .map(|(kind, field, at)| (*kind, *field, position_of(&text, at)))
            .collect();
        assert_eq!(
            found, expected,
            "replacing {:?} by {:?}:\n{error}",
            broken.from, broken.to
        );
        for mistake in error.mistakes() {
            let line = format!("broken.toml:{}:{}: ", mistake.line, mistake.column);
            assert!(error.to_string().contains(&line), "{error}");
            assert!(
                mistake.kind == MistakeKind::Toml || !mistake.expected.is_empty(),
                "{mistake}"
            );
        }
    }
}

#[test]
fn every_mistake_of_a_file_is_reported_not_just_the_first() {
    let text = scheme::BUILTIN_TEXT
        .replacen(
            "{{details_list_goods_count}}",
            "{{details_list_goods_cnt}}",
            1,
        )
        .replacen(
            "38d1bf66-eeed-38f7-adf6-93ae7b2c7ce8 where",
            "38d1bf66-0000-38f7-adf6-93ae7b2c7ce8 where",
            1,
        )
        .replacen("= \"13\"", "= \"thirteen\"", 1);
    let error = Scheme::from_str(&text, "three.toml").expect_err("three mistakes");
    let kinds: Vec<_> = error.mistakes().iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            MistakeKind::UnknownCollection,
            MistakeKind::UnknownSourceField,
            MistakeKind::BadConstant
        ]
    );
    assert!(
        error
            .to_string()
            .starts_with("invalid scheme three.toml: 3 mistake(s)"),
        "{error}"
    );
}

#[test]
fn a_missing_file_is_a_read_error_naming_the_path() {
    let error = Scheme::load("/nonexistent/scheme.toml").expect_err("no file");
    assert!(matches!(error, SchemeError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("read scheme /nonexistent/scheme.toml: "),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties of evaluation over generated orders.

const KNOWN_GOODS: &[&str] = &["G001", "G002", "G003", "G004", "G005"];
const KNOWN_SHOPS: &[&str] = &["TM001", "JD002"];
const KNOWN_WAREHOUSES: &[&str] = &["WH01"];

/// Master data knowing the numbers above; `G003`'s base unit is known with an empty id, which a
/// bill must never carry.
fn generated_master_data(key: &LookupKey) -> Option<String> {
    let known = match key.collection {
        Collection::Customer => KNOWN_SHOPS,
        Collection::Material => KNOWN_GOODS,
        Collection::Store => KNOWN_WAREHOUSES,
    };
    if !known.contains(&key.number.as_str()) {
        return None;
    }
    if key.number == "G003" && key.field == "baseunitid_id" {
        return Some(String::new());
    }
    Some(format!("{}-{}-{}", key.collection, key.field, key.number))
}

/// A generated value of a field: `None` leaves the key out.
type Field = Option<Value>;

fn number_field(known: &'static [&'static str]) -> impl Strategy<Value = Field> {
    prop_oneof![
        30 => proptest::sample::select(known).prop_map(|n| Some(json!(n))),
        1 => Just(Some(json!("UNKNOWN-9"))),
        1 => Just(Some(json!(""))),
        1 => Just(Some(json!(1001))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!({"no": 1}))),
    ]
}

fn decimal_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        20 => (0u32..100_000, 0u32..4).prop_map(|(n, scale)| {
            Some(json!(format!("{}", rust_decimal::Decimal::new(i64::from(n), scale))))
        }),
        6 => (0u32..1000).prop_map(|n| Some(json!(n))),
        2 => (0.0f64..1000.0).prop_map(|n| Some(json!(n))),
        2 => Just(Some(json!("99.0000"))),
        1 => Just(Some(json!("two"))),
        1 => Just(Some(json!(""))),
        1 => Just(None),
        1 => Just(Some(json!([1]))),
    ]
}

fn time_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        20 => (2020i32..2030, 1u32..13, 1u32..29, 0u32..24, 0u32..60).prop_map(|(y, mo, d, h, mi)| {
            Some(json!(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:07")))
        }),
        1 => Just(Some(json!("0000-00-00 00:00:00"))),
        1 => Just(Some(json!(""))),
        1 => Just(Some(json!("yesterday"))),
        1 => Just(Some(json!(1_667_318_400))),
        1 => Just(None),
    ]
}

fn text_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        20 => "CK[0-9]{6}".prop_map(|s| Some(json!(s))),
        1 => Just(Some(json!(20221101588u64))),
        1 => Just(Some(json!(""))),
        1 => Just(None),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn row() -> impl Strategy<Value = Value> {
    let fields = (number_field(KNOWN_GOODS), decimal_field(), decimal_field());
    let object = fields.prop_map(|(goods_no, goods_count, market_price)| {
        let mut row = Map::new();
        row.insert("rec_id".into(), json!(7));
        let fields = [
            ("goods_no", goods_no),
            ("goods_count", goods_count),
            ("market_price", market_price),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                row.insert(name.into(), value);
            }
        }
        Value::Object(row)
    });
    prop_oneof![40 => object, 1 => any_json()]
}

fn details() -> impl Strategy<Value = Field> {
    prop_oneof![
        20 => prop::collection::vec(row(), 0..5).prop_map(|rows| Some(Value::Array(rows))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!("details"))),
    ]
}

fn order() -> impl Strategy<Value = Value> {
    let header = (
        text_field(),
        number_field(KNOWN_SHOPS),
        number_field(KNOWN_WAREHOUSES),
        time_field(),
        details(),
        prop::collection::btree_map("[a-z_]{1,12}", any_json(), 0..3),
    );
    header.prop_map(
        |(stockout_no, shop_no, warehouse_no, consign_time, details_list, noise)| {
            let mut order: Map<String, Value> = noise.into_iter().collect();
            let fields = [
                ("stockout_no", stockout_no),
                ("shop_no", shop_no),
                ("warehouse_no", warehouse_no),
                ("consign_time", consign_time),
                ("details_list", details_list),
            ];
            for (name, value) in fields {
                order.remove(name);
                if let Some(value) = value {
                    order.insert(name.into(), value);
                }
            }
            Value::Object(order)
        },
    )
}

fn normalised(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let decimal = rust_decimal::Decimal::from_str_exact(text.trim())
        .ok()
        .or_else(|| rust_decimal::Decimal::from_scientific(text.trim()).ok())?;
    Some(decimal.normalize().to_string())
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every `*_id` value of a bill, header and lines.
fn ids(bill: &Value) -> Vec<(String, Value)> {
    let mut ids = Vec::new();
    let mut collect = |object: &Map<String, Value>| {
        for (name, value) in object {
            if name.ends_with("_id") {
                ids.push((name.clone(), value.clone()));
            }
        }
    };
    if let Some(header) = bill.as_object() {
        collect(header);
    }
    for line in bill["material_entity"].as_array().into_iter().flatten() {
        if let Some(line) = line.as_object() {
            collect(line);
        }
    }
    ids
}

/// A bill's lines match the order's rows one to one; a refusal always says why.
fn check_bill_or_problems(order: &Value) -> Result<(), TestCaseError> {
    let problems = match Scheme::builtin().evaluate(order, &generated_master_data) {
        Ok(bill) => return check_bill(order, &bill),
        Err(problems) => problems,
    };
    prop_assert!(!problems.is_empty());
    for problem in &problems {
        prop_assert!(!problem.detail.is_empty());
        let names_a_lookup = problem.lookup.is_some();
        prop_assert_eq!(problem.kind == ProblemKind::LookupNotFound, names_a_lookup);
    }
    Ok(())
}

fn check_bill(order: &Value, bill: &scheme::BillDraft) -> Result<(), TestCaseError> {
    let body = serde_json::to_value(bill).unwrap_or_default();
    for (name, id) in ids(&body) {
        let ok = id.as_str().is_some_and(|id| !id.trim().is_empty());
        prop_assert!(ok, "{name} is {id:?}");
    }
    let rows = order["details_list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    prop_assert!(!rows.is_empty());
    prop_assert_eq!(bill.lines().len(), rows.len());
    let text = |value: &Value| value.as_str().map(String::from);
    for (line, row) in bill.lines().iter().zip(&rows) {
        let number = text_of(&row["goods_no"]);
        let material = LookupKey {
            collection: Collection::Material,
            field: "id".into(),
            number,
        };
        prop_assert_eq!(
            text(&line["materialid_id"]),
            generated_master_data(&material)
        );
        prop_assert_eq!(text(&line["qty"]), normalised(&row["goods_count"]));
        prop_assert_eq!(text(&line["taxprice"]), normalised(&row["market_price"]));
        prop_assert_eq!(text(&line["cess"]), Some("13".to_string()));
    }
    let consign_time = order["consign_time"].as_str().unwrap_or_default();
    prop_assert_eq!(bill.billdate(), consign_time.get(..10));
    prop_assert_eq!(bill.billno(), text_of(&order["stockout_no"]));
    Ok(())
}

/// The goods numbers of an order's rows that the generated master data does not know.
fn unknown_goods(order: &Value) -> BTreeSet<String> {
    let rows = order["details_list"].as_array().into_iter().flatten();
    rows.filter_map(|row| match &row["goods_no"] {
        Value::String(s) if !s.trim().is_empty() && !KNOWN_GOODS.contains(&s.as_str()) => {
            Some(s.clone())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
    .collect()
}

/// The material numbers a refusal reports as not found.
fn reported_goods(order: &Value) -> BTreeSet<String> {
    let Err(problems) = Scheme::builtin().evaluate(order, &generated_master_data) else {
        return BTreeSet::new();
    };
    problems
        .into_iter()
        .filter_map(|p| p.lookup)
        .filter(|k| k.collection == Collection::Material && k.field == "id")
        .map(|k| k.number)
        .collect()
}

#[test]
fn generated_orders_often_become_bills_and_often_do_not() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = order();
    let (mut bills, mut refusals) = (0, 0);
    for _ in 0..1000 {
        let order = strategy.new_tree(&mut runner).map(|tree| tree.current());
        let order = order.unwrap_or_else(|reason| panic!("generate an order: {reason}"));
        match Scheme::builtin().evaluate(&order, &generated_master_data) {
            Ok(_) => bills += 1,
            Err(_) => refusals += 1,
        }
    }
    // The properties below say little unless both outcomes are common.
    assert!(
        bills >= 50 && refusals >= 200,
        "{bills} bills, {refusals} refusals"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_json_evaluates_to_a_bill_or_problems_without_panicking(order in any_json()) {
        let scheme = Scheme::builtin();
        let _ = scheme.lookups(&order);
        if let Err(problems) = scheme.evaluate(&order, &generated_master_data) {
            prop_assert!(!problems.is_empty());
        }
    }

    #[test]
    fn a_bill_has_no_empty_id_and_one_line_per_detail_row(order in order()) {
        check_bill_or_problems(&order)?;
    }

    #[test]
    fn unknown_goods_numbers_are_each_reported_by_collection_and_number(order in order()) {
        prop_assert_eq!(reported_goods(&order), unknown_goods(&order));
    }

    #[test]
    fn lookups_list_exactly_the_questions_evaluation_asks(order in order()) {
        let scheme = Scheme::builtin();
        let asked = RefCell::new(BTreeSet::new());
        let recording = |key: &LookupKey| {
            asked.borrow_mut().insert(key.clone());
            generated_master_data(key)
        };
        let _ = scheme.evaluate(&order, &recording);
        let listed: BTreeSet<LookupKey> = scheme.lookups(&order).into_iter().collect();
        prop_assert_eq!(listed, asked.into_inner());
    }
}

#[test]
fn a_scheme_without_lookups_or_derived_fields_needs_no_collections() {
    let text = r#"
name = "constants"

[source]
method = "wdt.stockout.order.query.trade"
window_field = "modified"
status = 5
page_size = 30

[source.params]
start_time = "{{WINDOW_START}}"
end_time = "{{WINDOW_END}}"
page_size = "{{PAGINATION_PAGE_SIZE}}"
page_no = "{{PAGINATION_START_PAGE}}"
shop_no = "TM001"

[target]
api = "jdy/sal/sal_outbound_save"

[target.fields]
billdate = "2022-11-01"
billno = "{{order_no}}"
customerid_id = "C-1"
remark = "{{remark}}"
material_entity = "details_list"
"material_entity.materialid_id" = "{{details_list_spec_no}}"
"material_entity.stockid_id" = "S-1"
"material_entity.qty" = "{{details_list.details_list_num}}"
"material_entity.unit_id" = "U-1"
"#;
    let scheme = Scheme::from_str(text, "constants.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scheme.source().start_page(), 0, "start_page defaults to 0");
    let now = chrono::Utc::now();
    let params = scheme.source().render_params(&now, &now, 0);
    assert_eq!(params.get("is_by_modified").map(String::as_str), Some("1"));
    assert_eq!(params.get("status").map(String::as_str), Some("5"));
    assert_eq!(params.get("shop_no").map(String::as_str), Some("TM001"));

    let order =
        json!({"order_no": "CK9", "remark": "", "details_list": [{"spec_no": "SP1", "num": 3}]});
    let nothing = |_: &LookupKey| -> Option<String> { None };
    let bill = scheme
        .evaluate(&order, &nothing)
        .unwrap_or_else(|p| panic!("{p:?}"));
    let expected = json!({
        "billdate": "2022-11-01", "billno": "CK9", "customerid_id": "C-1", "remark": "",
        "material_entity": [
            {"materialid_id": "SP1", "stockid_id": "S-1", "qty": "3", "unit_id": "U-1"}
        ]
    });
    assert_eq!(serde_json::to_value(&bill).ok(), Some(expected));
    assert!(scheme.lookups(&order).is_empty());
}
