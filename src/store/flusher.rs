//! Group commit: one thread makes the store durable for everyone who is waiting.
//!
//! Every acknowledged event needs a flush before its 200. A flush per request, each on its own
//! blocking thread, spends the machine on thread wake-ups and lock hand-offs (sled's flushes
//! serialise anyway). Here a request sends a one-shot reply channel to the flusher thread and
//! awaits it; the thread takes every request that is waiting, flushes once, and answers all of
//! them. A request is answered only by a flush that started after it was sent, so what it wrote
//! before asking is on disk when it gets its answer.
//!
//! A request is a one-shot channel ([`Flusher::request`]) or a callback ([`Flusher::then`]).
//! (The intake's recorder thread flushes its batches itself: see `record_events_then_flush`.)
//! A callback must hold no part of the store: the flusher thread must never be the one that drops
//! the last handle of the database (dropping it joins this very thread).

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// Who waits for a flush, answered with its outcome.
type Waiter = Box<dyn FnOnce(Result<(), sled::Error>) + Send>;

pub(super) struct Flusher {
    requests: Option<mpsc::Sender<Waiter>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub(super) fn start(db: sled::Db) -> std::io::Result<Flusher> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let thread = std::thread::Builder::new()
            .name("b24-robot-flush".into())
            .spawn(move || {
                // Ends when every sender is gone (the store was dropped).
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = db.flush().map(|_| ());
                    for waiter in waiting {
                        waiter(result.clone());
                    }
                }
            })?;
        Ok(Flusher {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    /// Asks for a flush; the answer comes once everything written before the call is durable
    /// (or the flush failed). The request is sent now: the future holds no part of the store.
    pub(super) fn request(&self) -> impl Future<Output = Result<(), sled::Error>> + use<> {
        let (tx, rx) = oneshot::channel();
        self.then(move |result| {
            let _ = tx.send(result);
        });
        async move { rx.await.map_err(|_| stopped())? }
    }

    /// Asks for a flush and calls `waiter` with its outcome, on the flusher thread, once
    /// everything written before the call is durable (at once, with the error, when the flusher
    /// has stopped). `waiter` must be quick and must hold no part of the store.
    pub(super) fn then(&self, waiter: impl FnOnce(Result<(), sled::Error>) + Send + 'static) {
        let Some(requests) = self.requests.as_ref() else {
            waiter(Err(sled::Error::Unsupported("the store is closing".into())));
            return;
        };
        if let Err(mpsc::SendError(waiter)) = requests.send(Box::new(waiter)) {
            waiter(Err(stopped()));
        }
    }
}

fn stopped() -> sled::Error {
    sled::Error::Unsupported("the flusher thread has stopped".into())
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Close the channel, then wait for the thread: it holds the database, whose file lock
        // must be released before the store can be opened again (a restart in the same process).
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
