//! `b24-robot jobs list [--json]`, `jobs retry DEAL`, `jobs retry --all`: the job queue, parked
//! jobs first with their last error; re-running parked jobs.

use std::path::PathBuf;

use super::JobsAction;
use super::admin::{AdminError, Source, api, pretty, source};
use super::{CommandResult, load_settings};
use crate::ops::admin::{format_jobs_report, jobs_report};

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
                Ok(if retried.is_empty() {
                    "no parked job to re-run\n".to_string()
                } else {
                    format!("re-running the jobs of deal(s) {retried:?}\n")
                })
            }
        }
    };
    print!("{}", result.await?);
    Ok(())
}
