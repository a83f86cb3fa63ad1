//! `b24-robot check [--portal]`: the config and every rule file, every problem at once
//! (`file:line:col: ...`); with `--portal`, also every pipeline, stage, field and list value the
//! rules name, against the live portal ([`portal`]).

pub mod portal;

use std::path::PathBuf;

use super::{CommandError, CommandResult, load_rules, load_settings_for_rules, print_diagnostics};
use crate::commands::output::outln;

/// Prints "ok" only once everything asked for is checked: with `--portal`, after the portal
/// has confirmed every name the rules use.
pub async fn run(
    config: Option<PathBuf>,
    rules_dir: Option<PathBuf>,
    against_portal: bool,
) -> CommandResult {
    let settings = load_settings_for_rules(config, rules_dir)?;
    let rules = load_rules(&settings)?;
    // The time-driven rules count too: a folder of SLAs and digests is not empty.
    let loaded = format!(
        "ok: {} rule(s) in {}, version {}",
        rules.len(),
        settings.rules.dir.display(),
        rules.version()
    );
    if !against_portal {
        outln!("{loaded}");
        return Ok(());
    }
    let client = crate::startup::client(&settings)
        .map_err(|error| CommandError::Failed(error.to_string()))?;
    let problems = portal::check(&rules, &client)
        .await
        .map_err(|error| CommandError::Failed(format!("the portal could not be read: {error}")))?;
    if problems.is_empty() {
        outln!("{loaded}");
        outln!(
            "ok: every pipeline, stage, field and list value the rules name exists on the portal"
        );
        Ok(())
    } else {
        print_diagnostics(&problems);
        Err(CommandError::Found)
    }
}
