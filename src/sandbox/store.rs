//! The simulated portal's data: pipelines and stages, custom fields, users and departments,
//! deals with their stage history, tasks ([`tasks`]), CRM activities ([`activities`]), comments
//! and notifications.
//!
//! Everything here is synchronous and lives behind one mutex in [`super::SimPortal`]: a REST
//! call or a UI action runs start to finish under the lock, like one database transaction, so
//! a test never sees half a write. Deal writes made here (by REST or by a "user in the UI")
//! push the outgoing event they cause onto [`PortalState::fired`]; the caller decides whether
//! it is delivered.
//!
//! Over 500 lines because it is one state under one lock: deals, stage history, tasks, comments,
//! users and their invariants must be read together; cutting it would spread one transaction over
//! files.

pub mod activities;
pub mod tasks;

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Offset, Utc};
use serde_json::{Map, Value, json};

use crate::clock::Clock;

use super::values::{
    format_date, format_instant, format_money, parse_date, parse_instant, scalar_string,
    string_list,
};

/// A REST error as Bitrix24 answers it: an HTTP status and the `error`/`error_description`
/// pair of the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub description: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, description: &str) -> Self {
        Self {
            status,
            code: code.to_string(),
            description: description.to_string(),
        }
    }

    /// The legacy `crm.deal.*` methods answer 400 with an empty error code.
    pub fn deal(description: &str) -> Self {
        Self::new(400, "", description)
    }

    pub fn body(&self) -> Value {
        json!({"error": self.code, "error_description": self.description})
    }
}

/// One stage of a pipeline (a `crm.status.list` row).
#[derive(Debug, Clone)]
pub struct Stage {
    pub row_id: u64,
    pub status_id: String,
    pub name: String,
    /// `'P'` in progress, `'S'` success, `'F'` failure.
    pub semantics: char,
    pub sort: u32,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub id: u64,
    pub name: String,
    pub sort: u32,
    pub stages: Vec<Stage>,
}

impl Pipeline {
    pub fn stage(&self, status_id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.status_id == status_id)
    }

    /// `DEAL_STAGE` for the default pipeline, `DEAL_STAGE_<n>` for the others.
    pub fn entity_id(&self) -> String {
        if self.id == 0 {
            "DEAL_STAGE".to_string()
        } else {
            format!("DEAL_STAGE_{}", self.id)
        }
    }
}

/// A custom deal field (`UF_CRM_*`).
#[derive(Debug, Clone)]
pub struct UserField {
    pub id: u64,
    pub code: String,
    pub kind: String,
    pub label: String,
    pub multiple: bool,
    /// `isReadOnly` in `crm.deal.fields`: writes of it are ignored, as Bitrix24 does.
    pub read_only: bool,
    pub options: Vec<(u64, String)>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub last_name: String,
    pub departments: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct Department {
    pub id: u64,
    pub name: String,
    pub parent: Option<u64>,
    pub head: Option<u64>,
    pub sort: u32,
}

/// A standard deal field: its code, `crm.deal.fields` type, and whether the API may write it.
pub struct FieldDef {
    pub code: &'static str,
    pub kind: &'static str,
    pub title: &'static str,
    pub writable: bool,
    pub status_type: Option<&'static str>,
}

const fn def(
    code: &'static str,
    kind: &'static str,
    title: &'static str,
    writable: bool,
) -> FieldDef {
    FieldDef {
        code,
        kind,
        title,
        writable,
        status_type: None,
    }
}

/// The standard fields in the order `crm.deal.get` prints them.
pub const STANDARD_FIELDS: &[FieldDef] = &[
    def("ID", "integer", "ID", false),
    def("TITLE", "string", "Name", true),
    FieldDef {
        code: "TYPE_ID",
        kind: "crm_status",
        title: "Type",
        writable: true,
        status_type: Some("DEAL_TYPE"),
    },
    FieldDef {
        code: "STAGE_ID",
        kind: "crm_status",
        title: "Stage",
        writable: true,
        status_type: Some("DEAL_STAGE"),
    },
    def("PROBABILITY", "integer", "Probability", true),
    def("CURRENCY_ID", "crm_currency", "Currency", true),
    def("OPPORTUNITY", "double", "Amount", true),
    def(
        "IS_MANUAL_OPPORTUNITY",
        "char",
        "Is manual opportunity",
        true,
    ),
    def("TAX_VALUE", "double", "Tax rate", true),
    def("LEAD_ID", "crm_lead", "Lead", false),
    def("COMPANY_ID", "crm_company", "Company", true),
    def("CONTACT_ID", "crm_contact", "Contact", true),
    def("QUOTE_ID", "crm_quote", "Quote", false),
    def("BEGINDATE", "date", "Start date", true),
    def("CLOSEDATE", "date", "End date", true),
    def("ASSIGNED_BY_ID", "user", "Responsible person", true),
    def("CREATED_BY_ID", "user", "Created by", false),
    def("MODIFY_BY_ID", "user", "Modified by", false),
    def("DATE_CREATE", "datetime", "Created on", false),
    def("DATE_MODIFY", "datetime", "Modified on", false),
    def("OPENED", "char", "Available to everyone", true),
    def("CLOSED", "char", "Closed", true),
    def("COMMENTS", "string", "Comment", true),
    def("ADDITIONAL_INFO", "string", "Additional information", true),
    def("LOCATION_ID", "location", "Location", true),
    def("CATEGORY_ID", "crm_category", "Pipeline", false),
    def("STAGE_SEMANTIC_ID", "string", "Stage group", false),
    def("IS_NEW", "char", "New deal", false),
    def("IS_RECURRING", "char", "Recurring deal", true),
    def("IS_RETURN_CUSTOMER", "char", "Repeat deal", true),
    def("IS_REPEATED_APPROACH", "char", "Repeat inquiry", true),
    FieldDef {
        code: "SOURCE_ID",
        kind: "crm_status",
        title: "Source",
        writable: true,
        status_type: Some("SOURCE"),
    },
    def("SOURCE_DESCRIPTION", "string", "Source information", true),
    def("ORIGINATOR_ID", "string", "External source", true),
    def("ORIGIN_ID", "string", "Item ID in data source", true),
    def("MOVED_BY_ID", "user", "Stage changed by", false),
    def("MOVED_TIME", "datetime", "Stage changed on", false),
    def("LAST_ACTIVITY_TIME", "datetime", "Last activity", false),
    def("UTM_SOURCE", "string", "Ad system", true),
    def("UTM_MEDIUM", "string", "Traffic type", true),
    def("UTM_CAMPAIGN", "string", "Ad campaign UTM", true),
    def("UTM_CONTENT", "string", "Campaign contents", true),
    def("UTM_TERM", "string", "Campaign search term", true),
    def("LAST_ACTIVITY_BY", "user", "Last activity by", false),
];

/// The whole portal.
pub struct PortalState {
    pub offset: FixedOffset,
    pub webhook_user: u64,
    /// The portal's time (see [`super::SimConfig::clock`]).
    pub clock: Clock,
    pub pipelines: BTreeMap<u64, Pipeline>,
    next_status_row: u64,
    pub fields: Vec<UserField>,
    pub users: BTreeMap<u64, User>,
    pub departments: BTreeMap<u64, Department>,
    pub deals: BTreeMap<u64, Map<String, Value>>,
    next_deal_id: u64,
    pub history: Vec<Value>,
    next_history_id: u64,
    /// Tasks as stored, upper-case keys (see [`super::SimPortal::tasks`]).
    pub tasks: Vec<Map<String, Value>>,
    next_task_id: u64,
    /// CRM activities as `crm.activity.list` prints them (see [`activities`]).
    pub activities: Vec<Map<String, Value>>,
    next_activity_id: u64,
    pub comments: Vec<Value>,
    next_comment_id: u64,
    pub notifications: Vec<Value>,
    next_notification_id: u64,
    /// Events caused by the writes since the caller last drained it: `(EVENT, deal id)`.
    pub fired: Vec<(String, u64)>,
    /// UI writes may name only the fields this portal has (see [`PortalState::check_ui_fields`]):
    /// set when the portal was described by a file, so a rehearsal shows a typo at once.
    pub known_fields_only: bool,
}

impl PortalState {
    pub fn new(offset: FixedOffset, webhook_user: u64, clock: Clock) -> Self {
        Self {
            offset,
            webhook_user,
            clock,
            pipelines: BTreeMap::new(),
            next_status_row: 101,
            fields: Vec::new(),
            users: BTreeMap::new(),
            departments: BTreeMap::new(),
            deals: BTreeMap::new(),
            next_deal_id: 1,
            history: Vec::new(),
            next_history_id: 1,
            tasks: Vec::new(),
            next_task_id: 1,
            activities: Vec::new(),
            next_activity_id: 1,
            comments: Vec::new(),
            next_comment_id: 1,
            notifications: Vec::new(),
            next_notification_id: 1,
            fired: Vec::new(),
            known_fields_only: false,
        }
    }

    // ----- seed -----

    /// Adds a pipeline sorted after the others, its stages sorted 10, 20, ... in order.
    pub fn add_pipeline(&mut self, id: u64, name: &str, stages: &[(&str, &str, char)]) {
        let sort = (self.pipelines.len() as u32 + 1) * 100;
        let stages: Vec<(String, String, char, u32)> = stages
            .iter()
            .enumerate()
            .map(|(i, (status_id, name, semantics))| {
                (
                    (*status_id).to_string(),
                    (*name).to_string(),
                    *semantics,
                    (i as u32 + 1) * 10,
                )
            })
            .collect();
        self.add_pipeline_sorted(id, name, sort, &stages);
    }

    /// Adds a pipeline with its own `sort`; stages are `(STATUS_ID, name, 'P'|'S'|'F', SORT)`,
    /// kept in `SORT` order (the first one is where a deal starts by default).
    pub fn add_pipeline_sorted(
        &mut self,
        id: u64,
        name: &str,
        sort: u32,
        stages: &[(String, String, char, u32)],
    ) {
        let mut stages: Vec<Stage> = stages
            .iter()
            .map(|(status_id, name, semantics, sort)| {
                let row_id = self.next_status_row;
                self.next_status_row += 2;
                Stage {
                    row_id,
                    status_id: status_id.clone(),
                    name: name.clone(),
                    semantics: match semantics {
                        'S' | 's' => 'S',
                        'F' | 'f' => 'F',
                        _ => 'P',
                    },
                    sort: *sort,
                }
            })
            .collect();
        stages.sort_by_key(|s| s.sort);
        self.pipelines.insert(
            id,
            Pipeline {
                id,
                name: name.to_string(),
                sort,
                stages,
            },
        );
    }

    pub fn add_field(
        &mut self,
        code: &str,
        kind: &str,
        label: &str,
        multiple: bool,
        read_only: bool,
        options: &[(u64, &str)],
    ) {
        let id = self.fields.len() as u64 + 1;
        let field = UserField {
            id,
            code: code.to_string(),
            kind: kind.to_string(),
            label: label.to_string(),
            multiple,
            read_only,
            options: options
                .iter()
                .map(|(i, v)| (*i, (*v).to_string()))
                .collect(),
        };
        self.fields.retain(|f| f.code != code);
        self.fields.push(field);
    }

    pub fn add_user(&mut self, id: u64, name: &str, departments: &[u64]) {
        let (first, last) = match name.split_once(' ') {
            Some((f, l)) => (f.to_string(), l.to_string()),
            None => (name.to_string(), String::new()),
        };
        self.users.insert(
            id,
            User {
                id,
                name: first,
                last_name: last,
                departments: departments.to_vec(),
            },
        );
    }

    /// Adds a department; without a `sort` it is sorted after the others.
    pub fn add_department(
        &mut self,
        id: u64,
        name: &str,
        parent: Option<u64>,
        head: Option<u64>,
        sort: Option<u32>,
    ) {
        let sort = sort.unwrap_or((self.departments.len() as u32 + 1) * 100);
        self.departments.insert(
            id,
            Department {
                id,
                name: name.to_string(),
                parent,
                head,
                sort,
            },
        );
    }

    // ----- deals -----

    /// Now by the portal's clock.
    pub fn now_utc(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Now by the portal's clock, printed as deal and task datetimes are (the server's offset).
    pub fn now(&self) -> String {
        format_instant(self.now_utc(), self.offset)
    }

    pub fn pipeline_of_stage(&self, status_id: &str) -> Option<&Pipeline> {
        self.pipelines
            .values()
            .find(|p| p.stage(status_id).is_some())
    }

    /// A deal as `crm.deal.get` prints it: standard fields in order, then every custom field.
    pub fn deal_view(&self, id: u64) -> Option<Map<String, Value>> {
        let stored = self.deals.get(&id)?;
        let mut out = Map::new();
        for f in STANDARD_FIELDS {
            out.insert(
                f.code.to_string(),
                stored.get(f.code).cloned().unwrap_or(Value::Null),
            );
        }
        for f in &self.fields {
            let empty = if f.multiple { json!([]) } else { Value::Null };
            out.insert(
                f.code.clone(),
                stored.get(&f.code).cloned().unwrap_or(empty),
            );
        }
        Some(out)
    }

    /// These fields of a deal as [`PortalState::deal_view`] prints them, codes the portal does
    /// not have left out: what a list's filter reads, without copying the rest.
    pub fn deal_fields(&self, id: u64, codes: &[String]) -> Option<Map<String, Value>> {
        let stored = self.deals.get(&id)?;
        let mut out = Map::new();
        for code in codes {
            let empty = if STANDARD_FIELDS.iter().any(|f| f.code == code) {
                Some(Value::Null)
            } else {
                self.fields
                    .iter()
                    .find(|f| &f.code == code)
                    .map(|f| if f.multiple { json!([]) } else { Value::Null })
            };
            if let Some(empty) = empty {
                out.insert(code.clone(), stored.get(code).cloned().unwrap_or(empty));
            }
        }
        Some(out)
    }

    /// Converts an incoming value to how the portal stores and prints a field of that type.
    fn normalize(&self, kind: &str, multiple: bool, value: &Value) -> Value {
        if multiple {
            let items = match value {
                Value::Array(_) | Value::Object(_) => string_list(value),
                Value::Null => Vec::new(),
                other => scalar_string(other).into_iter().collect(),
            };
            return Value::Array(
                items
                    .iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| self.normalize(kind, false, &Value::String(s.clone())))
                    .collect(),
            );
        }
        let value = match value {
            Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        if kind == "boolean" {
            let on = matches!(&value, Value::Bool(true))
                || matches!(
                    scalar_string(&value).as_deref(),
                    Some("1" | "Y" | "y" | "true")
                );
            return Value::String(if on { "1" } else { "0" }.to_string());
        }
        let Some(text) = scalar_string(&value) else {
            return Value::Null;
        };
        if text.is_empty() {
            return Value::String(String::new());
        }
        let converted = match kind {
            "date" => parse_date(&text, self.offset).map(|d| format_date(d, self.offset)),
            "datetime" => {
                parse_instant(&text, self.offset).map(|at| format_instant(at, self.offset))
            }
            "double" => format_money(&text),
            _ => None,
        };
        Value::String(converted.unwrap_or(text))
    }

    /// Refuses, when [`PortalState::known_fields_only`] is set, a UI create or update naming a
    /// field the portal does not have or that is read-only, by its name and with the closest
    /// field it has. Bitrix24's REST drops such a field silently (`crm.deal.update` writes only
    /// what it knows), so the REST methods never call this: only people acting in the sandbox.
    ///
    /// Known are the writable standard fields (as `crm.deal.fields` lists them, with `STAGE_ID`,
    /// and `CATEGORY_ID` when creating: the pipeline is chosen then, never by an update) and
    /// the portal's custom fields that are not read-only.
    pub fn check_ui_fields(
        &self,
        fields: &Map<String, Value>,
        creating: bool,
    ) -> Result<(), ApiError> {
        if !self.known_fields_only {
            return Ok(());
        }
        let mut known: Vec<&str> = STANDARD_FIELDS
            .iter()
            .filter(|f| f.writable || (creating && f.code == "CATEGORY_ID"))
            .map(|f| f.code)
            .collect();
        known.extend(
            self.fields
                .iter()
                .filter(|f| !f.read_only)
                .map(|f| f.code.as_str()),
        );
        for key in fields.keys() {
            let code = key.to_ascii_uppercase();
            if known.contains(&code.as_str()) {
                continue;
            }
            let read_only = STANDARD_FIELDS.iter().any(|f| f.code == code)
                || self.fields.iter().any(|f| f.code == code);
            let message = if read_only {
                format!(
                    "deal field {code} is read-only on the portal: a deal cannot be given it here"
                )
            } else {
                let hint = match crate::diagnostics::suggest(&code, &known) {
                    Some(close) => format!(" (did you mean {close}?)"),
                    None => " (the portal file lists its custom fields under [fields])".to_string(),
                };
                format!("the portal has no deal field {code}{hint}")
            };
            return Err(ApiError::deal(&message));
        }
        Ok(())
    }

    /// Writes the writable fields of `fields` into `deal`; unknown and read-only keys are
    /// ignored, as `crm.deal.update` does.
    fn apply_fields(&self, deal: &mut Map<String, Value>, fields: &Map<String, Value>) {
        for (key, value) in fields {
            let key = key.to_ascii_uppercase();
            if key == "STAGE_ID" || key == "CATEGORY_ID" {
                continue;
            }
            if let Some(f) = STANDARD_FIELDS.iter().find(|f| f.code == key && f.writable) {
                deal.insert(key, self.normalize(f.kind, false, value));
            } else if let Some(f) = self.fields.iter().find(|f| f.code == key && !f.read_only) {
                deal.insert(key, self.normalize(&f.kind, f.multiple, value));
            }
        }
    }

    fn push_history(&mut self, deal_id: u64, type_id: u8, category_id: u64, stage: &Stage) {
        let entry = json!({
            "ID": self.next_history_id,
            "TYPE_ID": type_id,
            "OWNER_ID": deal_id,
            "CREATED_TIME": format_instant(self.now_utc(), Utc.fix()),
            "CATEGORY_ID": category_id,
            "STAGE_SEMANTIC_ID": stage.semantics.to_string(),
            "STAGE_ID": stage.status_id,
        });
        self.next_history_id += 1;
        self.history.push(entry);
    }

    fn set_stage(&self, deal: &mut Map<String, Value>, category: u64, stage: &Stage, actor: u64) {
        let now = self.now();
        deal.insert("STAGE_ID".into(), json!(stage.status_id));
        deal.insert("CATEGORY_ID".into(), json!(category.to_string()));
        deal.insert(
            "STAGE_SEMANTIC_ID".into(),
            json!(stage.semantics.to_string()),
        );
        deal.insert(
            "CLOSED".into(),
            json!(if stage.semantics == 'P' { "N" } else { "Y" }),
        );
        deal.insert("MOVED_BY_ID".into(), json!(actor.to_string()));
        deal.insert("MOVED_TIME".into(), json!(now));
    }

    /// Creates a deal (crm.deal.add, or a user in the UI). Fires `ONCRMDEALADD`.
    pub fn create_deal(
        &mut self,
        fields: &Map<String, Value>,
        actor: u64,
    ) -> Result<u64, ApiError> {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let stage_wanted = get("STAGE_ID")
            .and_then(scalar_string)
            .filter(|s| !s.is_empty());
        let category = match get("CATEGORY_ID")
            .and_then(scalar_string)
            .filter(|s| !s.is_empty())
        {
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| ApiError::deal("Category ID must be greater than or equal to 0"))?,
            None => stage_wanted
                .as_deref()
                .and_then(|s| self.pipeline_of_stage(s))
                .map_or(0, |p| p.id),
        };
        let pipeline = self
            .pipelines
            .get(&category)
            .ok_or_else(|| ApiError::deal(&format!("Category with ID {category} is not found")))?;
        let stage = match &stage_wanted {
            Some(s) => pipeline.stage(s).cloned().ok_or_else(|| {
                ApiError::deal(&format!("Stage {s} is not found in pipeline {category}"))
            })?,
            None => pipeline
                .stages
                .first()
                .cloned()
                .ok_or_else(|| ApiError::deal("The pipeline has no stages"))?,
        };
        let id = self.next_deal_id;
        self.next_deal_id += 1;
        let now = self.now();
        let today = self.now_utc().with_timezone(&self.offset).date_naive();
        let mut deal = Map::new();
        for f in STANDARD_FIELDS {
            deal.insert(f.code.to_string(), Value::Null);
        }
        let actor_s = actor.to_string();
        let defaults = [
            ("ID", json!(id.to_string())),
            ("TITLE", json!(format!("Deal #{id}"))),
            ("TYPE_ID", json!("SALE")),
            ("CURRENCY_ID", json!("RUB")),
            ("OPPORTUNITY", json!("0.00")),
            ("IS_MANUAL_OPPORTUNITY", json!("N")),
            ("TAX_VALUE", json!("0.00")),
            ("COMPANY_ID", json!("0")),
            ("BEGINDATE", json!(format_date(today, self.offset))),
            (
                "CLOSEDATE",
                json!(format_date(today + chrono::Duration::days(7), self.offset)),
            ),
            ("ASSIGNED_BY_ID", json!(actor_s)),
            ("CREATED_BY_ID", json!(actor_s)),
            ("MODIFY_BY_ID", json!(actor_s)),
            ("DATE_CREATE", json!(now)),
            ("DATE_MODIFY", json!(now)),
            ("OPENED", json!("Y")),
            ("IS_NEW", json!("Y")),
            ("IS_RECURRING", json!("N")),
            ("IS_RETURN_CUSTOMER", json!("N")),
            ("IS_REPEATED_APPROACH", json!("N")),
            ("LAST_ACTIVITY_TIME", json!(now)),
            ("LAST_ACTIVITY_BY", json!(actor_s)),
        ];
        for (k, v) in defaults {
            deal.insert(k.to_string(), v);
        }
        for f in &self.fields {
            deal.insert(
                f.code.clone(),
                if f.multiple { json!([]) } else { Value::Null },
            );
        }
        self.apply_fields(&mut deal, fields);
        self.set_stage(&mut deal, category, &stage, actor);
        self.deals.insert(id, deal);
        self.push_history(id, 1, category, &stage);
        self.fired.push(("ONCRMDEALADD".to_string(), id));
        Ok(id)
    }

    /// Updates a deal (crm.deal.update, or a user in the UI). A stage change inside the
    /// pipeline writes a history entry; `CATEGORY_ID` cannot change here. Fires
    /// `ONCRMDEALUPDATE` for every update, our own included: that is how Bitrix24 echoes.
    pub fn update_deal(
        &mut self,
        id: u64,
        fields: &Map<String, Value>,
        actor: u64,
    ) -> Result<(), ApiError> {
        let mut deal = self
            .deals
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::deal("Not found"))?;
        let category = deal
            .get("CATEGORY_ID")
            .and_then(scalar_string)
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        let current = deal
            .get("STAGE_ID")
            .and_then(scalar_string)
            .unwrap_or_default();
        let wanted = fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("STAGE_ID"))
            .and_then(|(_, v)| scalar_string(v))
            .filter(|s| !s.is_empty() && *s != current);
        let new_stage = match wanted {
            Some(s) => Some(
                self.pipelines
                    .get(&category)
                    .and_then(|p| p.stage(&s))
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::deal(&format!("Stage {s} is not found in pipeline {category}"))
                    })?,
            ),
            None => None,
        };
        self.apply_fields(&mut deal, fields);
        if let Some(stage) = &new_stage {
            self.set_stage(&mut deal, category, stage, actor);
        }
        deal.insert("MODIFY_BY_ID".into(), json!(actor.to_string()));
        deal.insert("DATE_MODIFY".into(), json!(self.now()));
        self.deals.insert(id, deal);
        if let Some(stage) = new_stage {
            let type_id = if stage.semantics == 'P' { 2 } else { 3 };
            self.push_history(id, type_id, category, &stage);
        }
        self.fired.push(("ONCRMDEALUPDATE".to_string(), id));
        Ok(())
    }

    /// Moves a deal to another pipeline: a `TYPE_ID` 5 entry, and no event an outgoing webhook
    /// could receive (Bitrix24 fires only `ONCRMDEALMOVETOCATEGORY`, for applications).
    pub fn move_to_pipeline(
        &mut self,
        id: u64,
        category: u64,
        stage_id: &str,
        actor: u64,
    ) -> Result<(), ApiError> {
        let stage = self
            .pipelines
            .get(&category)
            .and_then(|p| p.stage(stage_id))
            .cloned()
            .ok_or_else(|| {
                ApiError::deal(&format!(
                    "Stage {stage_id} is not found in pipeline {category}"
                ))
            })?;
        let mut deal = self
            .deals
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::deal("Not found"))?;
        self.set_stage(&mut deal, category, &stage, actor);
        deal.insert("MODIFY_BY_ID".into(), json!(actor.to_string()));
        deal.insert("DATE_MODIFY".into(), json!(self.now()));
        self.deals.insert(id, deal);
        self.push_history(id, 5, category, &stage);
        Ok(())
    }

    /// Deletes a deal; fires `ONCRMDEALDELETE`. Its stage history stays, as in Bitrix24.
    pub fn delete_deal(&mut self, id: u64) -> Result<(), ApiError> {
        self.deals
            .remove(&id)
            .ok_or_else(|| ApiError::deal("Not found"))?;
        self.fired.push(("ONCRMDEALDELETE".to_string(), id));
        Ok(())
    }

    // ----- comments, notifications (tasks: `store/tasks.rs`, activities: `store/activities.rs`) -----

    pub fn add_comment(
        &mut self,
        entity_id: u64,
        entity_type: &str,
        comment: &str,
        author: u64,
    ) -> u64 {
        let id = self.next_comment_id;
        self.next_comment_id += 1;
        self.comments.push(json!({
            "ID": id,
            "ENTITY_ID": entity_id,
            "ENTITY_TYPE": entity_type,
            "COMMENT": comment,
            "AUTHOR_ID": author,
            "CREATED": self.now(),
        }));
        id
    }

    /// A notification; one with the `tag` of an earlier one replaces it (`im.notify.system.add`:
    /// "When adding a notification with an existing tag, other notifications will be removed",
    /// bitrix24/b24restdocs `api-reference/chats/notifications/im-notify-system-add.md`).
    pub fn add_notification(&mut self, user_id: u64, message: &str, tag: Option<&str>) -> u64 {
        let id = self.next_notification_id;
        self.next_notification_id += 1;
        if let Some(tag) = tag.filter(|t| !t.is_empty()) {
            self.notifications
                .retain(|n| n.get("TAG").and_then(Value::as_str) != Some(tag));
        }
        let mut notification = json!({
            "ID": id,
            "USER_ID": user_id,
            "MESSAGE": message,
            "DATE": self.now(),
        });
        if let Some(tag) = tag.filter(|t| !t.is_empty()) {
            notification["TAG"] = json!(tag);
        }
        self.notifications.push(notification);
        id
    }
}
