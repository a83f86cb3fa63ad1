//! `crm.activity.list`: a deal's activities, read by the `[[no_task]]` rules to learn whether a
//! deal has a next step (`filter: {OWNER_TYPE_ID: 2, OWNER_ID: <id or list>, COMPLETED: "N"}`).
//! As documented (`api-reference/crm/timeline/activities/activity-base/crm-activity-list.md`):
//! the prefixes of the legacy CRM lists (`>=`, `<`, `@`, `!@`, `%`, `!`...), keys it does not
//! know ignored, default order `START_TIME` ascending, pages of 50, and a plain array as
//! `result` with `total`/`next` beside it. An `order` or `filter` that is not an object is the
//! legacy 400 with an empty code.

use serde_json::{Map, Value};

use super::Reply;
use super::lists::{Page, matches, select_list, sort_items};
use crate::sandbox::store::{ApiError, PortalState};
use crate::sandbox::values::{object_param, param};

/// An object parameter, absent as empty; anything else is "Parameter '<name>' must be array.".
fn object_or_refuse(params: &Value, name: &str) -> Result<Map<String, Value>, ApiError> {
    match (param(params, name), object_param(params, name)) {
        (None, _) => Ok(Map::new()),
        (Some(_), Some(map)) => Ok(map),
        (Some(_), None) => Err(ApiError::deal(&format!(
            "Parameter '{name}' must be array."
        ))),
    }
}

pub(super) fn activity_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    let filter = object_or_refuse(params, "filter")?;
    let order = object_or_refuse(params, "order")?;
    let mut items: Vec<Map<String, Value>> = st
        .activities
        .iter()
        .filter(|a| matches(a, &filter, st.offset))
        .cloned()
        .collect();
    sort_items(&mut items, Some(order), ("START_TIME", false), st.offset);
    // No select, or `*`, is every field (`COMMUNICATIONS` and `FILES` only when named, and the
    // simulated activities have neither); `ID` comes with any select.
    let select: Vec<String> = select_list(params)
        .iter()
        .map(|s| s.to_ascii_uppercase())
        .collect();
    let every = select.is_empty() || select.iter().any(|s| s == "*");
    Ok(Page::cut(items, params, false).reply(|page| {
        page.into_iter()
            .map(|a| {
                Value::Object(
                    a.into_iter()
                        .filter(|(k, _)| every || k == "ID" || select.contains(k))
                        .collect(),
                )
            })
            .collect()
    }))
}
