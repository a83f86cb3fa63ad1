//! The command line: `serve`, `check`, `demo`. Exit codes: 0 fine, 1 problems found or the
//! command failed, 2 wrong usage (clap's own code for usage errors).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::configuration::{Settings, Sources};
use crate::rules::{Diagnostic, RuleSet, Severity};
use crate::startup::{Application, Watchdog, deadline, shutdown_signal};
use crate::telemetry;

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
pub enum Command {
    /// Run the service: take the portal's events, apply the rules.
    Serve,
    /// Load the config and every rule file; report every problem; exit 1 if there is one.
    Check {
        /// Also check, against the live portal, that every pipeline, stage, field and list value
        /// the rules name exists.
        #[arg(long)]
        portal: bool,
    },
    /// Print the writes the rules would make for a deal entering its stage; touches no portal.
    DryRun {
        /// A crm.deal.get answer (JSON), with or without its {"result": ...} envelope.
        #[arg(long, value_name = "FILE")]
        deal: PathBuf,
        /// The stage the deal comes from (its STAGE_ID).
        #[arg(long, value_name = "STAGE")]
        from: String,
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
    /// memory) against the built-in simulated portal, on loopback.
    Bench {
        /// Which benchmark.
        name: String,
        /// Its size: deals (throughput, strict-portal, requests, memory) or senders (intake).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Run the rule tests (TOML files of cases: a deal, a stage entry, the effects expected).
    Test {
        /// A test file or a folder of them.
        #[arg(value_name = "DIR", default_value = "rules/tests")]
        dir: PathBuf,
        /// Rules folder (default: rules.dir of the config).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
    /// Print a JSON Schema of the rule files, for editors (Taplo / Even Better TOML).
    Schema,
    /// The service against a simulated portal with your rules: play a scenario, or move deals
    /// by HTTP.
    Sandbox {
        /// Rules folder (default: rules.dir of the config).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// A scenario file (TOML) to play; without it the sandbox runs until Ctrl-C.
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// Address of the sandbox's control API (without --scenario).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
    },
    /// Play a short sales day against the built-in simulated portal and print what happens.
    Demo {
        /// Rules folder to play instead of the built-in example rules.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
}

/// Runs the parsed command; the exit code follows the convention above.
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
    match cli.command {
        Command::Serve => {
            let watchdog = Watchdog::new();
            let code = runtime.block_on(serve(cli.config, watchdog.clone()));
            // What still runs (abandoned calls, blocking store tasks) gets a moment, not more:
            // the watchdog ends the process at the deadline anyway.
            runtime.shutdown_timeout(Duration::from_millis(200));
            code
        }
        Command::Check { portal } => runtime.block_on(check(cli.config, portal)),
        Command::DryRun { deal, from, rules } => dry_run(cli.config, &deal, &from, rules),
        Command::Healthcheck => runtime.block_on(healthcheck(cli.config)),
        Command::Explain { deal, json } => {
            runtime.block_on(crate::admin_cli::explain(cli.config, deal, json))
        }
        Command::Jobs { action } => runtime.block_on(crate::admin_cli::jobs(cli.config, action)),
        Command::Store { action } => runtime.block_on(crate::admin_cli::store(cli.config, action)),
        Command::Backfill {
            rule,
            pipeline,
            dry_run,
            restart,
        } => runtime.block_on(crate::admin_cli::backfill(
            cli.config,
            crate::worker::backfill::BackfillOptions {
                rule,
                pipeline,
                dry_run,
                restart,
            },
        )),
        Command::Demo { rules } => runtime.block_on(crate::demo::run(rules)),
        Command::Bench { name, size } => runtime.block_on(crate::bench::run(&name, size)),
        Command::Test { dir, rules } => rule_tests(cli.config, &dir, rules),
        Command::Schema => {
            println!("{}", crate::schema::text());
            ExitCode::SUCCESS
        }
        Command::Sandbox {
            rules,
            scenario,
            listen,
        } => runtime.block_on(crate::sandbox_cmd::run(cli.config, rules, scenario, listen)),
    }
}

/// Loads the settings; every problem is printed (with `file:line:col` where it is in the file).
pub(crate) fn load_settings(config: Option<PathBuf>) -> Result<Settings, ExitCode> {
    crate::configuration::check(&Sources::from_process(config)).map_err(|problems| {
        for problem in problems {
            eprintln!("error: {problem}");
        }
        ExitCode::from(1)
    })
}

/// Loads the rules, printing every diagnostic; `None` when there are errors.
pub fn load_rules(settings: &Settings) -> Option<RuleSet> {
    match RuleSet::load_dir(&settings.rules.dir) {
        Ok((rules, warnings)) => {
            print_diagnostics(&warnings);
            Some(rules)
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            None
        }
    }
}

fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        eprintln!("{level}: {d}");
    }
}

/// `serve`: runs until SIGTERM or Ctrl-C; from the signal on, `watchdog` ends the process at
/// [`deadline::EXIT`] whatever still holds it up.
async fn serve(config: Option<PathBuf>, watchdog: Watchdog) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    telemetry::init(settings.log.format, &settings.log.level);
    let Some(rules) = load_rules(&settings) else {
        eprintln!(
            "error: the rules do not load; nothing started (fix them, then start again: the sweep catches up)"
        );
        return ExitCode::from(1);
    };
    tracing::info!(
        rules = rules.len(),
        version = rules.version(),
        "rules loaded"
    );
    let app = match Application::build(settings, rules).await {
        Ok(app) => app.with_rule_reload(),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    let signal = {
        let watchdog = watchdog.clone();
        async move {
            shutdown_signal().await;
            watchdog.arm(std::time::Instant::now() + deadline::EXIT);
        }
    };
    match app.run_until_stopped(signal).await {
        Ok(()) => {
            watchdog.set_outcome(0);
            ExitCode::SUCCESS
        }
        Err(error) => {
            watchdog.set_outcome(1);
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

async fn check(config: Option<PathBuf>, portal: bool) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(rules) = load_rules(&settings) else {
        return ExitCode::from(1);
    };
    println!(
        "ok: {} rule(s) in {}, version {}",
        rules.len(),
        settings.rules.dir.display(),
        rules.version()
    );
    if !portal {
        return ExitCode::SUCCESS;
    }
    let client = match crate::startup::client(&settings) {
        Ok(c) => c,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    match crate::portal_check::check(&rules, &client).await {
        Ok(problems) if problems.is_empty() => {
            println!(
                "ok: every pipeline, stage, field and list value the rules name exists on the portal"
            );
            ExitCode::SUCCESS
        }
        Ok(problems) => {
            print_diagnostics(&problems);
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: the portal could not be read: {error}");
            ExitCode::from(1)
        }
    }
}

fn dry_run(
    config: Option<PathBuf>,
    deal: &std::path::Path,
    from: &str,
    rules_dir: Option<PathBuf>,
) -> ExitCode {
    let mut settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(dir) = rules_dir {
        settings.rules.dir = dir;
    }
    let Some(rules) = load_rules(&settings) else {
        return ExitCode::from(1);
    };
    let text = match std::fs::read_to_string(deal) {
        Ok(t) => t,
        Err(error) => {
            eprintln!("error: {}: {error}", deal.display());
            return ExitCode::from(1);
        }
    };
    let deal = match crate::dry_run::parse_deal(&text) {
        Ok(d) => d,
        Err(error) => {
            eprintln!("error: {}: {error}", deal.display());
            return ExitCode::from(1);
        }
    };
    let origin = settings
        .portal
        .webhook_url
        .as_ref()
        .and_then(|u| url::Url::parse(u.expose()).ok())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "https://<portal>".into());
    let context = crate::dry_run::Context {
        calendar: &settings.calendar,
        portal_origin: &origin,
        max_tunnel_depth: settings.rules.max_tunnel_depth,
        now: chrono::Utc::now(),
    };
    let lines = match crate::dry_run::run(&rules, &deal, from, &context) {
        Ok(lines) => lines,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    for line in lines {
        match line {
            crate::dry_run::Line::Write(value) => println!("{value}"),
            crate::dry_run::Line::Note(text) => eprintln!("# {text}"),
        }
    }
    ExitCode::SUCCESS
}

fn rule_tests(
    config: Option<PathBuf>,
    dir: &std::path::Path,
    rules_dir: Option<PathBuf>,
) -> ExitCode {
    let mut settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(dir) = rules_dir {
        settings.rules.dir = dir;
    }
    let Some(rules) = load_rules(&settings) else {
        eprintln!("error: the rules do not load: no test was run");
        return ExitCode::from(1);
    };
    crate::rule_tests::command(
        dir,
        &rules,
        &settings.calendar,
        settings.rules.max_tunnel_depth,
    )
}

async fn healthcheck(config: Option<PathBuf>) -> ExitCode {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut addr = settings.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
    {
        Ok(c) => c,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    // /readyz, not /healthz: a service that answers but cannot record events (its store
    // cannot write) is unhealthy too, so an orchestrator restarts it.
    match client.get(format!("http://{addr}/readyz")).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            match body.get("store").and_then(serde_json::Value::as_str) {
                Some(store) => eprintln!("unhealthy: /readyz answered {status}: store {store}"),
                None => eprintln!("unhealthy: /readyz answered {status}"),
            }
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("unhealthy: {}", error.without_url());
            ExitCode::from(1)
        }
    }
}
