//! `b24-robot schema`: the JSON Schema of the rule files, for editors (Taplo / Even Better TOML).

use super::CommandResult;

pub fn run() -> CommandResult {
    println!("{}", crate::rules::schema::text());
    Ok(())
}
