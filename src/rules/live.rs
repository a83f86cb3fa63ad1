//! The rules in force and their hot reload: `serve` re-reads `rules.dir` on SIGHUP and when a
//! file in it changes.
//!
//! A set that does not load whole is refused: the rules in force keep running, every error is
//! logged, `b24robot_rules_stale` is 1 and `/readyz` shows the errors, until the folder loads
//! again. A good set replaces the one in force between two decisions ([`RulesHandle::replace`]):
//! a round already deciding keeps the set it took, and every decision records the version (the
//! hash of the files) that made it.
//!
//! The folder is watched, not the files: editors save by writing a temporary file and renaming
//! it over the old one, and a Kubernetes ConfigMap swaps a symlink. Changes come in bursts (a
//! save is several events; `git checkout` touches many files), so a reload waits until the folder
//! has been quiet for [`QUIET`], at most [`MAX_WAIT`] after the first event: well within the 2 s
//! the spec allows.
//!
//! This is the one part of `rules/` that waits on files and signals; evaluation stays pure. It
//! knows nothing of the worker or the metrics: it counts its reloads in [`RulesStatus`], which
//! `/metrics` and `/readyz` read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::rules::{Diagnostic, RuleSet, Severity};
/// A reload waits for this much silence in the folder...
pub const QUIET: Duration = Duration::from_millis(250);
/// ...but never longer than this after the first change.
pub const MAX_WAIT: Duration = Duration::from_millis(1_000);

/// The rule set in force, swapped whole on a reload: a round takes the set once
/// ([`RulesHandle::current`]) and decides with it to the end, whatever a reload does meanwhile.
#[derive(Clone)]
pub struct RulesHandle(Arc<RwLock<Arc<RuleSet>>>);

impl RulesHandle {
    pub fn new(rules: RuleSet) -> RulesHandle {
        RulesHandle(Arc::new(RwLock::new(Arc::new(rules))))
    }

    pub fn current(&self) -> Arc<RuleSet> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, rules: RuleSet) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
    }
}

/// What the rules folder held at the last look, and the reloads so far: shared by the
/// reloader, `/readyz` and the metrics.
#[derive(Debug, Clone, Default)]
pub struct RulesStatus(Arc<Status>);

#[derive(Debug, Default)]
struct Status {
    on_disk: Mutex<OnDisk>,
    /// Reloads by result: applied, unchanged, refused (`b24robot_rule_reloads_total`).
    reloads: [AtomicU64; 3],
}

/// What a reload did, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReloadResult {
    /// A new rule set is in force.
    Applied = 0,
    /// The files on disk are the rules in force already.
    Unchanged = 1,
    /// The files on disk do not load whole: the rules in force keep running.
    Refused = 2,
}

/// The reloads so far, by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    pub applied: u64,
    pub unchanged: u64,
    pub refused: u64,
}

/// The folder at the last look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum OnDisk {
    /// Not read since the start: the rules in force are what it held then.
    #[default]
    Unread,
    /// It loads whole; this is its version.
    Loads(String),
    /// It does not load, for these reasons.
    Refused(Vec<String>),
}

/// The folder next to the rules in force, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskView {
    /// The version (hash) of the folder; `None` when it does not load.
    pub rules_on_disk: Option<String>,
    /// The folder is not the rule set in force.
    pub stale: bool,
    /// Why the folder does not load (`file:line:col: ...`), empty when it does.
    pub errors: Vec<String>,
}

impl RulesStatus {
    /// The folder against the version in force. Before any reload the set in force is what the
    /// folder held at start.
    pub fn view(&self, in_force: &str) -> DiskView {
        match &*self.lock() {
            OnDisk::Unread => DiskView {
                rules_on_disk: Some(in_force.to_string()),
                stale: false,
                errors: Vec::new(),
            },
            OnDisk::Loads(version) => DiskView {
                rules_on_disk: Some(version.clone()),
                stale: version != in_force,
                errors: Vec::new(),
            },
            OnDisk::Refused(errors) => DiskView {
                rules_on_disk: None,
                stale: true,
                errors: errors.clone(),
            },
        }
    }

    /// The reloads so far, for `/metrics`.
    pub fn reloads(&self) -> ReloadCounts {
        let [applied, unchanged, refused] =
            self.0.reloads.each_ref().map(|n| n.load(Ordering::Relaxed));
        ReloadCounts {
            applied,
            unchanged,
            refused,
        }
    }

    fn count(&self, result: ReloadResult) {
        self.0.reloads[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OnDisk> {
        self.0
            .on_disk
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: OnDisk) {
        *self.lock() = state;
    }
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: an operator asked; the outcome is always logged and counted.
    Signal,
    /// A change in the folder: a refusal already reported with the same errors is not repeated
    /// (an editor's swap files would otherwise log it on every keystroke).
    Change,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied { from: String, to: String },
    Unchanged,
    Refused(Vec<String>),
}

/// Loads `dir` and puts the set in force when it loads whole.
#[derive(Clone)]
pub struct Reloader {
    pub dir: PathBuf,
    pub rules: RulesHandle,
    pub status: RulesStatus,
}

impl Reloader {
    pub async fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let dir = self.dir.clone();
        let loaded = tokio::task::spawn_blocking(move || RuleSet::load_dir(&dir))
            .await
            .unwrap_or_else(|error| {
                Err(vec![Diagnostic {
                    file: self.dir.display().to_string(),
                    line: 0,
                    column: 0,
                    rule: None,
                    message: format!("loading stopped: {error}"),
                    help: None,
                    severity: Severity::Error,
                }])
            });
        let in_force = self.rules.current();
        let dir = self.dir.display().to_string();
        match loaded {
            Ok((set, warnings)) => {
                let was_refused = matches!(&*self.status.lock(), OnDisk::Refused(_));
                let version = set.version().to_string();
                self.status.set(OnDisk::Loads(version.clone()));
                if version == in_force.version() {
                    if trigger == Trigger::Signal || was_refused {
                        tracing::info!(rules_dir = %dir, version = %version, "rules unchanged: the folder is the rule set in force");
                    }
                    if trigger == Trigger::Signal {
                        self.status.count(ReloadResult::Unchanged);
                    }
                    return ReloadOutcome::Unchanged;
                }
                for warning in &warnings {
                    tracing::warn!(rules_dir = %dir, rule = warning.rule.as_deref(), "rules: {warning}");
                }
                let from = in_force.version().to_string();
                let count = set.len();
                self.rules.replace(set);
                self.status.count(ReloadResult::Applied);
                tracing::info!(rules_dir = %dir, from = %from, version = %version, rules = count, "rules reloaded");
                ReloadOutcome::Applied { from, to: version }
            }
            Err(diagnostics) => {
                let errors: Vec<String> = diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .map(ToString::to_string)
                    .collect();
                let repeated = *self.status.lock() == OnDisk::Refused(errors.clone());
                self.status.set(OnDisk::Refused(errors.clone()));
                if trigger == Trigger::Change && repeated {
                    return ReloadOutcome::Refused(errors);
                }
                for d in &diagnostics {
                    match d.severity {
                        Severity::Error => {
                            tracing::error!(rules_dir = %dir, rule = d.rule.as_deref(), "rules: {d}")
                        }
                        Severity::Warning => {
                            tracing::warn!(rules_dir = %dir, rule = d.rule.as_deref(), "rules: {d}")
                        }
                    }
                }
                self.status.count(ReloadResult::Refused);
                tracing::error!(
                    rules_dir = %dir,
                    in_force = %in_force.version(),
                    errors = errors.len(),
                    "rules on disk refused: the rules in force keep running (fix the files; /readyz shows the errors)"
                );
                ReloadOutcome::Refused(errors)
            }
        }
    }
}

/// Reloads on SIGHUP and on changes in the folder until `stop` is cancelled.
pub async fn run(reloader: Reloader, stop: CancellationToken) {
    let (tx, mut changes) = mpsc::unbounded_channel::<()>();
    // Kept alive for as long as the loop runs: dropping it stops the watch.
    let _watcher = watch(&reloader.dir, tx);
    let mut hangup = Hangup::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(()) = changes.recv() => {
                quiet(&mut changes).await;
                reloader.reload(Trigger::Change).await;
            }
            () = hangup.recv() => {
                tracing::info!(rules_dir = %reloader.dir.display(), "SIGHUP: reloading the rules");
                reloader.reload(Trigger::Signal).await;
            }
        }
    }
}

/// Waits until no change came for [`QUIET`], or [`MAX_WAIT`] passed.
async fn quiet(changes: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    loop {
        let wait = QUIET.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, changes.recv()).await {
            Ok(Some(())) if tokio::time::Instant::now() < deadline => {}
            _ => return,
        }
    }
}

/// Watches the folder (not recursively); `None`, with a warning, when it cannot: SIGHUP still
/// reloads.
fn watch(dir: &Path, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |event: notify::Result<notify::Event>| match event {
        // Reading a file is no change (the reload itself reads them).
        Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
        Ok(_) => {
            let _ = tx.send(());
        }
        Err(error) => tracing::warn!(%error, "watching the rules folder"),
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match watched {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(rules_dir = %dir.display(), %error, "cannot watch the rules folder: changes are not seen (SIGHUP still reloads)");
            None
        }
    }
}

/// SIGHUP where there is one.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Hangup {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(|error| tracing::warn!(%error, "cannot listen for SIGHUP"))
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "pipeline = 0\n[[task]]\nname = \"call\"\nstage = \"NEW\"\ntitle = \"Call\"\ndeadline = { after = \"1 day\" }\n";

    #[tokio::test]
    async fn each_reload_is_counted_by_its_result_and_a_refusal_keeps_the_rules_in_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sales.toml");
        std::fs::write(&file, RULE).expect("write");
        let (rules, _) = RuleSet::load_dir(dir.path()).expect("loads");
        let reloader = Reloader {
            dir: dir.path().to_path_buf(),
            rules: RulesHandle::new(rules),
            status: RulesStatus::default(),
        };
        assert_eq!(
            reloader.reload(Trigger::Signal).await,
            ReloadOutcome::Unchanged
        );
        std::fs::write(&file, RULE.replace("Call", "Call back")).expect("write");
        let applied = reloader.rules.current().version().to_string();
        assert!(matches!(
            reloader.reload(Trigger::Change).await,
            ReloadOutcome::Applied { from, .. } if from == applied
        ));
        let in_force = reloader.rules.current().version().to_string();
        std::fs::write(&file, "[[task]]\nname = 1\n").expect("write");
        assert!(matches!(
            reloader.reload(Trigger::Change).await,
            ReloadOutcome::Refused(_)
        ));
        assert_eq!(reloader.rules.current().version(), in_force);
        assert!(reloader.status.view(&in_force).stale);
        assert_eq!(
            reloader.status.reloads(),
            ReloadCounts {
                applied: 1,
                unchanged: 1,
                refused: 1
            }
        );
    }
}
