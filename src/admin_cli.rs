//! The admin commands (`explain`, `jobs`): through the running service's admin API when it
//! runs (it holds the store's lock), or on the store directly when it does not.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::admin::{deal_report, format_deal_report, format_jobs_report, jobs_report};
use crate::cli::{JobsAction, load_settings};
use crate::configuration::Settings;
use crate::store::{Store, StoreError};

/// Where the answer came from.
enum Source {
    Api(reqwest::Client, String),
    Store(Store),
}

#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the admin API answered {status}: {body}")]
    Api { status: u16, body: String },
    #[error("the admin API: {0}")]
    Http(String),
    #[error(
        "the store is in use by the running service and its admin API is off: set server.admin_token (and restart it) to use this command while it runs"
    )]
    NoApi,
}

/// Reaches the running service's admin API if one answers; else opens the store.
async fn source(settings: &Settings) -> Result<Source, AdminError> {
    if !settings.server.admin_token.is_empty() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AdminError::Http(e.to_string()))?;
        let mut addr = settings.server.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let base = format!("http://{addr}");
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return Ok(Source::Api(client, base));
        }
    }
    match Store::open(&settings.storage.dir) {
        Ok(store) => Ok(Source::Store(store)),
        Err(StoreError::Locked { .. }) => Err(AdminError::NoApi),
        Err(other) => Err(other.into()),
    }
}

async fn api(
    settings: &Settings,
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> Result<Value, AdminError> {
    let response = client
        .request(method, url)
        .bearer_auth(settings.server.admin_token.expose())
        .send()
        .await
        .map_err(|e| AdminError::Http(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| AdminError::Http(e.without_url().to_string()))?;
    if !(200..300).contains(&status) {
        return Err(AdminError::Api {
            status,
            body: body.trim().to_string(),
        });
    }
    serde_json::from_str(&body).map_err(|e| AdminError::Http(format!("not JSON: {e}")))
}

fn finish(result: Result<String, AdminError>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

pub async fn explain(config: Option<PathBuf>, deal: u64, as_json: bool) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let report = async {
        let report = match source(&settings).await? {
            Source::Api(client, base) => {
                api(
                    &settings,
                    &client,
                    reqwest::Method::GET,
                    format!("{base}/admin/deals/{deal}"),
                )
                .await?
            }
            Source::Store(store) => deal_report(&store, deal)?,
        };
        Ok(if as_json {
            format!("{report:#}\n")
        } else {
            format_deal_report(&report)
        })
    };
    finish(report.await)
}

pub async fn jobs(config: Option<PathBuf>, action: JobsAction) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
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
                Ok(if json {
                    format!("{report:#}\n")
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
                        let answer = api(&settings, client, reqwest::Method::POST, url).await?;
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
    finish(result.await)
}
