//! What the service writes for people to read: timeline comments on deals
//! (`crm.timeline.comment.*`) and system notifications (`im.notify.system.add`).

use serde_json::{Map, Value, json};

use super::Reply;
use super::lists::{Page, select_list, sort_items};
use crate::sandbox::store::{ApiError, PortalState};
use crate::sandbox::values::{object_param, param, positive_id, scalar_string};

pub(super) fn comment_add(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    // Since crm 23.100.0 only lower-case `fields` is accepted.
    let fields = params
        .get("fields")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::new(400, "100", "Required fields not provided"))?;
    let entity_id = fields
        .get("ENTITY_ID")
        .and_then(positive_id)
        .ok_or_else(|| ApiError::new(400, "100", "Required fields not provided: ENTITY_ID"))?;
    let entity_type = fields
        .get("ENTITY_TYPE")
        .and_then(scalar_string)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if entity_type.is_empty() {
        return Err(ApiError::new(
            400,
            "100",
            "Required fields not provided: ENTITY_TYPE",
        ));
    }
    let comment = fields
        .get("COMMENT")
        .and_then(scalar_string)
        .unwrap_or_default();
    if comment.trim().is_empty() {
        return Err(ApiError::new(400, "INVALID_ARG_VALUE", "Empty comment"));
    }
    if entity_type == "deal" && !st.deals.contains_key(&entity_id) {
        return Err(ApiError::new(400, "NOT_FOUND", "Not found."));
    }
    let author = fields
        .get("AUTHOR_ID")
        .and_then(positive_id)
        .unwrap_or(st.webhook_user);
    let id = st.add_comment(entity_id, &entity_type, &comment, author);
    Ok(Reply::of(json!(id)))
}

/// `crm.timeline.comment.list`: `ENTITY_ID` and `ENTITY_TYPE` are required filter keys; order by
/// `ID`/`CREATED`; pages of 50; an empty `select` returns every field.
pub(super) fn comment_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    let filter = object_param(params, "filter").unwrap_or_default();
    let entity_id = filter.get("ENTITY_ID").and_then(positive_id);
    let entity_type = filter
        .get("ENTITY_TYPE")
        .and_then(scalar_string)
        .map(|t| t.to_ascii_lowercase());
    let (Some(entity_id), Some(entity_type)) = (entity_id, entity_type) else {
        return Err(ApiError::new(
            400,
            "INVALID_ARG_VALUE",
            "ENTITY_ID and ENTITY_TYPE are required in filter",
        ));
    };
    let mut items: Vec<Map<String, Value>> = st
        .comments
        .iter()
        .filter(|c| {
            c.get("ENTITY_ID").and_then(Value::as_u64) == Some(entity_id)
                && c.get("ENTITY_TYPE").and_then(Value::as_str) == Some(entity_type.as_str())
        })
        .filter_map(|c| c.as_object().cloned())
        .collect();
    let order = object_param(params, "order");
    sort_items(&mut items, order, ("ID", false), st.offset);
    let select = select_list(params);
    let items: Vec<Value> = items
        .into_iter()
        .map(|c| {
            let mut out: Map<String, Value> = c
                .into_iter()
                .filter(|(k, _)| {
                    select.is_empty() || select.iter().any(|s| s.eq_ignore_ascii_case(k))
                })
                .map(|(k, v)| {
                    (
                        k,
                        if let Value::Number(n) = v {
                            json!(n.to_string())
                        } else {
                            v
                        },
                    )
                })
                .collect();
            out.entry("ID".to_string()).or_insert(Value::Null);
            Value::Object(out)
        })
        .collect();
    Ok(Page::cut(items, params, false).reply(Value::Array))
}

pub(super) fn notify_add(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    let user = param(params, "USER_ID")
        .and_then(positive_id)
        .ok_or_else(|| ApiError::new(400, "USER_ID_EMPTY", "Recipient ID not specified"))?;
    let message = param(params, "MESSAGE")
        .and_then(scalar_string)
        .unwrap_or_default();
    if message.trim().is_empty() {
        return Err(ApiError::new(400, "MESSAGE_EMPTY", "Message text is empty"));
    }
    let tag = param(params, "TAG").and_then(scalar_string);
    Ok(Reply::of(json!(st.add_notification(
        user,
        &message,
        tag.as_deref()
    ))))
}
