//! `tasks.task.add` and `tasks.task.list`: the tasks API speaks camelCase (`responsibleId`)
//! but takes upper-case names too, and ignores filter keys it does not document.

use serde_json::{Map, Value, json};

use super::Reply;
use super::lists::{Page, matches, select_list, sort_items, split_op};
use crate::sandbox::store::{ApiError, PortalState};
use crate::sandbox::values::{
    format_instant, like, object_param, parse_instant, positive_id, scalar_string, string_list,
};

/// `RESPONSIBLE_ID` → `responsibleId`, `UF_CRM_TASK` → `ufCrmTask`.
fn camel(upper: &str) -> String {
    let mut out = String::new();
    for (i, part) in upper.split('_').enumerate() {
        let lower = part.to_ascii_lowercase();
        if i == 0 {
            out.push_str(&lower);
        } else {
            let mut chars = lower.chars();
            if let Some(c) = chars.next() {
                out.push(c.to_ascii_uppercase());
                out.extend(chars);
            }
        }
    }
    out
}

/// `responsibleId` → `RESPONSIBLE_ID`; upper-case names pass through.
fn upper_snake(name: &str) -> String {
    if name.chars().any(|c| c.is_ascii_lowercase()) {
        let mut out = String::new();
        for c in name.chars() {
            if c.is_ascii_uppercase() && !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    } else {
        name.to_string()
    }
}

/// A stored task as the API prints it (camelCase); `deadline` in the portal's offset.
fn task_view(st: &PortalState, task: &Map<String, Value>, include_crm: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in task {
        match k.as_str() {
            "DEADLINE_AT" => {}
            "UF_CRM_TASK" if !include_crm => {}
            "DEADLINE" => {
                let printed = task
                    .get("DEADLINE_AT")
                    .and_then(Value::as_str)
                    .and_then(|s| parse_instant(s, st.offset))
                    .map(|at| format_instant(at, st.offset));
                out.insert("deadline".into(), json!(printed));
            }
            _ => {
                out.insert(camel(k), v.clone());
            }
        }
    }
    out
}

pub(super) fn task_add(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    let fields = object_param(params, "fields")
        .ok_or_else(|| ApiError::new(400, "100", "Could not find value for parameter {fields}"))?;
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| upper_snake(k) == name)
            .map(|(_, v)| v.clone())
    };
    let text = |name: &str| {
        get(name)
            .and_then(|v| scalar_string(&v))
            .unwrap_or_default()
    };
    let title = text("TITLE");
    if title.trim().is_empty() {
        return Err(ApiError::new(
            400,
            "ERROR_CORE",
            "Task title is not specified",
        ));
    }
    let responsible = get("RESPONSIBLE_ID")
        .as_ref()
        .and_then(positive_id)
        .ok_or_else(|| ApiError::new(400, "ERROR_CORE", "Responsible person not specified"))?;
    let created_by = get("CREATED_BY")
        .as_ref()
        .and_then(positive_id)
        .unwrap_or(st.webhook_user);
    let deadline_raw = get("DEADLINE")
        .and_then(|v| scalar_string(&v))
        .filter(|s| !s.is_empty());
    let deadline_at = deadline_raw
        .as_deref()
        .and_then(|d| parse_instant(d, st.offset))
        .map(|at| at.to_rfc3339());
    if deadline_raw.is_some() && deadline_at.is_none() {
        return Err(ApiError::new(
            400,
            "ERROR_CORE",
            "Invalid value for the DEADLINE field",
        ));
    }
    let now = st.now();
    let mut task = Map::new();
    let entries = [
        ("TITLE", json!(title)),
        ("DESCRIPTION", json!(text("DESCRIPTION"))),
        ("RESPONSIBLE_ID", json!(responsible.to_string())),
        ("CREATED_BY", json!(created_by.to_string())),
        (
            "AUDITORS",
            json!(get("AUDITORS").map(|v| string_list(&v)).unwrap_or_default()),
        ),
        (
            "ACCOMPLICES",
            json!(
                get("ACCOMPLICES")
                    .map(|v| string_list(&v))
                    .unwrap_or_default()
            ),
        ),
        ("DEADLINE", json!(deadline_raw)),
        ("DEADLINE_AT", json!(deadline_at)),
        (
            "UF_CRM_TASK",
            json!(
                get("UF_CRM_TASK")
                    .map(|v| string_list(&v))
                    .unwrap_or_default()
            ),
        ),
        (
            "XML_ID",
            json!(get("XML_ID").and_then(|v| scalar_string(&v))),
        ),
        (
            "PRIORITY",
            json!(
                get("PRIORITY")
                    .and_then(|v| scalar_string(&v))
                    .unwrap_or_else(|| "1".into())
            ),
        ),
        (
            "GROUP_ID",
            json!(
                get("GROUP_ID")
                    .and_then(|v| scalar_string(&v))
                    .unwrap_or_else(|| "0".into())
            ),
        ),
        ("STATUS", json!("2")),
        ("CREATED_DATE", json!(now)),
        ("CHANGED_DATE", json!(now)),
    ];
    for (k, v) in entries {
        task.insert(k.to_string(), v);
    }
    let stored = st.add_task(task);
    Ok(Reply::of(json!({"task": task_view(st, &stored, true)})))
}

/// The documented `tasks.task.list` filter keys; anything else (`XML_ID`!) is ignored.
const TASK_FILTER_KEYS: &[&str] = &[
    "ID",
    "PARENT_ID",
    "GROUP_ID",
    "CREATED_BY",
    "STATUS_CHANGED_BY",
    "PRIORITY",
    "FORUM_TOPIC_ID",
    "RESPONSIBLE_ID",
    "TITLE",
    "TAG",
    "REAL_STATUS",
    "STATUS",
    "MARK",
    "SITE_ID",
    "ADD_IN_REPORT",
    "DATE_START",
    "DEADLINE",
    "CREATED_DATE",
    "CLOSED_DATE",
    "CHANGED_DATE",
    "ACCOMPLICE",
    "AUDITOR",
    "DEPENDS_ON",
    "ONLY_ROOT_TASKS",
    "STAGE_ID",
    "SPRINT_ID",
    "BACKLOG_ID",
    "UF_CRM_TASK",
];

pub(super) fn task_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    let raw_filter = object_param(params, "filter").unwrap_or_default();
    let mut filter = Map::new();
    let mut title_pattern = None;
    for (key, value) in raw_filter {
        let (op, field) = split_op(&key);
        if !TASK_FILTER_KEYS.contains(&field.as_str()) {
            continue;
        }
        if field == "TITLE" && op.is_empty() {
            // TITLE takes a LIKE pattern (`%`, `_`); without wildcards it is an exact match.
            title_pattern = scalar_string(&value);
        } else {
            filter.insert(key, value);
        }
    }
    let mut tasks: Vec<(Map<String, Value>, Map<String, Value>)> = st
        .tasks
        .iter()
        .map(|t| {
            // The filterable view: documented filter names over the stored fields.
            let mut view = t.clone();
            view.insert(
                "REAL_STATUS".into(),
                t.get("STATUS").cloned().unwrap_or(Value::Null),
            );
            view.insert(
                "AUDITOR".into(),
                t.get("AUDITORS").cloned().unwrap_or(json!([])),
            );
            view.insert(
                "ACCOMPLICE".into(),
                t.get("ACCOMPLICES").cloned().unwrap_or(json!([])),
            );
            view.insert(
                "DEADLINE".into(),
                t.get("DEADLINE_AT").cloned().unwrap_or(Value::Null),
            );
            (view, t.clone())
        })
        .filter(|(view, _)| matches(view, &filter, st.offset))
        .filter(|(view, _)| match &title_pattern {
            Some(p) => like(view.get("TITLE").and_then(Value::as_str).unwrap_or(""), p),
            None => true,
        })
        .collect();
    let order = object_param(params, "order").map(|o| {
        o.into_iter()
            .map(|(k, v)| (upper_snake(&k), v))
            .collect::<Map<String, Value>>()
    });
    let mut views: Vec<Map<String, Value>> = tasks.iter().map(|(v, _)| v.clone()).collect();
    // Documented default: descending by ID.
    sort_items(&mut views, order, ("ID", true), st.offset);
    let order_ids: Vec<String> = views
        .iter()
        .map(|v| v.get("ID").and_then(scalar_string).unwrap_or_default())
        .collect();
    tasks.sort_by_key(|(v, _)| {
        let id = v.get("ID").and_then(scalar_string).unwrap_or_default();
        order_ids.iter().position(|x| *x == id)
    });
    let select: Vec<String> = select_list(params).iter().map(|s| upper_snake(s)).collect();
    let include_crm = select.iter().any(|s| s == "UF_CRM_TASK");
    let explicit = !select.is_empty() && !select.iter().any(|s| s == "*");
    Ok(Page::cut(tasks, params, false).reply(|page| {
        let items: Vec<Value> = page
            .into_iter()
            .map(|(_, t)| {
                let view = task_view(st, &t, include_crm);
                if explicit {
                    let wanted: Vec<String> = select.iter().map(|s| camel(s)).collect();
                    Value::Object(
                        view.into_iter()
                            .filter(|(k, _)| k == "id" || wanted.contains(k))
                            .collect(),
                    )
                } else {
                    Value::Object(view)
                }
            })
            .collect();
        json!({"tasks": items})
    }))
}
