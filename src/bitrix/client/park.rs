//! Operating limits per method: the last `operating_reset_at` seen, and the park after a 429
//! during which calls of that method fail fast (or, if short and safe, wait).

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Client, Retry};
use crate::bitrix::envelope::CallTime;
use crate::bitrix::error::CallError;

/// The shortest park after a 429, as Bitrix24's own SDK does.
const MIN_PARK: Duration = Duration::from_secs(10);
/// A `Retry::Safe` call waits out a park shorter than this instead of failing.
const SHORT_PARK: Duration = Duration::from_secs(2);
/// The longest park: a reset further away than Bitrix24's ten-minute window is not believed.
const MAX_PARK: Duration = Duration::from_secs(15 * 60);

/// What we know of one method's operating limit.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct MethodState {
    /// The latest `operating_reset_at` seen for it, Unix seconds.
    reset_at: Option<f64>,
    /// Set by a 429: calls fail fast until then.
    parked_until: Option<SystemTime>,
}

impl Client {
    /// When `method` is parked after a 429, until when.
    #[must_use]
    pub fn parked_until(&self, method: &str) -> Option<SystemTime> {
        let now = SystemTime::now();
        self.methods()
            .get(method)
            .and_then(|state| state.parked_until)
            .filter(|until| *until > now)
    }

    fn methods(&self) -> std::sync::MutexGuard<'_, HashMap<String, MethodState>> {
        self.inner
            .methods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn remember_time(&self, method: &str, time: Option<&CallTime>) {
        if let Some(reset_at) = time.and_then(|time| time.operating_reset_at) {
            self.methods()
                .entry(method.to_owned())
                .or_default()
                .reset_at = Some(reset_at);
        }
    }

    /// Parks `method` after a 429 until its last known reset, at least [`MIN_PARK`].
    pub(super) fn park(&self, method: &str) -> SystemTime {
        let now = SystemTime::now();
        let mut methods = self.methods();
        let state = methods.entry(method.to_owned()).or_default();
        let until = park_until(now, state.reset_at);
        state.parked_until = Some(state.parked_until.map_or(until, |old| old.max(until)));
        drop(methods);
        self.bump(|c| &c.rejected_429);
        tracing::warn!(
            method,
            park_secs = until.duration_since(now).unwrap_or_default().as_secs(),
            "method parked: 429 OPERATION_TIME_LIMIT"
        );
        until
    }

    pub(super) async fn wait_if_parked(&self, method: &str, retry: Retry) -> Result<(), CallError> {
        let Some(until) = self.parked_until(method) else {
            return Ok(());
        };
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        if retry == Retry::Safe && left < SHORT_PARK {
            tokio::time::sleep(left).await;
            return Ok(());
        }
        Err(CallError::MethodParked {
            method: method.to_owned(),
            until,
        })
    }
}

/// Until when a method is parked after a 429: its last known `operating_reset_at`, at least
/// [`MIN_PARK`] from `now`, at most [`MAX_PARK`].
///
/// `operating_reset_at` comes from the portal's answer. A huge value used to panic here
/// (`Duration::from_secs_f64` and `SystemTime + Duration` both panic on overflow; found by the
/// envelope property test): it is now capped, as Bitrix24's own window is ten minutes.
pub(crate) fn park_until(now: SystemTime, reset_at: Option<f64>) -> SystemTime {
    let earliest = now + MIN_PARK;
    let latest = now + MAX_PARK;
    let reset = reset_at
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .map(|seconds| {
            Duration::try_from_secs_f64(seconds)
                .ok()
                .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
                .unwrap_or(latest)
        });
    reset.map_or(earliest, |reset| reset.clamp(earliest, latest))
}
