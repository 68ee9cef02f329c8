//! The compiled mapping: what each target field of the bill is made from, with every name already
//! resolved against the order's field catalogue and the declared collections. [`crate::check`]
//! builds it from the file; [`crate::eval`] runs it on orders.

use std::fmt;

use crate::collection::Collection;
use crate::target::TargetField;

/// Where a value of the order comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ref {
    /// A field of the order header.
    Header(&'static str),
    /// A field of the current row of the row mapping.
    Row(&'static str),
    /// A derived field, by its index in [`crate::Scheme`]'s list.
    Derived(usize),
}

/// A field computed from the order before mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Derived {
    pub name: String,
    pub rule: DerivedRule,
}

/// How a derived field is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DerivedRule {
    /// The date part of a header time, as written.
    DateOf(&'static str),
}

/// A lookup: `returns` of the `collection` record whose number is the value of `number`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LookupExpr {
    pub collection: Collection,
    pub returns: &'static str,
    pub number: Ref,
}

/// What a scalar target field is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Copy(Ref),
    Constant(String),
    Lookup(LookupExpr),
}

/// One scalar target field and its expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub target: TargetField,
    pub expr: Expr,
}

/// A target array filled with one line per row of an order array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowMapping {
    pub target: TargetField,
    pub source: &'static str,
    pub fields: Vec<Mapping>,
}

/// A collection id a scheme declares, what it is, and what a lookup may return from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionDecl {
    /// The id the seed's platform gave the collection.
    pub id: String,
    /// Which 星辰 master data it is.
    pub kind: Collection,
    /// The fields lookups may return, a subset of [`Collection::returnable_fields`].
    pub returns: Vec<&'static str>,
}

/// How a target field gets its value, as `bridge scheme check` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingKind {
    /// Copied from a field of the order or of the row.
    Copy,
    /// Computed from the order by a `[derived]` rule.
    Derived,
    /// Resolved in 星辰 master data by number.
    Lookup,
    /// The same for every order.
    Constant,
    /// One line per row of an order array.
    Rows,
}

impl fmt::Display for MappingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that operators' tables can align the kind with `{:<9}`.
        f.pad(match self {
            MappingKind::Copy => "copy",
            MappingKind::Derived => "derived",
            MappingKind::Lookup => "lookup",
            MappingKind::Constant => "constant",
            MappingKind::Rows => "rows",
        })
    }
}

/// One target field of a scheme as written and as understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// The field as the seed's 接口字段 column writes it: `billno`, `material_entity.qty`.
    pub path: String,
    /// The value as the file writes it (the seed's 预设值).
    pub written: String,
    /// How the value is made.
    pub kind: MappingKind,
    /// What it is made from, in words: `order shop_no`, `details_list[].goods_count`,
    /// `customer.id where number = shop_no`.
    pub source: String,
    /// The line of the file it is on.
    pub line: usize,
}
