//! `b24-robot digest NAME [--dry-run]`: a `[[digest]]` built now and sent (or, with
//! `--dry-run`, each recipient's text printed and nothing sent): through the running service's
//! admin API when one runs (`POST /admin/digests/{name}`), or directly otherwise. An explicit
//! send is not a slot: it is not deduplicated.

use serde_json::json;
use std::path::PathBuf;

use super::admin::{AdminError, Source, api_with, source, store_worker};
use super::{CommandError, CommandResult, load_rules, load_settings};
use crate::commands::output::out;
use crate::ops::admin::DigestReport;
use crate::worker::control::digests;

pub async fn run(config: Option<PathBuf>, name: String, dry_run: bool) -> CommandResult {
    let settings = load_settings(config)?;
    let report = match source(&settings).await? {
        Source::Api(client, base) => {
            api_with::<DigestReport>(
                &settings,
                &client,
                reqwest::Method::POST,
                format!("{base}/admin/digests/{name}"),
                Some(json!({ "dry_run": dry_run })),
            )
            .await?
        }
        Source::Store(store) => {
            let rules = load_rules(&settings)?;
            if rules.controls().digest_named(&name).is_none() {
                let known: Vec<&str> = rules
                    .controls()
                    .digests()
                    .iter()
                    .map(|d| d.name())
                    .collect();
                return Err(CommandError::Usage(format!(
                    "no [[digest]] named \"{name}\" in {} (digests: {})",
                    settings.rules.dir.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            let worker = store_worker(&settings, store, &rules)?;
            let digest = rules.controls().digest_named(&name).cloned();
            let Some(digest) = digest else {
                return Ok(());
            };
            let sent = digests::send(&worker, &rules, &digest, None, dry_run)
                .await
                .map_err(|e| CommandError::Failed(e.to_string()))?;
            worker.store.flush().map_err(AdminError::from)?;
            DigestReport::of(name, dry_run, sent)
        }
    };
    out!("{}", format(&report));
    Ok(())
}

/// Each recipient's text under a line naming them.
pub fn format(report: &DigestReport) -> String {
    if report.recipients.is_empty() {
        return format!(
            "digest {}: nothing to send (no recipient has an item)\n",
            report.digest
        );
    }
    let mut out = String::new();
    for r in &report.recipients {
        let how = if report.dry_run { "would send" } else { "sent" };
        out.push_str(&format!(
            "== digest {} {how} to user {} ({} item(s))\n{}\n\n",
            report.digest, r.recipient, r.items, r.text
        ));
    }
    out
}
