//! `b24-robot check`'s view of the settings: the same load as [`Settings::load`], with every
//! problem placed where it is written. The config file is re-read with spans, so a syntax
//! error, an unknown section or key (with the closest known one) and a bad value each point at
//! their `file:line:col`; a problem from the environment names its variable instead.

use std::collections::HashMap;
use std::ops::Range;

use super::load::{Sources, env_key, env_var};
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
    every_problem(sources).map_err(|mut problems| {
        // In the file's order; what is in no file (the environment) after it.
        problems.sort_by_key(|d| (d.file.is_empty(), d.line, d.column));
        problems
    })
}

fn every_problem(sources: &Sources) -> Result<Settings, Vec<Diagnostic>> {
    let file = super::load::file_text(sources).map_err(|e| vec![nowhere(e.to_string())])?;
    let source = file
        .as_ref()
        .map(|(path, text)| Source::new(&path.display().to_string(), text));
    let known = known_keys();
    let mut spans = HashMap::new();
    let mut problems = Vec::new();
    // The file's text as the settings are loaded from: without the keys already reported, so
    // that every other problem is found in the same run.
    let mut table: Option<toml::Table> = None;
    if let (Some(source), Some((_, text))) = (&source, &file) {
        let (found, unknown) = file_problems(source, &known, &mut spans);
        let syntax_broken = found.len() > unknown.len();
        problems.extend(found);
        if syntax_broken {
            return Err(problems);
        }
        let mut parsed: toml::Table = toml::from_str(text).unwrap_or_default();
        for key in &unknown {
            remove_key(&mut parsed, key);
        }
        table = Some(parsed);
    }
    problems.extend(sources.env_problems().into_iter().map(nowhere));
    problems.extend(unknown_variables(sources, &known));
    if !sources.env_problems().is_empty() {
        return Err(problems);
    }
    let place = |bad: String, key: &str| -> Diagnostic {
        let in_file = source
            .as_ref()
            .zip(spans.get(key))
            .map(|(source, span)| source.error(span.clone(), bad.clone(), String::new()));
        let env_name = env_var(key);
        match in_file {
            Some(problem) => problem,
            None if sources.env.contains_key(&env_name) => Diagnostic {
                help: Some(format!("from the environment, {env_name}")),
                ..nowhere(bad)
            },
            None => nowhere(bad),
        }
    };
    // A value of the wrong type stops the load at the first; each is reported and taken out,
    // and the load runs again (at most once per key of the file).
    for _ in 0..=spans.len() {
        let text = table
            .as_ref()
            .map(|t| toml::to_string(t).unwrap_or_default());
        let file = file
            .as_ref()
            .zip(text.as_deref())
            .map(|((path, _), text)| (path.as_path(), text));
        match Settings::load_text(sources, file) {
            Ok(settings) if problems.is_empty() => return Ok(settings),
            Ok(_) => return Err(problems),
            Err(ConfigError::Invalid(bad)) => {
                problems.extend(bad.into_iter().map(|bad| {
                    let key = bad.key.clone();
                    place(bad.to_string(), &key)
                }));
                return Err(problems);
            }
            Err(ConfigError::Source(message)) => match typed_key(&message) {
                Some(key) if table.as_mut().is_some_and(|t| remove_key(t, &key)) => {
                    problems.push(place(format!("{key}: {}", type_problem(&message)), &key));
                }
                _ => {
                    problems.push(nowhere(message));
                    return Err(problems);
                }
            },
            Err(other) => {
                problems.push(nowhere(other.to_string()));
                return Err(problems);
            }
        }
    }
    Err(problems)
}

/// The key a type error of `config` names: "... for key `portal.burst` ...".
fn typed_key(message: &str) -> Option<String> {
    let rest = &message[message.find("for key `")? + "for key `".len()..];
    Some(rest[..rest.find('`')?].to_string())
}

/// What is wrong, without the key and the "(in ... or the environment)" tail.
fn type_problem(message: &str) -> &str {
    message.split(" for key `").next().unwrap_or(message).trim()
}

/// Takes `section.key` (or a whole unknown `section`) out of the table; whether it was there.
fn remove_key(table: &mut toml::Table, key: &str) -> bool {
    match key.split_once('.') {
        Some((section, name)) => table
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .is_some_and(|t| t.remove(name).is_some()),
        None => table.remove(key).is_some(),
    }
}

/// The file's syntax errors, unknown sections and unknown keys; the span of each known key's
/// value goes into `spans` (by `section.key`), for the bad values found later.
/// Returns the problems and the unknown `section` / `section.key` names among them.
fn file_problems(
    source: &Source<'_>,
    known: &Known,
    spans: &mut HashMap<String, Range<usize>>,
) -> (Vec<Diagnostic>, Vec<String>) {
    let mut unknown = Vec::new();
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
            unknown.push(section_name.to_string());
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
                unknown.push(full);
            }
        }
    }
    (problems, unknown)
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
