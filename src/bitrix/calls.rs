//! One builder per CRM call the service makes: the method and its parameters, written out once.
//!
//! Callers say what they want (a deal's history past an entry, a page of deals, a task to look
//! for); this module knows how Bitrix24 spells it (`entityTypeId` 2 for deals, `D_<id>` for a
//! task's deal binding, the `-1` start that skips counting). The parameters of each call keep
//! one key order, so a request reads the same wherever it is made (the integration tests count
//! requests and compare sub-calls).

use serde_json::{Map, Value, json};

use super::client::BatchCall;

/// `entityTypeId` of deals in the universal CRM methods (`crm.stagehistory.list`,
/// `crm.category.list`).
pub const DEALS: u64 = 2;

/// Where a page of a list method starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At this item: `next` of the page before.
    At(u64),
    /// At the first item, without counting the whole list (`start: -1`): much faster on a big
    /// portal; the answer has no `total` and no `next`.
    Uncounted,
}

impl Start {
    fn value(self) -> Value {
        match self {
            Start::At(n) => json!(n),
            Start::Uncounted => json!(-1),
        }
    }
}

/// Which stage-history entries of deals to list (`crm.stagehistory.list`).
#[derive(Debug, Clone, Copy, Default)]
pub struct History<'a> {
    /// Only the entries of these deals (one: the deal's own list); none: of every deal.
    /// The filter takes "exact values, arrays of values" (`crm-stage-history-list.md`), so one
    /// call reads the entries of many deals.
    pub owners: &'a [u64],
    /// Only entries with an id past this one.
    pub after: Option<u64>,
    /// Newest first; otherwise oldest first.
    pub newest_first: bool,
    /// The fields of each entry.
    pub select: &'a [&'a str],
    /// Where the page starts; none: at the first item, counted.
    pub start: Option<Start>,
    /// Only entries made before this moment (`<CREATED_TIME`, an ISO 8601 date-time; the filter
    /// takes `<` among its modifiers, `crm-stage-history-list.md`).
    pub created_before: Option<&'a str>,
}

/// `crm.stagehistory.list` of deals; no filter at all when neither owner nor `after` is given.
pub fn stage_history(query: History<'_>) -> BatchCall {
    let mut params = Map::new();
    params.insert("entityTypeId".into(), json!(DEALS));
    let mut filter = Map::new();
    match query.owners {
        [] => {}
        [owner] => {
            filter.insert("OWNER_ID".into(), json!(owner));
        }
        owners => {
            filter.insert("OWNER_ID".into(), json!(owners));
        }
    }
    if let Some(after) = query.after {
        filter.insert(">ID".into(), json!(after));
    }
    if let Some(before) = query.created_before {
        filter.insert("<CREATED_TIME".into(), json!(before));
    }
    if !filter.is_empty() {
        params.insert("filter".into(), Value::Object(filter));
    }
    let order = if query.newest_first { "DESC" } else { "ASC" };
    params.insert("order".into(), json!({ "ID": order }));
    params.insert("select".into(), json!(query.select));
    if let Some(start) = query.start {
        params.insert("start".into(), start.value());
    }
    BatchCall::new("crm.stagehistory.list", Value::Object(params))
}

/// `crm.deal.fields`: the field catalog (types, labels, list options, read-only flags).
pub fn deal_fields() -> BatchCall {
    BatchCall::new("crm.deal.fields", json!({}))
}

/// `crm.deal.get`: one deal, every field.
pub fn deal_get(id: u64) -> BatchCall {
    BatchCall::new("crm.deal.get", json!({ "id": id }))
}

/// `crm.deal.list` of these deals (`@ID`, at most 50: one page) with the fields named in
/// `select`. Named fields are returned whatever their kind; the masks `*` and `UF_*` would
/// leave out the multiple ones (`crm-deal-list.md`, "select"), so none is used.
pub fn deals_by_id(ids: &[u64], select: &[String]) -> BatchCall {
    BatchCall::new(
        "crm.deal.list",
        json!({ "filter": { "@ID": ids }, "order": { "ID": "ASC" }, "select": select }),
    )
}

/// `crm.deal.list`: a page of deals past `after` (by ID, oldest first, uncounted), with what
/// tells the stage they are in; of one pipeline, or of all.
pub fn deal_page(after: u64, pipeline: Option<u64>) -> BatchCall {
    let mut filter = Map::new();
    filter.insert(">ID".into(), json!(after));
    if let Some(p) = pipeline {
        filter.insert("CATEGORY_ID".into(), json!(p));
    }
    BatchCall::new(
        "crm.deal.list",
        json!({ "filter": filter, "order": { "ID": "ASC" },
                "select": ["ID", "STAGE_ID", "CATEGORY_ID", "STAGE_SEMANTIC_ID"], "start": Start::Uncounted.value() }),
    )
}

/// `crm.deal.list` for its `total`: how many deals there are, of one pipeline or of all.
pub fn deal_count(pipeline: Option<u64>) -> BatchCall {
    let filter = match pipeline {
        Some(p) => json!({ "CATEGORY_ID": p }),
        None => json!({}),
    };
    BatchCall::new(
        "crm.deal.list",
        json!({ "filter": filter, "order": { "ID": "ASC" }, "select": ["ID"] }),
    )
}

/// `crm.deal.list`: the deals created with this `ORIGINATOR_ID` and `ORIGIN_ID` (a copy
/// looked for again).
pub fn deals_by_origin(originator: &str, origin_id: &str) -> BatchCall {
    BatchCall::new(
        "crm.deal.list",
        json!({
            "filter": { "ORIGINATOR_ID": originator, "ORIGIN_ID": origin_id },
            "select": ["ID", "ORIGINATOR_ID", "ORIGIN_ID"],
        }),
    )
}

/// `crm.deal.add` with these fields.
pub fn deal_add(fields: Map<String, Value>) -> BatchCall {
    BatchCall::new("crm.deal.add", json!({ "fields": fields }))
}

/// `crm.deal.update` that moves a deal to a stage.
pub fn deal_move(id: u64, stage: &str) -> BatchCall {
    BatchCall::new(
        "crm.deal.update",
        json!({ "id": id, "fields": { "STAGE_ID": stage } }),
    )
}

/// `crm.timeline.comment.add` on a deal's timeline (`deal` is its id, as sent).
pub fn comment_add(deal: Value, text: &str) -> BatchCall {
    BatchCall::new(
        "crm.timeline.comment.add",
        json!({ "fields": { "ENTITY_ID": deal, "ENTITY_TYPE": "deal", "COMMENT": text } }),
    )
}

/// `crm.timeline.comment.list`: a deal's comments, newest first.
pub fn comments(deal: &Value) -> BatchCall {
    BatchCall::new(
        "crm.timeline.comment.list",
        json!({
            "filter": { "ENTITY_ID": deal, "ENTITY_TYPE": "deal" },
            "order": { "ID": "DESC" },
            "select": ["ID", "COMMENT", "CREATED"],
        }),
    )
}

/// How a task names the deal it is bound to (`UF_CRM_TASK`).
pub fn deal_binding(deal_id: u64) -> String {
    format!("D_{deal_id}")
}

/// `tasks.task.add` with these fields.
pub fn task_add(fields: Map<String, Value>) -> BatchCall {
    BatchCall::new("tasks.task.add", json!({ "fields": fields }))
}

/// `tasks.task.list`: the deal's tasks with this title, with the `XML_ID` that tells ours.
pub fn task_lookup(deal_id: u64, title: Value) -> BatchCall {
    BatchCall::new(
        "tasks.task.list",
        json!({
            "filter": { "UF_CRM_TASK": deal_binding(deal_id), "TITLE": title },
            "select": ["ID", "TITLE", "XML_ID", "UF_CRM_TASK"],
        }),
    )
}

/// `tasks.task.complete` or `tasks.task.defer` (`method`) of one task: both take `taskId`
/// (bitrix24/b24restdocs `api-reference/tasks/tasks-task-complete.md`, `tasks-task-defer.md`).
pub fn task_close(method: &str, task_id: &str) -> BatchCall {
    BatchCall::new(method, json!({ "taskId": task_id }))
}

/// `tasks.task.list` of tasks by id with their status and deadline (`REAL_STATUS`: 1-3 open,
/// 4 awaiting control, 5 completed, 6 deferred, 7 declined; `api-reference/tasks/tasks-task-list.md`).
pub fn tasks_by_id(ids: &[u64]) -> BatchCall {
    BatchCall::new(
        "tasks.task.list",
        json!({
            "filter": { "ID": ids },
            "select": TASK_SELECT,
        }),
    )
}

/// The task fields the control sweep reads: always named, as the docs ask (`UF_CRM_TASK` is
/// returned only when selected).
pub const TASK_SELECT: [&str; 7] = [
    "ID",
    "TITLE",
    "RESPONSIBLE_ID",
    "DEADLINE",
    "REAL_STATUS",
    "UF_CRM_TASK",
    "CLOSED_DATE",
];

/// `im.notify.system.add`: a notification that replaces an older one with the same `tag`
/// (through a webhook, `TAG` goes with `CLIENT_ID`).
pub fn notify(user: Value, message: &str, tag: &str, client_id: &str) -> BatchCall {
    BatchCall::new(
        "im.notify.system.add",
        json!({ "USER_ID": user, "MESSAGE": message, "TAG": tag, "CLIENT_ID": client_id }),
    )
}

/// `user.get`: one user (their departments).
pub fn user_get(id: u64) -> BatchCall {
    BatchCall::new("user.get", json!({ "ID": id }))
}

/// `department.get`: one department (its head and parent).
pub fn department_get(id: u64) -> BatchCall {
    BatchCall::new("department.get", json!({ "ID": id }))
}

/// `user.get`: every user, by id, page by page (`start`).
pub fn users() -> BatchCall {
    BatchCall::new("user.get", json!({ "sort": "ID", "order": "ASC" }))
}

/// `department.get`: every department, by id, page by page (`start`).
pub fn departments() -> BatchCall {
    BatchCall::new("department.get", json!({ "sort": "ID", "order": "ASC" }))
}

/// `crm.category.list` of deals: the pipelines.
pub fn pipelines() -> BatchCall {
    BatchCall::new("crm.category.list", json!({ "entityTypeId": DEALS }))
}

/// `crm.status.list`: the stages of a pipeline, in their order (`DEAL_STAGE` for pipeline 0,
/// `DEAL_STAGE_<n>` for the others).
pub fn stages(pipeline: u64) -> BatchCall {
    let entity = if pipeline == 0 {
        "DEAL_STAGE".to_string()
    } else {
        format!("DEAL_STAGE_{pipeline}")
    };
    BatchCall::new(
        "crm.status.list",
        json!({ "filter": { "ENTITY_ID": entity }, "order": { "SORT": "ASC" } }),
    )
}

/// `crm.status.list` unfiltered: every directory's items, the stages of all pipelines among
/// them (`ENTITY_ID` `DEAL_STAGE`, `DEAL_STAGE_<n>`), each with its `NAME`; the method takes no
/// navigation, so one answer holds them all (`api-reference/crm/status/crm-status-list.md`:
/// "the \"select\" and \"navigation\" parameters are not supported"). One call, where a filter
/// per pipeline would need the pipelines first.
pub fn all_stages() -> BatchCall {
    BatchCall::new("crm.status.list", json!({ "order": { "SORT": "ASC" } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitrix::php_query;

    /// The query string a call is sent as: what the key order decides.
    fn sent(call: &BatchCall) -> String {
        format!("{}?{}", call.method, php_query(&call.params))
    }

    #[test]
    fn stage_history_reads_as_each_caller_always_sent_it() {
        let select = ["ID", "OWNER_ID"];
        let all = History {
            select: &select,
            ..History::default()
        };
        assert_eq!(
            stage_history(History {
                newest_first: true,
                ..all
            })
            .params,
            json!({ "entityTypeId": 2, "order": { "ID": "DESC" }, "select": ["ID", "OWNER_ID"] })
        );
        let paged = stage_history(History {
            owners: &[5],
            after: Some(100),
            start: Some(Start::At(50)),
            ..all
        });
        assert_eq!(
            sent(&paged),
            "crm.stagehistory.list?entityTypeId=2&filter%5BOWNER_ID%5D=5&filter%5B%3EID%5D=100\
             &order%5BID%5D=ASC&select%5B0%5D=ID&select%5B1%5D=OWNER_ID&start=50"
        );
    }

    #[test]
    fn a_deal_count_keeps_its_empty_filter_and_a_page_skips_the_count() {
        assert_eq!(
            deal_count(None).params,
            json!({ "filter": {}, "order": { "ID": "ASC" }, "select": ["ID"] })
        );
        assert_eq!(deal_page(7, Some(1)).params["start"], json!(-1));
        assert_eq!(
            deal_page(7, Some(1)).params["filter"],
            json!({ ">ID": 7, "CATEGORY_ID": 1 })
        );
    }

    #[test]
    fn the_stages_of_pipeline_zero_have_no_number() {
        assert_eq!(stages(0).params["filter"]["ENTITY_ID"], json!("DEAL_STAGE"));
        assert_eq!(
            stages(3).params["filter"]["ENTITY_ID"],
            json!("DEAL_STAGE_3")
        );
    }
}
