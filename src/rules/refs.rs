//! What the rules name on the portal (pipelines, stages, deal fields, list values, users; a
//! plan's pipeline and the people of its `targets`), for
//! `check --portal` and for the fields the worker reads: of each stage-entry rule, and of each
//! time-driven one, whose templates' own placeholders (`{TASK_TITLE}`, `{SLA_OVERDUE}`, ...)
//! are no deal fields.

use std::collections::BTreeSet;

use super::condition::Condition;
use super::control::{DigestTo, Origin, TaskPersonRef};
use super::model::{Body, DeadlineBase, PersonRef, Rule, TaskTemplate};
use super::plan::PlanTarget;
use super::template::{self, Template, is_control_placeholder};
use super::{RuleKind, RuleSet};

/// What one rule names on the portal, for `check --portal`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalRefs {
    /// Pipelines (`CATEGORY_ID`): the rule's own and a tunnel's target.
    pub pipelines: Vec<u64>,
    /// Exact stage ids: the rule's stage and a tunnel's target stage.
    pub stages: Vec<String>,
    /// Deal fields.
    pub fields: Vec<String>,
    /// A loss reason's field and its accepted values (option labels of a list field).
    pub allowed: Option<(String, Vec<String>)>,
    /// Users named by id (responsible, auditors, notify, a digest's recipients), each once.
    pub users: Vec<u64>,
}

/// One rule of any kind and what it names: `check --portal` reports at its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRefs {
    pub name: String,
    pub kind: RuleKind,
    pub file: String,
    pub line: usize,
    pub refs: PortalRefs,
}

/// Gathers the deal fields and user ids a rule names.
#[derive(Default)]
struct Names {
    fields: BTreeSet<String>,
    users: BTreeSet<u64>,
    /// Whether the time-driven rules' placeholders are left out: they are, in those rules'
    /// templates (where the loader let them be); a stage-entry rule has no such placeholder,
    /// so there a `{DATE}` is a field `check --portal` should look for.
    control: bool,
}

impl Names {
    /// For a time-driven rule: its own placeholders are left out.
    fn of_control() -> Names {
        Names {
            control: true,
            ..Names::default()
        }
    }

    fn field(&mut self, name: &str) {
        let own = name == template::DEAL_URL
            || name == template::MISSING
            || (self.control && is_control_placeholder(name));
        if !own {
            self.fields.insert(name.to_string());
        }
    }

    fn template(&mut self, template: &Template) {
        template.placeholders().for_each(|name| self.field(name));
    }

    fn person(&mut self, person: &PersonRef) {
        match person {
            PersonRef::Field(f) => self.field(f),
            PersonRef::User(id) => {
                self.users.insert(*id);
            }
            PersonRef::Assigned | PersonRef::Supervisor => {}
        }
    }

    fn task_person(&mut self, person: &TaskPersonRef) {
        if let TaskPersonRef::User(id) = person {
            self.users.insert(*id);
        }
    }

    fn conditions(&mut self, conditions: &[Condition]) {
        conditions.iter().for_each(|c| self.field(&c.field));
    }

    fn task(&mut self, task: &TaskTemplate) {
        self.template(&task.title);
        task.description.iter().for_each(|t| self.template(t));
        self.person(&task.responsible);
        task.auditors.iter().for_each(|p| self.person(p));
        let mut deadline = Some(&task.deadline);
        while let Some(d) = deadline {
            if let DeadlineBase::AfterField(_, f) | DeadlineBase::BeforeField(_, f) = &d.base {
                self.field(f);
            }
            deadline = d.fallback.as_deref();
        }
    }

    fn rule(rule: &Rule) -> Names {
        let mut names = Names::default();
        names.conditions(&rule.when);
        match &rule.body {
            Body::Task(task) => names.task(task),
            Body::Nps { task, score_field } => {
                names.task(task);
                score_field.iter().for_each(|f| names.field(f));
            }
            Body::Require(require) => {
                require.fields.iter().for_each(|f| names.field(f));
                require.message.iter().for_each(|t| names.template(t));
            }
            Body::LossReason(loss) => {
                names.field(&loss.field);
                loss.message.iter().for_each(|t| names.template(t));
                loss.review.iter().for_each(|t| names.task(t));
            }
            Body::Tunnel(tunnel) => {
                tunnel.copy.iter().for_each(|f| names.field(f));
                for (field, template) in &tunnel.set {
                    names.field(field);
                    names.template(template);
                }
                names.person(&tunnel.responsible);
            }
        }
        names
    }

    fn into_refs(self, pipelines: Vec<u64>, stages: Vec<String>) -> PortalRefs {
        PortalRefs {
            pipelines,
            stages,
            fields: self.fields.into_iter().collect(),
            allowed: None,
            users: self.users.into_iter().collect(),
        }
    }
}

impl Rule {
    /// The pipelines, stages, fields, list values and users this rule names.
    pub fn portal_refs(&self) -> PortalRefs {
        let mut pipelines: Vec<u64> = self.pipelines.iter().flatten().copied().collect();
        // A rule of several pipelines names its stage in each: the portal must have them all.
        let mut stages = self.stage_ids();
        let mut allowed = None;
        match &self.body {
            Body::Tunnel(tunnel) => {
                pipelines.push(tunnel.to_pipeline);
                stages.push(tunnel.to_stage.clone());
            }
            Body::LossReason(loss) => {
                allowed = loss
                    .allowed
                    .clone()
                    .map(|values| (loss.field.clone(), values));
            }
            _ => {}
        }
        PortalRefs {
            allowed,
            ..Names::rule(self).into_refs(pipelines, stages)
        }
    }

    /// Every deal field this rule names.
    pub fn referenced_fields(&self) -> BTreeSet<String> {
        Names::rule(self).fields
    }
}

impl RuleSet {
    /// What every rule names on the portal, of every kind: the stage-entry rules in file
    /// order, then the time-driven ones by kind.
    pub fn portal_refs(&self) -> Vec<RuleRefs> {
        let mut out: Vec<RuleRefs> = self
            .rules
            .iter()
            .map(|rule| RuleRefs {
                name: rule.name.clone(),
                kind: rule.kind,
                file: rule.file.clone(),
                line: rule.line,
                refs: rule.portal_refs(),
            })
            .collect();
        let at = |name: &str, kind, origin: &Origin, refs| RuleRefs {
            name: name.to_string(),
            kind,
            file: origin.file.clone(),
            line: origin.line,
            refs,
        };
        let c = &self.controls;
        for sla in &c.sla {
            let mut names = Names::of_control();
            names.conditions(&sla.when);
            sla.notify.iter().for_each(|p| names.person(p));
            sla.message.iter().for_each(|t| names.template(t));
            sla.task.iter().for_each(|t| names.task(t));
            let stages = match &sla.stage {
                super::control::SlaStage::Exact(id) => vec![id.clone()],
                super::control::SlaStage::InProgress => Vec::new(),
            };
            let refs = names.into_refs(vec![sla.pipeline], stages);
            out.push(at(&sla.name, RuleKind::Sla, &sla.origin, refs));
        }
        for overdue in &c.overdue {
            let mut names = Names::of_control();
            overdue.notify.iter().for_each(|p| names.task_person(p));
            overdue.message.iter().for_each(|t| names.template(t));
            if let Some(moved) = &overdue.deadline_moved {
                moved.notify.iter().for_each(|p| names.task_person(p));
                moved.message.iter().for_each(|t| names.template(t));
            }
            let refs = names.into_refs(overdue.pipeline.into_iter().collect(), Vec::new());
            out.push(at(&overdue.name, RuleKind::Overdue, &overdue.origin, refs));
        }
        for no_task in &c.no_task {
            let mut names = Names::of_control();
            no_task.notify.iter().for_each(|p| names.person(p));
            no_task.message.iter().for_each(|t| names.template(t));
            let stages = no_task.stages.clone().unwrap_or_default();
            let refs = names.into_refs(vec![no_task.pipeline], stages);
            out.push(at(&no_task.name, RuleKind::NoTask, &no_task.origin, refs));
        }
        for digest in &c.digests {
            let users = match &digest.to {
                DigestTo::Users(ids) => ids.iter().copied().collect::<BTreeSet<u64>>(),
                DigestTo::Supervisor => BTreeSet::new(),
            };
            let refs = PortalRefs {
                users: users.into_iter().collect(),
                ..PortalRefs::default()
            };
            out.push(at(&digest.name, RuleKind::Digest, &digest.origin, refs));
        }
        for plan in &self.plans {
            let users: BTreeSet<u64> = match &plan.target {
                PlanTarget::People(people) => people.iter().map(|(id, _)| *id).collect(),
                PlanTarget::Whole(_) => BTreeSet::new(),
            };
            let refs = PortalRefs {
                pipelines: plan.pipeline.into_iter().collect(),
                users: users.into_iter().collect(),
                ..PortalRefs::default()
            };
            out.push(at(&plan.name, RuleKind::Plan, &plan.origin, refs));
        }
        out
    }
}
