//! The time-driven kinds of `control.md` (`[[sla]]`, `[[overdue]]`, `[[no_task]]`,
//! `[[digest]]`) and `close_on_leave`: what loads into [`control::ControlRules`], and each
//! problem at its file:line:col with its fix.

use super::*;
use crate::calendar::{Period, PeriodUnit};
use crate::rules::control::{CloseOnLeave, DigestTo, SlaStage, TaskPersonRef, TaskScope};
use crate::rules::model::{Body, PersonRef};

/// The examples of control.md, verbatim.
const SPEC_SLA: &str = r#"
[[sla]]
name = "offer-sla"
pipeline = 1
stage = "C1:OFFER"                 # a stage id of `pipeline`, or "any": every in-progress (P) stage of it
within = "3 workdays"              # from the stage entry (its stage-history CREATED_TIME)
notify = ["assigned", "supervisor"]   # people (rules.md "People"); im.notify.system.add
message = "{TITLE} has been in the offer stage for 3 workdays: {DEAL_URL}"
when = { OPPORTUNITY = { gte = 100000 } }   # optional, checked at fire time

[sla.task]                         # optional: also a task, with every [[task]] key but name/stage
title = "Unblock {TITLE}"
responsible = "supervisor"
deadline = { after = "1 workday" }

# repeat = "1 workday"             # optional: fire again every period while the deal stays
# max_repeats = 3                  # optional with repeat, default 3
"#;

const SPEC_OVERDUE: &str = r#"
[[overdue]]
name = "overdue-tasks"
pipeline = 1                       # tasks bound to deals of this pipeline; absent: every pipeline
tasks = "rules"                    # "rules": tasks the service created; "all": every open task bound to such a deal
notify = ["responsible", "supervisor"]   # "responsible": the task's RESPONSIBLE_ID; "supervisor": theirs
message = "Overdue since {TASK_DEADLINE}: {TASK_TITLE} ({TASK_URL}), deal {TITLE}"
grace = "0 minutes"                # optional: how long past the deadline before it counts

[overdue.deadline_moved]           # optional: tell someone whenever such a task's deadline is moved
notify = ["supervisor"]
message = "{TASK_TITLE}: deadline moved from {TASK_OLD_DEADLINE} to {TASK_DEADLINE}"
"#;

const SPEC_NO_TASK: &str = r#"
[[no_task]]
name = "deals-without-next-step"
pipeline = 1
stages = ["C1:NEW", "C1:OFFER"]    # optional; default every in-progress (P) stage of the pipeline
after = "4 hours"                  # grace: how long a deal may go without an open task
notify = ["assigned"]
message = "{TITLE} has no open task: plan the next step ({DEAL_URL})"
count_activities = true            # optional, default true: an open CRM activity (call, meeting, to-do) also counts
"#;

const SPEC_DIGEST: &str = r#"
[[digest]]
name = "daily-control"
to = "supervisor"                  # "supervisor": each head gets the items of their department's people; or user ids [20, 21]
at = ["09:30", "17:30"]            # calendar zone, working days only
include = ["overdue-tasks", "deals-without-next-step", "offer-sla"]   # names of [[overdue]], [[no_task]], [[sla]] rules
send_empty = false                 # optional: send "nothing overdue" too
title = "Sales control, {DATE} {TIME}"   # optional
"#;

fn period(amount: u32, unit: PeriodUnit) -> Period {
    Period { amount, unit }
}

/// The spec's four examples, one file.
fn spec_file() -> String {
    [SPEC_SLA, SPEC_OVERDUE, SPEC_NO_TASK, SPEC_DIGEST].concat()
}

#[test]
fn the_examples_of_control_md_load_as_written() {
    let (set, warnings) = load_files(&[("control.toml", &spec_file())]);
    // OFFER is a portal's own stage, which only `check --portal` can confirm.
    let unusual = "is not a standard Bitrix24 stage";
    assert_eq!(
        warnings
            .iter()
            .map(|w| w.split(unusual).next().unwrap_or_default())
            .collect::<Vec<_>>(),
        [
            "control.toml:5:9: rule \"offer-sla\": stage \"C1:OFFER\" ",
            "control.toml:34:21: rule \"deals-without-next-step\": stages \"C1:OFFER\" ",
        ]
    );
    assert!(set.rules().is_empty());
    let controls = set.controls();
    let names: Vec<(&str, RuleKind)> = controls.names();
    assert_eq!(
        names,
        [
            ("offer-sla", RuleKind::Sla),
            ("overdue-tasks", RuleKind::Overdue),
            ("deals-without-next-step", RuleKind::NoTask),
            ("daily-control", RuleKind::Digest),
        ]
    );

    let sla = controls.sla_named("offer-sla").unwrap();
    assert_eq!(sla.pipeline(), 1);
    assert_eq!(sla.stage, SlaStage::Exact("C1:OFFER".into()));
    assert_eq!(sla.within(), period(3, PeriodUnit::Workdays));
    assert_eq!(sla.notify, [PersonRef::Assigned, PersonRef::Supervisor]);
    assert!(sla.message.is_some());
    assert_eq!(sla.when.len(), 1);
    let task = sla.task.as_ref().unwrap();
    assert_eq!(task.responsible, PersonRef::Supervisor);
    assert_eq!(task.close_on_leave, None);
    assert_eq!((sla.repeat(), sla.firings()), (None, 1));
    assert_eq!(sla.location(), ("control.toml", 2));

    let overdue = controls.overdue_named("overdue-tasks").unwrap();
    assert_eq!(overdue.pipeline(), Some(1));
    assert_eq!(overdue.tasks(), TaskScope::Rules);
    assert_eq!(
        overdue.notify,
        [TaskPersonRef::Responsible, TaskPersonRef::Supervisor]
    );
    assert_eq!(overdue.grace(), period(0, PeriodUnit::Minutes));
    assert!(overdue.watches_moves());
    let moved = overdue.deadline_moved.as_ref().unwrap();
    assert_eq!(moved.notify, [TaskPersonRef::Supervisor]);
    assert!(moved.message.is_some());

    let no_task = controls.no_task_named("deals-without-next-step").unwrap();
    assert_eq!(no_task.pipeline(), 1);
    assert_eq!(
        no_task.stages(),
        Some(&["C1:NEW".to_string(), "C1:OFFER".to_string()][..])
    );
    assert_eq!(no_task.after(), period(4, PeriodUnit::Hours));
    assert_eq!(no_task.notify, [PersonRef::Assigned]);
    assert!(no_task.count_activities());

    let digest = controls.digest_named("daily-control").unwrap();
    assert_eq!(digest.to(), &DigestTo::Supervisor);
    let slots: Vec<String> = digest
        .slots()
        .iter()
        .map(|t| t.format("%H:%M").to_string())
        .collect();
    assert_eq!(slots, ["09:30", "17:30"]);
    assert_eq!(
        digest.include(),
        ["overdue-tasks", "deals-without-next-step", "offer-sla"]
    );
    assert!(!digest.send_empty());
    assert!(digest.title.is_some());
}

#[test]
fn every_optional_key_takes_its_value_and_the_defaults_are_the_specs() {
    let set = load(
        r#"
pipeline = 2

[[sla]]
name = "any-stage"
stage = "any"
within = "2 hours"
repeat = "1 workday"
max_repeats = 5
[sla.task]
title = "Unblock {TITLE}, {SLA_OVERDUE} late"
description = "Since {SLA_OVERDUE}"
responsible = 17
auditors = ["supervisor"]
deadline = { after = "1 workday" }
close_on_leave = "defer"

[[sla]]
name = "repeat-default"
stage = "C2:NEW"
within = "1 day"
notify = [17, "field:UF_CRM_HEAD"]
repeat = "4 hours"

[[overdue]]
name = "all-tasks"
tasks = "all"
notify = ["assigned", 21]
grace = "30 minutes"

[[no_task]]
name = "bare"
after = "1 day"
notify = ["supervisor"]
count_activities = false

[[digest]]
name = "evening"
to = [20, 21]
at = ["17:30", "09:00"]
include = ["bare", "all-tasks", "any-stage"]
send_empty = true
"#,
    );
    let c = set.controls();
    let any = c.sla_named("any-stage").unwrap();
    assert_eq!((any.pipeline(), any.stage_text()), (2, "any"));
    assert!(any.notify.is_empty());
    assert!(any.message.is_none());
    assert_eq!(any.repeat(), Some(period(1, PeriodUnit::Workdays)));
    assert_eq!(any.firings(), 6);
    let task = any.task.as_ref().unwrap();
    assert_eq!(task.responsible, PersonRef::User(17));
    assert_eq!(task.close_on_leave, Some(CloseOnLeave::Defer));
    let default = c.sla_named("repeat-default").unwrap();
    assert_eq!(default.max_repeats, 3);
    assert_eq!(
        default.notify,
        [PersonRef::User(17), PersonRef::Field("UF_CRM_HEAD".into())]
    );
    let all = c.overdue_named("all-tasks").unwrap();
    assert_eq!(all.pipeline(), Some(2), "the file's pipeline");
    assert_eq!(all.tasks(), TaskScope::All);
    assert_eq!(
        all.notify,
        [TaskPersonRef::Assigned, TaskPersonRef::User(21)]
    );
    assert_eq!(all.grace(), period(30, PeriodUnit::Minutes));
    assert!(all.message.is_none() && !all.watches_moves());
    let bare = c.no_task_named("bare").unwrap();
    assert_eq!((bare.pipeline(), bare.stages()), (2, None));
    assert!(!bare.count_activities() && bare.message.is_none());
    let evening = c.digest_named("evening").unwrap();
    assert_eq!(evening.to(), &DigestTo::Users(vec![20, 21]));
    let slots: Vec<String> = evening
        .slots()
        .iter()
        .map(|t| t.format("%H:%M").to_string())
        .collect();
    assert_eq!(slots, ["09:00", "17:30"], "sorted");
    assert!(evening.send_empty() && evening.title.is_none());
}

#[test]
fn an_overdue_without_a_pipeline_watches_every_pipeline() {
    let set = load("[[overdue]]\nname = \"o\"\nnotify = [\"responsible\"]\n");
    assert_eq!(set.controls().overdue_named("o").unwrap().pipeline(), None);
}

#[test]
fn a_file_of_control_rules_only_is_not_a_file_without_rules() {
    let sla = SPEC_SLA.replace("C1:OFFER", "C1:NEW");
    let (set, warnings) = load_files(&[("sla.toml", &sla), ("empty.toml", "pipeline = 1\n")]);
    assert_eq!(set.controls().sla().len(), 1);
    assert_eq!(
        warnings,
        [
            "empty.toml: the file defines no rules (add [[task]], [[require]], [[loss_reason]], [[nps]], [[tunnel]], [[sla]], [[overdue]], [[no_task]], [[digest]] or [[plan]] sections, or remove the file)"
        ]
    );
}

#[test]
fn close_on_leave_is_read_on_every_task_table() {
    let set = load(
        r#"
pipeline = 1

[[task]]
name = "t"
stage = "C1:NEW"
title = "Call {TITLE}"
deadline = { after = "1 day" }
close_on_leave = "complete"

[[nps]]
name = "n"
title = "Ask {TITLE}"
deadline = { after = "1 day" }
close_on_leave = "defer"

[[loss_reason]]
name = "l"
field = "UF_CRM_REASON"
[loss_reason.review]
title = "Check {TITLE}"
deadline = { after = "1 day" }
close_on_leave = "complete"
"#,
    );
    let found: Vec<Option<CloseOnLeave>> = set
        .rules()
        .iter()
        .map(|r| match &r.body {
            Body::Task(t) | Body::Nps { task: t, .. } => t.close_on_leave,
            Body::LossReason(l) => l.review.as_ref().and_then(|t| t.close_on_leave),
            _ => None,
        })
        .collect();
    assert_eq!(
        found,
        [
            Some(CloseOnLeave::Complete),
            Some(CloseOnLeave::Defer),
            Some(CloseOnLeave::Complete)
        ]
    );
}

#[test]
fn a_misspelt_close_on_leave_says_the_word() {
    refused(
        "[[task]]\nname = \"t\"\npipeline = 1\nstage = \"C1:NEW\"\ntitle = \"x\"\ndeadline = { after = \"1 day\" }\nclose_on_leave = \"complet\"\n\n[[sla]]\nname = \"s\"\npipeline = 1\nstage = \"any\"\nwithin = \"1 day\"\n[sla.task]\ntitle = \"x\"\ndeadline = { after = \"1 day\" }\nclose_on_leave = 1\n",
        &[
            "sales.toml:7:18: rule \"t\": unknown close_on_leave \"complet\" (did you mean \"complete\"?)",
            "sales.toml:17:18: rule \"s\": \"close_on_leave\" must be a string, found an integer (write close_on_leave = \"complete\")",
        ],
    );
}

#[test]
fn sla_errors_are_at_their_place_with_a_fix() {
    refused(
        r#"[[sla]]
name = "no-pipeline"
stage = "C1:OFFER"
within = "3 workdays"
notify = ["assigned"]

[[sla]]
name = "list"
pipeline = [1, 2]
stage = "OFFER"
within = "3 workdays"
notify = ["assigned"]

[[sla]]
name = "won"
pipeline = 1
stage = "won"
within = "3 wrokdays"
notify = ["asigned"]

[[sla]]
name = "nothing"
pipeline = 1
stage = "C2:OFFER"

[[sla]]
name = "repeats"
pipeline = 1
stage = "any"
within = "1 day"
notify = []
max_repeats = 3

[[sla]]
name = "range"
pipeline = 1
stage = "any"
within = "1 day"
notify = [7]
repeat = "1 day"
max_repeats = 101
message = "{TASK_TITLE} of {TITLE}"
"#,
        &[
            "sales.toml:1:1: rule \"no-pipeline\": [[sla]] without \"pipeline\" (add pipeline = 1 (the CATEGORY_ID), in the rule or at the top of the file)",
            "sales.toml:9:12: rule \"list\": [[sla]] takes one pipeline, not a list (write one rule per pipeline, each with pipeline = N)",
            "sales.toml:17:9: rule \"won\": [[sla]] watches deals in progress, and \"won\" is no such stage (write an in-progress stage id of the pipeline, as in \"C1:NEW\", or \"any\")",
            "sales.toml:18:10: rule \"won\": bad duration \"3 wrokdays\": unknown unit \"wrokdays\" (did you mean \"3 workdays\"?)",
            "sales.toml:19:11: rule \"won\": unknown person \"asigned\" (did you mean \"assigned\"?)",
            "sales.toml:24:9: rule \"nothing\": stage \"C2:OFFER\" is in pipeline 2, but the rule's pipeline is 1 (set pipeline = 2, or write \"C1:OFFER\")",
            "sales.toml:21:1: rule \"nothing\": [[sla]] without \"within\" (add within = \"3 workdays\": how long a deal may stay in the stage)",
            "sales.toml:21:1: rule \"nothing\": [[sla]] with neither \"notify\" nor [sla.task]: it would do nothing (add notify = [\"assigned\", \"supervisor\"], or an [sla.task] section)",
            "sales.toml:26:1: rule \"repeats\": [[sla]] with neither \"notify\" nor [sla.task]: it would do nothing (add notify = [\"assigned\", \"supervisor\"], or an [sla.task] section)",
            "sales.toml:32:1: rule \"repeats\": \"max_repeats\" without \"repeat\" (add repeat = \"1 workday\", or remove max_repeats: without it the SLA fires once)",
            "sales.toml:42:12: rule \"range\": {TASK_TITLE} has no value in an [[sla]] message ({TASK_TITLE} is for the messages of [[overdue]]; here the template takes the deal's fields, {DEAL_URL} and {SLA_OVERDUE})",
            "sales.toml:41:15: rule \"range\": max_repeats = 101 is out of range (write a number from 1 to 100)",
        ],
    );
}

#[test]
fn overdue_errors_are_at_their_place_with_a_fix() {
    refused(
        r#"pipeline = [1, 2]

[[overdue]]
name = "o"
tasks = "al"
notify = ["responsibel", "field:UF_CRM_X", "17", 0]
grace = "soon"
message = "{SLA_OVERDUE} {TASK_OLD_DEADLINE}"

[overdue.deadline_moved]
message = "{TASK_TITLE}: {TASK_OLD_DEADLINE} to {TASK_DEADLINE} {DATE}"
to = ["supervisor"]

[[overdue]]
name = "p"
pipeline = 1
notify = []
"#,
        &[
            "sales.toml:3:1: rule \"o\": the file's pipeline is a list, but [[overdue]] takes one (set pipeline = N in this rule: it watches the deals of one pipeline)",
            "sales.toml:5:9: rule \"o\": unknown tasks \"al\" (did you mean \"all\"?)",
            "sales.toml:6:11: rule \"o\": unknown person \"responsibel\" (did you mean \"responsible\"?)",
            "sales.toml:6:26: rule \"o\": unknown person \"field:UF_CRM_X\" (use \"responsible\" (the task's), \"supervisor\" (theirs), \"assigned\" (the deal's) or a user id such as 17)",
            "sales.toml:6:44: rule \"o\": user id \"17\" is written as a string (write 17, without quotes, as in notify = [17])",
            "sales.toml:6:50: rule \"o\": 0 is not a user id (user ids start at 1)",
            "sales.toml:8:12: rule \"o\": {SLA_OVERDUE} has no value in an [[overdue]] message ({SLA_OVERDUE} is for an [[sla]]'s message and task; here the template takes the deal's fields, {DEAL_URL}, {TASK_ID}, {TASK_TITLE}, {TASK_DEADLINE}, {TASK_URL} and {TASK_RESPONSIBLE})",
            "sales.toml:8:26: rule \"o\": {TASK_OLD_DEADLINE} has no value in an [[overdue]] message ({TASK_OLD_DEADLINE} is for the message of [overdue.deadline_moved]; here the template takes the deal's fields, {DEAL_URL}, {TASK_ID}, {TASK_TITLE}, {TASK_DEADLINE}, {TASK_URL} and {TASK_RESPONSIBLE})",
            "sales.toml:7:9: rule \"o\": bad duration \"soon\": \"soon\" is not a whole number (write a whole number and a unit: \"30 minutes\" or \"30m\", \"4 hours\" or \"4h\", \"3 days\" or \"3d\", \"2 weeks\", \"2 workdays\"; in Russian \"30 минут\", \"4 часа\", \"3 дня\", \"2 недели\", \"2 рабочих дня\")",
            "sales.toml:12:1: rule \"o\": unknown key \"to\" in [overdue.deadline_moved] (allowed keys: notify, message)",
            "sales.toml:10:1: rule \"o\": [overdue.deadline_moved] without \"notify\" (add notify = [\"responsible\", \"supervisor\"])",
            "sales.toml:11:65: rule \"o\": {DATE} has no value in the message of [overdue.deadline_moved] ({DATE} is for a [[digest]]'s title; here the template takes the deal's fields, {DEAL_URL}, {TASK_ID}, {TASK_TITLE}, {TASK_DEADLINE}, {TASK_OLD_DEADLINE}, {TASK_URL} and {TASK_RESPONSIBLE})",
            "sales.toml:17:10: rule \"p\": \"notify\" is empty (write notify = [\"responsible\", \"supervisor\"], or remove the rule)",
        ],
    );
}

#[test]
fn no_task_errors_are_at_their_place_with_a_fix() {
    refused(
        r#"[[no_task]]
name = "n"
pipeline = 1
stages = ["C1:NEW", "lost", "C2:NEW", "new", "any"]
notify = ["assigned"]
message = "{TITLE} {TASK_URL}"
count_activities = "yes"

[[no_task]]
name = "m"
after = "1 day"
notify = []
stages = []
"#,
        &[
            "sales.toml:4:21: rule \"n\": [[no_task]] watches deals in progress, and \"lost\" is no such stage (write an in-progress stage id of the pipeline, as in \"C1:NEW\")",
            "sales.toml:4:29: rule \"n\": stage \"C2:NEW\" is in pipeline 2, but the rule's pipeline is 1 (set pipeline = 2, or write \"C1:NEW\")",
            "sales.toml:4:39: rule \"n\": bad stage \"new\" (STAGE_IDs are upper case, as Bitrix24 spells them: \"NEW\")",
            "sales.toml:4:46: rule \"n\": \"any\" is not a stage (remove stages: without it every in-progress stage of the pipeline is watched)",
            "sales.toml:1:1: rule \"n\": [[no_task]] without \"after\" (add after = \"4 hours\": how long a deal may go without a next step)",
            "sales.toml:6:20: rule \"n\": {TASK_URL} has no value in a [[no_task]] message ({TASK_URL} is for the messages of [[overdue]]; here the template takes the deal's fields and {DEAL_URL})",
            "sales.toml:7:20: rule \"n\": \"count_activities\" must be a boolean, found a string (write count_activities = true or false)",
            "sales.toml:9:1: rule \"m\": [[no_task]] without \"pipeline\" (add pipeline = 1 (the CATEGORY_ID), in the rule or at the top of the file)",
            "sales.toml:13:10: rule \"m\": \"stages\" is empty (write stages = [\"C1:NEW\"], or remove the rule)",
            "sales.toml:12:10: rule \"m\": \"notify\" is empty (write notify = [\"assigned\"], or remove the rule)",
        ],
    );
}

#[test]
fn digest_errors_are_at_their_place_with_a_fix() {
    refused(
        r#"pipeline = 1

[[digest]]
name = "d"
pipeline = 1
to = "supervisors"
at = ["9:30", "24:00", "17:30", "17:30"]
include = []
send_empty = "false"
title = "{TITLE} on {DATE}"

[[digest]]
name = "e"
to = [20, "21", 0]
"#,
        &[
            "sales.toml:5:1: rule \"d\": [[digest]] takes no \"pipeline\" (remove it: a digest's items come from the rules it includes, each of its own pipeline)",
            "sales.toml:6:6: rule \"d\": unknown recipient \"supervisors\" (did you mean \"supervisor\"?)",
            "sales.toml:7:7: rule \"d\": bad time \"9:30\" (write \"HH:MM\", from \"00:00\" to \"23:59\", as in \"09:30\")",
            "sales.toml:7:15: rule \"d\": bad time \"24:00\" (write \"HH:MM\", from \"00:00\" to \"23:59\", as in \"09:30\")",
            "sales.toml:8:11: rule \"d\": \"include\" is empty (write include = [\"overdue-tasks\"], or remove the rule)",
            "sales.toml:9:14: rule \"d\": \"send_empty\" must be a boolean, found a string (write send_empty = false, without quotes)",
            "sales.toml:10:10: rule \"d\": {TITLE} has no value in a [[digest]] title ({TITLE} is for the templates of rules about one deal; here the template takes {DATE} and {TIME} only: a digest lists many deals, so no deal field has one value)",
            "sales.toml:14:11: rule \"e\": user id \"21\" is written as a string (write 21, without quotes, as in to = [21])",
            "sales.toml:14:17: rule \"e\": 0 is not a user id (user ids start at 1)",
            "sales.toml:12:1: rule \"e\": [[digest]] without \"at\" (add at = [\"09:30\", \"17:30\"])",
            "sales.toml:12:1: rule \"e\": [[digest]] without \"include\" (add include = [\"...\"], the names of [[overdue]], [[no_task]] and [[sla]] rules)",
            "sales.toml:7:33: rule \"d\": \"17:30\" is listed twice (remove the second one: it counts once)",
        ],
    );
}

#[test]
fn a_digest_includes_rules_of_other_files_and_only_time_driven_ones() {
    let digest = |include: &str| {
        format!("[[digest]]\nname = \"daily\"\nto = [20]\nat = [\"09:30\"]\ninclude = {include}\n")
    };
    let rules = spec_file().replace(SPEC_DIGEST, "");
    let (set, _) = load_files(&[
        (
            "a.toml",
            &digest(r#"["offer-sla", "overdue-tasks", "deals-without-next-step", "offer-sla"]"#),
        ),
        ("b.toml", &rules),
    ]);
    assert_eq!(
        set.controls().digest_named("daily").unwrap().include(),
        ["offer-sla", "overdue-tasks", "deals-without-next-step"]
    );
    let task = "[[task]]\nname = \"call\"\npipeline = 1\nstage = \"C1:NEW\"\ntitle = \"Call\"\ndeadline = { after = \"1 day\" }\n";
    let shown = errors_of(&[
        (
            "a.toml",
            &digest(r#"["ofer-sla", "call", "daily", "nobody"]"#),
        ),
        ("b.toml", &format!("{rules}{task}")),
    ]);
    let errors: Vec<&String> = shown
        .iter()
        .filter(|d| !d.contains("is not a standard Bitrix24 stage"))
        .collect();
    assert_eq!(
        errors,
        [
            "a.toml:5:12: rule \"daily\": the digest includes \"ofer-sla\", which is no rule (did you mean \"offer-sla\"?)",
            "a.toml:5:24: rule \"daily\": the digest includes \"call\", a [[task]] rule defined at b.toml:40 (a digest lists what [[overdue]], [[no_task]] and [[sla]] rules find: remove it)",
            "a.toml:5:32: rule \"daily\": the digest includes \"daily\", a [[digest]] rule defined at a.toml:2 (a digest lists what [[overdue]], [[no_task]] and [[sla]] rules find: remove it)",
            "a.toml:5:41: rule \"daily\": the digest includes \"nobody\", which is no rule (name an [[overdue]], [[no_task]] or [[sla]] rule of the rule files)",
        ]
    );
}

#[test]
fn names_are_unique_across_stage_entry_and_time_driven_kinds() {
    let shown = errors(
        "[[task]]\nname = \"x\"\npipeline = 1\nstage = \"C1:NEW\"\ntitle = \"Call\"\ndeadline = { after = \"1 day\" }\n\n[[overdue]]\nname = \"x\"\nnotify = [\"responsible\"]\n",
    );
    assert_eq!(
        shown,
        [
            "sales.toml:9:8: rule \"x\": duplicate rule name, first defined at sales.toml:2 (rule names are unique across all files: rename one of them)"
        ]
    );
}

#[test]
fn control_placeholders_are_accepted_where_they_have_a_value() {
    let set = load(
        r#"pipeline = 1

[[sla]]
name = "s"
stage = "C1:NEW"
within = "1 day"
notify = ["assigned"]
message = "{TITLE}: {SLA_OVERDUE} late, {DEAL_URL}"
[sla.task]
title = "{TITLE}, {SLA_OVERDUE}"
deadline = { after = "1 day" }

[[overdue]]
name = "o"
notify = ["responsible"]
message = "{TASK_ID} {TASK_TITLE} {TASK_DEADLINE} {TASK_URL} {TASK_RESPONSIBLE} {TITLE}"
[overdue.deadline_moved]
notify = [7]
message = "{TASK_TITLE} {TASK_OLD_DEADLINE} {TASK_DEADLINE}"

[[digest]]
name = "d"
to = "supervisor"
at = ["09:00"]
include = ["s", "o"]
title = "Control {DATE} {TIME}"
"#,
    );
    assert_eq!(set.controls().names().len(), 3);
    refused(
        "[[sla]]\nname = \"s\"\npipeline = 1\nstage = \"C1:NEW\"\nwithin = \"1 day\"\n[sla.task]\ntitle = \"{TASK_TITLE}\"\ndeadline = { after = \"1 day\" }\n",
        &[
            "sales.toml:7:10: rule \"s\": {TASK_TITLE} has no value in [sla.task] title ({TASK_TITLE} is for the messages of [[overdue]]; here the template takes the deal's fields, {DEAL_URL} and {SLA_OVERDUE})",
        ],
    );
}
