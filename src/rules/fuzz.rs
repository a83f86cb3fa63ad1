//! Fuzzing the rule loader as property tests: arbitrary text and mutated valid rule files
//! (the shipped set and the broken fixtures) never panic, and every diagnostic that points into
//! a file points at a line and column inside its text.

use proptest::prelude::*;

use super::{Diagnostic, RuleSet};

/// Cases per property: `PROPTEST_CASES` for a longer run, else what CI affords.
fn fuzz_cases(ci: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci)
}

/// Valid and broken rule files to mutate.
const SEEDS: [&str; 6] = [
    include_str!("../../rules/10-new-clients.toml"),
    include_str!("../../rules/20-repeat-clients.toml"),
    include_str!("../../rules/30-outcomes.toml"),
    include_str!("../../fixtures/rules-broken/unclosed-brace/rules.toml"),
    include_str!("../../fixtures/rules-broken/wrong-type/rules.toml"),
    include_str!("../../fixtures/rules-broken/bad-deadline/rules.toml"),
];

/// Pieces that make TOML and the rule language interesting to break.
const PIECES: [&str; 24] = [
    "[[task]]\n",
    "[[tunnel]]\n",
    "[[require]]\n",
    "[[nps]]\n",
    "[[loss_reason]]\n",
    "\"",
    "'",
    "{",
    "}",
    "[",
    "]",
    "=",
    "\n",
    "#",
    "\\u{",
    "\"\"\"",
    "9999999999999999999999",
    "-1",
    "deadline = { after = \"99999999999 days\" }\n",
    "stage = \"\"\n",
    "pipeline = -5\n",
    "when = \"OPPORTUNITY > 1e400\"\n",
    "time = \"25:61\"\n",
    "\u{1F600}\u{0301}\r\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, piece: usize },
    InsertText { at: usize, text: String },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..40usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..PIECES.len()).prop_map(|(at, piece)| Mutation::Insert { at, piece }),
        (any::<usize>(), ".{0,12}").prop_map(|(at, text)| Mutation::InsertText { at, text }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// The char boundary at or before `at % (len + 1)`.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, m: &Mutation) {
    match m {
        Mutation::Delete { at, len } => {
            let start = boundary(text, *at);
            let end = boundary(text, start + len);
            if end > start {
                text.replace_range(start..end, "");
            }
        }
        Mutation::Insert { at, piece } => {
            let at = boundary(text, *at);
            text.insert_str(at, PIECES[*piece]);
        }
        Mutation::InsertText { at, text: t } => {
            let at = boundary(text, *at);
            text.insert_str(at, t);
        }
        Mutation::DuplicateLine { .. } | Mutation::SwapLines { .. } if text.is_empty() => {}
        Mutation::DuplicateLine { line } => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            let i = line % lines.len();
            lines.insert(i, lines[i]);
            *text = lines.concat();
        }
        Mutation::SwapLines { a, b } => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            let (a, b) = (a % lines.len(), b % lines.len());
            lines.swap(a, b);
            *text = lines.concat();
        }
        Mutation::Truncate { at } => {
            let at = boundary(text, *at);
            text.truncate(at);
        }
    }
}

/// Loads `files`; whatever comes back, each diagnostic about one of them points inside it.
fn load_and_check(files: &[(String, String)]) {
    let diagnostics: Vec<Diagnostic> = match RuleSet::from_sources(files) {
        Ok((_, warnings)) => warnings,
        Err(errors) => {
            assert!(!errors.is_empty(), "an Err carries at least one error");
            errors
        }
    };
    for d in &diagnostics {
        let Some((_, text)) = files.iter().find(|(name, _)| *name == d.file) else {
            panic!("a diagnostic names an unknown file: {d}");
        };
        assert!(!d.message.is_empty(), "{d}");
        if d.line == 0 {
            continue;
        }
        // Lines as the loader counts them: split at '\n' only (a '\r' stays in its line).
        let lines: Vec<&str> = text.split('\n').collect();
        assert!(
            d.line <= lines.len(),
            "line {} past the end ({} lines): {d}",
            d.line,
            lines.len()
        );
        let width = lines[d.line - 1].chars().count();
        assert!(
            d.column >= 1 && d.column <= width + 1,
            "column {} outside line {} (width {width}): {d}",
            d.column,
            d.line
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(2500)))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        load_and_check(&[("fuzz.toml".into(), text)]);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(800)))]

    #[test]
    fn arbitrary_toml_like_text_never_panics(
        text in "([a-z_\\[\\]{}=\"', .0-9#\n-]|task|tunnel|stage|deadline|after|when|pipeline){0,120}"
    ) {
        load_and_check(&[("fuzz.toml".into(), text)]);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases(3000)))]

    #[test]
    fn mutated_rule_files_never_panic(
        seed in 0..SEEDS.len(),
        mutations in proptest::collection::vec(mutation(), 1..6),
        with_valid_neighbour in any::<bool>(),
    ) {
        let mut text = SEEDS[seed].to_string();
        for m in &mutations {
            apply(&mut text, m);
        }
        let mut files = vec![("mutated.toml".to_string(), text)];
        if with_valid_neighbour {
            files.insert(0, ("10-valid.toml".to_string(), SEEDS[0].to_string()));
        }
        load_and_check(&files);
    }
}
