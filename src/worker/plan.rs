//! The plan step of the decide path: the fired decisions of a stage entry turned into effect
//! intents, each with its REST call ([`effects::plan`]), its marker and its people resolved.
//! Supervisors are the one thing that needs the portal: all of an entry's are read together
//! first ([`super::People`]).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::Worker;
use super::effects::{self, PlannedCall};
use super::job::{Ending, Job};
use super::portal::PersonError;
use crate::rules::EffectId;
use crate::rules::{Decision, Effect, Outcome, Person, StageEntry};
use crate::store::{EffectKind, EffectRecord, EffectState};

impl Worker {
    /// Turns the fired decisions into effect records with their people resolved. An effect that
    /// cannot be planned (a person not found for good) is recorded failed, with a note on its
    /// decision; a portal failure while reading people is the job's [`Ending`].
    pub(crate) async fn plan(
        &self,
        job: &Job,
        entry: &StageEntry,
        decisions: &mut [Decision],
    ) -> Result<Vec<EffectRecord>, Ending> {
        self.plan_at(job, entry, decisions, 0).await
    }

    /// As [`Worker::plan`], the effects numbered from `first_index` (a timer's firing has its
    /// own block of numbers: [`super::timers::sla_index`]).
    pub(crate) async fn plan_at(
        &self,
        job: &Job,
        entry: &StageEntry,
        decisions: &mut [Decision],
        first_index: u32,
    ) -> Result<Vec<EffectRecord>, Ending> {
        // Supervisors need the portal: resolve them all first, together.
        let mut wanted: Vec<u64> = Vec::new();
        for decision in decisions.iter() {
            if let Outcome::Fired(list) = &decision.outcome {
                for person in list.iter().flat_map(people_of) {
                    if let Person::SupervisorOf(user) = person {
                        wanted.push(*user);
                    }
                }
            }
        }
        let mut supervisors: HashMap<u64, Result<u64, String>> = HashMap::new();
        if !wanted.is_empty() {
            for (user, result) in self.people.supervisors(&self.client, &wanted).await {
                match result {
                    Ok(head) => supervisors.insert(user, Ok(head)),
                    Err(PersonError::NotFound(why)) => supervisors.insert(user, Err(why)),
                    Err(PersonError::Transient(why)) => return Err(Ending::Retry(why)),
                };
            }
        }
        let mut resolve = |person: &Person| -> Result<Value, String> {
            match person {
                Person::User(id) => Ok(json!(id)),
                Person::SupervisorOf(user) => supervisors
                    .get(user)
                    .cloned()
                    .unwrap_or_else(|| Err("no supervisor".into()))
                    .map(|id| json!(id)),
                Person::Unresolved(why) => Err(format!("responsible not resolved: {why}")),
            }
        };
        let mut records = Vec::new();
        for decision in decisions.iter_mut() {
            let Outcome::Fired(list) = &decision.outcome else {
                continue;
            };
            for (index, effect) in list.iter().enumerate() {
                let index = first_index.saturating_add(index as u32);
                let id = EffectId {
                    deal_id: job.deal_id,
                    entry_id: entry.id,
                    rule: &decision.rule,
                    index,
                };
                let marker = id.marker();
                let planned = effects::plan(effect, job.deal_id, marker.clone(), &mut resolve);
                let (call, state) = match planned {
                    Ok(call) => (call, EffectState::Pending),
                    Err(error) => {
                        tracing::warn!(deal_id = job.deal_id, entry_id = entry.id, rule = %decision.rule, event_id = job.event_id(), %error, "effect failed for good");
                        decision
                            .notes
                            .push(format!("effect {index} failed: {error}"));
                        (
                            PlannedCall {
                                kind: kind_of(effect),
                                method: String::new(),
                                params: Value::Null,
                                marker,
                            },
                            EffectState::Failed { error },
                        )
                    }
                };
                records.push(effects::intent(id, call, state));
            }
        }
        Ok(records)
    }
}

fn people_of(effect: &Effect) -> Vec<&Person> {
    match effect {
        Effect::CreateTask(t) => std::iter::once(&t.responsible)
            .chain(t.auditors.iter())
            .collect(),
        Effect::Notify { user, .. } => vec![user],
        Effect::CopyDeal(c) => vec![&c.responsible],
        Effect::AddComment { .. } | Effect::MoveBack { .. } => Vec::new(),
    }
}

fn kind_of(effect: &Effect) -> EffectKind {
    match effect {
        Effect::CreateTask(_) => EffectKind::Task,
        Effect::AddComment { .. } => EffectKind::Comment,
        Effect::Notify { .. } => EffectKind::Notify,
        Effect::MoveBack { .. } => EffectKind::MoveBack,
        Effect::CopyDeal(_) => EffectKind::CopyDeal,
    }
}
