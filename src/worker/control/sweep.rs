//! The control sweep: reads what `[[overdue]]` and `[[no_task]]` watch, decides (purely, in
//! `rules::control`) and records the notices as effects of the deals they concern, each under
//! its key (`control.md`): an overdue task once per (rule, task, deadline as read), a moved
//! deadline once per (rule, task, old, new), a deal without a next step once per (rule, deal,
//! entry, episode). The deal is then queued: its round sends them through the same intents,
//! results and retries as every effect (a notification's `TAG` makes a re-send after an unknown
//! outcome replace, not repeat, it).
//!
//! What it reads, every call through the one client and its bucket, lists read page by page
//! with every page after the first in shared `batch`es (Bitrix24 pages are 50 items):
//! - `crm.deal.list` of the in-progress deals (`STAGE_SEMANTIC_ID = "P"`) of each pipeline
//!   watched, `CATEGORY_ID` filter (bitrix24/b24restdocs `api-reference/crm/deals/crm-deal-list.md`);
//! - `tasks.task.list` by `ID` lists (the tasks the service created, `tasks = "rules"`) and by
//!   `UF_CRM_TASK` lists of `D_<id>` (the open tasks of those deals), with `REAL_STATUS` 1-3 and a
//!   `select` naming every field used (`api-reference/tasks/tasks-task-list.md`: "always
//!   specify fields in select"; `UF_CRM_TASK` is returned only when selected);
//! - `crm.activity.list` with `OWNER_TYPE_ID = 2`, `OWNER_ID` lists and `COMPLETED = "N"`
//!   (`api-reference/crm/timeline/activities/activity-base/crm-activity-list.md`).
//!
//! Each list's first page goes with the others' in shared batches, then every further page of
//! them all: for D open deals and T tasks of its own a sweep makes about D/50 deal pages,
//! D/50 task lists (plus a page per 50 more tasks), D/50 activity lists and T/50 task lists,
//! 50 calls a request: 10,000 open deals with a task each, some 13 requests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::DateTime;
use serde_json::{Value, json};

use crate::bitrix::{BatchCall, CallError, Response, Retry, calls};
use crate::rules::control::TaskScope;
use crate::rules::control::evaluate::TaskSeen;
use crate::rules::{
    Deal, Decision, Effect, FieldCatalog, Input, Outcome, Person, RuleSet, StageEntry,
    StageSemantic,
};
use crate::store::{EffectKind, EffectRecord, EffectState, RECORD_VERSION, StoreError, now_ms};
use crate::worker::Worker;

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("control sweep: {0}")]
    Portal(#[from] CallError),
    #[error("control sweep: {0}")]
    Store(#[from] StoreError),
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub deals: usize,
    pub tasks: usize,
    pub notices: usize,
}

/// What the sweep read: open deals by id, tasks by id.
#[derive(Debug, Default)]
pub struct Seen {
    pub deals: BTreeMap<u64, Deal>,
    pub tasks: BTreeMap<u64, TaskSeen>,
    /// Deals with an open activity.
    pub busy: BTreeSet<u64>,
}

/// The longest the sweep waits for the rounds before each read: event-driven work goes first,
/// but a portal busy all day must still be swept.
const GIVE_WAY_AT_MOST: Duration = Duration::from_secs(30);

/// Event-driven work first (`control.md`: "when the bucket is busy, event-driven work goes
/// first"): waits while deals are due for a round or in one (at most [`GIVE_WAY_AT_MOST`]),
/// then until the outbox has room.
async fn give_way(worker: &Worker) {
    let start = std::time::Instant::now();
    while worker.scheduler.busy() > 0 && start.elapsed() < GIVE_WAY_AT_MOST {
        // Real time: the rounds tell no one when they are done; a tenth of a second is nothing
        // beside the sweep's own minutes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.client.until_outbox_has_room().await;
}

/// Reads many lists page by page, every list's first page together in shared batches (their
/// `total`s are learnt there), then every further page of them all together too: what a list
/// costs is its pages ÷ 50 requests, not one request a page.
pub(crate) async fn list_many(
    worker: &Worker,
    lists: Vec<BatchCall>,
) -> Result<Vec<Value>, CallError> {
    if lists.is_empty() {
        return Ok(Vec::new());
    }
    give_way(worker).await;
    let firsts = worker.client.batch(lists.clone(), Retry::Safe).await;
    let mut items = Vec::new();
    let mut pages = Vec::new();
    for (call, answer) in lists.iter().zip(firsts) {
        let first = answer?;
        let got = list_items(&first);
        let total = first.total.unwrap_or(0) as usize;
        if first.next.is_some() && total > got.len() {
            pages.extend((1..total.div_ceil(50)).map(|page| {
                let mut params = call.params.clone();
                params["start"] = json!(page * 50);
                BatchCall::new(call.method.clone(), params)
            }));
        }
        items.extend(got);
    }
    if !pages.is_empty() {
        give_way(worker).await;
        for answer in worker.client.batch(pages, Retry::Safe).await {
            items.extend(list_items(&answer?));
        }
    }
    Ok(items)
}

/// The items of a list answer.
fn list_items(answer: &Response) -> Vec<Value> {
    // `tasks.task.list` answers `{"tasks": [...]}`, `crm.stagehistory.list` `{"items": [...]}`,
    // the CRM lists a plain array.
    answer
        .result
        .get("tasks")
        .or_else(|| answer.result.get("items"))
        .unwrap_or(&answer.result)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field<'a>(item: &'a Value, camel: &str, upper: &str) -> Option<&'a Value> {
    item.get(camel).or_else(|| item.get(upper))
}

/// A task of a `tasks.task.list` answer (camelCase, as the tasks API prints it; upper-case
/// accepted too).
pub(crate) fn task_of(item: &Value) -> Option<TaskSeen> {
    let id = text(field(item, "id", "ID"))?.parse().ok()?;
    let deal_id = field(item, "ufCrmTask", "UF_CRM_TASK")
        .and_then(Value::as_array)
        .and_then(|bindings| {
            bindings
                .iter()
                .filter_map(Value::as_str)
                .find_map(|b| b.strip_prefix("D_")?.parse().ok())
        });
    Some(TaskSeen {
        id,
        title: text(field(item, "title", "TITLE")).unwrap_or_default(),
        responsible: text(field(item, "responsibleId", "RESPONSIBLE_ID"))
            .and_then(|s| s.parse().ok()),
        responsible_name: item
            .pointer("/responsible/name")
            .and_then(Value::as_str)
            .map(str::to_string),
        deadline: text(field(item, "deadline", "DEADLINE"))
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok()),
        // `tasks.task.list` prints `REAL_STATUS` as `status` (`STATUS` is `subStatus`,
        // api-reference/tasks/fields.md); the other spellings are accepted too.
        status: ["realStatus", "status", "REAL_STATUS"]
            .iter()
            .find_map(|k| text(item.get(*k)))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        deal_id,
    })
}

/// The people's names (`user.get`, `NAME` and `LAST_NAME`), in one shared batch; a person the
/// portal does not answer for is named by id.
pub(crate) async fn names(worker: &Worker, people: &[u64]) -> BTreeMap<u64, String> {
    let mut ids: Vec<u64> = people.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let calls = ids.iter().map(|&id| calls::user_get(id)).collect();
    let mut out = BTreeMap::new();
    for (id, answer) in ids
        .iter()
        .zip(worker.client.batch(calls, Retry::Safe).await)
    {
        let Ok(answer) = answer else { continue };
        let Some(user) = answer.result.as_array().and_then(|a| a.first()).cloned() else {
            continue;
        };
        let part = |k: &str| {
            user.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let name = [part("NAME"), part("LAST_NAME")]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            out.insert(*id, name);
        }
    }
    out
}

/// Reads what the rules watch.
pub async fn read(worker: &Worker, rules: &RuleSet) -> Result<Seen, SweepError> {
    let controls = rules.controls();
    let mut seen = Seen::default();
    // The pipelines whose open deals are read: every `[[no_task]]`'s, and every `[[overdue]]`
    // with `tasks = "all"` (`None`: every pipeline).
    let mut pipelines: BTreeSet<Option<u64>> = BTreeSet::new();
    for rule in controls.no_task() {
        pipelines.insert(Some(rule.pipeline()));
    }
    for rule in controls
        .overdue()
        .iter()
        .filter(|r| r.tasks() == TaskScope::All)
    {
        pipelines.insert(rule.pipeline());
    }
    if pipelines.contains(&None) {
        pipelines = BTreeSet::from([None]);
    }
    let deal_lists: Vec<BatchCall> = pipelines
        .into_iter()
        .map(|pipeline| {
            let mut filter = serde_json::Map::new();
            filter.insert("STAGE_SEMANTIC_ID".into(), json!("P"));
            if let Some(p) = pipeline {
                filter.insert("CATEGORY_ID".into(), json!(p));
            }
            BatchCall::new(
                "crm.deal.list",
                json!({ "filter": filter, "order": { "ID": "ASC" },
                        "select": ["ID", "TITLE", "STAGE_ID", "CATEGORY_ID", "STAGE_SEMANTIC_ID", "ASSIGNED_BY_ID", "MOVED_TIME", "OPPORTUNITY", "CURRENCY_ID"] }),
            )
        })
        .collect();
    for item in list_many(worker, deal_lists).await? {
        if let (Some(id), Some(map)) = (
            text(item.get("ID")).and_then(|s| s.parse::<u64>().ok()),
            item.as_object(),
        ) {
            seen.deals.insert(id, Deal::new(map.clone()));
        }
    }
    let deal_ids: Vec<u64> = seen.deals.keys().copied().collect();
    let mut task_calls: Vec<BatchCall> = deal_ids
        .chunks(50)
        .map(|chunk| {
            let bindings: Vec<String> = chunk.iter().map(|&d| calls::deal_binding(d)).collect();
            BatchCall::new(
                "tasks.task.list",
                json!({ "filter": { "UF_CRM_TASK": bindings, "REAL_STATUS": [1, 2, 3] },
                        "select": calls::TASK_SELECT }),
            )
        })
        .collect();
    if controls
        .overdue()
        .iter()
        .any(|r| r.tasks() == TaskScope::Rules)
    {
        let ours = worker.store.created_tasks()?;
        task_calls.extend(ours.chunks(50).map(calls::tasks_by_id));
    }
    for item in list_many(worker, task_calls).await? {
        if let Some(task) = task_of(&item) {
            seen.tasks.insert(task.id, task);
        }
    }
    // `{TASK_RESPONSIBLE}` is the person's name: where the answer did not carry it, one
    // `user.get` a person, together.
    let nameless: Vec<u64> = seen
        .tasks
        .values()
        .filter(|t| t.responsible_name.is_none())
        .filter_map(|t| t.responsible)
        .collect();
    if !nameless.is_empty() {
        let names = names(worker, &nameless).await;
        for task in seen.tasks.values_mut() {
            if task.responsible_name.is_none() {
                task.responsible_name = task.responsible.and_then(|r| names.get(&r).cloned());
            }
        }
    }
    if controls.no_task().iter().any(|r| r.count_activities()) {
        let lists = deal_ids
            .chunks(50)
            .map(|chunk| {
                BatchCall::new(
                    "crm.activity.list",
                    json!({ "filter": { "OWNER_TYPE_ID": 2, "OWNER_ID": chunk, "COMPLETED": "N" },
                            "select": ["ID", "OWNER_ID", "OWNER_TYPE_ID", "COMPLETED"] }),
                )
            })
            .collect();
        for item in list_many(worker, lists).await? {
            if let Some(owner) = text(item.get("OWNER_ID")).and_then(|s| s.parse().ok()) {
                seen.busy.insert(owner);
            }
        }
    }
    Ok(seen)
}

/// One control sweep: read, decide, record, queue.
pub async fn sweep(worker: &Worker, rules: &RuleSet) -> Result<Report, SweepError> {
    let seen = read(worker, rules).await?;
    let now = worker.clock.now().fixed_offset();
    let quiet = worker.quiet_outside_hours && !worker.calendar.is_working_time(now);
    let catalog = FieldCatalog::default();
    let mut notices: Vec<(u64, Decision, u64, String)> = Vec::new();
    let empty = Deal::new(serde_json::Map::new());
    let placeholder = StageEntry {
        id: 0,
        type_id: 2,
        stage_id: String::new(),
        category_id: 0,
        semantic: StageSemantic::Process,
        created_time: now,
    };
    let input_for = |deal| input(worker, deal, &placeholder, &catalog);
    let ours: BTreeSet<u64> = worker.store.created_tasks()?.into_iter().collect();
    // The service's first control sweep: a deal open since before it counts from then.
    let first_sweep = match worker.store.first_control_sweep()? {
        Some(at) => DateTime::parse_from_rfc3339(&at).unwrap_or(now),
        None => {
            worker.store.set_first_control_sweep(&now.to_rfc3339())?;
            now
        }
    };
    for rule in rules.controls().overdue() {
        for task in seen.tasks.values() {
            let Some(deal_id) = task.deal_id else {
                continue;
            };
            let in_scope = match rule.tasks() {
                TaskScope::Rules => ours.contains(&task.id),
                TaskScope::All => seen.deals.contains_key(&deal_id) || ours.contains(&task.id),
            };
            let deal = seen.deals.get(&deal_id).unwrap_or(&empty);
            let pipeline_ok = rule
                .pipeline()
                .is_none_or(|p| deal.category_id().is_none_or(|c| c == p));
            if !in_scope || !pipeline_ok {
                continue;
            }
            let input = input_for(deal);
            // A moved deadline, seen against the deadline the last sweep read.
            let key = format!("{}/{}", rule.name(), task.id);
            let last = worker.store.tracked_deadline(&key)?;
            let now_text = task.deadline.map(|d| d.to_rfc3339()).unwrap_or_default();
            if let Some(old) = &last
                && *old != now_text
                && rule.watches_moves()
            {
                let old_at = DateTime::parse_from_rfc3339(old).ok();
                if let Some(decision) = rule.moved(task, old_at, &input) {
                    notices.push((
                        deal_id,
                        decision,
                        0,
                        format!("task {} deadline {} -> {}", task.id, old, now_text),
                    ));
                }
            }
            // Outside working time with quiet hours, the notices are not recorded: nor is the
            // new deadline, so that the first sweep in working time sees the move and tells it.
            if last.as_deref() != Some(now_text.as_str()) && !quiet {
                worker.store.track_deadline(&key, &now_text)?;
            }
            if rule.is_overdue(&worker.calendar, task, now) {
                notices.push((
                    deal_id,
                    rule.report(task, &input),
                    0,
                    format!("task {} deadline {now_text}", task.id),
                ));
            }
        }
    }
    for rule in rules.controls().no_task() {
        for (&deal_id, deal) in &seen.deals {
            let stage = deal.stage_id().unwrap_or_default();
            let pipeline = deal.category_id().unwrap_or(0);
            if !rule.watches(pipeline, stage, StageSemantic::Process) {
                continue;
            }
            let has_task = seen
                .tasks
                .values()
                .any(|t| t.deal_id == Some(deal_id) && t.is_open());
            let has_step = has_task || (rule.count_activities() && seen.busy.contains(&deal_id));
            let state = worker.store.deal_state(deal_id)?.unwrap_or_default();
            let entry_id = state.last_entry_id;
            let key = format!("{}/{}", rule.name(), deal_id);
            let mut episode = worker.store.episode(&key)?;
            if has_step {
                if episode.as_ref().is_some_and(|e| e.open) {
                    if let Some(e) = episode.as_mut() {
                        e.open = false;
                    }
                    worker.store.put_episode(&key, episode.as_ref())?;
                }
                continue;
            }
            let moved = deal
                .get("MOVED_TIME")
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
            let fresh = match &episode {
                Some(e) => !e.open || e.entry_id != entry_id,
                None => true,
            };
            if fresh {
                let number = episode.as_ref().map_or(1, |e| e.number + 1);
                // The first episode counts from the stage entry (or the service's first sweep,
                // for a deal that was open before); a later one from the sweep that found the
                // next step gone (when it went is not known).
                let since = match &episode {
                    None => moved.map_or(first_sweep, |m| m.max(first_sweep)),
                    Some(_) => now,
                };
                let started = crate::store::Episode {
                    v: RECORD_VERSION,
                    entry_id,
                    number,
                    since: since.to_rfc3339(),
                    open: true,
                };
                worker.store.put_episode(&key, Some(&started))?;
                episode = Some(started);
            }
            let Some(e) = episode else { continue };
            let since = DateTime::parse_from_rfc3339(&e.since).unwrap_or(now);
            if rule.due(&worker.calendar, since) <= now {
                let input = input_for(deal);
                notices.push((
                    deal_id,
                    rule.report(&input, since),
                    entry_id,
                    format!("episode {}", e.number),
                ));
            }
        }
    }
    let report = Report {
        deals: seen.deals.len(),
        tasks: seen.tasks.len(),
        notices: if quiet { 0 } else { notices.len() },
    };
    if quiet {
        tracing::debug!(
            held = notices.len(),
            "control sweep: outside working time, notices wait"
        );
        return Ok(report);
    }
    record(worker, notices).await?;
    Ok(report)
}

/// What the pure decisions read about a deal outside a stage entry.
fn input<'a>(
    worker: &'a Worker,
    deal: &'a Deal,
    entry: &'a StageEntry,
    catalog: &'a FieldCatalog,
) -> Input<'a> {
    Input {
        deal,
        entry,
        previous_stage: None,
        catalog,
        calendar: &worker.calendar,
        portal_origin: &worker.portal_origin,
        max_tunnel_depth: worker.settings.max_tunnel_depth,
        language: worker.language,
    }
}

/// Records the notices as effects of their deals (those not recorded already) and queues the
/// deals whose notices are still to send.
async fn record(
    worker: &Worker,
    notices: Vec<(u64, Decision, u64, String)>,
) -> Result<(), SweepError> {
    let mut wanted: Vec<u64> = Vec::new();
    for (_, decision, _, _) in &notices {
        if let Outcome::Fired(effects) = &decision.outcome {
            for effect in effects {
                if let Effect::Notify {
                    user: Person::SupervisorOf(u),
                    ..
                } = effect
                {
                    wanted.push(*u);
                }
            }
        }
    }
    let supervisors: HashMap<u64, Result<u64, String>> = if wanted.is_empty() {
        HashMap::new()
    } else {
        worker
            .people
            .supervisors(&worker.client, &wanted)
            .await
            .into_iter()
            .map(|(u, r)| (u, r.map_err(|e| format!("{e:?}"))))
            .collect()
    };
    let mut queue: BTreeSet<u64> = BTreeSet::new();
    for (deal_id, decision, entry_id, subject) in notices {
        let Outcome::Fired(effects) = &decision.outcome else {
            continue;
        };
        let known = worker.store.effects(deal_id)?;
        for (i, effect) in effects.iter().enumerate() {
            let Effect::Notify { user, message } = effect else {
                continue;
            };
            let index = i as u32;
            if let Some(existing) = known.iter().find(|e| {
                e.entry_id == entry_id
                    && e.rule == decision.rule
                    && e.index == index
                    && e.subject.as_deref() == Some(subject.as_str())
            }) {
                if existing.state == EffectState::Pending {
                    queue.insert(deal_id);
                }
                continue;
            }
            let marker = format!(
                "b24robot:{deal_id}:{entry_id}:{}:{index}:{:016x}",
                decision.rule,
                fnv(&subject)
            );
            let user = match user {
                Person::User(id) => Ok(json!(id)),
                Person::SupervisorOf(u) => supervisors
                    .get(u)
                    .cloned()
                    .unwrap_or_else(|| Err("no supervisor".into()))
                    .map(|id| json!(id)),
                Person::Unresolved(why) => Err(why.clone()),
            };
            let (call, state) = match user {
                Ok(user) => (
                    calls::notify(user, message, &marker, crate::worker::ORIGINATOR),
                    EffectState::Pending,
                ),
                Err(error) => (
                    BatchCall::new("", Value::Null),
                    EffectState::Failed { error },
                ),
            };
            let kind = decision.kind.table();
            tracing::info!(deal_id, rule = %decision.rule, kind, %subject, "control notice recorded");
            worker.metrics.control_effect(
                &decision.rule,
                if subject.contains("->") {
                    "deadline_moved"
                } else {
                    kind
                },
                "fired",
            );
            worker.store.put_effect(&EffectRecord {
                v: RECORD_VERSION,
                deal_id,
                entry_id,
                rule: decision.rule.clone(),
                index,
                kind: EffectKind::Notify,
                method: call.method,
                params: call.params,
                marker,
                state: state.clone(),
                attempts: 0,
                updated_at_ms: now_ms(),
                subject: Some(subject.clone()),
            })?;
            if state == EffectState::Pending {
                queue.insert(deal_id);
            }
        }
    }
    if !queue.is_empty() {
        let at = now_ms();
        for &deal in &queue {
            worker.store.enqueue(deal, at)?;
        }
        worker.store.flush_async().await?;
        for deal in queue {
            worker.scheduler.wake(deal);
        }
    }
    Ok(())
}

/// FNV-1a: a short, stable tag of an effect's subject for its notification `TAG`.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
