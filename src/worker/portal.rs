//! What the worker reads from the portal besides deals: stage-history entries (parsed at the
//! edge into [`StageEntry`]), the field catalog, and people (a supervisor up the company
//! structure). Catalogs and people are cached with a bounded lifetime, so that a stage entry
//! with warm caches costs one read batch and one write batch however many rules fire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::DateTime;
use serde_json::{Value, json};

use crate::bitrix::{CallError, Client, ErrorKind, Retry, calls};
use crate::rules::{FieldCatalog, StageEntry, StageSemantic};

/// How long catalogs and people are trusted before they are read again.
pub const CACHE_TTL: Duration = Duration::from_secs(600);

/// The fields asked of `crm.stagehistory.list`.
pub const HISTORY_SELECT: [&str; 7] = [
    "ID",
    "TYPE_ID",
    "OWNER_ID",
    "CREATED_TIME",
    "CATEGORY_ID",
    "STAGE_SEMANTIC_ID",
    "STAGE_ID",
];

/// Parses one `crm.stagehistory.list` item. Numbers may come as numbers or strings.
pub fn parse_entry(item: &Value) -> Result<(u64, StageEntry), String> {
    let owner = number(item, "OWNER_ID")?;
    let id = number(item, "ID")?;
    let stage_id = item
        .get("STAGE_ID")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("history entry {id}: no STAGE_ID"))?
        .to_string();
    let semantic = match item.get("STAGE_SEMANTIC_ID").and_then(Value::as_str) {
        Some("S") => StageSemantic::Success,
        Some("F") => StageSemantic::Failure,
        _ => StageSemantic::Process,
    };
    let created = item
        .get("CREATED_TIME")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let created_time = DateTime::parse_from_rfc3339(created)
        .or_else(|_| DateTime::parse_from_str(created, "%Y-%m-%dT%H:%M:%S%z"))
        .map_err(|_| format!("history entry {id}: CREATED_TIME {created:?} is not a date-time"))?;
    Ok((
        owner,
        StageEntry {
            id,
            type_id: u8::try_from(number(item, "TYPE_ID").unwrap_or(0)).unwrap_or(0),
            stage_id,
            category_id: number(item, "CATEGORY_ID").unwrap_or(0),
            semantic,
            created_time,
        },
    ))
}

/// Reads an integer that Bitrix24 may send as a number or a string.
pub fn number(item: &Value, key: &str) -> Result<u64, String> {
    match item.get(key) {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| format!("{key} {n} is not a positive integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("{key} {s:?} is not an integer")),
        _ => Err(format!("no {key}")),
    }
}

/// The items of a list answer: `{"items": [...]}` (stage history), `{"tasks": [...]}`, or a bare
/// array (`crm.deal.list`).
pub fn list_items<'a>(result: &'a Value, key: &str) -> Option<&'a Vec<Value>> {
    match result {
        Value::Array(items) => Some(items),
        Value::Object(map) => map.get(key).and_then(Value::as_array),
        _ => None,
    }
}

/// The field catalog, read with `crm.deal.fields` (and the stage names with `crm.status.list`,
/// in the same `batch`) and kept for [`CACHE_TTL`].
#[derive(Default)]
pub struct CatalogCache {
    inner: Mutex<Option<(Instant, Arc<FieldCatalog>)>>,
}

impl CatalogCache {
    /// The cached catalog if it is fresh.
    pub fn fresh(&self) -> Option<Arc<FieldCatalog>> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, c)| c.clone())
    }

    /// The cached catalog, however old (better than none when the portal fails).
    pub fn any(&self) -> Option<Arc<FieldCatalog>> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|(_, c)| c.clone())
    }

    /// Keeps the catalog of a `crm.deal.fields` result and a `crm.status.list` one (`None`
    /// when that read failed: stages are then named by their ids until the next refresh).
    pub fn store(&self, fields: &Value, stages: Option<&Value>) -> Arc<FieldCatalog> {
        let catalog = FieldCatalog::from_deal_fields(fields);
        let catalog = Arc::new(match stages {
            Some(stages) => catalog.with_stages(stages),
            None => catalog,
        });
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), catalog.clone()));
        catalog
    }
}

/// Why a person could not be found.
#[derive(Debug, Clone, PartialEq)]
pub enum PersonError {
    /// For good: "no supervisor", an unknown user. Not retried.
    NotFound(String),
    /// The portal failed: try the job again later.
    Transient(String),
}

/// A supervisor found (or why none is), and when.
type Cached = (Instant, Result<u64, String>);

/// Supervisors found by walking the company structure, cached, and the departments read on the
/// way (a department's head and parent), cached too: people of one department share the walk.
#[derive(Default)]
pub struct People {
    supervisors: Mutex<HashMap<u64, Cached>>,
    departments: Mutex<HashMap<u64, (Instant, Department)>>,
}

/// What the walk needs of a department.
#[derive(Debug, Clone, Copy, Default)]
struct Department {
    head: Option<u64>,
    parent: Option<u64>,
}

impl People {
    /// The cached answer for `user`'s supervisor, if fresh.
    pub fn cached_supervisor(&self, user: u64) -> Option<Result<u64, String>> {
        let guard = self.supervisors.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .get(&user)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, r)| r.clone())
    }

    fn cached_department(&self, id: u64) -> Option<Department> {
        let guard = self.departments.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .get(&id)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, d)| *d)
    }

    /// The supervisor of each user: the head of the user's (first) department; when the user
    /// heads it or it has no head, the head of the parent department, and so on up. The users
    /// are read in one `batch`, then each level of departments in one more (none for what the
    /// caches hold).
    pub async fn supervisors(
        &self,
        client: &Client,
        users: &[u64],
    ) -> HashMap<u64, Result<u64, PersonError>> {
        let mut found = HashMap::new();
        let mut todo: Vec<u64> = Vec::new();
        for &user in users {
            match self.cached_supervisor(user) {
                Some(cached) => {
                    found.insert(user, cached.map_err(PersonError::NotFound));
                }
                None if !todo.contains(&user) => todo.push(user),
                None => {}
            }
        }
        if todo.is_empty() {
            return found;
        }

        // Each user's first department.
        let users = todo.iter().map(|u| calls::user_get(*u)).collect();
        let mut walkers: Vec<(u64, Option<u64>)> = Vec::new();
        for (&user, answer) in todo.iter().zip(client.batch(users, Retry::Safe).await) {
            match answer {
                Err(error) => {
                    found.insert(user, Err(transient(error)));
                }
                Ok(answer) => match answer.result.as_array().and_then(|a| a.first()) {
                    None => {
                        found.insert(
                            user,
                            Err(PersonError::NotFound(format!(
                                "no supervisor: user {user} not found"
                            ))),
                        );
                    }
                    Some(u) => walkers.push((user, first_department(u))),
                },
            }
        }

        // Up the tree, a level at a time; the bound guards against a cycle in bad data.
        for _ in 0..32 {
            let mut needed: Vec<u64> = walkers
                .iter()
                .filter_map(|(_, d)| *d)
                .filter(|d| self.cached_department(*d).is_none())
                .collect();
            needed.sort_unstable();
            needed.dedup();
            let mut failed: HashMap<u64, PersonError> = HashMap::new();
            if !needed.is_empty() {
                let departments = needed.iter().map(|d| calls::department_get(*d)).collect();
                for (&id, answer) in needed
                    .iter()
                    .zip(client.batch(departments, Retry::Safe).await)
                {
                    match answer {
                        Ok(answer) => {
                            let d = answer.result.as_array().and_then(|a| a.first()).map(|d| {
                                Department {
                                    head: number(d, "UF_HEAD").ok().filter(|h| *h != 0),
                                    parent: number(d, "PARENT").ok().filter(|p| *p != 0),
                                }
                            });
                            self.departments
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id, (Instant::now(), d.unwrap_or_default()));
                        }
                        Err(error) => {
                            failed.insert(id, transient(error));
                        }
                    }
                }
            }
            let mut still = Vec::new();
            for (user, department) in walkers {
                let Some(id) = department else {
                    found.insert(
                        user,
                        Err(PersonError::NotFound(format!(
                            "no supervisor for user {user}"
                        ))),
                    );
                    continue;
                };
                if let Some(error) = failed.get(&id) {
                    found.insert(user, Err(error.clone()));
                    continue;
                }
                let d = self.cached_department(id).unwrap_or_default();
                match d.head {
                    Some(head) if head != user => {
                        found.insert(user, Ok(head));
                    }
                    _ => still.push((user, d.parent)),
                }
            }
            walkers = still;
            if walkers.is_empty() {
                break;
            }
        }
        for (user, _) in walkers {
            found.insert(
                user,
                Err(PersonError::NotFound(format!(
                    "no supervisor for user {user}"
                ))),
            );
        }
        for (&user, result) in &found {
            match result {
                Ok(head) => self.remember(user, Ok(*head)),
                Err(PersonError::NotFound(why)) => self.remember(user, Err(why.clone())),
                Err(PersonError::Transient(_)) => {}
            }
        }
        found
    }

    fn remember(&self, user: u64, value: Result<u64, String>) {
        self.supervisors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user, (Instant::now(), value));
    }
}

/// The first of a user's departments (`UF_DEPARTMENT`, an array of ids, or a single id).
fn first_department(user: &Value) -> Option<u64> {
    match user.get("UF_DEPARTMENT") {
        Some(Value::Array(ids)) => ids
            .first()
            .and_then(|v| number(&json!({ "x": v }), "x").ok()),
        Some(other) => number(&json!({ "x": other }), "x").ok(),
        None => None,
    }
}

fn transient(error: CallError) -> PersonError {
    match error.kind() {
        ErrorKind::NotFound => PersonError::NotFound(error.to_string()),
        _ if error.is_retryable() => PersonError::Transient(error.to_string()),
        _ => PersonError::NotFound(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_entries_parse_with_numbers_as_numbers_or_strings() {
        let (owner, e) = parse_entry(&json!({"ID": 35, "TYPE_ID": 1, "OWNER_ID": "21",
            "CREATED_TIME": "2024-04-25T14:59:11+00:00", "CATEGORY_ID": 0,
            "STAGE_SEMANTIC_ID": "P", "STAGE_ID": "NEW"}))
        .expect("valid");
        assert_eq!(
            (owner, e.id, e.stage_id.as_str(), e.semantic),
            (21, 35, "NEW", StageSemantic::Process)
        );
    }

    #[test]
    fn a_history_entry_without_a_stage_is_an_error() {
        assert!(
            parse_entry(
                &json!({"ID": 1, "OWNER_ID": 2, "CREATED_TIME": "2024-04-25T14:59:11+00:00"})
            )
            .is_err()
        );
        assert!(
            parse_entry(
                &json!({"ID": 1, "OWNER_ID": 2, "STAGE_ID": "NEW", "CREATED_TIME": "yesterday"})
            )
            .is_err()
        );
    }

    // Fuzzing: history items and list answers of any shape parse or are refused.
    use proptest::prelude::*;

    /// Cases per property: `PROPTEST_CASES` for a longer run, else what CI affords.
    fn fuzz_cases(ci: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ci)
    }

    fn field() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,12}".prop_map(Value::String),
            "[ +-]?[0-9]{0,25}".prop_map(Value::String),
            "[+-]?[0-9]{1,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([+-][0-9]{2}:?[0-9]{2}|Z)?"
                .prop_map(Value::String),
            proptest::collection::vec(any::<u8>().prop_map(Value::from), 0..3).prop_map(Value::Array),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases(3000)))]

        #[test]
        fn history_items_of_any_shape_never_panic(
            fields in proptest::collection::vec(
                (proptest::sample::select(HISTORY_SELECT.to_vec()), field()),
                0..9,
            ),
            list_key in prop_oneof![Just("items"), Just("tasks"), Just("x")],
        ) {
            let item = Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            let _ = parse_entry(&item);
            let _ = list_items(&item, list_key);
            let _ = list_items(&json!([item]), list_key);
        }
    }
}
