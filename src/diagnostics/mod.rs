//! Problems found in the files people write, printed the way they fix them:
//! `file:line:col: rule "<name>": <what is wrong> (<how to fix it>)`.
//!
//! One [`Diagnostic`] type for every such file: rule files, rule tests, sandbox scenarios and
//! the config file; [`spanned`] is the one reader of their spanned TOML. Errors and warnings
//! share the type and are kept in separate lists, so `check` can print both and
//! `--deny-warnings` can promote the latter.

pub(crate) mod spanned;

use std::fmt;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The rule set is not loaded.
    Error,
    /// The rule set loads, but something is probably not what the author meant.
    Warning,
}

/// One problem, located at the offending key or value (1-based line and column; line 0 when
/// it concerns a whole file or folder; line 0 and no file name when it is in no file, such as
/// a setting from the environment).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The rule concerned; `None` for syntax errors, top-level keys and nameless rules.
    pub rule: Option<String>,
    pub message: String,
    /// How to fix it, printed in parentheses.
    pub help: Option<String>,
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: the problem concerns the whole file or folder, not a position in it; without a
        // file, it is in none.
        match (self.line, self.file.is_empty()) {
            (0, true) => {}
            (0, false) => write!(f, "{}: ", self.file)?,
            _ => write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?,
        }
        if let Some(rule) = &self.rule {
            write!(f, "rule \"{rule}\": ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

/// Maps byte offsets of one source text to 1-based line and column (in characters).
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { line_starts }
    }

    pub(crate) fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let line_start = self.line_starts[line.saturating_sub(1)];
        let column = text
            .get(line_start..offset)
            .map_or(offset - line_start, |s| s.chars().count());
        (line.max(1), column + 1)
    }
}

/// Levenshtein distance, for "did you mean" suggestions on misspelt keys.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The closest candidate within a distance that still looks like a typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagnostic_prints_file_line_column_rule_what_and_fix() {
        let d = Diagnostic {
            file: "sales.toml".into(),
            line: 4,
            column: 1,
            rule: Some("offer".into()),
            message: "unknown key \"titel\" in [[task]]".into(),
            help: Some("did you mean \"title\"?".into()),
            severity: Severity::Error,
        };
        assert_eq!(
            d.to_string(),
            "sales.toml:4:1: rule \"offer\": unknown key \"titel\" in [[task]] (did you mean \"title\"?)"
        );
        let plain = Diagnostic {
            rule: None,
            help: None,
            ..d
        };
        assert_eq!(
            plain.to_string(),
            "sales.toml:4:1: unknown key \"titel\" in [[task]]"
        );
        let whole_file = Diagnostic { line: 0, ..plain };
        assert_eq!(
            whole_file.to_string(),
            "sales.toml: unknown key \"titel\" in [[task]]"
        );
        let nowhere = Diagnostic {
            file: String::new(),
            ..whole_file
        };
        assert_eq!(nowhere.to_string(), "unknown key \"titel\" in [[task]]");
    }

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "a = 1\nназвание = 2\n";
        let index = LineIndex::new(text);
        assert_eq!(index.position(text, 0), (1, 1));
        assert_eq!(index.position(text, 6), (2, 1));
        let offset = text.find('=').map(|_| text.rfind('=').unwrap()).unwrap();
        assert_eq!(index.position(text, offset), (2, 10));
    }

    #[test]
    fn suggestions_catch_typos_but_not_unrelated_words() {
        let keys = ["title", "description", "deadline", "responsible"];
        assert_eq!(suggest("titel", &keys), Some("title"));
        assert_eq!(suggest("responsable", &keys), Some("responsible"));
        assert_eq!(suggest("colour", &keys), None);
    }
}
