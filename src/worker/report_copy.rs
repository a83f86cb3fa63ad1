//! Refreshing the report copy (`control.md`, "Where the data comes from"): the deals modified
//! since the last refresh (`crm.deal.list`, `>=DATE_MODIFY` of the newest read, every field the
//! reports and the rules' report fields need) and the stage-history entries past the last one
//! read (`crm.stagehistory.list`, `>ID`), both lists' first pages in one shared `batch`, every
//! further page in shared batches too (`control::sweep::list_many`), through the one client and
//! bucket. A refresh with nothing changed is those two first pages: one request (one more when
//! the field catalog's cache is stale). The first refresh of a portal reads every deal and
//! entry, 50 a page, 50 pages a request.
//!
//! List fields (a loss reason) are kept as their labels, from the field catalog the rounds
//! cache, as reports show them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::DateTime;
use serde_json::{Value, json};

use super::Worker;
use super::control::sweep::list_many;
use crate::bitrix::CallError;
use crate::bitrix::{BatchCall, Retry, calls};
use crate::reports::{HistoryEntry, ReportDeal};
use crate::rules::{Amount, Deal, FieldCatalog, RuleSet, StageSemantic};
use crate::store::{CopyMeta, StoreError};

/// Why a refresh stopped: the copy keeps what it had, and the next refresh goes on from there.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("report copy: {0}")]
    Portal(#[from] CallError),
    #[error("report copy: {0}")]
    Store(#[from] StoreError),
}

/// What a refresh read and changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refreshed {
    pub deals_read: usize,
    pub entries_read: usize,
    /// Deals of the copy after it.
    pub deals: usize,
    pub as_of: String,
}

/// The deal fields every report reads, beside the rules' report fields.
const DEAL_SELECT: [&str; 9] = [
    "ID",
    "TITLE",
    "CATEGORY_ID",
    "STAGE_ID",
    "STAGE_SEMANTIC_ID",
    "ASSIGNED_BY_ID",
    "OPPORTUNITY",
    "CURRENCY_ID",
    "DATE_MODIFY",
];

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(value: Option<&Value>) -> Option<u64> {
    text(value)?.trim().parse().ok()
}

/// Brings the copy up to date (or, with `rebuild`, reads it anew).
pub async fn refresh(
    worker: &Worker,
    rules: &RuleSet,
    rebuild: bool,
) -> Result<Refreshed, RefreshError> {
    // Read anew, the copy is built from nothing but stands as it was until the new one is
    // whole (a portal failing half-way leaves the old copy, not an empty one).
    let mut meta = if rebuild {
        CopyMeta::default()
    } else {
        worker.store.report_copy_meta()?.unwrap_or_default()
    };
    let stored = |id: u64| -> Result<Option<ReportDeal>, StoreError> {
        if rebuild {
            Ok(None)
        } else {
            worker.store.report_deal(id)
        }
    };
    let report_fields: BTreeSet<String> = rules
        .rules()
        .iter()
        .filter_map(|r| r.score_field().or(r.loss_field()))
        .map(str::to_string)
        .collect();
    let mut select: Vec<String> = DEAL_SELECT.iter().map(|s| s.to_string()).collect();
    select.extend(report_fields.iter().cloned());
    // `>=`: a deal modified in the same second as the newest one read is read again rather
    // than missed.
    let deal_filter = match &meta.deals_modified {
        Some(at) => json!({ ">=DATE_MODIFY": at }),
        None => json!({}),
    };
    let lists = vec![
        BatchCall::new(
            "crm.deal.list",
            json!({ "filter": deal_filter, "order": { "ID": "ASC" }, "select": select }),
        ),
        BatchCall::new(
            "crm.stagehistory.list",
            json!({ "entityTypeId": 2, "order": { "ID": "ASC" },
                    "filter": { ">ID": meta.history_id },
                    "select": ["ID", "OWNER_ID", "STAGE_ID", "STAGE_SEMANTIC_ID", "CATEGORY_ID", "CREATED_TIME"] }),
        ),
    ];
    // List fields become labels and stages get their names from the field catalog: read with
    // the first pages when the cached one is stale (one request more, once per cache period).
    if worker.catalog.fresh().is_none() {
        let read = vec![calls::deal_fields(), calls::all_stages()];
        let mut answers = worker.client.batch(read, Retry::Safe).await.into_iter();
        if let (Some(Ok(fields)), stages) = (answers.next(), answers.next()) {
            let stages = stages.and_then(Result::ok).map(|a| a.result);
            worker.catalog.store(&fields.result, stages.as_ref());
        }
    }
    let items = list_many(worker, lists).await?;
    let catalog = worker.catalog.any().unwrap_or_default();
    let mut touched: BTreeMap<u64, ReportDeal> = BTreeMap::new();
    let (mut deals_read, mut entries_read) = (0, 0);
    for item in &items {
        // A stage-history item has an OWNER_ID; a deal has none.
        if item.get("OWNER_ID").is_some() {
            continue;
        }
        let Some(id) = number(item.get("ID")) else {
            continue;
        };
        deals_read += 1;
        if let Some(modified) = text(item.get("DATE_MODIFY"))
            && meta.deals_modified.as_ref().is_none_or(|m| modified > *m)
        {
            meta.deals_modified = Some(modified);
        }
        let known = match touched.remove(&id) {
            Some(deal) => Some(deal),
            None => stored(id)?,
        };
        touched.insert(id, deal_of(item, known, &report_fields, &catalog));
    }
    for item in &items {
        let (Some(owner), Some(id)) = (number(item.get("OWNER_ID")), number(item.get("ID"))) else {
            continue;
        };
        entries_read += 1;
        meta.history_id = meta.history_id.max(id);
        let Some(entry) = entry_of(item) else {
            continue;
        };
        let deal = match touched.remove(&owner) {
            Some(deal) => Some(deal),
            None => stored(owner)?,
        };
        // An entry of a deal the copy does not hold (deleted since, or created after its list
        // was read) waits: the deal's next listing brings it with its whole history.
        let Some(mut deal) = deal else { continue };
        if !deal.history.iter().any(|e| e.id == entry.id) {
            deal.history.push(entry);
        }
        touched.insert(owner, deal);
    }
    let as_of = worker.clock.now().fixed_offset().to_rfc3339();
    meta.as_of = Some(as_of.clone());
    let changed: Vec<ReportDeal> = touched.into_values().collect();
    if rebuild {
        worker.store.replace_report_copy(&changed, &meta)?;
    } else {
        worker.store.put_report_copy(&changed, &meta)?;
    }
    worker.store.flush_async().await?;
    let deals = worker.store.report_deal_count()?;
    tracing::info!(deals_read, entries_read, deals, "report copy refreshed");
    Ok(Refreshed {
        deals_read,
        entries_read,
        deals,
        as_of,
    })
}

/// A deal of `crm.deal.list` as the copy keeps it, with the history it had.
fn deal_of(
    item: &Value,
    known: Option<ReportDeal>,
    report_fields: &BTreeSet<String>,
    catalog: &FieldCatalog,
) -> ReportDeal {
    let map = item.as_object().cloned().unwrap_or_default();
    let deal = Deal::new(map);
    let mut fields = BTreeMap::new();
    for field in report_fields {
        // List fields as their labels, as people read them (and as rules compare them).
        let shown = crate::rules::shown_value(&deal, catalog, field);
        fields.insert(
            field.clone(),
            if shown.is_empty() {
                Value::Null
            } else {
                Value::String(shown)
            },
        );
    }
    ReportDeal {
        id: number(item.get("ID")).unwrap_or(0),
        title: text(item.get("TITLE")).unwrap_or_default(),
        pipeline: number(item.get("CATEGORY_ID")).unwrap_or(0),
        stage: text(item.get("STAGE_ID")).unwrap_or_default(),
        semantic: StageSemantic::from_code(
            &text(item.get("STAGE_SEMANTIC_ID")).unwrap_or_default(),
        ),
        assigned: number(item.get("ASSIGNED_BY_ID")).unwrap_or(0),
        amount: text(item.get("OPPORTUNITY"))
            .and_then(|a| Amount::parse(&a))
            .unwrap_or_default(),
        currency: text(item.get("CURRENCY_ID")).unwrap_or_default(),
        fields,
        history: known.map(|k| k.history).unwrap_or_default(),
    }
}

/// A stage-history item (`CREATED_TIME` in `+00:00`, as the portal prints it).
fn entry_of(item: &Value) -> Option<HistoryEntry> {
    Some(HistoryEntry {
        id: number(item.get("ID"))?,
        stage: text(item.get("STAGE_ID"))?,
        semantic: StageSemantic::from_code(
            &text(item.get("STAGE_SEMANTIC_ID")).unwrap_or_default(),
        ),
        at: DateTime::parse_from_rfc3339(&text(item.get("CREATED_TIME"))?).ok()?,
    })
}

/// The reports there are, by name.
pub const REPORTS: [&str; 6] = ["plan", "nps", "losses", "stages", "tasks", "deals"];

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no report named \"{0}\" (reports: plan, nps, losses, stages, tasks, deals)")]
    Unknown(String),
    #[error("{0}")]
    Period(String),
    #[error(transparent)]
    Refresh(#[from] RefreshError),
}

/// One report as its JSON form (`control.md`, "Reports"), on the copy refreshed now
/// (`rebuild`: read anew). `period`: the plan forms; `None`, the current month.
pub async fn report_json(
    worker: &Worker,
    rules: &RuleSet,
    name: &str,
    (period, pipeline): (Option<&str>, Option<u64>),
    rebuild: bool,
) -> Result<Value, ReportError> {
    use crate::reports::{self, Report, Scope};
    if !REPORTS.contains(&name) {
        return Err(ReportError::Unknown(name.to_string()));
    }
    let now = worker.clock.now().fixed_offset();
    let period = match period {
        Some(text) => text
            .parse::<crate::rules::ReportPeriod>()
            .map_err(|e| ReportError::Period(e.to_string()))?,
        None => crate::rules::ReportPeriod::current(&worker.calendar, now),
    };
    // A portal that does not answer leaves the copy as it was: the report is made from it, says
    // from when (`data_as_of`) and why it is not newer (`refresh_error`). A copy never made, or
    // one asked to be read anew, has nothing to show instead.
    let (as_of, refresh_error) = match refresh(worker, rules, rebuild).await {
        Ok(refreshed) => (refreshed.as_of, None),
        Err(RefreshError::Portal(error)) if !rebuild => {
            let kept = worker
                .store
                .report_copy_meta()
                .map_err(RefreshError::from)?;
            match kept.and_then(|meta| meta.as_of) {
                Some(as_of) => {
                    tracing::warn!(%error, %as_of, "report copy not refreshed: the report is made from the copy as it is");
                    (as_of, Some(error.to_string()))
                }
                None => return Err(RefreshError::Portal(error).into()),
            }
        }
        Err(error) => return Err(error.into()),
    };
    let as_of = DateTime::parse_from_rfc3339(&as_of).unwrap_or(now);
    let deals = worker.store.report_deals().map_err(RefreshError::from)?;
    let scope = Scope {
        calendar: &worker.calendar,
        period,
        pipeline,
        now,
    };
    let mut value = match name {
        "plan" => json!(Report::new(
            &scope,
            as_of,
            reports::plan(rules.plans(), &deals, &scope)
        )),
        "nps" => json!(Report::new(
            &scope,
            as_of,
            reports::nps(rules, &deals, &scope)
        )),
        "losses" => json!(Report::new(
            &scope,
            as_of,
            reports::losses(rules, &deals, &scope)
        )),
        "deals" => json!(Report::new(&scope, as_of, reports::deals(&deals, &scope))),
        "stages" => {
            let stages = stage_infos(worker, &deals);
            let over = over_sla(worker)?;
            json!(Report::new(
                &scope,
                as_of,
                reports::stages(&stages, &deals, &over, &scope)
            ))
        }
        _ => {
            let tasks = created_tasks(worker, &deals).await?;
            json!(Report::new(&scope, as_of, reports::tasks(&tasks, &scope)))
        }
    };
    if let Some(error) = refresh_error {
        value["refresh_error"] = json!(error);
    }
    Ok(value)
}

/// Every stage of the portal's pipelines in their order (the cached catalog's `crm.status.list`,
/// by `SORT`), named as the portal names them; then any other stage the copy's deals went
/// through (deleted since, or no catalog), with its kind as the history recorded it.
fn stage_infos(worker: &Worker, deals: &[ReportDeal]) -> Vec<crate::reports::StageInfo> {
    use crate::reports::StageInfo;
    let catalog = worker.catalog.any().unwrap_or_default();
    let name = |id: &str| catalog.stage_name(id).unwrap_or(id).to_string();
    let mut infos: Vec<StageInfo> = catalog
        .stage_order()
        .iter()
        .map(|(pipeline, id, semantic)| StageInfo {
            pipeline: *pipeline,
            id: id.clone(),
            name: name(id),
            semantic: *semantic,
        })
        .collect();
    let listed: BTreeSet<String> = infos.iter().map(|s| s.id.clone()).collect();
    let mut others: BTreeMap<String, StageInfo> = BTreeMap::new();
    for deal in deals {
        for entry in deal.history.iter().filter(|e| !listed.contains(&e.stage)) {
            others
                .entry(entry.stage.clone())
                .or_insert_with(|| StageInfo {
                    pipeline: crate::rules::stage_pipeline(&entry.stage).unwrap_or(deal.pipeline),
                    id: entry.stage.clone(),
                    name: name(&entry.stage),
                    semantic: entry.semantic,
                });
        }
    }
    infos.extend(others.into_values());
    infos
}

/// Deals over an `[[sla]]` now, by stage: a timer that fired, its deal still in that entry.
fn over_sla(worker: &Worker) -> Result<BTreeMap<String, u64>, RefreshError> {
    let mut out = BTreeMap::new();
    for timer in worker.store.fired_timers()? {
        let state = worker.store.deal_state(timer.deal_id)?.unwrap_or_default();
        if state.stage_id.as_deref() == Some(timer.entry.stage_id.as_str()) {
            *out.entry(timer.entry.stage_id.clone()).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// The tasks the service created, read now (`tasks.task.list` by `ID` lists of 50, together):
/// when each was created, its deadline, when it was closed.
async fn created_tasks(
    worker: &Worker,
    deals: &[ReportDeal],
) -> Result<Vec<crate::reports::ReportTask>, RefreshError> {
    let ids = worker.store.created_tasks()?;
    let lists = ids
        .chunks(50)
        .map(|chunk| {
            BatchCall::new(
                "tasks.task.list",
                json!({ "filter": { "ID": chunk },
                        "select": ["ID", "RESPONSIBLE_ID", "CREATED_DATE", "DEADLINE", "CLOSED_DATE", "STATUS", "UF_CRM_TASK"] }),
            )
        })
        .collect();
    let pipeline_of: BTreeMap<u64, u64> = deals.iter().map(|d| (d.id, d.pipeline)).collect();
    let at = |item: &Value, camel: &str, upper: &str| {
        text(item.get(camel).or_else(|| item.get(upper)))
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
    };
    let mut out = Vec::new();
    for item in list_many(worker, lists).await? {
        let Some(task) = super::control::sweep::task_of(&item) else {
            continue;
        };
        let Some(created) = at(&item, "createdDate", "CREATED_DATE") else {
            continue;
        };
        out.push(crate::reports::ReportTask {
            id: task.id,
            responsible: task.responsible.unwrap_or(0),
            pipeline: task.deal_id.and_then(|d| pipeline_of.get(&d).copied()),
            created,
            deadline: task.deadline,
            closed: at(&item, "closedDate", "CLOSED_DATE"),
        });
    }
    Ok(out)
}
