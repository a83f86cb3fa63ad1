//! `b24-robot test [DIR]`: integrator-written rule tests, like `promtool test rules`.
//!
//! A test file (TOML) holds cases: a deal as `crm.deal.get` returns it, the stage it enters, and
//! the effects expected (or not expected). Each case is evaluated offline with the pure
//! [`rules::evaluate`](crate::rules::evaluate) and rendered into REST calls by the worker's own
//! [`plan`], so a test sees exactly the titles, people and deadlines the service would write.
//! What only the portal knows (field labels, list options, supervisors) is given in the file,
//! so results are the same on every machine.
//!
//! Test files are user input like rule files: strict (unknown keys are errors, with a
//! suggestion), every problem reported at once as `file:line:col: ...`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value, json};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{CommandError, CommandResult, load_rules, load_settings};
use crate::calendar::Calendar;
use crate::diagnostics::spanned::{Reader, entry, field_value, integer, tables, type_name};
use crate::diagnostics::{Diagnostic, suggest};
use crate::rules::{
    Deal, FieldCatalog, Input, Outcome, Person, RuleSet, StageEntry, StageSemantic, evaluate,
    offline_semantic, stage_pipeline,
};
use crate::store::EffectKind;
use crate::worker::{marker, plan};

/// `{DEAL_URL}` of test deals unless the file sets `portal`.
pub const DEFAULT_PORTAL: &str = "https://example.bitrix24.com";

/// An expectation's value, for comparison: a scalar as text, a list element-wise.
fn expected_value(value: &DeValue<'_>) -> Option<Value> {
    match value {
        DeValue::Boolean(b) => Some(json!(b.to_string())),
        other => field_value(other),
    }
}

fn moment(value: &DeValue<'_>) -> Option<DateTime<FixedOffset>> {
    let text = match value {
        DeValue::String(s) => s.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        _ => return None,
    };
    DateTime::parse_from_rfc3339(&text).ok()
}

// ----- the test file -----

const TOP_KEYS: &[&str] = &["portal", "fields", "supervisors", "case"];
const FIELD_KEYS: &[&str] = &["label", "type", "options"];
const CASE_KEYS: &[&str] = &[
    "name",
    "deal",
    "stage",
    "from",
    "moved_time",
    "semantic",
    "supervisors",
    "exact",
    "expect",
    "expect_not",
];
const KINDS: &[&str] = &["task", "move_back", "comment", "notify", "copy"];
const SEMANTICS: &[&str] = &["in_progress", "won", "lost"];

/// The keys an expectation of each kind may check, besides `kind` and `rule`.
fn kind_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "task" => &[
            "title",
            "title_contains",
            "description",
            "description_contains",
            "responsible",
            "auditors",
            "deadline",
        ],
        "move_back" => &["to_stage"],
        "comment" => &["text", "text_contains"],
        "notify" => &["user", "message", "message_contains"],
        "copy" => &["to_pipeline", "to_stage", "responsible", "fields"],
        _ => &[],
    }
}

/// One parsed test file.
#[derive(Debug)]
pub struct TestFile {
    pub name: String,
    cases: Vec<Case>,
}

impl TestFile {
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }
}

#[derive(Debug)]
struct Case {
    name: String,
    line: usize,
    deal: Deal,
    entry: StageEntry,
    from: Option<String>,
    catalog: FieldCatalog,
    portal: String,
    supervisors: BTreeMap<u64, u64>,
    exact: bool,
    expect: Vec<Expect>,
    expect_not: Vec<ExpectNot>,
}

#[derive(Debug)]
struct Expect {
    line: usize,
    kind: String,
    rule: Option<String>,
    checks: Vec<(String, Check)>,
}

#[derive(Debug)]
enum Check {
    Equals(Value),
    Contains(String),
    Deadline(Option<DateTime<FixedOffset>>),
    Fields(Map<String, Value>),
}

#[derive(Debug)]
struct ExpectNot {
    line: usize,
    kind: Option<String>,
    rule: Option<String>,
}

/// Parses a test file; `Err` holds every problem. Rule names are checked against `rules`.
pub fn parse(name: &str, text: &str, rules: &RuleSet) -> Result<TestFile, Vec<Diagnostic>> {
    let mut r = Reader::new(name, text);
    let doc = r.parse();
    let doc = doc.get_ref();
    r.keys(doc, TOP_KEYS, "at the top level of a test file");
    let portal = r
        .string(doc, "portal")
        .unwrap_or_else(|| DEFAULT_PORTAL.to_string());
    let catalog = catalog(&mut r, doc);
    let supervisors = entry(doc, "supervisors")
        .map(|(_, v)| supervisor_map(&mut r, v))
        .unwrap_or_default();
    let mut cases = Vec::new();
    for (span, table) in tables(&mut r, doc, "case") {
        if let Some(case) = parse_case(&mut r, span, table, &catalog, &portal, &supervisors, rules)
        {
            cases.push(case);
        }
    }
    if cases.is_empty() && r.errors.is_empty() {
        r.error(0..0, "the file has no test cases", "add a [[case]] section");
    }
    if r.errors.is_empty() {
        Ok(TestFile {
            name: name.to_string(),
            cases,
        })
    } else {
        Err(r.errors)
    }
}

/// `[fields.CODE] label = "...", type = "enumeration", options = { 11 = "Too expensive" }`,
/// turned into the `crm.deal.fields` answer the service would read.
fn catalog(r: &mut Reader<'_>, doc: &DeTable<'_>) -> FieldCatalog {
    let Some((_, v)) = entry(doc, "fields") else {
        return FieldCatalog::empty();
    };
    let DeValue::Table(fields) = v.get_ref() else {
        r.error(
            v.span(),
            "\"fields\" must be a table of fields",
            "write [fields.UF_CRM_X] with label, type and options",
        );
        return FieldCatalog::empty();
    };
    let mut answer = Map::new();
    for (code, spec) in fields.iter() {
        let DeValue::Table(spec_table) = spec.get_ref() else {
            r.error(
                spec.span(),
                format!("fields.{} must be a table", code.get_ref()),
                "write { label = \"Loss reason\", type = \"enumeration\", options = { 11 = \"Too expensive\" } }",
            );
            continue;
        };
        r.keys(
            spec_table,
            FIELD_KEYS,
            &format!("in fields.{}", code.get_ref()),
        );
        let label = r.string(spec_table, "label");
        let mut items = Vec::new();
        if let Some((_, options)) = entry(spec_table, "options") {
            match options.get_ref() {
                DeValue::Table(options) => {
                    for (id, label) in options.iter() {
                        match label.get_ref() {
                            DeValue::String(s) => {
                                items.push(json!({"ID": id.get_ref().to_string(), "VALUE": s}))
                            }
                            other => r.error(
                                label.span(),
                                format!(
                                    "an option's label must be a string, found {}",
                                    type_name(other)
                                ),
                                "write options = { 11 = \"Too expensive\" }",
                            ),
                        }
                    }
                }
                other => r.error(
                    options.span(),
                    format!("\"options\" must be a table, found {}", type_name(other)),
                    "write options = { 11 = \"Too expensive\", 12 = \"No budget\" }",
                ),
            }
        }
        let field_type = r.string(spec_table, "type").unwrap_or_else(|| {
            if items.is_empty() {
                "string".into()
            } else {
                "enumeration".into()
            }
        });
        answer.insert(
            code.get_ref().to_string(),
            json!({"type": field_type, "title": code.get_ref().to_string(), "formLabel": label, "items": items}),
        );
    }
    FieldCatalog::from_deal_fields(&Value::Object(answer))
}

/// `supervisors = { 3 = 2, 4 = 2 }`: user id → the supervisor the portal would name.
fn supervisor_map(r: &mut Reader<'_>, v: &Spanned<DeValue<'_>>) -> BTreeMap<u64, u64> {
    let mut map = BTreeMap::new();
    let DeValue::Table(table) = v.get_ref() else {
        r.error(
            v.span(),
            "\"supervisors\" must be a table: user id = supervisor's user id",
            "write supervisors = { 3 = 2 }",
        );
        return map;
    };
    for (user, head) in table.iter() {
        let user_id = user.get_ref().parse::<u64>().ok();
        let head_id = integer(head.get_ref()).and_then(|h| u64::try_from(h).ok());
        match (user_id, head_id) {
            (Some(u), Some(h)) => {
                map.insert(u, h);
            }
            (None, _) => r.error(
                user.span(),
                format!("\"{}\" is not a user id", user.get_ref()),
                "write supervisors = { 3 = 2 }: user 3's supervisor is user 2",
            ),
            (_, None) => r.error(
                head.span(),
                "a supervisor is a user id: an integer",
                "write supervisors = { 3 = 2 }",
            ),
        }
    }
    map
}

fn parse_case(
    r: &mut Reader<'_>,
    span: Range<usize>,
    table: &DeTable<'_>,
    catalog: &FieldCatalog,
    portal: &str,
    file_supervisors: &BTreeMap<u64, u64>,
    rules: &RuleSet,
) -> Option<Case> {
    let rule_names: Vec<&str> = rules.rules().iter().map(|r| r.name()).collect();
    let errors_before = r.errors.len();
    let line = r.line(span.start);
    r.keys(table, CASE_KEYS, "in [[case]]");
    let name = r
        .string(table, "name")
        .unwrap_or_else(|| format!("case at line {line}"));
    let mut fields = match entry(table, "deal") {
        Some((_, v)) => r.fields(v, "deal"),
        None => Map::new(),
    };
    let stage = match r.string(table, "stage") {
        Some(s) => s,
        None => {
            if entry(table, "stage").is_none() {
                r.error(
                    span.clone(),
                    format!("case \"{name}\" has no \"stage\""),
                    "add stage = \"PREPARATION\": the stage the deal enters",
                );
            }
            String::new()
        }
    };
    let from = r.string(table, "from");
    let category = fields
        .get("CATEGORY_ID")
        .and_then(Value::as_str)
        .and_then(|c| c.parse::<u64>().ok())
        .or_else(|| {
            stage
                .split_once(':')
                .and_then(|(p, _)| p.strip_prefix('C')?.parse().ok())
        })
        .unwrap_or(0);
    let semantic = match r.string(table, "semantic") {
        Some(s) => match s.as_str() {
            "won" => Some(StageSemantic::Success),
            "lost" => Some(StageSemantic::Failure),
            "in_progress" => Some(StageSemantic::Process),
            other => {
                let (_, v) = entry(table, "semantic")?;
                let help = match suggest(other, SEMANTICS) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => format!("use one of: {}", SEMANTICS.join(", ")),
                };
                r.error(v.span(), format!("unknown semantic \"{other}\""), &help);
                None
            }
        },
        None => None,
    };
    let semantic = semantic
        .or_else(|| {
            fields
                .get("STAGE_SEMANTIC_ID")
                .and_then(Value::as_str)
                .map(StageSemantic::from_code)
        })
        // Bitrix24's default final stages: WON is a success, LOSE and APOLOGY failures.
        .unwrap_or_else(|| offline_semantic(&stage).unwrap_or(StageSemantic::Process));
    // A revert never crosses pipelines: a previous stage elsewhere is a mistake in the file.
    if let (Some(from), Some((_, v))) = (&from, entry(table, "from"))
        && stage_pipeline(from) != Some(category)
    {
        let there = match stage_pipeline(from) {
            Some(p) => format!("in pipeline {p}"),
            None => "not a stage id".to_string(),
        };
        let help = format!(
            "a deal is never moved back across pipelines: write a stage of pipeline {category} ({}), or leave \"from\" out when the deal came from another pipeline",
            rules.stages_of(category).join(", ")
        );
        r.error(
            v.span(),
            format!("\"from\" stage \"{from}\" is {there}, but the case's deal is in pipeline {category}"),
            &help,
        );
    }
    let moved_time = match entry(table, "moved_time") {
        Some((_, v)) => match moment(v.get_ref()) {
            Some(t) => Some(t),
            None => {
                r.error(
                    v.span(),
                    "\"moved_time\" must be a moment with its offset",
                    "write moved_time = \"2026-12-01T10:00:00+03:00\"",
                );
                None
            }
        },
        None => fields
            .get("MOVED_TIME")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
    };
    // The deal the service would read: in the stage it entered, with an id for {DEAL_URL}.
    fields
        .entry("ID")
        .or_insert_with(|| Value::String("1".into()));
    fields
        .entry("STAGE_ID")
        .or_insert_with(|| Value::String(stage.clone()));
    fields
        .entry("CATEGORY_ID")
        .or_insert_with(|| Value::String(category.to_string()));
    let supervisors = match entry(table, "supervisors") {
        Some((_, v)) => supervisor_map(r, v),
        None => file_supervisors.clone(),
    };
    let exact = r.boolean(table, "exact").unwrap_or(false);
    let rule_ref = |r: &mut Reader<'_>, t: &DeTable<'_>| -> Option<String> {
        let name = r.string(t, "rule")?;
        if !rule_names.contains(&name.as_str()) {
            let (_, v) = entry(t, "rule")?;
            let help = match suggest(&name, &rule_names) {
                Some(s) => format!("did you mean \"{s}\"?"),
                None => "the rules folder has no rule of that name".to_string(),
            };
            r.error(v.span(), format!("no rule named \"{name}\""), &help);
        }
        Some(name)
    };
    let mut expect = Vec::new();
    let mut wants_deadline = None;
    for (span, t) in tables(r, table, "expect") {
        let line = r.line(span.start);
        let kind = expect_kind(r, t, &span)?;
        let mut allowed = vec!["kind", "rule"];
        allowed.extend(kind_keys(&kind));
        r.keys(t, &allowed, &format!("in a \"{kind}\" expectation"));
        let rule = rule_ref(r, t);
        let mut checks = Vec::new();
        for key in kind_keys(&kind) {
            let Some((_, v)) = entry(t, key) else {
                continue;
            };
            let check = match *key {
                "deadline" => {
                    wants_deadline.get_or_insert(v.span());
                    match v.get_ref() {
                        DeValue::String(s) if s.as_ref() == "none" => Check::Deadline(None),
                        other => match moment(other) {
                            Some(t) => Check::Deadline(Some(t)),
                            None => {
                                r.error(
                                    v.span(),
                                    "\"deadline\" must be a moment with its offset, or \"none\"",
                                    "write deadline = \"2026-12-02T18:00:00+03:00\"",
                                );
                                continue;
                            }
                        },
                    }
                }
                "fields" => Check::Fields(r.fields(v, "fields")),
                k if k.ends_with("_contains") => match r.string(t, k) {
                    Some(s) => Check::Contains(s),
                    None => continue,
                },
                _ => match expected_value(v.get_ref()) {
                    Some(value) => Check::Equals(value),
                    None => {
                        r.error(
                            v.span(),
                            format!("\"{key}\" cannot be {}", type_name(v.get_ref())),
                            "",
                        );
                        continue;
                    }
                },
            };
            checks.push((key.to_string(), check));
        }
        expect.push(Expect {
            line,
            kind,
            rule,
            checks,
        });
    }
    let mut expect_not = Vec::new();
    for (span, t) in tables(r, table, "expect_not") {
        let line = r.line(span.start);
        r.keys(t, &["kind", "rule"], "in [[case.expect_not]]");
        let kind = match entry(t, "kind") {
            Some(_) => Some(expect_kind(r, t, &span)?),
            None => None,
        };
        let rule = rule_ref(r, t);
        if kind.is_none() && rule.is_none() && entry(t, "rule").is_none() {
            r.error(
                span,
                "an expect_not names a \"rule\", a \"kind\" or both",
                "write rule = \"new-offer\": that rule must make no effect",
            );
        }
        expect_not.push(ExpectNot { line, kind, rule });
    }
    if expect.is_empty() && expect_not.is_empty() && !exact {
        r.error(
            span.clone(),
            format!("case \"{name}\" expects nothing"),
            "add [[case.expect]] or [[case.expect_not]], or exact = true for \"no effects at all\"",
        );
    }
    let created_time = match (moved_time, wants_deadline) {
        (Some(t), _) => t,
        (None, Some(span)) => {
            r.error(
                span,
                "a deadline is expected, but the case has no moved_time (nor a MOVED_TIME in its deal)",
                "add moved_time = \"2026-12-01T10:00:00+03:00\": deadlines count from it",
            );
            Utc::now().fixed_offset()
        }
        (None, None) => Utc::now().fixed_offset(),
    };
    fields
        .entry("MOVED_TIME")
        .or_insert_with(|| Value::String(created_time.to_rfc3339()));
    let entry = StageEntry {
        id: 0,
        type_id: 2,
        stage_id: stage,
        category_id: category,
        semantic,
        created_time,
    };
    (r.errors.len() == errors_before).then(|| Case {
        name,
        line,
        deal: Deal::new(fields),
        entry,
        from,
        catalog: catalog.clone(),
        portal: portal.to_string(),
        supervisors,
        exact,
        expect,
        expect_not,
    })
}

fn expect_kind(r: &mut Reader<'_>, t: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let Some(kind) = r.string(t, "kind") else {
        if entry(t, "kind").is_none() {
            r.error(
                span.clone(),
                "an expectation without \"kind\"",
                &format!("add kind = one of {}", KINDS.join(", ")),
            );
        }
        return None;
    };
    if KINDS.contains(&kind.as_str()) {
        return Some(kind);
    }
    let (_, v) = entry(t, "kind")?;
    let help = match suggest(&kind, KINDS) {
        Some(s) => format!("did you mean \"{s}\"?"),
        None => format!("use one of: {}", KINDS.join(", ")),
    };
    r.error(v.span(), format!("unknown kind \"{kind}\""), &help);
    None
}

// ----- running -----

/// One effect as the service would write it, in the words of an expectation.
#[derive(Debug, Clone)]
struct Actual {
    rule: String,
    kind: &'static str,
    values: BTreeMap<&'static str, Value>,
    /// One line for people: what the demo prints.
    shown: String,
}

fn kind_name(kind: EffectKind) -> &'static str {
    match kind {
        EffectKind::Task => "task",
        EffectKind::Comment => "comment",
        EffectKind::Notify => "notify",
        EffectKind::MoveBack => "move_back",
        EffectKind::CopyDeal => "copy",
    }
}

/// The outcome of one case: `None` passed, `Some(report)` failed.
fn run_case(
    file: &str,
    case: &Case,
    rules: &RuleSet,
    (calendar, max_tunnel_depth): (&Calendar, u32),
) -> Option<String> {
    let input = Input {
        deal: &case.deal,
        entry: &case.entry,
        previous_stage: case.from.as_deref(),
        catalog: &case.catalog,
        calendar,
        portal_origin: &case.portal,
        max_tunnel_depth,
    };
    let evaluation = evaluate(rules, &input);
    let deal_id = case.deal.id().unwrap_or(0);
    let mut actual = Vec::new();
    let mut problems = Vec::new();
    for decision in &evaluation.decisions {
        let Outcome::Fired(effects) = &decision.outcome else {
            continue;
        };
        for (index, effect) in effects.iter().enumerate() {
            let mark = marker(deal_id, 0, &decision.rule, index as u32);
            let mut resolve = |person: &Person| -> Result<Value, String> {
                Ok(match person {
                    Person::User(id) => json!(id),
                    Person::SupervisorOf(user) => match case.supervisors.get(user) {
                        Some(head) => json!(head),
                        None => json!(format!(
                            "<unresolved: supervisor of user {user} (add supervisors = {{ {user} = ... }})>"
                        )),
                    },
                    Person::Unresolved(why) => json!(format!("<unresolved: {why}>")),
                })
            };
            match plan(effect, deal_id, mark, &mut resolve) {
                Ok(call) => actual.push(Actual {
                    rule: decision.rule.clone(),
                    kind: kind_name(call.kind),
                    values: values_of(call.kind, &call.params),
                    shown: crate::commands::demo::describe(&call.method, &call.params),
                }),
                Err(e) => problems.push(format!("rule \"{}\": {e}", decision.rule)),
            }
        }
    }
    let mut report = String::new();
    let mut used = vec![false; actual.len()];
    for expect in &case.expect {
        let candidates: Vec<usize> = (0..actual.len())
            .filter(|&i| {
                actual[i].kind == expect.kind
                    && expect.rule.as_ref().is_none_or(|r| *r == actual[i].rule)
            })
            .collect();
        let hit = candidates
            .iter()
            .copied()
            .find(|&i| !used[i] && mismatches(expect, &actual[i]).is_empty());
        if let Some(i) = hit {
            used[i] = true;
            continue;
        }
        let what = describe_expect(&expect.kind, expect.rule.as_deref());
        let _ = writeln!(report, "  expected {what} ({file}:{})", expect.line);
        let best = candidates
            .iter()
            .copied()
            .min_by_key(|&i| (used[i], mismatches(expect, &actual[i]).len()));
        match best {
            Some(i) => {
                let _ = writeln!(
                    report,
                    "    closest actual [{}] {}",
                    actual[i].rule, actual[i].shown
                );
                for (key, expected, got) in mismatches(expect, &actual[i]) {
                    let _ = writeln!(report, "    {key}:");
                    let _ = writeln!(report, "      expected {expected}");
                    let _ = writeln!(report, "      actual   {got}");
                }
            }
            None => {
                let _ = writeln!(report, "    no such effect was made");
                if let Some(rule) = &expect.rule {
                    why_not(&mut report, &evaluation, rule);
                }
            }
        }
    }
    for not in &case.expect_not {
        let hits: Vec<&Actual> = actual
            .iter()
            .filter(|a| {
                not.kind.as_ref().is_none_or(|k| k == a.kind)
                    && not.rule.as_ref().is_none_or(|r| *r == a.rule)
            })
            .collect();
        if !hits.is_empty() {
            let what = match (&not.kind, &not.rule) {
                (Some(k), r) => describe_expect(k, r.as_deref()),
                (None, Some(r)) => format!("an effect from rule \"{r}\""),
                (None, None) => "an effect".into(),
            };
            let _ = writeln!(report, "  expected no {what} ({file}:{})", not.line);
            for a in hits {
                let _ = writeln!(report, "    actual [{}] {}", a.rule, a.shown);
            }
        }
    }
    if case.exact {
        for (i, a) in actual.iter().enumerate().filter(|(i, _)| !used[*i]) {
            let _ = i;
            let _ = writeln!(
                report,
                "  unexpected [{}] {} (exact = true: every effect must be expected)",
                a.rule, a.shown
            );
        }
    }
    for p in problems {
        let _ = writeln!(report, "  effect cannot be made: {p}");
    }
    if report.is_empty() {
        return None;
    }
    let _ = writeln!(report, "  what the rules did:");
    for d in &evaluation.decisions {
        let _ = writeln!(report, "    {}", decision_line(d));
    }
    if evaluation.decisions.is_empty() {
        let _ = writeln!(
            report,
            "    no rule concerns {} (pipeline {}, {:?})",
            case.entry.stage_id, case.entry.category_id, case.entry.semantic
        );
    }
    Some(report)
}

fn decision_line(d: &crate::rules::Decision) -> String {
    let outcome = match &d.outcome {
        Outcome::Fired(e) => format!("fired, {} effect(s)", e.len()),
        Outcome::Skipped(crate::rules::SkipReason::ConditionFalse) => {
            "skipped: condition false".into()
        }
        Outcome::Skipped(crate::rules::SkipReason::Reverted { by }) => {
            format!("skipped: the deal was moved back by rule \"{by}\"")
        }
        Outcome::Skipped(crate::rules::SkipReason::OwnCopy { origin }) => {
            format!("skipped: the deal is this tunnel's copy of deal {origin}")
        }
        Outcome::Failed(e) => format!("failed: {e}"),
    };
    let notes = if d.notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", d.notes.join("; "))
    };
    format!("rule \"{}\": {outcome}{notes}", d.rule)
}

fn why_not(report: &mut String, evaluation: &crate::rules::Evaluation, rule: &str) {
    match evaluation.decisions.iter().find(|d| d.rule == rule) {
        Some(d) => {
            let _ = writeln!(report, "    {}", decision_line(d));
        }
        None => {
            let _ = writeln!(
                report,
                "    rule \"{rule}\" does not concern this stage entry (another pipeline or stage)"
            );
        }
    }
}

fn describe_expect(kind: &str, rule: Option<&str>) -> String {
    match rule {
        Some(r) => format!("{kind} from rule \"{r}\""),
        None => format!("{kind} from any rule"),
    }
}

/// The comparable values of a planned REST call, by expectation key.
fn values_of(kind: EffectKind, params: &Value) -> BTreeMap<&'static str, Value> {
    let f = &params["fields"];
    let mut values = BTreeMap::new();
    let mut put = |key: &'static str, v: Option<&Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            values.insert(key, v.clone());
        }
    };
    match kind {
        EffectKind::Task => {
            put("title", f.get("TITLE"));
            put("description", f.get("DESCRIPTION"));
            put("responsible", f.get("RESPONSIBLE_ID"));
            put("auditors", f.get("AUDITORS"));
            put("deadline", f.get("DEADLINE"));
        }
        EffectKind::MoveBack => put("to_stage", f.get("STAGE_ID")),
        EffectKind::Comment => put("text", f.get("COMMENT")),
        EffectKind::Notify => {
            put("user", params.get("USER_ID"));
            put("message", params.get("MESSAGE"));
        }
        EffectKind::CopyDeal => {
            put("to_pipeline", f.get("CATEGORY_ID"));
            put("to_stage", f.get("STAGE_ID"));
            put("responsible", f.get("ASSIGNED_BY_ID"));
            put("fields", Some(f));
        }
    }
    values
}

/// A value as text for comparison: Bitrix24 mixes `"3"` and `3`; a test must not care.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(text).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn quoted(v: Option<&Value>) -> String {
    match v {
        None => "(nothing)".into(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => text(other),
    }
}

/// `(key, expected, actual)` for every check that does not hold.
fn mismatches(expect: &Expect, actual: &Actual) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (key, check) in &expect.checks {
        let base = key.trim_end_matches("_contains");
        let got = actual.values.get(base);
        match check {
            Check::Equals(want) => {
                if got.map(text) != Some(text(want)) {
                    out.push((key.clone(), quoted(Some(want)), quoted(got)));
                }
            }
            Check::Contains(part) => {
                if !got.map(text).is_some_and(|g| g.contains(part.as_str())) {
                    out.push((key.clone(), format!("to contain {part:?}"), quoted(got)));
                }
            }
            Check::Deadline(want) => {
                let got_time = got
                    .and_then(Value::as_str)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                if *want != got_time {
                    let show = |t: &Option<DateTime<FixedOffset>>| match t {
                        Some(t) => t.to_rfc3339(),
                        None => "none".into(),
                    };
                    out.push((key.clone(), show(want), show(&got_time)));
                }
            }
            Check::Fields(want) => {
                for (field, value) in want {
                    let g = got.and_then(|g| g.get(field));
                    if g.map(text) != Some(text(value)) {
                        out.push((format!("fields.{field}"), quoted(Some(value)), quoted(g)));
                    }
                }
            }
        }
    }
    out
}

/// The result of a whole run, for the command and for tests.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    /// One report per failed case, ready to print.
    pub failures: Vec<String>,
}

/// Runs every case of `file` (`max_tunnel_depth`: `rules.max_tunnel_depth` of the config).
pub fn run(
    file: &TestFile,
    rules: &RuleSet,
    calendar: &Calendar,
    max_tunnel_depth: u32,
) -> Summary {
    let mut summary = Summary::default();
    for case in &file.cases {
        match run_case(&file.name, case, rules, (calendar, max_tunnel_depth)) {
            None => summary.passed += 1,
            Some(report) => {
                summary.failed += 1;
                summary.failures.push(format!(
                    "FAIL {}:{}: case \"{}\"\n{report}",
                    file.name, case.line, case.name
                ));
            }
        }
    }
    summary
}

/// The `*.toml` files of a folder, in name order (or the file itself).
pub fn test_files(path: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let listing =
        std::fs::read_dir(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut files: Vec<_> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// `b24-robot test`: 0 all passed, 1 a case failed (or the rules do not load), 2 a test file
/// is unreadable or invalid.
pub fn command(config: Option<PathBuf>, path: &Path, rules_dir: Option<PathBuf>) -> CommandResult {
    let mut settings = load_settings(config)?;
    if let Some(dir) = rules_dir {
        settings.rules.dir = dir;
    }
    let rules = load_rules(&settings)
        .map_err(|_| CommandError::Failed("the rules do not load: no test was run".into()))?;
    run_files(
        path,
        &rules,
        &settings.calendar,
        settings.rules.max_tunnel_depth,
    )
}

/// Runs every test file under `path` against `rules`, printing each file's result, the
/// failures' diffs and the totals.
pub fn run_files(
    path: &Path,
    rules: &RuleSet,
    calendar: &Calendar,
    max_tunnel_depth: u32,
) -> CommandResult {
    let files = test_files(path).map_err(|e| CommandError::Usage(e.to_string()))?;
    if files.is_empty() {
        return Err(CommandError::Usage(format!(
            "{}: no *.toml test files",
            path.display()
        )));
    }
    let mut parsed = Vec::new();
    let mut invalid = false;
    for path in files {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {name}: cannot read the file: {e}");
                invalid = true;
                continue;
            }
        };
        match parse(&name, &text, rules) {
            Ok(file) => parsed.push(file),
            Err(diagnostics) => {
                invalid = true;
                for d in diagnostics {
                    eprintln!("error: {d}");
                }
            }
        }
    }
    if invalid {
        return Err(CommandError::Usage(
            "invalid test files: no test was run".into(),
        ));
    }
    let mut total = Summary::default();
    for file in &parsed {
        let summary = run(file, rules, calendar, max_tunnel_depth);
        println!(
            "{}: {} case(s), {} failed",
            file.name,
            file.len(),
            summary.failed
        );
        total.passed += summary.passed;
        total.failed += summary.failed;
        total.failures.extend(summary.failures);
    }
    for failure in &total.failures {
        println!();
        print!("{failure}");
    }
    println!();
    println!("{} passed, {} failed", total.passed, total.failed);
    if total.failed == 0 {
        Ok(())
    } else {
        Err(CommandError::Found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
pipeline = 0
[[task]]
name = "offer"
stage = "PREPARATION"
title = "Offer: {TITLE}"
auditors = ["supervisor"]
deadline = { after = "1 day" }
"#;

    fn rules() -> RuleSet {
        RuleSet::from_sources(&[("r.toml".into(), RULES.into())])
            .expect("rules load")
            .0
    }

    const GOOD: &str = r#"
supervisors = { 3 = 2 }

[[case]]
name = "offer task"
stage = "PREPARATION"
from = "NEW"
moved_time = "2026-12-01T10:00:00+03:00"
deal = { TITLE = "Acme", ASSIGNED_BY_ID = 3 }

[[case.expect]]
kind = "task"
rule = "offer"
title = "Offer: Acme"
responsible = 3
auditors = [2]
deadline = "2026-12-02T10:00:00+03:00"
"#;

    #[test]
    fn a_matching_expectation_passes() {
        let file = parse("t.toml", GOOD, &rules()).expect("valid");
        let summary = run(&file, &rules(), &Calendar::default(), 3);
        assert_eq!((summary.passed, summary.failed), (1, 0), "{:?}", summary);
    }

    #[test]
    fn a_wrong_title_fails_with_expected_and_actual() {
        let text = GOOD.replace("title = \"Offer: Acme\"", "title = \"Offer to Acme\"");
        let file = parse("t.toml", &text, &rules()).expect("valid");
        let summary = run(&file, &rules(), &Calendar::default(), 3);
        assert_eq!(summary.failed, 1);
        let report = &summary.failures[0];
        assert!(
            report.contains("FAIL t.toml:4: case \"offer task\""),
            "{report}"
        );
        assert!(report.contains("expected \"Offer to Acme\""), "{report}");
        assert!(report.contains("actual   \"Offer: Acme\""), "{report}");
    }

    #[test]
    fn unknown_keys_and_rules_are_reported_with_their_position_and_a_suggestion() {
        let text = GOOD
            .replace("rule = \"offer\"", "rule = \"ofer\"")
            .replace("title = \"Offer: Acme\"", "titel = \"Offer: Acme\"");
        let errors = parse("t.toml", &text, &rules()).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("t.toml:14:1: unknown key \"titel\"")
                    && e.contains("did you mean \"title\"?")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("t.toml:13:8: no rule named \"ofer\"")),
            "{shown:?}"
        );
    }

    #[test]
    fn a_from_stage_of_another_pipeline_makes_the_test_file_invalid() {
        let text = GOOD.replace("from = \"NEW\"", "from = \"C1:NEW\"");
        let errors = parse("t.toml", &text, &rules()).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "t.toml:7:8: \"from\" stage \"C1:NEW\" is in pipeline 1, but the case's deal is in pipeline 0 (a deal is never moved back across pipelines: write a stage of pipeline 0 (NEW, PREPARATION, PREPAYMENT_INVOICE, EXECUTING, FINAL_INVOICE, WON, LOSE, APOLOGY), or leave \"from\" out when the deal came from another pipeline)"
            ]
        );
    }
}
