//! A simulated portal shaped for the shipped example rules, and those rules built into the
//! binary: what the demo, the sandbox command, the bench and the tests start from.

use crate::rules::RuleSet;

use super::SimPortal;
use super::portal_file::PortalFile;

/// The shipped example rules, built into the binary.
pub const EMBEDDED_RULES: [(&str, &str); 5] = [
    (
        "rules/10-new-clients.toml",
        include_str!("../../rules/10-new-clients.toml"),
    ),
    (
        "rules/20-repeat-clients.toml",
        include_str!("../../rules/20-repeat-clients.toml"),
    ),
    (
        "rules/30-outcomes.toml",
        include_str!("../../rules/30-outcomes.toml"),
    ),
    (
        "rules/40-control.toml",
        include_str!("../../rules/40-control.toml"),
    ),
    (
        "rules/50-plans.toml",
        include_str!("../../rules/50-plans.toml"),
    ),
];

/// The embedded rules, loaded.
pub fn embedded_rules() -> Result<RuleSet, Vec<crate::rules::Diagnostic>> {
    let sources: Vec<(String, String)> = EMBEDDED_RULES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    RuleSet::from_sources(&sources).map(|(rules, _)| rules)
}

/// Sets up a simulated portal shaped like the shipped rules expect: the built-in portal file
/// ([`super::portal_file::BUILTIN`]): the default pipeline (new clients), a "Repeat clients"
/// pipeline, the custom fields, users in a tree of three departments.
pub fn seed_portal(sim: &SimPortal) {
    PortalFile::builtin().seed(sim);
}
