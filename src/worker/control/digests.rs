//! The `[[digest]]`s: at each slot (working days, calendar zone), the items that stand *now*
//! (re-read, not remembered) of the rules a digest includes, one notification per recipient.
//!
//! Exactly once per (digest, recipient, date, slot): the store remembers each one sent; the
//! notification's `TAG` is that key, so a crash between the send and the record makes the
//! re-send after the restart replace the first notification rather than show a second one
//! (`im.notify.system.add`: a notification with an existing `TAG` replaces the older one). A
//! slot missed while the service was stopped is sent at start only while it is still the same
//! working period; otherwise it is skipped and logged. An explicit send (`b24-robot digest`)
//! is not a slot and is not deduplicated.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, FixedOffset};
use serde_json::json;

use super::sweep::{self, SweepError};
use crate::bitrix::{Retry, calls};
use crate::rules::RuleSet;
use crate::rules::control::Digest;
use crate::rules::control::TaskScope;
use crate::rules::control::digest::{Item, ItemKind, ItemTask, Slot};
use crate::store::TimerState;
use crate::worker::Worker;

/// The slots this run has handled already (sent, found sent or skipped), and those whose send
/// failed lately (tried again a minute later, not at every turn of the loop).
#[derive(Default)]
pub struct Slots {
    done: HashSet<(String, Slot)>,
    failed: std::collections::HashMap<(String, Slot), std::time::Instant>,
}

/// How long a slot whose digest failed waits before it is tried again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// One recipient's digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Composed {
    pub recipient: u64,
    pub text: String,
    pub items: usize,
}

/// Sends the digests whose slot has come (once each).
pub async fn due(worker: &Worker, rules: &RuleSet, slots: &mut Slots) {
    let now = worker.clock.now().fixed_offset();
    for digest in rules.controls().digests() {
        let Some(slot) = digest.latest_slot(&worker.calendar, now) else {
            continue;
        };
        let id = (digest.name().to_string(), slot);
        let failed_lately = slots
            .failed
            .get(&id)
            .is_some_and(|at| at.elapsed() < RETRY_AFTER);
        if slots.done.contains(&id) || failed_lately {
            continue;
        }
        if !digest.still_current(&worker.calendar, slot, now) {
            if slot_started_this_run(digest, worker, slot) {
                tracing::info!(digest = digest.name(), %slot, "digest slot missed while the service was stopped: skipped (the working period is over)");
                worker
                    .metrics
                    .control_effect(digest.name(), "digest", "skipped");
            }
            slots.done.insert(id);
            continue;
        }
        match send(worker, rules, digest, Some(slot), false).await {
            Ok(sent) => {
                tracing::info!(digest = digest.name(), %slot, recipients = sent.len(), "digest slot handled");
                slots.failed.remove(&id);
                slots.done.insert(id);
            }
            Err(error) => {
                tracing::warn!(digest = digest.name(), %slot, %error, "digest failed; will retry in a minute");
                slots.failed.insert(id, std::time::Instant::now());
            }
        }
    }
}

/// Whether a slot is worth a log line: it ended after the service's first start (an older one
/// was never this service's to send).
fn slot_started_this_run(digest: &Digest, worker: &Worker, slot: Slot) -> bool {
    let first = worker.store.first_start_ms().ok().flatten().unwrap_or(0) as i64;
    digest
        .slot_moment(&worker.calendar, slot)
        .timestamp_millis()
        >= first
}

/// Builds the digest now and, unless `dry_run`, sends it; `slot` makes each recipient's send
/// once only. Returns each recipient's text.
pub async fn send(
    worker: &Worker,
    rules: &RuleSet,
    digest: &Digest,
    slot: Option<Slot>,
    dry_run: bool,
) -> Result<Vec<Composed>, SweepError> {
    let now = worker.clock.now().fixed_offset();
    let items = items(worker, rules, digest, now).await?;
    let people: Vec<u64> = items.iter().filter_map(|i| i.person).collect();
    let heads: BTreeMap<u64, u64> =
        if matches!(digest.to(), crate::rules::control::DigestTo::Supervisor) && !people.is_empty()
        {
            worker
                .people
                .supervisors(&worker.client, &people)
                .await
                .into_iter()
                .filter_map(|(u, r)| r.ok().map(|h| (u, h)))
                .collect()
        } else {
            BTreeMap::new()
        };
    let (by_recipient, nobody) = digest.recipients(&items, &|u| heads.get(&u).copied());
    if !nobody.is_empty() {
        tracing::warn!(
            digest = digest.name(),
            items = nobody.len(),
            "digest items whose person has no supervisor: not sent to anyone"
        );
    }
    let names = sweep::names(worker, &people).await;
    let at = slot.map_or(now, |s| digest.slot_moment(&worker.calendar, s));
    let mut out = Vec::new();
    let mut recipients: Vec<u64> = by_recipient.keys().copied().collect();
    if let crate::rules::control::DigestTo::Users(users) = digest.to() {
        recipients = users.clone();
    }
    for recipient in recipients {
        let mine = by_recipient.get(&recipient).cloned().unwrap_or_default();
        let name_of = |u: u64| names.get(&u).cloned().unwrap_or_else(|| format!("#{u}"));
        let Some(text) = digest.compose(&mine, (&worker.calendar, worker.language), at, &name_of)
        else {
            continue;
        };
        if !dry_run {
            let key = match slot {
                Some(s) => format!(
                    "{}/{recipient}/{}/{}",
                    digest.name(),
                    s.date,
                    s.time.format("%H:%M")
                ),
                None => format!("{}/{recipient}/now/{}", digest.name(), now.timestamp()),
            };
            if slot.is_some() && worker.store.digest_sent(&key)? {
                continue;
            }
            let tag = format!("b24robot:digest:{key}");
            worker
                .client
                .send(
                    calls::notify(json!(recipient), &text, &tag, crate::worker::ORIGINATOR),
                    Retry::Unsafe,
                )
                .await?;
            if slot.is_some() {
                worker.store.mark_digest(&key, "sent")?;
                worker.store.flush_async().await?;
            }
            worker
                .metrics
                .control_effect(digest.name(), "digest", "sent");
        }
        out.push(Composed {
            recipient,
            text,
            items: mine.len(),
        });
    }
    Ok(out)
}

/// The items that stand now for the rules the digest includes.
pub async fn items(
    worker: &Worker,
    rules: &RuleSet,
    digest: &Digest,
    now: DateTime<FixedOffset>,
) -> Result<Vec<Item>, SweepError> {
    let seen = sweep::read(worker, rules).await?;
    items_of(worker, rules, digest, (&seen, now))
}

/// The items of `digest` in what one read of the portal (`seen`) found: several digests (the
/// dashboard's control page) share one read.
pub fn items_of(
    worker: &Worker,
    rules: &RuleSet,
    digest: &Digest,
    (seen, now): (&sweep::Seen, DateTime<FixedOffset>),
) -> Result<Vec<Item>, SweepError> {
    let controls = rules.controls();
    let wanted: Vec<&str> = digest.include().iter().map(String::as_str).collect();
    let origin = worker.portal_origin.trim_end_matches('/').to_string();
    let deal_url = |id: u64| format!("{origin}/crm/deal/details/{id}/");
    let title_of = |id: u64| {
        seen.deals
            .get(&id)
            .and_then(|d| d.get("TITLE"))
            .and_then(|v| v.as_str())
            .map_or_else(|| format!("#{id}"), str::to_string)
    };
    let ours: HashSet<u64> = worker.store.created_tasks()?.into_iter().collect();
    let mut items = Vec::new();
    for rule in controls
        .overdue()
        .iter()
        .filter(|r| wanted.contains(&r.name()))
    {
        for task in seen.tasks.values() {
            let Some(deal_id) = task.deal_id else {
                continue;
            };
            let in_scope = match rule.tasks() {
                TaskScope::Rules => ours.contains(&task.id),
                TaskScope::All => true,
            };
            if !in_scope || !rule.is_overdue(&worker.calendar, task, now) {
                continue;
            }
            items.push(Item {
                kind: ItemKind::Overdue,
                rule: rule.name().to_string(),
                person: task.responsible,
                deal_id,
                deal_title: title_of(deal_id),
                deal_url: deal_url(deal_id),
                task: Some(ItemTask {
                    id: task.id,
                    title: task.title.clone(),
                    url: task.url(&worker.portal_origin),
                    deadline: task.deadline,
                }),
                since: task.deadline.unwrap_or(now),
            });
        }
    }
    for rule in controls
        .no_task()
        .iter()
        .filter(|r| wanted.contains(&r.name()))
    {
        for (&deal_id, deal) in &seen.deals {
            let key = format!("{}/{}", rule.name(), deal_id);
            let Some(episode) = worker.store.episode(&key)? else {
                continue;
            };
            if !episode.open {
                continue;
            }
            let since = DateTime::parse_from_rfc3339(&episode.since).unwrap_or(now);
            let due = rule.due(&worker.calendar, since);
            if due > now {
                continue;
            }
            items.push(Item {
                kind: ItemKind::NoTask,
                rule: rule.name().to_string(),
                person: deal.assigned_by(),
                deal_id,
                deal_title: title_of(deal_id),
                deal_url: deal_url(deal_id),
                task: None,
                since: due,
            });
        }
    }
    let slas: Vec<&str> = controls
        .sla()
        .iter()
        .map(|r| r.name())
        .filter(|n| wanted.contains(n))
        .collect();
    if !slas.is_empty() {
        for timer in worker.store.fired_timers()? {
            if !slas.contains(&timer.rule.as_str())
                || timer.repetition == 0 && timer.state == TimerState::Pending
            {
                continue;
            }
            let state = worker.store.deal_state(timer.deal_id)?.unwrap_or_default();
            if state.last_entry_id != timer.entry_id {
                continue;
            }
            let Some(sla) = controls.sla_named(&timer.rule) else {
                continue;
            };
            let Some(due) = sla.due(&worker.calendar, timer.entry.created_time, 0) else {
                continue;
            };
            items.push(Item {
                kind: ItemKind::Sla,
                rule: timer.rule.clone(),
                person: seen.deals.get(&timer.deal_id).and_then(|d| d.assigned_by()),
                deal_id: timer.deal_id,
                deal_title: title_of(timer.deal_id),
                deal_url: deal_url(timer.deal_id),
                task: None,
                since: due,
            });
        }
    }
    Ok(items)
}
