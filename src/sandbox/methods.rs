//! The REST methods the simulated portal answers, `batch` included, as pure functions of the
//! portal state and the call's parameters (already parsed into JSON, PHP-style).
//!
//! Each method follows the official documentation rather than our client: parameter names
//! are case-insensitive except where Bitrix24 says otherwise, list methods page by 50 with
//! `total`/`next`, the legacy `crm.deal.*` methods answer 400 with an empty error code, and
//! undocumented filter keys are ignored (so a client that relies on them finds out here).

use std::cmp::Ordering;

use chrono::{FixedOffset, TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::php::parse_query;
use super::store::{ApiError, PortalState, STANDARD_FIELDS};
use super::values::{
    compare, format_instant, like, object_param, param, parse_instant, positive_id, scalar_string,
    start_param, string_list,
};

/// Bitrix24's fixed page size for list methods.
pub const PAGE: usize = 50;
/// Bitrix24's limit of sub-calls per `batch`.
pub const BATCH_LIMIT: usize = 50;

/// The methods this portal knows; any other answers 404 `ERROR_METHOD_NOT_FOUND`.
pub const METHODS: &[&str] = &[
    "batch",
    "crm.deal.get",
    "crm.deal.list",
    "crm.deal.update",
    "crm.deal.add",
    "crm.deal.fields",
    "crm.deal.userfield.list",
    "crm.stagehistory.list",
    "crm.status.list",
    "crm.status.entity.types",
    "crm.category.list",
    "tasks.task.add",
    "tasks.task.list",
    "crm.timeline.comment.add",
    "crm.timeline.comment.list",
    "im.notify.system.add",
    "user.get",
    "department.get",
];

/// A successful answer: `result` plus, for list methods, `total` and `next`.
#[derive(Debug, Default)]
pub struct Reply {
    pub result: Value,
    pub total: Option<usize>,
    pub next: Option<usize>,
    /// For `batch`: the sub-calls' method names, in order.
    pub sub_methods: Vec<String>,
}

impl Reply {
    fn of(result: Value) -> Self {
        Self {
            result,
            ..Self::default()
        }
    }
}

/// What a call needs to know besides the portal: when it started (for `time` objects) and
/// which method is over its operating budget (429 `OPERATION_TIME_LIMIT`).
pub struct CallCtx {
    pub offset: FixedOffset,
    pub started: f64,
    pub method_429: Option<(String, u64)>,
    /// The hostile answers asked for (duplicated items, endless paging, malformed deals).
    pub faults: super::Faults,
}

impl CallCtx {
    /// `operating_reset_at` for a method: the configured reset of a blocked method, else ten
    /// minutes ahead (when the oldest one-minute basket would drop out).
    pub fn reset_at(&self, method: &str) -> u64 {
        match &self.method_429 {
            Some((m, at)) if m.eq_ignore_ascii_case(method) => *at,
            _ => self.started as u64 + 600,
        }
    }

    /// Whether this list call pages forever ([`super::Faults::endless_paging`]): a history
    /// call on the deal named, or any history or deal list for `All`.
    fn endless(&self, method: &str, params: &Value) -> bool {
        match self.faults.endless_paging {
            None => false,
            Some(super::EndlessPaging::All) => true,
            Some(super::EndlessPaging::Deal(deal)) => {
                method == "crm.stagehistory.list"
                    && object_param(params, "filter")
                        .and_then(|f| f.get("OWNER_ID").and_then(scalar_string))
                        .is_some_and(|owner| owner == deal.to_string())
            }
        }
    }

    pub fn is_blocked(&self, method: &str) -> bool {
        matches!(&self.method_429, Some((m, _)) if m.eq_ignore_ascii_case(method))
    }

    /// The `time` object of an answer.
    pub fn time(&self, method: &str) -> Value {
        let finish = unix_now();
        let at = |secs: f64| {
            Utc.timestamp_opt(secs as i64, 0)
                .single()
                .map(|t| format_instant(t, self.offset))
        };
        json!({
            "start": self.started,
            "finish": finish,
            "duration": finish - self.started,
            "processing": finish - self.started,
            "date_start": at(self.started),
            "date_finish": at(finish),
            "operating_reset_at": self.reset_at(method),
            "operating": 0,
        })
    }

    pub fn operation_time_limit() -> ApiError {
        ApiError::new(
            429,
            "OPERATION_TIME_LIMIT",
            "Method is blocked due to operation time limit.",
        )
    }
}

/// Seconds since the epoch with a fraction, as `time.start` has it.
pub fn unix_now() -> f64 {
    let now = Utc::now();
    now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6
}

/// Runs one method. `method` is lower-case without `.json`.
pub fn call(
    st: &mut PortalState,
    method: &str,
    params: &Value,
    ctx: &CallCtx,
) -> Result<Reply, ApiError> {
    match method {
        "batch" => batch(st, params, ctx),
        "crm.deal.get" => deal_get(st, params, ctx),
        "crm.deal.list" => deal_list(st, params, ctx),
        "crm.deal.update" => deal_update(st, params),
        "crm.deal.add" => deal_add(st, params),
        "crm.deal.fields" => Ok(Reply::of(deal_fields(st))),
        "crm.deal.userfield.list" => userfield_list(st, params),
        "crm.stagehistory.list" => stagehistory_list(st, params, ctx),
        "crm.status.list" => status_list(st, params),
        "crm.status.entity.types" => Ok(Reply::of(status_entity_types(st))),
        "crm.category.list" => category_list(st, params),
        "tasks.task.add" => task_add(st, params),
        "tasks.task.list" => task_list(st, params),
        "crm.timeline.comment.add" => comment_add(st, params),
        "crm.timeline.comment.list" => comment_list(st, params),
        "im.notify.system.add" => notify_add(st, params),
        "user.get" => user_get(st, params),
        "department.get" => department_get(st, params),
        _ => Err(method_not_found()),
    }
}

pub fn method_not_found() -> ApiError {
    ApiError::new(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
}

// ----- lists: filter, order, select, paging -----

/// Splits a filter key into its operator prefix and field name (`">=ID"` → `(">=", "ID")`).
fn split_op(key: &str) -> (&str, String) {
    for op in [
        ">=", "<=", "!@", "!=", "=%", "%=", ">", "<", "@", "=", "!", "%",
    ] {
        if let Some(field) = key.strip_prefix(op) {
            return (op, field.to_ascii_uppercase());
        }
    }
    ("", key.to_ascii_uppercase())
}

/// The stored value(s) of a field: several for a multiple field, `""` for null.
fn field_values(item: &Map<String, Value>, field: &str) -> Vec<String> {
    match item.get(field) {
        Some(Value::Array(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(Value::Null) | None => vec![String::new()],
        Some(v) => vec![scalar_string(v).unwrap_or_default()],
    }
}

fn filter_values(value: &Value) -> Vec<String> {
    match value {
        Value::Array(_) | Value::Object(_) => string_list(value),
        Value::Null => vec![String::new()],
        Value::Bool(b) => vec![if *b { "Y" } else { "N" }.to_string()],
        other => vec![scalar_string(other).unwrap_or_default()],
    }
}

/// Does `item` pass every condition of `filter`? Keys whose field the item lacks are
/// ignored, like Bitrix24 ignores filter keys it does not know.
fn matches(item: &Map<String, Value>, filter: &Map<String, Value>, offset: FixedOffset) -> bool {
    filter.iter().all(|(key, wanted)| {
        let (op, field) = split_op(key);
        if !item.contains_key(&field) {
            return true;
        }
        let have = field_values(item, &field);
        let wanted = filter_values(wanted);
        let eq = |h: &String, w: &String| {
            (h.is_empty() && w.is_empty())
                || (!h.is_empty() && compare(h, w, offset) == Ordering::Equal)
        };
        let any = |f: &dyn Fn(&String, &String) -> bool| {
            have.iter().any(|h| wanted.iter().any(|w| f(h, w)))
        };
        match op {
            "" | "=" | "@" => any(&eq),
            "!" | "!=" | "!@" => !any(&eq),
            ">" => any(&|h, w| !h.is_empty() && compare(h, w, offset) == Ordering::Greater),
            ">=" => any(&|h, w| !h.is_empty() && compare(h, w, offset) != Ordering::Less),
            "<" => any(&|h, w| !h.is_empty() && compare(h, w, offset) == Ordering::Less),
            "<=" => any(&|h, w| !h.is_empty() && compare(h, w, offset) != Ordering::Greater),
            "%" => any(&|h, w| like(h, &format!("%{w}%"))),
            _ => any(&|h, w| like(h, w)),
        }
    })
}

/// Sorts by an `order` object (`{"ID":"DESC"}`), falling back to `default`.
fn sort_items(
    items: &mut [Map<String, Value>],
    order: Option<Map<String, Value>>,
    default: (&str, bool),
    offset: FixedOffset,
) {
    let mut keys: Vec<(String, bool)> = order
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| {
            let desc = scalar_string(v).is_some_and(|d| d.eq_ignore_ascii_case("desc"));
            (k.to_ascii_uppercase(), desc)
        })
        .collect();
    if keys.is_empty() {
        keys.push((default.0.to_string(), default.1));
    }
    items.sort_by(|a, b| {
        for (field, desc) in &keys {
            let x = field_values(a, field).join(",");
            let y = field_values(b, field).join(",");
            let ord = compare(&x, &y, offset);
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

/// Cuts one page of 50 out of `items` at `start`; `total` unless `start=-1`.
fn page<T>(items: Vec<T>, params: &Value) -> (Vec<T>, Option<usize>, Option<usize>) {
    let (start, count) = start_param(params);
    let total = items.len();
    let next = (start + PAGE < total).then_some(start + PAGE);
    let page = items.into_iter().skip(start).take(PAGE).collect();
    (page, count.then_some(total), next)
}

/// A page of an endless list: the first page whatever `start` says, and a `next` past it.
fn endless_page<T>(items: Vec<T>, params: &Value) -> (Vec<T>, Option<usize>, Option<usize>) {
    let (start, count) = start_param(params);
    let total = items.len();
    let page = items.into_iter().take(PAGE).collect();
    (page, count.then_some(total), Some(start + PAGE))
}

/// The filter without its `>ID` bound: what a portal that pages forever ignores.
fn without_id_bound(mut filter: Map<String, Value>) -> Map<String, Value> {
    filter.retain(|k, _| !matches!(split_op(k), (">", f) if f == "ID"));
    filter
}

fn select_list(params: &Value) -> Vec<String> {
    param(params, "select")
        .map(string_list)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
}

// ----- deals -----

fn deal_id_param(params: &Value) -> Result<u64, ApiError> {
    param(params, "id")
        .and_then(positive_id)
        .ok_or_else(|| ApiError::deal("ID is not defined or invalid."))
}

fn fields_param(params: &Value) -> Result<Map<String, Value>, ApiError> {
    object_param(params, "fields")
        .ok_or_else(|| ApiError::deal("Parameter 'fields' must be array."))
}

fn deal_get(st: &PortalState, params: &Value, ctx: &CallCtx) -> Result<Reply, ApiError> {
    let id = deal_id_param(params)?;
    let mut deal = st
        .deal_view(id)
        .ok_or_else(|| ApiError::deal("Not found"))?;
    match ctx.faults.corrupt_deal {
        Some((deal_id, super::DealCorruption::NullStage)) if deal_id == id => {
            deal.insert("STAGE_ID".into(), Value::Null);
        }
        Some((deal_id, super::DealCorruption::IdNotANumber)) if deal_id == id => {
            deal.insert("ID".into(), json!("abc"));
        }
        _ => {}
    }
    Ok(Reply::of(Value::Object(deal)))
}

fn deal_list(st: &PortalState, params: &Value, ctx: &CallCtx) -> Result<Reply, ApiError> {
    let endless = ctx.endless("crm.deal.list", params);
    let mut filter = object_param(params, "filter").unwrap_or_default();
    if endless {
        filter = without_id_bound(filter);
    }
    let mut deals: Vec<Map<String, Value>> = st
        .deals
        .keys()
        .filter_map(|id| st.deal_view(*id))
        .filter(|d| matches(d, &filter, st.offset))
        .collect();
    sort_items(
        &mut deals,
        object_param(params, "order"),
        ("ID", false),
        st.offset,
    );
    // `*` is every standard field, `UF_*` every single-valued custom field; no select is both.
    let mut select = select_list(params);
    if select.is_empty() {
        select = vec!["*".into(), "UF_*".into()];
    }
    let wants = |code: &str| -> bool {
        code == "ID"
            || select.iter().any(|s| s.eq_ignore_ascii_case(code))
            || (select.iter().any(|s| s == "*") && STANDARD_FIELDS.iter().any(|f| f.code == code))
            || (select.iter().any(|s| s.eq_ignore_ascii_case("UF_*"))
                && st.fields.iter().any(|f| f.code == code && !f.multiple))
    };
    let (page, total, next) = if endless {
        endless_page(deals, params)
    } else {
        page(deals, params)
    };
    let result = page
        .into_iter()
        .map(|d| Value::Object(d.into_iter().filter(|(k, _)| wants(k)).collect()))
        .collect();
    Ok(Reply {
        result: Value::Array(result),
        total,
        next,
        ..Reply::default()
    })
}

fn deal_update(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    let id = deal_id_param(params)?;
    let fields = fields_param(params)?;
    let actor = st.webhook_user;
    st.update_deal(id, &fields, actor)?;
    Ok(Reply::of(json!(true)))
}

fn deal_add(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    let fields = fields_param(params)?;
    let actor = st.webhook_user;
    let id = st.create_deal(&fields, actor)?;
    Ok(Reply::of(json!(id)))
}

fn deal_fields(st: &PortalState) -> Value {
    let mut out = Map::new();
    for f in STANDARD_FIELDS {
        let mut d = json!({
            "type": f.kind,
            "isRequired": false,
            "isReadOnly": !f.writable && f.code != "CATEGORY_ID",
            "isImmutable": f.code == "CATEGORY_ID",
            "isMultiple": false,
            "isDynamic": false,
            "title": f.title,
        });
        if let (Some(status_type), Value::Object(m)) = (f.status_type, &mut d) {
            m.insert("statusType".into(), json!(status_type));
        }
        out.insert(f.code.to_string(), d);
    }
    for f in &st.fields {
        let mut d = json!({
            "type": f.kind,
            "isRequired": false,
            "isReadOnly": false,
            "isImmutable": false,
            "isMultiple": f.multiple,
            "isDynamic": true,
            // The legacy method puts the code in `title`; the label is in the *Label keys.
            "title": f.code,
            "listLabel": f.label,
            "formLabel": f.label,
            "filterLabel": f.label,
            "settings": {},
        });
        if f.kind == "enumeration"
            && let Value::Object(m) = &mut d
        {
            let items: Vec<Value> = f
                .options
                .iter()
                .map(|(id, v)| json!({"ID": id.to_string(), "VALUE": v}))
                .collect();
            m.insert("items".into(), Value::Array(items));
        }
        out.insert(f.code.clone(), d);
    }
    Value::Object(out)
}

fn userfield_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    let mut filter = object_param(params, "filter").unwrap_or_default();
    let lang = filter
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("LANG"))
        .map(|(k, v)| (k.clone(), scalar_string(v)));
    if let Some((key, _)) = &lang {
        filter.remove(key);
    }
    let mut items: Vec<Map<String, Value>> = st
        .fields
        .iter()
        .map(|f| {
            let mut m = json!({
                "ID": f.id.to_string(),
                "ENTITY_ID": "CRM_DEAL",
                "FIELD_NAME": f.code,
                "USER_TYPE_ID": f.kind,
                "XML_ID": null,
                "SORT": "100",
                "MULTIPLE": if f.multiple { "Y" } else { "N" },
                "MANDATORY": "N",
                "SHOW_FILTER": "E",
                "SHOW_IN_LIST": "Y",
                "EDIT_IN_LIST": "Y",
                "IS_SEARCHABLE": "N",
                "SETTINGS": {},
            });
            if let Value::Object(map) = &mut m {
                if lang.is_some() {
                    for key in ["EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL"] {
                        map.insert(key.into(), json!(f.label));
                    }
                    map.insert("ERROR_MESSAGE".into(), Value::Null);
                    map.insert("HELP_MESSAGE".into(), Value::Null);
                }
                if f.kind == "enumeration" {
                    let list: Vec<Value> = f
                        .options
                        .iter()
                        .enumerate()
                        .map(|(i, (id, v))| {
                            json!({"ID": id.to_string(), "SORT": ((i + 1) * 10).to_string(), "VALUE": v, "DEF": "N", "XML_ID": format!("{}_{id}", f.code)})
                        })
                        .collect();
                    map.insert("LIST".into(), Value::Array(list));
                }
            }
            m.as_object().cloned().unwrap_or_default()
        })
        .filter(|m| matches(m, &filter, st.offset))
        .collect();
    sort_items(
        &mut items,
        object_param(params, "order"),
        ("SORT", false),
        st.offset,
    );
    let total = items.len();
    Ok(Reply {
        result: Value::Array(items.into_iter().map(Value::Object).collect()),
        total: Some(total),
        ..Reply::default()
    })
}

fn entity_type_param(params: &Value) -> Result<u64, ApiError> {
    param(params, "entityTypeId")
        .and_then(positive_id)
        .ok_or_else(|| ApiError::new(400, "NOT_FOUND", "entityTypeId is not defined or invalid"))
}

fn stagehistory_list(st: &PortalState, params: &Value, ctx: &CallCtx) -> Result<Reply, ApiError> {
    if entity_type_param(params)? != 2 {
        return Ok(Reply {
            result: json!({"items": []}),
            total: Some(0),
            ..Reply::default()
        });
    }
    let endless = ctx.endless("crm.stagehistory.list", params);
    let mut filter = object_param(params, "filter").unwrap_or_default();
    if endless {
        filter = without_id_bound(filter);
    }
    let mut items: Vec<Map<String, Value>> = st
        .history
        .iter()
        .filter_map(|e| e.as_object().cloned())
        .filter(|e| matches(e, &filter, st.offset))
        .collect();
    sort_items(
        &mut items,
        object_param(params, "order"),
        ("ID", false),
        st.offset,
    );
    if ctx.faults.history_twice {
        items = items.into_iter().flat_map(|e| [e.clone(), e]).collect();
    }
    let select = select_list(params);
    let (page, total, next) = if endless {
        endless_page(items, params)
    } else {
        page(items, params)
    };
    let items: Vec<Value> = page
        .into_iter()
        .map(|e| {
            if select.is_empty() || select.iter().any(|s| s == "*") {
                Value::Object(e)
            } else {
                Value::Object(
                    e.into_iter()
                        .filter(|(k, _)| select.iter().any(|s| s.eq_ignore_ascii_case(k)))
                        .collect(),
                )
            }
        })
        .collect();
    Ok(Reply {
        result: json!({"items": items}),
        total,
        next,
        ..Reply::default()
    })
}

fn status_rows(st: &PortalState) -> Vec<Map<String, Value>> {
    let mut pipelines: Vec<_> = st.pipelines.values().collect();
    pipelines.sort_by_key(|p| (p.sort, p.id));
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

fn status_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    let filter = object_param(params, "filter").unwrap_or_default();
    let mut rows: Vec<_> = status_rows(st)
        .into_iter()
        .filter(|r| matches(r, &filter, st.offset))
        .collect();
    if let Some(order) = object_param(params, "order") {
        sort_items(&mut rows, Some(order), ("SORT", false), st.offset);
    }
    let total = rows.len();
    Ok(Reply {
        result: Value::Array(rows.into_iter().map(Value::Object).collect()),
        total: Some(total),
        ..Reply::default()
    })
}

fn status_entity_types(st: &PortalState) -> Value {
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

fn category_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
    if entity_type_param(params)? != 2 {
        return Err(ApiError::new(400, "NOT_FOUND", "Smart process not found"));
    }
    let mut pipelines: Vec<_> = st.pipelines.values().collect();
    pipelines.sort_by_key(|p| (p.sort, p.id));
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
    Ok(Reply {
        result: json!({"categories": categories}),
        total: Some(total),
        ..Reply::default()
    })
}

// ----- tasks -----

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

fn task_add(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
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
    let now = format_instant(Utc::now(), st.offset);
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

fn task_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
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
    let (page, total, next) = page(tasks, params);
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
    Ok(Reply {
        result: json!({"tasks": items}),
        total,
        next,
        ..Reply::default()
    })
}

// ----- comments, notifications, people -----

fn comment_add(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
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
fn comment_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
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
    let (page, total, next) = page(items, params);
    Ok(Reply {
        result: Value::Array(page),
        total,
        next,
        ..Reply::default()
    })
}

fn notify_add(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    let user = param(params, "USER_ID")
        .and_then(positive_id)
        .ok_or_else(|| ApiError::new(400, "USER_ID_EMPTY", "Recipient ID not specified"))?;
    let message = param(params, "MESSAGE")
        .and_then(scalar_string)
        .unwrap_or_default();
    if message.trim().is_empty() {
        return Err(ApiError::new(400, "MESSAGE_EMPTY", "Message text is empty"));
    }
    Ok(Reply::of(json!(st.add_notification(user, &message))))
}

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

fn user_get(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
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
    let (page, total, next) = page(users, params);
    Ok(Reply {
        result: Value::Array(page),
        total,
        next,
        ..Reply::default()
    })
}

fn department_get(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
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
    let (page, total, next) = page(rows, params);
    Ok(Reply {
        result: Value::Array(page.into_iter().map(Value::Object).collect()),
        total,
        next,
        ..Reply::default()
    })
}

// ----- batch -----

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(v) => matches!(scalar_string(v).as_deref(), Some("1" | "true" | "Y" | "y")),
        None => false,
    }
}

/// Replaces `$result[key][field]...` with the value an earlier sub-call returned.
fn substitute(cmd: &str, results: &Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = cmd;
    while let Some(at) = rest.find("$result[") {
        out.push_str(&rest[..at]);
        let mut tail = &rest[at + "$result".len()..];
        let mut path = Vec::new();
        while let Some(stripped) = tail.strip_prefix('[') {
            let Some(close) = stripped.find(']') else {
                break;
            };
            path.push(&stripped[..close]);
            tail = &stripped[close + 1..];
        }
        let mut node = path.first().and_then(|k| results.get(*k));
        for key in path.iter().skip(1) {
            node = node.and_then(|n| match n {
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                Value::Object(map) => map.get(*key),
                _ => None,
            });
        }
        out.push_str(&node.and_then(scalar_string).unwrap_or_default());
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Bitrix24 (PHP) prints an empty map as `[]`.
fn php_map(map: Map<String, Value>) -> Value {
    if map.is_empty() {
        json!([])
    } else {
        Value::Object(map)
    }
}

fn batch(st: &mut PortalState, params: &Value, ctx: &CallCtx) -> Result<Reply, ApiError> {
    let halt = truthy(param(params, "halt"));
    let commands: Vec<(String, String)> = match param(params, "cmd") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), scalar_string(v).unwrap_or_default()))
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), scalar_string(v).unwrap_or_default()))
            .collect(),
        _ => Vec::new(),
    };
    if commands.len() > BATCH_LIMIT {
        return Err(ApiError::new(
            400,
            "ERROR_BATCH_LENGTH_EXCEEDED",
            "Max batch length exceeded",
        ));
    }
    let mut result = Map::new();
    let mut errors = Map::new();
    let mut totals = Map::new();
    let mut nexts = Map::new();
    let mut times = Map::new();
    let mut sub_methods = Vec::new();
    for (key, command) in commands {
        let command = substitute(&command, &result);
        let (method, query) = command.split_once('?').unwrap_or((&command, ""));
        let method = method.trim().to_ascii_lowercase();
        let method = method.strip_suffix(".json").unwrap_or(&method).to_string();
        sub_methods.push(method.clone());
        let outcome = if method == "batch" {
            Err(ApiError::new(
                405,
                "ERROR_BATCH_METHOD_NOT_ALLOWED",
                "Method is not allowed for batch usage",
            ))
        } else if !METHODS.contains(&method.as_str()) {
            Err(method_not_found())
        } else if ctx.is_blocked(&method) {
            Err(CallCtx::operation_time_limit())
        } else {
            call(st, &method, &parse_query(query), ctx)
        };
        times.insert(key.clone(), ctx.time(&method));
        match outcome {
            Ok(reply) => {
                if let Some(t) = reply.total {
                    totals.insert(key.clone(), json!(t));
                }
                if let Some(n) = reply.next {
                    nexts.insert(key.clone(), json!(n));
                }
                result.insert(key, reply.result);
            }
            Err(e) => {
                errors.insert(key, e.body());
                if halt {
                    break;
                }
            }
        }
    }
    Ok(Reply {
        result: json!({
            "result": php_map(result),
            "result_error": php_map(errors),
            "result_total": php_map(totals),
            "result_next": php_map(nexts),
            "result_time": php_map(times),
        }),
        sub_methods,
        ..Reply::default()
    })
}
