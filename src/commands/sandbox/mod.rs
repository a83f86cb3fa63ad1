//! `b24-robot sandbox --rules DIR [--scenario FILE] [--listen ADDR] [--portal FILE]
//! [--clock-speed N]`: the real
//! service against the simulated portal (seeded like the demo's: two pipelines, the custom
//! fields, users in a tree of departments; or as a portal file describes the client's portal)
//! with the integrator's rules, to try a rule change end to end. `sandbox export` ([`export`])
//! writes the live portal as such a file.
//!
//! With a scenario (a short TOML script) it plays it, printing each stage entry and effect as
//! the demo does, and exits. Without one it serves a small control API on `--listen`, where
//! deals are created, moved and edited by HTTP, and prints what the service does until Ctrl-C.

mod control;
pub mod export;
mod scenario;

pub use control::router;
pub use scenario::{Step, parse_scenario};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::demo::{Rehearsal, Running, print_done, start};
use super::{CommandError, CommandResult};
use crate::commands::output::outln;
use crate::rules::RuleSet;
use crate::sandbox::portal_file::{PortalFile, parse_portal};

/// What the sandbox command was given besides the config.
pub struct Options {
    pub rules_dir: Option<PathBuf>,
    pub scenario: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Keep the sandbox's store in this (new or empty) folder, for `explain --store`.
    pub store: Option<PathBuf>,
    /// A portal file to rehearse against instead of the built-in portal.
    pub portal: Option<PathBuf>,
    /// How many times faster than real time the simulated portal's clock runs: a task's
    /// deadline passes, or a deal ages in its stage, within a rehearsal's minutes.
    pub clock_speed: f64,
}

/// The sandbox takes the config's calendar and tunnel depth, so what it shows is what the
/// client's portal would get.
pub async fn run(config: Option<PathBuf>, options: Options) -> CommandResult {
    let speed = clock_speed(options.clock_speed)?;
    let settings = super::load_settings_for_rules(config, options.rules_dir)?;
    let rules = super::load_rules(&settings).map_err(|_| {
        CommandError::Failed("the rules do not load: the sandbox did not start".into())
    })?;
    let steps = options.scenario.as_deref().map(read_scenario).transpose()?;
    let portal = options.portal.as_deref().map(read_portal).transpose()?;
    let rehearsal = Rehearsal {
        calendar: Some(settings.calendar.clone()),
        max_tunnel_depth: Some(settings.rules.max_tunnel_depth),
        store_dir: options.store.clone(),
        portal,
        clock: None,
    };
    let result = match steps {
        Some(steps) => play(&rules, steps, &rehearsal, speed).await,
        None => serve(&rules, options.listen, &rehearsal, speed).await,
    };
    if let Some(dir) = options.store.as_ref().filter(|dir| dir.exists()) {
        outln!(
            "the sandbox's store is kept in {}: b24-robot explain DEAL --store {}",
            dir.display(),
            dir.display()
        );
    }
    result.map_err(CommandError::Failed)
}

/// `--clock-speed`: a finite number above zero (1 is real time).
fn clock_speed(speed: f64) -> Result<f64, CommandError> {
    if speed.is_finite() && speed > 0.0 {
        Ok(speed)
    } else {
        Err(CommandError::Usage(format!(
            "--clock-speed {speed}: the portal's clock needs a speed above 0 (1 is real time)"
        )))
    }
}

/// Sets the simulated portal's clock running `speed` times faster than real time, and says so
/// when it is not real time.
fn run_clock(sim: &crate::sandbox::SimPortal, speed: f64) {
    if speed != 1.0 {
        sim.clock().set_speed(speed);
        outln!("the simulated portal's clock runs {speed}x faster than real time");
    }
}

/// The scenario file's steps; its problems printed (they are the command's output), exit 2.
fn read_scenario(path: &Path) -> Result<Vec<Step>, CommandError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CommandError::Usage(format!("{name}: cannot read the scenario: {e}")))?;
    parse_scenario(&name, &text).map_err(|diagnostics| {
        for d in diagnostics {
            eprintln!("error: {d}");
        }
        CommandError::Invalid
    })
}

/// The portal file, with its name; its problems printed, exit 2 (as a broken scenario).
fn read_portal(path: &Path) -> Result<(String, PortalFile), CommandError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CommandError::Usage(format!("{name}: cannot read the portal file: {e}")))?;
    let file = parse_portal(&name, &text).map_err(|diagnostics| {
        for d in diagnostics {
            eprintln!("error: {d}");
        }
        CommandError::Invalid
    })?;
    Ok((name, file))
}

/// Plays the steps; an effect that failed makes the run fail (exit 1) once it is played out.
async fn play(
    rules: &RuleSet,
    steps: Vec<Step>,
    rehearsal: &Rehearsal,
    speed: f64,
) -> Result<(), String> {
    let Running {
        sim,
        mut story,
        stop,
        ..
    } = start(rules, "sandbox", rehearsal).await?;
    run_clock(&sim, speed);
    let mut deals: Vec<(String, u64)> = Vec::new();
    let id_of = |deals: &[(String, u64)], name: &str| {
        deals
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
            .ok_or_else(|| format!("no deal \"{name}\""))
    };
    let mut outcome = Ok(());
    for step in steps {
        let result: Result<(), String> = async {
            match step {
                Step::Say(text) => story.say(&text),
                Step::Create { deal, fields } => {
                    let id = sim.try_create_deal(fields).await?;
                    story.say(&format!("create \"{deal}\": deal {id}"));
                    deals.push((deal, id));
                    story.settle().await;
                }
                Step::Move { deal, to } => {
                    let id = id_of(&deals, &deal)?;
                    story.say(&format!("move \"{deal}\" (deal {id}) to {to}"));
                    sim.try_move_deal(id, &to).await?;
                    story.settle().await;
                }
                Step::Update { deal, fields } => {
                    let id = id_of(&deals, &deal)?;
                    story.say(&format!("update \"{deal}\" (deal {id}): {fields}"));
                    sim.try_update_deal(id, fields).await?;
                    story.settle().await;
                }
                Step::Wait(d) => {
                    story.say(&format!("wait {}s", d.as_secs_f64()));
                    story.settle_for(d).await;
                }
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            outcome = result;
            break;
        }
    }
    stop.stop().await?;
    print_done(&sim);
    outcome?;
    match story.failed {
        0 => Ok(()),
        n => Err(format!(
            "{} failed in the scenario (see FAILED above)",
            crate::text::count(n, "effect", "effects")
        )),
    }
}

async fn serve(
    rules: &RuleSet,
    listen: SocketAddr,
    rehearsal: &Rehearsal,
    speed: f64,
) -> Result<(), String> {
    let Running {
        sim,
        mut story,
        stop,
        ..
    } = start(rules, "sandbox", rehearsal).await?;
    run_clock(&sim, speed);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = format!("http://{addr}");
    outln!("control API on {base} (Ctrl-C stops):");
    for line in control::examples(&base) {
        outln!("  {line}");
    }
    outln!();
    let story_store = story.store.clone();
    let printer = tokio::spawn(async move {
        while let Some(activity) = story.rx.recv().await {
            story.print(&activity);
        }
    });
    let app = router(sim, story_store);
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(crate::startup::shutdown_signal())
        .await;
    printer.abort();
    stop.stop().await?;
    server.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_speed_is_a_number_above_zero() {
        assert_eq!(clock_speed(60.0).ok(), Some(60.0));
        assert_eq!(clock_speed(0.5).ok(), Some(0.5));
        for wrong in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(clock_speed(wrong), Err(CommandError::Usage(_))));
        }
    }
}
