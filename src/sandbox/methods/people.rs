//! The people methods: `user.get` and `department.get`, legacy methods that take their filter
//! as `FILTER` or as top-level keys.

use serde_json::{Map, Value, json};

use super::Reply;
use super::lists::{Page, matches, sort_items, split_op};
use crate::sandbox::store::{ApiError, PortalState};
use crate::sandbox::values::{object_param, scalar_string};

/// Filters given either as `FILTER` or as top-level keys (`user.get?ID=5`), as the legacy
/// people methods accept both.
fn people_filter(params: &Value, skip: &[&str]) -> Map<String, Value> {
    let mut filter = object_param(params, "filter").unwrap_or_default();
    if let Some(map) = params.as_object() {
        for (k, v) in map {
            if !skip.iter().any(|s| s.eq_ignore_ascii_case(k)) && !k.eq_ignore_ascii_case("filter")
            {
                filter.insert(k.clone(), v.clone());
            }
        }
    }
    filter
}

pub(super) fn user_get(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    let mut filter = people_filter(
        params,
        &["sort", "order", "start", "ADMIN_MODE", "select", "auth"],
    );
    for (k, v) in filter.iter_mut() {
        if split_op(k).1 == "ACTIVE" {
            let on = matches!(v, Value::Bool(true))
                || matches!(scalar_string(v).as_deref(), Some("Y" | "1" | "true"));
            *v = json!(if on { "Y" } else { "N" });
        }
    }
    let users: Vec<Value> = st
        .users
        .values()
        .filter(|u| {
            let view = json!({
                "ID": u.id.to_string(), "ACTIVE": "Y", "NAME": u.name, "LAST_NAME": u.last_name,
                "UF_DEPARTMENT": u.departments.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                "USER_TYPE": "employee",
            });
            view.as_object()
                .is_some_and(|m| matches(m, &filter, st.offset))
        })
        .map(|u| {
            json!({
                "ID": u.id.to_string(),
                "XML_ID": "",
                "ACTIVE": true,
                "NAME": u.name,
                "LAST_NAME": u.last_name,
                "SECOND_NAME": "",
                "EMAIL": format!("user{}@example.test", u.id),
                "TIME_ZONE": "",
                "IS_ONLINE": "N",
                "USER_TYPE": "employee",
                "WORK_POSITION": "",
                "UF_DEPARTMENT": u.departments,
            })
        })
        .collect();
    Ok(Page::cut(users, params, false).reply(Value::Array))
}

pub(super) fn department_get(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    let filter = people_filter(params, &["sort", "order", "start", "auth"]);
    let mut rows: Vec<Map<String, Value>> = st
        .departments
        .values()
        .map(|d| {
            let mut m = Map::new();
            m.insert("ID".into(), json!(d.id.to_string()));
            m.insert("NAME".into(), json!(d.name));
            m.insert("SORT".into(), json!(d.sort.to_string()));
            if let Some(p) = d.parent {
                m.insert("PARENT".into(), json!(p.to_string()));
            }
            if let Some(h) = d.head {
                m.insert("UF_HEAD".into(), json!(h.to_string()));
            }
            m
        })
        .filter(|m| {
            // A filter on PARENT or UF_HEAD must not match a department that has none.
            let mut view = m.clone();
            for key in ["PARENT", "UF_HEAD"] {
                view.entry(key).or_insert(Value::Null);
            }
            matches(&view, &filter, st.offset)
        })
        .collect();
    sort_items(&mut rows, None, ("SORT", false), st.offset);
    Ok(Page::cut(rows, params, false)
        .reply(|page| Value::Array(page.into_iter().map(Value::Object).collect())))
}
