//! The in-memory index: username to id, and which slots are free.
//!
//! Built once at start from the user files, then kept in step by the create
//! op (which holds the catalog's write lock while it registers, so it also
//! stands for the fids file's lock). With it, finding a user by name costs
//! the same with 10 users or 100,000, where the old server scanned every
//! user file.

use std::collections::HashMap;

use super::layout::SLOTS_PER_ROW;
use super::record::Username;

/// Username index and free-slot map.
#[derive(Debug, Default)]
pub struct Catalog {
    by_name: HashMap<Vec<u8>, u32>,
    /// Free-slot digit of each row, as the fids file holds it (`None`
    /// where it holds no digit).
    fids: Vec<Option<u8>>,
    /// Bit `s` of row `r` set when slot `s` of `u_r.txt` holds a user.
    occupied: Vec<u16>,
}

/// Where a new user goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The new user's id.
    pub id: u32,
    /// Whether the row (its user file and fids line) must be created.
    pub new_row: bool,
    /// The row's fids digit after the registration.
    pub free_after: u8,
}

impl Catalog {
    /// Number of users.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no user exists.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Number of rows (user files).
    pub fn rows(&self) -> u32 {
        self.occupied.len() as u32
    }

    /// The id of a username.
    pub fn lookup(&self, name: &Username) -> Option<u32> {
        self.by_name.get(name.as_bytes()).copied()
    }

    /// Whether slot `id` holds a user.
    pub fn is_occupied(&self, id: u32) -> bool {
        let (row, slot) = (id / SLOTS_PER_ROW, id % SLOTS_PER_ROW);
        self.occupied
            .get(row as usize)
            .is_some_and(|bits| bits & (1 << slot) != 0)
    }

    /// Records a user found on disk or just registered. Returns false (and
    /// changes nothing) when the name is already taken by another id.
    pub fn insert(&mut self, name: &Username, id: u32) -> bool {
        if self.by_name.get(name.as_bytes()).is_some_and(|&other| other != id) {
            return false;
        }
        self.by_name.insert(name.as_bytes().to_vec(), id);
        let row = (id / SLOTS_PER_ROW) as usize;
        if self.occupied.len() <= row {
            self.occupied.resize(row + 1, 0);
        }
        self.occupied[row] |= 1 << (id % SLOTS_PER_ROW);
        true
    }

    /// Makes sure `rows` rows are known (user files that exist but are blank).
    pub fn ensure_rows(&mut self, rows: u32) {
        if self.occupied.len() < rows as usize {
            self.occupied.resize(rows as usize, 0);
        }
    }

    /// Sets the fids digits read from disk (missing rows are derived).
    pub fn set_fids(&mut self, digits: Vec<Option<u8>>) {
        self.fids = digits;
    }

    /// The fids digit of every row: the stored one where the fids file has
    /// it, else the number of blank slots.
    pub fn fids_digit(&self, row: u32) -> u8 {
        match self.fids.get(row as usize) {
            Some(&Some(d)) => d,
            _ => {
                let bits = self.occupied.get(row as usize).copied().unwrap_or(0);
                (SLOTS_PER_ROW - bits.count_ones()) as u8
            }
        }
    }

    /// Chooses the slot of the next registration the way the old server
    /// did: the first row whose fids digit is not zero, its first blank slot;
    /// else a new row.
    pub fn place_next(&self) -> Placement {
        for row in 0..self.rows() {
            let digit = self.fids_digit(row);
            let bits = self.occupied[row as usize];
            if digit == 0 {
                continue;
            }
            if let Some(slot) = (0..SLOTS_PER_ROW).find(|s| bits & (1 << s) == 0) {
                return Placement {
                    id: row * SLOTS_PER_ROW + slot,
                    new_row: false,
                    free_after: digit - 1,
                };
            }
        }
        Placement {
            id: self.rows() * SLOTS_PER_ROW,
            new_row: true,
            free_after: (SLOTS_PER_ROW - 1) as u8,
        }
    }

    /// Records a registration placed by [`Catalog::place_next`].
    pub fn register(&mut self, name: &Username, placement: Placement) {
        self.insert(name, placement.id);
        let row = (placement.id / SLOTS_PER_ROW) as usize;
        if self.fids.len() <= row {
            let derived: Vec<Option<u8>> = (self.fids.len()..=row)
                .map(|r| Some(self.fids_digit(r as u32)))
                .collect();
            self.fids.extend(derived);
        }
        self.fids[row] = Some(placement.free_after);
    }
}
