//! The REST methods the simulated portal answers, `batch` included, as pure functions of the
//! portal state and the call's parameters (already parsed into JSON, PHP-style).
//!
//! Each method follows the official documentation rather than our client: parameter names
//! are case-insensitive except where Bitrix24 says otherwise, list methods page by 50 with
//! `total`/`next`, the legacy `crm.deal.*` methods answer 400 with an empty error code, and
//! undocumented filter keys are ignored (so a client that relies on them finds out here).
//!
//! This file has what every method shares (the answer, the call's context, the dispatch); the
//! methods live by family: [`deals`] (`crm.deal.*`), [`stages`] (stage history, statuses,
//! pipelines), [`tasks`], [`activities`] (`crm.activity.list`), [`timeline`] (comments and notifications), [`people`] (users and
//! departments), [`system`] (`server.time`) and [`batch`]; [`lists`] has the filter, order,
//! select and paging they share.

mod activities;
mod batch;
mod deals;
mod lists;
mod people;
mod stages;
mod system;
mod tasks;
mod timeline;

use chrono::{FixedOffset, TimeZone, Utc};
use serde_json::{Value, json};

use super::store::{ApiError, PortalState};
use super::values::{format_instant, object_param};

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
    "tasks.task.get",
    "tasks.task.complete",
    "tasks.task.defer",
    "crm.activity.list",
    "crm.timeline.comment.add",
    "crm.timeline.comment.list",
    "im.notify.system.add",
    "user.get",
    "department.get",
    "server.time",
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

    /// The answer of a list method: `result` with its `total` and `next`.
    fn list(result: Value, total: Option<usize>, next: Option<usize>) -> Self {
        Self {
            result,
            total,
            next,
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
                // The deal's own list, or a list of several deals that names it.
                method == "crm.stagehistory.list"
                    && object_param(params, "filter")
                        .and_then(|f| f.get("OWNER_ID").map(lists::filter_values))
                        .is_some_and(|owners| owners.contains(&deal.to_string()))
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

/// Seconds since the epoch with a fraction, as `time.start` has it. Real time, not the sim's
/// clock: clients compare `operating_reset_at` with their own clock to pace themselves, and a
/// clock moved three days on would have them wait three days.
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
        "batch" => batch::batch(st, params, ctx),
        "crm.deal.get" => deals::deal_get(st, params, ctx),
        "crm.deal.list" => deals::deal_list(st, params, ctx),
        "crm.deal.update" => deals::deal_update(st, params),
        "crm.deal.add" => deals::deal_add(st, params),
        "crm.deal.fields" => Ok(Reply::of(deals::deal_fields(st))),
        "crm.deal.userfield.list" => deals::userfield_list(st, params),
        "crm.stagehistory.list" => stages::stagehistory_list(st, params, ctx),
        "crm.status.list" => stages::status_list(st, params),
        "crm.status.entity.types" => Ok(Reply::of(stages::status_entity_types(st))),
        "crm.category.list" => stages::category_list(st, params),
        "tasks.task.add" => tasks::task_add(st, params),
        "tasks.task.list" => tasks::task_list(st, params),
        "tasks.task.get" => tasks::task_get(st, params),
        "tasks.task.complete" => tasks::task_complete(st, params),
        "tasks.task.defer" => tasks::task_defer(st, params),
        "crm.activity.list" => activities::activity_list(st, params),
        "crm.timeline.comment.add" => timeline::comment_add(st, params),
        "crm.timeline.comment.list" => timeline::comment_list(st, params),
        "im.notify.system.add" => timeline::notify_add(st, params),
        "user.get" => people::user_get(st, params),
        "department.get" => people::department_get(st, params),
        "server.time" => Ok(system::server_time(st)),
        _ => Err(method_not_found()),
    }
}

pub fn method_not_found() -> ApiError {
    ApiError::new(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
}
