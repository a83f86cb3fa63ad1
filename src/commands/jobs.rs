//! `b24-robot jobs list [--json]`, `jobs retry DEAL`, `jobs retry --all`: the job queue, parked
//! jobs first with their last error; re-running parked jobs.

use std::path::PathBuf;

use super::JobsAction;
use super::admin::{AdminError, Source, api, pretty, source};
use super::{CommandResult, load_settings};
use crate::commands::output::out;
use crate::ops::admin::{JobsReport, format_jobs_report, jobs_report};
use crate::store::QueuedDeal;

pub async fn run(config: Option<PathBuf>, action: JobsAction) -> CommandResult {
    let settings = load_settings(config)?;
    let result = async {
        let source = source(&settings).await?;
        match action {
            JobsAction::List { json } => {
                let report = match &source {
                    Source::Api(client, base) => {
                        api(
                            &settings,
                            client,
                            reqwest::Method::GET,
                            format!("{base}/admin/jobs"),
                        )
                        .await?
                    }
                    Source::Store(store) => jobs_report(store)?,
                };
                Ok::<_, AdminError>(if json {
                    format!("{}\n", pretty(&report))
                } else {
                    format_jobs_report(&report)
                })
            }
            JobsAction::Retry { deal, all } => {
                if deal.is_none() && !all {
                    return Ok("nothing to do: name a deal or give --all\n".to_string());
                }
                let retried: Vec<u64> = match &source {
                    Source::Api(client, base) => {
                        let url = match deal {
                            Some(d) => format!("{base}/admin/jobs/{d}/retry"),
                            None => format!("{base}/admin/jobs/retry"),
                        };
                        let answer: serde_json::Value =
                            api(&settings, client, reqwest::Method::POST, url).await?;
                        serde_json::from_value(answer["retried"].clone()).unwrap_or_default()
                    }
                    Source::Store(store) => {
                        let revived = store.retry_parked(deal)?;
                        store.flush()?;
                        revived
                    }
                };
                if let (Some(deal), true) = (deal, retried.is_empty()) {
                    let job = match &source {
                        Source::Api(client, base) => {
                            let report: JobsReport = api(
                                &settings,
                                client,
                                reqwest::Method::GET,
                                format!("{base}/admin/jobs"),
                            )
                            .await?;
                            report.jobs.into_iter().find(|q| q.deal_id == deal)
                        }
                        Source::Store(store) => store.queued(deal)?,
                    };
                    return Err(AdminError::Refused(not_parked(deal, job.as_ref())));
                }
                Ok(if retried.is_empty() {
                    "no parked job to re-run\n".to_string()
                } else {
                    format!("re-running the jobs of deal(s) {retried:?}\n")
                })
            }
        }
    };
    out!("{}", result.await?);
    Ok(())
}

/// Why `jobs retry DEAL` did nothing: the deal's job is not parked, or there is none.
fn not_parked(deal: u64, job: Option<&QueuedDeal>) -> String {
    match job {
        Some(q) => format!(
            "deal {deal} has no parked job to re-run: its job is queued ({} event(s), {} attempt(s)) and runs on its own",
            q.events, q.attempts
        ),
        None => format!(
            "deal {deal} has no job in the queue: nothing to re-run (b24-robot explain {deal} shows what was done)"
        ),
    }
}
