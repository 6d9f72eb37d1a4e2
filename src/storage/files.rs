//! Reading and writing the data files by offset.
//!
//! An op first computes every byte it will change as a [`WriteSet`], then
//! commits it in one step. Keeping the change as a value (not as writes
//! scattered through the op) is the seam for crash atomicity: a journal can
//! record the whole set before any file is touched.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::layout::FileId;

/// Mode of files wooter creates: only the server's user reads them.
pub const FILE_MODE: u32 = 0o600;

/// Opens a file of wooter's own (the raft log, the journal) to read and
/// write, creating it `0600` if missing, never truncating it.
pub fn open_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}

/// Open handles kept, in all; opening and closing a file per request cost
/// more than the read itself (see `docs/performance.md`).
const CACHED_HANDLES: usize = 4096;
const SHARDS: usize = 16;

/// The data directory's files, with a bounded cache of open handles.
#[derive(Debug)]
pub struct DataFiles {
    root: PathBuf,
    handles: Vec<Mutex<HashMap<FileId, Arc<File>>>>,
}

/// One change: `bytes` at `offset` of `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The file.
    pub file: FileId,
    /// Byte offset.
    pub offset: u64,
    /// New bytes.
    pub bytes: Vec<u8>,
}

/// Every change one op makes, in order: files to create (with their initial
/// contents), then writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteSet {
    /// Files created, with their full initial contents.
    pub creates: Vec<(FileId, Vec<u8>)>,
    /// Writes into existing (or just created) files.
    pub writes: Vec<Write>,
}

impl WriteSet {
    /// Creates `file` with its blank contents.
    pub fn create_blank(&mut self, file: FileId) {
        self.creates.push((file, file.blank_contents()));
    }

    /// Creates `file` holding `bytes`.
    pub fn create_with(&mut self, file: FileId, bytes: Vec<u8>) {
        self.creates.push((file, bytes));
    }

    /// Writes `bytes` at `offset` of `file`.
    pub fn write(&mut self, file: FileId, offset: u64, bytes: Vec<u8>) {
        self.writes.push(Write { file, offset, bytes });
    }

    /// Whether `file` is created by this set.
    pub fn creates_file(&self, file: FileId) -> bool {
        self.creates.iter().any(|(f, _)| *f == file)
    }
}

impl DataFiles {
    /// The files under `root`.
    pub fn new(root: &Path) -> DataFiles {
        DataFiles {
            root: root.to_path_buf(),
            handles: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, file: FileId) -> std::sync::MutexGuard<'_, HashMap<FileId, Arc<File>>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        file.hash(&mut h);
        self.handles[h.finish() as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, file: FileId, handle: Arc<File>) {
        let mut shard = self.shard(file);
        if shard.len() >= CACHED_HANDLES / SHARDS {
            // Crude but bounded: forget the shard. Handles still in use stay
            // open through their Arcs until their users finish.
            shard.clear();
        }
        shard.insert(file, handle);
    }

    /// An open read-write handle of `file`; with `create`, the file is
    /// created (empty) if missing. `None` if it does not exist.
    fn handle(&self, file: FileId, create: bool) -> io::Result<Option<Arc<File>>> {
        if let Some(h) = self.shard(file).get(&file) {
            return Ok(Some(h.clone()));
        }
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(FILE_MODE)
            .open(file.path(&self.root));
        match opened {
            Ok(f) => {
                let f = Arc::new(f);
                self.remember(file, f.clone());
                Ok(Some(f))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            // A read-only file (an old directory copied without write
            // bits) can still be read; it is not cached, so a write to it
            // fails with the real error.
            Err(e) if e.kind() == ErrorKind::PermissionDenied && !create => self.open(file).map(|f| f.map(Arc::new)),
            Err(e) => Err(e),
        }
    }

    /// Forgets every cached handle (the files were replaced by others of
    /// the same names).
    pub fn forget_handles(&self) {
        for shard in &self.handles {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open(&self, file: FileId) -> io::Result<Option<File>> {
        match File::open(file.path(&self.root)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads up to `len` bytes at `offset`; `None` if the file does not
    /// exist. A short file yields fewer bytes.
    pub fn read_at(&self, file: FileId, offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        let Some(f) = self.handle(file, false)? else {
            return Ok(None);
        };
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match f.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(Some(buf))
    }

    /// Reads a whole file; `None` if it does not exist.
    pub fn read_all(&self, file: FileId) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(file.path(&self.root)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether a file exists.
    pub fn exists(&self, file: FileId) -> bool {
        self.shard(file).contains_key(&file) || file.path(&self.root).exists()
    }

    /// The file's length, if it exists.
    pub fn len(&self, file: FileId) -> io::Result<Option<u64>> {
        if let Some(h) = self.shard(file).get(&file) {
            return h.metadata().map(|m| Some(m.len()));
        }
        match std::fs::metadata(file.path(&self.root)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the file exists at its full length. A shorter one (left by a
    /// full disk or a crash mid-create) must be completed before use, or
    /// writes at their offsets would leave holes of NUL bytes.
    pub fn is_whole(&self, file: FileId) -> io::Result<bool> {
        let len = self.len(file)?;
        Ok(match (len, file.expected_len()) {
            (Some(len), Some(expected)) => len >= expected,
            (Some(len), None) => len > 0,
            (None, _) => false,
        })
    }

    /// Applies a write set: creates, then writes, in order. A "create" of
    /// a file that exists never truncates it: a file shorter than its
    /// initial contents gets only their missing tail, so whatever it holds
    /// is kept and its length becomes whole.
    pub fn commit(&self, set: &WriteSet) -> io::Result<()> {
        for (file, bytes) in &set.creates {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(FILE_MODE)
                .open(file.path(&self.root))?;
            let len = f.metadata()?.len() as usize;
            if len < bytes.len() {
                f.write_all_at(&bytes[len..], len as u64)?;
            }
            self.remember(*file, Arc::new(f));
        }
        for w in &set.writes {
            super::faults::check("data-write")?;
            let f = self
                .handle(w.file, true)?
                .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "file vanished"))?;
            f.write_all_at(&w.bytes, w.offset)?;
        }
        Ok(())
    }
}
