//! The JSON Schema of the rule files, for editors (`b24-robot schema` prints it).
//!
//! Taplo (and so the Even Better TOML extension of VS Code) validates a TOML document against a
//! JSON Schema and completes its keys. We write draft-07, the draft Taplo's validator has
//! supported longest; the keywords used (`properties`, `additionalProperties`, `required`,
//! `enum`, `pattern`, `anyOf`, `$ref`, `propertyNames`) mean the same in every later draft.
//!
//! The loader stays the judge: the schema catches misspelt keys, wrong types and bad names as
//! the integrator types; `b24-robot check` catches the rest (stage and pipeline agreement,
//! templates, duplicate names). Descriptions are those of `docs/rules.md`, shortened.
//!
//! The keys of every table, and the words of `on_missing`, the people and the `when`
//! operators, are the loader's own lists (`compile/keys.rs`, `condition.rs`): a key the loader
//! takes is a property here by construction. What this file adds is each key's type and description.

use serde_json::{Map, Value, json};

use crate::rules::compile::{
    CLOSE_ON_LEAVE_WORDS, DEADLINE_KEYS, DEADLINE_MOVED_KEYS, MEASURE_WORDS, ON_MISSING_WORDS,
    PERSON_WORDS, REVIEW_KEYS, SLA_TASK_KEYS, TASK_PERSON_WORDS, TASK_SCOPE_WORDS, TOP_LEVEL,
    rule_keys,
};
use crate::rules::condition::OPERATORS;
use crate::rules::model::RuleKind;

const NAME: &str = "Unique id of the rule across all files: lower-case letters, digits, \"-\" and \"_\", starting with a letter or digit, at most 64 characters. Used in logs, metrics, the decision log and the keys that make each effect happen once: renaming a rule makes it a new rule.";
const PIPELINE: &str = "The deal pipeline, Bitrix24's CATEGORY_ID (0 is the default pipeline). Set at the top of a file for all its rules; a rule's own value wins. A list, [0, 2], binds the rule to each of them, its stage written without the C<n>: prefix (\"NEW\" is NEW in 0, C2:NEW in 2). Absent everywhere: every pipeline (only with stage \"won\"/\"lost\").";
const STAGE: &str = "The stage being entered, as Bitrix24's STAGE_ID spells it (\"PREPARATION\" in pipeline 0, \"C1:PREPARATION\" in pipeline 1), or \"won\" (any success stage) or \"lost\" (any failure stage).";
const WHEN: &str = "Extra conditions on the deal's fields, all must hold: a plain value means equality; a table takes eq ne gt gte lt lte in not_in empty. Example: { TYPE_ID = \"SALE\", OPPORTUNITY = { gte = 100000 } }";
const TEMPLATE: &str = "A template: {FIELD} is replaced by the deal's field ({TITLE}, {OPPORTUNITY}, {UF_CRM_X}; a list field renders its label), {DEAL_URL} by the link to the deal card; {{ and }} are literal braces. At most 8 KiB of text and 64 placeholders.";
const PERSON: &str = "\"assigned\" (the deal's ASSIGNED_BY_ID), \"supervisor\" (the head of the assigned user's department, walking up), a user id as an integer (17), or \"field:UF_CRM_X\" (the user in that deal field).";
const DEADLINE: &str = "When the task is due: { after = \"2 workdays\" } after the stage entry, { after = \"1 day\", field = \"CLOSEDATE\" } or { before = \"3 days\", field = \"UF_CRM_EVENT_DATE\" } relative to a date field, or { at = \"2026-12-31T18:00\" }. Optional time = \"18:00\" pins the time of day; fallback = { ... } is used when the field is empty.";
const ON_MISSING: &str = "\"revert\" (the default): move the deal back to the stage it came from; \"warn\": leave it. In both cases a timeline comment names the missing fields and the assigned user is notified.";
const ONE_PIPELINE: &str = "The deal pipeline the rule watches, Bitrix24's CATEGORY_ID (0 is the default pipeline): one id, not a list. Set at the top of a file for all its rules; a rule's own value wins.";
const TASK_PEOPLE: &str = "Who is told: \"responsible\" (the task's RESPONSIBLE_ID), \"supervisor\" (the head of the responsible's department), \"assigned\" (the deal's ASSIGNED_BY_ID), or user ids (17).";
const TASK_TEMPLATE: &str = "Besides the deal's fields: {TASK_ID}, {TASK_TITLE}, {TASK_DEADLINE} (calendar zone, \"2026-12-03 18:00\"), {TASK_URL}, {TASK_RESPONSIBLE} (the user's name).";
const OWN_TEXT: &str = "Absent: the service's own text in portal.language.";
const FIELD_CODE: &str = "^[A-Z_][A-Z0-9_]*$";

fn reference(name: &str, description: &str) -> Value {
    // draft-07 ignores siblings of `$ref`; wrapped in allOf, editors show the description.
    json!({ "allOf": [{ "$ref": format!("#/definitions/{name}") }], "description": description })
}

fn template(description: &str) -> Value {
    // The loader counts bytes (8 KiB); a schema can only count characters.
    json!({ "type": "string", "maxLength": 8192, "description": format!("{description} {TEMPLATE}") })
}

fn field_list(description: &str) -> Value {
    json!({
        "type": "array",
        "description": description,
        "items": { "type": "string", "pattern": FIELD_CODE },
    })
}

/// One key of a rule of `kind` (or of a loss reason's review, `kind` being `LossReason`). A key
/// the loader takes but this does not describe would take any value (the schema never refuses a
/// key the loader takes); the tests make sure every key is described.
fn property(kind: RuleKind, key: &str) -> Value {
    match (kind, key) {
        (_, "name") => reference("name", NAME),
        (RuleKind::Sla | RuleKind::Overdue | RuleKind::NoTask, "pipeline") => {
            let absent = if kind == RuleKind::Overdue {
                " Absent everywhere: tasks bound to deals of every pipeline."
            } else {
                ""
            };
            json!({ "type": "integer", "minimum": 0, "description": format!("{ONE_PIPELINE}{absent}") })
        }
        (RuleKind::Plan, "pipeline") => json!({
            "type": "integer",
            "minimum": 0,
            "description": "The direction measured, Bitrix24's CATEGORY_ID: one id. Set at the top of a file for all its rules; a rule's own value wins. Absent everywhere: deals of every pipeline count.",
        }),
        (_, "pipeline") => reference("pipeline", PIPELINE),
        (_, "period") => json!({
            "type": "string",
            "pattern": "^[0-9]{4}(-(0[1-9]|1[0-2]|[Qq][1-4]|[Hh][12]))?$",
            "description": "The plan's period, in the calendar's zone: a month \"2026-12\", a quarter \"2026-Q4\", a half \"2026-H2\" or a year \"2026\".",
        }),
        (_, "measure") => json!({
            "type": "string",
            "enum": MEASURE_WORDS,
            "description": "\"amount\": the sum of the won deals' OPPORTUNITY, in `currency` only; \"count\": the number of won deals.",
        }),
        (_, "currency") => json!({
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "description": "Required with measure = \"amount\" (and only then): the CURRENCY_ID summed, \"RUB\". Deals in another currency are never converted: the report lists them apart.",
        }),
        (_, "target") => json!({
            "type": "number",
            "minimum": 0,
            "description": "One target for the whole plan (in `currency`, or a count of won deals). Exactly one of target and targets.",
        }),
        (_, "targets") => json!({
            "type": "object",
            "minProperties": 1,
            "description": "Targets per person: { 10 = 1500000, 11 = 1200000 }, user ids (ASSIGNED_BY_ID) as keys; the plan's total is their sum. Exactly one of target and targets.",
            "propertyNames": { "pattern": "^[1-9][0-9]*$" },
            "additionalProperties": { "type": "number", "minimum": 0 },
        }),
        (RuleKind::Tunnel, "stage") => reference(
            "stage",
            &format!("{STAGE} Default \"won\"; a stage id must be of `pipeline`."),
        ),
        (RuleKind::Sla, "stage") => json!({
            "type": "string",
            "pattern": "^(any|(C[0-9]+:)?[A-Z0-9_]+)$",
            "description": "The stage the deal must not sit in too long, a STAGE_ID of `pipeline` (\"C1:OFFER\"), or \"any\": every in-progress stage of it.",
        }),
        (_, "stage") => reference("stage", STAGE),
        (_, "when") => reference("when", WHEN),
        (RuleKind::Digest, "title") => json!({
            "type": "string",
            "maxLength": 8192,
            "description": format!("The first line of the digest: {{DATE}} and {{TIME}} are the slot's date and time (no deal fields: a digest lists many deals). {OWN_TEXT}"),
        }),
        (_, "title") => template("The task's title (required)."),
        (_, "description") => template("The task's description (optional)."),
        (RuleKind::Tunnel, "responsible") => reference(
            "person",
            &format!("The copy's responsible; default \"assigned\". {PERSON}"),
        ),
        (_, "responsible") => reference(
            "person",
            &format!("Who does the task; default \"assigned\". {PERSON}"),
        ),
        (_, "auditors") => json!({
            "type": "array",
            "description": format!("Who watches the task. Each one: {PERSON}"),
            "items": { "$ref": "#/definitions/person" },
        }),
        (_, "deadline") => reference("deadline", DEADLINE),
        (_, "fields") => field_list(
            "The deal fields that must be filled (field codes). A field is missing when absent, empty, an empty list, or a zero amount.",
        ),
        (_, "on_missing") => reference("on_missing", ON_MISSING),
        (RuleKind::Sla, "message") => template(&format!(
            "The notification sent to `notify`; {{SLA_OVERDUE}} is how long past `within` the deal is (\"2 hours\"). {OWN_TEXT}"
        )),
        (RuleKind::Overdue, "message") => template(&format!(
            "The notification about an overdue task. {TASK_TEMPLATE} {OWN_TEXT}"
        )),
        (RuleKind::NoTask, "message") => template(&format!(
            "The notification about a deal without a next step. {OWN_TEXT}"
        )),
        (RuleKind::Require, "message") => template(
            "The timeline comment and notification text; {MISSING} lists the missing fields' labels.",
        ),
        (_, "message") => template(
            "The comment and notification text when the reason is missing or not allowed; {MISSING} is the field's label.",
        ),
        (_, "field") => {
            json!({ "type": "string", "pattern": FIELD_CODE, "description": "The loss reason field: a list field or a string field." })
        }
        (_, "allowed") => {
            json!({ "type": "array", "items": { "type": "string" }, "description": "Accepted values (option labels for a list field). Absent: any non-empty value." })
        }
        (_, "review") => rule(
            "A task to check the reason (a supervisor's job), created when the reason is accepted. Takes the [[task]] keys but name, pipeline, stage and when.",
            properties(kind, REVIEW_KEYS),
            &["title", "deadline"],
        ),
        (_, "score_field") => {
            json!({ "type": "string", "pattern": FIELD_CODE, "description": "The deal field where the 0-10 answer is kept (NPS reports read it)." })
        }
        (_, "to_pipeline") => {
            json!({ "type": "integer", "minimum": 0, "description": "The pipeline (CATEGORY_ID) the copy is created in." })
        }
        (_, "to_stage") => {
            json!({ "type": "string", "pattern": "^(C[0-9]+:)?[A-Z0-9_]+$", "description": "The stage of to_pipeline the copy starts in, as a STAGE_ID: \"C2:NEW\"." })
        }
        (_, "copy") => field_list("The fields copied as they are."),
        (_, "set") => json!({
            "type": "object",
            "description": format!("Fields set from templates, after copy: {{ TITLE = \"Repeat sale: {{TITLE}}\" }}. {TEMPLATE}"),
            "propertyNames": { "pattern": FIELD_CODE },
            "additionalProperties": { "type": "string", "maxLength": 8192 },
        }),
        (_, "close_on_leave") => json!({
            "type": "string",
            "enum": CLOSE_ON_LEAVE_WORDS,
            "description": "When the deal leaves the stage entry that created the task and the task is still open: \"complete\" completes it (tasks.task.complete), \"defer\" defers it (tasks.task.defer). Absent: the task stays.",
        }),
        (_, "within") => reference(
            "duration",
            "How long a deal may sit in the stage, from its stage entry: \"3 workdays\".",
        ),
        (RuleKind::Overdue, "notify") => people_of_tasks(),
        (_, "notify") => json!({
            "type": "array",
            "description": format!("Who gets the notification (im.notify.system.add). Each one: {PERSON}"),
            "items": { "$ref": "#/definitions/person" },
        }),
        (_, "task") => rule(
            "A task created when the SLA fires; its relative deadlines count from then. Takes the [[task]] keys but name, pipeline, stage and when; {SLA_OVERDUE} works in its templates.",
            properties(kind, SLA_TASK_KEYS),
            &["title", "deadline"],
        ),
        (_, "repeat") => reference(
            "duration",
            "Fire again every period while the deal stays in the stage entry.",
        ),
        (_, "max_repeats") => json!({
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "description": "How many more times it fires with `repeat`; default 3. Only with repeat.",
        }),
        (_, "tasks") => json!({
            "type": "string",
            "enum": TASK_SCOPE_WORDS,
            "description": "\"rules\" (the default): the tasks the service created (stage, review, NPS and SLA tasks); \"all\": every open task bound to an in-progress deal of the pipeline.",
        }),
        (_, "grace") => reference(
            "duration",
            "How long past its deadline before a task counts as overdue; default \"0 minutes\".",
        ),
        (_, "deadline_moved") => rule(
            "Tell someone whenever the deadline of a watched task is moved, once per (task, old deadline, new deadline).",
            DEADLINE_MOVED_KEYS
                .iter()
                .map(|key| (key.to_string(), deadline_moved_property(key)))
                .collect(),
            &["notify"],
        ),
        (_, "stages") => json!({
            "type": "array",
            "minItems": 1,
            "description": "The in-progress stages watched, STAGE_IDs of `pipeline`; default every in-progress stage of it.",
            "items": { "type": "string", "pattern": "^(C[0-9]+:)?[A-Z0-9_]+$" },
        }),
        (_, "after") => reference(
            "duration",
            "How long a deal may go without an open task (or activity): \"4 hours\".",
        ),
        (_, "count_activities") => json!({
            "type": "boolean",
            "description": "Whether an open CRM activity (call, meeting, to-do) counts as a next step too; default true.",
        }),
        (_, "to") => json!({
            "description": "\"supervisor\": each head gets the items of their department's people; or user ids, [20, 21], who get every item.",
            "anyOf": [
                { "type": "string", "enum": ["supervisor"] },
                { "type": "array", "minItems": 1, "items": { "type": "integer", "minimum": 1 } },
            ],
        }),
        (_, "at") => json!({
            "type": "array",
            "minItems": 1,
            "description": "The slots, \"HH:MM\" in the calendar's zone, on working days: [\"09:30\", \"17:30\"].",
            "items": { "type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$" },
        }),
        (_, "include") => json!({
            "type": "array",
            "minItems": 1,
            "description": "The names of the [[overdue]], [[no_task]] and [[sla]] rules (of any file) whose findings the digest lists.",
            "items": { "$ref": "#/definitions/name" },
        }),
        (_, "send_empty") => json!({
            "type": "boolean",
            "description": "Whether a digest with nothing to list is sent too (\"nothing overdue\"); default false.",
        }),
        _ => json!({}),
    }
}

/// `notify` of an `[[overdue]]` and of its `deadline_moved`: people named about a task.
fn people_of_tasks() -> Value {
    json!({
        "type": "array",
        "minItems": 1,
        "description": TASK_PEOPLE,
        "items": {
            "anyOf": [
                { "type": "string", "enum": TASK_PERSON_WORDS },
                { "type": "integer", "minimum": 1 },
            ],
        },
    })
}

/// One key of `[overdue.deadline_moved]`.
fn deadline_moved_property(key: &str) -> Value {
    match key {
        "notify" => people_of_tasks(),
        "message" => template(&format!(
            "The notification about a moved deadline. {TASK_TEMPLATE} {{TASK_OLD_DEADLINE}} is the deadline before the move. {OWN_TEXT}"
        )),
        _ => json!({}),
    }
}

/// The properties of `keys`, in the loader's order.
fn properties(kind: RuleKind, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .map(|key| (key.to_string(), property(kind, key)))
        .collect()
}

/// One key of a deadline table.
fn deadline_property(key: &str) -> Value {
    match key {
        "after" => reference(
            "duration",
            "That long after the stage entry (the deal's MOVED_TIME), or after the date in `field`.",
        ),
        "before" => reference("duration", "That long before the date in `field`."),
        "field" => {
            json!({ "type": "string", "pattern": FIELD_CODE, "description": "The deal field holding the date `after`/`before` count from." })
        }
        "at" => {
            json!({ "type": "string", "description": "A fixed moment: \"2026-12-31T18:00\" in the calendar's time zone, or with an offset." })
        }
        "time" => {
            json!({ "type": "string", "pattern": "^[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?$", "description": "Pins the time of day of the result: \"18:00\"." })
        }
        "fallback" => reference("deadline", "The deadline used when `field` is empty."),
        _ => json!({}),
    }
}

/// One operator of a `when` table.
fn operator_property(op: &str) -> Value {
    match op {
        "eq" => json!({ "$ref": "#/definitions/scalar", "description": "equals" }),
        "ne" => json!({ "$ref": "#/definitions/scalar", "description": "does not equal" }),
        "gt" => json!({ "type": "number", "description": "a number greater than" }),
        "gte" => json!({ "type": "number", "description": "a number at least" }),
        "lt" => json!({ "type": "number", "description": "a number less than" }),
        "lte" => json!({ "type": "number", "description": "a number at most" }),
        "in" => {
            json!({ "type": "array", "items": { "$ref": "#/definitions/scalar" }, "description": "one of the values" })
        }
        "not_in" => {
            json!({ "type": "array", "items": { "$ref": "#/definitions/scalar" }, "description": "none of the values" })
        }
        "empty" => json!({ "type": "boolean", "description": "true: missing; false: filled" }),
        _ => json!({}),
    }
}

/// One key at the top of a rule file.
fn top_property(key: &str) -> Value {
    match key {
        "pipeline" => reference("pipeline", PIPELINE),
        "task" => array_of("task", "[[task]]: a task on entering a stage."),
        "require" => array_of("require", "[[require]]: mandatory fields for a stage."),
        "loss_reason" => array_of(
            "loss_reason",
            "[[loss_reason]]: a lost deal must say why; a supervisor checks it.",
        ),
        "nps" => array_of("nps", "[[nps]]: a task to measure NPS after a win."),
        "tunnel" => array_of("tunnel", "[[tunnel]]: copy the deal into another pipeline."),
        "sla" => array_of("sla", "[[sla]]: a deal must not sit in a stage too long."),
        "overdue" => array_of(
            "overdue",
            "[[overdue]]: overdue tasks, and moved deadlines.",
        ),
        "no_task" => array_of("no_task", "[[no_task]]: every open deal has a next step."),
        "digest" => array_of("digest", "[[digest]]: the morning and evening review."),
        "plan" => array_of("plan", "[[plan]]: a sales plan per person or direction."),
        _ => json!({}),
    }
}

/// The definition of a rule of `kind`: what it does and the keys it cannot do without.
fn definition(kind: RuleKind) -> Value {
    let (description, required): (&str, &[&str]) = match kind {
        RuleKind::Task => (
            "Creates a Bitrix24 task (tasks.task.add) bound to the deal when it enters `stage`.",
            &["name", "stage", "title", "deadline"],
        ),
        RuleKind::Require => (
            "Fields that must be filled before a deal may be in `stage`.",
            &["name", "stage", "fields"],
        ),
        RuleKind::LossReason => (
            "Fires on entering any failure stage of `pipeline` (of every pipeline without it): the reason must be given (and allowed); with a reason, the review task is created.",
            &["name", "field"],
        ),
        RuleKind::Nps => (
            "Fires on entering any success stage of `pipeline` (of every pipeline without it): a task to ask the client for a 0-10 score.",
            &["name", "title", "deadline"],
        ),
        RuleKind::Tunnel => (
            "Creates a copy of the deal (crm.deal.add) in another pipeline, exactly once per deal, rule and stage entry.",
            &["name", "to_pipeline", "to_stage"],
        ),
        RuleKind::Sla => (
            "A deal must not sit in `stage` longer than `within` (from its stage entry): notifies `notify` and/or creates `[sla.task]` once per entry (and per `repeat`), checked again when it fires.",
            &["name", "stage", "within"],
        ),
        RuleKind::Overdue => (
            "Open tasks past their deadline (plus `grace`) are reported to `notify` once per deadline; `[overdue.deadline_moved]` reports every moved deadline.",
            &["name", "notify"],
        ),
        RuleKind::NoTask => (
            "An in-progress deal without an open task (or activity) for longer than `after` is reported to `notify`, once per episode.",
            &["name", "after", "notify"],
        ),
        RuleKind::Digest => (
            "At each slot of `at` on working days, one notification per recipient listing what the included rules find now.",
            &["name", "to", "at", "include"],
        ),
        RuleKind::Plan => (
            "A sales plan for a period: the deals won in it (their last entry into a success stage, still won now) measured against a target per person or for the whole plan. Read by the plan report.",
            &["name", "period", "measure"],
        ),
    };
    rule(description, properties(kind, rule_keys(kind)), required)
}

/// The kinds, in the order of their definitions.
const KINDS: [RuleKind; 10] = [
    RuleKind::Task,
    RuleKind::Require,
    RuleKind::LossReason,
    RuleKind::Nps,
    RuleKind::Tunnel,
    RuleKind::Sla,
    RuleKind::Overdue,
    RuleKind::NoTask,
    RuleKind::Digest,
    RuleKind::Plan,
];

fn rule(description: &str, properties: Map<String, Value>, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "description": description,
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

fn array_of(kind: &str, description: &str) -> Value {
    json!({
        "type": "array",
        "description": description,
        "items": { "$ref": format!("#/definitions/{kind}") },
    })
}

/// The schema as JSON.
pub fn schema() -> Value {
    let operators = json!({
        "type": "object",
        "additionalProperties": false,
        "minProperties": 1,
        "properties": OPERATORS
            .iter()
            .map(|op| (op.to_string(), operator_property(op)))
            .collect::<Map<String, Value>>(),
    });

    // The units from the duration parser itself, so the editor and `check` agree; lower case
    // only (a JSON schema pattern has no flags), which is how the docs write them.
    let units: Vec<String> = crate::duration::period_words()
        .iter()
        .map(|word| word.replace(' ', "\\s+"))
        .collect();
    let duration = json!({
        "type": "string",
        "pattern": format!("^\\s*[0-9]+\\s*({})\\s*$", units.join("|")),
        "description": "A whole number and a unit: minutes (m), hours (h), days (d), weeks (w), workdays; in Russian too (\"30 минут\", \"4 часа\", \"3 дня\", \"2 недели\", \"2 рабочих дня\"). \"2 workdays\", \"48h\". See docs/rules.md, \"Durations\".",
    });

    let mut definitions = json!({
        "name": {
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9_-]*$",
            "maxLength": 64,
            "description": NAME,
        },
        "pipeline": {
            "description": PIPELINE,
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": true,
                    "items": { "type": "integer", "minimum": 0 },
                },
            ],
        },
        "stage": {
            "type": "string",
            "pattern": "^(won|lost|(C[0-9]+:)?[A-Z0-9_]+)$",
            "description": STAGE,
        },
        "scalar": { "type": ["string", "number", "boolean"] },
        "when": {
            "type": "object",
            "description": WHEN,
            "propertyNames": { "pattern": FIELD_CODE },
            "additionalProperties": {
                "anyOf": [ { "$ref": "#/definitions/scalar" }, operators ],
            },
        },
        "person": {
            "description": PERSON,
            "anyOf": [
                { "type": "string", "enum": PERSON_WORDS },
                { "type": "string", "pattern": "^field:[A-Z_][A-Z0-9_]*$" },
                { "type": "integer", "minimum": 1 },
            ],
        },
        "on_missing": { "type": "string", "enum": ON_MISSING_WORDS, "description": ON_MISSING },
        "duration": duration,
        "deadline": {
            "type": "object",
            "description": DEADLINE,
            "additionalProperties": false,
            "properties": DEADLINE_KEYS
                .iter()
                .map(|key| (key.to_string(), deadline_property(key)))
                .collect::<Map<String, Value>>(),
            "anyOf": [
                { "required": ["after"] },
                { "required": ["before", "field"] },
                { "required": ["at"] },
            ],
        },
    });
    if let Some(definitions) = definitions.as_object_mut() {
        for kind in KINDS {
            definitions.insert(kind.table().to_string(), definition(kind));
        }
    }

    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "b24-robot rule file",
        "description": "Rules applied when a Bitrix24 deal enters a stage (see docs/rules.md), and the time-driven ones: SLAs, overdue tasks, deals without a next step, digests.",
        "type": "object",
        "additionalProperties": false,
        "properties": TOP_LEVEL
            .iter()
            .map(|key| (key.to_string(), top_property(key)))
            .collect::<Map<String, Value>>(),
        "definitions": definitions,
    })
}

/// The schema, pretty-printed.
pub fn text() -> String {
    serde_json::to_string_pretty(&schema()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `{}` in the schema: a key the loader takes that has no type or description here.
    fn undescribed(value: &Value, path: &str, found: &mut Vec<String>) {
        match value {
            Value::Object(map) if map.is_empty() => found.push(path.to_string()),
            Value::Object(map) => {
                for (key, value) in map {
                    undescribed(value, &format!("{path}/{key}"), found);
                }
            }
            Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    undescribed(value, &format!("{path}/{i}"), found);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_key_the_loader_takes_is_described() {
        let mut found = Vec::new();
        undescribed(&schema(), "", &mut found);
        assert_eq!(found, Vec::<String>::new());
    }
}
