//! `b24-robot schema`: a JSON Schema of the rule files, for editors.
//!
//! Taplo (and so the Even Better TOML extension of VS Code) validates a TOML document against a
//! JSON Schema and completes its keys. We write draft-07, the draft Taplo's validator has
//! supported longest; the keywords used (`properties`, `additionalProperties`, `required`,
//! `enum`, `pattern`, `anyOf`, `$ref`, `propertyNames`) mean the same in every later draft.
//!
//! The loader stays the judge: the schema catches misspelt keys, wrong types and bad names as
//! the integrator types; `b24-robot check` catches the rest (stage and pipeline agreement,
//! templates, duplicate names). Descriptions are those of `docs/rules.md`, shortened.

use serde_json::{Value, json};

/// The keys of each kind; the test suite checks them against the loader.
pub const TASK_KEYS: &[&str] = &[
    "name",
    "pipeline",
    "stage",
    "when",
    "title",
    "description",
    "responsible",
    "auditors",
    "deadline",
];

const NAME: &str = "Unique id of the rule across all files: lower-case letters, digits, \"-\" and \"_\", starting with a letter or digit, at most 64 characters. Used in logs, metrics, the decision log and the keys that make each effect happen once: renaming a rule makes it a new rule.";
const PIPELINE: &str = "The deal pipeline, Bitrix24's CATEGORY_ID (0 is the default pipeline). Set at the top of a file for all its rules; a rule's own value wins. Absent everywhere: every pipeline (only with stage \"won\"/\"lost\").";
const STAGE: &str = "The stage being entered, as Bitrix24's STAGE_ID spells it (\"PREPARATION\" in pipeline 0, \"C1:PREPARATION\" in pipeline 1), or \"won\" (any success stage) or \"lost\" (any failure stage).";
const WHEN: &str = "Extra conditions on the deal's fields, all must hold: a plain value means equality; a table takes eq ne gt gte lt lte in not_in empty. Example: { TYPE_ID = \"SALE\", OPPORTUNITY = { gte = 100000 } }";
const TEMPLATE: &str = "A template: {FIELD} is replaced by the deal's field ({TITLE}, {OPPORTUNITY}, {UF_CRM_X}; a list field renders its label), {DEAL_URL} by the link to the deal card; {{ and }} are literal braces. At most 8 KiB of text and 64 placeholders.";
const PERSON: &str = "\"assigned\" (the deal's ASSIGNED_BY_ID), \"supervisor\" (the head of the assigned user's department, walking up), a user id as an integer (17), or \"field:UF_CRM_X\" (the user in that deal field).";
const DEADLINE: &str = "When the task is due: { after = \"2 workdays\" } after the stage entry, { after = \"1 day\", field = \"CLOSEDATE\" } or { before = \"3 days\", field = \"UF_CRM_EVENT_DATE\" } relative to a date field, or { at = \"2026-12-31T18:00\" }. Optional time = \"18:00\" pins the time of day; fallback = { ... } is used when the field is empty.";
const ON_MISSING: &str = "\"revert\" (the default): move the deal back to the stage it came from; \"warn\": leave it. In both cases a timeline comment names the missing fields and the assigned user is notified.";
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

/// The properties of a task-making table: `[[task]]`, `[[nps]]`, `[loss_reason.review]`.
fn task_properties() -> serde_json::Map<String, Value> {
    let mut p = serde_json::Map::new();
    p.insert("title".into(), template("The task's title (required)."));
    p.insert(
        "description".into(),
        template("The task's description (optional)."),
    );
    p.insert(
        "responsible".into(),
        reference(
            "person",
            &format!("Who does the task; default \"assigned\". {PERSON}"),
        ),
    );
    p.insert(
        "auditors".into(),
        json!({
            "type": "array",
            "description": format!("Who watches the task. Each one: {PERSON}"),
            "items": { "$ref": "#/definitions/person" },
        }),
    );
    p.insert("deadline".into(), reference("deadline", DEADLINE));
    p
}

fn common(p: &mut serde_json::Map<String, Value>, with_stage: bool) {
    p.insert("name".into(), reference("name", NAME));
    p.insert("pipeline".into(), reference("pipeline", PIPELINE));
    if with_stage {
        p.insert("stage".into(), reference("stage", STAGE));
    }
    p.insert("when".into(), reference("when", WHEN));
}

fn rule(description: &str, properties: serde_json::Map<String, Value>, required: &[&str]) -> Value {
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
    let mut task = serde_json::Map::new();
    common(&mut task, true);
    task.extend(task_properties());

    let mut require = serde_json::Map::new();
    common(&mut require, true);
    require.insert(
        "fields".into(),
        field_list("The deal fields that must be filled (field codes). A field is missing when absent, empty, an empty list, or a zero amount."),
    );
    require.insert("on_missing".into(), reference("on_missing", ON_MISSING));
    require.insert(
        "message".into(),
        template("The timeline comment and notification text; {MISSING} lists the missing fields' labels."),
    );

    let mut loss = serde_json::Map::new();
    common(&mut loss, false);
    loss.insert(
        "field".into(),
        json!({ "type": "string", "pattern": FIELD_CODE, "description": "The loss reason field: a list field or a string field." }),
    );
    loss.insert(
        "allowed".into(),
        json!({ "type": "array", "items": { "type": "string" }, "description": "Accepted values (option labels for a list field). Absent: any non-empty value." }),
    );
    loss.insert("on_missing".into(), reference("on_missing", ON_MISSING));
    loss.insert(
        "message".into(),
        template("The comment and notification text when the reason is missing or not allowed; {MISSING} is the field's label."),
    );
    loss.insert(
        "review".into(),
        rule(
            "A task to check the reason (a supervisor's job), created when the reason is accepted. Takes the [[task]] keys but name, pipeline, stage and when.",
            task_properties(),
            &["title", "deadline"],
        ),
    );

    let mut nps = serde_json::Map::new();
    common(&mut nps, false);
    nps.extend(task_properties());
    nps.insert(
        "score_field".into(),
        json!({ "type": "string", "pattern": FIELD_CODE, "description": "The deal field where the 0-10 answer is kept (NPS reports read it)." }),
    );

    let mut tunnel = serde_json::Map::new();
    common(&mut tunnel, true);
    tunnel.insert(
        "stage".into(),
        reference(
            "stage",
            &format!("{STAGE} Default \"won\"; a stage id must be of `pipeline`."),
        ),
    );
    tunnel.insert(
        "to_pipeline".into(),
        json!({ "type": "integer", "minimum": 0, "description": "The pipeline (CATEGORY_ID) the copy is created in." }),
    );
    tunnel.insert(
        "to_stage".into(),
        json!({ "type": "string", "pattern": "^(C[0-9]+:)?[A-Z0-9_]+$", "description": "The stage of to_pipeline the copy starts in, as a STAGE_ID: \"C2:NEW\"." }),
    );
    tunnel.insert("copy".into(), field_list("The fields copied as they are."));
    tunnel.insert(
        "set".into(),
        json!({
            "type": "object",
            "description": format!("Fields set from templates, after copy: {{ TITLE = \"Repeat sale: {{TITLE}}\" }}. {TEMPLATE}"),
            "propertyNames": { "pattern": FIELD_CODE },
            "additionalProperties": { "type": "string", "maxLength": 8192 },
        }),
    );
    tunnel.insert(
        "responsible".into(),
        reference(
            "person",
            &format!("The copy's responsible; default \"assigned\". {PERSON}"),
        ),
    );

    let operators = json!({
        "type": "object",
        "additionalProperties": false,
        "minProperties": 1,
        "properties": {
            "eq": { "$ref": "#/definitions/scalar", "description": "equals" },
            "ne": { "$ref": "#/definitions/scalar", "description": "does not equal" },
            "gt": { "type": "number", "description": "a number greater than" },
            "gte": { "type": "number", "description": "a number at least" },
            "lt": { "type": "number", "description": "a number less than" },
            "lte": { "type": "number", "description": "a number at most" },
            "in": { "type": "array", "items": { "$ref": "#/definitions/scalar" }, "description": "one of the values" },
            "not_in": { "type": "array", "items": { "$ref": "#/definitions/scalar" }, "description": "none of the values" },
            "empty": { "type": "boolean", "description": "true: missing; false: filled" },
        },
    });

    let duration = json!({
        "type": "string",
        "pattern": "^\\s*[0-9]+\\s+(minute|minutes|hour|hours|day|days|workday|workdays)\\s*$",
        "description": "An integer and a unit: minute(s), hour(s), day(s), workday(s). \"2 workdays\".",
    });

    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "b24-robot rule file",
        "description": "Rules applied when a Bitrix24 deal enters a stage. See docs/rules.md.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "pipeline": reference("pipeline", PIPELINE),
            "task": array_of("task", "[[task]]: a task on entering a stage."),
            "require": array_of("require", "[[require]]: mandatory fields for a stage."),
            "loss_reason": array_of("loss_reason", "[[loss_reason]]: a lost deal must say why; a supervisor checks it."),
            "nps": array_of("nps", "[[nps]]: a task to measure NPS after a win."),
            "tunnel": array_of("tunnel", "[[tunnel]]: copy the deal into another pipeline."),
        },
        "definitions": {
            "name": {
                "type": "string",
                "pattern": "^[a-z0-9][a-z0-9_-]*$",
                "maxLength": 64,
                "description": NAME,
            },
            "pipeline": { "type": "integer", "minimum": 0, "description": PIPELINE },
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
                    { "type": "string", "enum": ["assigned", "supervisor"] },
                    { "type": "string", "pattern": "^field:[A-Z_][A-Z0-9_]*$" },
                    { "type": "integer", "minimum": 1 },
                ],
            },
            "on_missing": { "type": "string", "enum": ["revert", "warn"], "description": ON_MISSING },
            "duration": duration,
            "deadline": {
                "type": "object",
                "description": DEADLINE,
                "additionalProperties": false,
                "properties": {
                    "after": reference("duration", "That long after the stage entry (the deal's MOVED_TIME), or after the date in `field`."),
                    "before": reference("duration", "That long before the date in `field`."),
                    "field": { "type": "string", "pattern": FIELD_CODE, "description": "The deal field holding the date `after`/`before` count from." },
                    "at": { "type": "string", "description": "A fixed moment: \"2026-12-31T18:00\" in the calendar's time zone, or with an offset." },
                    "time": { "type": "string", "pattern": "^[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?$", "description": "Pins the time of day of the result: \"18:00\"." },
                    "fallback": reference("deadline", "The deadline used when `field` is empty."),
                },
                "anyOf": [
                    { "required": ["after"] },
                    { "required": ["before", "field"] },
                    { "required": ["at"] },
                ],
            },
            "task": rule("Creates a Bitrix24 task (tasks.task.add) bound to the deal when it enters `stage`.", task, &["name", "stage", "title", "deadline"]),
            "require": rule("Fields that must be filled before a deal may be in `stage`.", require, &["name", "stage", "fields"]),
            "loss_reason": rule("Fires on entering any failure stage of `pipeline` (of every pipeline without it): the reason must be given (and allowed); with a reason, the review task is created.", loss, &["name", "field"]),
            "nps": rule("Fires on entering any success stage of `pipeline` (of every pipeline without it): a task to ask the client for a 0-10 score.", nps, &["name", "title", "deadline"]),
            "tunnel": rule("Creates a copy of the deal (crm.deal.add) in another pipeline, exactly once per deal, rule and stage entry.", tunnel, &["name", "to_pipeline", "to_stage"]),
        },
    })
}

/// The schema, pretty-printed.
pub fn text() -> String {
    serde_json::to_string_pretty(&schema()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_definition_lists_exactly_the_loader_keys() {
        let schema = schema();
        let props = schema["definitions"]["task"]["properties"]
            .as_object()
            .expect("task properties");
        let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = TASK_KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }
}
