//! The applier thread: the only writer of the data directory in an RM.
//!
//! It applies committed entries in log order (each op's write set
//! journalled first, see `storage::journal`), cuts a snapshot every
//! `--snapshot-every` entries (or when asked), and installs snapshots
//! received from the leader. Because it is the only writer, the data files
//! between two of its ops are exactly the state at the last applied index,
//! which is what a snapshot must be.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use raft::eraftpb::{ConfState, Entry, EntryType, Snapshot, SnapshotMetadata};

use super::membership::AddressBook;
use super::node::{parse_context, Applied, Event, RaftError};
use super::snapshot;
use crate::storage::{Op, Store, StoreError};
use crate::wake_queue::WakeQueue;

/// Work for the applier, in log order.
pub enum ApplyJob {
    /// Committed entries; with the membership in force after them when a
    /// conf change is among them.
    Entries {
        /// The entries.
        entries: Vec<Entry>,
        /// Conf state and address book after the last of them, if changed.
        membership: Option<(ConfState, AddressBook)>,
    },
    /// Cut a snapshot now (if anything was applied since the last one).
    Build,
    /// Replace the data with this snapshot file (its raft log record is
    /// already durable).
    Install {
        /// Index, term and conf state.
        meta: SnapshotMetadata,
        /// Address book.
        book: AddressBook,
        /// The verified file.
        path: PathBuf,
    },
}

/// What the applier knows of the state it has applied.
pub struct ApplierState {
    /// Highest index applied, and its term.
    pub applied: (u64, u64),
    /// Membership at `applied`.
    pub conf_state: ConfState,
    /// Addresses at `applied`.
    pub book: AddressBook,
    /// Index of the newest snapshot cut or installed.
    pub last_snapshot: u64,
    /// Cut a snapshot after this many entries (0: only when asked).
    pub every: u64,
    /// The raft directory (snapshots live in its `snapshots/`).
    pub raft_dir: PathBuf,
}

/// Snapshot files kept: the newest, and two before it that a transfer in
/// progress may still be reading.
const SNAPSHOTS_KEPT: usize = 3;

/// Runs the applier until the loop drops its sender.
pub fn run(store: &Arc<Store>, jobs: Receiver<ApplyJob>, events: &WakeQueue<Event>, mut state: ApplierState) {
    while let Ok(job) = jobs.recv() {
        let outcome = match job {
            ApplyJob::Entries { entries, membership } => {
                let result = apply_entries(store, entries, events, &mut state);
                if let Some((cs, book)) = membership {
                    state.conf_state = cs;
                    state.book = book;
                }
                result.and_then(|()| {
                    let due = state.every > 0 && state.applied.0 >= state.last_snapshot + state.every;
                    if due {
                        build(store, events, &mut state)
                    } else {
                        Ok(())
                    }
                })
            }
            ApplyJob::Build => build(store, events, &mut state),
            ApplyJob::Install { meta, book, path } => install(store, events, &mut state, meta, book, path),
        };
        if let Err(e) = outcome {
            log::error!("{e}; this RM stops taking part");
            events.push(Event::Failed(e));
            return;
        }
    }
}

fn apply_entries(
    store: &Store,
    batch: Vec<Entry>,
    events: &WakeQueue<Event>,
    state: &mut ApplierState,
) -> Result<(), RaftError> {
    let mut applied = Vec::with_capacity(batch.len());
    for entry in batch {
        let index = entry.index;
        if index <= state.applied.0 {
            continue; // already in the data (a snapshot covered it)
        }
        let proposal = parse_context(&entry.context);
        state.applied = (index, entry.term);
        if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
            applied.push(Applied {
                index,
                proposal,
                result: None,
            });
            continue;
        }
        let result = match Op::decode(&entry.data) {
            Ok(op) => store.apply_logged(index, &op),
            Err(e) => {
                log::error!("log entry {index} is not an op ({e}); skipped on every RM alike");
                Err(StoreError::Corrupt {
                    file: PathBuf::from("raft/log"),
                    detail: e.to_string(),
                })
            }
        };
        if let Err(StoreError::Io(e)) = result {
            events.push(Event::Applied(applied));
            return Err(RaftError::Apply {
                index,
                source: StoreError::Io(e),
            });
        }
        applied.push(Applied {
            index,
            proposal,
            result: Some(result),
        });
    }
    events.push(Event::Applied(applied));
    Ok(())
}

fn build(store: &Store, events: &WakeQueue<Event>, state: &mut ApplierState) -> Result<(), RaftError> {
    let (index, term) = state.applied;
    if index == 0 || term == 0 || index <= state.last_snapshot {
        events.push(Event::SnapshotSkipped);
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut meta = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    meta.set_conf_state(state.conf_state.clone());
    let dir = state.raft_dir.join("snapshots");
    let (path, descriptor) = snapshot::build(store.root(), &dir, &meta, &state.book).map_err(RaftError::Snapshot)?;
    state.last_snapshot = index;
    snapshot::prune(&dir, SNAPSHOTS_KEPT);
    log::info!(
        "snapshot of applied index {index} (term {term}) cut: {} bytes in {} ms, {}",
        descriptor.size,
        started.elapsed().as_millis(),
        path.display()
    );
    let snap = Snapshot {
        data: descriptor.encode().into(),
        metadata: Some(meta).into(),
        ..Default::default()
    };
    events.push(Event::SnapshotBuilt(snap));
    Ok(())
}

fn install(
    store: &Store,
    events: &WakeQueue<Event>,
    state: &mut ApplierState,
    meta: SnapshotMetadata,
    book: AddressBook,
    path: PathBuf,
) -> Result<(), RaftError> {
    let started = std::time::Instant::now();
    let index = meta.index;
    let root = store.root().to_path_buf();
    let raft_dir = state.raft_dir.clone();
    snapshot::stage(&path, &raft_dir).map_err(RaftError::Snapshot)?;
    store
        .install(index, || snapshot::swap_in(&root, &raft_dir))
        .map_err(|source| RaftError::Apply { index, source })?;
    log::info!(
        "snapshot of index {index} (term {}) installed in {} ms: the data directory now holds {} users",
        meta.term,
        started.elapsed().as_millis(),
        store.user_count()
    );
    state.applied = (index, meta.term);
    state.conf_state = meta.get_conf_state().clone();
    state.book = book;
    state.last_snapshot = index;
    snapshot::prune(&state.raft_dir.join("snapshots"), SNAPSHOTS_KEPT);
    events.push(Event::Installed(index));
    Ok(())
}
