//! The write side of a round: effects of earlier rounds resolved by their lookups (applied
//! before, or sent again), every write of the round sent in one `batch`, each result recorded,
//! and the follow-ups of a tunnel copy (its link comments) sent in one more.

use std::collections::{HashMap, HashSet};

use super::effects;
use super::job::{Ending, Job, failure};
use super::{Activity, Worker};
use crate::bitrix::{BatchCall, CallError, Response, Retry};
use crate::store::{EffectKind, EffectRecord, EffectState, StoreError, now_ms};
use crate::worker::counters::EffectResult;

impl Worker {
    /// Effects of earlier rounds, with the answers of their lookups: found (applied before),
    /// or queued in `job.writes` to be sent again.
    pub(crate) fn resolve_pending(
        &self,
        job: &mut Job,
        lookups: Vec<(usize, Option<Result<Response, CallError>>)>,
    ) -> Result<(), StoreError> {
        let deal_id = job.deal_id;
        let pending = std::mem::take(&mut job.pending);
        let mut lookups: HashMap<usize, Option<Result<Response, CallError>>> =
            lookups.into_iter().collect();
        for (i, mut effect) in pending.into_iter().enumerate() {
            match lookups.remove(&i) {
                Some(Some(Ok(answer))) => {
                    if let Some(id) =
                        effects::found_in_lookup(&effect, &answer.result, job.known_comments)
                    {
                        tracing::info!(deal_id, entry_id = effect.entry_id, rule = %effect.rule, event_id = job.event_id(), id = %id, "effect found applied by an earlier attempt");
                        effect.state = EffectState::Done { id: id.clone() };
                        effect.updated_at_ms = now_ms();
                        self.store.put_effect(&effect)?;
                        if effect.kind == EffectKind::CopyDeal {
                            // The crash may have come before the link comments were recorded.
                            let known = self.store.effects(deal_id)?;
                            for link in effects::link_comments(
                                &effect,
                                &id,
                                (&self.portal_origin, self.language),
                            ) {
                                let exists = known.iter().any(|e| {
                                    e.entry_id == link.entry_id
                                        && e.rule == link.rule
                                        && e.index == link.index
                                });
                                if !exists {
                                    self.store.put_effect(&link)?;
                                    job.writes.push(link);
                                }
                            }
                        }
                        self.emit_effect(&effect, Ok(id));
                        continue;
                    }
                }
                Some(Some(Err(error)))
                    if effect.kind == EffectKind::Comment && !error.is_retryable() =>
                {
                    // A portal that cannot list comments (method or scope missing): send it again
                    // rather than never (the only kind where a repeat is the lesser harm).
                    tracing::debug!(deal_id, %error, "comment lookup unavailable; sending again");
                }
                Some(Some(Err(error))) => {
                    job.end(failure(&error));
                    continue;
                }
                Some(None) => {
                    job.end(Ending::Retry("lookup: no answer".into()));
                    continue;
                }
                None => {}
            }
            effect.attempts += 1;
            effect.updated_at_ms = now_ms();
            self.store.put_effect(&effect)?;
            job.writes.push(effect);
        }
        Ok(())
    }

    /// Sends every write of the round in one batch and records each result.
    pub(crate) async fn write(&self, jobs: &mut [Job]) -> Result<(), StoreError> {
        // A second pass only for follow-ups of this round's writes (the comments linking a
        // tunnel copy with its source need the copy's id).
        for _ in 0..2 {
            if !self.write_once(jobs).await? {
                break;
            }
        }
        Ok(())
    }

    /// Sends the jobs' writes; returns whether follow-up writes were recorded for another pass.
    async fn write_once(&self, jobs: &mut [Job]) -> Result<bool, StoreError> {
        let owners = writes_to_send(jobs);
        let calls: Vec<BatchCall> = owners
            .iter()
            .map(|&(j, w)| BatchCall {
                method: jobs[j].writes[w].method.clone(),
                params: jobs[j].writes[w].params.clone(),
            })
            .collect();
        if calls.is_empty() {
            return Ok(false);
        }
        let results = self.client.batch(calls, Retry::Unsafe).await;
        let mut follow_ups: Vec<Vec<EffectRecord>> = vec![Vec::new(); jobs.len()];
        for ((j, w), result) in owners.into_iter().zip(results) {
            let job = &mut jobs[j];
            let mut effect = job.writes[w].clone();
            effect.updated_at_ms = now_ms();
            match result {
                Ok(answer) => match effects::created_id(effect.kind, &answer.result, job.deal_id) {
                    Some(id) => {
                        tracing::info!(deal_id = job.deal_id, entry_id = effect.entry_id, rule = %effect.rule,
                            event_id = job.event_id(), method = %effect.method, id = %id, "effect applied");
                        effect.state = EffectState::Done { id: id.clone() };
                        if effect.kind == EffectKind::CopyDeal {
                            follow_ups[j].extend(effects::link_comments(
                                &effect,
                                &id,
                                (&self.portal_origin, self.language),
                            ));
                        }
                        self.emit_effect(&effect, Ok(id));
                    }
                    None => {
                        let error = format!(
                            "{}: the portal answered {} without an id",
                            effect.method,
                            crate::text::cut(
                                &answer.result.to_string(),
                                crate::text::ERROR_TEXT_MAX
                            )
                        );
                        effect.state = EffectState::Failed {
                            error: error.clone(),
                        };
                        self.emit_effect(&effect, Err(error));
                    }
                },
                Err(error) if error.is_retryable() || error.outcome_unknown() => {
                    tracing::warn!(deal_id = job.deal_id, entry_id = effect.entry_id, rule = %effect.rule,
                        event_id = job.event_id(), %error, "effect not applied yet; will retry");
                    self.metrics
                        .effect(&effect.rule, effect.kind, EffectResult::Retried);
                    job.end(failure(&error));
                }
                Err(error) => {
                    tracing::warn!(deal_id = job.deal_id, entry_id = effect.entry_id, rule = %effect.rule,
                        event_id = job.event_id(), %error, "effect failed for good");
                    effect.state = EffectState::Failed {
                        error: error.to_string(),
                    };
                    if effect.kind == EffectKind::MoveBack {
                        job.state.echo = None;
                        self.store.put_deal_state(job.deal_id, &job.state)?;
                    }
                    self.emit_effect(&effect, Err(error.to_string()));
                }
            }
            self.store.put_effect(&effect)?;
        }
        let mut more = false;
        for (job, next) in jobs.iter_mut().zip(follow_ups) {
            for effect in &next {
                self.store.put_effect(effect)?;
            }
            more |= !next.is_empty();
            job.writes = next;
        }
        self.store.flush_async().await?;
        Ok(more)
    }

    /// An effect applied or failed for good: counted for `/metrics` and told to the listeners.
    pub(crate) fn emit_effect(&self, effect: &EffectRecord, result: Result<String, String>) {
        let counted = if result.is_ok() {
            EffectResult::Applied
        } else {
            EffectResult::Failed
        };
        self.metrics.effect(&effect.rule, effect.kind, counted);
        self.emit(Activity::Effect {
            deal_id: effect.deal_id,
            entry_id: effect.entry_id,
            rule: effect.rule.clone(),
            method: effect.method.clone(),
            params: effect.params.clone(),
            result,
        });
    }
}

/// The round's writes to send, as (job, write) indexes: one per intent key (deal, entry, rule,
/// effect: the store's effect key). The second line of defence against an effect made twice,
/// whatever listed it twice; it is logged, for it should never happen.
fn writes_to_send(jobs: &[Job]) -> Vec<(usize, usize)> {
    let mut intents = HashSet::new();
    let mut owners = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        for (w, effect) in job.writes.iter().enumerate() {
            if intents.insert((effect.deal_id, effect.entry_id, &effect.rule, effect.index)) {
                owners.push((j, w));
            } else {
                tracing::error!(deal_id = job.deal_id, entry_id = effect.entry_id, rule = %effect.rule,
                    index = effect.index, "the same write was listed twice in one round: sent once");
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::RECORD_VERSION;
    use crate::worker::job::tests::job;

    fn write(deal_id: u64, entry_id: u64, rule: &str, index: u32) -> EffectRecord {
        EffectRecord {
            v: RECORD_VERSION,
            deal_id,
            entry_id,
            rule: rule.into(),
            index,
            kind: EffectKind::Task,
            method: "tasks.task.add".into(),
            params: json!({}),
            marker: crate::rules::EffectId {
                deal_id,
                entry_id,
                rule,
                index,
            }
            .marker(),
            state: EffectState::Pending,
            attempts: 1,
            updated_at_ms: 0,
            subject: None,
        }
    }

    #[test]
    fn a_write_listed_twice_in_a_round_is_sent_once() {
        let jobs = [
            job(5, vec![write(5, 7, "offer", 0), write(5, 7, "offer", 0)]),
            job(6, vec![write(6, 7, "offer", 0), write(6, 7, "offer", 1)]),
        ];
        assert_eq!(writes_to_send(&jobs), vec![(0, 0), (1, 0), (1, 1)]);
    }
}
