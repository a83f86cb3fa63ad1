//! The `tasks` report: per person, the tasks the service created in the period and how they
//! stand.
//!
//! Every figure is of the tasks created in the period, so a row adds up:
//! `created = on_time + late + open`, and `overdue` is the part of `open` past its deadline now.
//! A task is completed when it has a closing date (`CLOSED_DATE`, status 5); a deferred task is
//! still open. Without a deadline a completed task is on time.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::{ReportBody, Scope};

/// A task the service created (stage, review, NPS and SLA tasks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportTask {
    pub id: u64,
    /// `RESPONSIBLE_ID`.
    pub responsible: u64,
    /// The pipeline of the deal it is bound to, for `--pipeline`.
    pub pipeline: Option<u64>,
    pub created: DateTime<FixedOffset>,
    pub deadline: Option<DateTime<FixedOffset>>,
    /// When it was completed; `None`: open (or deferred).
    pub closed: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskRow {
    pub user_id: u64,
    pub created: u64,
    pub on_time: u64,
    pub late: u64,
    pub open: u64,
    pub overdue: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TasksBody {
    pub rows: Vec<TaskRow>,
}

impl ReportBody for TasksBody {
    const NAME: &'static str = "tasks";
}

/// A row per person with a task created in the period, by user id.
pub fn tasks(tasks: &[ReportTask], scope: &Scope<'_>) -> TasksBody {
    let mut rows: BTreeMap<u64, TaskRow> = BTreeMap::new();
    let created = tasks.iter().filter(|t| {
        scope.pipeline.is_none_or(|p| t.pipeline == Some(p)) && scope.within(t.created)
    });
    for task in created {
        let row = rows.entry(task.responsible).or_insert(TaskRow {
            user_id: task.responsible,
            ..TaskRow::default()
        });
        row.created += 1;
        match (task.closed, task.deadline) {
            (Some(closed), Some(deadline)) if closed > deadline => row.late += 1,
            (Some(_), _) => row.on_time += 1,
            (None, deadline) => {
                row.open += 1;
                if deadline.is_some_and(|d| d < scope.now) {
                    row.overdue += 1;
                }
            }
        }
    }
    TasksBody {
        rows: rows.into_values().collect(),
    }
}
