//! `bridge scheme check` and `bridge scheme apply`, run as the operator runs them: the real binary,
//! files on disk, orders on stdin.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// Runs `bridge` with `args`, `stdin` as its input, and none of the variables that would change
/// what it reads (`BRIDGE_SCHEME`, `XINGCHEN_*`) unless `env` sets them.
fn bridge(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridge"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
        .env_remove("BRIDGE_SCHEME")
        .env("RUST_BACKTRACE", "0");
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("XINGCHEN_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("start bridge");
    let mut input = child.stdin.take().expect("bridge's stdin");
    input
        .write_all(stdin.as_bytes())
        .expect("write bridge's stdin");
    drop(input);
    child.wait_with_output().expect("wait for bridge")
}

/// A file in this test's temporary directory.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scheme_cli");
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of an output that are JSON objects (anyhow's closing `Error:` line is not).
fn json_lines(bytes: &[u8]) -> Vec<Value> {
    text(bytes)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// An order as 旺店通 sends it: ids as numbers, money as four-decimal strings.
fn order(stockout_no: &str, goods: &[&str]) -> Value {
    let rows: Vec<Value> = goods
        .iter()
        .enumerate()
        .map(|(i, goods_no)| {
            json!({
                "rec_id": 9000 + i, "stockout_id": 77, "goods_no": goods_no, "spec_no": "S1",
                "goods_count": "2.0000", "market_price": "99.0000", "sell_price": "88.5000"
            })
        })
        .collect();
    json!({
        "stockout_id": 77, "stockout_no": stockout_no, "order_no": stockout_no,
        "shop_no": "TM001", "warehouse_no": "WH01", "status": 95,
        "consign_time": "2022-11-01 23:59:59", "pay_time": "0000-00-00 00:00:00",
        "goods_count": "4.0000", "details_list": rows
    })
}

#[test]
fn check_prints_each_target_field_with_its_source_and_kind() {
    let output = bridge(&["scheme", "check"], &[], "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("(built in) is valid"), "{stdout}");
    for target in scheme::Scheme::builtin().targets() {
        let line = stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(target.path.as_str()))
            .unwrap_or_else(|| panic!("no line for {}:\n{stdout}", target.path));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[1], target.kind.to_string(), "{line}");
        assert!(line.ends_with(&target.source), "{line}");
    }
    assert!(stdout.contains("  billdate "), "{stdout}");
    assert!(
        stdout.contains("  page_no        {{PAGINATION_START_PAGE}}"),
        "{stdout}"
    );
}

#[test]
fn check_refuses_a_broken_scheme_naming_field_line_and_column_of_every_mistake() {
    let broken = scheme::BUILTIN_TEXT
        .replacen(
            "{{details_list_goods_count}}",
            "{{details_list_goods_cnt}}",
            1,
        )
        .replacen("= \"13\"", "= \"thirteen\"", 1);
    let path = file("broken.toml", &broken);
    let output = bridge(
        &["scheme", "check", path.to_str().expect("a UTF-8 path")],
        &[],
        "",
    );
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));

    let stderr = text(&output.stderr);
    let at = |needle: &str| {
        let offset = broken.find(needle).expect("the needle is in the file");
        let before = &broken[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .count()
            + 1;
        format!("{}:{line}:{column}: ", path.display())
    };
    let qty = format!(
        "{}material_entity.qty: unknown source field",
        at("details_list_goods_cnt")
    );
    let cess = format!(
        "{}material_entity.cess: `thirteen` cannot be written",
        at("\"thirteen\"")
    );
    assert!(stderr.contains(&qty), "{qty} in:\n{stderr}");
    assert!(stderr.contains(&cess), "{cess} in:\n{stderr}");
    assert!(stderr.contains("2 mistake(s)"), "{stderr}");
}

#[test]
fn check_reads_bridge_scheme_unless_a_file_is_given() {
    let broken = file(
        "env-broken.toml",
        &scheme::BUILTIN_TEXT.replacen("\n[derived]\n", "\n[derive]\n", 1),
    );
    let good = file("env-good.toml", scheme::BUILTIN_TEXT);
    let env = [("BRIDGE_SCHEME", broken.to_str().expect("a UTF-8 path"))];

    let from_env = bridge(&["scheme", "check"], &env, "");
    assert!(!from_env.status.success(), "BRIDGE_SCHEME was not read");
    assert!(
        text(&from_env.stderr).contains("env-broken.toml:"),
        "{}",
        text(&from_env.stderr)
    );

    let given = bridge(
        &["scheme", "check", good.to_str().expect("a UTF-8 path")],
        &env,
        "",
    );
    assert!(given.status.success(), "{}", text(&given.stderr));
    assert!(text(&given.stdout).contains("env-good.toml is valid"));
}

#[test]
fn apply_offline_prints_one_bill_per_order_and_reports_each_bad_line_without_stopping() {
    let mut lacking_goods_no = order("CK0004", &["G001"]);
    lacking_goods_no["details_list"][0]
        .as_object_mut()
        .map(|row| row.remove("goods_no"));
    let input = [
        order("CK0001", &["G001"]).to_string(),
        order("CK0002", &["G001", "G002", "G003"]).to_string(),
        "{\"stockout_no\": \"CK0003\",".to_string(),
        String::new(),
        lacking_goods_no.to_string(),
        order("CK0005", &["G002"]).to_string(),
    ]
    .join("\n");
    let output = bridge(&["scheme", "apply", "--offline"], &[], &input);
    assert!(!output.status.success(), "two lines did not become bills");

    let bills = json_lines(&output.stdout);
    let billnos: Vec<_> = bills
        .iter()
        .map(|b| b["billno"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(billnos, ["CK0001", "CK0002", "CK0005"]);
    let lines: Vec<_> = bills
        .iter()
        .map(|b| b["material_entity"].as_array().map(Vec::len))
        .collect();
    assert_eq!(lines, [Some(1), Some(3), Some(1)]);
    assert_eq!(bills[0]["billdate"], "2022-11-01");
    assert_eq!(
        bills[0]["customerid_id"],
        "<lookup customer id where number=TM001>"
    );
    let line = &bills[1]["material_entity"][2];
    assert_eq!(
        line["materialid_id"],
        "<lookup material id where number=G003>"
    );
    assert_eq!(
        line["unit_id"],
        "<lookup material baseunitid_id where number=G003>"
    );
    assert_eq!(line["stockid_id"], "<lookup store id where number=WH01>");
    assert_eq!(
        (&line["qty"], &line["taxprice"], &line["cess"]),
        (&json!("2"), &json!("99"), &json!("13"))
    );

    let reports = json_lines(&output.stderr);
    assert_eq!(reports.len(), 2, "{}", text(&output.stderr));
    assert_eq!(reports[0]["line"], 3);
    assert!(
        reports[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid json: "))
    );
    assert_eq!(
        (&reports[1]["line"], &reports[1]["stockout_no"]),
        (&json!(5), &json!("CK0004"))
    );
    let kinds: Vec<_> = reports[1]["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["kind"])
        .collect();
    assert_eq!(kinds, [&json!("missing_field"), &json!("missing_field")]);
    assert_eq!(
        reports[1]["problems"][0]["source"],
        "details_list[0].goods_no"
    );
    assert!(text(&output.stderr).contains("2 of 5 orders would not become bills"));
}

#[test]
fn apply_offline_with_known_numbers_reports_an_unknown_goods_number_instead_of_mapping_it() {
    let known = file(
        "known.txt",
        "# what 星辰 holds\ncustomer TM001\nstore WH01\nmaterial G001\n",
    );
    let input = [
        order("CK0001", &["G001"]),
        order("CK0002", &["G001", "G404"]),
    ]
    .map(|order| order.to_string())
    .join("\n");
    let args = [
        "scheme",
        "apply",
        "--offline",
        "--known-numbers",
        known.to_str().expect("a UTF-8 path"),
    ];
    let output = bridge(&args, &[], &input);
    assert!(!output.status.success());

    let bills = json_lines(&output.stdout);
    assert_eq!(bills.len(), 1, "{}", text(&output.stdout));
    assert_eq!(bills[0]["billno"], "CK0001");
    let reports = json_lines(&output.stderr);
    assert_eq!(reports.len(), 1, "{}", text(&output.stderr));
    assert_eq!(reports[0]["stockout_no"], "CK0002");
    let problems = reports[0]["problems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let targets: Vec<_> = problems
        .iter()
        .map(|p| p["target"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        targets,
        [
            "material_entity[1].materialid_id",
            "material_entity[1].unit_id"
        ]
    );
    for problem in &problems {
        assert_eq!(problem["kind"], "lookup_not_found");
        assert_eq!(problem["lookup"]["collection"], "material");
        assert_eq!(problem["lookup"]["number"], "G404");
    }
}

#[test]
fn apply_uses_the_scheme_it_is_given() {
    let nine = file(
        "cess-9.toml",
        &scheme::BUILTIN_TEXT.replacen("= \"13\"", "= \"9\"", 1),
    );
    let args = [
        "scheme",
        "apply",
        "--offline",
        "--scheme",
        nine.to_str().expect("a UTF-8 path"),
    ];
    let output = bridge(&args, &[], &order("CK0001", &["G001"]).to_string());
    assert!(output.status.success(), "{}", text(&output.stderr));
    let bills = json_lines(&output.stdout);
    assert_eq!(bills[0]["material_entity"][0]["cess"], "9");
}

#[test]
fn apply_online_without_xingchen_settings_says_what_it_needs_and_maps_nothing() {
    let output = bridge(
        &["scheme", "apply"],
        &[],
        &order("CK0001", &["G001"]).to_string(),
    );
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("XINGCHEN_CLIENT_ID") && stderr.contains("--offline"),
        "{stderr}"
    );
}
