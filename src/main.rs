//! The `b24-robot` binary: parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    b24_robot::commands::run(b24_robot::commands::Cli::parse())
}
