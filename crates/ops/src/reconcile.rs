//! `bridge reconcile`: does the ledger (and, on request, 星辰) hold every order WDT holds for a
//! window, in its latest version, and nothing WDT no longer holds?
//!
//! WDT is read for the window exactly as the extractor reads it (the scheme's clock and filters,
//! [`extractor::source::query`], through [`wdt::WindowReader`]), and each order is named as the
//! extractor names it ([`extractor::order::identity`]). Against the ledger, read whole from its
//! bucket, the report lists:
//!
//! * missing orders: no ledger entry (`missing_in_ledger`), and, with a target client, no bill of
//!   that number in 星辰 (`missing_in_target`, looked up with
//!   [`xingchen::Client::find_bill_by_number`], a few at a time);
//! * outdated orders: loaded from an older version than WDT holds now (the entry's `modified`
//!   before the order's);
//! * bills without an order: ledger entries whose `modified` lies in the window but whose order
//!   the window did not return. The ledger does not know an order's consign time, so before
//!   naming one, WDT is read again on the modified clock from the earliest such entry to now
//!   with the same filters: an order found there still exists (it was changed since, or falls
//!   outside a consign-time window) and is not reported;
//! * orders WDT sent without a number or a time (`without_identity`), which the extractor
//!   dead-letters and nothing can load.
//!
//! Every list is sorted by order number. Exit codes are the binary's: non-zero when any list is
//! not empty.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, Utc};
use futures::{StreamExt, TryStreamExt};
use pipeline::ledger::LedgerEntry;
use serde::Serialize;
use wdt::{ReadFilter, TimeBasis, WindowReader};
use xingchen::Client;

use crate::scan;
use crate::table::Table;
use crate::time;
use crate::{Ops, OpsError};

/// 星辰 lookups in flight at once; the client's own rate limit still applies.
const TARGET_LOOKUPS_IN_FLIGHT: usize = 4;

/// The window to reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileRequest {
    /// The first second, Beijing time.
    pub from: DateTime<FixedOffset>,
    /// The last second, inclusive.
    pub to: DateTime<FixedOffset>,
    /// How WDT is read: the scheme's clock and filters.
    pub filter: ReadFilter,
}

/// An order as the report names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderRef {
    /// WDT's number of the order, the bill's number.
    pub stockout_no: String,
    /// WDT's id of the order.
    pub stockout_id: String,
    /// When WDT last changed it.
    pub modified: DateTime<FixedOffset>,
}

/// An order loaded from an older version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outdated {
    /// The order.
    #[serde(flatten)]
    pub order: OrderRef,
    /// The `modified` of the version loaded.
    pub loaded_modified: DateTime<FixedOffset>,
}

/// A ledger entry whose order WDT no longer returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BillWithoutOrder {
    /// The bill's number.
    pub billno: String,
    /// The order's id, the ledger's key.
    pub stockout_id: String,
    /// 星辰's id of the bill.
    pub bill_id: String,
    /// The order's `modified` when it was loaded.
    pub modified: DateTime<FixedOffset>,
    /// When it was loaded.
    #[serde(serialize_with = "time::beijing")]
    pub loaded_at: DateTime<Utc>,
}

/// What reconciling a window found.
#[derive(Clone, Debug, Serialize)]
pub struct ReconcileReport {
    /// The window's first second.
    pub from: DateTime<FixedOffset>,
    /// Its last second.
    pub to: DateTime<FixedOffset>,
    /// Orders WDT returned for the window.
    pub orders: usize,
    /// Whether 星辰 was asked too.
    pub checked_target: bool,
    /// Orders without a ledger entry.
    pub missing_in_ledger: Vec<OrderRef>,
    /// Orders without a bill in 星辰 (only with a target).
    pub missing_in_target: Vec<OrderRef>,
    /// Orders loaded from an older version than WDT holds.
    pub outdated: Vec<Outdated>,
    /// Ledger entries of the window whose order WDT no longer returns.
    pub bills_without_order: Vec<BillWithoutOrder>,
    /// Ids of orders WDT sent without a number or a time.
    pub without_identity: Vec<String>,
}

impl ReconcileReport {
    /// How many findings the report holds.
    pub fn gaps(&self) -> usize {
        self.missing_in_ledger.len()
            + self.missing_in_target.len()
            + self.outdated.len()
            + self.bills_without_order.len()
            + self.without_identity.len()
    }

    /// Whether ledger (and target) agree with WDT.
    pub fn is_clean(&self) -> bool {
        self.gaps() == 0
    }
}

/// An order WDT returned, as reconciling needs it.
type WdtOrders = BTreeMap<String, OrderRef>;

impl Ops {
    /// Reconciles `request`'s window read through `reader` with the ledger and, when `target`
    /// is given, with 星辰.
    pub async fn reconcile(
        &self,
        reader: &WindowReader,
        request: &ReconcileRequest,
        target: Option<&Client>,
    ) -> Result<ReconcileReport, OpsError> {
        if request.from > request.to {
            return Err(OpsError::Selection(format!(
                "--from {} is after --to {}",
                wdt::format_wdt_time(&request.from),
                wdt::format_wdt_time(&request.to)
            )));
        }
        let (orders, without_identity) =
            read_orders(reader, request.from, request.to, request.filter.clone()).await?;
        let ledger = self.ledger_entries().await?;

        let mut report = ReconcileReport {
            from: request.from,
            to: request.to,
            orders: orders.len(),
            checked_target: target.is_some(),
            missing_in_ledger: Vec::new(),
            missing_in_target: Vec::new(),
            outdated: Vec::new(),
            bills_without_order: Vec::new(),
            without_identity,
        };
        for order in orders.values() {
            match ledger.get(&order.stockout_id) {
                None => report.missing_in_ledger.push(order.clone()),
                Some(entry) if entry.modified < order.modified => report.outdated.push(Outdated {
                    order: order.clone(),
                    loaded_modified: entry.modified,
                }),
                Some(_) => {}
            }
        }
        if let Some(client) = target {
            report.missing_in_target = missing_in_target(client, &orders).await?;
        }
        report.bills_without_order = bills_without_order(reader, request, &orders, &ledger).await?;

        sort_by_number(&mut report);
        Ok(report)
    }

    /// Every ledger entry, by order id.
    async fn ledger_entries(&self) -> Result<BTreeMap<String, LedgerEntry>, OpsError> {
        let bucket = self.bucket(&self.names().ledger_bucket()).await?;
        let mut entries = BTreeMap::new();
        for value in scan::kv_values(&bucket, false).await? {
            let stockout_id = pipeline::key::decode(&value.key).unwrap_or(value.key);
            // The ledger's own reader refuses what it cannot read; here an unreadable entry
            // would hide an order, so it stops the reconcile with the key named.
            let entry = serde_json::from_slice(&value.message.payload).map_err(|source| {
                OpsError::Store(pipeline::StoreError::Corrupt {
                    bucket: bucket.name.clone(),
                    key: stockout_id.clone(),
                    source,
                })
            })?;
            entries.insert(stockout_id, entry);
        }
        Ok(entries)
    }
}

/// The orders of `from..=to` by id, and the ids of those without an identity.
async fn read_orders(
    reader: &WindowReader,
    from: DateTime<FixedOffset>,
    to: DateTime<FixedOffset>,
    filter: ReadFilter,
) -> Result<(WdtOrders, Vec<String>), OpsError> {
    let mut orders = WdtOrders::new();
    let mut without_identity = Vec::new();
    let mut read = Box::pin(reader.read_range(from, to, filter));
    while let Some(order) = read.try_next().await? {
        match extractor::order::identity(&order) {
            Ok(identity) => {
                let order = OrderRef {
                    stockout_no: identity.stockout_no,
                    stockout_id: identity.stockout_id,
                    modified: identity.modified,
                };
                orders.insert(order.stockout_id.clone(), order);
            }
            Err(_) => without_identity.push(order.stockout_id().to_string()),
        }
    }
    Ok((orders, without_identity))
}

async fn missing_in_target(client: &Client, orders: &WdtOrders) -> Result<Vec<OrderRef>, OpsError> {
    let lookups = futures::stream::iter(orders.values())
        .map(|order| async move {
            let found = client
                .find_bill_by_number(&order.stockout_no)
                .await
                .map_err(|source| OpsError::Target {
                    billno: order.stockout_no.clone(),
                    source,
                })?;
            Ok::<_, OpsError>(found.is_none().then(|| order.clone()))
        })
        .buffer_unordered(TARGET_LOOKUPS_IN_FLIGHT);
    let missing: Vec<Option<OrderRef>> = lookups.try_collect().await?;
    Ok(missing.into_iter().flatten().collect())
}

async fn bills_without_order(
    reader: &WindowReader,
    request: &ReconcileRequest,
    orders: &WdtOrders,
    ledger: &BTreeMap<String, LedgerEntry>,
) -> Result<Vec<BillWithoutOrder>, OpsError> {
    let candidates: Vec<(&String, &LedgerEntry)> = ledger
        .iter()
        .filter(|(id, entry)| {
            (request.from..=request.to).contains(&entry.modified) && !orders.contains_key(*id)
        })
        .collect();
    let Some(earliest) = candidates.iter().map(|(_, entry)| entry.modified).min() else {
        return Ok(Vec::new());
    };
    let now = Utc::now().with_timezone(&wdt::beijing());
    let changed_since = ReadFilter {
        basis: TimeBasis::Modified,
        ..request.filter.clone()
    };
    let (still_there, _) = read_orders(reader, earliest, now.max(earliest), changed_since).await?;
    let still_there: BTreeSet<&String> = still_there.keys().collect();
    Ok(candidates
        .into_iter()
        .filter(|(id, _)| !still_there.contains(id))
        .map(|(id, entry)| BillWithoutOrder {
            billno: entry.billno.clone(),
            stockout_id: id.clone(),
            bill_id: entry.bill_id.clone(),
            modified: entry.modified,
            loaded_at: entry.loaded_at,
        })
        .collect())
}

fn sort_by_number(report: &mut ReconcileReport) {
    report
        .missing_in_ledger
        .sort_by(|a, b| a.stockout_no.cmp(&b.stockout_no));
    report
        .missing_in_target
        .sort_by(|a, b| a.stockout_no.cmp(&b.stockout_no));
    report
        .outdated
        .sort_by(|a, b| a.order.stockout_no.cmp(&b.order.stockout_no));
    report
        .bills_without_order
        .sort_by(|a, b| a.billno.cmp(&b.billno));
    report.without_identity.sort();
}

impl ReconcileReport {
    /// The findings as one table, then a closing line.
    pub fn to_text(&self) -> String {
        let mut table = Table::new([
            "FINDING",
            "ORDER",
            "STOCKOUT_ID",
            "WDT_MODIFIED",
            "LOADED_MODIFIED",
        ]);
        let time = |t: &DateTime<FixedOffset>| wdt::format_wdt_time(t);
        for order in &self.missing_in_ledger {
            table.row([
                "missing_in_ledger".to_owned(),
                order.stockout_no.clone(),
                order.stockout_id.clone(),
                time(&order.modified),
            ]);
        }
        for order in &self.missing_in_target {
            table.row([
                "missing_in_target".to_owned(),
                order.stockout_no.clone(),
                order.stockout_id.clone(),
                time(&order.modified),
            ]);
        }
        for outdated in &self.outdated {
            table.row([
                "outdated".to_owned(),
                outdated.order.stockout_no.clone(),
                outdated.order.stockout_id.clone(),
                time(&outdated.order.modified),
                time(&outdated.loaded_modified),
            ]);
        }
        for bill in &self.bills_without_order {
            table.row([
                "bill_without_order".to_owned(),
                bill.billno.clone(),
                bill.stockout_id.clone(),
                String::new(),
                time(&bill.modified),
            ]);
        }
        for id in &self.without_identity {
            table.row(["without_identity".to_owned(), String::new(), id.clone()]);
        }
        let mut text = if table.is_empty() {
            String::new()
        } else {
            table.render()
        };
        let target = if self.checked_target {
            "ledger and 星辰"
        } else {
            "ledger"
        };
        text.push_str(&format!(
            "{} orders from {} to {}, checked against the {target}: {} findings\n",
            self.orders,
            wdt::format_wdt_time(&self.from),
            wdt::format_wdt_time(&self.to),
            self.gaps()
        ));
        text
    }
}
