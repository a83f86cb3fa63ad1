//! What the offline commands (`dry-run`, `test`) share: the worker's own planning of the effects
//! that fired, with people resolved from what the command knows instead of from the portal.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::rules::{Decision, EffectId, Outcome, Person};
use crate::worker::{PlannedCall, plan};

/// One effect that fired, planned as the worker would plan it (stage entry 0: there is no
/// stored entry offline).
pub struct Planned<'a> {
    pub rule: &'a str,
    pub index: u32,
    /// The call, or why it cannot be made.
    pub call: Result<PlannedCall, String>,
}

/// The people only the portal knows, offline: supervisors from the given map (a rule test's
/// `supervisors`), everyone else shown as `<unresolved: ...>`, with `hint` (how to make it
/// known) after the supervisor's placeholder.
pub fn plan_fired<'a>(
    decisions: &'a [Decision],
    deal_id: u64,
    supervisors: &BTreeMap<u64, u64>,
    hint: &dyn Fn(u64) -> String,
) -> Vec<Planned<'a>> {
    let mut resolve = |person: &Person| -> Result<Value, String> {
        Ok(match person {
            Person::User(id) => json!(id),
            Person::SupervisorOf(user) => match supervisors.get(user) {
                Some(head) => json!(head),
                None => json!(format!(
                    "<unresolved: supervisor of user {user}{}>",
                    hint(*user)
                )),
            },
            Person::Unresolved(why) => json!(format!("<unresolved: {why}>")),
        })
    };
    let mut planned = Vec::new();
    for decision in decisions {
        let Outcome::Fired(effects) = &decision.outcome else {
            continue;
        };
        for (index, effect) in effects.iter().enumerate() {
            let index = index as u32;
            let mark = EffectId {
                deal_id,
                entry_id: 0,
                rule: &decision.rule,
                index,
            }
            .marker();
            planned.push(Planned {
                rule: &decision.rule,
                index,
                call: plan(effect, deal_id, mark, &mut resolve),
            });
        }
    }
    planned
}
