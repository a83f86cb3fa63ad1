//! `b24-robot explain DEAL [--json]`: a deal's stage entries, what each rule decided and why,
//! its effects with their Bitrix24 ids, and its queued job.

use std::path::PathBuf;

use super::admin::{AdminError, Source, api, pretty, source};
use super::{CommandError, CommandResult, load_settings};
use crate::commands::output::out;
use crate::configuration::Secret;
use crate::ops::admin::{deal_report, format_deal_report};

/// With `store`, that store is read (the sandbox's kept one); else the running service's admin
/// API, or the config's store when the service is not running.
pub async fn run(
    config: Option<PathBuf>,
    deal: u64,
    as_json: bool,
    store: Option<PathBuf>,
) -> CommandResult {
    let mut settings = load_settings(config)?;
    if let Some(dir) = store {
        if !dir.is_dir() {
            return Err(CommandError::Failed(format!(
                "--store {}: no such folder",
                dir.display()
            )));
        }
        // No admin API: that store is read, not the running service's.
        settings.server.admin_token = Secret::new(String::new());
        settings.storage.dir = dir;
    }
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
        Ok::<_, AdminError>(if as_json {
            format!("{}\n", pretty(&report))
        } else {
            format_deal_report(&report)
        })
    };
    out!("{}", report.await?);
    Ok(())
}
