//! A sandbox scenario: a short TOML script of steps (say, create, move, update, wait), read
//! strictly like rule files: every problem at once, each at its `file:line:col`.

use std::time::Duration;

use serde_json::Value;
use toml::de::DeValue;

use crate::diagnostics::Diagnostic;
use crate::diagnostics::spanned::{Reader, entry, tables, type_name};
use crate::duration::parse_elapsed;

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Narration, printed as `* text`.
    Say(String),
    Create {
        deal: String,
        fields: Value,
    },
    Move {
        deal: String,
        to: String,
    },
    Update {
        deal: String,
        fields: Value,
    },
    /// Wait at least this long (for the sweep), printing what happens.
    Wait(Duration),
}

const STEP_KEYS: &[&str] = &["say", "create", "move", "update", "wait", "to", "fields"];
const ACTIONS: &[&str] = &["create", "move", "update", "wait"];

/// Parses a scenario file; `Err` holds every problem, each at its `file:line:col`.
pub fn parse_scenario(name: &str, text: &str) -> Result<Vec<Step>, Vec<Diagnostic>> {
    let mut r = Reader::new(name, text);
    let doc = r.parse();
    let doc = doc.get_ref();
    r.keys(doc, &["step"], "at the top level of a scenario");
    let mut steps = Vec::new();
    let mut created: Vec<String> = Vec::new();
    for (span, t) in tables(&mut r, doc, "step") {
        r.keys(t, STEP_KEYS, "in [[step]]");
        if let Some(say) = r.string(t, "say") {
            steps.push(Step::Say(say));
        }
        let actions: Vec<&str> = ACTIONS
            .iter()
            .copied()
            .filter(|a| entry(t, a).is_some())
            .collect();
        if actions.len() > 1 {
            r.error(
                span.clone(),
                format!(
                    "a step does one thing, this one has {}",
                    actions.join(" and ")
                ),
                "split it into several [[step]] sections",
            );
            continue;
        }
        let fields = entry(t, "fields").map(|(_, v)| Value::Object(r.fields(v, "fields")));
        let deal_ref = |r: &mut Reader<'_>, key: &str| -> Option<String> {
            let name = r.string(t, key)?;
            if key != "create" && !created.contains(&name) {
                let (_, v) = entry(t, key)?;
                r.error(
                    v.span(),
                    format!("no deal \"{name}\" was created by an earlier step"),
                    "create it first: [[step]] create = \"name\" with fields = { ... }",
                );
            }
            Some(name)
        };
        match actions.first().copied() {
            Some("create") => {
                let Some(deal) = deal_ref(&mut r, "create") else {
                    continue;
                };
                if fields.is_none() {
                    r.error(
                        span.clone(),
                        format!("creating \"{deal}\" needs its fields"),
                        "add fields = { TITLE = \"Acme\", ASSIGNED_BY_ID = 3, STAGE_ID = \"NEW\" }",
                    );
                }
                created.push(deal.clone());
                steps.push(Step::Create {
                    deal,
                    fields: fields.unwrap_or_default(),
                });
            }
            Some("move") => {
                let deal = deal_ref(&mut r, "move");
                let to = r.string(t, "to");
                if entry(t, "to").is_none() {
                    r.error(
                        span.clone(),
                        "a move needs the stage: to = \"PREPARATION\"",
                        "add to = \"<STAGE_ID>\"",
                    );
                }
                if let (Some(deal), Some(to)) = (deal, to) {
                    steps.push(Step::Move { deal, to });
                }
            }
            Some("update") => {
                let deal = deal_ref(&mut r, "update");
                if fields.is_none() {
                    r.error(
                        span.clone(),
                        "an update needs fields = { ... }",
                        "add fields = { UF_CRM_INN = \"7701234567\" }",
                    );
                }
                if let (Some(deal), Some(fields)) = (deal, fields) {
                    steps.push(Step::Update { deal, fields });
                }
            }
            Some(_) => {
                let Some((_, v)) = entry(t, "wait") else {
                    continue;
                };
                match v.get_ref() {
                    DeValue::String(s) => match parse_elapsed(s) {
                        Ok(d) => steps.push(Step::Wait(d)),
                        Err(e) => r.error(v.span(), e.message, &e.help),
                    },
                    other => r.error(
                        v.span(),
                        format!("\"wait\" must be a string, found {}", type_name(other)),
                        "write wait = \"3s\"",
                    ),
                }
            }
            None => {
                if entry(t, "say").is_none() {
                    r.error(
                        span.clone(),
                        "a step with nothing to do",
                        "use say, create, move, update or wait",
                    );
                }
            }
        }
    }
    if r.errors.is_empty() {
        Ok(steps)
    } else {
        Err(r.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_reads_into_steps() {
        let steps = parse_scenario(
            "s.toml",
            r#"
[[step]]
say = "Vera creates a deal"
create = "acme"
fields = { TITLE = "Acme", ASSIGNED_BY_ID = 3, STAGE_ID = "NEW" }

[[step]]
move = "acme"
to = "PREPARATION"

[[step]]
wait = "2s"
"#,
        )
        .expect("valid");
        assert_eq!(steps.len(), 4);
        assert_eq!(
            steps[2],
            Step::Move {
                deal: "acme".into(),
                to: "PREPARATION".into()
            }
        );
        assert_eq!(steps[3], Step::Wait(Duration::from_secs(2)));
    }

    #[test]
    fn a_wait_takes_the_one_duration_syntax_and_a_bad_one_says_how_to_write_it() {
        let steps = parse_scenario(
            "s.toml",
            "[[step]]\nwait = \"2 секунды\"\n[[step]]\nwait = \"1.5s\"\n[[step]]\nwait = \"500ms\"\n",
        )
        .expect("valid");
        assert_eq!(
            steps,
            vec![
                Step::Wait(Duration::from_secs(2)),
                Step::Wait(Duration::from_millis(1500)),
                Step::Wait(Duration::from_millis(500)),
            ]
        );
        let errors =
            parse_scenario("s.toml", "[[step]]\nwait = \"3 secs\"\n").expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "s.toml:2:8: bad duration \"3 secs\": unknown unit \"secs\" (did you mean \"3 sec\"?)"
            ]
        );
    }

    #[test]
    fn a_scenario_with_a_typo_or_an_unknown_deal_is_refused_with_positions() {
        let errors = parse_scenario("s.toml", "[[step]]\nmove = \"acme\"\ntoo = \"WON\"\n")
            .expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("s.toml:3:1: unknown key \"too\"")
                    && e.contains("did you mean \"to\"?")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("s.toml:2:8: no deal \"acme\"")),
            "{shown:?}"
        );
    }
}
