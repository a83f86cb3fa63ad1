//! The command line: one file (or folder) per command, the clap definitions and the loaders
//! they share (settings, rules) here.
//!
//! Exit codes everywhere: 0 fine, 1 problems found or the command failed, 2 wrong usage (clap's
//! own code for usage errors). A command prints its output (diagnostics of the files it was
//! given are output too) and returns a [`CommandError`] when it ends badly; [`run`] is the one
//! place that prints that error and picks the exit code.
//!
//! | command | file |
//! |---|---|
//! | `serve` | [`serve`] |
//! | `check [--portal]` | [`check`] (the portal check in `check/portal.rs`) |
//! | `dry-run` | [`dry_run`] |
//! | `test` | [`test`] |
//! | `explain`, `jobs`, `store check`, `backfill` | [`explain`], [`jobs`], [`store`], [`backfill`], through [`admin`] (the running service's admin API, or the store) |
//! | `sandbox`, `sandbox export` | [`sandbox`] (the export in `sandbox/export.rs`) |
//! | `demo` | [`demo`] |
//! | `bench` | [`bench`] |
//! | `schema` | [`schema`] |
//! | `healthcheck` | [`healthcheck`] |

pub mod admin;
pub mod backfill;
pub mod bench;
pub mod check;
mod control_at;
pub mod demo;
pub mod digest;
pub mod dry_run;
pub mod explain;
pub mod healthcheck;
pub mod jobs;
mod offline;
mod output;
pub mod report;
pub mod sandbox;
pub mod schema;
pub mod serve;
pub mod store;
pub mod test;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::configuration::{Settings, Sources};
use crate::rules::{Diagnostic, RuleSet, Severity};
use crate::startup::Watchdog;

#[derive(Debug, Parser)]
#[command(
    name = "b24-robot",
    version,
    about = "A sales department's standards, applied by themselves in Bitrix24"
)]
pub struct Cli {
    /// Config file (TOML). Default: b24-robot.toml in the working directory, if it exists.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Every queued job, parked ones first, with their last error.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Re-run a parked job (or every parked job with --all).
    Retry {
        /// The deal whose job to re-run.
        deal: Option<u64>,
        #[arg(long, conflicts_with = "deal")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Read every record of every tree; list the damaged ones (tree, key, error); exit 1 if
    /// there is one.
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Write the live portal (the config's portal.webhook_url) as a portal file, reading it
    /// with read-only calls only.
    Export {
        /// Write the file here instead of to stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: take the portal's events, apply the rules.
    Serve,
    /// Load the config and every rule file; report every problem; exit 1 if there is one.
    Check {
        /// Also check, against the live portal, that every pipeline, stage, field and list value
        /// the rules name exists.
        #[arg(long)]
        portal: bool,
        /// Rules folder (default: rules.dir of the config).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
    /// Print the writes the rules would make for a deal entering its stage; touches no portal.
    DryRun {
        /// A crm.deal.get answer (JSON), with or without its {"result": ...} envelope.
        #[arg(long, value_name = "FILE")]
        deal: PathBuf,
        /// The stage the deal comes from (its STAGE_ID).
        #[arg(long, value_name = "STAGE")]
        from: String,
        /// Also tell what the [[sla]] rules watching the deal's stage entry would do at this
        /// moment (ISO 8601 with its offset, e.g. 2026-12-03T10:00:00+03:00).
        #[arg(long, value_name = "MOMENT")]
        now: Option<String>,
        /// Rules folder (default: rules.dir of the config).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
    /// Exit 0 if the running service is ready: /readyz answers 200, so its store can write (for
    /// container health checks: a service that cannot record events fails it).
    Healthcheck,
    /// A deal's stage entries, what each rule decided and why, and the effects with their ids.
    Explain {
        /// The deal id.
        deal: u64,
        /// Print the JSON of the admin API instead of text.
        #[arg(long)]
        json: bool,
        /// Read this store (e.g. one the sandbox kept) instead of the config's service.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Apply the rules to the deals sitting in their stages now (they entered them before the
    /// rules existed), once; resumable: the same command continues an interrupted run.
    Backfill {
        /// Only this rule (a gate rule named here runs with its revert acting as warn).
        #[arg(long, value_name = "NAME")]
        rule: Option<String>,
        /// Only the deals of this pipeline (CATEGORY_ID).
        #[arg(long, value_name = "N")]
        pipeline: Option<u64>,
        /// Print the writes it would make (one JSON object a line) without making them.
        #[arg(long)]
        dry_run: bool,
        /// Start over instead of continuing an interrupted run.
        #[arg(long)]
        restart: bool,
    },
    /// Build a [[digest]] now and send it (or print each recipient's text with --dry-run):
    /// through the running service when one runs, else directly. Not a slot: not deduplicated.
    Digest {
        /// The digest's name.
        name: String,
        /// Print each recipient's text; send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// One report (plan, nps, losses, stages, tasks, deals) on the report copy, brought up to
    /// date first: through the running service when one runs, else here on the store.
    Report {
        /// The report: plan, nps, losses, stages, tasks or deals.
        name: String,
        /// A month "2026-12", a quarter "2026-Q4", a half "2026-H2" or a year "2026"; default:
        /// the current month.
        #[arg(long, value_name = "P")]
        period: Option<String>,
        /// Only this pipeline (CATEGORY_ID).
        #[arg(long, value_name = "N")]
        pipeline: Option<u64>,
        #[arg(long, value_enum, default_value = "text")]
        format: report::Format,
        /// The CSV delimiter: ";" (Excel in most European locales) or ",".
        #[arg(long, default_value = ";")]
        csv_delimiter: char,
        /// Read the copy anew instead of bringing it up to date.
        #[arg(long)]
        refresh: bool,
    },
    /// The job queue: list the queued and parked jobs, or re-run parked ones.
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// The store: check that every record can be read.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Reproduce a figure of BENCHMARKS.md (throughput, strict-portal, requests, intake,
    /// intake-server, outage, memory, control, timers, reports) against the built-in simulated
    /// portal, on loopback.
    Bench {
        /// Which benchmark.
        name: String,
        /// Its size: deals (throughput, strict-portal, requests, outage, memory, control,
        /// reports), timers (timers), senders (intake) or seconds (intake-server).
        #[arg(long)]
        size: Option<u64>,
        /// The portal's (and the client's) burst, for `throughput` (default 50).
        #[arg(long)]
        burst: Option<u32>,
        #[command(flatten)]
        intake: bench::IntakeOptions,
    },
    /// Run the rule tests (TOML files of cases: a deal, a stage entry, the effects expected).
    Test {
        /// A test file or a folder of them (default: `tests` in the rules folder).
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Rules folder (default: rules.dir of the config).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
    /// Print a JSON Schema of the rule files, for editors (Taplo / Even Better TOML).
    Schema,
    /// The service against a simulated portal with your rules: play a scenario, or move deals
    /// by HTTP; `sandbox export` writes the live portal as a portal file for `--portal`.
    #[command(args_conflicts_with_subcommands = true)]
    Sandbox {
        #[command(subcommand)]
        action: Option<SandboxAction>,
        /// Rules folder (default: rules.dir of the config).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// A scenario file (TOML) to play; without it the sandbox runs until Ctrl-C.
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// Address of the sandbox's control API (without --scenario).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// Keep the sandbox's store in this new or empty folder (for `explain --store DIR`);
        /// without it the store is temporary.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// A portal file (TOML: pipelines, stages, fields, users, departments) to rehearse
        /// against instead of the built-in portal; `sandbox export` writes one from the live
        /// portal.
        #[arg(long, value_name = "FILE")]
        portal: Option<PathBuf>,
        /// How many times faster than real time the simulated portal's clock runs (its stage
        /// history, deal and task dates, `server.time`, overdue tasks).
        #[arg(long, value_name = "N", default_value_t = 1.0)]
        clock_speed: f64,
    },
    /// Play a short sales day against the built-in simulated portal and print what happens.
    Demo {
        /// Rules folder to play instead of the built-in example rules.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Leave the service (its dashboard and admin API) serving at the end, until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
}

/// How a command ended badly. [`run`] prints it (on stderr) and exits with its code; commands
/// never print their own errors.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command failed: `error: <message>`, exit 1.
    #[error("{0}")]
    Failed(String),
    /// Wrong usage, or an input file that is not valid: `error: <message>`, exit 2.
    #[error("{0}")]
    Usage(String),
    /// Problems, one `error: <problem>` line each (the config's, say), exit 1.
    #[error("{}", .0.join("; "))]
    Problems(Vec<String>),
    /// Problems found and already shown as the command's output (rule diagnostics, failed rule
    /// tests, damaged records): exit 1, nothing more to print.
    #[error("problems found")]
    Found,
    /// Input files found invalid and already shown (a rule test file's diagnostics): exit 2.
    #[error("invalid input")]
    Invalid,
    /// The running service is not healthy: `unhealthy: <message>`, exit 1.
    #[error("{0}")]
    Unhealthy(String),
    /// Interrupted by Ctrl-C, with what to do next: the message as it is, exit 130.
    #[error("{0}")]
    Interrupted(String),
}

impl CommandError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Failed(_)
            | CommandError::Problems(_)
            | CommandError::Found
            | CommandError::Unhealthy(_) => 1,
            CommandError::Usage(_) | CommandError::Invalid => 2,
            CommandError::Interrupted(_) => 130,
        }
    }

    /// What goes to stderr; empty when it was shown already.
    pub fn lines(&self) -> Vec<String> {
        match self {
            CommandError::Failed(message) | CommandError::Usage(message) => {
                vec![format!("error: {message}")]
            }
            CommandError::Problems(problems) => {
                problems.iter().map(|p| format!("error: {p}")).collect()
            }
            CommandError::Found | CommandError::Invalid => Vec::new(),
            CommandError::Unhealthy(message) => vec![format!("unhealthy: {message}")],
            CommandError::Interrupted(message) => vec![message.clone()],
        }
    }
}

/// What a command returns.
pub type CommandResult = Result<(), CommandError>;

/// Runs the parsed command; prints its error, if any, and gives its exit code.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let config = cli.config;
    let outcome = match cli.command {
        Command::Serve => {
            let watchdog = Watchdog::new();
            let outcome = runtime.block_on(serve::run(config, watchdog.clone()));
            // What still runs (abandoned calls, blocking store tasks) gets a moment, not more:
            // the watchdog ends the process at the deadline anyway.
            runtime.shutdown_timeout(Duration::from_millis(200));
            outcome
        }
        Command::Check { portal, rules } => runtime.block_on(check::run(config, rules, portal)),
        Command::DryRun {
            deal,
            from,
            now,
            rules,
        } => dry_run::command(config, &deal, (&from, now.as_deref()), rules),
        Command::Healthcheck => runtime.block_on(healthcheck::run(config)),
        Command::Explain { deal, json, store } => {
            runtime.block_on(explain::run(config, deal, json, store))
        }
        Command::Jobs { action } => runtime.block_on(jobs::run(config, action)),
        Command::Store { action } => runtime.block_on(store::run(config, action)),
        Command::Backfill {
            rule,
            pipeline,
            dry_run,
            restart,
        } => runtime.block_on(backfill::run(
            config,
            crate::worker::backfill::BackfillOptions {
                rule,
                pipeline,
                dry_run,
                restart,
            },
        )),
        Command::Report {
            name,
            period,
            pipeline,
            format,
            csv_delimiter,
            refresh,
        } => runtime.block_on(report::run(
            config,
            report::Asked {
                name,
                period,
                pipeline,
                format,
                delimiter: csv_delimiter,
                refresh,
            },
        )),
        Command::Digest { name, dry_run } => runtime.block_on(digest::run(config, name, dry_run)),
        Command::Demo { rules, keep } => runtime.block_on(demo::run(rules, keep)),
        Command::Bench {
            name,
            size,
            burst,
            intake,
        } => runtime.block_on(bench::run(&name, size, burst, &intake)),
        Command::Test { dir, rules } => test::command(config, dir, rules),
        Command::Schema => schema::run(),
        Command::Sandbox {
            action: Some(SandboxAction::Export { out }),
            ..
        } => runtime.block_on(sandbox::export::run(config, out)),
        Command::Sandbox {
            action: None,
            rules,
            scenario,
            listen,
            store,
            portal,
            clock_speed,
        } => runtime.block_on(sandbox::run(
            config,
            sandbox::Options {
                rules_dir: rules,
                scenario,
                listen,
                store,
                portal,
                clock_speed,
            },
        )),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            for line in error.lines() {
                eprintln!("{line}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}

/// Loads the settings, every problem at once (with `file:line:col` where it is in the file).
pub(crate) fn load_settings(config: Option<PathBuf>) -> Result<Settings, CommandError> {
    crate::configuration::check(&Sources::from_process(config)).map_err(|problems| {
        CommandError::Problems(problems.iter().map(ToString::to_string).collect())
    })
}

/// [`load_settings`], with `rules.dir` replaced by a `--rules DIR` when one is given.
pub(crate) fn load_settings_for_rules(
    config: Option<PathBuf>,
    rules_dir: Option<PathBuf>,
) -> Result<Settings, CommandError> {
    let mut settings = load_settings(config)?;
    if let Some(dir) = rules_dir {
        settings.rules.dir = dir;
    }
    Ok(settings)
}

/// Loads the rules, printing every diagnostic (they are the command's output);
/// [`CommandError::Found`] when there are errors.
pub fn load_rules(settings: &Settings) -> Result<RuleSet, CommandError> {
    match RuleSet::load_dir(&settings.rules.dir) {
        Ok((rules, warnings)) => {
            print_diagnostics(&warnings);
            Ok(rules)
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            Err(CommandError::Found)
        }
    }
}

/// Rule diagnostics as `error: ...` / `warning: ...` lines on stderr.
pub(crate) fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        eprintln!("{level}: {d}");
    }
}

#[cfg(test)]
mod tests {
    use super::CommandError;

    #[test]
    fn each_error_prints_its_lines_and_exits_with_its_code() {
        let cases = [
            (CommandError::Failed("x".into()), vec!["error: x"], 1),
            (CommandError::Usage("y".into()), vec!["error: y"], 2),
            (
                CommandError::Problems(vec!["a".into(), "b".into()]),
                vec!["error: a", "error: b"],
                1,
            ),
            (CommandError::Found, vec![], 1),
            (CommandError::Invalid, vec![], 2),
            (CommandError::Unhealthy("z".into()), vec!["unhealthy: z"], 1),
            (
                CommandError::Interrupted("again".into()),
                vec!["again"],
                130,
            ),
        ];
        for (error, lines, code) in cases {
            assert_eq!(error.lines(), lines, "{error:?}");
            assert_eq!(error.exit_code(), code, "{error:?}");
        }
    }
}
