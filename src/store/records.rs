//! The values kept in sled. Each carries a version tag (`v`) so that a later release can read
//! (or migrate) what an earlier one wrote; a record with an unknown version is reported, never
//! silently misread.

use serde::{Deserialize, Serialize};

use crate::rules::{Decision, StageEntry};

/// The current version of every record below.
pub const RECORD_VERSION: u8 = 1;

fn v1() -> u8 {
    RECORD_VERSION
}

/// The version of a record written without its tag (the serde default of `v`).
pub(super) fn record_version() -> u8 {
    RECORD_VERSION
}

/// A deal with work to do: the events (and sweep hits) about it not yet processed, coalesced.
///
/// One record per deal is what makes "one job at a time per deal" and "events for the same deal
/// that arrive together cost one read" hold by construction. `generation` is bumped by every
/// event recorded for the deal; a worker that finishes completes the record only if the
/// generation is still the one it read, so an event that arrives while the deal is being
/// processed is never lost: the deal simply runs again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedDeal {
    #[serde(default = "v1")]
    pub v: u8,
    pub deal_id: u64,
    pub generation: u64,
    /// How many events and sweep hits were coalesced into this record.
    pub events: u64,
    /// The ids of the last few events (for logs and the decision log), newest last.
    pub event_ids: Vec<u64>,
    /// When the oldest event of this record was acknowledged (ms since the epoch).
    pub first_at_ms: u64,
    /// Failed attempts so far; reset when the deal completes.
    pub attempts: u32,
    /// Not to be tried before this moment (ms since the epoch): the retry backoff.
    pub not_before_ms: u64,
    pub last_error: Option<String>,
    /// Parked (dead-lettered) after too many failed attempts: kept, visible, re-runnable.
    pub parked: bool,
}

/// At most this many event ids are kept per queued deal; the count goes on.
pub const MAX_EVENT_IDS: usize = 16;

/// What the service knows about one deal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DealState {
    #[serde(default = "v1")]
    pub v: u8,
    /// The highest stage-history entry id recorded for this deal.
    pub last_entry_id: u64,
    /// Stage and pipeline of that entry.
    pub stage_id: Option<String>,
    pub category_id: Option<u64>,
    /// A move the service itself made (a revert) whose history entry is still to come.
    pub echo: Option<Echo>,
    /// The portal answered "Not found" for the deal.
    pub deleted: bool,
}

/// The service's own move of a deal: the first new entry into `to_stage` past `after_entry_id`
/// is that move, recorded without running any rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    pub to_stage: String,
    pub after_entry_id: u64,
}

/// Why a recorded stage entry did or did not run the rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum EntryAction {
    /// The deal's newest entry and its current stage: the rules were evaluated.
    Acted,
    /// Superseded: the deal had already moved on (Bitrix24's own automation skips it too).
    Superseded { now_in: Option<String> },
    /// The service's own move (a revert): no rule runs.
    Echo,
}

/// One stage entry of one deal, with what the rules decided about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryRecord {
    #[serde(default = "v1")]
    pub v: u8,
    pub deal_id: u64,
    pub entry: StageEntry,
    pub recorded_at_ms: u64,
    #[serde(flatten)]
    pub action: EntryAction,
    /// The version (hash) of the rule set that decided.
    pub ruleset_version: String,
    pub decisions: Vec<Decision>,
    /// The events that led to this entry being read (last few).
    pub event_ids: Vec<u64>,
    /// How the entry came to be decided when not by a round: `backfill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What an effect is, for the lookup after an unknown outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    Task,
    Comment,
    Notify,
    MoveBack,
    CopyDeal,
    /// `close_on_leave`: a stage's task completed or deferred when the deal left the stage.
    CloseTask,
}

/// One REST write the service owes the portal, recorded before it is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectRecord {
    #[serde(default = "v1")]
    pub v: u8,
    pub deal_id: u64,
    pub entry_id: u64,
    pub rule: String,
    pub index: u32,
    pub kind: EffectKind,
    /// The REST method and its parameters, final (people resolved, deadline computed): a retry
    /// after a crash sends exactly what was decided, whatever the rules are by then.
    pub method: String,
    pub params: serde_json::Value,
    /// The marker written into what is created (`XML_ID` of a task, `ORIGIN_ID` of a copy) by
    /// which it is found again.
    pub marker: String,
    pub state: EffectState,
    /// HTTP attempts that may have reached the portal. Above zero, the next attempt first looks
    /// for what the earlier one may have created.
    pub attempts: u32,
    pub updated_at_ms: u64,
    /// What a time-driven rule's effect is about, part of its key: `task 12 deadline
    /// 2026-12-03T18:00:00+03:00` (one overdue notice per task and deadline), `episode 2` (a
    /// deal without a next step). `None` for the effects of a stage entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl EffectRecord {
    /// Which effect this is: deal, stage entry, rule, place in the rule.
    pub fn id(&self) -> crate::rules::EffectId<'_> {
        crate::rules::EffectId {
            deal_id: self.deal_id,
            entry_id: self.entry_id,
            rule: &self.rule,
            index: self.index,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EffectState {
    Pending,
    /// Applied; `id` is what Bitrix24 returned (task id, comment id, new deal id...).
    Done {
        id: String,
    },
    /// Failed for good (validation, permission, no supervisor...): not retried.
    Failed {
        error: String,
    },
}

/// A backfill's progress, kept in the store's meta so that an interrupted run continues.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackfillProgress {
    #[serde(default = "v1")]
    pub v: u8,
    /// The options of the run: a run with other options starts over.
    pub rule: Option<String>,
    pub pipeline: Option<u64>,
    /// Deals up to this id are done (the `>ID` of the next page).
    pub last_deal_id: u64,
    /// Deals busy in the worker when their page came: done at the end of the run.
    #[serde(default)]
    pub deferred: Vec<u64>,
    /// Deals to look at in all (`total` of the first list), and looked at so far.
    pub total: u64,
    pub done: u64,
    /// Entries the rules were applied to, and the effects recorded for them.
    pub entries: u64,
    pub effects: u64,
    /// Entries whose rules had already run (by the worker or an earlier backfill).
    pub already: u64,
    /// Effects not applied (failed for good, or left to the worker to retry).
    pub failed: u64,
    pub finished: bool,
    pub started_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A durable timer of a time-driven rule: an `[[sla]]` armed for one stage entry of a deal.
/// Its identity is (deal, entry, rule); its repetitions re-arm the same record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerRecord {
    #[serde(default = "v1")]
    pub v: u8,
    pub deal_id: u64,
    pub entry_id: u64,
    pub rule: String,
    /// Which firing is next (0: the first; then each `repeat`).
    pub repetition: u32,
    /// When that firing is due (ms since the epoch, by the rules' clock).
    pub due_ms: u64,
    /// The entry it was armed for, as recorded: at fire time, the deal must still be in it.
    pub entry: StageEntry,
    pub state: TimerState,
    pub armed_at_ms: u64,
    pub updated_at_ms: u64,
    /// What became of each firing so far, oldest first (the decision log of `explain`).
    #[serde(default)]
    pub history: Vec<TimerEvent>,
}

impl TimerRecord {
    /// Notes what became of its current firing (`outcome`, in words) at `at_ms`.
    pub fn note(&mut self, outcome: String, at_ms: u64) {
        self.history.push(TimerEvent {
            at_ms,
            repetition: self.repetition,
            outcome,
        });
        self.updated_at_ms = at_ms;
    }

    /// It will not fire (again), because `why`; its history says so.
    pub fn skip(&mut self, why: String, at_ms: u64) {
        self.note(format!("skipped: {why}"), at_ms);
        self.state = TimerState::Skipped { why };
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TimerState {
    /// Waiting for `due_ms`.
    Pending,
    /// Every firing it had is done.
    Fired,
    /// It will not fire (again): the deal left the entry, the rule was removed...
    Skipped { why: String },
}

/// One firing of a timer, or why it did not fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerEvent {
    pub at_ms: u64,
    pub repetition: u32,
    pub outcome: String,
}

/// A deal a `[[no_task]]` found without a next step: the episode, from when it counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    #[serde(default = "v1")]
    pub v: u8,
    /// The stage entry the deal was in when the episode began.
    pub entry_id: u64,
    /// 1 for the deal's first episode under the rule, then one more each time.
    pub number: u32,
    /// RFC 3339: the later of the stage entry and the sweep that found it without a next step.
    pub since: String,
    /// Still without a next step (false: one appeared, the episode ended).
    pub open: bool,
}
