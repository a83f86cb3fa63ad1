//! A simulated portal shaped for the shipped example rules, and those rules built into the
//! binary: what the demo, the sandbox command, the bench and the tests start from.

use crate::rules::RuleSet;

use super::SimPortal;

/// The shipped example rules, built into the binary.
pub const EMBEDDED_RULES: [(&str, &str); 3] = [
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
];

/// The embedded rules, loaded.
pub fn embedded_rules() -> Result<RuleSet, Vec<crate::rules::Diagnostic>> {
    let sources: Vec<(String, String)> = EMBEDDED_RULES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    RuleSet::from_sources(&sources).map(|(rules, _)| rules)
}

/// Sets up a simulated portal shaped like the shipped rules expect: the default pipeline (new
/// clients), a "Repeat clients" pipeline, the custom fields, users in two departments.
pub fn seed_portal(sim: &SimPortal) {
    sim.with_default_portal();
    sim.add_pipeline(
        1,
        "Repeat clients",
        &[
            ("C1:NEW", "New", 'P'),
            ("C1:PREPARATION", "Offer", 'P'),
            ("C1:EXECUTING", "In progress", 'P'),
            ("C1:WON", "Deal won", 'S'),
            ("C1:LOSE", "Deal lost", 'F'),
        ],
    );
    sim.add_field("UF_CRM_INN", "string", "Tax ID (INN)", false, &[]);
    sim.add_field(
        "UF_CRM_CONTRACT_NO",
        "string",
        "Contract number",
        false,
        &[],
    );
    sim.add_field(
        "UF_CRM_LOSS_REASON",
        "enumeration",
        "Loss reason",
        false,
        &[
            (11, "Too expensive"),
            (12, "Chose a competitor"),
            (13, "Stopped answering"),
            (14, "No budget"),
        ],
    );
    sim.add_field("UF_CRM_NPS", "double", "NPS score", false, &[]);
    sim.add_department(1, "Company", None, Some(1));
    sim.add_department(2, "Sales", Some(1), Some(2));
    sim.add_user(1, "Anna Director", &[1]);
    sim.add_user(2, "Boris Head-of-Sales", &[2]);
    sim.add_user(3, "Vera Manager", &[2]);
    sim.add_user(4, "Gleb Manager", &[2]);
}
