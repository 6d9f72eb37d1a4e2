//! What raft-rs reads the log from: its `MemStorage` for entries and
//! state, with our snapshots in place of its own.
//!
//! `MemStorage::snapshot` makes a data-less snapshot at the commit index,
//! which is no use to an RM that must receive the data. Here `snapshot`
//! hands out the newest snapshot this RM has cut (or installed), whose
//! data is a [`super::snapshot::Descriptor`] of the file; when there is
//! none yet, or it predates the peer's membership, raft is told to try
//! later and the applier is asked for a fresh one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLockReadGuard, RwLockWriteGuard};

use raft::eraftpb::{Entry, Snapshot};
use raft::storage::{MemStorage, MemStorageCore};
use raft::{GetEntriesContext, RaftState, StorageError};

/// The log and state raft-rs reads.
pub struct LogStorage {
    mem: MemStorage,
    latest: Option<Snapshot>,
    wanted: AtomicBool,
}

impl LogStorage {
    /// A storage around `mem`.
    pub fn new(mem: MemStorage) -> LogStorage {
        LogStorage {
            mem,
            latest: None,
            wanted: AtomicBool::new(false),
        }
    }

    /// Write access to the entries and state.
    pub fn wl(&self) -> RwLockWriteGuard<'_, MemStorageCore> {
        self.mem.wl()
    }

    /// Read access to the entries and state.
    pub fn rl(&self) -> RwLockReadGuard<'_, MemStorageCore> {
        self.mem.rl()
    }

    /// The newest snapshot, if any.
    pub fn latest(&self) -> Option<&Snapshot> {
        self.latest.as_ref()
    }

    /// Makes `snap` the one handed to peers that need a snapshot.
    pub fn set_latest(&mut self, snap: Snapshot) {
        if self
            .latest
            .as_ref()
            .is_none_or(|l| l.get_metadata().index <= snap.get_metadata().index)
        {
            self.latest = Some(snap);
        }
    }

    /// Whether raft asked for a snapshot it could not have since the last
    /// call.
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::SeqCst)
    }
}

impl raft::Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        match self.mem.term(idx) {
            // The entry the log starts after is the newest snapshot's,
            // whose term is known even once the entry is gone.
            Err(raft::Error::Store(StorageError::Compacted)) => match &self.latest {
                Some(s) if s.get_metadata().index == idx => Ok(s.get_metadata().term),
                _ => Err(raft::Error::Store(StorageError::Compacted)),
            },
            other => other,
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let usable = self.latest.as_ref().filter(|s| {
            let meta = s.get_metadata();
            let cs = meta.get_conf_state();
            meta.index >= request_index && cs.voters.iter().chain(&cs.learners).any(|id| *id == to)
        });
        match usable {
            Some(s) => Ok(s.clone()),
            None => {
                self.wanted.store(true, Ordering::SeqCst);
                Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
            }
        }
    }
}
