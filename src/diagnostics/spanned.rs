//! The one reader of spanned TOML: rule files, rule tests, sandbox scenarios and the config
//! file are all read through it, so a misspelt key, a value of the wrong type or a broken
//! line reads the same whichever file it is in.
//!
//! We read `toml`'s spanned document tree (`DeTable`) instead of deriving `Deserialize`:
//! serde stops at the first problem, while people must see every problem of a file at once,
//! each at the line of the offending key or value.

use std::ops::Range;

use serde_json::{Map, Value, json};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::{Diagnostic, LineIndex, Severity, suggest};

/// One file's text, with what turns byte offsets into `line:col`.
pub(crate) struct Source<'s> {
    pub(crate) name: String,
    pub(crate) text: &'s str,
    index: LineIndex,
}

impl<'s> Source<'s> {
    pub(crate) fn new(name: &str, text: &'s str) -> Self {
        Source {
            name: name.to_string(),
            text,
            index: LineIndex::new(text),
        }
    }

    /// The 1-based line and column of a byte offset.
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

    /// An error at the start of `span`, in no rule; an empty `help` is none.
    pub(crate) fn error(&self, span: Range<usize>, message: String, help: String) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            file: self.name.clone(),
            line,
            column,
            rule: None,
            message,
            help: (!help.is_empty()).then_some(help),
            severity: Severity::Error,
        }
    }
}

/// Where the checks below report a problem: a [`Reader`], or the rule compiler (which adds the
/// name of the rule being read).
pub(crate) trait Report {
    /// An error at the start of `span`; an empty `help` is none.
    fn report(&mut self, span: Range<usize>, message: String, help: String);
}

/// Reports the syntax errors of [`Source::parse`].
pub(crate) fn syntax_errors(report: &mut impl Report, errors: Vec<(Range<usize>, String)>) {
    for (span, message) in errors {
        report.report(span, format!("TOML syntax error: {message}"), String::new());
    }
}

/// Reports every key of `table` not in `allowed` (in source order), with the closest allowed
/// one or, when none is close, the list.
pub(crate) fn unknown_keys(
    report: &mut impl Report,
    table: &DeTable<'_>,
    allowed: &[&str],
    context: &str,
) {
    for (key, _) in entries_in_order(table) {
        let text = key.get_ref().as_ref();
        if allowed.contains(&text) {
            continue;
        }
        let help = match suggest(text, allowed) {
            Some(s) => format!("did you mean \"{s}\"?"),
            None => format!("allowed keys: {}", allowed.join(", ")),
        };
        report.report(
            key.span(),
            format!("unknown key \"{text}\" {context}"),
            help,
        );
    }
}

/// The tables of the array of tables `key` (`[[key]]`), reporting anything else; the helps say
/// how to fix an item that is not a table, and a value that is not an array.
pub(crate) fn array_of_tables<'a, 's>(
    report: &mut impl Report,
    table: &'a DeTable<'s>,
    key: &str,
    (item_help, array_help): (String, String),
) -> Vec<(Range<usize>, &'a DeTable<'s>)> {
    let Some((_, v)) = entry(table, key) else {
        return Vec::new();
    };
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| match item.get_ref() {
                DeValue::Table(t) => Some((item.span(), t)),
                other => {
                    report.report(
                        item.span(),
                        format!("each \"{key}\" must be a table, found {}", type_name(other)),
                        item_help.clone(),
                    );
                    None
                }
            })
            .collect(),
        other => {
            report.report(
                v.span(),
                format!(
                    "\"{key}\" must be an array of tables, found {}",
                    type_name(other)
                ),
                array_help,
            );
            Vec::new()
        }
    }
}

/// Reads one spanned TOML document and collects every problem with its `file:line:col`.
pub(crate) struct Reader<'s> {
    source: Source<'s>,
    pub(crate) errors: Vec<Diagnostic>,
}

impl Report for Reader<'_> {
    fn report(&mut self, span: Range<usize>, message: String, help: String) {
        self.errors.push(self.source.error(span, message, help));
    }
}

impl<'s> Reader<'s> {
    pub(crate) fn new(name: &str, text: &'s str) -> Self {
        Reader {
            source: Source::new(name, text),
            errors: Vec::new(),
        }
    }

    /// The document; syntax errors are recorded.
    pub(crate) fn parse(&mut self) -> Spanned<DeTable<'s>> {
        let (table, errors) = self.source.parse();
        syntax_errors(self, errors);
        table
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.source.position(offset).0
    }

    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>, help: &str) {
        self.report(span, message.into(), help.to_string());
    }

    /// Reports every key of `table` not in `allowed`, with the closest allowed one.
    pub(crate) fn keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        unknown_keys(self, table, allowed, context);
    }

    pub(crate) fn string(&mut self, table: &DeTable<'_>, key: &str) -> Option<String> {
        let (_, v) = entry(table, key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.error(
                    v.span(),
                    format!("\"{key}\" must be a string, found {}", type_name(other)),
                    "",
                );
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, table: &DeTable<'_>, key: &str) -> Option<bool> {
        let (_, v) = entry(table, key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.error(
                    v.span(),
                    format!(
                        "\"{key}\" must be true or false, found {}",
                        type_name(other)
                    ),
                    "",
                );
                None
            }
        }
    }

    /// A table of deal fields, as Bitrix24 sends them: numbers become strings, booleans `Y`/`N`.
    pub(crate) fn fields(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Map<String, Value> {
        let DeValue::Table(table) = v.get_ref() else {
            self.error(
                v.span(),
                format!(
                    "\"{key}\" must be a table of fields, found {}",
                    type_name(v.get_ref())
                ),
                "write { TITLE = \"Acme\", ASSIGNED_BY_ID = \"3\" }",
            );
            return Map::new();
        };
        let mut map = Map::new();
        for (k, value) in entries_in_order(table) {
            match field_value(value.get_ref()) {
                Some(json) => {
                    map.insert(k.get_ref().to_string(), json);
                }
                None => self.error(
                    value.span(),
                    format!(
                        "field {} cannot be {}",
                        k.get_ref(),
                        type_name(value.get_ref())
                    ),
                    "use a string, a number, a boolean or a list of them",
                ),
            }
        }
        map
    }
}

/// The tables of an array of tables (`[[case]]`), reporting anything else.
pub(crate) fn tables<'a, 'd>(
    reader: &mut Reader<'_>,
    table: &'a DeTable<'d>,
    key: &str,
) -> Vec<(Range<usize>, &'a DeTable<'d>)> {
    array_of_tables(
        reader,
        table,
        key,
        (
            format!("write a [[{key}]] section for each"),
            format!("write [[{key}]], with double brackets"),
        ),
    )
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

/// A scalar as Bitrix24 would send it (strings everywhere), or a list of them.
pub(crate) fn field_value(value: &DeValue<'_>) -> Option<Value> {
    Some(match value {
        DeValue::String(s) => json!(s),
        DeValue::Integer(_) => json!(integer(value)?.to_string()),
        DeValue::Float(f) => json!(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => json!(if *b { "Y" } else { "N" }),
        DeValue::Datetime(d) => json!(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| field_value(i.get_ref()))
                .collect::<Option<Vec<_>>>()?,
        ),
        DeValue::Table(_) => return None,
    })
}
