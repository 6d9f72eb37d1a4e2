//! The worker pool: file work off the event loop.
//!
//! The loop sends a [`Job`] (a parsed request and the connection it came
//! from); a worker runs it against the store, encodes the reply in the
//! connection's framing, queues a [`Completion`] and wakes the loop through
//! its `mio::Waker`. The loop itself never touches the disk.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use std::thread::JoinHandle;

use mio::{Token, Waker};

use crate::command::Request;
use crate::protocol::{legacy, text, Framing};
use crate::storage::{Store, StoreError};
use crate::wake_queue::WakeQueue;

/// Whom a reply goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client connection of this RM.
    Client {
        /// The connection's slab token.
        token: Token,
        /// The connection's serial number: tokens are reused, serials are not.
        serial: u64,
    },
    /// A request another RM forwarded to this one (the leader).
    Peer {
        /// The RM that forwarded it.
        rm: u64,
        /// That RM's id for the request.
        req_id: u64,
    },
}

/// A request to run for a connection.
pub struct Job {
    /// Whom the reply goes to.
    pub origin: Origin,
    /// How to encode the reply.
    pub framing: Framing,
    /// What to run.
    pub request: Request,
}

/// A finished job's reply bytes.
pub struct Completion {
    /// Whom the reply goes to.
    pub origin: Origin,
    /// The reply, ready to write.
    pub reply: Vec<u8>,
}

/// Worker threads sharing one job queue.
pub struct WorkerPool {
    jobs: Option<Sender<Job>>,
    done: Arc<WakeQueue<Completion>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `n` workers on `store`; each finished job wakes `waker`.
    pub fn start(n: usize, store: Arc<Store>, waker: Arc<Waker>) -> std::io::Result<WorkerPool> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let done = Arc::new(WakeQueue::new(waker));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let (rx, done, store) = (rx.clone(), done.clone(), store.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("wooter-worker-{i}"))
                    .spawn(move || work(&rx, &done, &store))?,
            );
        }
        Ok(WorkerPool {
            jobs: Some(tx),
            done,
            threads,
        })
    }

    /// Queues a job.
    pub fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // A send fails only when every worker has exited, which happens
            // only at shutdown; the job's connection is then dropped.
            let _ = jobs.send(job);
        }
    }

    /// Takes every completion queued so far.
    pub fn take_completed(&self) -> Vec<Completion> {
        self.done.take()
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn work(rx: &Receiver<Job>, done: &WakeQueue<Completion>, store: &Store) {
    while let Ok(job) = rx.recv() {
        done.push(run(job, store));
    }
}

/// Runs one job and encodes its reply.
fn run(job: Job, store: &Store) -> Completion {
    let result = catch_unwind(AssertUnwindSafe(|| job.request.execute(store))).unwrap_or_else(|_| {
        log::error!(
            "{}: the request panicked; answered as a storage error",
            job.request.name()
        );
        Err(StoreError::Io(std::io::Error::other("internal error")))
    });
    if let Err(e) = &result {
        match e {
            StoreError::Io(_) | StoreError::Corrupt { .. } => log::error!("{}: {e}", job.request.name()),
            // A miss, a taken name, a bad value: the client's answer, not
            // the operator's concern.
            _ => log::debug!("{} ({}): {e}", job.request.name(), job.framing.as_str()),
        }
    }
    let reply = match job.framing {
        Framing::Legacy => legacy::encode_reply(&result),
        Framing::Text => text::encode_reply(&result),
    };
    Completion {
        origin: job.origin,
        reply,
    }
}
