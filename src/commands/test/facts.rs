//! A rule-test file's portal facts: what only the portal knows, given in the file so results
//! are the same on every machine: `[fields.CODE]` (labels, list options), `[stages]` (stage
//! names) and `supervisors`, each problem at its `file:line:col`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::spanned::{Reader, entry, integer, type_name};
use crate::rules::FieldCatalog;

const FIELD_KEYS: &[&str] = &["label", "type", "options"];

/// `[fields.CODE] label = "...", type = "enumeration", options = { 11 = "Too expensive" }`,
/// turned into the `crm.deal.fields` answer the service would read.
pub(super) fn catalog(r: &mut Reader<'_>, doc: &DeTable<'_>) -> FieldCatalog {
    let Some((_, v)) = entry(doc, "fields") else {
        return FieldCatalog::empty();
    };
    let DeValue::Table(fields) = v.get_ref() else {
        r.error(
            v.span(),
            "\"fields\" must be a table of fields",
            "write [fields.UF_CRM_X] with label, type and options",
        );
        return FieldCatalog::empty();
    };
    let mut answer = Map::new();
    for (code, spec) in fields.iter() {
        let DeValue::Table(spec_table) = spec.get_ref() else {
            r.error(
                spec.span(),
                format!("fields.{} must be a table", code.get_ref()),
                "write { label = \"Loss reason\", type = \"enumeration\", options = { 11 = \"Too expensive\" } }",
            );
            continue;
        };
        r.keys(
            spec_table,
            FIELD_KEYS,
            &format!("in fields.{}", code.get_ref()),
        );
        let label = r.string(spec_table, "label");
        let mut items = Vec::new();
        if let Some((_, options)) = entry(spec_table, "options") {
            match options.get_ref() {
                DeValue::Table(options) => {
                    for (id, label) in options.iter() {
                        match label.get_ref() {
                            DeValue::String(s) => {
                                items.push(json!({"ID": id.get_ref().to_string(), "VALUE": s}))
                            }
                            other => r.error(
                                label.span(),
                                format!(
                                    "an option's label must be a string, found {}",
                                    type_name(other)
                                ),
                                "write options = { 11 = \"Too expensive\" }",
                            ),
                        }
                    }
                }
                other => r.error(
                    options.span(),
                    format!("\"options\" must be a table, found {}", type_name(other)),
                    "write options = { 11 = \"Too expensive\", 12 = \"No budget\" }",
                ),
            }
        }
        let field_type = r.string(spec_table, "type").unwrap_or_else(|| {
            if items.is_empty() {
                "string".into()
            } else {
                "enumeration".into()
            }
        });
        answer.insert(
            code.get_ref().to_string(),
            json!({"type": field_type, "title": code.get_ref().to_string(), "formLabel": label, "items": items}),
        );
    }
    FieldCatalog::from_deal_fields(&Value::Object(answer))
}

/// `[stages] PREPARATION = "Подготовка документов"`: stage names as the portal's
/// `crm.status.list` gives them; a stage without one is named by its id.
pub(super) fn stages(r: &mut Reader<'_>, doc: &DeTable<'_>, catalog: FieldCatalog) -> FieldCatalog {
    let Some((_, v)) = entry(doc, "stages") else {
        return catalog;
    };
    let DeValue::Table(stages) = v.get_ref() else {
        r.error(
            v.span(),
            format!(
                "\"stages\" must be a table, found {}",
                type_name(v.get_ref())
            ),
            "write stages = { PREPARATION = \"Подготовка документов\" }",
        );
        return catalog;
    };
    let mut rows = Vec::new();
    for (id, name) in stages.iter() {
        match name.get_ref() {
            DeValue::String(name) => rows.push(
                json!({"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": id.get_ref().to_string(), "NAME": name}),
            ),
            other => r.error(
                name.span(),
                format!("a stage's name must be a string, found {}", type_name(other)),
                "write stages = { PREPARATION = \"Подготовка документов\" }",
            ),
        }
    }
    catalog.with_stages(&Value::Array(rows))
}

/// `supervisors = { 3 = 2, 4 = 2 }`: user id → the supervisor the portal would name.
pub(super) fn supervisor_map(r: &mut Reader<'_>, v: &Spanned<DeValue<'_>>) -> BTreeMap<u64, u64> {
    let mut map = BTreeMap::new();
    let DeValue::Table(table) = v.get_ref() else {
        r.error(
            v.span(),
            "\"supervisors\" must be a table: user id = supervisor's user id",
            "write supervisors = { 3 = 2 }",
        );
        return map;
    };
    for (user, head) in table.iter() {
        let user_id = user.get_ref().parse::<u64>().ok();
        let head_id = integer(head.get_ref()).and_then(|h| u64::try_from(h).ok());
        match (user_id, head_id) {
            (Some(u), Some(h)) => {
                map.insert(u, h);
            }
            (None, _) => r.error(
                user.span(),
                format!("\"{}\" is not a user id", user.get_ref()),
                "write supervisors = { 3 = 2 }: user 3's supervisor is user 2",
            ),
            (_, None) => r.error(
                head.span(),
                "a supervisor is a user id: an integer",
                "write supervisors = { 3 = 2 }",
            ),
        }
    }
    map
}
