//! Group commit: one thread makes the store durable for everyone who is waiting.
//!
//! Every acknowledged event needs a flush before its 200. A flush per request, each on its own
//! blocking thread, spends the machine on thread wake-ups and lock hand-offs (sled's flushes
//! serialise anyway). Here a request sends a one-shot reply channel to the flusher thread and
//! awaits it; the thread takes every request that is waiting, flushes once, and answers all of
//! them. A request is answered only by a flush that started after it was sent, so what it wrote
//! before asking is on disk when it gets its answer.

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<(), sled::Error>>;

pub(super) struct Flusher {
    requests: Option<mpsc::Sender<Reply>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub(super) fn start(db: sled::Db) -> std::io::Result<Flusher> {
        let (tx, rx) = mpsc::channel::<Reply>();
        let thread = std::thread::Builder::new()
            .name("b24-robot-flush".into())
            .spawn(move || {
                // Ends when every sender is gone (the store was dropped).
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = db.flush().map(|_| ());
                    for reply in waiting {
                        let _ = reply.send(result.clone());
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
        let sent = match self.requests.as_ref() {
            Some(requests) => requests.send(tx).map_err(|_| stopped()),
            None => Err(sled::Error::Unsupported("the store is closing".into())),
        };
        async move {
            sent?;
            rx.await.map_err(|_| stopped())?
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
