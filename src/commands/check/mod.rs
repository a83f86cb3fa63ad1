//! `b24-robot check [--portal]`: the config and every rule file, every problem at once
//! (`file:line:col: ...`); with `--portal`, also every pipeline, stage, field and list value the
//! rules name, against the live portal ([`portal`]).

pub mod portal;

use std::path::PathBuf;

use super::{CommandError, CommandResult, load_rules, load_settings, print_diagnostics};

pub async fn run(config: Option<PathBuf>, against_portal: bool) -> CommandResult {
    let settings = load_settings(config)?;
    let rules = load_rules(&settings)?;
    println!(
        "ok: {} rule(s) in {}, version {}",
        rules.len(),
        settings.rules.dir.display(),
        rules.version()
    );
    if !against_portal {
        return Ok(());
    }
    let client = crate::startup::client(&settings)
        .map_err(|error| CommandError::Failed(error.to_string()))?;
    let problems = portal::check(&rules, &client)
        .await
        .map_err(|error| CommandError::Failed(format!("the portal could not be read: {error}")))?;
    if problems.is_empty() {
        println!(
            "ok: every pipeline, stage, field and list value the rules name exists on the portal"
        );
        Ok(())
    } else {
        print_diagnostics(&problems);
        Err(CommandError::Found)
    }
}
