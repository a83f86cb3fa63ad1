//! `tasks.task.add`, `tasks.task.list`, `tasks.task.get`, `tasks.task.complete` and
//! `tasks.task.defer` (`api-reference/tasks/tasks-task-*.md`): the tasks API speaks camelCase
//! (`responsibleId`) but takes upper-case names too, and ignores filter keys it does not
//! document. The statuses and their transitions live in `store/tasks.rs`.

use serde_json::{Map, Value, json};

use super::Reply;
use super::lists::{Page, matches, select_list, sort_items, split_op};
use crate::sandbox::store::tasks::real_status;
use crate::sandbox::store::{ApiError, PortalState};
use crate::sandbox::values::{
    format_instant, like, object_param, param, parse_instant, positive_id, scalar_string,
    string_list,
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

/// A stored task as the API prints it (camelCase); `deadline` in the portal's offset. As the
/// docs say, `status` is the `REAL_STATUS` and `subStatus` the `STATUS` with its meta-statuses
/// (-1 overdue, by the portal's clock); `realStatus` is printed too.
fn task_view(st: &PortalState, task: &Map<String, Value>, include_crm: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in task {
        match k.as_str() {
            "DEADLINE_AT" => {}
            "UF_CRM_TASK" if !include_crm => {}
            "DEADLINE" => {
                let printed = st
                    .task_deadline(task)
                    .map(|at| format_instant(at, st.offset));
                out.insert("deadline".into(), json!(printed));
            }
            "STATUS" => {
                let real = real_status(task).to_string();
                let sub = if st.task_is_overdue(task) {
                    "-1".to_string()
                } else {
                    real.clone()
                };
                out.insert("status".into(), json!(real));
                out.insert("subStatus".into(), json!(sub));
            }
            _ => {
                out.insert(camel(k), v.clone());
            }
        }
    }
    out
}

/// The camelCase keys a `select` asks for: `id` always, `REAL_STATUS` also as `status` (the
/// field it "corresponds to in the response"), `STATUS` with its `subStatus`. No select, or
/// `*`, is every stored field but the CRM bindings.
fn selected(select: &[String]) -> Option<Vec<String>> {
    if select.is_empty() || select.iter().any(|s| s == "*") {
        return None;
    }
    let mut keys = vec!["id".to_string()];
    for field in select {
        keys.push(camel(field));
        match field.as_str() {
            "REAL_STATUS" => keys.push("status".into()),
            "STATUS" => keys.push("subStatus".into()),
            _ => {}
        }
    }
    Some(keys)
}

/// A task as an answer prints it, cut to what `select` names.
fn printed(st: &PortalState, task: &Map<String, Value>, select: &[String]) -> Value {
    let include_crm = select.iter().any(|s| s == "UF_CRM_TASK");
    let view = task_view(st, task, include_crm);
    match selected(select) {
        Some(keys) => Value::Object(view.into_iter().filter(|(k, _)| keys.contains(k)).collect()),
        None => Value::Object(view),
    }
}

/// The `select` of a call, upper snake case (`responsibleId` is `RESPONSIBLE_ID`).
fn select_param(params: &Value) -> Vec<String> {
    select_list(params).iter().map(|s| upper_snake(s)).collect()
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
    let mut task = st.task_record(&title, responsible, created_by);
    let lists = ["AUDITORS", "ACCOMPLICES", "UF_CRM_TASK"];
    for name in lists {
        if let Some(v) = get(name) {
            task.insert(name.into(), json!(string_list(&v)));
        }
    }
    task.insert("DESCRIPTION".into(), json!(text("DESCRIPTION")));
    task.insert("DEADLINE".into(), json!(deadline_raw));
    task.insert("DEADLINE_AT".into(), json!(deadline_at));
    for name in ["XML_ID", "PRIORITY", "GROUP_ID"] {
        if let Some(v) = get(name).and_then(|v| scalar_string(&v)) {
            task.insert(name.into(), json!(v));
        }
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
    // The exact `ID` and `UF_CRM_TASK` lists narrow the tasks before each gets its filterable
    // view: a portal of many tasks answers a list of 50 without copying them all.
    let wanted = |key: &str| -> Option<std::collections::HashSet<String>> {
        filter
            .get(key)
            .map(|v| super::lists::filter_values(v).into_iter().collect())
    };
    let (ids, bindings) = (wanted("ID"), wanted("UF_CRM_TASK"));
    let mut tasks: Vec<(Map<String, Value>, Map<String, Value>)> = st
        .tasks
        .iter()
        .filter(|t| {
            let id = t.get("ID").and_then(scalar_string);
            ids.as_ref()
                .is_none_or(|ids| id.is_some_and(|id| ids.contains(&id)))
                && bindings.as_ref().is_none_or(|b| {
                    t.get("UF_CRM_TASK")
                        .map(string_list)
                        .unwrap_or_default()
                        .iter()
                        .any(|x| b.contains(x))
                })
        })
        .map(|t| {
            // The filterable view: documented filter names over the stored fields.
            let mut view = t.clone();
            let real = real_status(t).to_string();
            // STATUS matches the real status and, for an overdue task, the meta-status -1.
            let status = if st.task_is_overdue(t) {
                json!([real, "-1"])
            } else {
                json!([real])
            };
            view.insert("REAL_STATUS".into(), json!(real));
            view.insert("STATUS".into(), status);
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
    let select = select_param(params);
    Ok(Page::cut(tasks, params, false).reply(|page| {
        let items: Vec<Value> = page
            .into_iter()
            .map(|(_, t)| printed(st, &t, &select))
            .collect();
        json!({"tasks": items})
    }))
}

/// `taskId` of a task action: missing is the engine's `100`, not a number the method's `0`
/// "wrong task id" (`tasks-task-complete.md`, `tasks-task-get.md`).
fn task_id_param(params: &Value) -> Result<u64, ApiError> {
    let value = param(params, "taskId")
        .ok_or_else(|| ApiError::new(400, "100", "Could not find value for parameter {taskId}"))?;
    positive_id(value).ok_or_else(|| ApiError::new(400, "0", "wrong task id"))
}

/// `tasks.task.get {taskId, select}`: `{"task": {...}}`, or `[]` for a task that is not there
/// (`api-reference/tasks/tasks-task-get.md`).
pub(super) fn task_get(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    let id = task_id_param(params)?;
    let select = select_param(params);
    Ok(Reply::of(match st.task(id) {
        Some(task) => json!({"task": printed(st, task, &select)}),
        None => json!([]),
    }))
}

/// `tasks.task.complete {taskId}`: `{"task": {...}}` after the change, every field printed
/// (`api-reference/tasks/tasks-task-complete.md`); 400 `0` "Action on the task is not allowed"
/// for a task already completed or not there.
pub(super) fn task_complete(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    let id = task_id_param(params)?;
    let actor = st.webhook_user;
    let task = st.complete_task(id, actor)?;
    Ok(Reply::of(json!({"task": task_view(st, &task, true)})))
}

/// `tasks.task.defer {taskId}`: as `complete`, to status 6; 400 `1048582` for a task that cannot
/// be deferred (`api-reference/tasks/tasks-task-defer.md`).
pub(super) fn task_defer(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    let id = task_id_param(params)?;
    let actor = st.webhook_user;
    let task = st.defer_task(id, actor)?;
    Ok(Reply::of(json!({"task": task_view(st, &task, true)})))
}
