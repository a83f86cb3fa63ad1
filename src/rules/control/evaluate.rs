//! Pure decisions of the time-driven rules: when an SLA is due and what it does when it fires,
//! whether a task is overdue and whom to tell, what a deal without a next step gets. The control
//! loop reads the portal before and applies the effects after, through the same intents as the
//! stage-entry rules; nothing here does I/O.

use chrono::{DateTime, Duration, FixedOffset};
use serde_json::Value;

use super::{DeadlineMoved, NoTask, Overdue, Sla, TaskPersonRef};
use crate::calendar::Calendar;
use crate::rules::decision::{Decision, Effect, Outcome, Person, SkipReason};
use crate::rules::evaluate::{Input, make_task, resolve};
use crate::rules::model::{PersonRef, RuleKind};
use crate::rules::template::{Cap, MESSAGE_CAP, RenderContext, Template, cut, display_value};

/// Each note of the decision log quotes deal values: bounded like the stage-entry rules' notes.
const NOTE_CAP: Cap = Cap::Chars(500);

fn decision(rule: &str, kind: RuleKind, outcome: Outcome, notes: Vec<String>) -> Decision {
    Decision {
        rule: rule.to_string(),
        kind,
        outcome,
        notes: notes.iter().map(|n| cut(n, NOTE_CAP).0).collect(),
    }
}

/// `2 hours`, `3 days`, `15 minutes`: how long, in the largest whole unit, for `{SLA_OVERDUE}`.
pub fn humanize(span: Duration) -> String {
    let minutes = span.num_minutes().max(0);
    let (n, unit) = if minutes >= 2 * 24 * 60 {
        (minutes / (24 * 60), "day")
    } else if minutes >= 2 * 60 {
        (minutes / 60, "hour")
    } else {
        (minutes, "minute")
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural}")
}

impl Sla {
    /// When its `repetition`-th firing (0: the first) is due for an entry made at `entered`;
    /// `None` past its last repetition.
    pub fn due(
        &self,
        calendar: &Calendar,
        entered: DateTime<FixedOffset>,
        repetition: u32,
    ) -> Option<DateTime<FixedOffset>> {
        if repetition >= self.firings() {
            return None;
        }
        let mut at = calendar.add(entered, self.within);
        if let Some(every) = self.repeat {
            for _ in 0..repetition {
                at = calendar.add(at, every);
            }
        }
        Some(at)
    }

    /// What the SLA does when its `repetition`-th firing comes and the deal (read now, in
    /// `input`) is still in the entry: its `when` is checked on the deal as it is now; the
    /// notifications and the task (whose `after` deadlines count from `now`).
    pub fn fire(&self, input: &Input<'_>, repetition: u32, now: DateTime<FixedOffset>) -> Decision {
        let mut notes = Vec::new();
        if let Some(failing) = self
            .when
            .iter()
            .find(|c| !c.holds(input.deal, input.catalog))
        {
            let shown = display_value(input.deal, input.catalog, &failing.field, &mut notes);
            let actual = if shown.is_empty() {
                "empty".to_string()
            } else {
                format!("\"{shown}\"")
            };
            return decision(
                &self.name,
                RuleKind::Sla,
                Outcome::Skipped(SkipReason::ConditionFalse),
                vec![format!(
                    "condition not met: {failing} (the deal has {actual})"
                )],
            );
        }
        let first_due = self.due(input.calendar, input.entry.created_time, 0);
        let overdue = first_due.map_or_else(String::new, |due| humanize(now - due));
        notes.push(format!(
            "firing {} of {} for the entry into {} at {}",
            repetition + 1,
            self.firings(),
            input.entry.stage_id,
            input.entry.created_time.to_rfc3339()
        ));
        let extra = [("SLA_OVERDUE", overdue)];
        let default;
        let template = match &self.message {
            Some(message) => message,
            None => {
                default = Template::parse(input.language.sla_message())
                    .unwrap_or_else(|_| Template::text(input.language.sla_message()));
                &default
            }
        };
        let people = deal_people(&self.notify, input, &mut notes);
        let mut effects = notices(
            people,
            template,
            &extra,
            input,
            ("the SLA message", &mut notes),
        );
        if let Some(task) = &self.task {
            // The task's `after` deadlines count from the moment the SLA fires, not from the
            // entry: the deal as the task sees it entered "now".
            let mut fields = input.deal.fields().clone();
            fields.insert("MOVED_TIME".into(), Value::String(now.to_rfc3339()));
            let deal = crate::rules::Deal::new(fields);
            let moved = Input {
                deal: &deal,
                ..*input
            };
            match make_task(task, &moved, &mut notes) {
                Ok(spec) => effects.push(Effect::CreateTask(spec)),
                Err(why) => {
                    return decision(&self.name, RuleKind::Sla, Outcome::Failed(why), notes);
                }
            }
        }
        decision(&self.name, RuleKind::Sla, Outcome::Fired(effects), notes)
    }

    /// The decision when a timer comes and the deal has left the entry (or is gone).
    pub fn left(&self, now_in: Option<String>) -> Decision {
        let note = match &now_in {
            Some(stage) => format!("the deal left the stage entry: it is now in {stage}"),
            None => "the deal left the stage entry".into(),
        };
        decision(
            &self.name,
            RuleKind::Sla,
            Outcome::Skipped(SkipReason::LeftStage { now_in }),
            vec![note],
        )
    }
}

/// Renders `template` once into one notification per distinct person of `people`, in the
/// order written.
fn notices(
    people: Vec<Person>,
    template: &Template,
    extra: &[(&str, String)],
    input: &Input<'_>,
    (what, notes): (&str, &mut Vec<String>),
) -> Vec<Effect> {
    let ctx = RenderContext {
        deal: input.deal,
        catalog: input.catalog,
        portal_origin: input.portal_origin,
        extra,
    };
    let message = template.render(&ctx, None, (what, MESSAGE_CAP), notes);
    let mut effects: Vec<Effect> = Vec::new();
    for user in people {
        let effect = Effect::Notify {
            user,
            message: message.clone(),
        };
        if !effects.contains(&effect) {
            effects.push(effect);
        }
    }
    effects
}

/// The people of a deal's rule, resolved against the deal.
fn deal_people(people: &[PersonRef], input: &Input<'_>, notes: &mut Vec<String>) -> Vec<Person> {
    people.iter().map(|p| resolve(p, input, notes)).collect()
}

/// A task as the control sweep read it (`tasks.task.list`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSeen {
    pub id: u64,
    pub title: String,
    pub responsible: Option<u64>,
    /// The responsible's name as the portal gives it, for `{TASK_RESPONSIBLE}`.
    pub responsible_name: Option<String>,
    pub deadline: Option<DateTime<FixedOffset>>,
    /// `REAL_STATUS`: 1 new, 2 pending, 3 in progress, 4 awaiting control, 5 completed,
    /// 6 deferred, 7 declined.
    pub status: u8,
    /// The deal it is bound to (`UF_CRM_TASK` `D_<id>`), the first one.
    pub deal_id: Option<u64>,
}

impl TaskSeen {
    /// New, pending or in progress (`control.md`): 4 to 7 are not open.
    pub fn is_open(&self) -> bool {
        matches!(self.status, 1..=3)
    }

    /// The address of the task in the portal, as Bitrix24 prints it.
    pub fn url(&self, portal_origin: &str) -> String {
        format!(
            "{}/company/personal/user/{}/tasks/task/view/{}/",
            portal_origin.trim_end_matches('/'),
            self.responsible.unwrap_or(0),
            self.id
        )
    }
}

/// `2026-12-03 18:00` in the calendar's zone, seconds dropped: how templates print a deadline.
pub fn print_moment(calendar: &Calendar, at: DateTime<FixedOffset>) -> String {
    at.with_timezone(&calendar.tz())
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// The placeholders of a task's templates.
fn task_vars(
    task: &TaskSeen,
    input: &Input<'_>,
    old_deadline: Option<DateTime<FixedOffset>>,
) -> Vec<(&'static str, String)> {
    let print = |at: Option<DateTime<FixedOffset>>| {
        at.map(|at| print_moment(input.calendar, at))
            .unwrap_or_default()
    };
    vec![
        ("TASK_ID", task.id.to_string()),
        ("TASK_TITLE", task.title.clone()),
        ("TASK_DEADLINE", print(task.deadline)),
        ("TASK_OLD_DEADLINE", print(old_deadline)),
        ("TASK_URL", task.url(input.portal_origin)),
        (
            "TASK_RESPONSIBLE",
            task.responsible_name
                .clone()
                .or_else(|| task.responsible.map(|id| format!("#{id}")))
                .unwrap_or_default(),
        ),
    ]
}

fn task_person(person: TaskPersonRef, task: &TaskSeen, input: &Input<'_>) -> Person {
    match person {
        TaskPersonRef::User(id) => Person::User(id),
        TaskPersonRef::Responsible => task.responsible.map_or_else(
            || Person::Unresolved("the task has no RESPONSIBLE_ID".into()),
            Person::User,
        ),
        TaskPersonRef::Supervisor => task.responsible.map_or_else(
            || Person::Unresolved("the task has no RESPONSIBLE_ID, so no supervisor".into()),
            Person::SupervisorOf,
        ),
        TaskPersonRef::Assigned => input.deal.assigned_by().map_or_else(
            || Person::Unresolved("the deal has no ASSIGNED_BY_ID".into()),
            Person::User,
        ),
    }
}

fn or_default(template: &Option<Template>, default: &str) -> Template {
    template
        .clone()
        .unwrap_or_else(|| Template::parse(default).unwrap_or_else(|_| Template::text(default)))
}

impl Overdue {
    /// Whether `task` is overdue at `now`: open, with a deadline, and `grace` past it.
    pub fn is_overdue(
        &self,
        calendar: &Calendar,
        task: &TaskSeen,
        now: DateTime<FixedOffset>,
    ) -> bool {
        task.is_open()
            && task
                .deadline
                .is_some_and(|deadline| calendar.add(deadline, self.grace) < now)
    }

    /// The notifications about an overdue task; `input.deal` is the deal it is bound to.
    pub fn report(&self, task: &TaskSeen, input: &Input<'_>) -> Decision {
        let notes = vec![format!(
            "task {} \"{}\" overdue since {}",
            task.id,
            task.title,
            task.deadline
                .map(|d| print_moment(input.calendar, d))
                .unwrap_or_default()
        )];
        let template = or_default(&self.message, input.language.overdue_message());
        self.tell(&self.notify, &template, (task, None), input, notes)
    }

    /// One notification per person of `people` about `task` (whose deadline was `old` before,
    /// for a move), its template rendered with the task's placeholders.
    fn tell(
        &self,
        people: &[TaskPersonRef],
        template: &Template,
        (task, old): (&TaskSeen, Option<DateTime<FixedOffset>>),
        input: &Input<'_>,
        mut notes: Vec<String>,
    ) -> Decision {
        let extra = task_vars(task, input, old);
        let people = people
            .iter()
            .map(|&p| task_person(p, task, input))
            .collect();
        let effects = notices(people, template, &extra, input, ("the message", &mut notes));
        decision(
            &self.name,
            RuleKind::Overdue,
            Outcome::Fired(effects),
            notes,
        )
    }

    /// The notifications about a moved deadline (`[overdue.deadline_moved]`); `None` when the
    /// rule does not watch moves.
    pub fn moved(
        &self,
        task: &TaskSeen,
        old_deadline: Option<DateTime<FixedOffset>>,
        input: &Input<'_>,
    ) -> Option<Decision> {
        let DeadlineMoved { notify, message } = self.deadline_moved.as_ref()?;
        let print = |at: Option<DateTime<FixedOffset>>| {
            at.map_or_else(|| "none".to_string(), |at| print_moment(input.calendar, at))
        };
        let notes = vec![format!(
            "task {} deadline moved from {} to {}",
            task.id,
            print(old_deadline),
            print(task.deadline)
        )];
        let template = or_default(message, input.language.deadline_moved_message());
        Some(self.tell(notify, &template, (task, old_deadline), input, notes))
    }
}

impl NoTask {
    /// The notifications about a deal without a next step since `since`.
    pub fn report(&self, input: &Input<'_>, since: DateTime<FixedOffset>) -> Decision {
        let mut notes = vec![format!(
            "no open task{} since {}",
            if self.count_activities {
                " or activity"
            } else {
                ""
            },
            print_moment(input.calendar, since)
        )];
        let template = or_default(&self.message, input.language.no_task_message());
        let people = deal_people(&self.notify, input, &mut notes);
        let effects = notices(people, &template, &[], input, ("the message", &mut notes));
        decision(&self.name, RuleKind::NoTask, Outcome::Fired(effects), notes)
    }

    /// When a deal counted from `since` is past `after`.
    pub fn due(&self, calendar: &Calendar, since: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        calendar.add(since, self.after)
    }
}
