//! A backfill's progress as it runs, for whoever shows it: the admin API (`GET
//! /admin/backfill`, as JSON) and the CLI (a progress line). The counts themselves are the
//! store's [`BackfillProgress`]; here are the run's state, its last error, the ETA and the
//! writes a dry run would make.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BackfillOptions;
use crate::store::BackfillProgress;

/// Dry-run writes kept for the admin API.
const MAX_WRITES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Idle,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl std::fmt::Display for RunState {
    /// The state as the CLI says it, the same word as its JSON form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunState::Idle => "idle",
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        })
    }
}

#[derive(Debug)]
struct StatusInner {
    state: RunState,
    options: BackfillOptions,
    progress: BackfillProgress,
    last_error: Option<String>,
    /// When this run started, and how many deals were done then (for the ETA).
    started: Option<(Instant, u64)>,
    writes: Vec<Value>,
    writes_total: usize,
}

/// A backfill's progress as it runs, shared with whoever shows it (the admin API, the CLI).
#[derive(Clone)]
pub struct Status(Arc<Mutex<StatusInner>>);

impl Default for Status {
    fn default() -> Self {
        Status(Arc::new(Mutex::new(StatusInner {
            state: RunState::Idle,
            options: BackfillOptions::default(),
            progress: BackfillProgress::default(),
            last_error: None,
            started: None,
            writes: Vec::new(),
            writes_total: 0,
        })))
    }
}

impl Status {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> RunState {
        self.lock().state
    }

    pub(super) fn begin(&self, options: &BackfillOptions) {
        let mut s = self.lock();
        s.state = RunState::Running;
        s.options = options.clone();
        s.progress = BackfillProgress::default();
        s.last_error = None;
        s.started = None;
        s.writes.clear();
        s.writes_total = 0;
    }

    pub(super) fn update(&self, progress: &BackfillProgress) {
        let mut s = self.lock();
        if s.started.is_none() {
            s.started = Some((Instant::now(), progress.done));
        }
        s.progress = progress.clone();
    }

    pub(super) fn write(&self, line: Value) {
        let mut s = self.lock();
        s.writes_total += 1;
        if s.writes.len() < MAX_WRITES {
            s.writes.push(line);
        }
    }

    pub(super) fn end(&self, state: RunState, error: Option<String>) {
        let mut s = self.lock();
        s.state = state;
        if error.is_some() {
            s.last_error = error;
        }
    }

    /// The progress (`GET /admin/backfill` serialises it), with the dry-run writes from `from`
    /// on.
    pub fn report(&self, from: usize) -> StatusReport {
        let s = self.lock();
        let p = &s.progress;
        let eta_seconds = match (s.state, s.started) {
            (RunState::Running, Some((at, done_then))) if p.done > done_then => {
                let rate = (p.done - done_then) as f64 / at.elapsed().as_secs_f64().max(0.001);
                Some((p.total.saturating_sub(p.done) as f64 / rate).round())
            }
            _ => None,
        };
        StatusReport {
            state: s.state,
            rule: s.options.rule.clone(),
            pipeline: s.options.pipeline,
            dry_run: s.options.dry_run,
            done: p.done,
            total: p.total,
            last_deal_id: p.last_deal_id,
            entries: p.entries,
            effects: p.effects,
            already: p.already,
            retrying: p.failed,
            deferred: p.deferred.len(),
            eta_seconds,
            last_error: s.last_error.clone(),
            writes_total: s.writes_total,
            writes: s.writes.iter().skip(from).cloned().collect(),
        }
    }
}

/// A backfill's progress at one moment: what the admin API serves (as JSON, these keys) and the
/// CLI reads back and prints, locally or from the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub state: RunState,
    /// The options it runs with: one rule, one pipeline, a dry run.
    pub rule: Option<String>,
    pub pipeline: Option<u64>,
    pub dry_run: bool,
    /// Deals looked at so far, of `total`.
    pub done: u64,
    pub total: u64,
    pub last_deal_id: u64,
    /// Stage entries the rules were applied to, the effects planned, and those already done.
    pub entries: u64,
    pub effects: u64,
    pub already: u64,
    /// Effects not applied (failed for good, or left to the worker to retry).
    pub retrying: u64,
    /// Deals held back (their job was busy) and taken at the end.
    pub deferred: usize,
    pub eta_seconds: Option<f64>,
    pub last_error: Option<String>,
    /// The writes a dry run would make, all of them counted, those from `?from=N` on listed.
    pub writes_total: usize,
    pub writes: Vec<Value>,
}

impl StatusReport {
    /// One line of progress for people: a bar, the counts and the ETA.
    pub fn progress_line(&self) -> String {
        let done = self.done;
        let total = self.total.max(done);
        let width = 30usize;
        let filled = if total == 0 {
            width
        } else {
            (done as usize * width) / total as usize
        };
        let eta = match self.eta_seconds {
            Some(s) => {
                let s = s as u64;
                format!("ETA {}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
            }
            None => "ETA --:--:--".into(),
        };
        format!(
            "[{}{}] {done}/{total} deals  {} entries, {} effects, {} already done  {eta}",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.entries,
            self.effects,
            self.already,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_says_the_word_of_its_json_form() {
        for state in [
            RunState::Idle,
            RunState::Running,
            RunState::Done,
            RunState::Failed,
            RunState::Cancelled,
        ] {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                Value::String(state.to_string())
            );
        }
    }

    #[test]
    fn the_report_reads_back_from_its_json() {
        let status = Status::default();
        status.begin(&BackfillOptions::default());
        status.write(serde_json::json!({"deal_id": 7}));
        let report = status.report(0);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["state"], "running");
        assert_eq!(json["writes_total"], 1);
        let back: StatusReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        assert!(status.report(1).writes.is_empty());
    }
}
