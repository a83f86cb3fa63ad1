//! The outbox: the calls of every caller (the rounds, the sweep, a backfill, the lookups after
//! unknown outcomes) queue here, and one dispatcher packs them into `batch` requests of up to
//! [`BATCH_LIMIT`] sub-calls.
//!
//! Why: the portal counts requests, not calls (a `batch` is one request for the limit, see
//! `../shared/reference/bitrix24-api.md` §5). When the bucket has room, a request goes out at
//! once with whatever is queued (after a [`LINGER`] that lets callers starting together share
//! it); when the bucket is the limit, the dispatcher waits for its turn *before* taking calls,
//! and past half the bucket a request that is not full waits a drain step for more, so
//! everything queued meanwhile (the writes of one round, the reads of the next) travels in the
//! same full request. And while one of its requests is in flight, a request that is not full
//! waits for it to be answered (or to fill up), so a stream of calls shares requests.
//!
//! Order: calls leave in the order they were queued, a caller's own calls in its order; a
//! caller's calls may be split over two requests, the earlier ones in the earlier request. So a
//! read queued after another (the deal after its history) never runs before it.
//!
//! A request's retries follow its most careful call: [`Retry::Unsafe`] when any call in it is a
//! create, so a create is never repeated blind; the reads beside it then see the failure and
//! are tried again by their callers.
//!
//! The dispatcher is a task of the runtime that first used the client; a client outliving that
//! runtime (tests build several) starts another on the next use.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::batch::{BATCH_LIMIT, BatchCall};
use super::{Client, Inner, Retry};
use crate::bitrix::bucket::Wait;
use crate::bitrix::envelope::Response;
use crate::bitrix::error::CallError;

/// How long the dispatcher waits for more calls when fewer than a full batch are queued and a
/// request could go at once: callers that start together (the rounds taken from one burst)
/// then share one request. Short against any portal's answer time.
const LINGER: Duration = Duration::from_millis(3);
/// The linger ends early once no call has arrived for this long.
const QUIET: Duration = Duration::from_millis(1);

/// One call waiting, and where its answer goes.
struct Queued {
    call: BatchCall,
    retry: Retry,
    reply: oneshot::Sender<Result<Response, CallError>>,
}

/// The queue and its dispatcher, one per client.
#[derive(Default)]
pub(super) struct Outbox {
    queue: Mutex<VecDeque<Queued>>,
    /// Wakes the dispatcher when calls are queued.
    queued: Arc<Notify>,
    /// Wakes those waiting for room ([`Client::until_outbox_has_room`]) when calls leave.
    taken: Notify,
    /// Whether a dispatcher task is alive; set false by the task's guard when it ends (its
    /// runtime shut down).
    running: Arc<AtomicBool>,
    /// Requests of the outbox sent and not answered yet, and the wake-up when one is.
    in_flight: std::sync::atomic::AtomicUsize,
    answered: Arc<Notify>,
    /// Requests sent through the outbox, and the calls they carried.
    pub(super) requests: std::sync::atomic::AtomicU64,
    pub(super) calls: std::sync::atomic::AtomicU64,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls waiting to be sent.
    pub(super) fn waiting(&self) -> usize {
        self.lock().len()
    }
}

impl Client {
    /// Queues the calls (in order) and returns where their answers will arrive, one per call.
    pub(super) fn enqueue(
        &self,
        calls: Vec<(BatchCall, Retry)>,
    ) -> Vec<oneshot::Receiver<Result<Response, CallError>>> {
        let outbox = &self.inner.outbox;
        let mut receivers = Vec::with_capacity(calls.len());
        {
            let mut queue = outbox.lock();
            for (call, retry) in calls {
                let (reply, receiver) = oneshot::channel();
                queue.push_back(Queued { call, retry, reply });
                receivers.push(receiver);
            }
        }
        self.ensure_dispatcher();
        outbox.queued.notify_one();
        receivers
    }

    fn ensure_dispatcher(&self) {
        let running = &self.inner.outbox.running;
        if running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let guard = Running(running.clone());
            let inner = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                let _guard = guard;
                dispatch(inner).await;
            });
        }
    }

    /// Waits until the bucket would give a token now (without taking it).
    async fn turn(&self) {
        let bucket = &self.inner.bucket;
        loop {
            match bucket.with(|core| core.ready(tokio::time::Instant::now())) {
                Ok(()) => return,
                Err(Wait::For(wait)) => tokio::time::sleep(wait).await,
                Err(Wait::Answer) => bucket.answered_or(Duration::from_secs(1)).await,
            }
        }
    }

    /// Under load (the bucket more than half full), a request that is not full waits for more
    /// calls, at most one drain step of the bucket (`1 / rate`, at most a second): the token
    /// it would spend is worth a full batch. Below half, nothing waits: a quiet portal answers
    /// single deals at once.
    async fn fill_under_load(&self) {
        let outbox = &self.inner.outbox;
        let bucket = &self.inner.bucket;
        let now = tokio::time::Instant::now();
        let (under_load, rate) = bucket.with(|core| {
            (
                core.level(now) + 1.0 > (core.capacity() / 2.0).max(1.0),
                core.rate(),
            )
        });
        if !under_load {
            return;
        }
        let until = now + Duration::from_secs_f64((1.0 / rate.max(0.001)).min(1.0));
        while outbox.waiting() < BATCH_LIMIT {
            let queued = outbox.queued.clone();
            tokio::select! {
                _ = queued.notified() => {}
                _ = tokio::time::sleep_until(until) => return,
            }
        }
    }

    /// While a request of the outbox is in flight, a request that is not full waits for more
    /// calls until it is full or nothing is in flight any more (Nagle's rule): calls that come
    /// in a stream (the rounds of events arriving one by one) then share requests instead of
    /// each spending a token, and a single call on a quiet portal still goes at once.
    async fn fill_while_in_flight(&self) {
        let outbox = &self.inner.outbox;
        while outbox.waiting() < BATCH_LIMIT && outbox.in_flight.load(Ordering::Acquire) > 0 {
            let (queued, answered) = (outbox.queued.clone(), outbox.answered.clone());
            let (queued, answered) = (queued.notified(), answered.notified());
            tokio::pin!(queued, answered);
            answered.as_mut().enable();
            queued.as_mut().enable();
            if outbox.waiting() >= BATCH_LIMIT || outbox.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::select! {
                _ = queued => {}
                _ = answered => {}
            }
        }
    }

    /// Up to a full batch from the head of the queue, after the linger when fewer are there.
    async fn take_batch(&self) -> Vec<Queued> {
        let outbox = &self.inner.outbox;
        let started = tokio::time::Instant::now();
        let mut seen = outbox.waiting();
        while seen < BATCH_LIMIT && started.elapsed() < LINGER {
            tokio::time::sleep(QUIET).await;
            let now = outbox.waiting();
            if now == seen {
                break;
            }
            seen = now;
        }
        let taken: Vec<Queued> = {
            let mut queue = outbox.lock();
            let n = queue.len().min(BATCH_LIMIT);
            queue.drain(..n).collect()
        };
        outbox.taken.notify_waiters();
        taken
    }

    /// Calls queued for the portal and not yet sent.
    #[must_use]
    pub fn calls_waiting(&self) -> usize {
        self.inner.outbox.waiting()
    }

    /// Returns once fewer calls than a full batch wait to be sent: a caller with more work
    /// (the worker, before it takes more deals) then adds to the next request instead of
    /// queueing behind several. At once when there is room.
    pub async fn until_outbox_has_room(&self) {
        let outbox = &self.inner.outbox;
        loop {
            let taken = outbox.taken.notified();
            if outbox.waiting() < BATCH_LIMIT {
                return;
            }
            taken.await;
        }
    }

    /// Sends one request of queued calls and hands each answer to its caller; `took` is told
    /// once the request has its token.
    async fn send_batch(&self, batch: Vec<Queued>, took: oneshot::Sender<()>) {
        let retry = if batch.iter().all(|q| q.retry == Retry::Safe) {
            Retry::Safe
        } else {
            Retry::Unsafe
        };
        let (calls, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .enumerate()
            .map(|(i, q)| ((i, q.call), q.reply))
            .unzip();
        let outbox = &self.inner.outbox;
        outbox.requests.fetch_add(1, Ordering::Relaxed);
        outbox
            .calls
            .fetch_add(calls.len() as u64, Ordering::Relaxed);
        let permit = self.inner.bucket.acquire().await;
        outbox.in_flight.fetch_add(1, Ordering::AcqRel);
        let _ = took.send(());
        let answers = self.batch_chunk(calls, retry, Some(permit)).await;
        outbox.in_flight.fetch_sub(1, Ordering::AcqRel);
        outbox.answered.notify_waiters();
        for ((_, result), reply) in answers.into_iter().zip(replies) {
            // A caller that stopped waiting (its task was cancelled) no longer needs it.
            let _ = reply.send(result);
        }
    }
}

/// Marks the dispatcher gone when its task ends, however it ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The dispatcher: waits for calls, then for the bucket's turn, then sends up to a full batch
/// in a task of its own (requests overlap, as many as the bucket's window lets go) and goes on.
/// Ends when the client is gone.
async fn dispatch(inner: Weak<Inner>) {
    loop {
        let Some(client) = inner.upgrade().map(|inner| Client { inner }) else {
            return;
        };
        if client.inner.outbox.waiting() == 0 {
            // Hold no strong reference while idle: the client may be dropped meanwhile. The
            // timeout only notices that; a queued call wakes the dispatcher at once.
            // (`notify_one` keeps its wake-up for a dispatcher not yet waiting: none is lost.)
            let queued = client.inner.outbox.queued.clone();
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(5), queued.notified()).await;
            continue;
        }
        client.turn().await;
        client.fill_while_in_flight().await;
        client.fill_under_load().await;
        let batch = client.take_batch().await;
        if batch.is_empty() {
            continue;
        }
        let sender = client.clone();
        let (took, token_taken) = oneshot::channel();
        tokio::spawn(async move { sender.send_batch(batch, took).await });
        // The next turn is judged once this request holds its token.
        let _ = token_taken.await;
    }
}
