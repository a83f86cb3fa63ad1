//! From a rule's effect to the REST write that applies it, and back: the call to make, the
//! marker by which what it created is found again, and the id in its answer. The comments that
//! link a tunnel copy with its source are planned here too, once the copy has its id.

use serde_json::{Value, json};

use crate::bitrix::{BatchCall, calls};
use crate::rules::{CopyOrigin, Effect, EffectId, Language, Person};
use crate::store::{EffectKind, EffectRecord, EffectState, RECORD_VERSION, now_ms};

/// `ORIGINATOR_ID` of the deals the service creates (the rules read it back: a copy's origin).
pub use crate::rules::ORIGINATOR;

/// A write with its people resolved, ready to be recorded and sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCall {
    pub kind: EffectKind,
    pub method: String,
    pub params: Value,
    pub marker: String,
}

impl PlannedCall {
    fn new(kind: EffectKind, call: BatchCall, marker: String) -> PlannedCall {
        PlannedCall {
            kind,
            method: call.method,
            params: call.params,
            marker,
        }
    }
}

/// Effect indexes from here on are the comments linking a tunnel copy with its source, made
/// after the copy (they need its id): the copy of effect `i` links with `LINK_COMMENTS + 2i`
/// (on the source) and `LINK_COMMENTS + 2i + 1` (on the copy). A rule's own effects are
/// numbered from 0. Stored records are keyed by these numbers: they never change.
pub const LINK_COMMENTS: u32 = 1000;

/// Builds the REST call of an effect. `resolve` maps a person to the value sent for them: a user
/// id for the worker, a `<unresolved: ...>` placeholder for `dry-run` (or why not at all).
pub fn plan(
    effect: &Effect,
    deal_id: u64,
    marker: String,
    resolve: &mut dyn FnMut(&Person) -> Result<Value, String>,
) -> Result<PlannedCall, String> {
    match effect {
        Effect::CreateTask(task) => {
            let responsible = resolve(&task.responsible)?;
            let mut auditors = Vec::new();
            for a in &task.auditors {
                let id = resolve(a)?;
                if !auditors.contains(&id) {
                    auditors.push(id);
                }
            }
            let mut fields = serde_json::Map::new();
            fields.insert("TITLE".into(), json!(task.title));
            if let Some(d) = &task.description {
                fields.insert("DESCRIPTION".into(), json!(d));
            }
            fields.insert("RESPONSIBLE_ID".into(), json!(responsible));
            if !auditors.is_empty() {
                fields.insert("AUDITORS".into(), json!(auditors));
            }
            if let Some(deadline) = &task.deadline {
                fields.insert("DEADLINE".into(), json!(deadline.to_rfc3339()));
            }
            fields.insert("UF_CRM_TASK".into(), json!([calls::deal_binding(deal_id)]));
            fields.insert("XML_ID".into(), json!(marker));
            Ok(PlannedCall::new(
                EffectKind::Task,
                calls::task_add(fields),
                marker,
            ))
        }
        Effect::AddComment { text } => Ok(comment(json!(deal_id), text, marker)),
        Effect::Notify { user, message } => {
            let user = resolve(user)?;
            // A notification with an existing TAG replaces the older one: a re-send after an
            // unknown outcome cannot show twice. Through a webhook, TAG goes with CLIENT_ID
            // (im.notify.system.add's documentation).
            let call = calls::notify(user, message, &marker, ORIGINATOR);
            Ok(PlannedCall::new(EffectKind::Notify, call, marker))
        }
        Effect::MoveBack { to_stage } => Ok(PlannedCall::new(
            EffectKind::MoveBack,
            calls::deal_move(deal_id, to_stage),
            marker,
        )),
        Effect::CopyDeal(copy) => {
            let responsible = resolve(&copy.responsible)?;
            let mut fields = copy.fields.clone();
            fields.insert("CATEGORY_ID".into(), json!(copy.to_pipeline));
            fields.insert("STAGE_ID".into(), json!(copy.to_stage));
            fields.insert("ASSIGNED_BY_ID".into(), json!(responsible));
            fields.insert("ORIGINATOR_ID".into(), json!(ORIGINATOR));
            fields.insert("ORIGIN_ID".into(), json!(origin_id(&marker, copy.depth)));
            Ok(PlannedCall::new(
                EffectKind::CopyDeal,
                calls::deal_add(fields),
                marker,
            ))
        }
    }
}

/// A comment on a deal's timeline (`deal` as sent: its id).
fn comment(deal: Value, text: &str, marker: String) -> PlannedCall {
    PlannedCall::new(EffectKind::Comment, calls::comment_add(deal, text), marker)
}

/// The intent of one planned effect, as the store keeps it until the call is made. It is
/// recorded as possibly sent (`attempts: 1`): after a crash, look before creating again.
pub fn intent(id: EffectId<'_>, call: PlannedCall, state: EffectState) -> EffectRecord {
    EffectRecord {
        v: RECORD_VERSION,
        deal_id: id.deal_id,
        entry_id: id.entry_id,
        rule: id.rule.to_string(),
        index: id.index,
        kind: call.kind,
        method: call.method,
        params: call.params,
        marker: call.marker,
        state,
        attempts: 1,
        updated_at_ms: now_ms(),
        subject: None,
    }
}

/// The two timeline comments that link a tunnel copy and its source deal, as intents keyed
/// after the copy's own ([`LINK_COMMENTS`]): on the source, the copy's address; on the copy,
/// the source's; in the portal's language.
pub fn link_comments(
    copy: &EffectRecord,
    copy_id: &str,
    (portal_origin, language): (&str, Language),
) -> Vec<EffectRecord> {
    let source = copy.deal_id;
    let pipeline = copy
        .params
        .pointer("/fields/CATEGORY_ID")
        .map(Value::to_string)
        .unwrap_or_default();
    let on_copy = copy_id
        .parse::<u64>()
        .map_or_else(|_| Value::String(copy_id.to_string()), Value::from);
    let texts = [
        (
            json!(source),
            language.copied_into(
                &pipeline,
                copy_id,
                &format!("{portal_origin}/crm/deal/details/{copy_id}/"),
                &copy.rule,
            ),
        ),
        (
            on_copy,
            language.copy_of(
                source,
                &format!("{portal_origin}/crm/deal/details/{source}/"),
                &copy.rule,
            ),
        ),
    ];
    texts
        .into_iter()
        .zip(0u32..)
        .map(|((on, text), i)| {
            let index = LINK_COMMENTS + copy.index * 2 + i;
            let id = EffectId { index, ..copy.id() };
            intent(id, comment(on, &text, id.marker()), EffectState::Pending)
        })
        .collect()
}

/// `ORIGIN_ID` of a copy: the marker without its prefix (the field is short on some portals),
/// with the copy's depth in a chain of copies from 2 on ([`CopyOrigin`]): a copy of depth 1
/// reads as one made before depths were written, and is found again the same way.
fn origin_id(marker: &str, depth: u32) -> String {
    let base = marker.trim_start_matches("b24robot:");
    match CopyOrigin::parse(base) {
        Some(o) => o.id().origin_id(depth),
        None => base.to_string(),
    }
}

/// The `ORIGIN_ID` a recorded copy was (or is to be) created with: the one in its parameters,
/// exactly as sent; a record without it is of an older release, whose copies all had depth 1.
fn recorded_origin_id(effect: &EffectRecord) -> String {
    effect
        .params
        .pointer("/fields/ORIGIN_ID")
        .and_then(Value::as_str)
        .map_or_else(|| origin_id(&effect.marker, 1), str::to_string)
}

/// The read that finds what an earlier attempt of this effect may have created, if one exists.
/// `None`: nothing to look for (the write is harmless to repeat: a move, a notification whose
/// `TAG` makes Bitrix24 replace the older one).
pub fn lookup_call(effect: &EffectRecord) -> Option<BatchCall> {
    match effect.kind {
        EffectKind::Task => {
            let title = effect
                .params
                .pointer("/fields/TITLE")
                .cloned()
                .unwrap_or(Value::Null);
            Some(calls::task_lookup(effect.deal_id, title))
        }
        EffectKind::CopyDeal => Some(calls::deals_by_origin(
            ORIGINATOR,
            &recorded_origin_id(effect),
        )),
        EffectKind::Comment => {
            let deal = effect.params.get("fields")?.get("ENTITY_ID")?;
            Some(calls::comments(deal))
        }
        // Before a stage's task is closed, its status: a task the user closed is left alone.
        EffectKind::CloseTask => effect
            .marker
            .parse::<u64>()
            .ok()
            .map(|id| calls::tasks_by_id(&[id])),
        EffectKind::Notify | EffectKind::MoveBack => None,
    }
}

/// The id of what an earlier attempt created, from the lookup's answer, matched on our side.
/// A comment carries no marker: it matches by its exact text, and only when it is newer than
/// `known_comment` (the last comment the service knows it made on the deal), so that an older
/// comment with the same words (an earlier revert) is not taken for this one.
pub fn found_in_lookup(
    effect: &EffectRecord,
    result: &Value,
    known_comment: u64,
) -> Option<String> {
    match effect.kind {
        EffectKind::Task => {
            let tasks = result
                .get("tasks")
                .or(Some(result))
                .and_then(Value::as_array)?;
            tasks.iter().find_map(|t| {
                let xml = t
                    .get("xmlId")
                    .or_else(|| t.get("XML_ID"))
                    .and_then(Value::as_str);
                (xml == Some(effect.marker.as_str()))
                    .then(|| id_text(t.get("id").or_else(|| t.get("ID"))))
                    .flatten()
            })
        }
        EffectKind::CopyDeal => {
            let origin = recorded_origin_id(effect);
            result.as_array()?.iter().find_map(|d| {
                let same = d.get("ORIGIN_ID").and_then(Value::as_str) == Some(origin.as_str())
                    && d.get("ORIGINATOR_ID").and_then(Value::as_str) == Some(ORIGINATOR);
                same.then(|| id_text(d.get("ID"))).flatten()
            })
        }
        EffectKind::Comment => {
            let text = effect
                .params
                .pointer("/fields/COMMENT")
                .and_then(Value::as_str)?;
            result.as_array()?.iter().find_map(|c| {
                let id = id_text(c.get("ID"))?;
                let newer = id.parse::<u64>().is_ok_and(|n| n > known_comment);
                (newer && c.get("COMMENT").and_then(Value::as_str) == Some(text)).then_some(id)
            })
        }
        // Nothing to close when the task is gone or no longer open (completed, deferred,
        // declined or awaiting control by someone's hand): "found" as already done.
        EffectKind::CloseTask => {
            let tasks = result
                .get("tasks")
                .or(Some(result))
                .and_then(Value::as_array)?;
            let task = tasks.iter().find(|t| {
                id_text(t.get("id").or_else(|| t.get("ID"))).as_deref() == Some(&effect.marker)
            });
            // `REAL_STATUS` is printed as `status` (api-reference/tasks/fields.md).
            let status = task.and_then(|t| {
                let s = ["realStatus", "status", "REAL_STATUS"]
                    .iter()
                    .find_map(|k| t.get(*k))?;
                id_text(Some(s))?.parse::<u8>().ok()
            });
            match (task, status) {
                (None, _) => Some(format!("{} (gone)", effect.marker)),
                (Some(_), Some(1..=3)) => None,
                (Some(_), Some(s)) => {
                    Some(format!("{} (already closed, status {s})", effect.marker))
                }
                (Some(_), None) => None,
            }
        }
        _ => None,
    }
}

/// The id in a write's answer: `{"task":{"id":"3711"}}`, `999`, `true`...
pub fn created_id(kind: EffectKind, result: &Value, deal_id: u64) -> Option<String> {
    match kind {
        EffectKind::Task => id_text(
            result
                .pointer("/task/id")
                .or_else(|| result.pointer("/task/ID")),
        ),
        EffectKind::MoveBack => Some(deal_id.to_string()),
        EffectKind::CloseTask => id_text(
            result
                .pointer("/task/id")
                .or_else(|| result.pointer("/task/ID")),
        )
        .or_else(|| {
            (result != &Value::Null && result != &Value::Bool(false)).then(|| "closed".to_string())
        }),
        EffectKind::Comment | EffectKind::Notify | EffectKind::CopyDeal => match result {
            Value::Bool(false) | Value::Null => None,
            other => id_text(Some(other)),
        },
    }
}

fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(true) => Some("true".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::TaskSpec;
    use crate::store::EffectState;

    fn task() -> Effect {
        Effect::CreateTask(TaskSpec {
            title: "Call the client".into(),
            description: None,
            responsible: Person::User(7),
            auditors: vec![Person::User(3), Person::User(3)],
            deadline: None,
        })
    }

    #[test]
    fn a_task_is_bound_to_the_deal_and_carries_its_marker() {
        let call = plan(
            &task(),
            5,
            EffectId {
                deal_id: 5,
                entry_id: 100,
                rule: "call",
                index: 0,
            }
            .marker(),
            &mut |p| match p {
                Person::User(u) => Ok(json!(u)),
                _ => Err("no".into()),
            },
        )
        .expect("planned");
        assert_eq!(call.method, "tasks.task.add");
        assert_eq!(call.params["fields"]["UF_CRM_TASK"], json!(["D_5"]));
        assert_eq!(
            call.params["fields"]["XML_ID"],
            json!("b24robot:5:100:call:0")
        );
        assert_eq!(call.params["fields"]["AUDITORS"], json!([3]));
    }

    #[test]
    fn a_lookup_matches_the_marker_not_just_the_title() {
        let record = EffectRecord {
            v: 1,
            deal_id: 5,
            entry_id: 100,
            rule: "call".into(),
            index: 0,
            kind: EffectKind::Task,
            method: "tasks.task.add".into(),
            params: json!({"fields": {"TITLE": "Call"}}),
            marker: "b24robot:5:100:call:0".into(),
            state: EffectState::Pending,
            attempts: 1,
            updated_at_ms: 0,
            subject: None,
        };
        let answer = json!({"tasks": [
            {"id": "1", "title": "Call", "xmlId": "b24robot:5:99:call:0"},
            {"id": "2", "title": "Call", "xmlId": "b24robot:5:100:call:0"}
        ]});
        assert_eq!(found_in_lookup(&record, &answer, 0), Some("2".into()));
        assert_eq!(found_in_lookup(&record, &json!({"tasks": []}), 0), None);

        let comment = EffectRecord {
            kind: EffectKind::Comment,
            method: "crm.timeline.comment.add".into(),
            params: json!({"fields": {"ENTITY_ID": 5, "ENTITY_TYPE": "deal", "COMMENT": "Fill in INN."}}),
            ..record
        };
        let listed =
            json!([{"ID": "12", "COMMENT": "Fill in INN."}, {"ID": "9", "COMMENT": "Other"}]);
        assert_eq!(found_in_lookup(&comment, &listed, 0), Some("12".into()));
        assert_eq!(
            found_in_lookup(&comment, &listed, 12),
            None,
            "an older comment with the same words is not ours"
        );
    }

    #[test]
    fn a_copy_of_a_copy_carries_its_depth_in_origin_id_and_is_looked_up_by_it() {
        let copy = |depth| {
            Effect::CopyDeal(crate::rules::CopySpec {
                to_pipeline: 2,
                to_stage: "C2:NEW".into(),
                fields: serde_json::Map::new(),
                responsible: Person::User(3),
                depth,
            })
        };
        let mut resolve = |p: &Person| match p {
            Person::User(u) => Ok(json!(u)),
            _ => Err("no".to_string()),
        };
        let first = plan(
            &copy(1),
            5,
            EffectId {
                deal_id: 5,
                entry_id: 100,
                rule: "t",
                index: 0,
            }
            .marker(),
            &mut resolve,
        )
        .expect("planned");
        assert_eq!(
            first.params["fields"]["ORIGIN_ID"], "5:100:t:0",
            "depth 1 reads as before"
        );
        let deep = plan(
            &copy(2),
            9,
            EffectId {
                deal_id: 9,
                entry_id: 300,
                rule: "t",
                index: 0,
            }
            .marker(),
            &mut resolve,
        )
        .expect("planned");
        assert_eq!(deep.params["fields"]["ORIGIN_ID"], "9:300:t:0:2");
        let record = EffectRecord {
            v: 1,
            deal_id: 9,
            entry_id: 300,
            rule: "t".into(),
            index: 0,
            kind: EffectKind::CopyDeal,
            method: deep.method.clone(),
            params: deep.params.clone(),
            marker: deep.marker.clone(),
            state: EffectState::Pending,
            attempts: 1,
            updated_at_ms: 0,
            subject: None,
        };
        let lookup = lookup_call(&record).expect("a lookup").params;
        assert_eq!(lookup["filter"]["ORIGIN_ID"], "9:300:t:0:2");
        let listed =
            json!([{"ID": "77", "ORIGINATOR_ID": "b24-robot", "ORIGIN_ID": "9:300:t:0:2"}]);
        assert_eq!(found_in_lookup(&record, &listed, 0), Some("77".into()));
        // A record of an older release has the marker only: depth 1.
        let old = EffectRecord {
            params: json!({"fields": {}}),
            ..record
        };
        assert_eq!(
            lookup_call(&old).expect("a lookup").params["filter"]["ORIGIN_ID"],
            "9:300:t:0"
        );
    }

    #[test]
    fn the_link_comments_of_a_copy_keep_their_keys_calls_and_texts() {
        let copy = EffectRecord {
            v: 1,
            deal_id: 5,
            entry_id: 100,
            rule: "to-delivery".into(),
            index: 1,
            kind: EffectKind::CopyDeal,
            method: "crm.deal.add".into(),
            params: json!({"fields": {"CATEGORY_ID": 2}}),
            marker: EffectId {
                deal_id: 5,
                entry_id: 100,
                rule: "to-delivery",
                index: 1,
            }
            .marker(),
            state: EffectState::Done { id: "77".into() },
            attempts: 1,
            updated_at_ms: 0,
            subject: None,
        };
        let links = link_comments(&copy, "77", ("https://x.bitrix24.ru", Language::En));
        let keys: Vec<(u64, u64, &str, u32, &str)> = links
            .iter()
            .map(|l| {
                (
                    l.deal_id,
                    l.entry_id,
                    l.rule.as_str(),
                    l.index,
                    l.marker.as_str(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                (
                    5,
                    100,
                    "to-delivery",
                    1002,
                    "b24robot:5:100:to-delivery:1002"
                ),
                (
                    5,
                    100,
                    "to-delivery",
                    1003,
                    "b24robot:5:100:to-delivery:1003"
                ),
            ]
        );
        assert!(links.iter().all(|l| l.kind == EffectKind::Comment
            && l.method == "crm.timeline.comment.add"
            && l.state == EffectState::Pending
            && l.attempts == 1));
        assert_eq!(
            links[0].params,
            json!({"fields": {"ENTITY_ID": 5, "ENTITY_TYPE": "deal", "COMMENT":
                "Copied into pipeline 2 as deal #77: https://x.bitrix24.ru/crm/deal/details/77/ (rule \"to-delivery\")"}})
        );
        assert_eq!(
            links[1].params,
            json!({"fields": {"ENTITY_ID": 77, "ENTITY_TYPE": "deal", "COMMENT":
                "Copy of deal #5: https://x.bitrix24.ru/crm/deal/details/5/ (rule \"to-delivery\")"}})
        );
        let russian = link_comments(&copy, "77", ("https://x.bitrix24.ru", Language::Ru));
        let texts: Vec<&Value> = russian
            .iter()
            .map(|l| &l.params["fields"]["COMMENT"])
            .collect();
        assert_eq!(
            texts,
            [
                "Создана копия сделки в воронке 2: сделка №77, https://x.bitrix24.ru/crm/deal/details/77/ (правило «to-delivery»)",
                "Копия сделки №5: https://x.bitrix24.ru/crm/deal/details/5/ (правило «to-delivery»)",
            ]
        );
    }

    #[test]
    fn created_ids_are_read_from_each_answer_shape() {
        assert_eq!(
            created_id(EffectKind::Task, &json!({"task": {"id": "3711"}}), 1),
            Some("3711".into())
        );
        assert_eq!(
            created_id(EffectKind::Comment, &json!(999), 1),
            Some("999".into())
        );
        assert_eq!(created_id(EffectKind::CopyDeal, &json!(false), 1), None);
    }
}
