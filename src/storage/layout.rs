//! Where every byte lives in a legacy data directory.
//!
//! The old server's files are fixed-width text, so every value has an offset
//! that can be computed from a user id alone. This module is the one place
//! that knows those shapes (reference §2); everything else asks it for a
//! [`FileId`] and an offset.

use std::path::{Path, PathBuf};

/// Users per row: user `i` lives in row `i / 10`, slot `i % 10`.
pub const SLOTS_PER_ROW: u32 = 10;
/// Rows served at most (100 million users): a user file numbered beyond
/// is refused, so a stray `users/u_4000000000.txt` cannot make the index
/// (one entry per row) take gigabytes.
pub const MAX_ROWS: u32 = 10_000_000;
/// A user record line: 259 bytes and `\n`.
pub const USER_LINE: usize = 260;
/// Width of one id in a follow list file.
pub const ID_WIDTH: usize = 11;
/// Ids per line (per user) in one follow list column file.
pub const IDS_PER_LINE: u32 = 10;
/// One line of a follow list file: 10 ids of 11 bytes and `\n`.
pub const LIST_LINE: usize = ID_WIDTH * IDS_PER_LINE as usize + 1;
/// One stored woot: text (100), space, timestamp (22), space.
pub const WOOT_LEN: usize = 124;
/// Woots per line (per user) in one woot column file.
pub const WOOTS_PER_LINE: u32 = 10;
/// One line of a woot file: 10 woots and `\n`.
pub const WOOT_LINE: usize = WOOT_LEN * WOOTS_PER_LINE as usize + 1;

/// The row and slot of a user id.
pub fn row_slot(id: u32) -> (u32, u32) {
    (id / SLOTS_PER_ROW, id % SLOTS_PER_ROW)
}

/// Which of a user's two follow lists a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListKind {
    /// The users this user follows (`flwes/fe_rRcC.txt`).
    Followees,
    /// The users who follow this user (`flwrs/fr_rRcC.txt`).
    Followers,
}

impl ListKind {
    /// The word the protocols use for this list.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Followees => "followees",
            ListKind::Followers => "followers",
        }
    }

    /// Parses the protocols' word for a list.
    pub fn parse(word: &[u8]) -> Option<ListKind> {
        match word {
            b"followees" => Some(ListKind::Followees),
            b"followers" => Some(ListKind::Followers),
            _ => None,
        }
    }
}

/// One data file. The derived order is the global lock order
/// (`docs/concurrency.md`): fids, then user files by row, then followee
/// files, follower files and woot files, each by row and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileId {
    /// `fids/fids.txt`: free slots per row.
    Fids,
    /// `users/u_R.txt`.
    Users(u32),
    /// `flwes/fe_rRcC.txt` or `flwrs/fr_rRcC.txt`.
    List {
        /// Which list.
        kind: ListKind,
        /// Row of the users whose lists these are.
        row: u32,
        /// Column file number.
        col: u32,
    },
    /// `woots/w_rRcC.txt`.
    Woots {
        /// Row of the users whose woots these are.
        row: u32,
        /// Column file number.
        col: u32,
    },
}

/// The five folders of a data directory.
pub const FOLDERS: [&str; 5] = ["users", "fids", "flwes", "flwrs", "woots"];

impl FileId {
    /// The file's path under the data directory `root`.
    pub fn path(&self, root: &Path) -> PathBuf {
        match *self {
            FileId::Fids => root.join("fids").join("fids.txt"),
            FileId::Users(row) => root.join("users").join(format!("u_{row}.txt")),
            FileId::List {
                kind: ListKind::Followees,
                row,
                col,
            } => root.join("flwes").join(format!("fe_r{row}c{col}.txt")),
            FileId::List {
                kind: ListKind::Followers,
                row,
                col,
            } => root.join("flwrs").join(format!("fr_r{row}c{col}.txt")),
            FileId::Woots { row, col } => root.join("woots").join(format!("w_r{row}c{col}.txt")),
        }
    }

    /// What a new file holds: ten blank lines of the file's line shape. The
    /// fids file is special (reference §2) and is created by the create op.
    pub fn blank_contents(&self) -> Vec<u8> {
        let line = match self {
            FileId::Fids => return Vec::new(),
            FileId::Users(_) => USER_LINE,
            FileId::List { .. } => LIST_LINE,
            FileId::Woots { .. } => WOOT_LINE,
        };
        let mut bytes = vec![b' '; line * SLOTS_PER_ROW as usize];
        for slot in 1..=SLOTS_PER_ROW as usize {
            bytes[slot * line - 1] = b'\n';
        }
        bytes
    }

    /// The length every file of this kind has (fids varies).
    pub fn expected_len(&self) -> Option<u64> {
        match self {
            FileId::Fids => None,
            _ => Some(self.blank_contents().len() as u64),
        }
    }
}

/// Byte offset of a user's record in its user file.
pub fn user_offset(slot: u32) -> u64 {
    slot as u64 * USER_LINE as u64
}

/// File and byte offset of position `index` (0 = first) of a user's list.
pub fn list_place(kind: ListKind, id: u32, index: u32) -> (FileId, u64) {
    let (row, slot) = row_slot(id);
    let col = index / IDS_PER_LINE;
    let place = index % IDS_PER_LINE;
    let offset = slot as u64 * LIST_LINE as u64 + place as u64 * ID_WIDTH as u64;
    (FileId::List { kind, row, col }, offset)
}

/// File and byte offset of a user's woot number `k` (0 = first).
pub fn woot_place(id: u32, k: u32) -> (FileId, u64) {
    let (row, slot) = row_slot(id);
    let col = k / WOOTS_PER_LINE;
    let place = k % WOOTS_PER_LINE;
    let offset = slot as u64 * WOOT_LINE as u64 + place as u64 * WOOT_LEN as u64;
    (FileId::Woots { row, col }, offset)
}

/// Offset of a row's digit in the fids file.
pub fn fids_offset(row: u32) -> u64 {
    2 * row as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sizes_match_the_reference() {
        assert_eq!(FileId::Users(0).blank_contents().len(), 2600);
        let list = FileId::List {
            kind: ListKind::Followers,
            row: 0,
            col: 0,
        };
        assert_eq!(list.blank_contents().len(), 1110);
        assert_eq!(FileId::Woots { row: 0, col: 0 }.blank_contents().len(), 12410);
    }

    #[test]
    fn places_follow_columns() {
        let (file, off) = list_place(ListKind::Followees, 13, 12);
        assert_eq!(
            file,
            FileId::List {
                kind: ListKind::Followees,
                row: 1,
                col: 1
            }
        );
        assert_eq!(off, 3 * 111 + 2 * 11);
        let (file, off) = woot_place(1, 23);
        assert_eq!(file, FileId::Woots { row: 0, col: 2 });
        assert_eq!(off, 1241 + 3 * 124);
    }
}
