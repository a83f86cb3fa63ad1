//! `b24-robot schema`: the JSON Schema of the rule files, for editors (Taplo / Even Better TOML).

use super::CommandResult;
use crate::commands::output::outln;

pub fn run() -> CommandResult {
    outln!("{}", crate::rules::schema::text());
    Ok(())
}
