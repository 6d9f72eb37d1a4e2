//! The apply journal: makes applying a logged op atomic across a crash and
//! its log index durable.
//!
//! Before an op's write set touches any data file, the set and the op's log
//! index are written to the journal and synced. After a crash, the newest
//! whole record is written again (the writes are absolute bytes at
//! offsets, so writing them twice is the same as once), and its index is
//! the applied index: the op is then either entirely applied or not begun,
//! and the replicated log replays exactly the ops after it.
//!
//! Two slots are used in turn (by index parity), so a write torn by a crash
//! spoils only the record being written, never the one before it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::files::{open_private, Write, WriteSet};
use super::layout::{FileId, ListKind};

/// Bytes reserved per slot; a write set is a few kilobytes at most.
const SLOT: u64 = 1 << 20;

/// The open journal.
pub struct Journal {
    file: File,
}

fn put_file(out: &mut Vec<u8>, f: FileId) {
    let (kind, row, col) = match f {
        FileId::Fids => (0u8, 0, 0),
        FileId::Users(r) => (1, r, 0),
        FileId::List {
            kind: ListKind::Followees,
            row,
            col,
        } => (2, row, col),
        FileId::List {
            kind: ListKind::Followers,
            row,
            col,
        } => (3, row, col),
        FileId::Woots { row, col } => (4, row, col),
    };
    out.push(kind);
    out.extend_from_slice(&row.to_be_bytes());
    out.extend_from_slice(&col.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Encodes a record: `len (u32) | crc (u32) | index (u64) | creates | writes`.
fn encode(index: u64, set: &WriteSet) -> Vec<u8> {
    let mut body = index.to_be_bytes().to_vec();
    body.extend_from_slice(&(set.creates.len() as u32).to_be_bytes());
    for (f, bytes) in &set.creates {
        put_file(&mut body, *f);
        put_bytes(&mut body, bytes);
    }
    body.extend_from_slice(&(set.writes.len() as u32).to_be_bytes());
    for w in &set.writes {
        put_file(&mut body, w.file);
        body.extend_from_slice(&w.offset.to_be_bytes());
        put_bytes(&mut body, &w.bytes);
    }
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend(body);
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }
    fn file(&mut self) -> Option<FileId> {
        let kind = self.take(1)?[0];
        let (row, col) = (self.u32()?, self.u32()?);
        Some(match kind {
            0 => FileId::Fids,
            1 => FileId::Users(row),
            2 => FileId::List {
                kind: ListKind::Followees,
                row,
                col,
            },
            3 => FileId::List {
                kind: ListKind::Followers,
                row,
                col,
            },
            4 => FileId::Woots { row, col },
            _ => return None,
        })
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        self.take(n).map(<[u8]>::to_vec)
    }
}

fn decode(slot: &[u8]) -> Option<(u64, WriteSet)> {
    let mut r = Reader(slot);
    let len = r.u32()? as usize;
    let sum = r.u32()?;
    let body = r.take(len)?;
    if crc32fast::hash(body) != sum {
        return None;
    }
    let mut r = Reader(body);
    let index = r.u64()?;
    let mut set = WriteSet::default();
    for _ in 0..r.u32()? {
        let f = r.file()?;
        set.creates.push((f, r.bytes()?));
    }
    for _ in 0..r.u32()? {
        let file = r.file()?;
        let offset = r.u64()?;
        set.writes.push(Write {
            file,
            offset,
            bytes: r.bytes()?,
        });
    }
    Some((index, set))
}

impl Journal {
    /// Opens the journal at `path`; returns it and its newest whole record.
    pub fn open(path: &Path) -> io::Result<(Journal, Option<(u64, WriteSet)>)> {
        let file = open_private(path)?;
        let len = file.metadata()?.len();
        let mut newest: Option<(u64, WriteSet)> = None;
        for slot in 0..2u64 {
            if slot * SLOT >= len {
                continue;
            }
            let mut buf = vec![0u8; (len - slot * SLOT).min(SLOT) as usize];
            file.read_exact_at(&mut buf, slot * SLOT)?;
            if let Some((index, set)) = decode(&buf) {
                if newest.as_ref().is_none_or(|(i, _)| index > *i) {
                    newest = Some((index, set));
                }
            }
        }
        Ok((Journal { file }, newest))
    }

    /// Records op `index`'s write set and syncs it, before it is applied.
    pub fn record(&mut self, index: u64, set: &WriteSet) -> io::Result<()> {
        let bytes = encode(index, set);
        if bytes.len() as u64 > SLOT {
            return Err(io::Error::other("write set larger than a journal slot"));
        }
        self.file.write_all_at(&bytes, (index % 2) * SLOT)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_whole_record_wins_and_a_torn_one_is_ignored() {
        let dir = std::env::temp_dir().join(format!("wooter-journal-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("j");
        let _ = std::fs::remove_file(&path);
        let mut set = WriteSet::default();
        set.create_blank(FileId::Users(3));
        set.write(FileId::Woots { row: 1, col: 2 }, 99, b"abc".to_vec());
        {
            let (mut j, none) = Journal::open(&path).unwrap();
            assert!(none.is_none());
            j.record(7, &set).unwrap();
            j.record(8, &WriteSet::default()).unwrap();
        }
        let (_, newest) = Journal::open(&path).unwrap();
        assert_eq!(newest.map(|(i, _)| i), Some(8));
        // Tear record 8: record 7 remains.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&[0xff; 12], 0)
            .unwrap();
        let (_, newest) = Journal::open(&path).unwrap();
        let (i, s) = newest.unwrap();
        assert_eq!((i, s), (7, set));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
