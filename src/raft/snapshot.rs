//! Snapshots: a consistent image of the data directory at one applied
//! index, in one checksummed file, and how it replaces a data directory.
//!
//! The applier is the only thread that changes the data files, so between
//! two ops the files *are* the state at the last applied index: a snapshot
//! is cut there by copying them, with no lock held against readers.
//!
//! File layout (integers big-endian):
//!
//! ```text
//! "WOOTSNAP" | version u32 = 1 | index u64 | term u64
//! | conf state: len u32, protobuf | address book: len u32, text
//! | file count u32 | per file: path len u16, path ("users/u_0.txt"), len u64, bytes
//! | crc32 of everything before it, u32
//! ```
//!
//! The raft `Snapshot` message carries only a [`Descriptor`] (size,
//! checksum, address book); the file itself is streamed over the RM link
//! in chunks (`server::snapshot_transfer`).
//!
//! Installing one (on an RM that fell behind, or a new RM) is crash-safe:
//! the file is unpacked into `raft/install/` and checked as it goes, each
//! folder synced, and only once it checked out whole are the five folders
//! swapped in by renames. The raft log
//! records the snapshot before the swap starts, and the apply journal
//! records its index only after the swap ends, so an RM that crashes
//! midway finds, at its next start, a log ahead of its data and installs
//! the same file again; a crash before the swap leaves the old directory
//! untouched.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, SnapshotMetadata};

use super::membership::{self, AddressBook};
use crate::storage::files::open_private;
use crate::storage::layout::FOLDERS;

const MAGIC: &[u8; 8] = b"WOOTSNAP";
const VERSION: u32 = 1;
const DESCRIPTOR_MAGIC: &[u8; 4] = b"WSD1";

/// What the raft `Snapshot` message carries in its data: enough for the
/// receiver to fetch and check the file, and to know every RM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The file's length in bytes.
    pub size: u64,
    /// crc32 of the whole file.
    pub crc: u32,
    /// Every RM at the snapshot's index.
    pub book: AddressBook,
}

impl Descriptor {
    /// The bytes put in `Snapshot.data`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = DESCRIPTOR_MAGIC.to_vec();
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.crc.to_be_bytes());
        out.extend(membership::encode(&self.book));
        out
    }

    /// Reads what [`Descriptor::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Option<Descriptor> {
        let rest = bytes.strip_prefix(DESCRIPTOR_MAGIC)?;
        let size = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let crc = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?);
        let book = membership::decode(rest.get(12..)?).ok()?;
        Some(Descriptor { size, crc, book })
    }
}

/// A snapshot file's header.
#[derive(Debug, Clone)]
pub struct Header {
    /// The raft index and term it stands for, and the conf state then.
    pub meta: SnapshotMetadata,
    /// Every RM then.
    pub book: AddressBook,
}

/// Where the snapshot of `index` at `term` lives under `dir`.
pub fn path_of(dir: &Path, index: u64, term: u64) -> PathBuf {
    dir.join(format!("snap-{index}-{term}.wsnap"))
}

/// The (index, term) a snapshot file name stands for.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (index, term) = name.strip_prefix("snap-")?.strip_suffix(".wsnap")?.split_once('-')?;
    Some((index.parse().ok()?, term.parse().ok()?))
}

/// Every finished snapshot file in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some((index, term)) = name.to_str().and_then(parse_name) {
            found.push((index, term, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Deletes every snapshot file in `dir` but the `keep` newest.
pub fn prune(dir: &Path, keep: usize) {
    if let Ok(found) = list(dir) {
        let old = found.len().saturating_sub(keep);
        for (_, _, path) in found.into_iter().take(old) {
            let _ = fs::remove_file(path);
        }
    }
}

/// Deletes half-written snapshot files (at start: no transfer or cut is
/// under way then).
pub fn remove_partials(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".partial")) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// A writer that keeps the crc32 of what went through it.
struct Summed<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The data files of `root`, as (path under root, full path), in a fixed
/// order: every RM lists the same files alike.
fn data_files(root: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for folder in FOLDERS {
        let mut names: Vec<String> = match fs::read_dir(root.join(folder)) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        names.sort();
        for name in names {
            files.push((format!("{folder}/{name}"), root.join(folder).join(&name)));
        }
    }
    Ok(files)
}

/// Writes a snapshot of the data directory `root` as it is now (the caller
/// guarantees nothing changes it meanwhile) into `dir`. Returns the file
/// and its descriptor.
pub fn build(
    root: &Path,
    dir: &Path,
    meta: &SnapshotMetadata,
    book: &AddressBook,
) -> io::Result<(PathBuf, Descriptor)> {
    crate::storage::create_private_dir(dir)?;
    let final_path = path_of(dir, meta.index, meta.term);
    let partial = final_path.with_extension("partial");
    let file = open_private(&partial)?;
    file.set_len(0)?;
    let mut out = Summed {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
        len: 0,
    };
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_be_bytes())?;
    out.write_all(&meta.index.to_be_bytes())?;
    out.write_all(&meta.term.to_be_bytes())?;
    let cs = meta.get_conf_state().write_to_bytes().map_err(io::Error::other)?;
    out.write_all(&(cs.len() as u32).to_be_bytes())?;
    out.write_all(&cs)?;
    let book_bytes = membership::encode(book);
    out.write_all(&(book_bytes.len() as u32).to_be_bytes())?;
    out.write_all(&book_bytes)?;
    let files = data_files(root)?;
    out.write_all(&(files.len() as u32).to_be_bytes())?;
    for (name, path) in &files {
        let bytes = fs::read(path)?;
        out.write_all(&(name.len() as u16).to_be_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&(bytes.len() as u64).to_be_bytes())?;
        out.write_all(&bytes)?;
    }
    let crc = out.hasher.clone().finalize();
    out.write_all(&crc.to_be_bytes())?;
    let size = out.len;
    // The descriptor's checksum covers the whole file, trailer included.
    let whole_crc = out.hasher.clone().finalize();
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fs::rename(&partial, &final_path)?;
    sync_dir(dir)?;
    Ok((
        final_path,
        Descriptor {
            size,
            crc: whole_crc,
            book: book.clone(),
        },
    ))
}

/// Syncs a directory, so that renames and new files in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn bad(detail: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail.into())
}

/// A reader of a snapshot file that checks its trailing crc as it goes.
struct SnapshotReader {
    reader: BufReader<File>,
    hasher: crc32fast::Hasher,
    left: u64,
}

impl SnapshotReader {
    fn open(path: &Path) -> io::Result<SnapshotReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len < 8 + 4 + 16 + 4 + 4 + 4 + 4 {
            return Err(bad("snapshot file too short"));
        }
        Ok(SnapshotReader {
            reader: BufReader::with_capacity(1 << 20, file),
            hasher: crc32fast::Hasher::new(),
            left: len - 4,
        })
    }

    fn bytes(&mut self, n: u64) -> io::Result<Vec<u8>> {
        if n > self.left {
            return Err(bad("snapshot file ends early"));
        }
        let mut buf = vec![0u8; n as usize];
        self.reader.read_exact(&mut buf)?;
        self.hasher.update(&buf);
        self.left -= n;
        Ok(buf)
    }

    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_be_bytes(self.bytes(2)?.try_into().map_err(|_| bad("u16"))?))
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(self.bytes(4)?.try_into().map_err(|_| bad("u32"))?))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(self.bytes(8)?.try_into().map_err(|_| bad("u64"))?))
    }

    fn header(&mut self) -> io::Result<Header> {
        if self.bytes(8)? != MAGIC {
            return Err(bad("not a wooter snapshot"));
        }
        if self.u32()? != VERSION {
            return Err(bad("unknown snapshot version"));
        }
        let mut meta = SnapshotMetadata {
            index: self.u64()?,
            term: self.u64()?,
            ..Default::default()
        };
        let n = self.u32()?;
        let cs = ConfState::parse_from_bytes(&self.bytes(n as u64)?).map_err(|_| bad("bad conf state"))?;
        meta.set_conf_state(cs);
        let n = self.u32()?;
        let book = membership::decode(&self.bytes(n as u64)?).map_err(|e| bad(e.to_string()))?;
        Ok(Header { meta, book })
    }

    /// Reads the next file: its folder, name and bytes.
    fn next_file(&mut self) -> io::Result<(&'static str, String, Vec<u8>)> {
        let n = self.u16()?;
        let name = String::from_utf8(self.bytes(n as u64)?).map_err(|_| bad("file name not UTF-8"))?;
        let (folder, file) = name.split_once('/').ok_or_else(|| bad("file outside the folders"))?;
        // A snapshot names only plain files directly in the five folders:
        // nothing it holds can land anywhere else.
        let folder = FOLDERS
            .iter()
            .find(|f| **f == folder)
            .ok_or_else(|| bad(format!("unknown folder in '{name}'")))?;
        if file.is_empty() || file.contains('/') || file.starts_with('.') || file.contains('\0') {
            return Err(bad(format!("bad file name '{name}'")));
        }
        let len = self.u64()?;
        let bytes = self.bytes(len)?;
        Ok((folder, file.to_string(), bytes))
    }

    fn finish(mut self) -> io::Result<()> {
        if self.left != 0 {
            return Err(bad("snapshot file has bytes after its last data file"));
        }
        let mut sum = [0u8; 4];
        self.reader.read_exact(&mut sum)?;
        if u32::from_be_bytes(sum) != self.hasher.finalize() {
            return Err(bad("snapshot checksum mismatch"));
        }
        Ok(())
    }
}

/// Reads a whole snapshot file and checks it; returns its header.
#[cfg(test)]
fn verify(path: &Path) -> io::Result<Header> {
    walk(path, |_, _, _| Ok(()))
}

fn walk(path: &Path, mut each: impl FnMut(&str, &str, &[u8]) -> io::Result<()>) -> io::Result<Header> {
    let mut r = SnapshotReader::open(path)?;
    let header = r.header()?;
    let count = r.u32()?;
    for _ in 0..count {
        let (folder, name, bytes) = r.next_file()?;
        each(folder, &name, &bytes)?;
    }
    r.finish()?;
    Ok(header)
}

/// Unpacks the snapshot at `path` into `raft_dir/install` with every file
/// and folder synced, checking it as it goes (names as they come, the
/// checksum at the end: one read of the file). Returns its header. Nothing
/// of the live directory changes; a bad file leaves no staging behind.
pub fn stage(path: &Path, raft_dir: &Path) -> io::Result<Header> {
    let staging = raft_dir.join("install");
    clean_leftovers(raft_dir);
    for folder in FOLDERS {
        crate::storage::create_private_dir(&staging.join(folder))?;
    }
    let unpacked = walk(path, |folder, name, bytes| {
        let mut f = open_private(&staging.join(folder).join(name))?;
        f.write_all(bytes)?;
        f.sync_data()
    });
    let header = match unpacked {
        Ok(h) => h,
        Err(e) => {
            clean_leftovers(raft_dir);
            return Err(e);
        }
    };
    for folder in FOLDERS {
        sync_dir(&staging.join(folder))?;
    }
    Ok(header)
}

/// Swaps the five staged folders in for those of `root`, by renames (the
/// old ones are moved aside, then deleted).
pub fn swap_in(root: &Path, raft_dir: &Path) -> io::Result<()> {
    let staging = raft_dir.join("install");
    let old = raft_dir.join("install.old");
    crate::storage::create_private_dir(&old)?;
    for folder in FOLDERS {
        // The tests cut an install short here, between two folders.
        crate::storage::faults::check("snapshot-swap")?;
        let current = root.join(folder);
        if current.exists() {
            fs::rename(&current, old.join(folder))?;
        }
        fs::rename(staging.join(folder), &current)?;
    }
    sync_dir(root)?;
    clean_leftovers(raft_dir);
    Ok(())
}

/// [`stage`] then [`swap_in`]: for a directory no server has open.
pub fn install(path: &Path, root: &Path, raft_dir: &Path) -> io::Result<Header> {
    let header = stage(path, raft_dir)?;
    swap_in(root, raft_dir)?;
    Ok(header)
}

/// Removes what an install a crash interrupted left behind (the start of
/// an RM calls it; the raft log decides whether to install again).
pub fn clean_leftovers(raft_dir: &Path) {
    let _ = fs::remove_dir_all(raft_dir.join("install"));
    let _ = fs::remove_dir_all(raft_dir.join("install.old"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wooter-snap-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_snapshot_round_trips_and_a_flipped_byte_is_caught() {
        let src = scratch("src");
        for folder in FOLDERS {
            fs::create_dir_all(src.join(folder)).unwrap();
        }
        fs::write(src.join("users/u_0.txt"), b"hello").unwrap();
        fs::write(src.join("woots/w_r0c0.txt"), vec![b'x'; 5000]).unwrap();
        let mut meta = SnapshotMetadata {
            index: 42,
            term: 3,
            ..Default::default()
        };
        meta.mut_conf_state().voters = vec![1, 2];
        let mut book = AddressBook::new();
        book.insert(
            1,
            membership::RmAddrs::from_client("127.0.0.1:5000".parse().unwrap()).unwrap(),
        );
        let (path, desc) = build(&src, &src.join("raft/snapshots"), &meta, &book).unwrap();
        assert_eq!(desc.size, fs::metadata(&path).unwrap().len());
        assert_eq!(Descriptor::decode(&desc.encode()), Some(desc.clone()));
        assert_eq!(list(&src.join("raft/snapshots")).unwrap()[0].0, 42);

        let dst = scratch("dst");
        fs::create_dir_all(dst.join("users")).unwrap();
        fs::write(dst.join("users/u_9.txt"), b"old").unwrap();
        let header = install(&path, &dst, &dst.join("raft")).unwrap();
        assert_eq!(header.meta.index, 42);
        assert_eq!(header.meta.get_conf_state().voters, vec![1, 2]);
        assert_eq!(header.book, book);
        assert_eq!(fs::read(dst.join("users/u_0.txt")).unwrap(), b"hello");
        assert!(!dst.join("users/u_9.txt").exists(), "the old folder is replaced whole");
        assert_eq!(fs::read(dst.join("woots/w_r0c0.txt")).unwrap().len(), 5000);

        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 100;
        bytes[at] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(verify(&path).is_err());
        assert!(install(&path, &dst, &dst.join("raft")).is_err());
        assert_eq!(
            fs::read(dst.join("users/u_0.txt")).unwrap(),
            b"hello",
            "a bad file changes nothing"
        );
        let _ = fs::remove_dir_all(&src);
        let _ = fs::remove_dir_all(&dst);
    }
}
