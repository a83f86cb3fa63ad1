//! The admin commands (`explain`, `jobs`, `store check`, `backfill`): through the running
//! service's admin API when it runs (it holds the store's lock), or on the store directly when
//! it does not.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use tokio_util::sync::CancellationToken;

use crate::admin::{
    deal_report, format_deal_report, format_jobs_report, format_store_check, jobs_report,
    store_check_report,
};
use crate::cli::{JobsAction, StoreAction, load_settings};
use crate::configuration::Settings;
use crate::store::{Store, StoreError};
use crate::worker::backfill::{BackfillOptions, Status};

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
    match Store::open_with_cache(&settings.storage.dir, settings.storage.cache) {
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
    api_with(settings, client, method, url, None).await
}

async fn api_with(
    settings: &Settings,
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<Value, AdminError> {
    let mut request = client
        .request(method, url)
        .bearer_auth(settings.server.admin_token.expose());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
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

/// `store check`: every record of every tree read; exit 1 when one is damaged.
pub async fn store(config: Option<PathBuf>, action: StoreAction) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let StoreAction::Check { json } = action;
    let report = async {
        Ok::<_, AdminError>(match source(&settings).await? {
            Source::Api(client, base) => {
                api(
                    &settings,
                    &client,
                    reqwest::Method::GET,
                    format!("{base}/admin/store/check"),
                )
                .await?
            }
            Source::Store(store) => store_check_report(&store),
        })
    };
    match report.await {
        Ok(report) => {
            if json {
                println!("{report:#}");
            } else {
                print!("{}", format_store_check(&report));
            }
            if report["damaged"].as_array().is_none_or(Vec::is_empty) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

/// `backfill`: in the running service (through the admin API, polled for the progress bar), or
/// here on the store when no service runs. Ctrl-C interrupts it; the same command continues.
pub async fn backfill(config: Option<PathBuf>, options: BackfillOptions) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let source = match source(&settings).await {
        Ok(s) => s,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    let end = match source {
        Source::Api(client, base) => backfill_in_service(&settings, &client, &base, &options).await,
        Source::Store(store) => backfill_here(&settings, store, &options).await,
    };
    match end {
        Ok(status) => {
            eprintln!();
            let state = status["state"].as_str().unwrap_or("?");
            match state {
                "done" => {
                    eprintln!(
                        "backfill done: {} deal(s) looked at, rules applied to {} entr(ies), {} effect(s){}, {} already done",
                        status["done"],
                        status["entries"],
                        status["effects"],
                        if options.dry_run {
                            " (dry run: none made)"
                        } else {
                            ""
                        },
                        status["already"]
                    );
                    ExitCode::SUCCESS
                }
                "cancelled" => {
                    eprintln!(
                        "backfill interrupted after {} deal(s): run the same command again to continue",
                        status["done"]
                    );
                    ExitCode::from(130)
                }
                _ => {
                    eprintln!(
                        "error: backfill {state}: {}; run the same command again to continue",
                        status["last_error"].as_str().unwrap_or("?")
                    );
                    ExitCode::from(1)
                }
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

fn draw(status: &Value) {
    use std::io::Write;
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\r{}\x1b[K",
        crate::worker::backfill::progress_line(status)
    );
    let _ = err.flush();
}

fn print_writes(status: &Value) -> usize {
    let writes = status["writes"].as_array().cloned().unwrap_or_default();
    if !writes.is_empty() {
        eprint!("\r\x1b[K");
        for w in &writes {
            println!("{w}");
        }
    }
    writes.len()
}

async fn backfill_in_service(
    settings: &Settings,
    client: &reqwest::Client,
    base: &str,
    options: &BackfillOptions,
) -> Result<Value, AdminError> {
    let url = format!("{base}/admin/backfill");
    let body = serde_json::to_value(options).unwrap_or_default();
    api_with(
        settings,
        client,
        reqwest::Method::POST,
        url.clone(),
        Some(body),
    )
    .await?;
    let mut printed = 0usize;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let status = api(
            settings,
            client,
            reqwest::Method::GET,
            format!("{url}?from={printed}"),
        )
        .await?;
        printed += print_writes(&status);
        draw(&status);
        if status["state"] != "running" {
            return Ok(status);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = &mut ctrl_c => {
                api(settings, client, reqwest::Method::DELETE, url.clone()).await?;
            }
        }
    }
}

async fn backfill_here(
    settings: &Settings,
    store: Store,
    options: &BackfillOptions,
) -> Result<Value, AdminError> {
    let Some(rules) = crate::cli::load_rules(settings) else {
        return Err(AdminError::Http("the rules do not load".into()));
    };
    let client = crate::startup::client(settings).map_err(|e| AdminError::Http(e.to_string()))?;
    let worker = std::sync::Arc::new(crate::worker::Worker {
        store,
        portal_origin: client.portal_origin(),
        client,
        rules: crate::worker::RulesHandle::new(rules),
        calendar: settings.calendar.clone(),
        settings: settings.worker.clone(),
        scheduler: crate::worker::Scheduler::new(),
        catalog: crate::worker::CatalogCache::default(),
        people: crate::worker::People::default(),
        activity: None,
        metrics: std::sync::Arc::new(crate::metrics::Metrics::default()),
    });
    let status = Status::default();
    let stop = CancellationToken::new();
    let task = {
        let (worker, options, status, stop) = (
            worker.clone(),
            options.clone(),
            status.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            crate::worker::backfill::run(&worker, &options, &status, &stop).await
        })
    };
    let mut printed = 0usize;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let snapshot = status.json(printed);
        printed += print_writes(&snapshot);
        draw(&snapshot);
        if task.is_finished() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut ctrl_c => stop.cancel(),
        }
    }
    let _ = task.await;
    let snapshot = status.json(printed);
    print_writes(&snapshot);
    draw(&snapshot);
    worker.store.flush()?;
    Ok(snapshot)
}
