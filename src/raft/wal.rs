//! The raft log on disk: an append-only file of checksummed records.
//!
//! Each `Ready` becomes one record (its entries and, if changed, its hard
//! state) and one `fdatasync`: many proposals, one sync (group commit). At
//! start the file is replayed into raft's in-memory storage; a torn last
//! record (a crash mid-append) fails its checksum and is cut off, which
//! loses nothing acknowledged, since nothing in it was acknowledged.
//!
//! Record: `length (u32) | crc32 of the rest (u32) | kind (u8) | payload`.
//! Kinds: entries (each a `u32` length and a protobuf `Entry`), hard state
//! (protobuf `HardState`), conf state (protobuf `ConfState`, written by
//! older versions), members (a conf state and the address book, written
//! when membership changes) and snapshot (the snapshot the log starts
//! after: its metadata and address book).
//!
//! Compaction rewrites the file: a new one starting with a snapshot
//! record, then the hard state and the entries after the snapshot, synced
//! and renamed over the old one, so the log never holds more than what
//! came after the newest snapshot (plus what arrived since).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use super::membership::{self, AddressBook};
use super::snapshot::Descriptor;

use crate::storage::files::open_private;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_MEMBERS: u8 = 4;
const KIND_SNAPSHOT: u8 = 5;
/// Largest record accepted on replay.
const MAX_RECORD: usize = 256 * 1024 * 1024;

/// What replaying the log found, in order.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Every entries record, in the order written (later ones replace the
    /// tail of earlier ones from their first index on).
    pub entries: Vec<Vec<Entry>>,
    /// The last hard state written.
    pub hard_state: Option<HardState>,
    /// The last conf state written.
    pub conf_state: Option<ConfState>,
    /// The last address book written (with a members or snapshot record).
    pub book: Option<AddressBook>,
    /// The snapshot the log starts after, if it was compacted.
    pub snapshot: Option<SnapshotMetadata>,
    /// That snapshot's descriptor (its file's size and checksum, and the
    /// address book at its index), so a start need not read the file.
    pub snapshot_descriptor: Option<Descriptor>,
    /// Bytes of a torn tail that were cut off.
    pub torn_bytes: u64,
}

/// What a rewritten log holds besides its snapshot: the state now.
#[derive(Debug, Clone, Default)]
pub struct LogState {
    /// The current membership.
    pub conf_state: ConfState,
    /// Every RM's addresses.
    pub book: AddressBook,
    /// The current hard state.
    pub hard_state: HardState,
    /// Every entry after the snapshot.
    pub entries: Vec<Entry>,
}

/// The open log file.
pub struct Wal {
    file: File,
    path: PathBuf,
    /// Each sync's duration goes here (for `/metrics`).
    sync_timer: std::sync::Arc<crate::server::metrics::SharedHistogram>,
}

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

impl Wal {
    /// Opens (or creates) the log at `path` and replays it.
    pub fn open(path: &Path) -> io::Result<(Wal, Replayed)> {
        let mut file = open_private(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut replayed = Replayed::default();
        let mut at = 0usize;
        while at + 9 <= bytes.len() {
            let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
            let sum = u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            if len == 0 || len > MAX_RECORD || at + 8 + len > bytes.len() {
                break;
            }
            let body = &bytes[at + 8..at + 8 + len];
            if crc(body) != sum {
                break;
            }
            if !apply_record(body, &mut replayed) {
                break;
            }
            at += 8 + len;
        }
        replayed.torn_bytes = (bytes.len() - at) as u64;
        if replayed.torn_bytes > 0 {
            file.set_len(at as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok((
            Wal {
                file,
                path: path.to_path_buf(),
                sync_timer: Default::default(),
            },
            replayed,
        ))
    }

    fn append_record(&mut self, kind: u8, payload: &[u8], out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(payload.len() + 1);
        body.push(kind);
        body.extend_from_slice(payload);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc(&body).to_be_bytes());
        out.extend(body);
    }

    /// Appends entries and/or a hard state and syncs them, in one write and
    /// one sync.
    pub fn persist(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> io::Result<()> {
        let mut out = Vec::new();
        if !entries.is_empty() {
            self.append_record(KIND_ENTRIES, &entries_payload(entries)?, &mut out);
        }
        if let Some(hs) = hard_state {
            let bytes = hs.write_to_bytes().map_err(io::Error::other)?;
            self.append_record(KIND_HARD_STATE, &bytes, &mut out);
        }
        if out.is_empty() {
            return Ok(());
        }
        crate::storage::faults::check("raft-log")?;
        self.file.write_all(&out)?;
        self.sync()
    }

    /// The histogram each sync's duration goes into.
    pub fn sync_timer(&self) -> std::sync::Arc<crate::server::metrics::SharedHistogram> {
        self.sync_timer.clone()
    }

    fn sync(&mut self) -> io::Result<()> {
        let started = std::time::Instant::now();
        let result = self.file.sync_data();
        self.sync_timer.observe(started.elapsed());
        result
    }

    /// Records the membership (ids and addresses) and syncs it.
    pub fn persist_members(&mut self, cs: &ConfState, book: &AddressBook) -> io::Result<()> {
        let mut out = Vec::new();
        self.append_record(KIND_MEMBERS, &members_payload(cs, book)?, &mut out);
        crate::storage::faults::check("raft-log")?;
        self.file.write_all(&out)?;
        self.sync()
    }

    /// Replaces the whole log by one that starts after `snapshot`: its
    /// record, the hard state, then `entries` (those after the snapshot).
    /// The new file is synced and renamed over the old, so a crash leaves
    /// one or the other.
    pub fn rewrite(&mut self, snapshot: &SnapshotMetadata, descriptor: &Descriptor, now: &LogState) -> io::Result<()> {
        let mut out = Vec::new();
        let meta = snapshot.write_to_bytes().map_err(io::Error::other)?;
        let mut payload = (meta.len() as u32).to_be_bytes().to_vec();
        payload.extend(meta);
        payload.extend(descriptor.encode());
        self.append_record(KIND_SNAPSHOT, &payload, &mut out);
        // Membership may have changed after the snapshot's index.
        self.append_record(KIND_MEMBERS, &members_payload(&now.conf_state, &now.book)?, &mut out);
        let (hard_state, entries) = (&now.hard_state, &now.entries);
        let hs = hard_state.write_to_bytes().map_err(io::Error::other)?;
        self.append_record(KIND_HARD_STATE, &hs, &mut out);
        if !entries.is_empty() {
            self.append_record(KIND_ENTRIES, &entries_payload(entries)?, &mut out);
        }
        crate::storage::faults::check("raft-log")?;
        let fresh = self.path.with_extension("new");
        let mut file = open_private(&fresh)?;
        file.set_len(0)?;
        file.write_all(&out)?;
        file.sync_all()?;
        std::fs::rename(&fresh, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        self.file = file;
        Ok(())
    }
}

fn members_payload(cs: &ConfState, book: &AddressBook) -> io::Result<Vec<u8>> {
    let cs = cs.write_to_bytes().map_err(io::Error::other)?;
    let mut payload = (cs.len() as u32).to_be_bytes().to_vec();
    payload.extend(cs);
    payload.extend(membership::encode(book));
    Ok(payload)
}

fn entries_payload(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    for e in entries {
        let bytes = e.write_to_bytes().map_err(io::Error::other)?;
        payload.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        payload.extend(bytes);
    }
    Ok(payload)
}

/// Splits a `u32`-length-prefixed protobuf from the text after it.
fn split_prefixed(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    Some((payload.get(4..4 + len)?, payload.get(4 + len..)?))
}

/// Adds one checksummed record to `replayed`; false if it cannot be read.
fn apply_record(body: &[u8], replayed: &mut Replayed) -> bool {
    let (kind, payload) = (body[0], &body[1..]);
    match kind {
        KIND_ENTRIES => {
            let mut entries = Vec::new();
            let mut at = 0;
            while at + 4 <= payload.len() {
                let len = u32::from_be_bytes([payload[at], payload[at + 1], payload[at + 2], payload[at + 3]]) as usize;
                let Some(bytes) = payload.get(at + 4..at + 4 + len) else {
                    return false;
                };
                let Ok(e) = Entry::parse_from_bytes(bytes) else {
                    return false;
                };
                entries.push(e);
                at += 4 + len;
            }
            replayed.entries.push(entries);
            at == payload.len()
        }
        KIND_HARD_STATE => match HardState::parse_from_bytes(payload) {
            Ok(hs) => {
                replayed.hard_state = Some(hs);
                true
            }
            Err(_) => false,
        },
        KIND_CONF_STATE => match ConfState::parse_from_bytes(payload) {
            Ok(cs) => {
                replayed.conf_state = Some(cs);
                true
            }
            Err(_) => false,
        },
        KIND_MEMBERS => {
            let Some((cs, book)) = split_prefixed(payload) else {
                return false;
            };
            match (ConfState::parse_from_bytes(cs), membership::decode(book)) {
                (Ok(cs), Ok(book)) => {
                    replayed.conf_state = Some(cs);
                    replayed.book = Some(book);
                    true
                }
                _ => false,
            }
        }
        KIND_SNAPSHOT => {
            let Some((meta, descriptor)) = split_prefixed(payload) else {
                return false;
            };
            match (SnapshotMetadata::parse_from_bytes(meta), Descriptor::decode(descriptor)) {
                (Ok(meta), Some(descriptor)) => {
                    // Everything before it is in the snapshot.
                    replayed.entries.clear();
                    replayed.conf_state = Some(meta.get_conf_state().clone());
                    replayed.book = Some(descriptor.book.clone());
                    replayed.snapshot = Some(meta);
                    replayed.snapshot_descriptor = Some(descriptor);
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn replays_what_was_persisted_and_cuts_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("wooter-wal-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        {
            let (mut wal, replayed) = Wal::open(&path).unwrap();
            assert!(replayed.entries.is_empty());
            let hs = HardState {
                term: 3,
                commit: 2,
                ..Default::default()
            };
            wal.persist(&[entry(1, 1, b"a"), entry(2, 1, b"b")], Some(&hs)).unwrap();
            wal.persist(&[entry(2, 2, b"c")], None).unwrap();
        }
        let good_len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[0, 0, 0, 50, 1, 2])
            .unwrap();
        let (_, replayed) = Wal::open(&path).unwrap();
        assert_eq!(replayed.torn_bytes, 6);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        assert_eq!(replayed.entries.len(), 2);
        assert_eq!(replayed.entries[1][0].term, 2);
        assert_eq!(replayed.hard_state.unwrap().term, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rewrite_starts_the_log_after_its_snapshot() {
        let dir = std::env::temp_dir().join(format!("wooter-wal-rewrite-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let mut book = AddressBook::new();
        book.insert(
            2,
            membership::RmAddrs::from_client("127.0.0.1:7000".parse().unwrap()).unwrap(),
        );
        {
            let (mut wal, _) = Wal::open(&path).unwrap();
            wal.persist(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")], None)
                .unwrap();
            let mut meta = SnapshotMetadata {
                index: 2,
                term: 1,
                ..Default::default()
            };
            meta.mut_conf_state().voters = vec![2];
            let hs = HardState {
                term: 1,
                commit: 3,
                ..Default::default()
            };
            let now = LogState {
                conf_state: ConfState {
                    voters: vec![2, 3],
                    ..Default::default()
                },
                book: book.clone(),
                hard_state: hs,
                entries: vec![entry(3, 1, b"c")],
            };
            let descriptor = Descriptor {
                size: 1234,
                crc: 99,
                book: book.clone(),
            };
            wal.rewrite(&meta, &descriptor, &now).unwrap();
            wal.persist(&[entry(4, 1, b"d")], None).unwrap();
        }
        let (_, replayed) = Wal::open(&path).unwrap();
        assert_eq!(replayed.snapshot.as_ref().map(|m| m.index), Some(2));
        assert_eq!(
            replayed.snapshot_descriptor.as_ref().map(|d| (d.size, d.crc)),
            Some((1234, 99))
        );
        assert_eq!(replayed.book, Some(book));
        assert_eq!(
            replayed.snapshot.as_ref().map(|m| m.get_conf_state().voters.clone()),
            Some(vec![2])
        );
        assert_eq!(
            replayed.conf_state.map(|c| c.voters),
            Some(vec![2, 3]),
            "the membership after it wins"
        );
        let indexes: Vec<u64> = replayed.entries.iter().flatten().map(|e| e.index).collect();
        assert_eq!(indexes, vec![3, 4]);
        assert_eq!(replayed.hard_state.map(|h| h.commit), Some(3));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
