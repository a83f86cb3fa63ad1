//! What the worker counts as it works (stage entries, effects, pagings stopped short, tunnel
//! chains stopped): plain atomics owned by each `Application`, read by `GET /metrics`
//! (`crate::ops::metrics`) at scrape time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::store::{EffectKind, EntryAction};

/// Most `(rule, kind, result)` series kept for effects; more rules than that share one series.
pub const MAX_SERIES: usize = 2_000;

/// How one effect ended (or did not, yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EffectResult {
    /// Done: the portal gave its id (or an earlier attempt was found to have made it).
    Applied,
    /// Failed for good: recorded with its error, not tried again.
    Failed,
    /// An attempt failed in a way that may pass: the job is tried again later.
    Retried,
}

impl EffectResult {
    pub(crate) fn label(self) -> &'static str {
        match self {
            EffectResult::Applied => "applied",
            EffectResult::Failed => "failed",
            EffectResult::Retried => "retried",
        }
    }
}

/// A list read page by page (see [`Metrics::paging_stopped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagedList {
    /// One deal's stage history, in a round.
    DealHistory,
    /// The stage history, in a sweep.
    Sweep,
    /// The deals, in a backfill.
    DealList,
}

/// Why a list's paging stopped before the portal said it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingStop {
    /// A page brought nothing past what was read (or its `next` did not advance).
    NoProgress,
    /// The page bound was reached (`worker.max_history_pages`, `worker.max_sweep_pages`).
    PageLimit,
}

/// The counters the service increments as it works; gauges are read at scrape time.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Stage entries recorded: acted on, superseded, the service's own move (echo).
    pub(crate) stage_entries: [AtomicU64; 3],
    pub(crate) effects: Mutex<BTreeMap<(String, &'static str, EffectResult), u64>>,
    /// Pagings stopped short, by [`PagedList`] and [`PagingStop`].
    pub(crate) paging_stopped: [[AtomicU64; 2]; 3],
    /// Tunnels not run because the deal was already the copy at `rules.max_tunnel_depth`.
    pub(crate) tunnel_depth_exceeded: AtomicU64,
    /// Rounds begun, and the deals they took: while the portal is unreachable neither moves.
    pub(crate) rounds: AtomicU64,
    pub(crate) round_deals: AtomicU64,
    /// Time-driven rules' firings by rule, kind (`sla`, `overdue`, `deadline_moved`, `no_task`,
    /// `digest`) and result (`fired`, `skipped`, `failed`, `sent`).
    pub(crate) control_effects: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    /// Control sweeps done, and those that failed.
    pub(crate) control_sweeps: [AtomicU64; 2],
}

impl Metrics {
    pub fn stage_entry(&self, action: &EntryAction) {
        let i = match action {
            EntryAction::Acted => 0,
            EntryAction::Superseded { .. } => 1,
            EntryAction::Echo => 2,
        };
        self.stage_entries[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn effect(&self, rule: &str, kind: EffectKind, result: EffectResult) {
        let mut effects = self.effects.lock().unwrap_or_else(PoisonError::into_inner);
        let kind = kind_label(kind);
        let known = effects.contains_key(&(rule.to_string(), kind, result));
        let rule = if known || effects.len() < MAX_SERIES {
            rule
        } else {
            "_other"
        };
        *effects.entry((rule.to_string(), kind, result)).or_insert(0) += 1;
    }

    /// A control sweep ended (`ok`: it read and recorded everything).
    pub fn control_sweep(&self, ok: bool) {
        self.control_sweeps[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// A time-driven rule fired, was skipped or failed (`b24robot_control_effects_total`).
    pub fn control_effect(&self, rule: &str, kind: &'static str, result: &'static str) {
        let mut counts = self
            .control_effects
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = counts.contains_key(&(rule.to_string(), kind, result));
        let rule = if known || counts.len() < MAX_SERIES {
            rule
        } else {
            "_other"
        };
        *counts.entry((rule.to_string(), kind, result)).or_insert(0) += 1;
    }

    pub fn paging_stopped(&self, list: PagedList, why: PagingStop) {
        self.paging_stopped[list as usize][why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn round(&self, deals: usize) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.round_deals.fetch_add(deals as u64, Ordering::Relaxed);
    }

    /// Rounds begun so far.
    #[must_use]
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    pub fn tunnel_depth_exceeded(&self) {
        self.tunnel_depth_exceeded.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) fn kind_label(kind: EffectKind) -> &'static str {
    match kind {
        EffectKind::Task => "task",
        EffectKind::Comment => "comment",
        EffectKind::Notify => "notify",
        EffectKind::MoveBack => "move_back",
        EffectKind::CopyDeal => "copy_deal",
        EffectKind::CloseTask => "close_task",
    }
}
