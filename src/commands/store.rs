//! `b24-robot store check [--json]`: every record of every tree read; the damaged ones listed
//! (tree, key, error), exit 1 when there is one.

use std::path::PathBuf;

use super::admin::{AdminError, Source, api, pretty, source};
use super::{CommandError, CommandResult, StoreAction, load_settings};
use crate::commands::output::{out, outln};
use crate::ops::admin::{format_store_check, store_check_report};

/// `store check`: every record of every tree read; exit 1 when one is damaged.
pub async fn run(config: Option<PathBuf>, action: StoreAction) -> CommandResult {
    let settings = load_settings(config)?;
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
    let report = report.await?;
    if json {
        outln!("{}", pretty(&report));
    } else {
        out!("{}", format_store_check(&report));
    }
    if report.damaged.is_empty() {
        Ok(())
    } else {
        Err(CommandError::Found)
    }
}
