//! People working their tasks and activities in the portal UI: the test-facing half of
//! `store/tasks.rs` and `store/activities.rs`. A task's actions are taken by its responsible
//! person; none of them sends an event (the outgoing webhook carries deal events only), so they
//! return at once. A refused action (a task that is not there, a completed task started) is a
//! mistake in the test and panics, like the deal actions.

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};

use super::SimPortal;
use super::store::{ApiError, PortalState};
use super::values::positive_id;

impl SimPortal {
    /// Runs a write on the portal's state; panics on a refusal.
    fn work<T>(
        &self,
        what: &str,
        write: impl FnOnce(&mut PortalState) -> Result<T, ApiError>,
    ) -> T {
        let outcome = write(&mut self.inner.lock().portal);
        outcome.unwrap_or_else(|e| panic!("simulated portal refused to {what}: {}", e.description))
    }

    /// The task's responsible person: who acts on it in the UI.
    fn responsible(portal: &PortalState, id: u64) -> u64 {
        portal
            .task(id)
            .and_then(|t| t.get("RESPONSIBLE_ID"))
            .and_then(positive_id)
            .unwrap_or(1)
    }

    /// A person creates a task bound to a deal (`UF_CRM_TASK = ["D_<id>"]`), for `responsible`
    /// (who is its creator too), pending, with or without a deadline. Returns its id.
    pub fn add_user_task(
        &self,
        deal_id: u64,
        title: &str,
        responsible: u64,
        deadline: Option<DateTime<FixedOffset>>,
    ) -> u64 {
        self.work("create a task", |p| {
            let mut task = p.task_record(title, responsible, responsible);
            task.insert("UF_CRM_TASK".into(), json!([format!("D_{deal_id}")]));
            let stored = p.add_task(task);
            let id = stored
                .get("ID")
                .and_then(positive_id)
                .ok_or_else(|| ApiError::new(500, "", "task without an id"))?;
            p.set_task_deadline(id, deadline, responsible)?;
            Ok(id)
        })
    }

    /// The responsible person completes the task (status 5): also a deferred one.
    pub fn complete_task(&self, id: u64) {
        self.work("complete a task", |p| {
            let actor = Self::responsible(p, id);
            p.complete_task(id, actor).map(drop)
        });
    }

    /// The responsible person defers the task (status 6).
    pub fn defer_task(&self, id: u64) {
        self.work("defer a task", |p| {
            let actor = Self::responsible(p, id);
            p.defer_task(id, actor).map(drop)
        });
    }

    /// The responsible person starts the task (status 3).
    pub fn start_task(&self, id: u64) {
        self.work("start a task", |p| {
            let actor = Self::responsible(p, id);
            p.start_task(id, actor).map(drop)
        });
    }

    /// Someone moves the task's deadline, or with `None` removes it.
    pub fn set_task_deadline(&self, id: u64, deadline: Option<DateTime<FixedOffset>>) {
        self.work("move a task's deadline", |p| {
            let actor = Self::responsible(p, id);
            p.set_task_deadline(id, deadline, actor)
        });
    }

    /// A task as stored (upper-case keys, see [`SimPortal::tasks`]), with its current `STATUS`
    /// and `REAL_STATUS`, `DEADLINE`, `CLOSED_DATE`, `CHANGED_DATE`.
    pub fn task(&self, id: u64) -> Option<Value> {
        self.inner
            .lock()
            .portal
            .task(id)
            .cloned()
            .map(Value::Object)
    }

    /// A person plans an activity (a to-do) on a deal for `responsible`, open or already done.
    /// Returns its id.
    pub fn add_activity(
        &self,
        deal_id: u64,
        responsible: u64,
        subject: &str,
        completed: bool,
    ) -> u64 {
        self.inner
            .lock()
            .portal
            .add_activity(deal_id, responsible, subject, completed)
    }

    /// The activity is done (`COMPLETED` = `"Y"`).
    pub fn complete_activity(&self, id: u64) {
        self.work("complete an activity", |p| p.complete_activity(id));
    }

    /// Every activity, as `crm.activity.list` prints it.
    pub fn activities(&self) -> Vec<Value> {
        self.inner
            .lock()
            .portal
            .activities
            .iter()
            .cloned()
            .map(Value::Object)
            .collect()
    }
}
