//! Templates: `{FIELD}` placeholders in titles, descriptions, messages and tunnel `set` values.
//!
//! A template is parsed once at load time into literal text and placeholders, so a brace
//! mistake is an error with its position instead of a task titled `Call {TITLE`.

use crate::rules::deal::{Deal, FieldCatalog};

/// Most bytes of template text (`check` refuses a longer one): 8 KiB is pages of a task
/// description, and bounds what one placeholder-free template can weigh.
pub(crate) const MAX_TEMPLATE: usize = 8 * 1024;
/// Most placeholders in one template: with [`MAX_TEMPLATE`] it keeps a template from repeating
/// one field thousands of times (700,000 `{TITLE}` once made a 717 MB task title).
pub(crate) const MAX_PLACEHOLDERS: usize = 64;

/// How long a rendered text may be; past it the text is cut on a character boundary and ends
/// with [`MARK`] (the mark counted in the limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    Chars(usize),
    Bytes(usize),
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cap::Chars(n) => write!(f, "{n} characters"),
            Cap::Bytes(n) if n % 1024 == 0 => write!(f, "{} KiB", n / 1024),
            Cap::Bytes(n) => write!(f, "{n} bytes"),
        }
    }
}

/// The end of a text that was cut.
pub(crate) const MARK: char = '…';
/// A task's title, and a deal's `TITLE` set by a tunnel: Bitrix24 keeps 255 characters (the
/// `TITLE` columns of tasks and deals are `varchar(255)`; the REST reference does not say).
pub(crate) const TITLE_CAP: Cap = Cap::Chars(255);
/// A task's description, any other field a tunnel sets or copies (per value): 64 KiB, the size
/// of the portal's `text` columns.
pub(crate) const TEXT_CAP: Cap = Cap::Bytes(64 * 1024);
/// A timeline comment and a notification.
pub(crate) const MESSAGE_CAP: Cap = Cap::Bytes(16 * 1024);

/// A text that stops growing at its cap: rendering never holds more than the cap (plus one
/// piece being copied), however long the deal's values are.
struct Bounded {
    out: String,
    cap: Cap,
    chars: usize,
    cut: bool,
}

impl Bounded {
    fn new(cap: Cap) -> Bounded {
        Bounded {
            out: String::new(),
            cap,
            chars: 0,
            cut: false,
        }
    }

    fn push(&mut self, text: &str) {
        if self.cut {
            return;
        }
        match self.cap {
            Cap::Chars(max) => {
                for c in text.chars() {
                    if self.chars == max {
                        self.cut = true;
                        return;
                    }
                    self.out.push(c);
                    self.chars += 1;
                }
            }
            Cap::Bytes(max) => {
                let room = max - self.out.len();
                if text.len() <= room {
                    self.out.push_str(text);
                } else {
                    self.out.push_str(&text[..floor_boundary(text, room)]);
                    self.cut = true;
                }
            }
        }
    }

    /// The text, and whether it was cut (then it ends with the mark, within the cap).
    fn finish(mut self) -> (String, bool) {
        if self.cut {
            let keep = match self.cap {
                Cap::Chars(max) => self
                    .out
                    .char_indices()
                    .nth(max.saturating_sub(1))
                    .map_or(self.out.len(), |(i, _)| i),
                Cap::Bytes(max) => floor_boundary(&self.out, max.saturating_sub(MARK.len_utf8())),
            };
            self.out.truncate(keep);
            self.out.push(MARK);
        }
        (self.out, self.cut)
    }
}

/// The largest char boundary of `text` at or before `at`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `text` within `cap`, and whether it was cut.
pub(crate) fn cut(text: &str, cap: Cap) -> (String, bool) {
    let mut bounded = Bounded::new(cap);
    bounded.push(text);
    bounded.finish()
}

/// A placeholder that is not a deal field.
pub(crate) const DEAL_URL: &str = "DEAL_URL";
/// The missing fields' labels, in `[[require]]`/`[[loss_reason]]` messages.
pub(crate) const MISSING: &str = "MISSING";

/// The placeholders of the time-driven rules (`control.md`), none of them a deal field. Each
/// applies in some templates only (the loader refuses it elsewhere): `{SLA_OVERDUE}` in an
/// `[[sla]]`'s message and task, how long past `within` the deal is.
pub(crate) const SLA_OVERDUE: &str = "SLA_OVERDUE";
/// The task's own, in an `[[overdue]]`'s messages.
pub(crate) const TASK_PLACEHOLDERS: &[&str] = &[
    "TASK_ID",
    "TASK_TITLE",
    "TASK_DEADLINE",
    "TASK_URL",
    "TASK_RESPONSIBLE",
];
/// The deadline before the move, in `[overdue.deadline_moved]`'s message only.
pub(crate) const TASK_OLD_DEADLINE: &str = "TASK_OLD_DEADLINE";
/// The slot's date and time, in a `[[digest]]`'s title.
pub(crate) const DIGEST_PLACEHOLDERS: &[&str] = &["DATE", "TIME"];

/// Whether `name` is one of the time-driven rules' placeholders above.
pub(crate) fn is_control_placeholder(name: &str) -> bool {
    name == SLA_OVERDUE
        || name == TASK_OLD_DEADLINE
        || TASK_PLACEHOLDERS.contains(&name)
        || DIGEST_PLACEHOLDERS.contains(&name)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

/// A template error: the byte offset within the template text, and the message and fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub(crate) offset: usize,
    pub(crate) message: String,
    pub(crate) help: String,
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "lone \"}\" in template".into(),
                        help: "write \"}}\" for a literal brace".into(),
                    });
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(close) = rest
                        .find(['}', '{'])
                        .filter(|n| rest[*n..].starts_with('}'))
                    else {
                        return Err(TemplateError {
                            offset: i,
                            message: "unclosed \"{\" in template".into(),
                            help: "close it as in \"{TITLE}\", or write \"{{\" for a literal brace"
                                .into(),
                        });
                    };
                    let name = &rest[..close];
                    check_field_name(name).map_err(|(message, help)| TemplateError {
                        offset: i,
                        message,
                        help,
                    })?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(name.to_string()));
                    // Skip the name and the closing brace.
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// A template without placeholders.
    pub(crate) fn text(text: &str) -> Template {
        Template {
            pieces: vec![Piece::Text(text.to_string())],
        }
    }

    /// The names between braces, `DEAL_URL` and `MISSING` included.
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Renders against a deal, within `cap` (`what` names the text in the note when it is
    /// cut). `missing` fills `{MISSING}`; empty fields render as nothing, and each one adds a
    /// note for the decision log.
    pub(crate) fn render(
        &self,
        ctx: &RenderContext<'_>,
        missing: Option<&str>,
        (what, cap): (&str, Cap),
        notes: &mut Vec<String>,
    ) -> String {
        let mut out = Bounded::new(cap);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push(text),
                Piece::Field(name) if name == DEAL_URL => out.push(&ctx.deal_url()),
                Piece::Field(name) if ctx.extra.iter().any(|(n, _)| n == name) => {
                    let value = ctx.extra.iter().find(|(n, _)| n == name);
                    out.push(value.map_or("", |(_, v)| v.as_str()));
                }
                Piece::Field(name) if name == MISSING && missing.is_some() => {
                    out.push(missing.unwrap_or_default());
                }
                Piece::Field(name) => {
                    let value = display_value(ctx.deal, ctx.catalog, name, notes);
                    if value.is_empty() {
                        push_note(notes, format!("field {name} empty: rendered as nothing"));
                    }
                    out.push(&value);
                }
            }
            if out.cut {
                break;
            }
        }
        let (text, was_cut) = out.finish();
        if was_cut {
            push_note(notes, cut_note(what, cap));
        }
        text
    }
}

/// What rendering needs besides the template.
pub(crate) struct RenderContext<'a> {
    pub(crate) deal: &'a Deal,
    pub(crate) catalog: &'a FieldCatalog,
    pub(crate) portal_origin: &'a str,
    /// Placeholders that are not deal fields, with their values: a task's `{TASK_TITLE}`, an
    /// SLA's `{SLA_OVERDUE}`, a digest's `{DATE}` (`control.md`). Empty for stage-entry rules.
    pub(crate) extra: &'a [(&'a str, String)],
}

impl RenderContext<'_> {
    pub(crate) fn deal_url(&self) -> String {
        let id = self.deal.id().map(|id| id.to_string()).unwrap_or_default();
        format!(
            "{}/crm/deal/details/{id}/",
            self.portal_origin.trim_end_matches('/')
        )
    }
}

/// The decision log's note on a text cut at its cap.
pub(crate) fn cut_note(what: &str, cap: Cap) -> String {
    format!("{what} longer than {cap}: cut, ending with \"{MARK}\"")
}

pub(crate) fn push_note(notes: &mut Vec<String>, note: String) {
    if !notes.contains(&note) {
        notes.push(note);
    }
}

/// Field codes as Bitrix24 spells them: `TITLE`, `UF_CRM_1700000000`.
pub(crate) fn check_field_name(name: &str) -> Result<(), (String, String)> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err((
            "empty \"{}\" in template".into(),
            "put a field code between the braces, as in \"{TITLE}\"".into(),
        ));
    }
    if trimmed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && trimmed != name
    {
        return Err((
            format!("spaces around \"{trimmed}\" in template"),
            format!("write \"{{{trimmed}}}\""),
        ));
    }
    if !is_field_code(name) {
        let upper = name.to_ascii_uppercase();
        let help = if is_field_code(&upper) {
            format!("field codes are upper case: write \"{{{upper}}}\"")
        } else {
            "a field code has upper-case letters, digits and \"_\" only, as in \"{UF_CRM_1700000000}\"; write \"{{\" for a literal brace".into()
        };
        return Err((format!("\"{{{name}}}\" is not a field code"), help));
    }
    Ok(())
}

pub(crate) fn is_field_code(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// A field as people read it: list options by label, several values joined by ", ", money
/// `"500|RUB"` as `500 RUB`. Absent and null give "".
pub(crate) fn display_value(
    deal: &Deal,
    catalog: &FieldCatalog,
    field: &str,
    notes: &mut Vec<String>,
) -> String {
    let Some(value) = deal.get(field) else {
        return String::new();
    };
    let scalars: Vec<&serde_json::Value> = match value {
        serde_json::Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut parts = Vec::new();
    for item in scalars {
        let raw = match item {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => other.to_string(),
        };
        if raw.is_empty() {
            continue;
        }
        parts.push(display_scalar(catalog, field, raw, notes));
    }
    parts.join(", ")
}

fn display_scalar(
    catalog: &FieldCatalog,
    field: &str,
    raw: String,
    notes: &mut Vec<String>,
) -> String {
    if catalog.is_list(field) {
        return match catalog.option_label(field, &raw) {
            Some(label) => label.to_string(),
            None => {
                push_note(
                    notes,
                    format!(
                        "field {field}: option {raw} has no label in the catalog: rendered as its id"
                    ),
                );
                raw
            }
        };
    }
    if catalog.is_empty() && is_option_id_field(field, &raw) {
        push_note(
            notes,
            format!("no field catalog: list fields render option ids ({field} = {raw})"),
        );
    }
    if catalog.field_type(field) == Some("money")
        && let Some((amount, currency)) = raw.split_once('|')
    {
        return format!("{amount} {currency}");
    }
    raw
}

/// Without a catalog we cannot know which fields are lists; a custom field holding a bare
/// number is the usual shape of an option id, worth a note in a dry run.
fn is_option_id_field(field: &str, raw: &str) -> bool {
    field.starts_with("UF_") && !raw.is_empty() && raw.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_text_stays_within_its_cap_on_a_character_boundary_with_the_mark() {
        assert_eq!(cut("short", Cap::Chars(255)), ("short".to_string(), false));
        let (text, was_cut) = cut(&"Ж".repeat(300), Cap::Chars(255));
        assert!(was_cut);
        assert_eq!(text.chars().count(), 255);
        assert!(text.ends_with(MARK));
        // 2-byte letters against an odd byte budget: never half a letter.
        let (text, _) = cut(&"Ж".repeat(100), Cap::Bytes(100));
        assert!(text.len() <= 100);
        assert_eq!(text, format!("{}{MARK}", "Ж".repeat(48)));
        let exact = "x".repeat(100);
        assert_eq!(cut(&exact, Cap::Bytes(100)), (exact, false));
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        let t = Template::parse("{{x}} {TITLE}").unwrap();
        assert_eq!(
            t.pieces,
            vec![Piece::Text("{x} ".into()), Piece::Field("TITLE".into())]
        );
    }

    #[test]
    fn an_unclosed_brace_is_an_error_at_its_offset() {
        let e = Template::parse("Call {TITLE").unwrap_err();
        assert_eq!(e.offset, 5);
        assert_eq!(e.message, "unclosed \"{\" in template");
    }

    #[test]
    fn a_lone_closing_brace_is_an_error() {
        let e = Template::parse("a } b").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (2, "lone \"}\" in template")
        );
    }

    #[test]
    fn a_lower_case_placeholder_suggests_the_upper_case_code() {
        let e = Template::parse("{title}").unwrap_err();
        assert_eq!(e.help, "field codes are upper case: write \"{TITLE}\"");
    }
}
