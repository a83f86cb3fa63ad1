//! A rule-test file read: its portal facts (field labels, list options, stage names,
//! supervisors, the portal's language) and its
//! cases (a deal, the stage entry, the effects expected or not), every problem reported at once
//! as `file:line:col: ...`.
//!
//! Over 500 lines because a case is read here whole (its deal and entry, expectations per effect
//! kind), key by key with its diagnostics; the portal facts are read in `facts.rs`, a control
//! case's moment in `control.rs`, the run is in `run.rs`.

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value, json};
use toml::de::{DeTable, DeValue};

use super::facts::{catalog, stages, supervisor_map};
use crate::calendar::Calendar;
use crate::diagnostics::spanned::{Reader, entry, field_value, tables, type_name};
use crate::diagnostics::{Diagnostic, suggest};
use crate::rules::{
    Deal, FieldCatalog, Language, RuleSet, StageEntry, StageSemantic, offline_semantic,
    stage_pipeline,
};

/// `{DEAL_URL}` of test deals unless the file sets `portal`.
pub const DEFAULT_PORTAL: &str = "https://example.bitrix24.com";

/// An expectation's value, for comparison: a scalar as text, a list element-wise.
pub(super) fn expected_value(value: &DeValue<'_>) -> Option<Value> {
    match value {
        DeValue::Boolean(b) => Some(json!(b.to_string())),
        other => field_value(other),
    }
}

pub(super) fn moment(value: &DeValue<'_>) -> Option<DateTime<FixedOffset>> {
    let text = match value {
        DeValue::String(s) => s.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        _ => return None,
    };
    DateTime::parse_from_rfc3339(&text).ok()
}

/// `key = "2026-12-01T10:00:00+03:00"`: `None` when absent or not a moment with its offset
/// (the problem recorded).
pub(super) fn moment_key(
    r: &mut Reader<'_>,
    table: &DeTable<'_>,
    key: &str,
) -> Option<DateTime<FixedOffset>> {
    let (_, v) = entry(table, key)?;
    let at = moment(v.get_ref());
    if at.is_none() {
        r.error(
            v.span(),
            format!("\"{key}\" must be a moment with its offset"),
            &format!("write {key} = \"2026-12-01T10:00:00+03:00\""),
        );
    }
    at
}

// ----- the test file -----

const TOP_KEYS: &[&str] = &[
    "portal",
    "language",
    "calendar",
    "fields",
    "stages",
    "supervisors",
    "case",
];
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
    // A control case's moment (`control.rs`).
    "now",
    "now_in",
    "tasks",
    "activities",
];
pub(super) const KINDS: &[&str] = &["task", "move_back", "comment", "notify", "copy"];
pub(super) const SEMANTICS: &[&str] = &["in_progress", "won", "lost"];

/// The keys an expectation of each kind may check, besides `kind` and `rule`.
pub(super) fn kind_keys(kind: &str) -> &'static [&'static str] {
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
    /// `language = "en"`: the portal's language for the service's own texts; without it, the
    /// config's `portal.language`.
    pub language: Option<Language>,
    /// The file's own `[calendar]`, which wins over the config's.
    pub(super) calendar: Option<Calendar>,
    pub(super) cases: Vec<Case>,
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
pub(super) struct Case {
    pub(super) name: String,
    pub(super) line: usize,
    pub(super) deal: Deal,
    pub(super) entry: StageEntry,
    pub(super) from: Option<String>,
    pub(super) catalog: FieldCatalog,
    pub(super) portal: String,
    pub(super) supervisors: BTreeMap<u64, u64>,
    pub(super) exact: bool,
    pub(super) expect: Vec<Expect>,
    pub(super) expect_not: Vec<ExpectNot>,
    /// `now` and what the control rules read then: the case checks the time-driven rules.
    pub(super) at: Option<super::control::At>,
}

#[derive(Debug)]
pub(super) struct Expect {
    pub(super) line: usize,
    pub(super) kind: String,
    pub(super) rule: Option<String>,
    pub(super) checks: Vec<(String, Check)>,
}

#[derive(Debug)]
pub(super) enum Check {
    Equals(Value),
    Contains(String),
    Deadline(Option<DateTime<FixedOffset>>),
    Fields(Map<String, Value>),
}

#[derive(Debug)]
pub(super) struct ExpectNot {
    pub(super) line: usize,
    pub(super) kind: Option<String>,
    pub(super) rule: Option<String>,
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
    let language = entry(doc, "language").and_then(|(_, v)| {
        let language = match v.get_ref() {
            DeValue::String(s) => Language::parse(s),
            _ => None,
        };
        if language.is_none() {
            r.error(
                v.span(),
                "\"language\" must be \"ru\" or \"en\"",
                "write language = \"ru\" (or \"en\"), as portal.language of the config",
            );
        }
        language
    });
    let calendar = super::calendar::calendar(&mut r, doc);
    let catalog = catalog(&mut r, doc);
    let catalog = stages(&mut r, doc, catalog);
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
            language,
            calendar,
            cases,
        })
    } else {
        Err(r.errors)
    }
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
    let rule_names: Vec<&str> = rules
        .rules()
        .iter()
        .map(|r| r.name())
        .chain(rules.controls().names().into_iter().map(|(name, _)| name))
        .collect();
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
        Some(_) => moment_key(r, table, "moved_time"),
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
    let deal_id = fields
        .get("ID")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
        .unwrap_or(1);
    let at = super::control::at(r, table, deal_id);
    // The deal as the control rules read it at `now`: in the stage it has moved on to.
    if let Some(now_in) = at.as_ref().and_then(|at| at.now_in.clone()) {
        fields.insert("STAGE_ID".into(), Value::String(now_in));
    }
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
    if let Some(at) = &at {
        match moved_time {
            None => r.error(
                at.span.clone(),
                "a case with \"now\" has no moved_time (nor a MOVED_TIME in its deal)",
                "add moved_time = \"2026-12-01T10:00:00+03:00\": the SLA and no-task rules count from the stage entry",
            ),
            Some(entered) if at.now < entered => r.error(
                at.span.clone(),
                format!(
                    "\"now\" {} is before the stage entry {}",
                    at.now.to_rfc3339(),
                    entered.to_rfc3339()
                ),
                "write a \"now\" after moved_time: the moment the control rules look at the deal",
            ),
            Some(_) => {}
        }
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
        at,
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
