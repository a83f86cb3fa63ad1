//! `b24-robot check`'s view of the settings: the same load as [`Settings::load`], with every
//! problem placed where it is written. The config file is re-read with spans, so a syntax
//! error, an unknown section or key (with the closest known one) and a bad value each point at
//! their `file:line:col`; a problem from the environment names its variable instead.

use std::collections::HashMap;
use std::ops::Range;

use super::load::{Sources, default_file, env_key, env_var};
use super::raw::known_keys;
use super::{ConfigError, Settings};
use crate::diagnostics::spanned::Source;
use crate::diagnostics::{Diagnostic, Severity, suggest};

/// Every section with its keys, as [`known_keys`] lists them.
type Known = [(String, Vec<String>)];

/// Loads the settings like [`Settings::load`], but reports every problem of the config file with
/// its `file:line:col` (the file is re-read with spans): syntax errors, unknown keys with a
/// suggestion, and bad values. Problems from the environment name their variable (and no file).
pub fn check(sources: &Sources) -> Result<Settings, Vec<Diagnostic>> {
    let path = sources.file.clone().or_else(default_file);
    let text = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let source = match (&path, &text) {
        (Some(path), Some(text)) => Some(Source::new(&path.display().to_string(), text)),
        _ => None,
    };
    let known = known_keys();
    let mut spans = HashMap::new();
    if let Some(source) = &source {
        let problems = file_problems(source, &known, &mut spans);
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    let mut problems: Vec<Diagnostic> = sources.env_problems().into_iter().map(nowhere).collect();
    problems.extend(unknown_variables(sources, &known));
    if !problems.is_empty() {
        return Err(problems);
    }
    match Settings::load(sources) {
        Ok(settings) => Ok(settings),
        Err(ConfigError::Invalid(bad)) => Err(bad
            .into_iter()
            .map(|bad| {
                let in_file = source
                    .as_ref()
                    .zip(spans.get(&bad.key))
                    .map(|(source, span)| {
                        source.error(span.clone(), bad.to_string(), String::new())
                    });
                let env_name = env_var(&bad.key);
                match in_file {
                    Some(problem) => problem,
                    None if sources.env.contains_key(&env_name) => Diagnostic {
                        help: Some(format!("from the environment, {env_name}")),
                        ..nowhere(bad.to_string())
                    },
                    None => nowhere(bad.to_string()),
                }
            })
            .collect()),
        Err(other) => Err(vec![nowhere(other.to_string())]),
    }
}

/// The file's syntax errors, unknown sections and unknown keys; the span of each known key's
/// value goes into `spans` (by `section.key`), for the bad values found later.
fn file_problems(
    source: &Source<'_>,
    known: &Known,
    spans: &mut HashMap<String, Range<usize>>,
) -> Vec<Diagnostic> {
    let (table, errors) = source.parse();
    let mut problems: Vec<Diagnostic> = errors
        .into_iter()
        .map(|(span, message)| source.error(span, message, String::new()))
        .collect();
    let sections: Vec<&str> = known.iter().map(|(s, _)| s.as_str()).collect();
    for (section, value) in table.get_ref().iter() {
        let section_name = section.get_ref().as_ref();
        let Some((_, keys)) = known.iter().find(|(s, _)| s == section_name) else {
            let hint = suggest(section_name, &sections)
                .map(|s| format!("did you mean [{s}]?"))
                .unwrap_or_else(|| format!("sections: {}", sections.join(", ")));
            problems.push(source.error(
                section.span(),
                format!("unknown section or key \"{section_name}\""),
                hint,
            ));
            continue;
        };
        let Some(inner) = value.get_ref().as_table() else {
            problems.push(source.error(
                value.span(),
                format!("[{section_name}] must be a table of keys"),
                String::new(),
            ));
            continue;
        };
        let key_names: Vec<&str> = keys.iter().map(String::as_str).collect();
        for (key, value) in inner.iter() {
            let key_name = key.get_ref().as_ref();
            let full = format!("{section_name}.{key_name}");
            if key_names.contains(&key_name) {
                spans.insert(full, value.span());
            } else {
                let hint = suggest(key_name, &key_names)
                    .map(|k| format!("did you mean \"{k}\"?"))
                    .unwrap_or_else(|| {
                        format!("keys of [{section_name}]: {}", key_names.join(", "))
                    });
                problems.push(source.error(key.span(), format!("unknown key \"{full}\""), hint));
            }
        }
    }
    problems
}

/// The `B24ROBOT__*` variables that set no known key, each with the closest known variable.
fn unknown_variables(sources: &Sources, known: &Known) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for var in sources.env.keys() {
        let Some(key) = env_key(var) else {
            continue;
        };
        let (section, name) = key.split_once("__").unwrap_or((key.as_str(), ""));
        let keys = known.iter().find(|(s, _)| s == section).map(|(_, k)| k);
        if keys.is_none_or(|k| !k.iter().any(|k| k == name)) {
            let candidates: Vec<String> = known
                .iter()
                .flat_map(|(s, k)| k.iter().map(move |k| format!("{s}__{k}")))
                .collect();
            let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
            let hint = suggest(&key, &refs).map(|k| format!("did you mean {}?", env_var(k)));
            problems.push(Diagnostic {
                help: hint,
                ..nowhere(format!("environment variable {var}: unknown key"))
            });
        }
    }
    problems
}

/// A problem that is in no file: a variable of the environment, or the settings as a whole.
fn nowhere(message: String) -> Diagnostic {
    Diagnostic {
        file: String::new(),
        line: 0,
        column: 0,
        rule: None,
        message,
        help: None,
        severity: Severity::Error,
    }
}
