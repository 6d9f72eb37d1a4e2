//! One reader-writer lock per data file, always taken in one order.
//!
//! The order is [`FileId`]'s derived order (fids, user files, followee
//! files, follower files, woot files). A thread may take more locks while it
//! holds some, but only of files that sort after every file it holds; debug
//! builds check that. `docs/concurrency.md` explains why this cannot
//! deadlock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use parking_lot::lock_api::{ArcRwLockReadGuard, ArcRwLockWriteGuard};
use parking_lot::{RawRwLock, RwLock};

use super::layout::FileId;

const SHARDS: usize = 32;

/// The lock of every data file, created on first use and kept.
pub struct LockTable {
    shards: Vec<Mutex<HashMap<FileId, Arc<RwLock<()>>>>>,
}

thread_local! {
    /// Files this thread holds locks on, to check the order in debug builds.
    static HELD: RefCell<Vec<FileId>> = const { RefCell::new(Vec::new()) };
}

/// Locks held on a set of files; released when dropped.
pub struct Held {
    files: Vec<FileId>,
    _guards: Vec<Guard>,
}

/// A guard that owns its lock's `Arc`, so `Held` needs no lifetime.
enum Guard {
    Read(#[allow(dead_code)] ArcRwLockReadGuard<RawRwLock, ()>),
    Write(#[allow(dead_code)] ArcRwLockWriteGuard<RawRwLock, ()>),
}

/// Whether a lock is taken to read or to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Shared: other readers may hold it too.
    Read,
    /// Exclusive.
    Write,
}

impl Default for LockTable {
    fn default() -> Self {
        LockTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl LockTable {
    fn lock_of(&self, file: FileId) -> Arc<RwLock<()>> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        file.hash(&mut h);
        let shard = &self.shards[h.finish() as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(file).or_default().clone()
    }

    /// Takes the locks of `files` (any order given; taken ascending, each
    /// once). Every file must sort after the files this thread already holds.
    pub fn acquire(&self, mode: Mode, files: &[FileId]) -> Held {
        let mut files = files.to_vec();
        files.sort();
        files.dedup();
        HELD.with(|held| {
            let held = held.borrow();
            if let (Some(last_held), Some(first)) = (held.iter().max(), files.first()) {
                debug_assert!(first > last_held, "lock order violated: {first:?} after {last_held:?}");
            }
        });
        let guards = files
            .iter()
            .map(|&f| {
                let lock = self.lock_of(f);
                match mode {
                    Mode::Read => Guard::Read(lock.read_arc()),
                    Mode::Write => Guard::Write(lock.write_arc()),
                }
            })
            .collect();
        HELD.with(|held| held.borrow_mut().extend(files.iter().copied()));
        Held { files, _guards: guards }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with(|held| held.borrow_mut().retain(|f| !self.files.contains(f)));
    }
}
