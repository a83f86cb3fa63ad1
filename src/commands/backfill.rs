//! `b24-robot backfill [--rule NAME] [--pipeline N] [--dry-run] [--restart]`: the rules applied to
//! the deals sitting in their stages now, once, resumably. In the running service (through the
//! admin API, polled for the progress bar), or here on the store when no service runs.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::admin::{AdminError, Source, api, api_with, source};
use super::{CommandError, CommandResult, load_settings};
use crate::commands::output::outln;
use crate::configuration::Settings;
use crate::store::Store;
use crate::worker::backfill::{BackfillOptions, RunState, Status, StatusReport};

/// `backfill`: in the running service (through the admin API, polled for the progress bar), or
/// here on the store when no service runs. Ctrl-C interrupts it; the same command continues.
pub async fn run(config: Option<PathBuf>, options: BackfillOptions) -> CommandResult {
    let settings = load_settings(config)?;
    let source = source(&settings).await?;
    let end = match source {
        Source::Api(client, base) => backfill_in_service(&settings, &client, &base, &options).await,
        Source::Store(store) => backfill_here(&settings, store, &options).await,
    };
    let status = end?;
    eprintln!();
    match status.state {
        RunState::Done => {
            eprintln!(
                "backfill done: {} deal(s) looked at, rules applied to {} entr(ies), {} effect(s){}, {} already done",
                status.done,
                status.entries,
                status.effects,
                if options.dry_run {
                    " (dry run: none made)"
                } else {
                    ""
                },
                status.already
            );
            Ok(())
        }
        RunState::Cancelled => Err(CommandError::Interrupted(format!(
            "backfill interrupted after {} deal(s): run the same command again to continue",
            status.done
        ))),
        state => Err(CommandError::Failed(format!(
            "backfill {state}: {}; run the same command again to continue",
            status.last_error.as_deref().unwrap_or("?")
        ))),
    }
}

fn draw(status: &StatusReport) {
    use std::io::Write;
    let mut err = std::io::stderr();
    let _ = write!(err, "\r{}\x1b[K", status.progress_line());
    let _ = err.flush();
}

fn print_writes(status: &StatusReport) -> usize {
    if !status.writes.is_empty() {
        eprint!("\r\x1b[K");
        for w in &status.writes {
            outln!("{w}");
        }
    }
    status.writes.len()
}

async fn backfill_in_service(
    settings: &Settings,
    client: &reqwest::Client,
    base: &str,
    options: &BackfillOptions,
) -> Result<StatusReport, AdminError> {
    let url = format!("{base}/admin/backfill");
    let body = serde_json::to_value(options).unwrap_or_default();
    api_with::<serde_json::Value>(
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
        let status: StatusReport = api(
            settings,
            client,
            reqwest::Method::GET,
            format!("{url}?from={printed}"),
        )
        .await?;
        printed += print_writes(&status);
        draw(&status);
        if status.state != RunState::Running {
            return Ok(status);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = &mut ctrl_c => {
                api::<serde_json::Value>(settings, client, reqwest::Method::DELETE, url.clone()).await?;
            }
        }
    }
}

async fn backfill_here(
    settings: &Settings,
    store: Store,
    options: &BackfillOptions,
) -> Result<StatusReport, AdminError> {
    let Ok(rules) = super::load_rules(settings) else {
        return Err(AdminError::Http("the rules do not load".into()));
    };
    let worker = super::admin::store_worker(settings, store, &rules)?;
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
        let snapshot = status.report(printed);
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
    let snapshot = status.report(printed);
    print_writes(&snapshot);
    draw(&snapshot);
    worker.store.flush()?;
    Ok(snapshot)
}
