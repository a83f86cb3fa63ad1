//! Tasks as Bitrix24 keeps them: created pending, then started, deferred, completed by the
//! people who work them (or by our service through `tasks.task.complete`/`tasks.task.defer`),
//! their deadlines moved. Stored with upper-case keys, as [`crate::sandbox::SimPortal::tasks`]
//! shows them; `methods/tasks.rs` prints them camelCase.
//!
//! Statuses are `REAL_STATUS` (`api-reference/tasks/tasks-task-list.md`, `fields.md`): 1 new,
//! 2 pending (what a new task gets), 3 in progress, 4 awaiting control, 5 completed, 6 deferred,
//! 7 declined. `STATUS` is stored equal to it; the overdue meta-status (-1) is computed at read
//! time from the deadline and the portal's clock.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{ApiError, PortalState};
use crate::sandbox::values::{parse_instant, scalar_string};

pub const NEW: u8 = 1;
pub const PENDING: u8 = 2;
pub const IN_PROGRESS: u8 = 3;
pub const AWAITING_CONTROL: u8 = 4;
pub const COMPLETED: u8 = 5;
pub const DEFERRED: u8 = 6;

/// What `tasks.task.complete` answers for a task it may not complete (already completed, or
/// not there): HTTP 400, code `0` (`api-reference/tasks/tasks-task-complete.md`).
fn complete_refused() -> ApiError {
    ApiError::new(400, "0", "Action on the task is not allowed")
}

/// What `tasks.task.defer` answers for a task it may not defer: code `1048582`
/// (`api-reference/tasks/tasks-task-defer.md`).
fn defer_refused() -> ApiError {
    ApiError::new(400, "1048582", "Action on the task is not allowed")
}

/// A task's `REAL_STATUS` as a number (0 when unreadable).
pub fn real_status(task: &Map<String, Value>) -> u8 {
    task.get("REAL_STATUS")
        .or_else(|| task.get("STATUS"))
        .and_then(scalar_string)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Open: new, pending or in progress (`spec/control.md` "`[[overdue]]`"); the others are done
/// with, waiting for someone else, or put aside.
pub fn is_open(status: u8) -> bool {
    matches!(status, NEW | PENDING | IN_PROGRESS)
}

impl PortalState {
    /// A new task record with Bitrix24's defaults: pending, no deadline, no bindings, stamped
    /// now by the portal's clock. The caller sets what it was given over these.
    pub fn task_record(
        &self,
        title: &str,
        responsible: u64,
        created_by: u64,
    ) -> Map<String, Value> {
        let now = self.now();
        let mut task = Map::new();
        let entries = [
            ("TITLE", json!(title)),
            ("DESCRIPTION", json!("")),
            ("RESPONSIBLE_ID", json!(responsible.to_string())),
            ("CREATED_BY", json!(created_by.to_string())),
            ("AUDITORS", json!([])),
            ("ACCOMPLICES", json!([])),
            ("DEADLINE", Value::Null),
            ("DEADLINE_AT", Value::Null),
            ("UF_CRM_TASK", json!([])),
            ("XML_ID", Value::Null),
            ("PRIORITY", json!("1")),
            ("GROUP_ID", json!("0")),
            ("STATUS", json!(PENDING.to_string())),
            ("REAL_STATUS", json!(PENDING.to_string())),
            ("CREATED_DATE", json!(now)),
            ("CHANGED_BY", json!(created_by.to_string())),
            ("CHANGED_DATE", json!(now)),
            ("STATUS_CHANGED_DATE", json!(now)),
            ("CLOSED_BY", json!("0")),
            ("CLOSED_DATE", Value::Null),
        ];
        for (k, v) in entries {
            task.insert(k.to_string(), v);
        }
        task
    }

    /// Stores a task under the next id; returns it as stored.
    pub fn add_task(&mut self, mut task: Map<String, Value>) -> Map<String, Value> {
        let id = self.next_task_id;
        self.next_task_id += 1;
        let mut stored = Map::new();
        stored.insert("ID".into(), json!(id.to_string()));
        stored.append(&mut task);
        self.tasks.push(stored.clone());
        stored
    }

    pub fn task(&self, id: u64) -> Option<&Map<String, Value>> {
        let id = id.to_string();
        self.tasks
            .iter()
            .find(|t| t.get("ID").and_then(Value::as_str) == Some(id.as_str()))
    }

    fn task_mut(&mut self, id: u64) -> Option<&mut Map<String, Value>> {
        let id = id.to_string();
        self.tasks
            .iter_mut()
            .find(|t| t.get("ID").and_then(Value::as_str) == Some(id.as_str()))
    }

    /// The instant a task is due, if it has a deadline.
    pub fn task_deadline(&self, task: &Map<String, Value>) -> Option<DateTime<Utc>> {
        task.get("DEADLINE_AT")
            .and_then(Value::as_str)
            .and_then(|s| parse_instant(s, self.offset))
    }

    /// Open with its deadline past, by the portal's clock: Bitrix24's meta-status -1.
    pub fn task_is_overdue(&self, task: &Map<String, Value>) -> bool {
        is_open(real_status(task))
            && self
                .task_deadline(task)
                .is_some_and(|due| due < self.now_utc())
    }

    /// Moves a task to `status` if it is in one of `from`; stamps the change by `actor`.
    fn change_status(
        &mut self,
        id: u64,
        from: &[u8],
        status: u8,
        actor: u64,
        refused: fn() -> ApiError,
    ) -> Result<Map<String, Value>, ApiError> {
        let now = self.now();
        let task = self.task_mut(id).ok_or_else(refused)?;
        if !from.contains(&real_status(task)) {
            return Err(refused());
        }
        let closing = status == COMPLETED;
        let changes = [
            ("STATUS", json!(status.to_string())),
            ("REAL_STATUS", json!(status.to_string())),
            ("CHANGED_BY", json!(actor.to_string())),
            ("CHANGED_DATE", json!(now)),
            ("STATUS_CHANGED_DATE", json!(now)),
            (
                "CLOSED_BY",
                json!(if closing {
                    actor.to_string()
                } else {
                    "0".into()
                }),
            ),
            (
                "CLOSED_DATE",
                if closing { json!(now) } else { Value::Null },
            ),
        ];
        for (k, v) in changes {
            task.insert(k.to_string(), v);
        }
        Ok(task.clone())
    }

    /// Completes a task (status 5, `CLOSED_DATE` now). A deferred task can be completed, as can
    /// one awaiting control; a completed one cannot (the task's `action.complete` is false
    /// then, `tasks-task-complete.md`).
    pub fn complete_task(&mut self, id: u64, actor: u64) -> Result<Map<String, Value>, ApiError> {
        let from = [NEW, PENDING, IN_PROGRESS, AWAITING_CONTROL, DEFERRED];
        self.change_status(id, &from, COMPLETED, actor, complete_refused)
    }

    /// Defers a task (status 6): only an open one (a deferred or completed task's
    /// `action.defer` is false, `tasks-task-defer.md`).
    pub fn defer_task(&mut self, id: u64, actor: u64) -> Result<Map<String, Value>, ApiError> {
        let from = [NEW, PENDING, IN_PROGRESS];
        self.change_status(id, &from, DEFERRED, actor, defer_refused)
    }

    /// Starts a pending task (status 3), as its responsible person does in the UI.
    pub fn start_task(&mut self, id: u64, actor: u64) -> Result<Map<String, Value>, ApiError> {
        let refused = || ApiError::new(400, "0", "Action on the task is not allowed");
        self.change_status(id, &[NEW, PENDING], IN_PROGRESS, actor, refused)
    }

    /// Moves (or, with `None`, removes) a task's deadline: `DEADLINE` as written (RFC 3339 in
    /// the offset it was given in), `DEADLINE_AT` the instant.
    pub fn set_task_deadline(
        &mut self,
        id: u64,
        deadline: Option<DateTime<chrono::FixedOffset>>,
        actor: u64,
    ) -> Result<(), ApiError> {
        let now = self.now();
        let task = self
            .task_mut(id)
            .ok_or_else(|| ApiError::new(400, "0", "Task not found"))?;
        let written = deadline.map(|d| d.format("%Y-%m-%dT%H:%M:%S%:z").to_string());
        let at = deadline.map(|d| d.with_timezone(&Utc).to_rfc3339());
        task.insert("DEADLINE".into(), json!(written));
        task.insert("DEADLINE_AT".into(), json!(at));
        task.insert("CHANGED_BY".into(), json!(actor.to_string()));
        task.insert("CHANGED_DATE".into(), json!(now));
        Ok(())
    }
}
