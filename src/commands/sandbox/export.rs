//! `b24-robot sandbox export [--out FILE]`: the live portal (the config's `portal.webhook_url`)
//! written as a portal file, for `sandbox --portal FILE` to rehearse against.
//!
//! Read-only calls only, each through the service's own client (its bucket, retries and
//! paging along `next`), as the docs describe them (`bitrix24/b24restdocs`):
//!
//! - `crm.category.list` `{"entityTypeId": 2}`: `result.categories[]` with `id`, `name`, `sort`
//!   (`api-reference/crm/universal/category/crm-category-list.md`); the list is filtered by the
//!   webhook user's permissions, so the default pipeline is added when it is left out;
//! - `crm.status.list` filtered on `ENTITY_ID` `DEAL_STAGE` (pipeline 0) or `DEAL_STAGE_<n>`,
//!   ordered by `SORT`: `STATUS_ID`, `NAME`, `SORT`, `SEMANTICS` (`S`, `F`, null in progress)
//!   (`api-reference/crm/status/crm-status-list.md`);
//! - `crm.deal.fields`: the custom (`UF_CRM_*`) fields' `type`, `isMultiple`, `isReadOnly`,
//!   label (`formLabel`/`listLabel`/`filterLabel`: the legacy method's `title` is the code) and
//!   an `enumeration`'s `items` `ID`/`VALUE` (`api-reference/crm/deals/crm-deal-fields.md`),
//!   the same options `crm.deal.userfield.list` has as `LIST`, so that call is not needed;
//! - `user.get`: `ID`, `NAME`, `LAST_NAME`, `UF_DEPARTMENT` (`api-reference/user/user-get.md`);
//! - `department.get`: `ID`, `NAME`, `SORT`, `PARENT`, `UF_HEAD`
//!   (`api-reference/departments/department-get.md`).
//!
//! A reference the answers do not close (a department's head who is not among the users listed,
//! a department the webhook user cannot see) is left out with a warning, so that the file
//! always reads back; what is written is read back before it is kept.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::bitrix::{CallError, Client, Retry, calls};
use crate::commands::output::{out, outln};
use crate::commands::{CommandError, CommandResult, load_settings};
use crate::rules::StageSemantic;
use crate::sandbox::portal_file::{
    Department, Field, Pipeline, PortalFile, Stage, User, parse_portal,
};
use crate::text::count;

pub async fn run(config: Option<PathBuf>, out_file: Option<PathBuf>) -> CommandResult {
    let settings = load_settings(config)?;
    let client = crate::startup::client(&settings)
        .map_err(|error| CommandError::Failed(error.to_string()))?;
    let (file, warnings) = read_portal(&client)
        .await
        .map_err(|error| CommandError::Failed(format!("the portal could not be read: {error}")))?;
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    let text = file.to_toml();
    if let Err(problems) = parse_portal("the exported portal", &text) {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(CommandError::Failed(format!(
            "the portal's answers make a file that does not read back: {}",
            problems.join("; ")
        )));
    }
    let Some(path) = out_file else {
        out!("{text}");
        return Ok(());
    };
    std::fs::write(&path, text)
        .map_err(|error| CommandError::Failed(format!("{}: {error}", path.display())))?;
    let stages: usize = file.pipelines.iter().map(|p| p.stages.len()).sum();
    outln!(
        "wrote {}: {}, {}, {}, {}, {}",
        path.display(),
        count(file.pipelines.len(), "pipeline", "pipelines"),
        count(stages, "stage", "stages"),
        count(file.fields.len(), "custom field", "custom fields"),
        count(file.departments.len(), "department", "departments"),
        count(file.users.len(), "user", "users"),
    );
    Ok(())
}

/// The portal as its read-only calls describe it, and what had to be left out.
pub async fn read_portal(client: &Client) -> Result<(PortalFile, Vec<String>), CallError> {
    let call = calls::pipelines();
    let categories = client
        .list_all(&call.method, call.params, Some("categories"))
        .await?;
    let mut pipelines = Vec::new();
    for c in &categories {
        let Some(id) = c.get("id").and_then(id_of) else {
            continue;
        };
        pipelines.push(Pipeline {
            id,
            name: text(c, "name"),
            sort: sort_of(c, "sort"),
            stages: Vec::new(),
        });
    }
    if !pipelines.iter().any(|p| p.id == 0) {
        pipelines.insert(
            0,
            Pipeline {
                id: 0,
                name: "General".into(),
                sort: None,
                stages: Vec::new(),
            },
        );
    }
    for pipeline in &mut pipelines {
        let call = calls::stages(pipeline.id);
        for row in client.list_all(&call.method, call.params, None).await? {
            let Some(id) = row.get("STATUS_ID").and_then(Value::as_str) else {
                continue;
            };
            let code = row.get("SEMANTICS").and_then(Value::as_str).unwrap_or("");
            pipeline.stages.push(Stage {
                id: id.to_string(),
                name: text(&row, "NAME"),
                semantics: StageSemantic::from_code(code),
                sort: sort_of(&row, "SORT"),
            });
        }
    }
    let fields = client.send(calls::deal_fields(), Retry::Safe).await?;
    let fields = custom_fields(fields.result.as_object().unwrap_or(&Map::new()));

    let call = calls::departments();
    let mut departments: Vec<Department> = client
        .list_all(&call.method, call.params, None)
        .await?
        .iter()
        .filter_map(|d| {
            Some(Department {
                id: d.get("ID").and_then(id_of).filter(|id| *id > 0)?,
                name: text(d, "NAME"),
                parent: d.get("PARENT").and_then(id_of).filter(|id| *id > 0),
                head: d.get("UF_HEAD").and_then(id_of).filter(|id| *id > 0),
                sort: sort_of(d, "SORT"),
            })
        })
        .collect();
    let call = calls::users();
    let mut users: Vec<User> = client
        .list_all(&call.method, call.params, None)
        .await?
        .iter()
        .filter_map(|u| {
            let id = u.get("ID").and_then(id_of).filter(|id| *id > 0)?;
            let name = [text(u, "NAME"), text(u, "LAST_NAME")]
                .into_iter()
                .filter(|part| !part.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            Some(User {
                id,
                name: if name.is_empty() {
                    format!("User {id}")
                } else {
                    name
                },
                departments: u
                    .get("UF_DEPARTMENT")
                    .and_then(Value::as_array)
                    .map(|ids| ids.iter().filter_map(id_of).collect())
                    .unwrap_or_default(),
            })
        })
        .collect();
    let warnings = close_references(&mut departments, &mut users);
    let file = PortalFile {
        pipelines,
        fields,
        departments,
        users,
    };
    Ok((file, warnings))
}

/// The custom fields of a `crm.deal.fields` answer, in its order.
fn custom_fields(answer: &Map<String, Value>) -> Vec<Field> {
    answer
        .iter()
        .filter(|(code, _)| code.starts_with("UF_CRM_"))
        .map(|(code, d)| {
            let label = ["formLabel", "listLabel", "filterLabel", "title"]
                .iter()
                .map(|key| text(d, key))
                .find(|label| !label.trim().is_empty())
                .unwrap_or_else(|| code.clone());
            let kind = text(d, "type");
            let options = if kind == "enumeration" {
                d.get("items")
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|item| {
                                let id = item.get("ID").and_then(id_of).filter(|id| *id > 0)?;
                                Some((id, text(item, "VALUE")))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            Field {
                code: code.clone(),
                kind: if kind.is_empty() {
                    "string".into()
                } else {
                    kind
                },
                label,
                multiple: d.get("isMultiple").and_then(Value::as_bool) == Some(true),
                read_only: d.get("isReadOnly").and_then(Value::as_bool) == Some(true),
                options,
            }
        })
        .collect()
}

/// Leaves out the references the answers do not close, saying which.
fn close_references(departments: &mut [Department], users: &mut [User]) -> Vec<String> {
    let mut warnings = Vec::new();
    let department_ids: Vec<u64> = departments.iter().map(|d| d.id).collect();
    let user_ids: Vec<u64> = users.iter().map(|u| u.id).collect();
    for d in departments.iter_mut() {
        if let Some(parent) = d.parent.filter(|p| !department_ids.contains(p)) {
            warnings.push(format!(
                "department {}'s parent {parent} is not among the departments listed: left out",
                d.id
            ));
            d.parent = None;
        }
        if let Some(head) = d.head.filter(|h| !user_ids.contains(h)) {
            warnings.push(format!(
                "department {}'s head, user {head}, is not among the users listed: left out",
                d.id
            ));
            d.head = None;
        }
    }
    for u in users.iter_mut() {
        let (kept, lost): (Vec<u64>, Vec<u64>) = u
            .departments
            .iter()
            .partition(|d| department_ids.contains(d));
        for d in lost {
            warnings.push(format!(
                "user {}'s department {d} is not among the departments listed: left out",
                u.id
            ));
        }
        u.departments = kept;
    }
    warnings
}

/// An id Bitrix24 sends as a number or as a string of digits.
fn id_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A `sort`/`SORT`, sent as a number or a string.
fn sort_of(value: &Value, key: &str) -> Option<u32> {
    value
        .get(key)
        .and_then(id_of)
        .and_then(|s| u32::try_from(s).ok())
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_the_answers_do_not_close_are_left_out_with_a_warning() {
        let mut departments = vec![Department {
            id: 1,
            name: "Company".into(),
            parent: Some(9),
            head: Some(17),
            sort: None,
        }];
        let mut users = vec![User {
            id: 3,
            name: "Vera".into(),
            departments: vec![1, 4],
        }];
        let warnings = close_references(&mut departments, &mut users);
        assert_eq!(departments[0].parent, None);
        assert_eq!(departments[0].head, None);
        assert_eq!(users[0].departments, vec![1]);
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(warnings[1].contains("head, user 17"), "{warnings:#?}");
    }

    #[test]
    fn custom_fields_take_the_form_label_and_only_lists_take_options() {
        let answer = json!({
            "TITLE": {"type": "string", "title": "Name"},
            "UF_CRM_REASON": {"type": "enumeration", "title": "UF_CRM_REASON", "formLabel": "Reason",
                "isMultiple": false, "isReadOnly": false,
                "items": [{"ID": "3157", "VALUE": "Price"}, {"ID": 3158, "VALUE": "Timing"}]},
            "UF_CRM_SCORE": {"type": "integer", "title": "UF_CRM_SCORE", "isReadOnly": true,
                "isMultiple": true, "items": [{"ID": "1", "VALUE": "x"}]},
        });
        let fields = custom_fields(answer.as_object().expect("object"));
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].label, "Reason");
        assert_eq!(
            fields[0].options,
            vec![(3157, "Price".to_string()), (3158, "Timing".to_string())]
        );
        assert_eq!(fields[1].label, "UF_CRM_SCORE");
        assert!(fields[1].read_only && fields[1].multiple);
        assert!(fields[1].options.is_empty());
    }
}
