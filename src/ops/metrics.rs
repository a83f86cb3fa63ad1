//! `GET /metrics`: what the service did and how it is doing, in Prometheus' text format
//! (version 0.0.4). Every name starts with `b24robot_`.
//!
//! Written by hand rather than through the `metrics` facade and its exporter: each
//! [`Application`](crate::startup::Application) owns its own counters (the tests run many in one
//! process, where a global recorder would mix them), most values are read at scrape time from
//! what already counts them (the intake's counters, the REST client's stats, the store's queue
//! counters, the rules handle), and the format is a few lines of text.
//!
//! A scrape never waits on the store: the queue's size is a counter the store keeps; only the
//! age of the oldest job needs a walk of the queue, done on a blocking thread, one at a time,
//! for at most [`QUEUE_SCAN_TIMEOUT`] (a scrape that finds a walk still running reports the age
//! the last one found).
//!
//! Labels stay bounded: results, actions, kinds and outcomes are closed lists; method names are
//! the service's own; rule names come from the rule files, and past [`MAX_SERIES`] series a new
//! one is counted under `rule="_other"`. Deal ids are never labels.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::bitrix::Client;
use crate::http::ConnectionStats;
use crate::intake::IntakeCounters;
use crate::rules::{RulesHandle, RulesStatus};
use crate::store::{Store, now_ms};
use crate::worker::counters::Metrics;

/// Everything a scrape reads.
#[derive(Clone)]
pub struct MetricsState {
    pub metrics: Arc<Metrics>,
    pub intake: Arc<IntakeCounters>,
    pub store: Store,
    pub client: Client,
    pub rules: RulesHandle,
    pub rules_status: RulesStatus,
    /// What the connection limits did (`intake::serve`).
    pub connections: Arc<ConnectionStats>,
    /// The oldest waiting job, as the last walk of the queue found it.
    pub oldest: Arc<OldestQueued>,
}

/// Longest a scrape waits for the walk of the queue that finds the oldest job.
/// A walk that takes longer goes on and serves the next scrape.
pub const QUEUE_SCAN_TIMEOUT: Duration = Duration::from_millis(200);

/// The last walk of the queue's finding, and whether a walk is running.
#[derive(Debug, Default)]
pub struct OldestQueued {
    walking: AtomicBool,
    /// When the oldest waiting (not parked) job was acknowledged, ms; 0: none.
    first_at_ms: AtomicU64,
}

/// Clears `walking` however the walk ends.
struct Walking(Arc<OldestQueued>);

impl Drop for Walking {
    fn drop(&mut self) {
        self.0.walking.store(false, Ordering::SeqCst);
    }
}

/// Walks the queue for its oldest waiting job, unless a walk is running already; waits for it
/// at most [`QUEUE_SCAN_TIMEOUT`].
async fn refresh_oldest(state: &MetricsState) {
    if state.oldest.walking.swap(true, Ordering::SeqCst) {
        return;
    }
    let walking = Walking(state.oldest.clone());
    let store = state.store.clone();
    let walk = tokio::task::spawn_blocking(move || {
        match store.all_queued() {
            Ok(queued) => {
                let oldest = queued
                    .iter()
                    .filter(|q| !q.parked)
                    .map(|q| q.first_at_ms)
                    .min();
                walking
                    .0
                    .first_at_ms
                    .store(oldest.unwrap_or(0), Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "metrics: the queue could not be read"),
        }
        drop(walking);
    });
    let _ = tokio::time::timeout(QUEUE_SCAN_TIMEOUT, walk).await;
}

/// `GET /metrics`, to be merged into the service's router.
pub fn router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

async fn scrape(State(state): State<MetricsState>) -> Response {
    refresh_oldest(&state).await;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state, now_ms()),
    )
        .into_response()
}

/// The whole exposition, as of `now_ms`.
pub fn render(state: &MetricsState, now_ms: u64) -> String {
    let mut out = Exposition::default();
    let m = &state.metrics;

    out.family(
        "b24robot_build_info",
        "gauge",
        "The running build (always 1).",
    );
    out.sample(
        "b24robot_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    let intake = &state.intake;
    out.counters(
        "b24robot_events_received_total",
        "Outgoing-webhook events received, by what was done with them.",
        "result",
        &[
            ("recorded", &intake.recorded),
            ("duplicate", &intake.duplicate),
            ("ignored", &intake.ignored),
            ("unauthorized", &intake.unauthorized),
            ("malformed", &intake.malformed),
            ("failed", &intake.failed),
        ],
    );

    let (queued, parked) = (state.store.queue_len(), state.store.parked_len());
    let oldest = state.oldest.first_at_ms.load(Ordering::Relaxed);
    // The walk may predate the last job's completion: no age for an empty queue.
    let age = if oldest == 0 || queued == parked {
        0.0
    } else {
        now_ms.saturating_sub(oldest) as f64 / 1000.0
    };
    out.gauge(
        "b24robot_queue_depth",
        "Deals with queued work (parked ones not included).",
        queued.saturating_sub(parked),
    );
    out.gauge(
        "b24robot_queue_oldest_age_seconds",
        "Age of the oldest queued, not parked job (0 when none).",
        age,
    );
    out.gauge(
        "b24robot_queue_parked",
        "Jobs parked after too many failed attempts (b24-robot jobs retry).",
        parked,
    );
    out.gauge(
        "b24robot_timers_pending",
        "Timers of the time-driven rules ([[sla]]) armed and not yet fired.",
        state.store.timers_pending(),
    );
    out.gauge(
        "b24robot_store_writable",
        "1 while the store can write; 0 after a failed write until it can again (events get 503 meanwhile).",
        u8::from(state.store.write_failure().is_none()),
    );
    out.counter(
        "b24robot_store_write_failures_total",
        "Store writes and flushes that failed (a full or failing disk).",
        state.store.write_failures(),
    );
    out.counter(
        "b24robot_store_reopens_total",
        "Times the store was re-opened after a failed write, once the disk had room again.",
        state.store.reopens(),
    );

    let conns = &state.connections;
    out.gauge(
        "b24robot_http_connections",
        "HTTP connections open now.",
        conns.open.load(Ordering::Relaxed),
    );
    out.counters(
        "b24robot_http_connections_closed_total",
        "Connections closed early by the limits: an idle one for a new one from its client at server.max_connections_per_client (client_limit) or at server.max_connections (cap), idle ones near the cap (idle_near_cap), new ones whose client had every connection busy (client_busy).",
        "reason",
        &[
            ("client_limit", &conns.closed_client_limit),
            ("cap", &conns.closed_cap),
            ("idle_near_cap", &conns.closed_idle_near_cap),
            ("client_busy", &conns.refused_client_busy),
        ],
    );

    out.counter(
        "b24robot_rounds_total",
        "Worker rounds begun (each reads up to worker.deals_per_batch queued deals).",
        m.rounds.load(Ordering::Relaxed),
    );
    out.counter(
        "b24robot_round_deals_total",
        "Queued deals taken by those rounds.",
        m.round_deals.load(Ordering::Relaxed),
    );
    out.family(
        "b24robot_stage_entries_total",
        "counter",
        "Stage entries recorded, by what was done: rules run (acted), left already (superseded), the service's own move (echo).",
    );
    for (action, counter) in ["acted", "superseded", "echo"]
        .into_iter()
        .zip(&m.stage_entries)
    {
        out.sample(
            "b24robot_stage_entries_total",
            &[("action", action)],
            counter.load(Ordering::Relaxed),
        );
    }

    out.family(
        "b24robot_effects_total",
        "counter",
        "Rule effects by rule, kind and result (applied, failed for good, retried).",
    );
    let effects = m
        .effects
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for ((rule, kind, result), n) in effects {
        out.sample(
            "b24robot_effects_total",
            &[("rule", &rule), ("kind", kind), ("result", result.label())],
            n,
        );
    }

    out.family(
        "b24robot_control_effects_total",
        "counter",
        "Time-driven rules (sla, overdue, deadline_moved, no_task, digest) by rule, kind and result (fired, skipped, failed, sent).",
    );
    let control = m
        .control_effects
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for ((rule, kind, result), n) in control {
        out.sample(
            "b24robot_control_effects_total",
            &[("rule", &rule), ("kind", kind), ("result", result)],
            n,
        );
    }

    out.family(
        "b24robot_control_sweeps_total",
        "counter",
        "Control sweeps of [[overdue]] and [[no_task]] (result ok or failed).",
    );
    for (result, n) in ["ok", "failed"].into_iter().zip(&m.control_sweeps) {
        out.sample(
            "b24robot_control_sweeps_total",
            &[("result", result)],
            n.load(Ordering::Relaxed),
        );
    }

    out.counter(
        "b24robot_tunnel_depth_exceeded_total",
        "Tunnels that made no copy because the deal was already the copy at rules.max_tunnel_depth of a chain of copies (their decisions failed).",
        m.tunnel_depth_exceeded.load(Ordering::Relaxed),
    );

    let stats = state.client.stats();
    out.family(
        "b24robot_rest_calls_total",
        "counter",
        "REST calls by method and outcome; a batch counts as `batch` and each of its commands by its own method.",
    );
    for (method, outcome, n) in state.client.call_counts() {
        out.sample(
            "b24robot_rest_calls_total",
            &[("method", &method), ("outcome", outcome)],
            n,
        );
    }
    out.counter(
        "b24robot_rest_http_requests_total",
        "HTTP requests sent to the portal (retries included; a batch is one).",
        stats.http_requests,
    );
    out.counter(
        "b24robot_rest_retries_total",
        "HTTP requests repeated after a failure.",
        stats.retries,
    );
    out.counter(
        "b24robot_rest_query_limit_exceeded_total",
        "503 QUERY_LIMIT_EXCEEDED answers (the portal's leaky bucket overflowed).",
        stats.rejected_503,
    );
    out.counter(
        "b24robot_rest_operation_time_limit_total",
        "429 OPERATION_TIME_LIMIT answers, top-level or inside a batch (the method is parked).",
        stats.rejected_429,
    );
    out.counter(
        "b24robot_rest_redirects_total",
        "Portal renames (302) followed.",
        stats.redirects,
    );
    out.counter(
        "b24robot_rest_redirects_refused_total",
        "Redirects refused: not a portal rename (another host, port or scheme); the call failed.",
        stats.redirects_refused,
    );
    out.counter(
        "b24robot_rest_answers_too_large_total",
        "REST answers longer than portal.max_response, not read; the call failed.",
        stats.answers_too_large,
    );
    out.gauge(
        "b24robot_bucket_level",
        "Our estimate of the portal's request counter (leaky bucket).",
        stats.bucket_level,
    );
    out.gauge(
        "b24robot_bucket_capacity",
        "Leaky bucket size in force (lowered after a 503).",
        stats.bucket_capacity,
    );
    out.gauge(
        "b24robot_bucket_rate",
        "Leaky bucket drain in force, requests per second.",
        stats.bucket_rate,
    );
    out.counter(
        "b24robot_batch_requests_total",
        "batch requests sent by the outbox (the calls of every caller packed together).",
        stats.outbox_requests,
    );
    out.counter(
        "b24robot_batch_calls_total",
        "Calls carried by those batch requests (at most 50 each): calls / requests is how full they were.",
        stats.outbox_calls,
    );
    out.gauge(
        "b24robot_portal_up",
        "1 while the portal answers; 0 while it is unreachable (no work is sent, one probe at a time).",
        u64::from(stats.reach.down_since.is_none()),
    );
    out.gauge(
        "b24robot_portal_down_seconds",
        "How long the portal has been unreachable (0 while it answers).",
        stats.reach.down_for.as_secs(),
    );
    out.counter(
        "b24robot_portal_outages_total",
        "Times the portal became unreachable.",
        stats.reach.outages,
    );
    out.counter(
        "b24robot_portal_probes_total",
        "server.time probes sent while the portal was unreachable.",
        stats.reach.probes,
    );

    let rules = state.rules.current();
    let disk = state.rules_status.view(rules.version());
    out.gauge("b24robot_rules", "Rules in force.", rules.len());
    out.family(
        "b24robot_rules_info",
        "gauge",
        "The rule set in force (always 1); its version is the hash every decision records.",
    );
    out.sample("b24robot_rules_info", &[("version", rules.version())], 1);
    out.gauge(
        "b24robot_rules_stale",
        "1 when the rules folder is not the rule set in force (a change was refused: see /readyz).",
        u8::from(disk.stale),
    );
    out.family(
        "b24robot_rule_reloads_total",
        "counter",
        "Rule reloads (SIGHUP or a change in the rules folder), by result.",
    );
    let reloads = state.rules_status.reloads();
    for (result, count) in [
        ("applied", reloads.applied),
        ("unchanged", reloads.unchanged),
        ("refused", reloads.refused),
    ] {
        out.sample("b24robot_rule_reloads_total", &[("result", result)], count);
    }
    out.family(
        "b24robot_paging_stopped_total",
        "counter",
        "List pagings stopped before the portal said they ended: a page with nothing new (no_progress) or the page bound (page_limit), by list.",
    );
    for (l, list) in ["deal_history", "sweep", "deal_list"]
        .into_iter()
        .enumerate()
    {
        for (r, reason) in ["no_progress", "page_limit"].into_iter().enumerate() {
            out.sample(
                "b24robot_paging_stopped_total",
                &[("list", list), ("reason", reason)],
                m.paging_stopped[l][r].load(Ordering::Relaxed),
            );
        }
    }
    out.counter(
        "b24robot_store_read_errors_total",
        "Store records that could not be read (b24-robot store check lists them).",
        state.store.read_errors(),
    );
    out.text
}

/// The text format: `# HELP`, `# TYPE`, then `name{label="value"} number` lines.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    /// A counter family with one label, a sample per value.
    fn counters(&mut self, name: &str, help: &str, label: &str, samples: &[(&str, &AtomicU64)]) {
        self.family(name, "counter", help);
        for (value, counter) in samples {
            self.sample(name, &[(label, value)], counter.load(Ordering::Relaxed));
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EffectKind;
    use crate::worker::counters::{EffectResult, MAX_SERIES};

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("x", &[("rule", "a \"b\"\\c\nd")], 1);
        assert_eq!(out.text, "x{rule=\"a \\\"b\\\"\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn effects_past_the_series_limit_share_one_rule_label() {
        let metrics = Metrics::default();
        for i in 0..MAX_SERIES + 5 {
            metrics.effect(&format!("r{i}"), EffectKind::Task, EffectResult::Applied);
        }
        metrics.effect("r0", EffectKind::Task, EffectResult::Applied);
        let effects = metrics.effects.lock().unwrap();
        assert_eq!(effects.len(), MAX_SERIES + 1);
        assert_eq!(
            effects[&("_other".to_string(), "task", EffectResult::Applied)],
            5
        );
        assert_eq!(
            effects[&("r0".to_string(), "task", EffectResult::Applied)],
            2
        );
    }
}
