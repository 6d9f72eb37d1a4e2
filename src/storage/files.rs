//! Reading and writing the data files by offset.
//!
//! An op first computes every byte it will change as a [`WriteSet`], then
//! commits it in one step. Keeping the change as a value (not as writes
//! scattered through the op) is the seam for crash atomicity: a journal can
//! record the whole set before any file is touched.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::layout::FileId;

/// Mode of files wooter creates: only the server's user reads them.
pub const FILE_MODE: u32 = 0o600;

/// The data directory's files.
#[derive(Debug, Clone)]
pub struct DataFiles {
    root: PathBuf,
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
        let Some(f) = self.open(file)? else {
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
        file.path(&self.root).exists()
    }

    /// Applies a write set: creates, then writes, in order.
    pub fn commit(&self, set: &WriteSet) -> io::Result<()> {
        for (file, bytes) in &set.creates {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(file.path(&self.root))?;
            f.write_all_at(bytes, 0)?;
        }
        for w in &set.writes {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(FILE_MODE)
                .open(w.file.path(&self.root))?;
            f.write_all_at(&w.bytes, w.offset)?;
        }
        Ok(())
    }
}
