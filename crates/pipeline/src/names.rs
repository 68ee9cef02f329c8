//! Every name the bridge gives to something in NATS: streams, subjects, consumers and KV buckets.
//!
//! All names derive from one prefix (default `bridge`), so two bridges can share a NATS account
//! by choosing different prefixes. Subjects are the prefix plus dotted words, stream names the
//! prefix in capitals plus a word, buckets the prefix plus an underscore and a word:
//!
//! | what | name with the default prefix |
//! |---|---|
//! | raw orders: stream, subject | `BRIDGE_ORDERS_RAW`, `bridge.orders.raw` |
//! | bill payloads: stream, subject | `BRIDGE_BILLS`, `bridge.bills` |
//! | dead letters: stream, subjects | `BRIDGE_DLQ`, `bridge.dlq.>` (`bridge.dlq.transform`, …) |
//! | durable pull consumers | `transformer` on raw orders, `loader` on bills |
//! | KV buckets of the stores | `bridge_cursor`, `bridge_masterdata`, `bridge_ledger` |
//! | KV buckets of heartbeats and the budget | `bridge_workers`, `bridge_budget` |
//!
//! Creating these things is left to [`crate::topology`]; this module only spells them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The prefix used when the configuration names none.
pub const DEFAULT_PREFIX: &str = "bridge";

/// The durable consumer the transformer pulls raw orders from.
pub const TRANSFORMER_CONSUMER: &str = "transformer";

/// The durable consumer the loader pulls bill payloads from.
pub const LOADER_CONSUMER: &str = "loader";

/// Longest prefix accepted; it keeps every derived name well inside NATS limits.
const MAX_PREFIX_LEN: usize = 32;

/// A step of the pipeline; it names dead-letter subjects and appears in every dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading orders from WDT and publishing them raw.
    Extract,
    /// Turning a raw order into a bill payload.
    Transform,
    /// Posting a bill payload to 星辰.
    Load,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 3] = [Stage::Extract, Stage::Transform, Stage::Load];

    /// The stage's word in subjects, headers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Extract => "extract",
            Stage::Transform => "transform",
            Stage::Load => "load",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Stage, NameError> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == text)
            .ok_or_else(|| NameError::UnknownStage(text.to_owned()))
    }
}

/// A name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The prefix is empty, too long, or holds a character outside `a-z`, `0-9`, `_`, `-`.
    #[error(
        "invalid prefix {0:?}: use 1 to 32 characters from a-z, 0-9, '_' and '-', starting \
         with a letter"
    )]
    InvalidPrefix(String),
    /// A stage word that is not one of `extract`, `transform`, `load`.
    #[error("unknown stage {0:?}: expected extract, transform or load")]
    UnknownStage(String),
}

impl NameError {
    /// Names are configuration: retrying never helps.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// The names of one bridge's streams, subjects, consumers and buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names derived from `prefix`, which must be lowercase letters, digits, `_` or `-`.
    pub fn new(prefix: &str) -> Result<Names, NameError> {
        let starts_with_letter = prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase());
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c);
        if !starts_with_letter || prefix.len() > MAX_PREFIX_LEN || !prefix.chars().all(allowed) {
            return Err(NameError::InvalidPrefix(prefix.to_owned()));
        }
        Ok(Names {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix every name derives from.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stream of raw orders, `BRIDGE_ORDERS_RAW`.
    pub fn raw_orders_stream(&self) -> String {
        self.stream("ORDERS_RAW")
    }

    /// The subject raw orders are published on, `bridge.orders.raw`.
    pub fn raw_orders_subject(&self) -> String {
        format!("{}.orders.raw", self.prefix)
    }

    /// The stream of bill payloads, `BRIDGE_BILLS`.
    pub fn bills_stream(&self) -> String {
        self.stream("BILLS")
    }

    /// The subject bill payloads are published on, `bridge.bills`.
    pub fn bills_subject(&self) -> String {
        format!("{}.bills", self.prefix)
    }

    /// The stream of dead letters, `BRIDGE_DLQ`.
    pub fn dlq_stream(&self) -> String {
        self.stream("DLQ")
    }

    /// The dead-letter subject of one stage, `bridge.dlq.<stage>`.
    pub fn dlq_subject(&self, stage: Stage) -> String {
        format!("{}.dlq.{stage}", self.prefix)
    }

    /// The wildcard the dead-letter stream captures, `bridge.dlq.>`.
    pub fn dlq_subjects(&self) -> String {
        format!("{}.dlq.>", self.prefix)
    }

    /// The stream a stage consumes from and its durable consumer; `None` for the extractor, which
    /// reads WDT instead of a stream.
    pub fn consumed_by(&self, stage: Stage) -> Option<(String, &'static str)> {
        match stage {
            Stage::Extract => None,
            Stage::Transform => Some((self.raw_orders_stream(), TRANSFORMER_CONSUMER)),
            Stage::Load => Some((self.bills_stream(), LOADER_CONSUMER)),
        }
    }

    /// The bucket holding the extractor's cursor, `bridge_cursor`.
    pub fn cursor_bucket(&self) -> String {
        self.bucket("cursor")
    }

    /// The bucket caching master-data lookups, `bridge_masterdata`.
    pub fn masterdata_bucket(&self) -> String {
        self.bucket("masterdata")
    }

    /// The bucket holding the ledger of posted bills, `bridge_ledger`.
    pub fn ledger_bucket(&self) -> String {
        self.bucket("ledger")
    }

    /// The bucket for worker heartbeats, `bridge_workers`.
    pub fn workers_bucket(&self) -> String {
        self.bucket("workers")
    }

    /// The bucket holding the shared 星辰 request budget, `bridge_budget`.
    pub fn budget_bucket(&self) -> String {
        self.bucket("budget")
    }

    fn stream(&self, word: &str) -> String {
        // Stream names may not hold dots; the prefix has none, and upper case sets streams apart
        // from subjects when an operator reads `nats stream ls`.
        format!("{}_{word}", self.prefix.to_ascii_uppercase())
    }

    fn bucket(&self, word: &str) -> String {
        format!("{}_{word}", self.prefix)
    }
}

impl Default for Names {
    fn default() -> Names {
        Names {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_match_the_documented_table() {
        let names = Names::default();
        assert_eq!(names.raw_orders_stream(), "BRIDGE_ORDERS_RAW");
        assert_eq!(names.raw_orders_subject(), "bridge.orders.raw");
        assert_eq!(names.bills_stream(), "BRIDGE_BILLS");
        assert_eq!(names.bills_subject(), "bridge.bills");
        assert_eq!(names.dlq_stream(), "BRIDGE_DLQ");
        assert_eq!(names.dlq_subjects(), "bridge.dlq.>");
        assert_eq!(names.dlq_subject(Stage::Transform), "bridge.dlq.transform");
        assert_eq!(names.dlq_subject(Stage::Load), "bridge.dlq.load");
        assert_eq!(names.cursor_bucket(), "bridge_cursor");
        assert_eq!(names.masterdata_bucket(), "bridge_masterdata");
        assert_eq!(names.ledger_bucket(), "bridge_ledger");
        assert_eq!(names.workers_bucket(), "bridge_workers");
        assert_eq!(names.budget_bucket(), "bridge_budget");
        assert_eq!(
            names.consumed_by(Stage::Load),
            Some(("BRIDGE_BILLS".to_owned(), LOADER_CONSUMER))
        );
        assert_eq!(names.consumed_by(Stage::Extract), None);
    }

    #[test]
    fn a_second_prefix_gives_disjoint_names() {
        let names = Names::new("shop2").expect("valid prefix");
        assert_eq!(names.raw_orders_stream(), "SHOP2_ORDERS_RAW");
        assert_eq!(names.dlq_subject(Stage::Extract), "shop2.dlq.extract");
        assert_eq!(names.ledger_bucket(), "shop2_ledger");
    }

    #[test]
    fn prefixes_that_would_break_a_subject_or_bucket_are_refused() {
        for bad in [
            "",
            "Bridge",
            "a.b",
            "a b",
            "1abc",
            "a>",
            "a*",
            &"x".repeat(33),
        ] {
            assert!(Names::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Names::new("a-b_9").is_ok());
    }

    #[test]
    fn stages_round_trip_through_their_words() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert!("loading".parse::<Stage>().is_err());
    }
}
