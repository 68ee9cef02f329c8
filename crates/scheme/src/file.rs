//! The scheme file as TOML gives it: every value kept with its span so that [`crate::check`] can
//! say where a mistake is. Nothing here decides what a value means.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::collection::Collection;
use crate::source::WindowField;

/// A string table whose keys and values keep their spans.
pub(crate) type SpannedTable = BTreeMap<Spanned<String>, Spanned<String>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScheme {
    pub name: Spanned<String>,
    pub source: RawSource,
    #[serde(default)]
    pub collections: BTreeMap<Spanned<String>, RawCollection>,
    #[serde(default)]
    pub derived: BTreeMap<Spanned<String>, Spanned<RawDerived>>,
    pub target: RawTarget,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    pub method: Spanned<String>,
    pub window_field: Spanned<WindowField>,
    #[serde(default)]
    pub status: Option<Spanned<i64>>,
    pub page_size: Spanned<i64>,
    #[serde(default)]
    pub start_page: Option<Spanned<i64>>,
    pub params: Spanned<SpannedTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCollection {
    pub kind: Spanned<Collection>,
    pub returns: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) enum RawDerived {
    DateOf(Spanned<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub api: Spanned<String>,
    pub fields: Spanned<SpannedTable>,
}
