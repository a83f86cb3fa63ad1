//! A deal's job in one round (or one page of a backfill): what the store has of the deal when
//! the round takes it, the writes it is to send, and how it ends ([`Ending`]).

use crate::bitrix::CallError;
use crate::rules::StageEntry;
use crate::store::{
    DealState, EffectKind, EffectRecord, EffectState, QueuedDeal, StoreError, now_ms,
};

use super::Worker;

/// How a deal's job ends this round.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ending {
    /// Everything done (or failed for good): complete the queue record.
    Done,
    /// Something failed that may work later: count an attempt, back off.
    Retry(String),
    /// The portal refused in a way retrying cannot fix (auth, permission, validation, a blocked
    /// portal): park the job at once, with the error, for an operator to re-run once the cause
    /// is fixed (`b24-robot jobs retry`).
    Park(String),
    /// Not an attempt's fault (a method parked by the portal, no history floor yet): try again
    /// at the given moment without counting.
    Postpone(u64, String),
    /// The portal is unreachable: the job keeps its place in the queue (its due moment), no
    /// attempt is counted, and it runs once the portal answers again.
    Hold(String),
    /// A record of the deal in the store cannot be read: park the job with the error; the
    /// round's other deals go on (`b24-robot store check` lists the damaged records).
    Unreadable(String),
}

pub(crate) struct Job {
    pub(crate) deal_id: u64,
    pub(crate) queued: QueuedDeal,
    pub(crate) state: DealState,
    pub(crate) known: bool,
    /// Effects recorded by an earlier round and still pending.
    pub(crate) pending: Vec<EffectRecord>,
    /// The highest id of a comment this deal already got from the service: a lookup for a
    /// pending comment only accepts a newer one with the same text.
    pub(crate) known_comments: u64,
    pub(crate) ending: Option<Ending>,
    /// Writes to send this round.
    pub(crate) writes: Vec<EffectRecord>,
}

impl Job {
    pub(crate) fn end(&mut self, ending: Ending) {
        // The first failure is the one to report; a later Done never hides it. A damaged
        // record hides everything: nothing else about the deal can be trusted.
        if self.ending.is_none()
            || matches!(self.ending, Some(Ending::Done))
            || matches!(ending, Ending::Unreadable(_))
        {
            self.ending = Some(ending);
        }
    }

    /// The newest event behind this job; `None` when only the sweep queued it (then the field is
    /// left out of the log line rather than logged as a made-up id).
    pub(crate) fn event_id(&self) -> Option<u64> {
        self.queued.event_ids.last().copied()
    }

    /// The newest stage entry the service has seen of the deal: its last one, or the history
    /// floor for a deal it never met (older entries are never acted on).
    pub(crate) fn seen(&self, floor: u64) -> u64 {
        if self.known {
            self.state.last_entry_id.max(floor)
        } else {
            floor
        }
    }

    /// A deal met for the first time without a new entry: from now on it is known, seen up to
    /// the floor, in the stage of `current` (its newest entry, if any).
    pub(crate) fn first_met(&mut self, floor: u64, current: Option<&StageEntry>) {
        self.state.last_entry_id = floor;
        if let Some(entry) = current {
            self.state.stage_id = Some(entry.stage_id.clone());
            self.state.category_id = Some(entry.category_id);
        }
        self.known = true;
    }
}

impl Worker {
    /// A deal's job as the store has it: its state and its pending effects.
    pub(crate) fn load_job(&self, deal_id: u64, queued: QueuedDeal) -> Result<Job, StoreError> {
        let state = self.store.deal_state(deal_id)?;
        let (pending, settled): (Vec<EffectRecord>, Vec<EffectRecord>) = self
            .store
            .effects(deal_id)?
            .into_iter()
            .partition(|e| e.state == EffectState::Pending);
        let known_comments = settled
            .iter()
            .filter(|e| e.kind == EffectKind::Comment)
            .filter_map(|e| match &e.state {
                EffectState::Done { id } => id.parse().ok(),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        Ok(Job {
            deal_id,
            known_comments,
            queued,
            known: state.is_some(),
            state: state.unwrap_or_default(),
            pending,
            ending: None,
            writes: Vec::new(),
        })
    }
}

/// How a failed call ends the job: postponed while its method is parked, held while the portal
/// is unreachable, parked when retrying cannot fix it, else retried.
pub(crate) fn failure(error: &CallError) -> Ending {
    match error {
        CallError::MethodParked { until, .. } => {
            let until_ms = until
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            Ending::Postpone(until_ms.max(now_ms() + 1_000), error.to_string())
        }
        CallError::PortalDown { .. } => Ending::Hold(error.to_string()),
        _ if !error.is_retryable() && !error.outcome_unknown() => Ending::Park(error.to_string()),
        _ => Ending::Retry(error.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::RECORD_VERSION;

    fn api(status: u16, code: &str) -> CallError {
        CallError::Api {
            method: "crm.deal.get".into(),
            error: crate::bitrix::ApiError {
                http_status: status,
                code: code.into(),
                description: String::new(),
                reset_at: None,
            },
        }
    }

    #[test]
    fn what_retrying_cannot_fix_parks_at_once_and_the_rest_is_retried() {
        assert!(matches!(
            failure(&api(403, "ACCESS_DENIED")),
            Ending::Park(_)
        ));
        assert!(matches!(
            failure(&api(401, "NO_AUTH_FOUND")),
            Ending::Park(_)
        ));
        assert!(matches!(
            failure(&api(500, "INTERNAL_SERVER_ERROR")),
            Ending::Retry(_)
        ));
        assert!(matches!(
            failure(&api(503, "QUERY_LIMIT_EXCEEDED")),
            Ending::Retry(_)
        ));
    }

    /// A job of a known deal with these writes, as a round holds it.
    pub(crate) fn job(deal_id: u64, writes: Vec<EffectRecord>) -> Job {
        Job {
            deal_id,
            queued: QueuedDeal {
                v: RECORD_VERSION,
                deal_id,
                generation: 1,
                events: 1,
                event_ids: Vec::new(),
                first_at_ms: 0,
                attempts: 0,
                not_before_ms: 0,
                last_error: None,
                parked: false,
            },
            state: DealState::default(),
            known: true,
            pending: Vec::new(),
            known_comments: 0,
            ending: None,
            writes,
        }
    }

    #[test]
    fn a_deal_never_met_has_seen_only_the_floor() {
        let mut j = job(5, Vec::new());
        j.state.last_entry_id = 40;
        assert_eq!(j.seen(30), 40);
        assert_eq!(j.seen(50), 50);
        j.known = false;
        assert_eq!(j.seen(30), 30);
    }
}
