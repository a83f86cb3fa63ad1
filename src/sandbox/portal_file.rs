//! The portal file: a Bitrix24 portal described in TOML (its pipelines and stages, custom deal
//! fields, departments and users), what `b24-robot sandbox --portal FILE` rehearses against and
//! what `b24-robot sandbox export` writes from the live portal. The built-in portal of the demo,
//! the sandbox, the bench and the tests is one too ([`BUILTIN`]), read by the same reader.
//!
//! It is read strictly, like rule files: every problem at once, each at its `file:line:col`, a
//! misspelt key with the closest right one. Each part mirrors what a read-only REST call of
//! the portal answers, so an exported file seeds a simulated portal that answers those calls
//! alike (shared/reference/bitrix24-api.md §6.5, §6.6, §6.12):
//!
//! - `[[pipeline]]`: `crm.category.list` `{"entityTypeId": 2}` → `categories[]` `id`, `name`,
//!   `sort` (docs: `api-reference/crm/universal/category/crm-category-list.md`);
//! - `[[pipeline.stage]]`: `crm.status.list` filtered on `ENTITY_ID` `DEAL_STAGE` (pipeline 0)
//!   or `DEAL_STAGE_<n>` → `STATUS_ID`, `NAME`, `SORT`, and `SEMANTICS` (`S` won, `F` lost, null
//!   in progress); stage ids of pipeline `n` carry its `C<n>:` prefix (docs:
//!   `api-reference/crm/status/crm-status-list.md`, `tutorials/crm/how-to-get-lists/
//!   how-to-get-stages-with-semantics.md`);
//! - `[fields.CODE]`: the custom (`UF_CRM_*`) entries of `crm.deal.fields`: `type`,
//!   `formLabel` (the legacy method's `title` is only the code), `isMultiple`, `isReadOnly`, and
//!   an `enumeration`'s `items` `ID` → `VALUE` (docs: `api-reference/crm/deals/
//!   crm-deal-fields.md`; `crm.deal.userfield.list` has the same options as `LIST`). Standard
//!   fields (`TITLE`, `STAGE_ID`, `ASSIGNED_BY_ID`, ...) are known without being listed;
//! - `[[department]]`: `department.get` → `ID`, `NAME`, `PARENT`, `UF_HEAD`, `SORT` (docs:
//!   `api-reference/departments/department-get.md`);
//! - `[[user]]`: `user.get` → `ID`, `NAME` and `LAST_NAME` (one `name` here), `UF_DEPARTMENT`
//!   (docs: `api-reference/user/user-get.md`).

use std::fmt::Write as _;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::SimPortal;
use crate::diagnostics::spanned::{
    Reader, array_of_tables, entries_in_order, entry, integer, tables, type_name,
};
use crate::diagnostics::{Diagnostic, Severity, suggest};
use crate::rules::StageSemantic;

/// The built-in portal, as a portal file (what [`super::seed::seed_portal`] seeds).
pub const BUILTIN: &str = include_str!("portal.toml");

/// A portal, as its file describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortalFile {
    /// In the file's order; the default pipeline (id 0) is always there.
    pub pipelines: Vec<Pipeline>,
    /// The custom deal fields, in the file's order.
    pub fields: Vec<Field>,
    pub departments: Vec<Department>,
    pub users: Vec<User>,
}

/// A pipeline (`crm.category.list`) and its stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// `CATEGORY_ID`: 0 for the default pipeline.
    pub id: u64,
    pub name: String,
    /// Display order among the pipelines; none: after the ones before it in the file.
    pub sort: Option<u32>,
    pub stages: Vec<Stage>,
}

/// A stage of a pipeline (a `crm.status.list` row).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// `STATUS_ID`, with the `C<n>:` prefix outside the default pipeline.
    pub id: String,
    pub name: String,
    pub semantics: StageSemantic,
    /// `SORT`; none: 10, 20, ... in the file's order.
    pub sort: Option<u32>,
}

/// A custom deal field (a `UF_CRM_*` entry of `crm.deal.fields`).
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub code: String,
    /// `type` of `crm.deal.fields`: `string`, `double`, `enumeration`, `date`, ...
    pub kind: String,
    pub label: String,
    pub multiple: bool,
    /// `isReadOnly`: the portal ignores writes of it, and the sandbox refuses them.
    pub read_only: bool,
    /// An `enumeration`'s options: id (what a deal stores) → label, in order.
    pub options: Vec<(u64, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Department {
    pub id: u64,
    pub name: String,
    pub parent: Option<u64>,
    /// `UF_HEAD`: the user who heads it; none: its people's supervisor is found higher up.
    pub head: Option<u64>,
    /// `SORT`; none: 100, 200, ... in the file's order.
    pub sort: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: u64,
    /// First name, then the last name after the first space (`NAME`, `LAST_NAME`).
    pub name: String,
    /// `UF_DEPARTMENT`.
    pub departments: Vec<u64>,
}

/// How a stage's kind is written, and what it means.
const SEMANTICS: [(&str, StageSemantic); 3] = [
    ("in progress", StageSemantic::Process),
    ("won", StageSemantic::Success),
    ("lost", StageSemantic::Failure),
];

const TOP_KEYS: &[&str] = &["pipeline", "fields", "department", "user"];
const PIPELINE_KEYS: &[&str] = &["id", "name", "sort", "stage"];
const STAGE_KEYS: &[&str] = &["id", "name", "semantics", "sort"];
const FIELD_KEYS: &[&str] = &["type", "label", "multiple", "read_only", "options"];
const DEPARTMENT_KEYS: &[&str] = &["id", "name", "parent", "head", "sort"];
const USER_KEYS: &[&str] = &["id", "name", "departments"];

/// What a reference names, checked once the whole file is read.
enum Ref {
    Department(u64),
    User(u64),
}

impl PortalFile {
    /// The built-in portal.
    pub fn builtin() -> PortalFile {
        parse_portal("built-in portal.toml", BUILTIN)
            .expect("the built-in portal file is valid: a unit test reads it")
    }

    /// Seeds `sim` (an empty simulated portal) with this portal.
    pub fn seed(&self, sim: &SimPortal) {
        let mut shared = sim.inner.lock();
        let portal = &mut shared.portal;
        for (i, p) in self.pipelines.iter().enumerate() {
            let stages: Vec<(String, String, char, u32)> = p
                .stages
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    let sort = s.sort.unwrap_or((j as u32 + 1) * 10);
                    (
                        s.id.clone(),
                        s.name.clone(),
                        semantic_code(s.semantics),
                        sort,
                    )
                })
                .collect();
            let sort = p.sort.unwrap_or((i as u32 + 1) * 100);
            portal.add_pipeline_sorted(p.id, &p.name, sort, &stages);
        }
        for f in &self.fields {
            let options: Vec<(u64, &str)> =
                f.options.iter().map(|(id, v)| (*id, v.as_str())).collect();
            portal.add_field(
                &f.code,
                &f.kind,
                &f.label,
                f.multiple,
                f.read_only,
                &options,
            );
        }
        for (i, d) in self.departments.iter().enumerate() {
            let sort = d.sort.unwrap_or((i as u32 + 1) * 100);
            portal.add_department(d.id, &d.name, d.parent, d.head, Some(sort));
        }
        for u in &self.users {
            portal.add_user(u.id, &u.name, &u.departments);
        }
    }

    /// The file's text, as [`parse_portal`] reads it back.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# A Bitrix24 portal for `b24-robot sandbox --portal FILE` (docs/rules.md).\n",
        );
        for p in &self.pipelines {
            let _ = write!(
                out,
                "\n[[pipeline]]\nid = {}\nname = {}\n",
                p.id,
                quote(&p.name)
            );
            if let Some(sort) = p.sort {
                let _ = writeln!(out, "sort = {sort}");
            }
            for s in &p.stages {
                let _ = write!(
                    out,
                    "\n[[pipeline.stage]]\nid = {}\nname = {}\nsemantics = {}\n",
                    quote(&s.id),
                    quote(&s.name),
                    quote(semantic_word(s.semantics))
                );
                if let Some(sort) = s.sort {
                    let _ = writeln!(out, "sort = {sort}");
                }
            }
        }
        for f in &self.fields {
            let _ = write!(
                out,
                "\n[fields.{}]\ntype = {}\nlabel = {}\n",
                key(&f.code),
                quote(&f.kind),
                quote(&f.label)
            );
            if f.multiple {
                out.push_str("multiple = true\n");
            }
            if f.read_only {
                out.push_str("read_only = true\n");
            }
            if !f.options.is_empty() {
                let options: Vec<String> = f
                    .options
                    .iter()
                    .map(|(id, label)| format!("{id} = {}", quote(label)))
                    .collect();
                let _ = writeln!(out, "options = {{ {} }}", options.join(", "));
            }
        }
        for d in &self.departments {
            let _ = write!(
                out,
                "\n[[department]]\nid = {}\nname = {}\n",
                d.id,
                quote(&d.name)
            );
            for (k, v) in [("parent", d.parent), ("head", d.head)] {
                if let Some(v) = v {
                    let _ = writeln!(out, "{k} = {v}");
                }
            }
            if let Some(sort) = d.sort {
                let _ = writeln!(out, "sort = {sort}");
            }
        }
        for u in &self.users {
            let departments: Vec<String> = u.departments.iter().map(u64::to_string).collect();
            let _ = write!(
                out,
                "\n[[user]]\nid = {}\nname = {}\ndepartments = [{}]\n",
                u.id,
                quote(&u.name),
                departments.join(", ")
            );
        }
        out
    }
}

fn semantic_code(semantics: StageSemantic) -> char {
    match semantics {
        StageSemantic::Process => 'P',
        StageSemantic::Success => 'S',
        StageSemantic::Failure => 'F',
    }
}

fn semantic_word(semantics: StageSemantic) -> &'static str {
    SEMANTICS
        .iter()
        .find(|(_, s)| *s == semantics)
        .map_or("in progress", |(word, _)| word)
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A table key: bare when TOML allows it, quoted otherwise.
fn key(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { text.to_string() } else { quote(text) }
}

/// Reads a portal file; `Err` holds every problem, each at its `file:line:col`.
pub fn parse_portal(name: &str, text: &str) -> Result<PortalFile, Vec<Diagnostic>> {
    let mut r = Reader::new(name, text);
    let doc = r.parse();
    let doc = doc.get_ref();
    r.keys(doc, TOP_KEYS, "at the top level of a portal file");
    let mut refs: Vec<(Range<usize>, Ref)> = Vec::new();
    let departments = read_departments(&mut r, doc, &mut refs);
    let file = PortalFile {
        pipelines: read_pipelines(&mut r, doc),
        fields: read_fields(&mut r, doc),
        departments: departments.iter().map(|(d, _)| d.clone()).collect(),
        users: read_users(&mut r, doc, &mut refs),
    };
    if r.errors.is_empty() && !file.pipelines.iter().any(|p| p.id == 0) {
        r.errors.push(Diagnostic {
            file: name.to_string(),
            line: 0,
            column: 0,
            rule: None,
            message: "no default pipeline: every portal has pipeline 0".into(),
            help: Some("add [[pipeline]] with id = 0 and its stages".into()),
            severity: Severity::Error,
        });
    }
    for (span, named) in refs {
        match named {
            Ref::Department(id) if !file.departments.iter().any(|d| d.id == id) => r.error(
                span,
                format!("no department {id} in this file"),
                "describe it in a [[department]] section",
            ),
            Ref::User(id) if !file.users.iter().any(|u| u.id == id) => r.error(
                span,
                format!("no user {id} in this file"),
                "describe them in a [[user]] section",
            ),
            _ => {}
        }
    }
    department_cycles(&mut r, &departments);
    if r.errors.is_empty() {
        Ok(file)
    } else {
        Err(r.errors)
    }
}

fn read_pipelines(r: &mut Reader<'_>, doc: &DeTable<'_>) -> Vec<Pipeline> {
    let mut pipelines: Vec<Pipeline> = Vec::new();
    for (span, t) in tables(r, doc, "pipeline") {
        r.keys(t, PIPELINE_KEYS, "in [[pipeline]]");
        let id = required(
            r,
            t,
            &span,
            "id",
            "[[pipeline]]",
            "id = 0 (the default pipeline), 1, 2 ...",
        )
        .and_then(|_| whole(r, t, "id"));
        let name = required(r, t, &span, "name", "[[pipeline]]", "name = \"General\"")
            .and_then(|_| r.string(t, "name"));
        let sort = sort(r, t);
        if let Some(id) = id
            && pipelines.iter().any(|p| p.id == id)
        {
            r.error(
                value_span(t, "id"),
                format!("pipeline {id} is described twice"),
                "describe each pipeline in one [[pipeline]] section",
            );
        }
        let stages = read_stages(r, t, id, &pipelines);
        if stages.is_empty() && entry(t, "stage").is_none() {
            r.error(
                span.clone(),
                "a pipeline without stages",
                "add its stages as [[pipeline.stage]] sections after it",
            );
        }
        if let (Some(id), Some(name)) = (id, name) {
            pipelines.push(Pipeline {
                id,
                name,
                sort,
                stages,
            });
        }
    }
    pipelines
}

fn read_stages(
    r: &mut Reader<'_>,
    t: &DeTable<'_>,
    pipeline: Option<u64>,
    before: &[Pipeline],
) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let helps = (
        "write a [[pipeline.stage]] section for each stage".to_string(),
        "write [[pipeline.stage]], with double brackets, after its [[pipeline]]".to_string(),
    );
    for (span, s) in array_of_tables(r, t, "stage", helps) {
        r.keys(s, STAGE_KEYS, "in [[pipeline.stage]]");
        let id = required(r, s, &span, "id", "[[pipeline.stage]]", "id = \"NEW\"")
            .and_then(|_| r.string(s, "id"));
        let name = required(r, s, &span, "name", "[[pipeline.stage]]", "name = \"New\"")
            .and_then(|_| r.string(s, "name"));
        let semantics = required(
            r,
            s,
            &span,
            "semantics",
            "[[pipeline.stage]]",
            "semantics = \"in progress\", \"won\" or \"lost\"",
        )
        .and_then(|_| semantics(r, s));
        let sort = sort(r, s);
        if let (Some(id), Some(pipeline)) = (&id, pipeline) {
            stage_prefix(r, s, id, pipeline);
            let twice = stages.iter().any(|x| &x.id == id)
                || before.iter().flat_map(|p| &p.stages).any(|x| &x.id == id);
            if twice {
                r.error(
                    value_span(s, "id"),
                    format!("stage {id} is described twice"),
                    "each stage id is one stage of one pipeline",
                );
            }
        }
        if let (Some(id), Some(name), Some(semantics)) = (id, name, semantics) {
            stages.push(Stage {
                id,
                name,
                semantics,
                sort,
            });
        }
    }
    stages
}

/// Stage ids of pipeline `n` are `C<n>:...`; those of the default pipeline have no prefix.
fn stage_prefix(r: &mut Reader<'_>, s: &DeTable<'_>, id: &str, pipeline: u64) {
    let prefix = format!("C{pipeline}:");
    let has_some_prefix = id
        .split_once(':')
        .is_some_and(|(p, _)| p.starts_with('C') && p[1..].chars().all(|c| c.is_ascii_digit()));
    let bare = id.split_once(':').map_or(id, |(_, rest)| rest);
    if pipeline == 0 && has_some_prefix {
        r.error(
            value_span(s, "id"),
            format!("stage {id} of the default pipeline has a pipeline prefix"),
            &format!("write id = \"{bare}\""),
        );
    } else if pipeline != 0 && !id.starts_with(&prefix) {
        r.error(
            value_span(s, "id"),
            format!("stage {id} of pipeline {pipeline} lacks its prefix {prefix}"),
            &format!("write id = \"{prefix}{bare}\", as the portal names it"),
        );
    }
}

fn semantics(r: &mut Reader<'_>, s: &DeTable<'_>) -> Option<StageSemantic> {
    let word = r.string(s, "semantics")?;
    if let Some((_, semantics)) = SEMANTICS.iter().find(|(w, _)| *w == word) {
        return Some(*semantics);
    }
    let words: Vec<&str> = SEMANTICS.iter().map(|(w, _)| *w).collect();
    let help = match suggest(&word, &words) {
        Some(close) => format!("did you mean \"{close}\"?"),
        None => "write \"in progress\", \"won\" or \"lost\"".into(),
    };
    r.error(
        value_span(s, "semantics"),
        format!("unknown semantics \"{word}\""),
        &help,
    );
    None
}

fn read_fields(r: &mut Reader<'_>, doc: &DeTable<'_>) -> Vec<Field> {
    let Some((_, v)) = entry(doc, "fields") else {
        return Vec::new();
    };
    let DeValue::Table(table) = v.get_ref() else {
        r.error(
            v.span(),
            format!(
                "\"fields\" must be a table, found {}",
                type_name(v.get_ref())
            ),
            "write a [fields.UF_CRM_INN] section for each custom field",
        );
        return Vec::new();
    };
    let mut fields = Vec::new();
    for (code, spec) in entries_in_order(table) {
        let code_text = code.get_ref().to_string();
        let context = format!("in [fields.{code_text}]");
        if crate::sandbox::store::STANDARD_FIELDS
            .iter()
            .any(|f| f.code == code_text)
        {
            r.error(
                code.span(),
                format!("{code_text} is a standard deal field: the sandbox knows it already"),
                "list only the portal's custom fields (UF_CRM_...)",
            );
            continue;
        }
        if !code_text.starts_with("UF_CRM_") {
            r.error(
                code.span(),
                format!("\"{code_text}\" is not a custom deal field's code"),
                "custom deal fields are named UF_CRM_..., as crm.deal.fields lists them",
            );
            continue;
        }
        let DeValue::Table(t) = spec.get_ref() else {
            r.error(
                spec.span(),
                format!("fields.{code_text} must be a table"),
                &format!("write [fields.{code_text}] with type = \"string\" and label = \"...\""),
            );
            continue;
        };
        r.keys(t, FIELD_KEYS, &context);
        let kind = required(
            r,
            t,
            &spec.span(),
            "type",
            &format!("[fields.{code_text}]"),
            "type = \"string\"",
        )
        .and_then(|_| r.string(t, "type"));
        let label = r.string(t, "label").unwrap_or_else(|| code_text.clone());
        let multiple = r.boolean(t, "multiple").unwrap_or(false);
        let read_only = r.boolean(t, "read_only").unwrap_or(false);
        let options = options(r, t);
        if !options.is_empty() && kind.as_deref().is_some_and(|k| k != "enumeration") {
            r.error(
                value_span(t, "options"),
                "only a list field has options",
                "write type = \"enumeration\", or remove the options",
            );
        }
        if let Some(kind) = kind {
            fields.push(Field {
                code: code_text,
                kind,
                label,
                multiple,
                read_only,
                options,
            });
        }
    }
    fields
}

/// `options = { 11 = "Too expensive" }`: option id → label, in the file's order.
fn options(r: &mut Reader<'_>, t: &DeTable<'_>) -> Vec<(u64, String)> {
    let Some((_, v)) = entry(t, "options") else {
        return Vec::new();
    };
    let DeValue::Table(table) = v.get_ref() else {
        r.error(
            v.span(),
            format!(
                "\"options\" must be a table, found {}",
                type_name(v.get_ref())
            ),
            "write options = { 11 = \"Too expensive\", 12 = \"No budget\" }",
        );
        return Vec::new();
    };
    let mut options = Vec::new();
    for (id, label) in entries_in_order(table) {
        let parsed = id.get_ref().parse::<u64>().ok().filter(|n| *n > 0);
        match (parsed, label.get_ref()) {
            (Some(n), DeValue::String(s)) => options.push((n, s.to_string())),
            (None, _) => r.error(
                id.span(),
                format!("\"{}\" is not an option id", id.get_ref()),
                "an option id is the number the portal stores: options = { 11 = \"Too expensive\" }",
            ),
            (_, other) => r.error(
                label.span(),
                format!("an option's label must be a string, found {}", type_name(other)),
                "write options = { 11 = \"Too expensive\" }",
            ),
        }
    }
    options
}

fn read_departments(
    r: &mut Reader<'_>,
    doc: &DeTable<'_>,
    refs: &mut Vec<(Range<usize>, Ref)>,
) -> Vec<(Department, Range<usize>)> {
    let mut departments: Vec<(Department, Range<usize>)> = Vec::new();
    for (span, t) in tables(r, doc, "department") {
        r.keys(t, DEPARTMENT_KEYS, "in [[department]]");
        let id = required(r, t, &span, "id", "[[department]]", "id = 1")
            .and_then(|_| positive(r, t, "id"));
        let name = required(r, t, &span, "name", "[[department]]", "name = \"Sales\"")
            .and_then(|_| r.string(t, "name"));
        let parent = positive(r, t, "parent");
        let head = positive(r, t, "head");
        let sort = sort(r, t);
        if let Some(parent) = parent {
            refs.push((value_span(t, "parent"), Ref::Department(parent)));
        }
        if let Some(head) = head {
            refs.push((value_span(t, "head"), Ref::User(head)));
        }
        if let Some(id) = id
            && departments.iter().any(|(d, _)| d.id == id)
        {
            r.error(
                value_span(t, "id"),
                format!("department {id} is described twice"),
                "describe each department in one [[department]] section",
            );
        }
        if let (Some(id), Some(name)) = (id, name) {
            let department = Department {
                id,
                name,
                parent,
                head,
                sort,
            };
            departments.push((department, value_span(t, "parent")));
        }
    }
    departments
}

/// A department that is its own ancestor would send a supervisor lookup round for ever;
/// `departments` come with the span of their `parent`.
fn department_cycles(r: &mut Reader<'_>, departments: &[(Department, Range<usize>)]) {
    let parent_of = |id: u64| {
        departments
            .iter()
            .find(|(d, _)| d.id == id)
            .and_then(|(d, _)| d.parent)
    };
    for (d, span) in departments {
        let mut at = d.parent;
        // More steps than departments: the walk is in a cycle that does not pass through `d`.
        for _ in 0..=departments.len() {
            let Some(p) = at else { break };
            if p == d.id {
                r.error(
                    span.clone(),
                    format!("department {} is its own ancestor", d.id),
                    "the departments form a tree: give the top one no parent",
                );
                break;
            }
            at = parent_of(p);
        }
    }
}

fn read_users(
    r: &mut Reader<'_>,
    doc: &DeTable<'_>,
    refs: &mut Vec<(Range<usize>, Ref)>,
) -> Vec<User> {
    let mut users: Vec<User> = Vec::new();
    for (span, t) in tables(r, doc, "user") {
        r.keys(t, USER_KEYS, "in [[user]]");
        let id =
            required(r, t, &span, "id", "[[user]]", "id = 3").and_then(|_| positive(r, t, "id"));
        let name = required(r, t, &span, "name", "[[user]]", "name = \"Vera Manager\"")
            .and_then(|_| r.string(t, "name"));
        let mut departments = Vec::new();
        if let Some((_, v)) = entry(t, "departments") {
            match v.get_ref() {
                DeValue::Array(items) => {
                    for item in items {
                        match integer(item.get_ref()).filter(|n| *n > 0) {
                            Some(n) => {
                                departments.push(n as u64);
                                refs.push((item.span(), Ref::Department(n as u64)));
                            }
                            None => r.error(
                                item.span(),
                                "a department id is a whole number, 1 or more",
                                "write departments = [2]",
                            ),
                        }
                    }
                }
                other => r.error(
                    v.span(),
                    format!(
                        "\"departments\" must be an array, found {}",
                        type_name(other)
                    ),
                    "write departments = [2]",
                ),
            }
        }
        if let Some(id) = id
            && users.iter().any(|u| u.id == id)
        {
            r.error(
                value_span(t, "id"),
                format!("user {id} is described twice"),
                "describe each user in one [[user]] section",
            );
        }
        if let (Some(id), Some(name)) = (id, name) {
            users.push(User {
                id,
                name,
                departments,
            });
        }
    }
    users
}

/// `Some(())` when `key` is in the table; reports it missing (at the section) otherwise.
fn required(
    r: &mut Reader<'_>,
    t: &DeTable<'_>,
    span: &Range<usize>,
    key: &str,
    section: &str,
    example: &str,
) -> Option<()> {
    if entry(t, key).is_some() {
        return Some(());
    }
    r.error(
        span.clone(),
        format!("{section} needs \"{key}\""),
        &format!("add {example}"),
    );
    None
}

/// The span of a key's value (the table's start when the key is missing).
fn value_span(t: &DeTable<'_>, key: &str) -> Range<usize> {
    entry(t, key).map_or(0..0, |(_, v)| v.span())
}

/// A whole number, 0 or more, under `key`; anything else is reported.
fn whole(r: &mut Reader<'_>, t: &DeTable<'_>, key: &str) -> Option<u64> {
    let (_, v) = entry(t, key)?;
    match integer(v.get_ref()) {
        Some(n) if n >= 0 => Some(n as u64),
        Some(_) => {
            r.error(v.span(), format!("\"{key}\" is never negative"), "");
            None
        }
        None => {
            r.error(
                v.span(),
                format!(
                    "\"{key}\" must be a whole number, found {}",
                    type_name(v.get_ref())
                ),
                &format!("write {key} = 1, without quotes"),
            );
            None
        }
    }
}

/// A Bitrix24 id (1 or more) under `key`.
fn positive(r: &mut Reader<'_>, t: &DeTable<'_>, key: &str) -> Option<u64> {
    let n = whole(r, t, key)?;
    if n == 0 {
        r.error(
            value_span(t, key),
            format!("\"{key}\" is an id: 1 or more"),
            "",
        );
        return None;
    }
    Some(n)
}

fn sort(r: &mut Reader<'_>, t: &DeTable<'_>) -> Option<u32> {
    let n = whole(r, t, "sort")?;
    match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) => {
            r.error(value_span(t, "sort"), "\"sort\" is too large", "");
            None
        }
    }
}

#[cfg(test)]
mod tests;
