//! `wooter check`: proves a data directory consistent, or says where not.
//!
//! The counters in each user record are what the server uses to know where
//! lists end, so they must match the list files; follows must appear on both
//! sides; ids must match their slots; the fids file must match the free
//! slots. The checker reads the files directly and never changes them.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::files::{DataFiles, Write, WriteSet};
use super::layout::{
    list_place, woot_place, FileId, ListKind, IDS_PER_LINE, ID_WIDTH, SLOTS_PER_ROW, USER_LINE, WOOT_LEN,
};
use super::record::{parse_number, trim, UserRecord};
use super::StoreError;

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    /// Users found.
    pub users: usize,
    /// Follow relationships found (followee side).
    pub follows: usize,
    /// Woots counted.
    pub woots: u64,
    /// Every inconsistency, one sentence each.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads files once each.
struct Reader {
    files: DataFiles,
    cache: HashMap<FileId, Option<Vec<u8>>>,
}

impl Reader {
    fn get(&mut self, file: FileId) -> Result<Option<&Vec<u8>>, StoreError> {
        if !self.cache.contains_key(&file) {
            let bytes = self.files.read_all(file)?;
            self.cache.insert(file, bytes);
        }
        Ok(self.cache.get(&file).and_then(Option::as_ref))
    }

    /// The ids of a user's list, in place order, with their positions.
    fn list(&mut self, kind: ListKind, id: u32, problems: &mut Vec<String>) -> Result<Vec<(u32, u32)>, StoreError> {
        let mut out = Vec::new();
        for col in 0.. {
            let (file, offset) = list_place(kind, id, col * IDS_PER_LINE);
            let Some(bytes) = self.get(file)? else { break };
            if Some(bytes.len() as u64) != file.expected_len() {
                problems.push(format!(
                    "{} has {} bytes, expected {:?}",
                    file.path(Path::new("")).display(),
                    bytes.len(),
                    file.expected_len()
                ));
            }
            let start = offset as usize;
            let line = bytes
                .get(start..start + ID_WIDTH * IDS_PER_LINE as usize)
                .unwrap_or(&[]);
            for (place, cell) in line.chunks(ID_WIDTH).enumerate() {
                let cell = trim(cell);
                if cell.is_empty() {
                    continue;
                }
                match parse_number("id", cell) {
                    Ok(v) => out.push((col * IDS_PER_LINE + place as u32, v)),
                    Err(_) => problems.push(format!("{kind:?} of user {id}: place {col}/{place} is not an id")),
                }
            }
        }
        Ok(out)
    }
}

/// Checks the data directory at `root`.
pub fn check(root: &Path) -> Result<Report, StoreError> {
    let mut reader = Reader {
        files: DataFiles::new(root),
        cache: HashMap::new(),
    };
    let mut report = Report::default();
    let mut users: HashMap<u32, UserRecord> = HashMap::new();
    let mut names = HashSet::new();
    let mut free_per_row = Vec::new();
    let mut row = 0;
    while let Some(bytes) = reader.files.read_all(FileId::Users(row))? {
        if bytes.len() != USER_LINE * SLOTS_PER_ROW as usize {
            report
                .problems
                .push(format!("users/u_{row}.txt has {} bytes, expected 2600", bytes.len()));
        }
        let mut free = 0u8;
        for slot in 0..SLOTS_PER_ROW {
            let id = row * SLOTS_PER_ROW + slot;
            let line = bytes
                .get(slot as usize * USER_LINE..(slot as usize + 1) * USER_LINE)
                .unwrap_or(&[]);
            if line.len() == USER_LINE && line[USER_LINE - 1] != b'\n' {
                report
                    .problems
                    .push(format!("user {id}: line does not end with a line break"));
            }
            match UserRecord::decode(line) {
                Ok(None) => free += 1,
                Ok(Some(user)) => {
                    if user.id != id {
                        report
                            .problems
                            .push(format!("user in slot {id} says its id is {}", user.id));
                    }
                    if !names.insert(user.username.clone()) {
                        report
                            .problems
                            .push(format!("username {} is used twice", user.username.display()));
                    }
                    users.insert(id, user);
                }
                Err(e) => {
                    report.problems.push(format!("user {id}: unreadable record: {e}"));
                }
            }
        }
        free_per_row.push(free);
        row += 1;
    }
    report.users = users.len();
    check_fids(&mut reader, &free_per_row, &mut report.problems)?;

    let mut ids: Vec<u32> = users.keys().copied().collect();
    ids.sort_unstable();
    let mut followees: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut followers: HashMap<u32, Vec<u32>> = HashMap::new();
    for &id in &ids {
        let user = &users[&id];
        let fe: Vec<u32> = reader
            .list(ListKind::Followees, id, &mut report.problems)?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let fr: Vec<u32> = reader
            .list(ListKind::Followers, id, &mut report.problems)?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        if fe.len() as u32 != user.followees {
            report.problems.push(format!(
                "user {id}: followees counter is {} but the list holds {}",
                user.followees,
                fe.len()
            ));
        }
        if fr.len() as u32 != user.followers {
            report.problems.push(format!(
                "user {id}: followers counter is {} but the list holds {}",
                user.followers,
                fr.len()
            ));
        }
        for list in [&fe, &fr] {
            let distinct: HashSet<_> = list.iter().collect();
            if distinct.len() != list.len() {
                report
                    .problems
                    .push(format!("user {id}: a follow list holds the same id twice"));
            }
            for other in list {
                if !users.contains_key(other) {
                    report
                        .problems
                        .push(format!("user {id}: a follow list names id {other}, which is no user"));
                }
            }
        }
        report.follows += fe.len();
        followees.insert(id, fe);
        followers.insert(id, fr);
        check_woots(&mut reader, user, &mut report.problems)?;
        report.woots += u64::from(user.woots);
    }
    for (&a, list) in &followees {
        for b in list {
            if !followers.get(b).is_some_and(|l| l.contains(&a)) {
                report
                    .problems
                    .push(format!("user {a} follows {b}, but {b}'s followers lack {a}"));
            }
        }
    }
    for (&b, list) in &followers {
        for a in list {
            if !followees.get(a).is_some_and(|l| l.contains(&b)) {
                report
                    .problems
                    .push(format!("user {b} lists follower {a}, but {a}'s followees lack {b}"));
            }
        }
    }
    Ok(report)
}

fn check_fids(reader: &mut Reader, free_per_row: &[u8], problems: &mut Vec<String>) -> Result<(), StoreError> {
    let rows = free_per_row.len();
    let Some(fids) = reader.get(FileId::Fids)?.cloned() else {
        if rows > 0 {
            problems.push("fids/fids.txt is missing".to_string());
        }
        return Ok(());
    };
    let expected_len = if rows == 1 { 3 } else { 2 * rows };
    if fids.len() != expected_len {
        problems.push(format!(
            "fids/fids.txt has {} bytes, expected {expected_len} for {rows} rows",
            fids.len()
        ));
    }
    for (row, &free) in free_per_row.iter().enumerate() {
        let digit = fids.get(2 * row).copied();
        if digit != Some(b'0' + free) {
            problems.push(format!(
                "fids/fids.txt says row {row} has {} free slots, the user file has {free}",
                digit.map_or("no".to_string(), |d| (d as char).to_string())
            ));
        }
    }
    Ok(())
}

fn check_woots(reader: &mut Reader, user: &UserRecord, problems: &mut Vec<String>) -> Result<(), StoreError> {
    let id = user.id;
    for k in 0..user.woots {
        let (file, offset) = woot_place(id, k);
        let Some(bytes) = reader.get(file)? else {
            problems.push(format!("user {id}: woot {k} is counted but its file is missing"));
            return Ok(());
        };
        let place = bytes.get(offset as usize..offset as usize + WOOT_LEN).unwrap_or(&[]);
        if place.len() != WOOT_LEN || place.iter().all(|&b| b == b' ') {
            problems.push(format!("user {id}: woot {k} is counted but blank"));
        }
    }
    // The place after the last counted woot must be blank, or the counter
    // lost a woot.
    let (file, offset) = woot_place(id, user.woots);
    if let Some(bytes) = reader.get(file)? {
        let place = bytes.get(offset as usize..offset as usize + WOOT_LEN).unwrap_or(&[]);
        if place.iter().any(|&b| b != b' ') {
            problems.push(format!(
                "user {id}: a woot beyond the counter ({}) is stored",
                user.woots
            ));
        }
    }
    Ok(())
}

/// What `repair` changed.
#[derive(Debug, Default)]
pub struct Repairs {
    /// One sentence per change.
    pub changes: Vec<String>,
}

/// In-memory copies of the list files being repaired.
struct Lists {
    files: HashMap<FileId, Vec<u8>>,
    changed: HashSet<FileId>,
}

impl Lists {
    fn cell(&mut self, data: &DataFiles, kind: ListKind, owner: u32, index: u32) -> Result<&mut [u8], StoreError> {
        let (file, offset) = list_place(kind, owner, index);
        let bytes = match self.files.entry(file) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(data.read_all(file)?.unwrap_or_else(|| file.blank_contents()))
            }
        };
        if bytes.len() < file.blank_contents().len() {
            bytes.resize(file.blank_contents().len(), b' ');
        }
        Ok(&mut bytes[offset as usize..offset as usize + ID_WIDTH])
    }

    fn set(
        &mut self,
        data: &DataFiles,
        kind: ListKind,
        owner: u32,
        index: u32,
        id: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(ID_WIDTH);
        match id {
            Some(id) => crate::storage::record::right(&mut value, id.to_string().as_bytes(), ID_WIDTH),
            None => value.resize(ID_WIDTH, b' '),
        }
        self.cell(data, kind, owner, index)?.copy_from_slice(&value);
        self.changed.insert(list_place(kind, owner, index).0);
        Ok(())
    }

    /// The ids of a list, by position.
    fn read(&mut self, data: &DataFiles, kind: ListKind, owner: u32) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        let mut out = Vec::new();
        for col in 0.. {
            let (file, _) = list_place(kind, owner, col * IDS_PER_LINE);
            if !self.files.contains_key(&file) && !data.exists(file) {
                break;
            }
            for place in 0..IDS_PER_LINE {
                let index = col * IDS_PER_LINE + place;
                let cell = trim(self.cell(data, kind, owner, index)?).to_vec();
                out.push((
                    index,
                    if cell.is_empty() {
                        None
                    } else {
                        parse_number("id", &cell).ok()
                    },
                ));
            }
        }
        Ok(out)
    }
}

/// Fixes what `check` reports about counters and mirrors, in place: follow
/// lists lose duplicates and ids of no user, every one-sided follow gets
/// its missing side (in the first blank place, as `follow` would put it),
/// counters are set to the lists' lengths and the woot counter to the
/// stored woots, and the fids file to the free slots. The server must not
/// be running on the directory.
pub fn repair(root: &Path) -> Result<Repairs, StoreError> {
    let data = DataFiles::new(root);
    let mut repairs = Repairs::default();
    let mut users: Vec<UserRecord> = Vec::new();
    let mut free_per_row = Vec::new();
    let mut row = 0;
    while let Some(bytes) = data.read_all(FileId::Users(row))? {
        let mut free = 0u8;
        for (slot, line) in bytes.chunks(USER_LINE).enumerate().take(SLOTS_PER_ROW as usize) {
            match UserRecord::decode(line) {
                Ok(Some(u)) if u.id == row * SLOTS_PER_ROW + slot as u32 => users.push(u),
                Ok(None) => free += 1,
                _ => {}
            }
        }
        free_per_row.push(free);
        row += 1;
    }
    let known: HashSet<u32> = users.iter().map(|u| u.id).collect();
    let mut lists = Lists {
        files: HashMap::new(),
        changed: HashSet::new(),
    };
    // Clean each list; remember the follows each side claims.
    let mut claims: HashSet<(u32, u32)> = HashSet::new();
    let mut kept: HashMap<(ListKind, u32), HashSet<u32>> = HashMap::new();
    for u in &users {
        for kind in [ListKind::Followees, ListKind::Followers] {
            let mut seen = HashSet::new();
            for (index, id) in lists.read(&data, kind, u.id)? {
                let Some(id) = id else { continue };
                if !known.contains(&id) || id == u.id || !seen.insert(id) {
                    lists.set(&data, kind, u.id, index, None)?;
                    repairs
                        .changes
                        .push(format!("user {}: removed id {id} from its {}", u.id, kind.as_str()));
                    continue;
                }
                claims.insert(if kind == ListKind::Followees {
                    (u.id, id)
                } else {
                    (id, u.id)
                });
            }
            kept.insert((kind, u.id), seen);
        }
    }
    // Give every claimed follow both sides.
    let mut claims: Vec<(u32, u32)> = claims.into_iter().collect();
    claims.sort_unstable();
    for (a, b) in claims {
        for (kind, owner, other) in [(ListKind::Followees, a, b), (ListKind::Followers, b, a)] {
            if kept.get(&(kind, owner)).is_some_and(|s| s.contains(&other)) {
                continue;
            }
            let places = lists.read(&data, kind, owner)?;
            let index = places
                .iter()
                .find(|(_, id)| id.is_none())
                .map_or(places.len() as u32, |(i, _)| *i);
            lists.set(&data, kind, owner, index, Some(other))?;
            kept.entry((kind, owner)).or_default().insert(other);
            repairs
                .changes
                .push(format!("user {owner}: added {other} to its {}", kind.as_str()));
        }
    }
    let mut set = WriteSet::default();
    for file in &lists.changed {
        set.writes.push(Write {
            file: *file,
            offset: 0,
            bytes: lists.files[file].clone(),
        });
    }
    // Counters from the lists and the stored woots.
    for u in &mut users {
        let followees = kept.get(&(ListKind::Followees, u.id)).map_or(0, HashSet::len) as u32;
        let followers = kept.get(&(ListKind::Followers, u.id)).map_or(0, HashSet::len) as u32;
        let mut woots = 0;
        loop {
            let (file, offset) = woot_place(u.id, woots);
            match data.read_at(file, offset, WOOT_LEN)? {
                Some(b) if b.len() == WOOT_LEN && b.iter().any(|&c| c != b' ') => woots += 1,
                _ => break,
            }
        }
        if (u.followees, u.followers, u.woots) != (followees, followers, woots) {
            repairs.changes.push(format!(
                "user {}: counters followers/followees/woots {}/{}/{} set to {followers}/{followees}/{woots}",
                u.id, u.followers, u.followees, u.woots
            ));
            u.followees = followees;
            u.followers = followers;
            u.woots = woots;
            let (row, slot) = crate::storage::layout::row_slot(u.id);
            set.write(
                FileId::Users(row),
                crate::storage::layout::user_offset(slot),
                u.encode(),
            );
        }
    }
    // The fids file, quirk included.
    let mut fids: Vec<u8> = free_per_row.iter().flat_map(|&f| [b'0' + f, b'\n']).collect();
    if free_per_row.len() == 1 {
        fids.push(b'\n');
    }
    if !free_per_row.is_empty() && data.read_all(FileId::Fids)?.as_deref() != Some(&fids[..]) {
        repairs
            .changes
            .push("fids/fids.txt rewritten from the user files".to_string());
        set.create_with(FileId::Fids, fids);
    }
    data.commit(&set)?;
    Ok(repairs)
}
