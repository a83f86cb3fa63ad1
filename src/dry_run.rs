//! `b24-robot dry-run --deal FILE --from STAGE`: what the rules would write for a deal entering
//! its current stage from `STAGE`, without a portal. People and labels that only the portal
//! knows are shown as `<unresolved: ...>`.
//!
//! Each write is printed as one JSON object a line, `{"method": ..., "params": ...}`, on stdout;
//! what each rule decided, and why, goes to stderr as `#` comments.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::calendar::Calendar;
use crate::rules::{
    Deal, FieldCatalog, Input, Outcome, Person, RuleSet, StageEntry, StageSemantic, evaluate,
};
use crate::worker::{marker, plan};

#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error("{0}")]
    Deal(String),
}

/// The deal of a `crm.deal.get` answer, with or without its `{"result": ...}` envelope.
pub fn parse_deal(text: &str) -> Result<Deal, DryRunError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| DryRunError::Deal(format!("the deal file is not JSON: {e}")))?;
    let deal = match value {
        Value::Object(mut map) if map.contains_key("result") => {
            map.remove("result").unwrap_or(Value::Null)
        }
        other => other,
    };
    match deal {
        Value::Object(map) if map.contains_key("STAGE_ID") => Ok(Deal::new(map)),
        Value::Object(_) => Err(DryRunError::Deal(
            "the deal has no STAGE_ID: is it a crm.deal.get answer?".into(),
        )),
        _ => Err(DryRunError::Deal(
            "the deal file must hold a JSON object (a crm.deal.get answer)".into(),
        )),
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A write, as JSON.
    Write(Value),
    /// What a rule decided, for people.
    Note(String),
}

/// Evaluates the rules for `deal` entering its stage from `from` and lists the writes.
pub fn run(
    rules: &RuleSet,
    deal: &Deal,
    from: &str,
    calendar: &Calendar,
    portal_origin: &str,
    now: DateTime<Utc>,
) -> Vec<Line> {
    let stage_id = deal.stage_id().unwrap_or_default().to_string();
    let semantic = deal
        .get("STAGE_SEMANTIC_ID")
        .and_then(Value::as_str)
        .map(StageSemantic::from_code)
        .unwrap_or(StageSemantic::Process);
    let created_time = deal
        .get("MOVED_TIME")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| now.fixed_offset());
    let entry = StageEntry {
        id: 0,
        type_id: 2,
        stage_id,
        category_id: deal.category_id().unwrap_or(0),
        semantic,
        created_time,
    };
    let catalog = FieldCatalog::empty();
    let input = Input {
        deal,
        entry: &entry,
        previous_stage: Some(from),
        catalog: &catalog,
        calendar,
        portal_origin,
    };
    let deal_id = deal.id().unwrap_or(0);
    let mut lines = Vec::new();
    for decision in evaluate(rules, &input).decisions {
        let summary = match &decision.outcome {
            Outcome::Fired(effects) => format!("fired, {} effect(s)", effects.len()),
            Outcome::Skipped(reason) => format!("skipped: {reason:?}"),
            Outcome::Failed(error) => format!("failed: {error}"),
        };
        lines.push(Line::Note(format!(
            "rule \"{}\" ({:?}): {summary}",
            decision.rule, decision.kind
        )));
        for note in &decision.notes {
            lines.push(Line::Note(format!("  {note}")));
        }
        let Outcome::Fired(effects) = &decision.outcome else {
            continue;
        };
        for (index, effect) in effects.iter().enumerate() {
            let mark = marker(deal_id, 0, &decision.rule, index as u32);
            let mut resolve = |person: &Person| -> Result<Value, String> {
                Ok(match person {
                    Person::User(id) => json!(id),
                    Person::SupervisorOf(user) => {
                        json!(format!("<unresolved: supervisor of user {user}>"))
                    }
                    Person::Unresolved(why) => json!(format!("<unresolved: {why}>")),
                })
            };
            match plan(effect, deal_id, mark, &mut resolve) {
                Ok(call) => lines.push(Line::Write(
                    json!({ "method": call.method, "params": call.params }),
                )),
                Err(error) => lines.push(Line::Note(format!(
                    "  effect {index} cannot be made: {error}"
                ))),
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
pipeline = 0
[[task]]
name = "offer"
stage = "PREPARATION"
title = "Offer: {TITLE}"
auditors = ["supervisor"]
deadline = { after = "1 day" }
"#;

    #[test]
    fn a_deal_entering_a_stage_prints_the_task_with_its_unresolved_supervisor() {
        let (rules, _) =
            RuleSet::from_sources(&[("r.toml".into(), RULES.into())]).expect("rules load");
        let deal = parse_deal(
            r#"{"result": {"ID": "5", "TITLE": "Acme", "STAGE_ID": "PREPARATION", "CATEGORY_ID": "0",
                "ASSIGNED_BY_ID": "3", "MOVED_TIME": "2026-12-01T10:00:00+03:00"}}"#,
        )
        .expect("deal");
        let lines = run(
            &rules,
            &deal,
            "NEW",
            &Calendar::default(),
            "https://x.bitrix24.ru",
            Utc::now(),
        );
        let writes: Vec<&Value> = lines
            .iter()
            .filter_map(|l| {
                if let Line::Write(v) = l {
                    Some(v)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(writes.len(), 1, "{lines:?}");
        assert_eq!(writes[0]["method"], "tasks.task.add");
        assert_eq!(writes[0]["params"]["fields"]["TITLE"], "Offer: Acme");
        assert_eq!(writes[0]["params"]["fields"]["RESPONSIBLE_ID"], 3);
        assert_eq!(
            writes[0]["params"]["fields"]["AUDITORS"],
            json!(["<unresolved: supervisor of user 3>"])
        );
        assert_eq!(
            writes[0]["params"]["fields"]["DEADLINE"],
            "2026-12-02T10:00:00+03:00"
        );
    }

    #[test]
    fn a_file_that_is_not_a_deal_is_refused_with_a_reason() {
        assert!(parse_deal("not json").is_err());
        assert!(parse_deal("[1,2]").is_err());
        assert!(parse_deal(r#"{"result": {"ID": "5"}}"#).is_err());
    }
}
