//! What a dead letter says about an order the scheme could not map: one reason kind for
//! dashboards and alerts, and a text naming every problem.
//!
//! The text lists each problem as `<kind>: <what> (<bill field>)`, joined by `; `. Lookups that
//! found nothing are grouped by record, so a goods number missing from 星辰 reads once, with
//! every bill field it left empty: `lookup_not_found: material G-1099 not found
//! (material_entity[2].materialid_id, material_entity[2].unit_id)`. Finding the problems is the
//! scheme's work; dead-lettering the message is the worker's.

use pipeline::dead_letter::ReasonKind;
use scheme::{Collection, Problem, ProblemKind};

/// The dead letter's reason kind for `problems`: the one an operator must fix first.
///
/// A broken order comes before a missing or unusable field, which comes before a number 星辰
/// lacks: `lookup_not_found` invites adding master data and redriving, and a redrive would fail
/// again if the order itself needed fixing in 旺店通 as well.
pub fn reason_kind(problems: &[Problem]) -> ReasonKind {
    problems
        .iter()
        .map(kind_of)
        .min_by_key(|kind| rank(*kind))
        .unwrap_or(ReasonKind::MalformedOrder)
}

/// Every problem, in the scheme's order, on one line.
pub fn reason_text(problems: &[Problem]) -> String {
    let mut parts: Vec<Part> = Vec::new();
    for problem in problems {
        match &problem.lookup {
            Some(key) if problem.kind == ProblemKind::LookupNotFound => {
                let same = parts.iter_mut().find_map(|part| match part {
                    Part::NotFound {
                        collection,
                        number,
                        targets,
                    } if *collection == key.collection && *number == key.number => Some(targets),
                    _ => None,
                });
                match same {
                    Some(targets) => targets.push(problem.target.clone()),
                    None => parts.push(Part::NotFound {
                        collection: key.collection,
                        number: key.number.clone(),
                        targets: vec![problem.target.clone()],
                    }),
                }
            }
            _ => parts.push(Part::Other(other_text(problem))),
        }
    }
    if parts.is_empty() {
        return "the scheme reported no problem and made no bill".to_owned();
    }
    let texts: Vec<String> = parts.iter().map(Part::text).collect();
    texts.join("; ")
}

enum Part {
    NotFound {
        collection: Collection,
        number: String,
        targets: Vec<String>,
    },
    Other(String),
}

impl Part {
    fn text(&self) -> String {
        match self {
            Part::NotFound {
                collection,
                number,
                targets,
            } => format!(
                "{}: {collection} {number} not found ({})",
                ProblemKind::LookupNotFound,
                targets.join(", ")
            ),
            Part::Other(text) => text.clone(),
        }
    }
}

fn other_text(problem: &Problem) -> String {
    if problem.target.is_empty() {
        format!("{}: {}", problem.kind, problem.detail)
    } else {
        format!("{}: {} ({})", problem.kind, problem.detail, problem.target)
    }
}

fn kind_of(problem: &Problem) -> ReasonKind {
    match problem.kind {
        // An order that is not an object at all is reported against no field.
        ProblemKind::MalformedField if problem.target.is_empty() => ReasonKind::MalformedOrder,
        ProblemKind::MalformedField => ReasonKind::InvalidValue,
        ProblemKind::MissingField | ProblemKind::NoRows => ReasonKind::MissingField,
        ProblemKind::LookupNotFound => ReasonKind::LookupNotFound,
    }
}

fn rank(kind: ReasonKind) -> u8 {
    match kind {
        ReasonKind::MalformedOrder => 0,
        ReasonKind::MissingField => 1,
        ReasonKind::InvalidValue => 2,
        ReasonKind::LookupNotFound => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheme::{LookupKey, Scheme};
    use serde_json::{Value, json};

    fn order(details: Value) -> Value {
        json!({
            "stockout_no": "CK1", "consign_time": "2024-05-01 10:00:00", "shop_no": "TM001",
            "warehouse_no": "WH01", "details_list": details,
        })
    }

    fn row(goods_no: &str, goods_count: &str) -> Value {
        json!({"goods_no": goods_no, "goods_count": goods_count, "market_price": "9.9000"})
    }

    /// Evaluates with a 星辰 that knows every number except those in `unknown`.
    fn problems(order: &Value, unknown: &[&str]) -> Vec<Problem> {
        let lookup =
            |key: &LookupKey| (!unknown.contains(&key.number.as_str())).then(|| "1".to_owned());
        Scheme::builtin()
            .evaluate(order, &lookup)
            .expect_err("the order has problems")
    }

    #[test]
    fn an_unknown_goods_number_is_named_once_with_its_collection_and_fields() {
        let order = order(json!([
            row("G-1", "1"),
            row("G-1", "2"),
            row("G-1099", "1")
        ]));
        let found = problems(&order, &["G-1099"]);
        assert_eq!(reason_kind(&found), ReasonKind::LookupNotFound);
        assert_eq!(
            reason_text(&found),
            "lookup_not_found: material G-1099 not found \
             (material_entity[2].materialid_id, material_entity[2].unit_id)"
        );
    }

    #[test]
    fn every_problem_is_listed_and_the_kind_is_the_one_to_fix_first() {
        let mut order = order(json!([row("G-1099", "many"), row("G-2", "1")]));
        order["consign_time"] = Value::Null;
        let found = problems(&order, &["G-1099", "WH01"]);
        let text = reason_text(&found);
        for expected in [
            "missing_field: ",
            "(billdate)",
            "material G-1099 not found",
            "store WH01 not found (material_entity[0].stockid_id, material_entity[1].stockid_id)",
            "malformed_field: ",
            "(material_entity[0].qty)",
        ] {
            assert!(text.contains(expected), "{expected:?} in {text}");
        }
        assert_eq!(reason_kind(&found), ReasonKind::MissingField);
    }

    #[test]
    fn a_quantity_that_is_not_a_number_is_an_invalid_value() {
        let found = problems(&order(json!([row("G-1", "x")])), &[]);
        assert_eq!(reason_kind(&found), ReasonKind::InvalidValue);
    }

    #[test]
    fn an_order_without_rows_misses_a_field_and_one_that_is_no_object_is_malformed() {
        let found = problems(&order(json!([])), &[]);
        assert_eq!(reason_kind(&found), ReasonKind::MissingField);
        assert!(reason_text(&found).starts_with("no_rows: "));

        let found = problems(&json!([1, 2]), &[]);
        assert_eq!(reason_kind(&found), ReasonKind::MalformedOrder);
    }
}
