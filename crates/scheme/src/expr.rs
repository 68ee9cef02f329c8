//! The syntax of a mapped value: a reference `{{name}}`, a lookup
//! `findCollection find <field> from <collection> where number={{name}}` (also spelled
//! `_findCollection`), or a constant.
//!
//! This module only splits a value into its parts and says where each part starts; what a name
//! means (a header field, a row field, a derived field) is decided by [`crate::check`], which knows
//! the context the value is in.

/// A part of a value and its byte offset in the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub text: &'a str,
    pub at: usize,
}

/// The shape of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax<'a> {
    /// `{{name}}`, the whole value; the token is the name.
    Reference(Token<'a>),
    /// A lookup: return `returns` from `collection` where number is the value of `number`.
    Lookup {
        returns: Token<'a>,
        collection: Token<'a>,
        number: Token<'a>,
    },
    /// Anything without braces that is not a lookup.
    Constant,
}

/// Why a value is not well formed, and where (byte offset in the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub at: usize,
    pub message: String,
    pub expected: &'static str,
}

const LOOKUP_FORM: &str =
    "`findCollection find <field> from <collection id> where number={{field}}`";
const VALUE_FORM: &str = "`{{field}}` alone, a lookup, or a constant without braces";

/// Splits a value into its parts.
pub(crate) fn parse(value: &str) -> Result<Syntax<'_>, SyntaxError> {
    let first_word = value.split_whitespace().next().unwrap_or_default();
    let leading = value.len() - value.trim_start().len();
    if first_word == "findCollection" || first_word == "_findCollection" {
        return parse_lookup(value);
    }
    if leading == 0 && value.starts_with("{{") {
        let (name, end) = parse_reference(value, 0)?;
        if end != value.len() {
            return Err(error(end, "text after the placeholder", VALUE_FORM));
        }
        return Ok(Syntax::Reference(name));
    }
    match [value.find("{{"), value.find("}}")]
        .into_iter()
        .flatten()
        .min()
    {
        Some(at) => Err(error(
            at,
            "a placeholder must be the whole value",
            VALUE_FORM,
        )),
        None => Ok(Syntax::Constant),
    }
}

/// Parses `{{name}}` starting at `start`; gives the name and the offset just past the braces.
fn parse_reference(value: &str, start: usize) -> Result<(Token<'_>, usize), SyntaxError> {
    let rest = &value[start..];
    if !rest.starts_with("{{") {
        return Err(error(start, "expected a placeholder", "`{{field}}`"));
    }
    let Some(close) = rest.find("}}") else {
        return Err(error(
            start,
            "the placeholder is not closed",
            "`}}` after the field name",
        ));
    };
    let name = &rest[2..close];
    let name_at = start + 2;
    if name.is_empty() {
        return Err(error(
            name_at,
            "the placeholder names no field",
            "`{{field}}`",
        ));
    }
    if let Some(bad) = name.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')) {
        let message = format!(
            "`{}` cannot be part of a field name",
            &name[bad..].chars().take(1).collect::<String>()
        );
        return Err(error(
            name_at + bad,
            &message,
            "letters, digits, `_` and `.`",
        ));
    }
    Ok((
        Token {
            text: name,
            at: name_at,
        },
        start + close + 2,
    ))
}

fn parse_lookup(value: &str) -> Result<Syntax<'_>, SyntaxError> {
    let words = words(value);
    let word = |i: usize| words.get(i).copied();
    let end = Token {
        text: "",
        at: value.len(),
    };
    let expect_word = |i: usize, keyword: &str| -> Result<(), SyntaxError> {
        let got = word(i).unwrap_or(end);
        if got.text == keyword {
            Ok(())
        } else {
            let message = format!("expected `{keyword}`, found `{}`", got.text);
            Err(error(got.at, &message, LOOKUP_FORM))
        }
    };

    expect_word(1, "find")?;
    let returns = name_word(word(2).unwrap_or(end), "the returned field", is_field_char)?;
    expect_word(3, "from")?;
    let collection = name_word(word(4).unwrap_or(end), "the collection id", is_id_char)?;
    expect_word(5, "where")?;
    let condition = word(6).unwrap_or(end);
    let number = parse_condition(value, condition.at)?;
    Ok(Syntax::Lookup {
        returns,
        collection,
        number,
    })
}

/// Parses `number={{name}}` (spaces allowed around `=`) up to the end of the value.
fn parse_condition(value: &str, start: usize) -> Result<Token<'_>, SyntaxError> {
    let rest = &value[start..];
    let Some(after_number) = rest.strip_prefix("number") else {
        return Err(error(
            start,
            "a lookup matches on `number` only",
            "`number={{field}}`",
        ));
    };
    let after_spaces = after_number.trim_start();
    let Some(after_equals) = after_spaces.strip_prefix('=') else {
        let at = value.len() - after_spaces.len();
        return Err(error(
            at,
            "expected `=` after `number`",
            "`number={{field}}`",
        ));
    };
    let reference_at = value.len() - after_equals.trim_start().len();
    let (name, end) = parse_reference(value, reference_at)?;
    if !value[end..].trim().is_empty() {
        let at = end + (value[end..].len() - value[end..].trim_start().len());
        return Err(error(at, "text after the lookup's condition", LOOKUP_FORM));
    }
    Ok(name)
}

fn name_word<'a>(
    token: Token<'a>,
    what: &str,
    allowed: fn(char) -> bool,
) -> Result<Token<'a>, SyntaxError> {
    if token.text.is_empty() {
        return Err(error(
            token.at,
            &format!("the lookup ends before {what}"),
            LOOKUP_FORM,
        ));
    }
    match token.text.find(|c: char| !allowed(c)) {
        Some(bad) => Err(error(
            token.at + bad,
            &format!("`{}` is not {what}", token.text),
            LOOKUP_FORM,
        )),
        None => Ok(token),
    }
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// The whitespace-separated words of a value with their offsets.
fn words(value: &str) -> Vec<Token<'_>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in value.char_indices().chain([(value.len(), ' ')]) {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push(Token {
                    text: &value[s..i],
                    at: s,
                });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    words
}

fn error(at: usize, message: &str, expected: &'static str) -> SyntaxError {
    SyntaxError {
        at,
        message: message.into(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(value: &str) -> Option<&str> {
        match parse(value) {
            Ok(Syntax::Reference(name)) => Some(name.text),
            _ => None,
        }
    }

    #[test]
    fn the_seed_spellings_are_references() {
        assert_eq!(reference("{{stockout_no}}"), Some("stockout_no"));
        assert_eq!(
            reference("{{details_list_goods_no}}"),
            Some("details_list_goods_no")
        );
        let dotted = reference("{{details_list.details_list_market_price}}");
        assert_eq!(dotted, Some("details_list.details_list_market_price"));
    }

    #[test]
    fn both_lookup_spellings_parse_with_positions() {
        for keyword in ["findCollection", "_findCollection"] {
            let value = format!("{keyword} find id from c13d-8077 where number={{{{shop_no}}}}");
            let Ok(Syntax::Lookup {
                returns,
                collection,
                number,
            }) = parse(&value)
            else {
                panic!("{value} is not a lookup");
            };
            assert_eq!(
                (returns.text, &value[returns.at..returns.at + 2]),
                ("id", "id")
            );
            assert_eq!(collection.text, "c13d-8077");
            assert_eq!(&value[collection.at..collection.at + 4], "c13d");
            assert_eq!(number.text, "shop_no");
            assert_eq!(&value[number.at..number.at + 7], "shop_no");
        }
        let spaced = parse("findCollection find id from x where number = {{shop_no}}");
        assert!(matches!(spaced, Ok(Syntax::Lookup { .. })));
    }

    #[test]
    fn constants_have_no_braces() {
        assert_eq!(parse("13"), Ok(Syntax::Constant));
        assert_eq!(parse(""), Ok(Syntax::Constant));
        assert_eq!(parse("details_list"), Ok(Syntax::Constant));
    }

    #[test]
    fn malformed_values_say_where_they_go_wrong() {
        let cases = [
            ("{{shop_no", 0, "not closed"),
            ("{{}}", 2, "names no field"),
            ("{{shop no}}", 6, "cannot be part"),
            ("{{shop_no}}x", 11, "text after"),
            ("WDT-{{shop_no}}", 4, "whole value"),
            (
                "findCollection get id from x where number={{a}}",
                15,
                "expected `find`",
            ),
            ("findCollection find id from x", 29, "found ``"),
            (
                "findCollection find id from x where id={{a}}",
                36,
                "on `number` only",
            ),
            (
                "findCollection find id from x where number={{a}} y",
                49,
                "text after",
            ),
            (
                "findCollection find id from x/y where number={{a}}",
                29,
                "not the collection id",
            ),
            ("findCollection find", 19, "ends before the returned field"),
        ];
        for (value, at, message) in cases {
            let error = parse(value).expect_err(value);
            assert_eq!(error.at, at, "{value}: {error:?}");
            assert!(error.message.contains(message), "{value}: {error:?}");
        }
    }
}
