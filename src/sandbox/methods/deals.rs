//! The `crm.deal.*` methods: get, list, add, update, and the field descriptions
//! (`crm.deal.fields`, `crm.deal.userfield.list`).

use serde_json::{Map, Value, json};

use super::lists::{
    Page, by_id_ascending, id_floor, list_filter, matches, select_list, sort_items, split_op,
};
use super::{CallCtx, Reply};
use crate::sandbox::DealCorruption;
use crate::sandbox::store::{ApiError, PortalState, STANDARD_FIELDS};
use crate::sandbox::values::{object_param, param, positive_id, scalar_string};

fn deal_id_param(params: &Value) -> Result<u64, ApiError> {
    param(params, "id")
        .and_then(positive_id)
        .ok_or_else(|| ApiError::deal("ID is not defined or invalid."))
}

fn fields_param(params: &Value) -> Result<Map<String, Value>, ApiError> {
    object_param(params, "fields")
        .ok_or_else(|| ApiError::deal("Parameter 'fields' must be array."))
}

pub(super) fn deal_get(st: &PortalState, params: &Value, ctx: &CallCtx) -> Result<Reply, ApiError> {
    let id = deal_id_param(params)?;
    let mut deal = st
        .deal_view(id)
        .ok_or_else(|| ApiError::deal("Not found"))?;
    corrupt(&mut deal, id, ctx);
    Ok(Reply::of(Value::Object(deal)))
}

/// The deal as [`crate::sandbox::Faults::corrupt_deal`] spoils it, in a get or a list answer.
fn corrupt(deal: &mut Map<String, Value>, id: u64, ctx: &CallCtx) {
    match ctx.faults.corrupt_deal {
        Some((deal_id, DealCorruption::NullStage)) if deal_id == id => {
            deal.insert("STAGE_ID".into(), Value::Null);
        }
        Some((deal_id, DealCorruption::IdNotANumber)) if deal_id == id => {
            deal.insert("ID".into(), json!("abc"));
        }
        _ => {}
    }
}

pub(super) fn deal_list(
    st: &PortalState,
    params: &Value,
    ctx: &CallCtx,
) -> Result<Reply, ApiError> {
    let endless = ctx.endless("crm.deal.list", params);
    // Deals are kept by id: a list starts at its `>ID` bound, its filter reads only the fields
    // it names, one in id order needs no sorting, and only the page is printed in full.
    let (floor, filter) = id_floor(&list_filter(params, endless));
    let named: Vec<String> = filter.keys().map(|k| split_op(k).1).collect();
    let mut ids: Vec<u64> = st
        .deals
        .range(floor..)
        .map(|(id, _)| *id)
        .filter(|id| {
            st.deal_fields(*id, &named)
                .is_some_and(|d| matches(&d, &filter, st.offset))
        })
        .collect();
    let order = object_param(params, "order");
    if !by_id_ascending(order.as_ref()) {
        let mut deals: Vec<Map<String, Value>> =
            ids.iter().filter_map(|id| st.deal_view(*id)).collect();
        sort_items(&mut deals, order, ("ID", false), st.offset);
        ids = deals
            .iter()
            .filter_map(|d| d.get("ID").and_then(positive_id))
            .collect();
    }
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
    Ok(Page::cut(ids, params, endless).reply(|page| {
        page.into_iter()
            .filter_map(|id| Some((id, st.deal_view(id)?)))
            .map(|(id, d)| {
                let mut d: Map<String, Value> = d.into_iter().filter(|(k, _)| wants(k)).collect();
                corrupt(&mut d, id, ctx);
                Value::Object(d)
            })
            .collect()
    }))
}

pub(super) fn deal_update(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    let id = deal_id_param(params)?;
    let fields = fields_param(params)?;
    let actor = st.webhook_user;
    st.update_deal(id, &fields, actor)?;
    Ok(Reply::of(json!(true)))
}

pub(super) fn deal_add(st: &mut PortalState, params: &Value) -> Result<Reply, ApiError> {
    let fields = fields_param(params)?;
    let actor = st.webhook_user;
    let id = st.create_deal(&fields, actor)?;
    Ok(Reply::of(json!(id)))
}

pub(super) fn deal_fields(st: &PortalState) -> Value {
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
            "isReadOnly": f.read_only,
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

pub(super) fn userfield_list(st: &PortalState, params: &Value) -> Result<Reply, ApiError> {
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
    Ok(Reply::list(
        Value::Array(items.into_iter().map(Value::Object).collect()),
        Some(total),
        None,
    ))
}
