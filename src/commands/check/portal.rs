//! `b24-robot check --portal`: do the pipelines, stages, fields and list values that the rules
//! name exist on the live portal? Bitrix24 silently ignores an unknown field in a write, so a
//! typo in a field code would otherwise only show as a rule that never works.
//!
//! Three reads in two `batch`es: pipelines and fields, then each named pipeline's stages.
//! The stages' kinds (`SEMANTICS`) then settle the tunnel cycles that the offline check could
//! only suspect (a custom stage may be a failure stage), and the fields' `isReadOnly` the
//! fields a tunnel may not write.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::bitrix::{CallError, Client, Retry, calls};
use crate::rules::{Diagnostic, FieldCatalog, RuleSet, Severity, StageSemantic};

/// What the portal has.
#[derive(Debug, Default)]
struct Portal {
    /// Pipeline id → name.
    pipelines: BTreeMap<u64, String>,
    /// Pipeline id → its stage ids.
    stages: BTreeMap<u64, Vec<String>>,
    /// Stage id → its kind, from `SEMANTICS` (`S`, `F`, null for a stage in progress).
    semantics: BTreeMap<String, StageSemantic>,
    /// What `crm.deal.fields` says: codes, option labels, read-only marks.
    fields: FieldCatalog,
    /// The user ids the rules name that `user.get` found.
    users: BTreeSet<u64>,
}

/// The pipeline a stage id belongs to: `C1:NEW` is in 1, `NEW` in 0.
fn pipeline_of(stage: &str) -> u64 {
    crate::rules::stage_pipeline(stage).unwrap_or(0)
}

async fn read_portal(
    client: &Client,
    pipelines: &BTreeSet<u64>,
    users: &BTreeSet<u64>,
) -> Result<Portal, CallError> {
    let first = client
        .batch(vec![calls::pipelines(), calls::deal_fields()], Retry::Safe)
        .await;
    let mut answers = first.into_iter();
    let categories = answers
        .next()
        .ok_or_else(|| missing("crm.category.list"))??;
    let fields = answers.next().ok_or_else(|| missing("crm.deal.fields"))??;

    let mut portal = Portal::default();
    let list = categories
        .result
        .get("categories")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in list {
        let id = c.get("id").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        if let Some(id) = id {
            portal.pipelines.insert(
                id,
                c.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
        }
    }
    // The default pipeline always exists, even where the list leaves it out.
    portal
        .pipelines
        .entry(0)
        .or_insert_with(|| "General".into());
    portal.fields = FieldCatalog::from_deal_fields(&fields.result);

    let wanted: Vec<u64> = pipelines
        .iter()
        .copied()
        .filter(|p| portal.pipelines.contains_key(p))
        .collect();
    // The stages and the named users in the same batches: one user.get per id, as a user
    // list would cost a page per 50 users of the whole portal.
    let mut reads: Vec<_> = wanted.iter().map(|p| calls::stages(*p)).collect();
    reads.extend(users.iter().map(|id| calls::user_get(*id)));
    let mut answers = client.batch(reads, Retry::Safe).await.into_iter();
    let stages: Vec<_> = answers.by_ref().take(wanted.len()).collect();
    for (id, answer) in users.iter().zip(answers) {
        let found = answer?.result.as_array().is_some_and(|list| {
            list.iter().any(|u| {
                let user = u.get("ID");
                user.and_then(Value::as_u64)
                    .or_else(|| user.and_then(Value::as_str).and_then(|s| s.parse().ok()))
                    == Some(*id)
            })
        });
        if found {
            portal.users.insert(*id);
        }
    }
    for (pipeline, answer) in wanted.into_iter().zip(stages) {
        let answer = answer?;
        let mut stages = Vec::new();
        for item in answer.result.as_array().into_iter().flatten() {
            let Some(id) = item.get("STATUS_ID").and_then(Value::as_str) else {
                continue;
            };
            let code = item.get("SEMANTICS").and_then(Value::as_str).unwrap_or("");
            portal
                .semantics
                .insert(id.to_string(), StageSemantic::from_code(code));
            stages.push(id.to_string());
        }
        portal.stages.insert(pipeline, stages);
    }
    Ok(portal)
}

fn missing(method: &str) -> CallError {
    CallError::Malformed {
        method: method.into(),
        message: "no answer in the batch".into(),
    }
}

/// Checks every rule against the portal; returns the problems (empty: all good).
pub async fn check(rules: &RuleSet, client: &Client) -> Result<Vec<Diagnostic>, CallError> {
    let mut pipelines = BTreeSet::new();
    let mut users = BTreeSet::new();
    for named in rules.portal_refs() {
        let refs = named.refs;
        pipelines.extend(refs.pipelines.iter().copied());
        pipelines.extend(refs.stages.iter().map(|s| pipeline_of(s)));
        users.extend(refs.users);
    }
    let portal = read_portal(client, &pipelines, &users).await?;
    Ok(compare(rules, &portal))
}

fn compare(rules: &RuleSet, portal: &Portal) -> Vec<Diagnostic> {
    // Cycles through stages whose kind only the portal knew: the offline check warned of them.
    let mut problems: Vec<Diagnostic> = rules
        .tunnel_cycles(&|stage| portal.semantics.get(stage).copied())
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    for (rule, field) in rules.tunnel_writes() {
        if portal.fields.is_read_only(field) {
            let (file, line) = rule.location();
            problems.push(Diagnostic {
                file: file.to_string(),
                line,
                column: 1,
                rule: Some(rule.name().to_string()),
                message: format!("the tunnel writes {field}, which is read-only on the portal"),
                help: Some(format!(
                    "crm.deal.fields marks it isReadOnly, so the copy would not get it: remove {field} from copy/set"
                )),
                severity: Severity::Error,
            });
        }
    }
    let field_codes: Vec<&str> = portal.fields.codes().collect();
    // Every kind alike: the stage-entry rules and the time-driven ones.
    for named in rules.portal_refs() {
        let mut report = |message: String, help: Option<String>| {
            problems.push(Diagnostic {
                file: named.file.clone(),
                line: named.line,
                column: 1,
                rule: Some(named.name.clone()),
                message,
                help,
                severity: Severity::Error,
            });
        };
        let refs = &named.refs;
        for pipeline in &refs.pipelines {
            if !portal.pipelines.contains_key(pipeline) {
                let there: Vec<String> = portal
                    .pipelines
                    .iter()
                    .map(|(id, name)| format!("{id} \"{name}\""))
                    .collect();
                report(
                    format!("pipeline {pipeline} does not exist on the portal"),
                    Some(format!("pipelines there: {}", there.join(", "))),
                );
            }
        }
        for stage in &refs.stages {
            let pipeline = pipeline_of(stage);
            let Some(stages) = portal.stages.get(&pipeline) else {
                continue;
            };
            if !stages.iter().any(|s| s == stage) {
                let names: Vec<&str> = stages.iter().map(String::as_str).collect();
                let help = match crate::diagnostics::suggest(stage, &names) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => format!("stages of pipeline {pipeline}: {}", names.join(", ")),
                };
                report(
                    format!(
                        "stage \"{stage}\" does not exist in pipeline {pipeline} on the portal"
                    ),
                    Some(help),
                );
            }
        }
        for field in &refs.fields {
            // Fields of every deal that crm.deal.fields may not list.
            if matches!(field.as_str(), "ID") || portal.fields.contains(field) {
                continue;
            }
            let help = crate::diagnostics::suggest(field, &field_codes)
                .map(|s| format!("did you mean \"{s}\"?"))
                .unwrap_or_else(|| {
                    "custom fields are named UF_CRM_...; see crm.deal.fields".into()
                });
            report(
                format!("field \"{field}\" does not exist on the portal"),
                Some(help),
            );
        }
        for user in &refs.users {
            if !portal.users.contains(user) {
                report(
                    format!("user {user} does not exist on the portal"),
                    Some("name a user of the portal by the ID its employee list shows".into()),
                );
            }
        }
        if let Some((field, values)) = &refs.allowed {
            let labels = portal.fields.option_labels(field);
            if labels.is_empty() {
                continue;
            }
            for value in values {
                if !labels.contains(&value.as_str()) {
                    let help = crate::diagnostics::suggest(value, &labels)
                        .map(|s| format!("did you mean \"{s}\"?"))
                        .unwrap_or_else(|| format!("options: {}", labels.join(", ")));
                    report(
                        format!("\"{value}\" is not an option of the list field {field}"),
                        Some(help),
                    );
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitrix::ClientSettings;
    use crate::sandbox::{SimConfig, SimPortal};

    /// The problems `check` finds, as printed.
    async fn shown(rules: &RuleSet, client: &Client) -> Vec<String> {
        let problems = check(rules, client).await.expect("the portal answers");
        problems.iter().map(ToString::to_string).collect()
    }

    #[tokio::test]
    async fn rules_naming_what_the_portal_lacks_are_reported_with_suggestions() {
        let sim = SimPortal::start(SimConfig::default()).await.expect("sim");
        crate::sandbox::seed::seed_portal(&sim);
        let url = url::Url::parse(&sim.webhook_url()).expect("url");
        let client = Client::new(ClientSettings::new(url)).expect("client");

        let (shipped, _) = crate::sandbox::seed::embedded_rules()
            .map(|r| (r, ()))
            .expect("shipped rules load");
        assert_eq!(
            check(&shipped, &client).await.expect("portal answers"),
            Vec::new()
        );

        let broken = r#"
[[task]]
name = "typo-stage"
pipeline = 1
stage = "C1:PREPARATON"
title = "{UF_CRM_INNN}"
deadline = { after = "1 day" }

[[tunnel]]
name = "nowhere"
pipeline = 0
to_pipeline = 7
to_stage = "C7:NEW"

[[loss_reason]]
name = "why"
field = "UF_CRM_LOSS_REASON"
allowed = ["Too expensiv"]
"#;
        let (rules, _) =
            RuleSet::from_sources(&[("b.toml".into(), broken.into())]).expect("loads offline");
        let text = shown(&rules, &client).await;
        let all = text.join("\n");
        assert!(all.contains("stage \"C1:PREPARATON\" does not exist in pipeline 1 on the portal (did you mean \"C1:PREPARATION\"?)"), "{all}");
        assert!(
            all.contains(
                "field \"UF_CRM_INNN\" does not exist on the portal (did you mean \"UF_CRM_INN\"?)"
            ),
            "{all}"
        );
        assert!(
            all.contains("pipeline 7 does not exist on the portal"),
            "{all}"
        );
        assert!(all.contains("\"Too expensiv\" is not an option of the list field UF_CRM_LOSS_REASON (did you mean \"Too expensive\"?)"), "{all}");
    }

    /// The seeded portal with a pipeline 2 "Archive" whose custom stage is a failure one.
    async fn with_archive() -> (SimPortal, Client) {
        let sim = SimPortal::start(SimConfig::default()).await.expect("sim");
        crate::sandbox::seed::seed_portal(&sim);
        sim.add_pipeline(
            2,
            "Archive",
            &[("C2:NEW", "New", 'P'), ("C2:UC_ARCHIVE", "Archived", 'F')],
        );
        let url = url::Url::parse(&sim.webhook_url()).expect("url");
        let client = Client::new(ClientSettings::new(url)).expect("client");
        (sim, client)
    }

    #[tokio::test]
    async fn a_rule_of_several_pipelines_has_its_stage_checked_in_each() {
        let (_sim, client) = with_archive().await;
        let text = "[[task]]\nname = \"archived\"\npipeline = [0, 2]\nstage = \"UC_ARCHIVE\"\ntitle = \"Archived\"\ndeadline = { after = \"1 day\" }\n";
        let (rules, _) =
            RuleSet::from_sources(&[("a.toml".into(), text.into())]).expect("loads offline");
        let all = shown(&rules, &client).await.join("\n");
        assert!(
            all.contains("stage \"UC_ARCHIVE\" does not exist in pipeline 0 on the portal"),
            "{all}"
        );
        assert!(!all.contains("C2:UC_ARCHIVE"), "{all}");
    }

    #[tokio::test]
    async fn a_cycle_through_a_custom_failure_stage_and_a_read_only_field_are_errors_on_the_portal()
    {
        let (_sim, client) = with_archive().await;
        let text = r#"
[[tunnel]]
name = "archive"
stage = "lost"
to_pipeline = 2
to_stage = "C2:UC_ARCHIVE"
copy = ["TITLE", "UF_CRM_SCORE"]
"#;
        let (rules, warnings) =
            RuleSet::from_sources(&[("a.toml".into(), text.into())]).expect("loads offline");
        assert_eq!(
            warnings.len(),
            1,
            "offline it is only suspected: {warnings:?}"
        );
        let shown = shown(&rules, &client).await;
        assert_eq!(
            shown,
            vec![
                "a.toml:6:12: rule \"archive\": tunnel cycle: archive (lost in any pipeline → C2:UC_ARCHIVE), whose copy fires archive again (each copy would be copied again with no one moving a deal: point to_stage at a stage that starts no tunnel)",
                "a.toml:2:1: rule \"archive\": field \"UF_CRM_SCORE\" does not exist on the portal (custom fields are named UF_CRM_...; see crm.deal.fields)",
            ]
        );
        // A custom stage in progress: no cycle.
        let calm = text
            .replace("UC_ARCHIVE", "NEW")
            .replace(", \"UF_CRM_SCORE\"", "");
        let (rules, _) =
            RuleSet::from_sources(&[("a.toml".into(), calm.clone())]).expect("loads offline");
        assert_eq!(check(&rules, &client).await.expect("answers"), Vec::new());

        // A field the portal computes itself (a read-only custom field): the copy cannot take it.
        let (rules, _) = RuleSet::from_sources(&[(
            "a.toml".into(),
            calm.replace("[\"TITLE\"]", "[\"TITLE\", \"UF_CRM_SCORE\"]"),
        )])
        .expect("loads offline");
        let portal = Portal {
            fields: FieldCatalog::from_deal_fields(&serde_json::json!({
                "TITLE": {"type": "string"},
                "UF_CRM_SCORE": {"type": "integer", "isReadOnly": true},
            })),
            pipelines: BTreeMap::from([(2, "Archive".to_string())]),
            ..Portal::default()
        };
        let shown: Vec<String> = compare(&rules, &portal)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            vec![
                "a.toml:2:1: rule \"archive\": the tunnel writes UF_CRM_SCORE, which is read-only on the portal (crm.deal.fields marks it isReadOnly, so the copy would not get it: remove UF_CRM_SCORE from copy/set)"
            ]
        );
    }

    #[tokio::test]
    async fn the_time_driven_rules_have_their_stages_fields_and_users_checked() {
        let (_sim, client) = with_archive().await;
        let text = r#"
[[sla]]
name = "slow"
pipeline = 2
stage = "C2:UC_ARCHIV"
within = "1 day"
notify = [2, 77]
message = "{TITLE} {SLA_OVERDUE} {UF_CRM_NOPE}"

[[overdue]]
name = "late"
notify = ["responsible", 78]
message = "{TASK_TITLE} {TASK_URL}"

[[no_task]]
name = "idle"
pipeline = 2
stages = ["C2:NEW"]
after = "1 day"
notify = ["assigned"]

[[digest]]
name = "daily"
to = [1, 79]
at = ["09:00"]
include = ["slow", "late", "idle"]
"#;
        let (rules, _) =
            RuleSet::from_sources(&[("c.toml".into(), text.into())]).expect("loads offline");
        assert_eq!(
            shown(&rules, &client).await,
            vec![
                "c.toml:2:1: rule \"slow\": stage \"C2:UC_ARCHIV\" does not exist in pipeline 2 on the portal (did you mean \"C2:UC_ARCHIVE\"?)",
                "c.toml:2:1: rule \"slow\": field \"UF_CRM_NOPE\" does not exist on the portal (did you mean \"UF_CRM_NPS\"?)",
                "c.toml:2:1: rule \"slow\": user 77 does not exist on the portal (name a user of the portal by the ID its employee list shows)",
                "c.toml:10:1: rule \"late\": user 78 does not exist on the portal (name a user of the portal by the ID its employee list shows)",
                "c.toml:22:1: rule \"daily\": user 79 does not exist on the portal (name a user of the portal by the ID its employee list shows)",
            ]
        );
    }
}
