//! Checking a scheme file whole and compiling it: every name is resolved against 旺店通's field
//! catalogue (`wdt::fields`), the declared collections and the 星辰 bill's fields
//! ([`crate::target`]), and every mistake is collected with its position before the file is
//! refused. The syntax of one value is [`crate::expr`]'s business.

use std::collections::BTreeSet;
use std::ops::Range;

use toml::Spanned;
use wdt::fields::{self, FieldKind};

use crate::expr::{self, Syntax, Token};
use crate::file::{RawCollection, RawDerived, RawScheme, RawSource, RawTarget, SpannedTable};
use crate::mapping::{
    CollectionDecl, Derived, DerivedRule, Expr, LookupExpr, Mapping, MappingKind, Ref, RowMapping,
    TargetInfo,
};
use crate::mistake::{Mistake, MistakeKind, Positions, SchemeError};
use crate::source::{KNOWN_PARAMS, ParamValue, Placeholder, SOURCE_METHOD, Source, WindowField};
use crate::target::{self, TARGET_API, TargetField, ValueType};
use crate::value;
use crate::{Collection, Scheme};

/// Parses, checks and compiles a scheme; `origin` names the text in messages.
pub(crate) fn compile(text: &str, origin: &str) -> Result<Scheme, SchemeError> {
    let positions = Positions::new(text);
    let raw: RawScheme = toml::from_str(text).map_err(|error| {
        let (line, column) = positions.line_column(error.span().map_or(0, |span| span.start));
        let mistake = Mistake {
            kind: MistakeKind::Toml,
            field: String::new(),
            line,
            column,
            message: error.message().trim().to_string(),
            expected: String::new(),
        };
        SchemeError::Invalid {
            origin: origin.into(),
            mistakes: vec![mistake],
        }
    })?;

    let mut checker = Checker {
        text,
        positions,
        mistakes: Vec::new(),
    };
    let collections = checker.collections(&raw.collections);
    let derived = checker.derived(&raw.derived);
    let source = checker.source(&raw.source);
    let context = Names {
        collections: &collections,
        derived: &derived,
    };
    let target = checker.target(&raw.target, &context);

    if !checker.mistakes.is_empty() {
        let mut mistakes = checker.mistakes;
        mistakes.sort_by_key(|m| (m.line, m.column));
        return Err(SchemeError::Invalid {
            origin: origin.into(),
            mistakes,
        });
    }
    Ok(Scheme {
        origin: origin.into(),
        name: raw.name.into_inner(),
        fingerprint: crate::sha256_hex(text.as_bytes()),
        source,
        collections,
        derived,
        header: target.header,
        rows: target.rows,
        targets: target.infos,
    })
}

struct Checker<'a> {
    text: &'a str,
    positions: Positions<'a>,
    mistakes: Vec<Mistake>,
}

/// What a reference may name besides the order's fields.
struct Names<'a> {
    collections: &'a [CollectionDecl],
    derived: &'a [Derived],
}

/// Where a value is: the bill header, or a row mapping over an order array.
#[derive(Clone, Copy)]
enum Context<'a> {
    Header,
    Row { rows: &'a str },
}

struct CompiledTarget {
    header: Vec<Mapping>,
    rows: Vec<RowMapping>,
    infos: Vec<TargetInfo>,
}

/// A reference that could not be resolved.
struct BadRef {
    kind: MistakeKind,
    message: String,
    expected: String,
}

impl<'a> Checker<'a> {
    fn mistake(
        &mut self,
        kind: MistakeKind,
        field: &str,
        offset: usize,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        let (line, column) = self.positions.line_column(offset);
        self.mistakes.push(Mistake {
            kind,
            field: field.into(),
            line,
            column,
            message: message.into(),
            expected: expected.into(),
        });
    }

    /// The file offset of byte `at` of a string value; exact for a plain one-line string, the
    /// value's start otherwise (escapes and multi-line strings shift what the file holds).
    fn inside(&self, value: &Spanned<String>, at: usize) -> usize {
        let span: Range<usize> = value.span();
        let written = self.text.get(span.clone()).unwrap_or_default();
        let plain = written.len() == value.get_ref().len() + 2
            && written.get(1..written.len() - 1) == Some(value.get_ref().as_str());
        if plain {
            span.start + 1 + at
        } else {
            span.start
        }
    }

    fn collections(
        &mut self,
        raw: &std::collections::BTreeMap<Spanned<String>, RawCollection>,
    ) -> Vec<CollectionDecl> {
        let mut decls = Vec::new();
        for (id, collection) in raw {
            let kind: Collection = *collection.kind.get_ref();
            let field = format!("collections.{}.returns", id.get_ref());
            let mut returns = Vec::new();
            for name in &collection.returns {
                let known = kind
                    .returnable_fields()
                    .iter()
                    .find(|f| **f == name.get_ref());
                match known {
                    Some(known) => returns.push(*known),
                    None => self.mistake(
                        MistakeKind::UnknownReturnedField,
                        &field,
                        name.span().start,
                        format!("a {kind} has no field `{}`", name.get_ref()),
                        format!("some of {}", kind.returnable_fields().join(", ")),
                    ),
                }
            }
            decls.push(CollectionDecl {
                id: id.get_ref().clone(),
                kind,
                returns,
            });
        }
        decls
    }

    fn derived(
        &mut self,
        raw: &std::collections::BTreeMap<Spanned<String>, Spanned<RawDerived>>,
    ) -> Vec<Derived> {
        let mut derived = Vec::new();
        for (name, rule) in raw {
            let field = format!("derived.{}", name.get_ref());
            let valid_name = !name.get_ref().is_empty()
                && name
                    .get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            let taken = fields::header_field(name.get_ref()).is_some()
                || fields::detail_field(name.get_ref()).is_some();
            if !valid_name || taken {
                let message = if taken {
                    format!("`{}` is already a field of the order", name.get_ref())
                } else {
                    format!("`{}` is not a usable name", name.get_ref())
                };
                let expected = "a new name of lowercase letters, digits and `_`";
                self.mistake(
                    MistakeKind::BadDerived,
                    &field,
                    name.span().start,
                    message,
                    expected,
                );
                continue;
            }
            let RawDerived::DateOf(of) = rule.get_ref();
            // A rule with a bad source is still registered so that references to it do not add
            // a second mistake; the scheme is refused anyway.
            let of_field = match fields::header_field(of.get_ref()) {
                Some(f) if f.kind == FieldKind::Scalar => f.name,
                Some(_) => {
                    let message = format!("`{}` is an array, not a time", of.get_ref());
                    let expected = "a time field of the order header, e.g. `consign_time`";
                    self.mistake(
                        MistakeKind::SourceNotScalar,
                        &field,
                        of.span().start,
                        message,
                        expected,
                    );
                    ""
                }
                None => {
                    let message = format!("unknown source field `{}`", of.get_ref());
                    let expected = "a time field of the order header, e.g. `consign_time`";
                    self.mistake(
                        MistakeKind::UnknownSourceField,
                        &field,
                        of.span().start,
                        message,
                        expected,
                    );
                    ""
                }
            };
            derived.push(Derived {
                name: name.get_ref().clone(),
                rule: DerivedRule::DateOf(of_field),
            });
        }
        derived
    }

    fn source(&mut self, raw: &RawSource) -> Source {
        if raw.method.get_ref() != SOURCE_METHOD {
            let message = format!("unknown method `{}`", raw.method.get_ref());
            self.mistake(
                MistakeKind::BadSource,
                "source.method",
                raw.method.span().start,
                message,
                format!("`{SOURCE_METHOD}`"),
            );
        }
        let page_size = self.integer(&raw.page_size, "source.page_size", 1, 100);
        let start_page = raw
            .start_page
            .as_ref()
            .map_or(0, |p| self.integer(p, "source.start_page", 0, 1_000_000));
        let window_field = *raw.window_field.get_ref();
        let status = raw.status.as_ref().map(|status| {
            let code = self.integer(status, "source.status", 0, 1000);
            if window_field == WindowField::ConsignTime && code < 95 {
                let message = format!("status {code} makes 旺店通 filter on modified time");
                let expected = "window_field = \"modified\", or a status of 95 or more";
                self.mistake(
                    MistakeKind::BadSource,
                    "source.status",
                    status.span().start,
                    message,
                    expected,
                );
            }
            code
        });
        let params = self.params(&raw.params);
        Source {
            method: raw.method.get_ref().clone(),
            window_field,
            status,
            page_size,
            start_page,
            params,
        }
    }

    fn integer(&mut self, value: &Spanned<i64>, field: &str, min: u32, max: u32) -> u32 {
        match u32::try_from(*value.get_ref()) {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                let message = format!("{} is out of range", value.get_ref());
                self.mistake(
                    MistakeKind::BadSource,
                    field,
                    value.span().start,
                    message,
                    format!("an integer from {min} to {max}"),
                );
                min
            }
        }
    }

    fn params(&mut self, raw: &Spanned<SpannedTable>) -> Vec<(String, ParamValue)> {
        let mut params = Vec::new();
        for (name, value) in raw.get_ref() {
            let field = format!("source.params.{}", name.get_ref());
            if matches!(name.get_ref().as_str(), "status" | "is_by_modified") {
                let message = format!(
                    "`{}` follows from [source] status and window_field",
                    name.get_ref()
                );
                self.mistake(
                    MistakeKind::BadSource,
                    &field,
                    name.span().start,
                    message,
                    "`status` or `window_field` under [source]",
                );
                continue;
            }
            if !KNOWN_PARAMS.contains(&name.get_ref().as_str()) {
                let message = format!("unknown parameter `{}`", name.get_ref());
                self.mistake(
                    MistakeKind::BadSource,
                    &field,
                    name.span().start,
                    message,
                    format!("one of {}", KNOWN_PARAMS.join(", ")),
                );
                continue;
            }
            if let Some(param) = self.param_value(name.get_ref(), value, &field) {
                params.push((name.get_ref().clone(), param));
            }
        }
        for (_, spelling, param) in Placeholder::ALL {
            // A parameter present with a wrong value was reported where it is written.
            if !raw.get_ref().contains_key(param) {
                let message = format!("the request has no `{param}`");
                self.mistake(
                    MistakeKind::BadSource,
                    "source.params",
                    raw.span().start,
                    message,
                    format!("{param} = \"{{{{{spelling}}}}}\""),
                );
            }
        }
        params
    }

    fn param_value(
        &mut self,
        name: &str,
        value: &Spanned<String>,
        field: &str,
    ) -> Option<ParamValue> {
        let text = value.get_ref();
        let own = Placeholder::ALL.iter().find(|(_, _, param)| *param == name);
        if let Some(inner) = text.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
            let Some((placeholder, spelling, param)) =
                Placeholder::ALL.iter().find(|(_, s, _)| *s == inner)
            else {
                let names: Vec<_> = Placeholder::ALL
                    .iter()
                    .map(|(_, s, _)| format!("{{{{{s}}}}}"))
                    .collect();
                self.mistake(
                    MistakeKind::BadSource,
                    field,
                    self.inside(value, 2),
                    format!("unknown placeholder `{inner}`"),
                    format!("one of {}", names.join(", ")),
                );
                return None;
            };
            if *param != name {
                let message = format!("{{{{{spelling}}}}} fills `{param}`, not `{name}`");
                self.mistake(
                    MistakeKind::BadSource,
                    field,
                    value.span().start,
                    message,
                    format!("{param} = \"{{{{{spelling}}}}}\""),
                );
                return None;
            }
            return Some(ParamValue::Placeholder(*placeholder));
        }
        if let Some((_, spelling, _)) = own {
            let message = format!("`{name}` is filled per request");
            self.mistake(
                MistakeKind::BadSource,
                field,
                value.span().start,
                message,
                format!("\"{{{{{spelling}}}}}\""),
            );
            return None;
        }
        if let Some(at) = [text.find("{{"), text.find("}}")]
            .into_iter()
            .flatten()
            .min()
        {
            self.mistake(
                MistakeKind::BadSource,
                field,
                self.inside(value, at),
                "a placeholder must be the whole value",
                "one placeholder alone, or text without braces",
            );
            return None;
        }
        Some(ParamValue::Literal(text.clone()))
    }

    fn target(&mut self, raw: &RawTarget, names: &Names<'_>) -> CompiledTarget {
        if raw.api.get_ref() != TARGET_API {
            let message = format!("unsupported target api `{}`", raw.api.get_ref());
            self.mistake(
                MistakeKind::UnsupportedApi,
                "target.api",
                raw.api.span().start,
                message,
                format!("`{TARGET_API}`"),
            );
        }
        let mut entries: Vec<_> = raw.fields.get_ref().iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);

        let mut compiled = CompiledTarget {
            header: Vec::new(),
            rows: Vec::new(),
            infos: Vec::new(),
        };
        // Row mappings first, so that line fields written before their row mapping still find it.
        let mut declared_rows = BTreeSet::new();
        for (key, value) in &entries {
            if let Some(target) =
                target::header_field(key.get_ref()).filter(|t| t.value_type == ValueType::Rows)
            {
                declared_rows.insert(key.get_ref().clone());
                if let Some(rows) = self.row_mapping(target, value) {
                    compiled.infos.push(self.info(
                        key,
                        value,
                        MappingKind::Rows,
                        format!("one line per `{}` row", rows.source),
                    ));
                    compiled.rows.push(rows);
                }
            }
        }
        for (key, value) in &entries {
            match key.get_ref().split_once('.') {
                None => self.header_entry(key, value, names, &mut compiled),
                Some((rows, line)) => self.line_entry(
                    key,
                    value,
                    (rows, line),
                    &declared_rows,
                    names,
                    &mut compiled,
                ),
            }
        }
        self.required(raw, &compiled);
        compiled.infos.sort_by_key(|info| info.line);
        compiled
    }

    fn info(
        &self,
        key: &Spanned<String>,
        value: &Spanned<String>,
        kind: MappingKind,
        source: String,
    ) -> TargetInfo {
        TargetInfo {
            path: key.get_ref().clone(),
            written: value.get_ref().clone(),
            kind,
            source,
            line: self.positions.line_column(key.span().start).0,
        }
    }

    fn row_mapping(&mut self, target: TargetField, value: &Spanned<String>) -> Option<RowMapping> {
        let field = target.name.clone();
        let name = value.get_ref();
        let expected = "the bare name of an array of the order: `details_list`";
        if name.contains("{{") || name.contains("}}") {
            self.mistake(
                MistakeKind::BadExpression,
                &field,
                value.span().start,
                "a row mapping names an array, not a placeholder",
                expected,
            );
            return None;
        }
        match fields::header_field(name) {
            Some(source) if source.kind == FieldKind::Array => Some(RowMapping {
                target,
                source: source.name,
                fields: Vec::new(),
            }),
            Some(_) => {
                let message = format!("`{name}` is a single value, not an array of rows");
                self.mistake(
                    MistakeKind::RowSourceNotArray,
                    &field,
                    self.inside(value, 0),
                    message,
                    expected,
                );
                None
            }
            None if fields::detail_field(name).is_some_and(|f| f.kind == FieldKind::Array) => {
                let message =
                    format!("`{name}` is an array inside each detail row, not of the order");
                self.mistake(
                    MistakeKind::RowSourceNotArray,
                    &field,
                    self.inside(value, 0),
                    message,
                    expected,
                );
                None
            }
            None => {
                self.mistake(
                    MistakeKind::UnknownSourceField,
                    &field,
                    self.inside(value, 0),
                    format!("unknown source field `{name}`"),
                    expected,
                );
                None
            }
        }
    }

    fn header_entry(
        &mut self,
        key: &Spanned<String>,
        value: &Spanned<String>,
        names: &Names<'_>,
        compiled: &mut CompiledTarget,
    ) {
        let Some(target) = target::header_field(key.get_ref()) else {
            let message = format!("the bill has no field `{}`", key.get_ref());
            let known: Vec<_> = target::header_names().collect();
            let expected = format!("one of {}, or custom_field…", known.join(", "));
            self.mistake(
                MistakeKind::UnknownTargetField,
                key.get_ref(),
                key.span().start,
                message,
                expected,
            );
            return;
        };
        if target.value_type == ValueType::Rows {
            return;
        }
        if let Some((expr, kind, source)) =
            self.expression(key.get_ref(), &target, value, Context::Header, names)
        {
            compiled.infos.push(self.info(key, value, kind, source));
            compiled.header.push(Mapping { target, expr });
        }
    }

    fn line_entry(
        &mut self,
        key: &Spanned<String>,
        value: &Spanned<String>,
        (rows, line): (&str, &str),
        declared_rows: &BTreeSet<String>,
        names: &Names<'_>,
        compiled: &mut CompiledTarget,
    ) {
        let path = key.get_ref();
        if target::header_field(rows).is_none_or(|t| t.value_type != ValueType::Rows) {
            let message = format!("`{rows}` has no lines");
            self.mistake(
                MistakeKind::UnknownTargetField,
                path,
                key.span().start,
                message,
                "`material_entity.<field>` for a line field",
            );
            return;
        }
        let Some(target) = target::line_field(line) else {
            let message = format!("a `{rows}` line has no field `{line}`");
            let known: Vec<_> = target::line_names().collect();
            let expected = format!("one of {}, or custom_field…", known.join(", "));
            self.mistake(
                MistakeKind::UnknownTargetField,
                path,
                key.span().start,
                message,
                expected,
            );
            return;
        };
        if !declared_rows.contains(rows) {
            let message = format!("a line field, but `{rows}` is not mapped");
            self.mistake(
                MistakeKind::MissingTargetField,
                path,
                key.span().start,
                message,
                format!("`{rows} = \"details_list\"`"),
            );
            return;
        }
        // The row mapping itself may have been refused; its mistake is reported already.
        let Some(index) = compiled.rows.iter().position(|r| r.target.name == rows) else {
            return;
        };
        let context = Context::Row {
            rows: compiled.rows[index].source,
        };
        if let Some((expr, kind, source)) = self.expression(path, &target, value, context, names) {
            compiled.infos.push(self.info(key, value, kind, source));
            compiled.rows[index].fields.push(Mapping { target, expr });
        }
    }

    /// Compiles one value; gives the expression, its kind and its source in words.
    fn expression(
        &mut self,
        path: &str,
        target: &TargetField,
        value: &Spanned<String>,
        context: Context<'_>,
        names: &Names<'_>,
    ) -> Option<(Expr, MappingKind, String)> {
        let syntax = match expr::parse(value.get_ref()) {
            Ok(syntax) => syntax,
            Err(error) => {
                self.mistake(
                    MistakeKind::BadExpression,
                    path,
                    self.inside(value, error.at),
                    error.message,
                    error.expected,
                );
                return None;
            }
        };
        match syntax {
            Syntax::Reference(name) => {
                let reference = self.reference(path, value, name, context, names)?;
                let kind = if matches!(reference, Ref::Derived(_)) {
                    MappingKind::Derived
                } else {
                    MappingKind::Copy
                };
                let source = describe(&reference, context, names);
                Some((Expr::Copy(reference), kind, source))
            }
            Syntax::Lookup {
                returns,
                collection,
                number,
            } => {
                let lookup =
                    self.lookup(path, value, (returns, collection, number), context, names)?;
                let source = format!(
                    "{}.{} where number = {}",
                    lookup.collection,
                    lookup.returns,
                    describe(&lookup.number, context, names)
                );
                Some((Expr::Lookup(lookup), MappingKind::Lookup, source))
            }
            Syntax::Constant => {
                if !value::constant_fits(value.get_ref(), target.value_type) {
                    let message = format!(
                        "`{}` cannot be written to `{}`",
                        value.get_ref(),
                        target.name
                    );
                    self.mistake(
                        MistakeKind::BadConstant,
                        path,
                        value.span().start,
                        message,
                        constant_form(target.value_type),
                    );
                    return None;
                }
                let constant = value.get_ref().clone();
                let source = format!("{constant:?}");
                Some((Expr::Constant(constant), MappingKind::Constant, source))
            }
        }
    }

    fn lookup(
        &mut self,
        path: &str,
        value: &Spanned<String>,
        (returns, collection, number): (Token<'_>, Token<'_>, Token<'_>),
        context: Context<'_>,
        names: &Names<'_>,
    ) -> Option<LookupExpr> {
        let decl = names.collections.iter().find(|c| c.id == collection.text);
        let number = self.reference(path, value, number, context, names);
        let Some(decl) = decl else {
            let declared: Vec<_> = names
                .collections
                .iter()
                .map(|c| format!("{} ({})", c.id, c.kind))
                .collect();
            let message = format!("unknown collection `{}`", collection.text);
            self.mistake(
                MistakeKind::UnknownCollection,
                path,
                self.inside(value, collection.at),
                message,
                format!("an id under [collections]: {}", declared.join(", ")),
            );
            return None;
        };
        let Some(field) = decl.returns.iter().find(|f| **f == returns.text) else {
            let message = format!("a {} lookup cannot return `{}`", decl.kind, returns.text);
            self.mistake(
                MistakeKind::UnknownReturnedField,
                path,
                self.inside(value, returns.at),
                message,
                format!("one of {}", decl.returns.join(", ")),
            );
            return None;
        };
        Some(LookupExpr {
            collection: decl.kind,
            returns: field,
            number: number?,
        })
    }

    fn reference(
        &mut self,
        path: &str,
        value: &Spanned<String>,
        name: Token<'_>,
        context: Context<'_>,
        names: &Names<'_>,
    ) -> Option<Ref> {
        match resolve(name.text, context, names.derived) {
            Ok(reference) => Some(reference),
            Err(bad) => {
                self.mistake(
                    bad.kind,
                    path,
                    self.inside(value, name.at),
                    bad.message,
                    bad.expected,
                );
                None
            }
        }
    }

    fn required(&mut self, raw: &RawTarget, compiled: &CompiledTarget) {
        let at = raw.fields.span().start;
        let mapped: BTreeSet<&str> = raw
            .fields
            .get_ref()
            .keys()
            .map(|k| k.get_ref().as_str())
            .collect();
        for name in target::required(false) {
            if !mapped.contains(name) {
                self.mistake(
                    MistakeKind::MissingTargetField,
                    name,
                    at,
                    format!("the bill needs `{name}`"),
                    format!("a `{name} = …` entry under [target.fields]"),
                );
            }
        }
        for rows in &compiled.rows {
            for name in target::required(true) {
                let path = format!("{}.{name}", rows.target.name);
                if !mapped.contains(path.as_str()) {
                    let message = format!("each `{}` line needs `{name}`", rows.target.name);
                    self.mistake(
                        MistakeKind::MissingTargetField,
                        &path,
                        at,
                        message,
                        format!("a `\"{path}\" = …` entry under [target.fields]"),
                    );
                }
            }
        }
    }
}

/// What a reference's name means where it is written.
fn resolve(name: &str, context: Context<'_>, derived: &[Derived]) -> Result<Ref, BadRef> {
    let bad = |kind, message: String, expected: String| BadRef {
        kind,
        message,
        expected,
    };
    let row_forms =
        |rows: &str| format!("a header field, `{rows}_<field>` or `{rows}.{rows}_<field>`");

    if let Some((prefix, rest)) = name.split_once('.') {
        let Context::Row { rows } = context else {
            let message = format!("`{name}` names a row field outside a row mapping");
            return Err(bad(
                MistakeKind::UnknownSourceField,
                message,
                "a field of the order header".into(),
            ));
        };
        return match rest
            .strip_prefix(&format!("{rows}_"))
            .filter(|_| prefix == rows)
        {
            Some(field) => row_field(name, field, rows),
            None => Err(bad(
                MistakeKind::UnknownSourceField,
                format!("unknown source field `{name}`"),
                row_forms(rows),
            )),
        };
    }
    if let Context::Row { rows } = context {
        if let Some(field) = name.strip_prefix(&format!("{rows}_")) {
            if fields::detail_field(field).is_some() {
                return row_field(name, field, rows);
            }
        }
    }
    if let Some(index) = derived.iter().position(|d| d.name == name) {
        return Ok(Ref::Derived(index));
    }
    match fields::header_field(name) {
        Some(field) if field.kind == FieldKind::Scalar => Ok(Ref::Header(field.name)),
        Some(_) => Err(bad(
            MistakeKind::SourceNotScalar,
            format!("`{name}` is an array, not a single value"),
            "a single field of the order".into(),
        )),
        None => {
            let expected = match context {
                Context::Row { rows } if fields::detail_field(name).is_some() => {
                    format!("`{{{{{rows}_{name}}}}}` for the row's `{name}`")
                }
                Context::Row { rows } => row_forms(rows),
                Context::Header if fields::detail_field(name).is_some() => {
                    format!("a header field; `{name}` is a row field, usable inside a row mapping")
                }
                Context::Header => "a field of the order header or a [derived] field".into(),
            };
            Err(bad(
                MistakeKind::UnknownSourceField,
                format!("unknown source field `{name}`"),
                expected,
            ))
        }
    }
}

fn row_field(name: &str, field: &str, rows: &str) -> Result<Ref, BadRef> {
    match fields::detail_field(field) {
        Some(f) if f.kind == FieldKind::Scalar => Ok(Ref::Row(f.name)),
        Some(_) => Err(BadRef {
            kind: MistakeKind::SourceNotScalar,
            message: format!("`{name}` is an array, not a single value"),
            expected: format!("a single field of a `{rows}` row"),
        }),
        None => Err(BadRef {
            kind: MistakeKind::UnknownSourceField,
            message: format!("unknown source field `{name}`: a `{rows}` row has no `{field}`"),
            expected: format!("`{rows}_<field>` with a field of the row, e.g. `{rows}_goods_no`"),
        }),
    }
}

fn describe(reference: &Ref, context: Context<'_>, names: &Names<'_>) -> String {
    match (reference, context) {
        (Ref::Header(field), _) => format!("order {field}"),
        (Ref::Row(field), Context::Row { rows }) => format!("{rows}[].{field}"),
        (Ref::Row(field), Context::Header) => field.to_string(),
        (Ref::Derived(index), _) => match names.derived.get(*index).map(|d| &d.rule) {
            Some(DerivedRule::DateOf(of)) => format!("date of order {of}"),
            None => "a derived field".into(),
        },
    }
}

fn constant_form(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::Decimal => "a decimal number, e.g. \"13\"",
        ValueType::Date => "a date yyyy-MM-dd",
        ValueType::Key | ValueType::Id => "a non-empty value",
        ValueType::Text | ValueType::Rows => "text",
    }
}
