//! A backfill's progress as it runs, for whoever shows it: the admin API (`GET
//! /admin/backfill`, as JSON) and the CLI (a progress line). The counts themselves are the
//! store's [`BackfillProgress`]; here are the run's state, its last error, the ETA and the
//! writes a dry run would make.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use super::BackfillOptions;
use crate::store::BackfillProgress;

/// Dry-run writes kept for the admin API.
const MAX_WRITES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Idle,
    Running,
    Done,
    Failed,
    Cancelled,
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

    /// The progress as JSON (`GET /admin/backfill`), with the dry-run writes from `from` on.
    pub fn json(&self, from: usize) -> Value {
        let s = self.lock();
        let p = &s.progress;
        let eta = match (s.state, s.started) {
            (RunState::Running, Some((at, done_then))) if p.done > done_then => {
                let rate = (p.done - done_then) as f64 / at.elapsed().as_secs_f64().max(0.001);
                Some((p.total.saturating_sub(p.done) as f64 / rate).round())
            }
            _ => None,
        };
        json!({
            "state": s.state,
            "rule": s.options.rule,
            "pipeline": s.options.pipeline,
            "dry_run": s.options.dry_run,
            "done": p.done,
            "total": p.total,
            "last_deal_id": p.last_deal_id,
            "entries": p.entries,
            "effects": p.effects,
            "already": p.already,
            "retrying": p.failed,
            "deferred": p.deferred.len(),
            "eta_seconds": eta,
            "last_error": s.last_error,
            "writes_total": s.writes_total,
            "writes": s.writes.iter().skip(from).collect::<Vec<_>>(),
        })
    }
}

/// One line of progress for people: a bar, the counts and the ETA.
pub fn progress_line(status: &Value) -> String {
    let done = status["done"].as_u64().unwrap_or(0);
    let total = status["total"].as_u64().unwrap_or(0).max(done);
    let width = 30usize;
    let filled = if total == 0 {
        width
    } else {
        (done as usize * width) / total as usize
    };
    let eta = match status["eta_seconds"].as_f64() {
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
        status["entries"],
        status["effects"],
        status["already"],
    )
}
