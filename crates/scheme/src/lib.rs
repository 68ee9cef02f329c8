//! The mapping from a 旺店通 stock-out order to a 星辰 sales outbound bill, as validated
//! configuration.
//!
//! A *scheme* is a TOML file (the shipped one is `deploy/schemes/wdt-stockout-to-xingchen-v1.toml`,
//! compiled in as [`Scheme::builtin`]). It holds the source request the extractor sends, the
//! collections lookups may name, derived fields, and the target mapping written as the seed's
//! table writes it. The file's comment header documents the format; in short:
//!
//! ```toml
//! name = "…"
//! [source]                 # method, window_field = "consign_time" | "modified", status,
//! [source.params]          # page_size, start_page; params with {{WINDOW_START}}, {{WINDOW_END}},
//!                          # {{PAGINATION_PAGE_SIZE}}, {{PAGINATION_START_PAGE}}
//! [collections.<id>]       # kind = "customer" | "material" | "store", returns = [...]
//! [derived]                # consign_time_new = { date_of = "consign_time" }
//! [target]                 # api = "jdy/sal/sal_outbound_save"
//! [target.fields]          # billno = "{{stockout_no}}", material_entity = "details_list",
//!                          # "material_entity.qty" = "{{details_list_goods_count}}", …
//! ```
//!
//! A value is one of:
//! - `{{field}}`: a field of the order header, or a `[derived]` field. Inside a row mapping too,
//!   a plain `{{field}}` is the header's (`{{warehouse_no}}`, `{{shop_no}}`, and `{{goods_count}}`
//!   is the order's total, not the row's).
//! - `{{details_list_<f>}}` or `{{details_list.details_list_<f>}}`, only inside a row mapping over
//!   `details_list`: the row's field `<f>` (`{{details_list_goods_no}}` is the row's `goods_no`).
//! - `findCollection find <returned> from <collection id> where number=<reference>` (the seed
//!   also writes `_findCollection`; both mean the same): a lookup of `<returned>` in the record of
//!   that collection whose number is the reference's value.
//! - for a row mapping (`material_entity`), the bare name of an order array: `details_list`;
//!   the bill gets one line per row, in order.
//! - anything else: a constant, written as is (`13`).
//!
//! [`Scheme::load`] checks the whole file and refuses it with every mistake listed, each with its
//! line, column and target field ([`SchemeError`]). Evaluation is pure: [`Scheme::lookups`] lists
//! the master data an order needs, the caller resolves it (cache, 星辰), and
//! [`Scheme::evaluate`] gives a [`BillDraft`] or every [`Problem`] with the order. Decimals stay
//! exact, dates are taken as WDT wrote them in Beijing time.

mod bill;
mod check;
mod collection;
mod eval;
mod expr;
mod file;
mod mapping;
mod mistake;
mod source;
pub mod target;
mod value;

use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use bill::{BILLNO_FIELD, BillDraft, BillDraftError, LINES_FIELD};
pub use collection::{Collection, LookupKey};
pub use eval::{Lookup, Problem, ProblemKind};
pub use mapping::{CollectionDecl, MappingKind, TargetInfo};
pub use mistake::{Mistake, MistakeKind, SchemeError};
pub use source::{BEIJING, ParamValue, Placeholder, SOURCE_METHOD, Source, WindowField};

/// The shipped scheme's text.
pub const BUILTIN_TEXT: &str =
    include_str!("../../../deploy/schemes/wdt-stockout-to-xingchen-v1.toml");

/// The name the shipped scheme goes by in messages.
pub const BUILTIN_ORIGIN: &str = "deploy/schemes/wdt-stockout-to-xingchen-v1.toml (built in)";

/// A checked scheme, ready to evaluate orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheme {
    origin: String,
    name: String,
    fingerprint: String,
    source: Source,
    collections: Vec<CollectionDecl>,
    derived: Vec<mapping::Derived>,
    header: Vec<mapping::Mapping>,
    rows: Vec<mapping::RowMapping>,
    targets: Vec<TargetInfo>,
}

impl Scheme {
    /// Reads and checks a scheme file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scheme, SchemeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SchemeError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scheme::from_str(&text, &path.display().to_string())
    }

    /// Checks a scheme given as text; `origin` names it in messages.
    #[allow(
        clippy::should_implement_trait,
        reason = "takes the origin's name as well"
    )]
    pub fn from_str(text: &str, origin: &str) -> Result<Scheme, SchemeError> {
        check::compile(text, origin)
    }

    /// The shipped scheme.
    pub fn builtin() -> Scheme {
        // The shipped file is checked by this crate's tests; it cannot fail at run time.
        #[allow(clippy::expect_used, reason = "the invariant is tested, see above")]
        Scheme::from_str(BUILTIN_TEXT, BUILTIN_ORIGIN).expect("the built-in scheme is valid")
    }

    /// The file name, or the name the text was given.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The scheme's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SHA-256 of the scheme's text, lowercase hex, to record which scheme made a bill.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The source request settings, for the extractor.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The collections lookups may name.
    pub fn collections(&self) -> &[CollectionDecl] {
        &self.collections
    }

    /// Every target field, in file order, as written and as understood.
    pub fn targets(&self) -> &[TargetInfo] {
        &self.targets
    }
}

/// Lowercase hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}
