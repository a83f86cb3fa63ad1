//! What evaluation returns: for each rule concerned, a decision (fired with its effects,
//! skipped, or failed) and the reasons in its notes.
//!
//! These are the rule language's outputs. The worker plans and applies the effects; the store
//! keeps the decisions in its entry records (the decision log) and the effects in its intents,
//! so the serialised form of every type here is a stored format: a rename changes what a later
//! release reads (the tests below pin it).

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use crate::rules::model::RuleKind;

/// The decisions for one stage entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    pub decisions: Vec<Decision>,
    /// Tunnels that did not copy because the deal is already the copy at
    /// `rules.max_tunnel_depth` of a chain (their decisions failed): the worker logs and counts
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains_stopped: Vec<String>,
}

impl Evaluation {
    /// All effects of fired rules, in decision order, with the rule that made each.
    pub fn effects(&self) -> impl Iterator<Item = (&str, &Effect)> {
        self.decisions.iter().flat_map(|d| match &d.outcome {
            Outcome::Fired(effects) => effects.iter().map(|e| (d.rule.as_str(), e)).collect(),
            _ => Vec::new(),
        })
    }
}

/// What one rule decided for the entry, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub rule: String,
    pub kind: RuleKind,
    pub outcome: Outcome,
    /// Details for the decision log: empty fields, fallbacks, "revert acts as warn".
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// The rule applies; its effects (possibly none, e.g. all required fields are filled).
    Fired(Vec<Effect>),
    Skipped(SkipReason),
    /// The rule applies but cannot be carried out (the deal has no ID); not retried.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SkipReason {
    /// A `when` condition does not hold (the notes name it).
    ConditionFalse,
    /// A gate rule moved the deal back: it never really entered the stage.
    Reverted { by: String },
    /// The deal is the copy this tunnel made of deal `origin`: a copy never fires the tunnel
    /// that made it.
    OwnCopy { origin: u64 },
    /// A time-driven rule came due but the deal had left the stage entry it was armed for
    /// (`now_in`: the stage it is in now, when known).
    LeftStage { now_in: Option<String> },
}

/// Which effect: the deal, its stage entry, the rule and the effect's place in the rule.
/// Named fields, never positional: two ids side by side are easily swapped. The store keys an
/// effect's record by these four; its marker and a copy's `ORIGIN_ID` spell them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectId<'a> {
    pub deal_id: u64,
    pub entry_id: u64,
    pub rule: &'a str,
    pub index: u32,
}

impl EffectId<'_> {
    /// `b24robot:DEAL:ENTRY:RULE:INDEX`: by it, what the effect created is found again.
    pub fn marker(&self) -> String {
        format!("b24robot:{}", self.origin_id(1))
    }

    /// A copy's `ORIGIN_ID` text: the marker without its prefix (the field is short on some
    /// portals); the depth in a chain of copies is written only from 2 on, so that a copy of
    /// depth 1 has the same `ORIGIN_ID` as one made by an earlier release (and is found again).
    pub fn origin_id(&self, depth: u32) -> String {
        let base = format!(
            "{}:{}:{}:{}",
            self.deal_id, self.entry_id, self.rule, self.index
        );
        if depth > 1 {
            format!("{base}:{depth}")
        } else {
            base
        }
    }
}

/// In words, for people: `dry-run`, `test` and `explain` print a decision this way.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Fired(effects) => write!(f, "fired, {} effect(s)", effects.len()),
            Outcome::Skipped(reason) => write!(f, "skipped: {reason}"),
            Outcome::Failed(error) => write!(f, "failed: {error}"),
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::ConditionFalse => f.write_str("condition false"),
            SkipReason::Reverted { by } => write!(f, "the deal was moved back by rule \"{by}\""),
            SkipReason::OwnCopy { origin } => {
                write!(f, "the deal is this tunnel's copy of deal {origin}")
            }
            SkipReason::LeftStage {
                now_in: Some(stage),
            } => {
                write!(f, "left the stage (now in {stage})")
            }
            SkipReason::LeftStage { now_in: None } => f.write_str("left the stage"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Effect {
    /// `tasks.task.add` bound to the deal.
    CreateTask(TaskSpec),
    /// `crm.timeline.comment.add` on the deal.
    AddComment { text: String },
    /// `im.notify.system.add`.
    Notify { user: Person, message: String },
    /// Move the deal back (a revert); the entry it causes fires no rules.
    MoveBack { to_stage: String },
    /// `crm.deal.add` (a tunnel).
    CopyDeal(CopySpec),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskSpec {
    pub title: String,
    pub description: Option<String>,
    pub responsible: Person,
    pub auditors: Vec<Person>,
    pub deadline: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CopySpec {
    pub to_pipeline: u64,
    pub to_stage: String,
    /// Copied fields (raw values, as `crm.deal.add` takes them) then `set` (rendered).
    pub fields: Map<String, Value>,
    pub responsible: Person,
    /// Where the copy stands in a chain of copies: 1 for the copy of a deal people made, 2 for
    /// the copy of a copy... It goes into the copy's `ORIGIN_ID`. A decision recorded before
    /// depths existed has none: 1.
    #[serde(default = "first_copy")]
    pub depth: u32,
}

fn first_copy() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Person {
    User(u64),
    /// The supervisor of this user; the core resolves it through user.get/department.get.
    SupervisorOf(u64),
    /// Nobody could be named (e.g. the deal field is empty): why.
    Unresolved(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decisions of every outcome and effect, as the store keeps them in its entry records.
    fn decisions() -> Vec<Decision> {
        let responsible = Person::User(3);
        let mut fields = Map::new();
        fields.insert("TITLE".into(), Value::String("Repeat: Acme".into()));
        vec![
            Decision {
                rule: "offer".into(),
                kind: RuleKind::Task,
                outcome: Outcome::Fired(vec![Effect::CreateTask(TaskSpec {
                    title: "Send the offer".into(),
                    description: None,
                    responsible: Person::SupervisorOf(3),
                    auditors: vec![Person::Unresolved("field UF_CRM_X is empty".into())],
                    deadline: DateTime::parse_from_rfc3339("2026-03-02T18:00:00+03:00").ok(),
                })]),
                notes: vec!["a note".into()],
            },
            Decision {
                rule: "inn".into(),
                kind: RuleKind::Require,
                outcome: Outcome::Fired(vec![
                    Effect::MoveBack {
                        to_stage: "NEW".into(),
                    },
                    Effect::AddComment {
                        text: "Fill in INN.".into(),
                    },
                    Effect::Notify {
                        user: responsible.clone(),
                        message: "Deal \"Acme\": Fill in INN.".into(),
                    },
                ]),
                notes: Vec::new(),
            },
            Decision {
                rule: "repeat".into(),
                kind: RuleKind::Tunnel,
                outcome: Outcome::Fired(vec![Effect::CopyDeal(CopySpec {
                    to_pipeline: 2,
                    to_stage: "C2:NEW".into(),
                    fields,
                    responsible,
                    depth: 1,
                })]),
                notes: Vec::new(),
            },
            Decision {
                rule: "big".into(),
                kind: RuleKind::LossReason,
                outcome: Outcome::Skipped(SkipReason::ConditionFalse),
                notes: Vec::new(),
            },
            Decision {
                rule: "nps".into(),
                kind: RuleKind::Nps,
                outcome: Outcome::Skipped(SkipReason::Reverted { by: "inn".into() }),
                notes: Vec::new(),
            },
            Decision {
                rule: "repeat".into(),
                kind: RuleKind::Tunnel,
                outcome: Outcome::Skipped(SkipReason::OwnCopy { origin: 5 }),
                notes: Vec::new(),
            },
            Decision {
                rule: "offer".into(),
                kind: RuleKind::Task,
                outcome: Outcome::Failed("the deal has no ID".into()),
                notes: Vec::new(),
            },
        ]
    }

    /// The stored form, written out: a rename of any type, variant or field above fails here
    /// instead of silently changing what the store holds.
    const STORED: &str = concat!(
        r#"[{"rule":"offer","kind":"task","outcome":{"Fired":[{"CreateTask":{"title":"Send the offer","description":null,"responsible":{"SupervisorOf":3},"auditors":[{"Unresolved":"field UF_CRM_X is empty"}],"deadline":"2026-03-02T18:00:00+03:00"}}]},"notes":["a note"]},"#,
        r#"{"rule":"inn","kind":"require","outcome":{"Fired":[{"MoveBack":{"to_stage":"NEW"}},{"AddComment":{"text":"Fill in INN."}},{"Notify":{"user":{"User":3},"message":"Deal \"Acme\": Fill in INN."}}]},"notes":[]},"#,
        r#"{"rule":"repeat","kind":"tunnel","outcome":{"Fired":[{"CopyDeal":{"to_pipeline":2,"to_stage":"C2:NEW","fields":{"TITLE":"Repeat: Acme"},"responsible":{"User":3},"depth":1}}]},"notes":[]},"#,
        r#"{"rule":"big","kind":"loss_reason","outcome":{"Skipped":"ConditionFalse"},"notes":[]},"#,
        r#"{"rule":"nps","kind":"nps","outcome":{"Skipped":{"Reverted":{"by":"inn"}}},"notes":[]},"#,
        r#"{"rule":"repeat","kind":"tunnel","outcome":{"Skipped":{"OwnCopy":{"origin":5}}},"notes":[]},"#,
        r#"{"rule":"offer","kind":"task","outcome":{"Failed":"the deal has no ID"},"notes":[]}]"#,
    );

    #[test]
    fn decisions_are_stored_in_the_form_earlier_releases_wrote() {
        let decisions = decisions();
        assert_eq!(
            serde_json::to_string(&decisions).expect("serialises"),
            STORED
        );
        let read: Vec<Decision> = serde_json::from_str(STORED).expect("reads");
        assert_eq!(read, decisions);
    }

    #[test]
    fn an_evaluation_without_stopped_chains_is_stored_without_the_field() {
        let evaluation = Evaluation {
            decisions: Vec::new(),
            chains_stopped: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&evaluation).expect("serialises"),
            r#"{"decisions":[]}"#
        );
    }
}
