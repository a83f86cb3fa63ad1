//! Stages and pipelines: `crm.stagehistory.list`, `crm.status.list`, `crm.status.entity.types`
//! and `crm.category.list` (deals only: entity type 2).

use serde_json::{Map, Value, json};

use super::lists::{
    Page, by_id_ascending, id_floor, list_filter, matches, select_list, sort_items,
};
use super::{CallCtx, Reply};
use crate::sandbox::store::{ApiError, Pipeline, PortalState};
use crate::sandbox::values::{object_param, param, positive_id};

fn entity_type_param(params: &Value) -> Result<u64, ApiError> {
    param(params, "entityTypeId")
        .and_then(positive_id)
        .ok_or_else(|| ApiError::new(400, "NOT_FOUND", "entityTypeId is not defined or invalid"))
}

pub(super) fn stagehistory_list(
    st: &PortalState,
    params: &Value,
    ctx: &CallCtx,
) -> Result<Reply, ApiError> {
    if entity_type_param(params)? != 2 {
        return Ok(Reply::list(json!({"items": []}), Some(0), None));
    }
    let endless = ctx.endless("crm.stagehistory.list", params);
    // The history is kept in id order: a list past `>ID` starts there (a binary search), and
    // one in id order needs no sorting; only the page is copied.
    let (floor, filter) = id_floor(&list_filter(params, endless));
    let from = st
        .history
        .partition_point(|e| e.get("ID").and_then(Value::as_u64).unwrap_or(0) < floor);
    let mut items: Vec<&Map<String, Value>> = st.history[from..]
        .iter()
        .filter_map(Value::as_object)
        .filter(|e| matches(e, &filter, st.offset))
        .collect();
    let order = object_param(params, "order");
    if !by_id_ascending(order.as_ref()) {
        sort_items(&mut items, order, ("ID", false), st.offset);
    }
    if ctx.faults.history_twice {
        items = items.into_iter().flat_map(|e| [e, e]).collect();
    }
    let select = select_list(params);
    Ok(Page::cut(items, params, endless).reply(|page| {
        let items: Vec<Value> = page
            .into_iter()
            .map(|e| {
                if select.is_empty() || select.iter().any(|s| s == "*") {
                    Value::Object(e.clone())
                } else {
                    Value::Object(
                        e.iter()
                            .filter(|(k, _)| select.iter().any(|s| s.eq_ignore_ascii_case(k)))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )
                }
            })
            .collect();
        json!({"items": items})
    }))
}

/// The pipelines in their display order (`sort`, then id).
fn sorted_pipelines(st: &PortalState) -> Vec<&Pipeline> {
    let mut pipelines: Vec<_> = st.pipelines.values().collect();
    pipelines.sort_by_key(|p| (p.sort, p.id));
    pipelines
}

fn status_rows(st: &PortalState) -> Vec<Map<String, Value>> {
    let pipelines = sorted_pipelines(st);
    let mut rows = Vec::new();
    for p in pipelines {
        for s in &p.stages {
            let (semantics, extra, color) = match s.semantics {
                'S' => (json!("S"), "success", "#7BD500"),
                'F' if s.status_id.ends_with("LOSE") => (json!("F"), "failure", "#FF5752"),
                'F' => (json!("F"), "apology", "#FF5752"),
                _ => (Value::Null, "process", "#39A8EF"),
            };
            let row = json!({
                "ID": s.row_id.to_string(),
                "ENTITY_ID": p.entity_id(),
                "STATUS_ID": s.status_id,
                "NAME": s.name,
                "NAME_INIT": s.name,
                "SORT": s.sort.to_string(),
                "SYSTEM": if s.semantics == 'P' && s.sort > 10 { "N" } else { "Y" },
                "CATEGORY_ID": if p.id == 0 { Value::Null } else { json!(p.id.to_string()) },
                "COLOR": color,
                "SEMANTICS": semantics,
                "EXTRA": {"SEMANTICS": extra, "COLOR": color},
            });
            if let Value::Object(m) = row {
                rows.push(m);
            }
        }
    }
    rows
}

pub(super) fn status_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    let filter = object_param(params, "filter").unwrap_or_default();
    let mut rows: Vec<_> = status_rows(st)
        .into_iter()
        .filter(|r| matches(r, &filter, st.offset))
        .collect();
    if let Some(order) = object_param(params, "order") {
        sort_items(&mut rows, Some(order), ("SORT", false), st.offset);
    }
    let total = rows.len();
    Ok(Reply::list(
        Value::Array(rows.into_iter().map(Value::Object).collect()),
        Some(total),
        None,
    ))
}

pub(super) fn status_entity_types(st: &PortalState) -> Value {
    let mut out = vec![
        json!({"ID": "STATUS", "NAME": "Lead statuses", "SEMANTIC_INFO": {}, "ENTITY_TYPE_ID": 1}),
        json!({"ID": "SOURCE", "NAME": "Sources"}),
        json!({"ID": "DEAL_TYPE", "NAME": "Deal types"}),
    ];
    for p in st.pipelines.values() {
        let first = p.stages.first().map(|s| s.status_id.clone());
        let success = p.stages.iter().find(|s| s.semantics == 'S');
        let failure = p.stages.iter().find(|s| s.semantics == 'F');
        let info = json!({
            "START_FIELD": first,
            "FINAL_SUCCESS_FIELD": success.map(|s| s.status_id.clone()),
            "FINAL_UNSUCCESS_FIELD": failure.map(|s| s.status_id.clone()),
            "FINAL_SORT": success.map_or(0, |s| s.sort),
        });
        if p.id == 0 {
            out.push(json!({
                "ID": "DEAL_STAGE", "NAME": format!("Deal stages ({})", p.name),
                "SEMANTIC_INFO": info, "ENTITY_TYPE_ID": 2, "CATEGORY_ID": "0",
            }));
        } else {
            out.push(json!({
                "ID": p.entity_id(), "NAME": format!("Deal stages ({})", p.name),
                "PARENT_ID": "DEAL_STAGE", "SEMANTIC_INFO": info,
                "PREFIX": format!("C{}", p.id), "FIELD_ATTRIBUTE_SCOPE": format!("category_{}", p.id),
                "ENTITY_TYPE_ID": 2, "CATEGORY_ID": p.id.to_string(),
            }));
        }
    }
    Value::Array(out)
}

pub(super) fn category_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    if entity_type_param(params)? != 2 {
        return Err(ApiError::new(400, "NOT_FOUND", "Smart process not found"));
    }
    let pipelines = sorted_pipelines(st);
    let categories: Vec<Value> = pipelines
        .iter()
        .map(|p| {
            json!({
                "id": p.id, "name": p.name, "sort": p.sort, "entityTypeId": 2,
                "isDefault": if p.id == 0 { "Y" } else { "N" },
                "originId": "", "originatorId": "",
            })
        })
        .collect();
    let total = categories.len();
    Ok(Reply::list(
        json!({"categories": categories}),
        Some(total),
        None,
    ))
}
