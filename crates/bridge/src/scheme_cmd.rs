//! `bridge scheme`: check a scheme file, and try it on raw orders without posting anything.
//!
//! `check` loads a scheme (a file, `BRIDGE_SCHEME`, or the built-in one) and prints what each
//! target field is made from. `apply` reads orders as JSON lines on stdin, exactly as 旺店通 sent
//! them (what `bridge wdt orders` prints), and writes the bills they would become as JSON lines on
//! stdout; each order that would be a dead letter goes to stderr as one JSON line with its reasons.
//! Lookups are resolved against 星辰 through the `xingchen` client (configured by the `XINGCHEN_*`
//! environment variables), or, with `--offline`, shown unresolved. The mapping itself is the
//! `scheme` crate's; this module only reads, resolves and prints.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use scheme::{Collection, LookupKey, Scheme};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use xingchen::XingchenConfig;

/// The `bridge scheme` commands.
#[derive(Subcommand)]
pub enum SchemeCommand {
    /// Check a scheme and print, for each target field, its source and its kind.
    Check {
        /// The scheme file; default `BRIDGE_SCHEME`, else the built-in scheme.
        #[arg(env = "BRIDGE_SCHEME")]
        file: Option<PathBuf>,
    },
    /// Turn raw orders (JSON lines on stdin) into the bills they would become (JSON lines on
    /// stdout); orders that would be dead letters go to stderr with their reasons. Nothing is
    /// posted. Exits non-zero when any line did not become a bill.
    Apply(ApplyArgs),
}

/// Flags of `bridge scheme apply`.
#[derive(Args)]
pub struct ApplyArgs {
    /// The scheme file; default `BRIDGE_SCHEME`, else the built-in scheme.
    #[arg(long, env = "BRIDGE_SCHEME")]
    scheme: Option<PathBuf>,

    /// Resolve no lookup against 星辰: each is shown unresolved, such as
    /// `<lookup customer id where number=TM001>`.
    #[arg(long)]
    offline: bool,

    /// With `--offline`: a file of the numbers 星辰 is taken to know, one `<collection> <number>`
    /// per line (collection `customer`, `material` or `store`; `#` starts a comment). A lookup of
    /// any other number is not found, so the order is reported instead of mapped.
    #[arg(long, requires = "offline")]
    known_numbers: Option<PathBuf>,
}

/// The 星辰 settings of online `apply`, read from the `XINGCHEN_*` environment variables alone, so
/// that an `--offline` run needs none of them.
#[derive(Parser)]
struct XingchenEnv {
    #[command(flatten)]
    config: XingchenConfig,
}

/// Runs one `bridge scheme` command.
pub async fn run(command: SchemeCommand) -> anyhow::Result<()> {
    match command {
        SchemeCommand::Check { file } => check(file.as_deref()),
        SchemeCommand::Apply(args) => apply(args).await,
    }
}

fn load(file: Option<&Path>) -> anyhow::Result<Scheme> {
    match file {
        Some(path) => Ok(Scheme::load(path)?),
        None => Ok(Scheme::builtin()),
    }
}

fn check(file: Option<&Path>) -> anyhow::Result<()> {
    let scheme = load(file)?;
    let source = scheme.source();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "scheme {:?} from {} is valid",
        scheme.name(),
        scheme.origin()
    )?;
    writeln!(out, "sha256 {}", scheme.fingerprint())?;
    let status = source
        .status()
        .map_or("shipped and completed".into(), |s| format!("status {s}"));
    writeln!(
        out,
        "source {}: windows on {}, {status}, pages of {} from page {}",
        source.method(),
        source.window_field().order_field(),
        source.page_size(),
        source.start_page()
    )?;
    for (name, value) in source.params() {
        writeln!(out, "  {name:<14} {value}")?;
    }
    writeln!(out, "target {}:", scheme::target::TARGET_API)?;
    for target in scheme.targets() {
        writeln!(
            out,
            "  {:<50} {:<9} {}",
            target.path, target.kind, target.source
        )?;
    }
    Ok(())
}

/// Where `apply` resolves lookups.
trait MasterData {
    /// The value of the key's field, `Ok(None)` when 星辰 has no record with that number.
    async fn find(&mut self, key: &LookupKey) -> anyhow::Result<Option<String>>;
}

/// Resolves nothing, and takes 星辰 to know every number, or only those of a file.
struct Offline {
    known: Option<BTreeSet<(Collection, String)>>,
}

impl MasterData for Offline {
    async fn find(&mut self, key: &LookupKey) -> anyhow::Result<Option<String>> {
        let wanted = (key.collection, key.number.clone());
        let unknown = self
            .known
            .as_ref()
            .is_some_and(|known| !known.contains(&wanted));
        Ok((!unknown).then(|| format!("<lookup {key}>")))
    }
}

/// Asks 星辰 for each record once, by number, and remembers the answer for this run.
struct Online {
    client: xingchen::Client,
    records: HashMap<(Collection, String), Option<Value>>,
}

impl Online {
    /// The record as 星辰's V1 wire names write it, or `None` when it has no such number.
    async fn record(&self, collection: Collection, number: &str) -> anyhow::Result<Option<Value>> {
        let client = &self.client;
        let record = match collection {
            Collection::Customer => client.customer(number).await?.map(serde_json::to_value),
            Collection::Material => client.material(number).await?.map(serde_json::to_value),
            Collection::Store => client.store(number).await?.map(serde_json::to_value),
        };
        Ok(record.transpose()?)
    }
}

impl MasterData for Online {
    async fn find(&mut self, key: &LookupKey) -> anyhow::Result<Option<String>> {
        let wanted = (key.collection, key.number.clone());
        if !self.records.contains_key(&wanted) {
            let record = self.record(key.collection, &key.number).await?;
            self.records.insert(wanted.clone(), record);
        }
        let record = self.records.get(&wanted).and_then(Option::as_ref);
        Ok(record.and_then(|record| field_of(record, &key.field)))
    }
}

/// A field of a 星辰 record by its V1 wire name (`baseunitid_id`), as text.
fn field_of(record: &Value, field: &str) -> Option<String> {
    match record.get(field)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let scheme = load(args.scheme.as_deref())?;
    if args.offline {
        let known = args
            .known_numbers
            .as_deref()
            .map(read_known_numbers)
            .transpose()?;
        return apply_with(&scheme, Offline { known }).await;
    }
    let Ok(settings) = XingchenEnv::try_parse_from(["bridge scheme apply"]) else {
        bail!(
            "online lookups need 星辰 settings in XINGCHEN_CLIENT_ID, XINGCHEN_CLIENT_SECRET and \
             XINGCHEN_OUTER_INSTANCE_ID (and optionally the other XINGCHEN_* variables); pass \
             --offline to leave lookups unresolved"
        );
    };
    let client = xingchen::Client::new(settings.config).context("set up the 星辰 client")?;
    apply_with(
        &scheme,
        Online {
            client,
            records: HashMap::new(),
        },
    )
    .await
}

/// The outcome of one input line.
enum Outcome {
    Bill(String),
    Refused(Value),
}

async fn apply_with(scheme: &Scheme, mut master: impl MasterData) -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (mut total, mut refused) = (0usize, 0usize);
    let mut line_no = 0usize;
    while let Some(line) = lines.next_line().await.context("read orders from stdin")? {
        line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        total += 1;
        match one_line(scheme, &mut master, line_no, &line).await {
            Outcome::Bill(bill) => writeln!(std::io::stdout().lock(), "{bill}")?,
            Outcome::Refused(report) => {
                refused += 1;
                writeln!(std::io::stderr().lock(), "{report}")?;
            }
        }
    }
    if refused > 0 {
        bail!("{refused} of {total} orders would not become bills");
    }
    Ok(())
}

async fn one_line(
    scheme: &Scheme,
    master: &mut impl MasterData,
    line_no: usize,
    line: &str,
) -> Outcome {
    let order: Value = match serde_json::from_str(line) {
        Ok(order) => order,
        Err(error) => {
            return Outcome::Refused(
                json!({"line": line_no, "error": format!("invalid json: {error}")}),
            );
        }
    };
    let identity = |report: Value| {
        let mut report = report;
        report["line"] = json!(line_no);
        report["stockout_no"] = order.get("stockout_no").cloned().unwrap_or(Value::Null);
        report
    };

    let mut answers = HashMap::new();
    for key in scheme.lookups(&order) {
        match master.find(&key).await {
            Ok(Some(value)) => {
                answers.insert(key, value);
            }
            Ok(None) => {}
            Err(error) => {
                let error = format!("look up {key}: {error:#}");
                return Outcome::Refused(identity(json!({"error": error})));
            }
        }
    }
    match scheme.evaluate(&order, &answers) {
        Ok(bill) => Outcome::Bill(bill.canonical_json()),
        Err(problems) => Outcome::Refused(identity(json!({"problems": problems}))),
    }
}

/// Reads a `--known-numbers` file: `<collection> <number>` per line.
fn read_known_numbers(path: &Path) -> anyhow::Result<BTreeSet<(Collection, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read known numbers {}", path.display()))?;
    let mut known = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (name, number) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let collection = Collection::ALL.into_iter().find(|c| c.name() == name);
        let (Some(collection), false) = (collection, number.trim().is_empty()) else {
            bail!(
                "{}:{}: expected `<customer|material|store> <number>`, found {line:?}",
                path.display(),
                index + 1
            );
        };
        known.insert((collection, number.trim().to_string()));
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_lookups_read_the_wire_names_of_the_xingchen_records() {
        let material: xingchen::Material = serde_json::from_value(json!({
            "id": 1786543210987650001u64, "number": "G001", "name": "茶杯", "baseunitid_id": "U-9"
        }))
        .expect("a material");
        let record = serde_json::to_value(&material).expect("a record");
        assert_eq!(
            field_of(&record, "id").as_deref(),
            Some("1786543210987650001")
        );
        assert_eq!(field_of(&record, "baseunitid_id").as_deref(), Some("U-9"));
        assert_eq!(field_of(&record, "number").as_deref(), Some("G001"));
        assert_eq!(field_of(&record, "missing"), None);
    }

    #[test]
    fn known_numbers_files_name_a_collection_and_a_number_per_line() {
        let path = std::env::temp_dir().join(format!("known-{}.txt", std::process::id()));
        let text = "# numbers\ncustomer TM001\n\nmaterial  G 001  # spaced\n";
        std::fs::write(&path, text).expect("write");
        let known = read_known_numbers(&path).expect("a valid file");
        let expected = BTreeSet::from([
            (Collection::Customer, "TM001".to_string()),
            (Collection::Material, "G 001".to_string()),
        ]);
        assert_eq!(known, expected);

        std::fs::write(&path, "customer TM001\nwarehouse WH01\n").expect("write");
        let error = read_known_numbers(&path).expect_err("warehouse is not a collection");
        let _ = std::fs::remove_file(&path);
        let message = error.to_string();
        assert!(
            message.ends_with(
                ":2: expected `<customer|material|store> <number>`, found \"warehouse WH01\""
            ),
            "{message}"
        );
    }
}
