//! Whether the portal can be reached at all, and the probe that finds out when it comes back.
//!
//! A portal behind a dead network, a stopped proxy or a crashed front end answers nothing, or a
//! proxy's 502/503/504 without a Bitrix24 envelope. After [`DOWN_AFTER`] such results in a row
//! the client calls the portal *down*: every call fails at once with [`CallError::PortalDown`]
//! (nothing is sent, so nothing can have run), and one task probes it with `server.time`
//! (a read that every portal answers, `api-reference/common/system/server-time.md` in
//! bitrix24/b24restdocs), one request at a time, 1 s after the last result and doubling up to
//! [`PROBE_MAX`]. Any answer that is an envelope, an error envelope included (`METHOD_NOT_FOUND`,
//! 503 `QUERY_LIMIT_EXCEEDED`, 401), proves the portal is there: it is *up* again and whoever
//! waits in [`Client::until_reachable`] goes on.
//!
//! While down, one WARN line a minute says since when; one INFO line says when it is back.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Client;
use super::wire::Exchange;
use crate::bitrix::envelope::Parsed;
use crate::bitrix::error::CallError;

/// Unreachable results in a row that make the portal down.
pub const DOWN_AFTER: u32 = 3;
/// The first probe's delay; each failed probe doubles it up to [`PROBE_MAX`].
pub const PROBE_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two probes.
pub const PROBE_MAX: Duration = Duration::from_secs(30);
/// How often the "still unreachable" line is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// The method that probes: it reads nothing of the portal's data.
pub const PROBE_METHOD: &str = "server.time";

/// What a request's result says of the portal's reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sign {
    /// An answer from Bitrix24 itself (an envelope, a rename): it is there.
    Reachable,
    /// No answer, or a proxy's 502/503/504 without an envelope.
    Unreachable,
    /// Says nothing either way (a malformed 200, a redirect refused...).
    Neither,
}

impl Sign {
    pub(super) fn of(exchange: &Exchange) -> Sign {
        match exchange {
            Exchange::Moved(_) => Sign::Reachable,
            Exchange::Answer(Parsed::Success(_)) => Sign::Reachable,
            Exchange::Answer(Parsed::Error(error)) => {
                if error.code.is_empty() && matches!(error.http_status, 502..=504) {
                    Sign::Unreachable
                } else {
                    Sign::Reachable
                }
            }
            Exchange::Answer(Parsed::Malformed(_)) => Sign::Neither,
            Exchange::Failed(CallError::Transport { .. }) => Sign::Unreachable,
            Exchange::Failed(_) => Sign::Neither,
        }
    }
}

/// The portal's reachability, shared by every clone of the client.
#[derive(Default)]
pub(super) struct Reach {
    state: Mutex<State>,
    /// Told when the portal is up again.
    back: Notify,
}

#[derive(Default)]
struct State {
    /// Unreachable results in a row.
    in_a_row: u32,
    /// Set while the portal is down.
    down: Option<Down>,
    /// Outages since the client was built.
    outages: u64,
    /// Probes sent since the client was built.
    probes: u64,
}

#[derive(Clone, Copy)]
struct Down {
    since: SystemTime,
    since_instant: Instant,
}

/// The portal's reachability now, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reachability {
    /// Since when the portal is unreachable; `None` while it answers.
    pub down_since: Option<SystemTime>,
    /// How long it has been unreachable (zero while it answers).
    pub down_for: Duration,
    /// Outages since the start.
    pub outages: u64,
    /// Probes sent since the start.
    pub probes: u64,
}

impl Reach {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Client {
    /// Since when the portal is unreachable, if it is.
    #[must_use]
    pub fn down_since(&self) -> Option<SystemTime> {
        self.inner.reach.state().down.map(|down| down.since)
    }

    /// The portal's reachability now.
    #[must_use]
    pub fn reachability(&self) -> Reachability {
        let state = self.inner.reach.state();
        Reachability {
            down_since: state.down.map(|down| down.since),
            down_for: state
                .down
                .map(|down| down.since_instant.elapsed())
                .unwrap_or_default(),
            outages: state.outages,
            probes: state.probes,
        }
    }

    /// Returns when the portal is reachable: at once while it is, else when a probe is answered.
    pub async fn until_reachable(&self) {
        loop {
            let back = self.inner.reach.back.notified();
            tokio::pin!(back);
            back.as_mut().enable();
            if self.down_since().is_none() {
                return;
            }
            back.await;
        }
    }

    /// Fails a call at once while the portal is down: it is not sent.
    pub(super) fn refuse_if_down(&self, method: &str) -> Result<(), CallError> {
        match self.down_since() {
            Some(since) => Err(CallError::PortalDown {
                method: method.to_owned(),
                since,
            }),
            None => Ok(()),
        }
    }

    /// Takes note of what a request's result says of the portal.
    pub(super) fn note_reach(&self, sign: Sign) {
        match sign {
            Sign::Neither => {}
            Sign::Reachable => {
                let mut state = self.inner.reach.state();
                state.in_a_row = 0;
                if let Some(down) = state.down.take() {
                    drop(state);
                    tracing::info!(
                        down_secs = down.since_instant.elapsed().as_secs(),
                        "the portal answers again: work goes on"
                    );
                    self.inner.reach.back.notify_waiters();
                }
            }
            Sign::Unreachable => {
                let mut state = self.inner.reach.state();
                state.in_a_row = state.in_a_row.saturating_add(1);
                if state.down.is_some() || state.in_a_row < DOWN_AFTER {
                    return;
                }
                state.down = Some(Down {
                    since: SystemTime::now(),
                    since_instant: Instant::now(),
                });
                state.outages += 1;
                drop(state);
                tracing::warn!(
                    failures = DOWN_AFTER,
                    "the portal is unreachable: no work is sent until a probe is answered"
                );
                let client = self.clone();
                tokio::spawn(async move { client.probe_until_up().await });
            }
        }
    }

    /// One probe at a time until the portal answers; backs off from [`PROBE_FIRST`] to
    /// [`PROBE_MAX`]. Ends when the portal is up (whoever made it so).
    async fn probe_until_up(self) {
        let mut delay = PROBE_FIRST;
        let mut logged = Instant::now();
        loop {
            tokio::time::sleep(delay).await;
            let Some(since) = self.down_since() else {
                return;
            };
            if logged.elapsed() >= LOG_EVERY {
                logged = Instant::now();
                tracing::warn!(
                    since = %crate::text::utc(since),
                    down_secs = self.reachability().down_for.as_secs(),
                    "the portal is still unreachable"
                );
            }
            let permit = self.inner.bucket.acquire().await;
            self.inner.reach.state().probes += 1;
            self.bump(|c| &c.http_requests);
            let exchange = self.exchange(PROBE_METHOD, &json!({})).await;
            match Sign::of(&exchange) {
                Sign::Reachable => {
                    permit.accepted();
                    self.note_reach(Sign::Reachable);
                    return;
                }
                _ => drop(permit),
            }
            delay = (delay * 2).min(PROBE_MAX);
        }
    }
}
