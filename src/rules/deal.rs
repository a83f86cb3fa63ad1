//! What evaluation reads about a deal: the deal as the portal returns it, the stage entry being
//! acted on, and the portal's field catalog (labels, types, list options).
//!
//! The catalog also holds the stages' portal names, for the texts the service writes (a deal
//! "moved back to «Счёт на предоплату»", not to `C1:PREPAYMENT_INVOICE`).
//!
//! These are the rule language's inputs. `condition`, `template`, `tunnel` and `evaluate` all
//! read them, so they live here, below all of them. `StageEntry` and `StageSemantic` are also
//! stored (in the store's entry records): their serialised form must not change.

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

/// A deal as `crm.deal.get` returns it: strings, nulls, arrays for multiple fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deal(Map<String, Value>);

impl Deal {
    pub fn new(map: Map<String, Value>) -> Deal {
        Deal(map)
    }

    pub fn id(&self) -> Option<u64> {
        self.number("ID")
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }

    pub fn stage_id(&self) -> Option<&str> {
        self.0.get("STAGE_ID").and_then(Value::as_str)
    }

    pub fn category_id(&self) -> Option<u64> {
        self.number("CATEGORY_ID")
    }

    pub fn assigned_by(&self) -> Option<u64> {
        self.number("ASSIGNED_BY_ID")
    }

    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Bitrix24 sends ids as strings; a JSON number is accepted too.
    fn number(&self, field: &str) -> Option<u64> {
        match self.0.get(field)? {
            Value::String(s) => s.trim().parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }
}

/// `STAGE_SEMANTIC_ID`: P, S or F.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StageSemantic {
    Process,
    Success,
    Failure,
}

impl StageSemantic {
    /// From Bitrix24's one-letter code; anything but S and F is in progress.
    pub fn from_code(code: &str) -> StageSemantic {
        match code {
            "S" => StageSemantic::Success,
            "F" => StageSemantic::Failure,
            _ => StageSemantic::Process,
        }
    }
}

/// An item of `crm.stagehistory.list`: the deal entered `stage_id` at `created_time`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageEntry {
    pub id: u64,
    pub type_id: u8,
    pub stage_id: String,
    pub category_id: u64,
    pub semantic: StageSemantic,
    pub created_time: DateTime<FixedOffset>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct FieldInfo {
    field_type: String,
    label: Option<String>,
    /// Option id → label, for enumeration fields.
    options: Vec<(String, String)>,
    /// `isReadOnly`: the portal computes the field itself; a write does not take.
    read_only: bool,
}

/// What the portal's `crm.deal.fields` says: types, labels, enumeration options; and what its
/// `crm.status.list` says of deal stages: their names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldCatalog {
    fields: Map<String, Value>,
    parsed: std::collections::BTreeMap<String, FieldInfo>,
    /// `STATUS_ID` → `NAME` of every deal stage (all pipelines).
    stages: std::collections::BTreeMap<String, String>,
    /// Every deal stage as (pipeline, `STATUS_ID`, kind), in the order of the answer (`SORT`).
    stage_order: Vec<(u64, String, StageSemantic)>,
}

impl FieldCatalog {
    /// No catalog (an offline dry run): labels fall back to codes and option ids.
    pub fn empty() -> Self {
        FieldCatalog::default()
    }

    /// From a `crm.deal.fields` result: `{CODE: {type, title, formLabel, listLabel, items}}`.
    pub fn from_deal_fields(fields: &Value) -> Self {
        let mut parsed = std::collections::BTreeMap::new();
        let empty = Map::new();
        let map = fields.as_object().unwrap_or(&empty);
        for (code, description) in map {
            let text = |key: &str| {
                description
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_string)
            };
            // For custom fields `title` is only the code; the label people see is formLabel.
            let label = text("formLabel")
                .or_else(|| text("listLabel"))
                .or_else(|| text("filterLabel"))
                .or_else(|| text("title"));
            let options = description
                .get("items")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| {
                            let id = match item.get("ID")? {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            Some((id, item.get("VALUE")?.as_str()?.to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            parsed.insert(
                code.clone(),
                FieldInfo {
                    field_type: text("type").unwrap_or_default(),
                    label,
                    options,
                    read_only: description.get("isReadOnly").and_then(Value::as_bool) == Some(true),
                },
            );
        }
        FieldCatalog {
            fields: map.clone(),
            parsed,
            stages: Default::default(),
            stage_order: Vec::new(),
        }
    }

    /// The catalog with the stage names of a `crm.status.list` result (every directory's items
    /// when unfiltered): the rows of `ENTITY_ID` `DEAL_STAGE` (the default pipeline) and
    /// `DEAL_STAGE_<n>` (pipeline n), `STATUS_ID` → `NAME`; other directories' rows are left
    /// out. (Bitrix24: `api-reference/crm/status/crm-status-list.md` and `status/index.md` in
    /// bitrix24/b24restdocs: "DEAL_STAGE for the main pipeline and DEAL_STAGE_xx for pipeline
    /// xx"; the method supports no navigation, so one answer holds every item.)
    pub fn with_stages(mut self, statuses: &Value) -> Self {
        let rows = match statuses {
            Value::Array(rows) => rows.as_slice(),
            _ => &[],
        };
        let mut ordered = Vec::new();
        for row in rows {
            let text = |key: &str| row.get(key).and_then(Value::as_str);
            let pipeline = text("ENTITY_ID").and_then(|entity| match entity {
                "DEAL_STAGE" => Some(0),
                _ => entity
                    .strip_prefix("DEAL_STAGE_")
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u64>().ok()),
            });
            let name = text("NAME").map(str::trim).filter(|n| !n.is_empty());
            if let (Some(pipeline), Some(id), Some(name)) = (pipeline, text("STATUS_ID"), name) {
                self.stages.insert(id.to_string(), name.to_string());
                let semantic = StageSemantic::from_code(text("SEMANTICS").unwrap_or_default());
                let sort = match row.get("SORT") {
                    Some(Value::Number(n)) => n.as_u64(),
                    Some(Value::String(s)) => s.trim().parse().ok(),
                    _ => None,
                };
                ordered.push((pipeline, sort.unwrap_or(u64::MAX), id.to_string(), semantic));
            }
        }
        // Each pipeline's stages by `SORT` (the answer's order where it has none).
        ordered.sort_by_key(|(pipeline, sort, _, _)| (*pipeline, *sort));
        self.stage_order = ordered
            .into_iter()
            .map(|(pipeline, _, id, semantic)| (pipeline, id, semantic))
            .collect();
        self
    }

    /// A stage's portal name, if the catalog has it.
    pub fn stage_name(&self, stage_id: &str) -> Option<&str> {
        self.stages.get(stage_id).map(String::as_str)
    }

    /// Every deal stage the catalog has, as (pipeline, `STATUS_ID`, kind), each pipeline's in
    /// the portal's order (`SORT`).
    pub fn stage_order(&self) -> &[(u64, String, StageSemantic)] {
        &self.stage_order
    }

    pub fn is_empty(&self) -> bool {
        self.parsed.is_empty()
    }

    pub fn label(&self, code: &str) -> Option<&str> {
        self.parsed.get(code)?.label.as_deref()
    }

    pub fn field_type(&self, code: &str) -> Option<&str> {
        Some(self.parsed.get(code)?.field_type.as_str()).filter(|t| !t.is_empty())
    }

    pub fn option_label(&self, code: &str, id: &str) -> Option<&str> {
        let info = self.parsed.get(code)?;
        info.options
            .iter()
            .find(|(option, _)| option == id)
            .map(|(_, label)| label.as_str())
    }

    /// Whether the field is a list (enumeration) whose values are option ids.
    pub fn is_list(&self, code: &str) -> bool {
        self.parsed
            .get(code)
            .is_some_and(|f| f.field_type == "enumeration" || !f.options.is_empty())
    }

    /// Whether the portal knows the field (for `check --portal`).
    pub fn contains(&self, code: &str) -> bool {
        self.fields.contains_key(code)
    }

    /// Every field code the portal lists.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.parsed.keys().map(String::as_str)
    }

    /// The labels of a list field's options (empty for other fields).
    pub fn option_labels(&self, code: &str) -> Vec<&str> {
        self.parsed.get(code).map_or_else(Vec::new, |info| {
            info.options
                .iter()
                .map(|(_, label)| label.as_str())
                .collect()
        })
    }

    /// Whether the portal marks the field `isReadOnly`.
    pub fn is_read_only(&self, code: &str) -> bool {
        self.parsed.get(code).is_some_and(|info| info.read_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_read_from_the_deal_stage_directories_only() {
        let statuses = serde_json::json!([
            {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "PREPAYMENT_INVOICE", "NAME": "Счёт на предоплату"},
            {"ENTITY_ID": "DEAL_STAGE_2", "STATUS_ID": "C2:NEW", "NAME": "Новая заявка"},
            {"ENTITY_ID": "SOURCE", "STATUS_ID": "CALL", "NAME": "Звонок"},
            {"ENTITY_ID": "DEAL_STAGE_X", "STATUS_ID": "X", "NAME": "x"},
            {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "WON", "NAME": " "},
        ]);
        let catalog = FieldCatalog::empty().with_stages(&statuses);
        assert_eq!(
            catalog.stage_name("PREPAYMENT_INVOICE"),
            Some("Счёт на предоплату")
        );
        assert_eq!(catalog.stage_name("C2:NEW"), Some("Новая заявка"));
        for not_a_stage in ["CALL", "X", "WON", "C9:NEW"] {
            assert_eq!(catalog.stage_name(not_a_stage), None, "{not_a_stage}");
        }
        assert_eq!(
            FieldCatalog::empty().with_stages(&serde_json::json!({"error": 1})),
            FieldCatalog::empty()
        );
    }

    #[test]
    fn the_stages_keep_each_pipelines_sort_order_and_their_kind() {
        // Out of order, as a portal that ignored `order` would answer; SORT as text or number.
        let statuses = serde_json::json!([
            {"ENTITY_ID": "DEAL_STAGE_1", "STATUS_ID": "C1:WON", "NAME": "Won", "SORT": "30", "SEMANTICS": "S"},
            {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "LOSE", "NAME": "Lost", "SORT": 40, "SEMANTICS": "F"},
            {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "NEW", "NAME": "New", "SORT": 10, "SEMANTICS": null},
            {"ENTITY_ID": "DEAL_STAGE_1", "STATUS_ID": "C1:NEW", "NAME": "New", "SORT": "10"},
            {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "EXECUTING", "NAME": "Doing", "SORT": 20},
            {"ENTITY_ID": "SOURCE", "STATUS_ID": "CALL", "NAME": "Call", "SORT": 1},
        ]);
        let catalog = FieldCatalog::empty().with_stages(&statuses);
        let order: Vec<(u64, &str, StageSemantic)> = catalog
            .stage_order()
            .iter()
            .map(|(p, id, s)| (*p, id.as_str(), *s))
            .collect();
        assert_eq!(
            order,
            [
                (0, "NEW", StageSemantic::Process),
                (0, "EXECUTING", StageSemantic::Process),
                (0, "LOSE", StageSemantic::Failure),
                (1, "C1:NEW", StageSemantic::Process),
                (1, "C1:WON", StageSemantic::Success),
            ]
        );
    }

    #[test]
    fn a_stage_entry_is_stored_in_the_form_earlier_releases_wrote() {
        let stored = r#"{"id":7,"type_id":2,"stage_id":"C1:WON","category_id":1,"semantic":"Success","created_time":"2026-03-02T10:00:00+03:00"}"#;
        let entry = StageEntry {
            id: 7,
            type_id: 2,
            stage_id: "C1:WON".into(),
            category_id: 1,
            semantic: StageSemantic::Success,
            created_time: DateTime::parse_from_rfc3339("2026-03-02T10:00:00+03:00")
                .expect("a time"),
        };
        assert_eq!(serde_json::to_string(&entry).expect("serialises"), stored);
        let read: StageEntry = serde_json::from_str(stored).expect("reads");
        assert_eq!(read, entry);
        for (semantic, code) in [
            (StageSemantic::Process, "\"Process\""),
            (StageSemantic::Failure, "\"Failure\""),
        ] {
            assert_eq!(serde_json::to_string(&semantic).expect("serialises"), code);
        }
    }
}
