//! The persister thread: the only writer of the raft log.
//!
//! It appends each `Ready`'s entries and hard state to the [`Wal`] and
//! syncs, several `Ready`s per sync when they queue up (group commit), then
//! reports the highest `Ready` number it made durable. It also records
//! membership changes, and rewrites the log behind a snapshot (compaction,
//! or a snapshot received from the leader, whose install it then hands to
//! the applier: the log must say "starts after snapshot S" before the data
//! directory is swapped, see `snapshot`).

use crossbeam_channel::{Receiver, Sender};
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use super::applier::ApplyJob;
use super::membership::AddressBook;
use super::node::{Event, RaftError};
use super::snapshot::Descriptor;
use super::wal::{LogState, Wal};
use crate::wake_queue::WakeQueue;

/// A snapshot the log is to start after.
pub struct LogSnapshot {
    /// Its index, term and conf state.
    pub meta: SnapshotMetadata,
    /// Its file's size and checksum, and its address book.
    pub descriptor: Descriptor,
    /// The state to write after it.
    pub now: LogState,
}

/// Work for the persister, in order.
pub enum PersistJob {
    /// A `Ready`'s entries and hard state.
    Ready {
        /// The `Ready`'s number.
        number: u64,
        /// New entries.
        entries: Vec<Entry>,
        /// The hard state, if it changed.
        hard_state: Option<HardState>,
    },
    /// A `Ready` carrying a snapshot from the leader: rewrite the log to
    /// start after it, then have the applier install `path`.
    Restore {
        /// The `Ready`'s number.
        number: u64,
        /// The snapshot and what follows it.
        snapshot: LogSnapshot,
        /// The snapshot file.
        path: std::path::PathBuf,
    },
    /// Membership changed (a conf change was applied).
    Members(ConfState, AddressBook),
    /// A snapshot was cut here: rewrite the log to start after it.
    Compact(LogSnapshot),
}

/// Runs the persister until the loop drops its sender.
pub fn run(mut wal: Wal, jobs: Receiver<PersistJob>, events: &WakeQueue<Event>, apply: Sender<ApplyJob>) {
    let mut next = jobs.recv().ok();
    while let Some(job) = next.take() {
        let result = match job {
            PersistJob::Ready {
                number,
                mut entries,
                mut hard_state,
            } => {
                // Group commit: every plain Ready queued meanwhile goes in
                // the same sync.
                let mut number = number;
                while let Ok(more) = jobs.try_recv() {
                    match more {
                        PersistJob::Ready {
                            number: n,
                            entries: e,
                            hard_state: h,
                        } => {
                            number = n;
                            entries.extend(e);
                            if h.is_some() {
                                hard_state = h;
                            }
                        }
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                wal.persist(&entries, hard_state.as_ref())
                    .map(|()| events.push(Event::Persisted(number)))
            }
            PersistJob::Restore { number, snapshot, path } => {
                wal.rewrite(&snapshot.meta, &snapshot.descriptor, &snapshot.now)
                    .map(|()| {
                        // Before the Ready counts as persisted: entries after
                        // the snapshot reach the applier only after this.
                        let _ = apply.send(ApplyJob::Install {
                            meta: snapshot.meta,
                            book: snapshot.descriptor.book,
                            path,
                        });
                        events.push(Event::Persisted(number));
                    })
            }
            PersistJob::Members(cs, book) => wal.persist_members(&cs, &book),
            PersistJob::Compact(snapshot) => {
                wal.rewrite(&snapshot.meta, &snapshot.descriptor, &snapshot.now)
                    .map(|()| {
                        log::debug!("raft log rewritten to start after snapshot {}", snapshot.meta.index);
                    })
            }
        };
        if let Err(e) = result {
            log::error!("raft log write failed: {e}; this RM stops taking part");
            events.push(Event::Failed(RaftError::Log(e)));
            return;
        }
        if next.is_none() {
            next = jobs.recv().ok();
        }
    }
}
