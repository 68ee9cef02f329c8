//! What can be wrong with a scheme file, and where: every mistake names the file, the field (or
//! setting) it is in, its line and column, and what was expected there.
//!
//! Finding the mistakes is [`crate::check`]'s work; this module only turns byte offsets into
//! positions and mistakes into text.

use std::fmt;

/// The kind of a scheme mistake, for callers and tests that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MistakeKind {
    /// The file is not valid TOML, has a key the format does not know, or a value of the wrong
    /// type; TOML stops at the first one, so it is reported alone.
    Toml,
    /// A reference names a field the order does not have.
    UnknownSourceField,
    /// A reference to a single value names an array of the order.
    SourceNotScalar,
    /// A row mapping names a source that is not an array of the order.
    RowSourceNotArray,
    /// A lookup names a collection id that `[collections]` does not declare.
    UnknownCollection,
    /// A lookup, or a collection declaration, names a field the collection does not return.
    UnknownReturnedField,
    /// A target field that the 星辰 bill does not have.
    UnknownTargetField,
    /// A target field the bill needs is not mapped, or a line field has no row mapping.
    MissingTargetField,
    /// A value that is not a reference, a lookup or a constant.
    BadExpression,
    /// A constant that the target field cannot hold (a price that is not a number).
    BadConstant,
    /// A derived field with an unusable name.
    BadDerived,
    /// A `[source]` setting the extractor cannot use.
    BadSource,
    /// A target API other than the one the loader posts.
    UnsupportedApi,
}

/// One mistake in a scheme file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// What kind of mistake.
    pub kind: MistakeKind,
    /// The target field (`material_entity.qty`) or setting (`source.page_size`) it is in.
    pub field: String,
    /// 1-based line in the file.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What would have been right.
    pub expected: String,
}

impl fmt::Display for Mistake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.field, self.message
        )?;
        if !self.expected.is_empty() {
            write!(f, "; expected {}", self.expected)?;
        }
        Ok(())
    }
}

/// Why a scheme could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemeError {
    /// The file could not be read.
    #[error("read scheme {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The file was read and holds mistakes; all of them are listed.
    #[error("{}", invalid_text(origin, mistakes))]
    Invalid {
        /// The file name, or the name the text was given.
        origin: String,
        /// Every mistake found, in file order.
        mistakes: Vec<Mistake>,
    },
}

impl SchemeError {
    /// A scheme does not mend itself: loading it again gives the same answer.
    pub fn is_transient(&self) -> bool {
        false
    }

    /// The mistakes found, empty when the file could not be read.
    pub fn mistakes(&self) -> &[Mistake] {
        match self {
            SchemeError::Read { .. } => &[],
            SchemeError::Invalid { mistakes, .. } => mistakes,
        }
    }
}

fn invalid_text(origin: &str, mistakes: &[Mistake]) -> String {
    let mut text = format!("invalid scheme {origin}: {} mistake(s)", mistakes.len());
    for mistake in mistakes {
        text.push_str(&format!("\n{origin}:{mistake}"));
    }
    text
}

/// Turns byte offsets of a text into 1-based line and character columns.
pub(crate) struct Positions<'a> {
    text: &'a str,
}

impl<'a> Positions<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Positions { text }
    }

    /// The line and column of a byte offset; an offset past the end, or inside a character,
    /// is moved back to the nearest character start.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "a = 1\nname = \"出库\" x\n";
        let positions = Positions::new(text);
        assert_eq!(positions.line_column(0), (1, 1));
        let x = text.find(" x").map(|i| i + 1).unwrap_or_default();
        assert_eq!(positions.line_column(x), (2, 13));
        assert_eq!(positions.line_column(text.len() + 10), (3, 1));
    }

    #[test]
    fn invalid_scheme_lists_every_mistake_with_its_position() {
        let mistake = |line| Mistake {
            kind: MistakeKind::UnknownSourceField,
            field: "billno".into(),
            line,
            column: 3,
            message: "unknown source field `x`".into(),
            expected: "a header field".into(),
        };
        let error = SchemeError::Invalid {
            origin: "s.toml".into(),
            mistakes: vec![mistake(1), mistake(9)],
        };
        let text = error.to_string();
        assert!(
            text.starts_with("invalid scheme s.toml: 2 mistake(s)"),
            "{text}"
        );
        assert!(
            text.contains(
                "\ns.toml:9:3: billno: unknown source field `x`; expected a header field"
            )
        );
        assert!(!error.is_transient());
    }
}
