//! `b24-robot demo`: the real service against the built-in simulated portal, with the shipped
//! rules, playing a short sales week. No portal, no set-up: a temporary store, a free port.
//!
//! Each user action waits until the service has dealt with it, so that the printed story reads in
//! order: the stage entry, then what the rules did about it. The service and the portal share
//! one clock, which the demo moves on itself ([`timeline`]): the week starts on the coming
//! Monday morning, and the days the time-driven rules wait for (an SLA, a missed deadline, the
//! evening review) pass in a second each.

mod month;
mod reports;
mod timeline;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{CommandError, CommandResult};
use crate::commands::output::outln;
use crate::configuration::{Settings, Sources};
use crate::rules::{ReportPeriod, RuleSet};
use crate::sandbox::portal_file::PortalFile;
use crate::sandbox::seed::{embedded_rules, seed_portal};
use crate::sandbox::{SimConfig, SimPortal};
use crate::startup::Application;
use crate::store::Store;
use crate::text::count;
use crate::worker::Activity;
use timeline::Timeline;

pub async fn run(rules_dir: Option<PathBuf>, keep: bool) -> CommandResult {
    play(rules_dir, keep)
        .await
        .map_err(|error| CommandError::Failed(format!("demo failed: {error}")))
}

async fn play(rules_dir: Option<PathBuf>, keep: bool) -> Result<(), String> {
    let calendar = crate::calendar::Calendar::default();
    let today = chrono::Utc::now()
        .with_timezone(&calendar.tz())
        .date_naive();
    let monday_date = month::story_monday(&calendar, today);
    let period = month::period(monday_date).ok_or("the demo's month is no report period")?;
    let rules = match &rules_dir {
        Some(dir) => RuleSet::load_dir(dir).map(|(r, _)| r),
        None => demo_rules(&period),
    }
    .map_err(|diagnostics| {
        diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;

    // One clock for the portal and the service, from the first moment of the month: the month
    // before the week is written at its own moments, then the week is played.
    let clock = crate::clock::Clock::starting_at(month::month_start(&calendar, monday_date).into());
    let rehearsal = Rehearsal {
        clock: Some(clock.clone()),
        calendar: Some(calendar.clone()),
        ..Rehearsal::default()
    };
    let portal = start_portal(&rehearsal).await?;
    let history = month::seed(&portal.sim, &clock, &calendar, monday_date).await;
    let Running {
        sim,
        mut story,
        stop,
        calendar,
        service,
    } = start_service(portal, &rules, "demo", &rehearsal).await?;
    let week = Timeline::new(clock, calendar, &rules);
    story.say(&format!(
        "Before the week: the month so far on the portal, from before the service was installed: {history}"
    ));
    outln!();
    let monday = week.morning(monday_date);
    week.jump_to(&mut story, monday).await;

    story.say(&format!(
        "{}: Vera creates a deal for Romashka LLC (new client)",
        week.show(monday)
    ));
    let romashka = sim
        .create_deal(json!({"TITLE": "Romashka LLC: 20 licences", "ASSIGNED_BY_ID": "3", "OPPORTUNITY": "240000.00",
            "CURRENCY_ID": "RUB", "CATEGORY_ID": "0", "STAGE_ID": "NEW"}))
        .await;
    story.settle().await;
    story.say("Vera moves it to PREPARATION");
    sim.move_deal(romashka, "PREPARATION").await;
    story.settle().await;
    story.say("Vera moves it to PREPAYMENT_INVOICE without the tax id and contract number");
    sim.move_deal(romashka, "PREPAYMENT_INVOICE").await;
    story.settle().await;
    story.say("Vera fills them in and moves it again");
    sim.update_deal(
        romashka,
        json!({"UF_CRM_INN": "7701234567", "UF_CRM_CONTRACT_NO": "2026-117"}),
    )
    .await;
    story.settle().await;
    sim.move_deal(romashka, "PREPAYMENT_INVOICE").await;
    story.settle().await;
    story.say("The deal is won");
    sim.move_deal(romashka, "WON").await;
    story.settle().await;

    story.say("Gleb creates a deal for Vasilek and loses it without saying why");
    let vasilek = sim
        .create_deal(json!({"TITLE": "Vasilek: pilot project", "ASSIGNED_BY_ID": "4", "OPPORTUNITY": "90000.00",
            "CURRENCY_ID": "RUB", "CATEGORY_ID": "0", "STAGE_ID": "NEW"}))
        .await;
    story.settle().await;
    sim.move_deal(vasilek, "LOSE").await;
    story.settle().await;
    story.say("Gleb gives the reason and closes it as lost");
    sim.update_deal(vasilek, json!({"UF_CRM_LOSS_REASON": "11"}))
        .await;
    story.settle().await;
    sim.move_deal(vasilek, "LOSE").await;
    story.settle().await;

    story.say("A deal moves while its event is lost on the way: the sweep finds it");
    let lost = sim
        .create_deal(
            json!({"TITLE": "Lyutik: annual support", "ASSIGNED_BY_ID": "3", "CURRENCY_ID": "RUB",
            "OPPORTUNITY": "50000.00", "CATEGORY_ID": "0", "STAGE_ID": "NEW"}),
        )
        .await;
    story.settle().await;
    sim.move_deal_silently(lost, "PREPARATION").await;
    story.settle_for(Duration::from_secs(3)).await;

    let deals = timeline::Deals {
        won: romashka,
        lost: vasilek,
        offer: lost,
    };
    week.control(&sim, &mut story, deals).await;
    print_done(&sim);

    reports::print(&service, &period).await?;
    outln!();
    outln!(
        "The dashboard: {}/ui/ (log in with the admin token {})",
        service.base,
        service.admin_token
    );
    if keep {
        outln!("Serving until Ctrl-C.");
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| format!("waiting for Ctrl-C: {e}"))?;
    } else {
        outln!("(It stops now; `b24-robot demo --keep` leaves it serving until Ctrl-C.)");
    }
    stop.stop().await?;
    Ok(())
}

/// The shipped rules, and a month plan for the demo's month when none of their plans covers
/// it (the shipped plans have fixed periods; the demo may be played after them): the December
/// plan's people and targets, for the demo's month.
fn demo_rules(period: &ReportPeriod) -> Result<RuleSet, Vec<crate::rules::Diagnostic>> {
    let rules = embedded_rules()?;
    if rules.plans().iter().any(|p| p.period().overlaps(period)) {
        return Ok(rules);
    }
    let mut sources: Vec<(String, String)> = crate::sandbox::seed::EMBEDDED_RULES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    sources.push((
        "demo/plan.toml".into(),
        format!(
            "[[plan]]\nname = \"new-clients-{period}\"\nperiod = \"{period}\"\npipeline = 0\nmeasure = \"amount\"\ncurrency = \"RUB\"\ntargets = {{ 3 = 1500000, 4 = 1200000, 6 = 600000 }}\n"
        ),
    ));
    RuleSet::from_sources(&sources).map(|(rules, _)| rules)
}

/// The last line of a played day: what the simulated portal holds now.
pub(super) fn print_done(sim: &SimPortal) {
    outln!();
    outln!(
        "done: {}, {}, {} to the portal",
        count(sim.tasks().len(), "task", "tasks"),
        count(sim.deals().len(), "deal", "deals"),
        count(sim.request_count(), "REST request", "REST requests")
    );
}

/// The service started against a seeded simulated portal, and what stops it.
pub(crate) struct Running {
    pub(crate) sim: SimPortal,
    pub(crate) story: Story,
    pub(crate) stop: Stopper,
    /// The service's working calendar: when its deadlines, SLAs and digests fall.
    pub(crate) calendar: crate::calendar::Calendar,
    /// Where the service listens, and its admin token (the dashboard's too).
    pub(crate) service: Service,
}

/// The running service's address and admin token.
pub(crate) struct Service {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    pub(crate) admin_token: String,
}

/// Stops the service and removes its temporary store (a kept one stays).
pub(crate) struct Stopper {
    stop_tx: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), crate::startup::StartupError>>,
    store_dir: PathBuf,
    keep_store: bool,
}

impl Stopper {
    pub(crate) async fn stop(self) -> Result<(), String> {
        let _ = self.stop_tx.send(());
        let stopped = self.server.await.map_err(|e| e.to_string())?;
        stopped.map_err(|e| e.to_string())?;
        if !self.keep_store {
            let _ = std::fs::remove_dir_all(&self.store_dir);
        }
        Ok(())
    }
}

/// What the sandbox takes from the integrator's config and command line; the demo takes the
/// defaults.
#[derive(Debug, Default)]
pub(crate) struct Rehearsal {
    /// The config's calendar, so deadlines come out as on the client's portal.
    pub(crate) calendar: Option<crate::calendar::Calendar>,
    /// `rules.max_tunnel_depth` of the config.
    pub(crate) max_tunnel_depth: Option<u32>,
    /// Keep the store here after the run (for `explain --store`), instead of a temporary one.
    pub(crate) store_dir: Option<PathBuf>,
    /// The portal to rehearse against, described by a file (its name for the banner, and what
    /// it says) instead of the built-in one; its UI writes then refuse fields it does not have.
    pub(crate) portal: Option<(String, PortalFile)>,
    /// The one clock of the portal and the service (the demo moves it on); `None`: the system
    /// clock, shared all the same, so that a portal clock sped up runs the service's timers too.
    pub(crate) clock: Option<crate::clock::Clock>,
}

/// Starts a simulated portal shaped by [`seed_portal`] (or by the rehearsal's portal file) and
/// the real service against it, with
/// `rules`, a store (temporary unless `rehearsal` keeps one) and a free port; prints the
/// banner. `what` names the command.
pub(crate) async fn start(
    rules: &RuleSet,
    what: &str,
    rehearsal: &Rehearsal,
) -> Result<Running, String> {
    let portal = start_portal(rehearsal).await?;
    start_service(portal, rules, what, rehearsal).await
}

/// The simulated portal, before the service is started against it.
pub(crate) struct Portal {
    pub(crate) sim: SimPortal,
    /// What the banner calls it.
    described: String,
}

/// Starts the simulated portal of `rehearsal`, seeded; no service talks to it yet.
pub(crate) async fn start_portal(rehearsal: &Rehearsal) -> Result<Portal, String> {
    let clock = rehearsal.clock.clone().unwrap_or_default();
    let sim = SimPortal::start(SimConfig {
        clock: clock.clone(),
        ..SimConfig::default()
    })
    .await
    .map_err(|e| format!("simulated portal: {e}"))?;
    let described = match &rehearsal.portal {
        Some((name, file)) => {
            file.seed(&sim);
            sim.refuse_unknown_fields();
            format!("the simulated portal of {name}")
        }
        None => {
            seed_portal(&sim);
            "a simulated portal".to_string()
        }
    };
    Ok(Portal { sim, described })
}

/// Starts the real service against `portal`, with `rules`, a store (temporary unless
/// `rehearsal` keeps one) and a free port; prints the banner. `what` names the command.
pub(crate) async fn start_service(
    portal: Portal,
    rules: &RuleSet,
    what: &str,
    rehearsal: &Rehearsal,
) -> Result<Running, String> {
    let Portal { sim, described } = portal;
    // The portal's clock, which is the rehearsal's when it has one.
    let clock = sim.clock();
    let keep_store = rehearsal.store_dir.is_some();
    let store_dir = match &rehearsal.store_dir {
        Some(dir) => fresh_store_dir(dir)?,
        None => std::env::temp_dir().join(format!(
            "b24-robot-{what}-{}-{}",
            std::process::id(),
            crate::store::now_ms()
        )),
    };
    let token = format!("{what}-{}", crate::store::now_ms());
    let admin_token = crate::sandbox::random_string(24);
    let sources = Sources {
        overrides: vec![
            // The dashboard and the admin API are on, on loopback only, for this run's token.
            ("server.admin_token".into(), admin_token.clone()),
            ("server.listen".into(), "127.0.0.1:0".into()),
            ("storage.dir".into(), store_dir.display().to_string()),
            ("portal.webhook_url".into(), sim.webhook_url()),
            ("portal.application_token".into(), token.clone()),
            // The simulated portal and the shipped rules speak English: so do the service's texts.
            ("portal.language".into(), "en".into()),
            ("sync.poll_interval".into(), "1s".into()),
            ("worker.retry_base".into(), "200ms".into()),
            ("log.level".into(), "warn".into()),
        ],
        ..Sources::default()
    };
    let mut settings = Settings::load(&sources).map_err(|e| e.to_string())?;
    if let Some(calendar) = &rehearsal.calendar {
        settings.calendar = calendar.clone();
    }
    if let Some(depth) = rehearsal.max_tunnel_depth {
        settings.rules.max_tunnel_depth = depth;
        settings.worker.max_tunnel_depth = depth;
    }
    crate::telemetry::init(settings.log.format, &settings.log.level);

    let (tx, rx) = mpsc::unbounded_channel();
    let calendar = settings.calendar.clone();
    let app = Application::build_with_activity(settings, rules.clone(), Some(tx))
        .await
        .map_err(|e| e.to_string())?
        .with_clock(clock);
    let store = app.store();
    let port = app.port();
    sim.set_event_handler(
        Some(format!("http://127.0.0.1:{port}/bitrix24/events")),
        &token,
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));

    outln!(
        "b24-robot {what}: {} (version {}) against {described}",
        // The time-driven rules count too, as `check` counts them.
        count(rules.len(), "rule", "rules"),
        rules.version()
    );
    outln!();
    let story = Story {
        rx,
        store,
        sim: sim.clone(),
        failed: 0,
        metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        digests_shown: 0,
    };
    let service = Service {
        base: format!("http://127.0.0.1:{port}"),
        admin_token,
    };

    Ok(Running {
        sim,
        story,
        stop: Stopper {
            stop_tx,
            server,
            store_dir,
            keep_store,
        },
        calendar,
        service,
    })
}

/// A store folder for a run that keeps it: a new or empty folder, so that what `explain` shows
/// afterwards is this run's alone.
fn fresh_store_dir(dir: &std::path::Path) -> Result<PathBuf, String> {
    match std::fs::read_dir(dir).map(|mut listing| listing.next().is_none()) {
        Ok(false) => Err(format!(
            "{}: the folder is not empty; the sandbox keeps its store in a new or empty folder",
            dir.display()
        )),
        Ok(true) => Ok(dir.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(dir.to_path_buf()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

pub(crate) struct Story {
    pub(crate) rx: mpsc::UnboundedReceiver<Activity>,
    pub(crate) store: Store,
    sim: SimPortal,
    /// Effects that failed so far: a scenario with one exits 1.
    pub(crate) failed: usize,
    /// The service's `/metrics`: its count of control sweeps says when the sweep a jump of the
    /// clock set off is done.
    metrics_url: String,
    /// Digests printed so far: they are sent by the control loop, not by a deal's round, so
    /// they come from the portal's notifications rather than from the activity channel.
    digests_shown: usize,
}

impl Story {
    pub(crate) fn say(&self, text: &str) {
        outln!("* {text}");
    }

    /// Prints what the service does until it has nothing left to do.
    pub(crate) async fn settle(&mut self) {
        self.settle_for(Duration::ZERO).await;
    }

    /// As `settle`, waiting at least `min` (for the sweep).
    ///
    /// The story goes on at once: a scripted user changes a deal several times within one
    /// second, which Bitrix24's `ts` (whole seconds) makes one delivery by the dedupe key; the
    /// service reads the deal once more for such a delivery, so nothing waits for the sweep.
    pub(crate) async fn settle_for(&mut self, min: Duration) {
        self.wait(min).await;
    }

    pub(crate) async fn wait(&mut self, min: Duration) {
        let start = Instant::now();
        let mut quiet_since = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            match tokio::time::timeout(Duration::from_millis(50), self.rx.recv()).await {
                Ok(Some(activity)) => {
                    self.print(&activity);
                    quiet_since = Instant::now();
                }
                Ok(None) => return,
                Err(_) => {
                    if self.store.queue_len() == 0
                        && quiet_since.elapsed() > Duration::from_millis(300)
                        && start.elapsed() >= min
                    {
                        return;
                    }
                }
            }
        }
    }

    pub(crate) fn print(&mut self, activity: &Activity) {
        match activity {
            Activity::StageEntry {
                deal_id,
                stage_id,
                acted,
                note,
                ..
            } => {
                let title = self.title(*deal_id);
                if *acted {
                    outln!("  deal {deal_id} \"{title}\" entered {stage_id}");
                } else {
                    outln!("  deal {deal_id} \"{title}\" entered {stage_id} ({note})");
                }
            }
            Activity::Effect {
                rule,
                method,
                params,
                result,
                ..
            } => {
                let what = describe(method, params);
                match result {
                    Ok(id) => outln!("    [{rule}] {what} -> #{id}"),
                    Err(error) => {
                        self.failed += 1;
                        outln!("    [{rule}] {what} FAILED: {error}");
                    }
                }
            }
            Activity::DealDone { .. } => {}
        }
    }

    fn title(&self, deal_id: u64) -> String {
        self.sim
            .deal(deal_id)
            .and_then(|d| d.get("TITLE").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default()
    }
}

/// One line for people about a REST write: what the demo, the sandbox and the rule tests print.
pub(crate) fn describe(method: &str, params: &Value) -> String {
    let text = value_text;
    match method {
        "tasks.task.add" => {
            let f = &params["fields"];
            let deadline = f.get("DEADLINE").map(text).unwrap_or_else(|| "none".into());
            format!(
                "task \"{}\" responsible {} deadline {}{}",
                text(&f["TITLE"]),
                text(&f["RESPONSIBLE_ID"]),
                deadline,
                f.get("AUDITORS")
                    .map(|a| format!(" auditors {a}"))
                    .unwrap_or_default()
            )
        }
        "crm.deal.update" => format!("moved back to {}", text(&params["fields"]["STAGE_ID"])),
        // `close_on_leave`: the task of a stage the deal has left.
        "tasks.task.complete" => format!("completed task #{}", text(&params["taskId"])),
        "tasks.task.defer" => format!("deferred task #{}", text(&params["taskId"])),
        "crm.timeline.comment.add" => format!(
            "timeline comment \"{}\"",
            text(&params["fields"]["COMMENT"])
        ),
        "im.notify.system.add" => format!(
            "notified user {}: \"{}\"",
            text(&params["USER_ID"]),
            text(&params["MESSAGE"])
        ),
        "crm.deal.add" => {
            let f = &params["fields"];
            format!(
                "copied as \"{}\" into {} responsible {}",
                text(&f["TITLE"]),
                text(&f["STAGE_ID"]),
                text(&f["ASSIGNED_BY_ID"])
            )
        }
        // An effect that could not even be made into a call (a person not found).
        "" => "effect".to_string(),
        other => format!("{other} {params}"),
    }
}

/// A value of the portal as people read it: a string as it is, anything else as JSON (ids come
/// as `"3"` or `3`).
fn value_text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}
