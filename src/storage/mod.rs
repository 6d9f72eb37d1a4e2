//! The data directory: the old server's fixed-width files, read and written
//! in place, under per-file locks.
//!
//! - [`layout`]: which file and offset holds each value;
//! - [`record`]: the user record and the woot, as bytes;
//! - [`catalog`]: the in-memory username index and free slots;
//! - [`locks`]: one lock per file, taken in one order;
//! - [`files`]: reads, and changes as write sets;
//! - [`op`]: every change to the data, as a deterministic [`Op`];
//! - [`query`]: every read, as a [`Query`];
//! - [`check`]: the consistency checker behind `wooter check`;
//! - [`dump`]: export and import as JSON lines.

pub mod catalog;
pub mod check;
pub mod dump;
pub mod error;
pub mod faults;
pub mod files;
pub mod journal;
pub mod layout;
pub mod locks;
pub mod op;
pub mod op_codec;
pub mod query;
pub mod record;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use parking_lot::RwLock;

pub use error::StoreError;
pub use op::Op;
pub use query::Query;

use catalog::Catalog;
use files::DataFiles;
use journal::Journal;
use layout::{list_place, row_slot, FileId, ListKind, FOLDERS, IDS_PER_LINE, ID_WIDTH, USER_LINE};
use locks::{LockTable, Mode};
use record::{parse_number, trim, UserRecord, Username, Woot, RECORD_LEN};

/// What a query or an op answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// One user.
    User(UserRecord),
    /// Two users (follow, unfollow): the first, then the second.
    Pair(UserRecord, UserRecord),
    /// User ids of a follow list.
    Ids(Vec<u32>),
    /// Woots, in the order asked for.
    Woots(Vec<Woot>),
    /// A yes or no.
    Bool(bool),
}

/// A data directory opened for serving.
pub struct Store {
    files: DataFiles,
    catalog: RwLock<Catalog>,
    locks: LockTable,
    /// Every user record's 259 stored bytes, by id: the user files, written
    /// through. Reads of a record (every request makes at least one) come
    /// from here, so they cost no file open and no read.
    records: RwLock<Vec<Option<Box<[u8]>>>>,
    /// In a replicated RM, every op's write set is journalled first.
    journal: Option<Mutex<Journal>>,
    /// The log index of the op being applied by [`Store::apply_logged`]
    /// (0: none; the applier is the only caller, one op at a time).
    applying: AtomicU64,
    /// Queries hold it shared; swapping in a snapshot holds it alone, so
    /// no query sees half of the old directory and half of the new.
    swap: RwLock<()>,
}

/// The username index and record cache built from the user files.
struct Index {
    catalog: Catalog,
    records: Vec<Option<Box<[u8]>>>,
}

/// What a data directory holds, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Registered users.
    pub users: u64,
    /// Follow relations (each counted once, by its follower).
    pub follows: u64,
    /// Woots.
    pub woots: u64,
}

/// A position in a follow list, and what it holds.
#[derive(Debug, Clone, Copy)]
struct ListEntry {
    index: u32,
    id: Option<u32>,
}

impl Store {
    /// Opens (creating if needed) the data directory at `root` and builds
    /// the username index from its user files.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for folder in FOLDERS {
            create_private_dir(&root.join(folder))?;
        }
        let files = DataFiles::new(root);
        let Index { catalog, records } = build_index(root, &files)?;
        Ok(Store {
            files,
            catalog: RwLock::new(catalog),
            locks: LockTable::default(),
            records: RwLock::new(records),
            journal: None,
            applying: AtomicU64::new(0),
            swap: RwLock::new(()),
        })
    }

    /// Replaces the data directory's five folders by running `swap_in`
    /// (the renames of a staged snapshot), with every query held off, then
    /// rebuilds the index and records `index` as applied. Only the applier
    /// calls it, between ops.
    pub fn install(&self, index: u64, swap_in: impl FnOnce() -> std::io::Result<()>) -> Result<(), StoreError> {
        let _alone = self.swap.write();
        swap_in()?;
        self.files.forget_handles();
        let Index { catalog, records } = build_index(self.files.root(), &self.files)?;
        *self.catalog.write() = catalog;
        *self.records.write() = records;
        if let Some(journal) = &self.journal {
            journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(index, &files::WriteSet::default())?;
        }
        Ok(())
    }

    /// Holds off a snapshot swap while a query runs.
    pub(crate) fn reading(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.swap.read()
    }
}

/// Reads every user file into the username index and record cache.
fn build_index(root: &Path, files: &DataFiles) -> Result<Index, StoreError> {
    let mut catalog = Catalog::default();
    let mut records = Vec::new();
    let rows = user_file_rows(root)?;
    if let Some(&row) = rows.last().filter(|r| **r >= layout::MAX_ROWS) {
        return Err(StoreError::Corrupt {
            file: FileId::Users(row).path(root),
            detail: format!(
                "a user file numbered beyond the {} rows ({} users) wooter serves",
                layout::MAX_ROWS,
                u64::from(layout::MAX_ROWS) * u64::from(layout::SLOTS_PER_ROW)
            ),
        });
    }
    for &row in &rows {
        let Some(bytes) = files.read_all(FileId::Users(row))? else {
            continue;
        };
        catalog.ensure_rows(row + 1);
        if bytes.len() < USER_LINE * layout::SLOTS_PER_ROW as usize {
            log::warn!(
                "users/u_{row}.txt is {} bytes, not 2600: its missing end will be completed blank",
                bytes.len()
            );
        }
        for (slot, line) in bytes.chunks(USER_LINE).enumerate().take(layout::SLOTS_PER_ROW as usize) {
            let id = row * layout::SLOTS_PER_ROW + slot as u32;
            match UserRecord::decode(line) {
                Ok(Some(user)) => {
                    if records.len() <= id as usize {
                        records.resize(id as usize + 1, None);
                    }
                    records[id as usize] = Some(line[..RECORD_LEN].into());
                    if !catalog.insert(&user.username, id) {
                        log::warn!(
                            "user file row {row}: username {} at id {id} is already used; the first is served",
                            user.username.display()
                        );
                    }
                }
                Ok(None) => {}
                Err(e) => log::warn!("user file row {row} slot {slot}: unreadable record ({e}); slot left alone"),
            }
        }
    }
    let missing: Vec<u32> = (0..catalog.rows())
        .filter(|row| rows.binary_search(row).is_err())
        .collect();
    for row in missing.iter().take(10) {
        log::warn!("users/u_{row}.txt is missing: row {row} is served as empty");
    }
    if missing.len() > 10 {
        log::warn!(
            "{} more user files are missing (rows served as empty)",
            missing.len() - 10
        );
    }
    if let Some(fids) = files.read_all(FileId::Fids)? {
        let digits = fids
            .chunks(2)
            .take(catalog.rows() as usize)
            .map(|pair| pair.first().filter(|d| d.is_ascii_digit()).map(|d| d - b'0'))
            .collect();
        catalog.set_fids(digits);
    }
    Ok(Index { catalog, records })
}

impl Store {
    /// Opens the data directory of a replicated RM: first finishes the op a
    /// crash may have interrupted (from the journal at `journal_path`), then
    /// opens as [`Store::open`] does. Returns the store and the log index of
    /// the last op applied (0 if none).
    pub fn open_logged(root: &Path, journal_path: &Path) -> Result<(Store, u64), StoreError> {
        let (journal, newest) = Journal::open(journal_path)?;
        let applied = match newest {
            Some((index, set)) => {
                for folder in FOLDERS {
                    create_private_dir(&root.join(folder))?;
                }
                DataFiles::new(root).commit(&set)?;
                index
            }
            None => 0,
        };
        let mut store = Store::open(root)?;
        store.journal = Some(Mutex::new(journal));
        Ok((store, applied))
    }

    /// Applies the op at log index `index`: its write set is journalled
    /// (and synced) before any data file changes.
    pub fn apply_logged(&self, index: u64, op: &Op) -> Result<Answer, StoreError> {
        self.applying.store(index, Ordering::SeqCst);
        let result = self.apply(op);
        self.applying.store(0, Ordering::SeqCst);
        result
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        self.files.root()
    }

    /// Number of registered users.
    pub fn user_count(&self) -> usize {
        self.catalog.read().len()
    }

    /// Users, follows and woots, from the user records' counters (a walk
    /// of the record cache: about 1.5 ms per 10,000 users).
    pub fn totals(&self) -> Totals {
        let records = self.records.read();
        let mut t = Totals::default();
        for bytes in records.iter().flatten() {
            if let Ok(Some(user)) = UserRecord::decode(bytes) {
                t.users += 1;
                t.follows += u64::from(user.followees);
                t.woots += u64::from(user.woots);
            }
        }
        t
    }

    fn lookup(&self, name: &Username) -> Result<u32, StoreError> {
        self.catalog
            .read()
            .lookup(name)
            .ok_or_else(|| StoreError::NoSuchUser(name.display()))
    }

    fn corrupt(&self, file: FileId, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            file: file.path(self.files.root()),
            detail: detail.into(),
        }
    }

    /// User `id`'s record, from the record cache. Writers update the cache
    /// right after the file, under the user file's write lock, so a writer
    /// holding that lock reads what is on disk, and a reader sees a record
    /// only once it is on disk.
    fn load_user(&self, id: u32) -> Result<Option<UserRecord>, StoreError> {
        let records = self.records.read();
        let Some(Some(bytes)) = records.get(id as usize) else {
            return Ok(None);
        };
        let file = FileId::Users(row_slot(id).0);
        match UserRecord::decode(bytes) {
            Ok(Some(user)) if user.id != id => Err(self.corrupt(file, format!("slot of id {id} holds id {}", user.id))),
            Ok(found) => Ok(found),
            Err(e) => Err(self.corrupt(file, format!("record of id {id}: {e}"))),
        }
    }

    /// Commits an op's write set, then brings the record cache up to date
    /// with the user records it wrote.
    fn commit(&self, set: &files::WriteSet) -> Result<(), StoreError> {
        let index = self.applying.load(Ordering::SeqCst);
        if let (Some(journal), true) = (&self.journal, index != 0) {
            journal.lock().unwrap_or_else(|e| e.into_inner()).record(index, set)?;
        }
        self.files.commit(set)?;
        let mut records = self.records.write();
        for w in &set.writes {
            if let FileId::Users(row) = w.file {
                let id = (row * layout::SLOTS_PER_ROW + (w.offset / USER_LINE as u64) as u32) as usize;
                if records.len() <= id {
                    records.resize(id + 1, None);
                }
                records[id] = Some(w.bytes[..RECORD_LEN.min(w.bytes.len())].into());
            }
        }
        Ok(())
    }

    /// Reads a user known to the catalog, as an error if it vanished.
    fn load_known_user(&self, id: u32) -> Result<UserRecord, StoreError> {
        self.load_user(id)?
            .ok_or_else(|| self.corrupt(FileId::Users(row_slot(id).0), format!("indexed id {id} is blank")))
    }

    /// Walks user `id`'s list of `kind` position by position, column file by
    /// column file, until `visit` returns false or the columns end. With
    /// `lock`, each column file is read under its read lock (readers); a
    /// writer holding the user's row lock reads without (see
    /// `docs/concurrency.md`).
    fn walk_list(
        &self,
        kind: ListKind,
        id: u32,
        lock: bool,
        mut visit: impl FnMut(ListEntry) -> bool,
    ) -> Result<(), StoreError> {
        for col in 0.. {
            let (file, offset) = list_place(kind, id, col * IDS_PER_LINE);
            let _held = lock.then(|| self.locks.acquire(Mode::Read, &[file]));
            let Some(line) = self.files.read_at(file, offset, ID_WIDTH * IDS_PER_LINE as usize)? else {
                return Ok(());
            };
            for (place, cell) in line.chunks(ID_WIDTH).enumerate() {
                let cell = trim(cell);
                let id = if cell.is_empty() {
                    None
                } else {
                    Some(parse_number("id", cell).map_err(|_| self.corrupt(file, "a list place is not an id"))?)
                };
                let entry = ListEntry {
                    index: col * IDS_PER_LINE + place as u32,
                    id,
                };
                if !visit(entry) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// The rows of every `users/u_R.txt` present, ascending (a missing file
/// does not hide the ones after it).
fn user_file_rows(root: &Path) -> std::io::Result<Vec<u32>> {
    let mut rows: Vec<u32> = std::fs::read_dir(root.join("users"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_prefix("u_")?.strip_suffix(".txt")?.parse().ok()
        })
        .collect();
    rows.sort_unstable();
    Ok(rows)
}

/// Creates a directory and its missing parents, each `0700`.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}
