//! Running a compiled scheme on one order: pure, no I/O. It happens in two steps so that an async
//! caller can resolve master data in between, from a cache or from 星辰: [`Scheme::lookups`] says
//! which numbers the order needs resolved, and [`Scheme::evaluate`] builds the bill from the
//! order and the answers, or lists every problem that keeps the order from becoming one.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::Scheme;
use crate::bill::BillDraft;
use crate::collection::LookupKey;
use crate::mapping::{DerivedRule, Expr, LookupExpr, Mapping, Ref, RowMapping};
use crate::target::ValueType;
use crate::value::{self, Fault};

/// The answers to lookups: the value of the key's field, or `None` when 星辰 has no record with
/// that number. A failure to ask (a timeout) is the caller's to handle before evaluating.
pub trait Lookup {
    /// The answer for one key.
    fn find(&self, key: &LookupKey) -> Option<String>;
}

impl<F: Fn(&LookupKey) -> Option<String>> Lookup for F {
    fn find(&self, key: &LookupKey) -> Option<String> {
        self(key)
    }
}

impl Lookup for HashMap<LookupKey, String> {
    fn find(&self, key: &LookupKey) -> Option<String> {
        self.get(key).cloned()
    }
}

impl Lookup for BTreeMap<LookupKey, String> {
    fn find(&self, key: &LookupKey) -> Option<String> {
        self.get(key).cloned()
    }
}

/// The kind of a problem with an order, usable as a dead-letter reason kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A lookup found no record with that number (or found it without the wanted field).
    LookupNotFound,
    /// A value the mapping needs is absent, null or empty (an empty lookup number included).
    MissingField,
    /// A value is there but unusable: not a number, not a time, not an object.
    MalformedField,
    /// The order has no detail rows to make lines from.
    NoRows,
}

impl ProblemKind {
    /// The stable name, as dead letters carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::LookupNotFound => "lookup_not_found",
            ProblemKind::MissingField => "missing_field",
            ProblemKind::MalformedField => "malformed_field",
            ProblemKind::NoRows => "no_rows",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason an order cannot become a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The bill field that could not be made: `customerid_id`, `material_entity[2].qty`.
    pub target: String,
    /// The order field it comes from: `shop_no`, `details_list[2].goods_count`.
    pub source: String,
    /// The lookup that found nothing, for [`ProblemKind::LookupNotFound`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupKey>,
    /// What is wrong, in words.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.detail)
    }
}

impl Scheme {
    /// The master-data resolutions `order` needs, each once, in a stable order. Numbers that are
    /// absent or empty are left out: [`Scheme::evaluate`] reports them.
    pub fn lookups(&self, order: &Value) -> Vec<LookupKey> {
        let recorder = Recorder::default();
        // Evaluating with a recorder asks exactly the questions evaluation will ask, so the two
        // steps cannot disagree; the draft itself is thrown away.
        let _ = self.evaluate(order, &recorder);
        recorder.keys.into_inner().into_iter().collect()
    }

    /// The bill `order` becomes, given the answers to its lookups, or every problem that keeps
    /// it from becoming one. Never gives a bill with an empty id or a dropped value.
    pub fn evaluate<L: Lookup + ?Sized>(
        &self,
        order: &Value,
        lookup: &L,
    ) -> Result<BillDraft, Vec<Problem>> {
        let Some(order) = order.as_object() else {
            let detail = format!(
                "the order is {}, expected an object",
                value::json_type(order)
            );
            return Err(vec![problem(ProblemKind::MalformedField, "", "", detail)]);
        };
        let mut run = Run {
            scheme: self,
            order,
            lookup,
            problems: Vec::new(),
        };
        let mut bill = Map::new();
        for mapping in &self.header {
            if let Some(value) = run.mapping(mapping, None) {
                bill.insert(mapping.target.name.clone(), Value::String(value));
            }
        }
        for rows in &self.rows {
            if let Some(lines) = run.rows(rows) {
                bill.insert(rows.target.name.clone(), Value::Array(lines));
            }
        }
        if !run.problems.is_empty() {
            return Err(run.problems);
        }
        BillDraft::try_from(bill).map_err(|error| {
            vec![problem(
                ProblemKind::MissingField,
                "billno",
                "",
                error.to_string(),
            )]
        })
    }
}

#[derive(Default)]
struct Recorder {
    keys: RefCell<BTreeSet<LookupKey>>,
}

impl Lookup for Recorder {
    fn find(&self, key: &LookupKey) -> Option<String> {
        self.keys.borrow_mut().insert(key.clone());
        Some(format!("<{key}>"))
    }
}

/// The row a line is made from.
#[derive(Clone, Copy)]
struct Row<'a> {
    rows: &'a str,
    lines: &'a str,
    index: usize,
    fields: &'a Map<String, Value>,
}

struct Run<'a, L: ?Sized> {
    scheme: &'a Scheme,
    order: &'a Map<String, Value>,
    lookup: &'a L,
    problems: Vec<Problem>,
}

impl<L: Lookup + ?Sized> Run<'_, L> {
    fn mapping(&mut self, mapping: &Mapping, row: Option<Row<'_>>) -> Option<String> {
        let target = match row {
            Some(row) => format!("{}[{}].{}", row.lines, row.index, mapping.target.name),
            None => mapping.target.name.clone(),
        };
        match &mapping.expr {
            Expr::Constant(constant) => Some(constant.clone()),
            Expr::Copy(reference) => {
                let (source, text) = self.read(reference, row);
                let typed = text.and_then(|text| value::typed(text, mapping.target.value_type));
                self.keep(typed, &target, &source)
            }
            Expr::Lookup(lookup) => self.resolve(lookup, mapping.target.value_type, &target, row),
        }
    }

    fn resolve(
        &mut self,
        lookup: &LookupExpr,
        value_type: ValueType,
        target: &str,
        row: Option<Row<'_>>,
    ) -> Option<String> {
        let (source, number) = self.read(&lookup.number, row);
        let number = self.keep(
            number.and_then(|n| value::typed(n, ValueType::Key)),
            target,
            &source,
        )?;
        let key = LookupKey {
            collection: lookup.collection,
            field: lookup.returns.to_string(),
            number,
        };
        match self
            .lookup
            .find(&key)
            .filter(|found| !found.trim().is_empty())
        {
            Some(found) => {
                let typed = value::typed(found, value_type);
                self.keep(typed, target, &format!("{key}"))
            }
            None => {
                let detail = format!(
                    "no {} with number {} in 星辰 (looking for its {}, from `{source}`)",
                    key.collection, key.number, key.field
                );
                let mut not_found = problem(ProblemKind::LookupNotFound, target, &source, detail);
                not_found.lookup = Some(key);
                self.problems.push(not_found);
                None
            }
        }
    }

    /// Where a reference reads from, and what it reads.
    fn read(&self, reference: &Ref, row: Option<Row<'_>>) -> (String, Result<String, Fault>) {
        match (reference, row) {
            (Ref::Header(field), _) => (
                field.to_string(),
                value::scalar_text(self.order.get(*field)),
            ),
            (Ref::Row(field), Some(row)) => (
                format!("{}[{}].{field}", row.rows, row.index),
                value::scalar_text(row.fields.get(*field)),
            ),
            // The checker only lets row fields appear inside row mappings.
            (Ref::Row(field), None) => (field.to_string(), Err(Fault::Missing("is absent".into()))),
            (Ref::Derived(index), _) => match self.scheme.derived.get(*index).map(|d| &d.rule) {
                Some(DerivedRule::DateOf(of)) => {
                    let text = value::scalar_text(self.order.get(*of));
                    (of.to_string(), text.and_then(|t| value::date_of(&t)))
                }
                None => (String::new(), Err(Fault::Missing("is not defined".into()))),
            },
        }
    }

    fn keep(&mut self, value: Result<String, Fault>, target: &str, source: &str) -> Option<String> {
        match value {
            Ok(value) => Some(value),
            Err(fault) => {
                let (kind, text) = match fault {
                    Fault::Missing(text) => (ProblemKind::MissingField, text),
                    Fault::Malformed(text) => (ProblemKind::MalformedField, text),
                };
                self.problems
                    .push(problem(kind, target, source, format!("`{source}` {text}")));
                None
            }
        }
    }

    fn rows(&mut self, mapping: &RowMapping) -> Option<Vec<Value>> {
        let target = mapping.target.name.as_str();
        let source = mapping.source;
        let rows = match self.order.get(source) {
            Some(Value::Array(rows)) if !rows.is_empty() => rows,
            None | Some(Value::Null) | Some(Value::Array(_)) => {
                let detail = format!("the order has no `{source}` rows");
                self.problems
                    .push(problem(ProblemKind::NoRows, target, source, detail));
                return None;
            }
            Some(other) => {
                let detail = format!(
                    "`{source}` is {}, expected an array",
                    value::json_type(other)
                );
                self.problems
                    .push(problem(ProblemKind::MalformedField, target, source, detail));
                return None;
            }
        };
        let mut lines = Vec::with_capacity(rows.len());
        for (index, row) in rows.iter().enumerate() {
            let Some(fields) = row.as_object() else {
                let at = format!("{source}[{index}]");
                let detail = format!("`{at}` is {}, expected an object", value::json_type(row));
                let line = format!("{target}[{index}]");
                self.problems
                    .push(problem(ProblemKind::MalformedField, &line, &at, detail));
                continue;
            };
            let row = Row {
                rows: source,
                lines: target,
                index,
                fields,
            };
            let mut line = Map::new();
            for field in &mapping.fields {
                if let Some(value) = self.mapping(field, Some(row)) {
                    line.insert(field.target.name.clone(), Value::String(value));
                }
            }
            lines.push(Value::Object(line));
        }
        Some(lines)
    }
}

fn problem(kind: ProblemKind, target: &str, source: &str, detail: String) -> Problem {
    Problem {
        kind,
        target: target.into(),
        source: source.into(),
        lookup: None,
        detail,
    }
}
