//! `b24-robot explain DEAL [--json]`: a deal's stage entries, what each rule decided and why,
//! its effects with their Bitrix24 ids, and its queued job.

use std::path::PathBuf;

use super::admin::{AdminError, Source, api, pretty, source};
use super::{CommandResult, load_settings};
use crate::commands::output::out;
use crate::ops::admin::{deal_report, format_deal_report};

pub async fn run(config: Option<PathBuf>, deal: u64, as_json: bool) -> CommandResult {
    let settings = load_settings(config)?;
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
