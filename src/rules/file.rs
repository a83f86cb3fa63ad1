//! The TOML side of a rule file: parsing with spans, and typed reads of spanned values.
//!
//! We read `toml`'s spanned document tree (`DeTable`) instead of deriving `Deserialize`:
//! serde stops at the first problem, while integrators must see every problem of every file
//! at once, each at the line of the offending key or value.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::rules::diagnostics::LineIndex;

/// One rule file's text, with what turns byte offsets into `line:col`.
pub(crate) struct Source<'s> {
    pub(crate) name: &'s str,
    pub(crate) text: &'s str,
    index: LineIndex,
}

impl<'s> Source<'s> {
    pub(crate) fn new(name: &'s str, text: &'s str) -> Self {
        Source {
            name,
            text,
            index: LineIndex::new(text),
        }
    }

    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        self.index.position(self.text, offset)
    }

    /// Parses the document; syntax errors come back with their byte span, all of them that the
    /// parser could recover from.
    pub(crate) fn parse(&self) -> (Spanned<DeTable<'s>>, Vec<(Range<usize>, String)>) {
        let (table, errors) = DeTable::parse_recoverable(self.text);
        let errors = errors
            .into_iter()
            .map(|e| (e.span().unwrap_or(0..0), e.message().trim().to_string()))
            .collect();
        (table, errors)
    }
}

/// A spanned key and its spanned value.
pub(crate) type Entry<'a, 's> = (
    &'a Spanned<std::borrow::Cow<'s, str>>,
    &'a Spanned<DeValue<'s>>,
);

/// Looks a key up in a table, with the key's own span (for "this key is wrong" reports).
pub(crate) fn entry<'a, 's>(table: &'a DeTable<'s>, key: &str) -> Option<Entry<'a, 's>> {
    table.iter().find(|(k, _)| k.get_ref().as_ref() == key)
}

/// The table's entries in source order (the map itself may be sorted by key).
pub(crate) fn entries_in_order<'a, 's>(table: &'a DeTable<'s>) -> Vec<Entry<'a, 's>> {
    let mut entries: Vec<Entry<'a, 's>> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// What a TOML value is, in the words of an error message.
pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a number with a fraction",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A TOML integer as `i64` (`None` when it does not fit).
pub(crate) fn integer(value: &DeValue<'_>) -> Option<i64> {
    let int = value.as_integer()?;
    let digits = int.as_str().replace('_', "");
    let digits = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0o"))
        .or_else(|| digits.strip_prefix("0b"))
        .unwrap_or(&digits);
    i64::from_str_radix(digits, int.radix()).ok()
}

/// A TOML integer or float as `f64`.
pub(crate) fn number(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Integer(_) => integer(value).map(|i| i as f64),
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite()),
        _ => None,
    }
}
