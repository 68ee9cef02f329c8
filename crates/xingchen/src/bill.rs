//! Saving sales outbound bills and finding them by number.
//!
//! A create (a bill without `id`) is never posted twice blindly: a transient failure that may
//! have reached 星辰 (a timeout after sending) is only retried by [`Client::save_bill`], which
//! first looks the bill up by number and, if 星辰 has it, returns it as saved. A modify (with `id`)
//! replaces the bill, so retrying it is safe. Keeping the ledger of posted bills is left to the
//! loader.

use serde_json::{Value, json};

use crate::client::{Client, log_retry};
use crate::error::{Error, Result};
use crate::model::{Bill, FoundBill, SavedBill};
use crate::wire;

/// Where bills are saved.
pub const SAVE_PATH: &str = "/jdy/sal/sal_outbound_save";

/// Where bills are listed, and the body field that searches them by number.
///
/// The list endpoint and its search field are inferred from the V1 family, not confirmed for
/// sales outbound bills; this is the one place to correct them.
pub const BILL_LIST_PATH: &str = "/jdy/sal/sal_outbound_list";
const BILL_SEARCH_FIELD: &str = "search";

/// Rows asked for per page when searching bills by number.
const BILL_SEARCH_PAGE_SIZE: u64 = 100;

impl Client {
    /// Saves a bill, retrying transient failures unless a retry could post it twice.
    ///
    /// An ambiguous failure of a create comes back as it is; use [`Client::save_bill`] to
    /// recover from it.
    pub async fn save(&self, bill: &Bill) -> Result<SavedBill> {
        self.save_with(bill, false).await
    }

    /// Saves a bill; after an ambiguous failure, finds it by number instead of posting again.
    ///
    /// Returns `recovered: true` when the bill was found rather than acknowledged. A repeated
    /// bill number met on the first attempt is returned as [`Error::DuplicateBillNo`]: whether
    /// that bill is this one is the caller's ledger's question.
    pub async fn save_bill(&self, bill: &Bill) -> Result<SavedBill> {
        self.save_with(bill, true).await
    }

    async fn save_with(&self, bill: &Bill, recover: bool) -> Result<SavedBill> {
        let body = serde_json::to_value(bill)
            .map_err(|e| Error::Config(format!("bill {} does not serialise: {e}", bill.billno)))?;
        let mut delays = backon::BackoffBuilder::build(self.backoff());
        // Set once an attempt may have stored the bill: from then on a duplicate is ours.
        let mut maybe_stored = false;
        loop {
            let error = match self.save_once(&bill.billno, &body).await {
                Ok(id) => return Ok(saved(bill, id, false)),
                Err(error) => error,
            };
            let error = if recover && bill.id.is_none() && (error.is_ambiguous() || maybe_stored) {
                maybe_stored = true;
                match self.recover(bill, error).await {
                    Recovery::Saved(found) => return Ok(found),
                    Recovery::Unknown(error) => return Err(error),
                    Recovery::Absent(error) => error,
                }
            } else {
                error
            };
            let retryable =
                error.is_transient() && (!error.is_ambiguous() || bill.id.is_some() || recover);
            match delays.next() {
                Some(delay) if retryable => {
                    log_retry(SAVE_PATH, &error, delay);
                    tokio::time::sleep(delay).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// Looks the bill up after `error`, which may have stored it.
    async fn recover(&self, bill: &Bill, error: Error) -> Recovery {
        match self.find_bill_by_number(&bill.billno).await {
            Ok(Some(found)) => {
                let billno = &bill.billno;
                tracing::warn!(%billno, error = %error, "Recovered bill by its number");
                Recovery::Saved(saved(bill, found.id, true))
            }
            Ok(None) => Recovery::Absent(error),
            Err(lookup) => {
                tracing::warn!(billno = %bill.billno, error = %lookup, "Bill look-up failed");
                Recovery::Unknown(error)
            }
        }
    }

    async fn save_once(&self, billno: &str, body: &Value) -> Result<String> {
        let data = self.call_v1_once(SAVE_PATH, body).await?;
        wire::saved_id(SAVE_PATH, billno, data)
    }

    /// The bill 星辰 holds under exactly this number, with its id.
    pub async fn find_bill_by_number(&self, billno: &str) -> Result<Option<FoundBill>> {
        let mut page_no = 1;
        loop {
            let body = json!({
                BILL_SEARCH_FIELD: billno,
                "page": page_no,
                "pagesize": BILL_SEARCH_PAGE_SIZE,
            });
            let data = self.call_v1(BILL_LIST_PATH, &body).await?;
            let page = wire::page::<Value>(BILL_LIST_PATH, data)?;
            // The search is fuzzy; only the exact number is this bill.
            if let Some(row) = page.rows.iter().find(|row| row["billno"] == billno) {
                return found_bill(row.clone()).map(Some);
            }
            if page.rows.is_empty() || page_no >= page.total_pages {
                return Ok(None);
            }
            page_no += 1;
        }
    }
}

fn found_bill(row: Value) -> Result<FoundBill> {
    let decode = |message: String| Error::Decode {
        endpoint: BILL_LIST_PATH.to_owned(),
        message,
    };
    let bill: Bill = serde_json::from_value(row).map_err(|e| decode(e.to_string()))?;
    let id = bill
        .id
        .clone()
        .ok_or_else(|| decode(format!("bill {} has no id", bill.billno)))?;
    Ok(FoundBill { id, bill })
}

fn saved(bill: &Bill, id: String, recovered: bool) -> SavedBill {
    SavedBill {
        id,
        billno: bill.billno.clone(),
        recovered,
    }
}

/// What a look-up after a doubtful save found.
enum Recovery {
    /// 星辰 holds the bill.
    Saved(SavedBill),
    /// 星辰 does not hold it; posting again cannot duplicate it.
    Absent(Error),
    /// The look-up failed, so the original error stands: the bill may exist.
    Unknown(Error),
}
