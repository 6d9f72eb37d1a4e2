//! Backup and restore as JSON lines: `wooter export` and `wooter import`.
//!
//! One line per user, in id order, with its profile, both follow lists in
//! their stored order, and its woots oldest first:
//!
//! ```text
//! {"wooter_export":1}
//! {"id":0,"username":"..","password":"..","name":"..","age":"..","email":"..","status":"n",
//!  "followees":[3,1],"followers":[2],"woots":[{"text":"..","timestamp":".."}]}
//! ```
//!
//! The old format's bytes are not always UTF-8, so every string holds the
//! field's bytes one char per byte (Latin-1): the round trip is exact.
//!
//! Importing writes the records, list places and woots at the positions
//! the export read them from (not by replaying follows, which would order
//! the followers lists by replay order), then rebuilds the fids file and
//! checks the counters with `check::repair`. The result answers every read
//! as the original did.

use std::io::{BufRead, Write};
use std::path::Path;

use serde_json::{json, Value};

use super::files::{DataFiles, WriteSet};
use super::layout::{list_place, row_slot, user_offset, woot_place, FileId, ListKind, FOLDERS, WOOTS_PER_LINE};
use super::op::id_cell;
use super::query::WootOrder;
use super::record::{Profile, Status, UserRecord, Username, Woot};
use super::{Store, StoreError};

/// Bytes as a JSON string, one char per byte.
fn latin1(bytes: &[u8]) -> Value {
    Value::String(bytes.iter().map(|b| char::from(*b)).collect())
}

/// Back from [`latin1`].
fn bytes_of(v: &Value, field: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or(format!("no string {field}"))?;
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| format!("{field}: a char beyond Latin-1")))
        .collect()
}

fn ids_of(v: &Value, field: &str) -> Result<Vec<u32>, String> {
    v.get(field)
        .and_then(Value::as_array)
        .ok_or(format!("no list {field}"))?
        .iter()
        .map(|i| {
            i.as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or(format!("{field}: not an id"))
        })
        .collect()
}

impl Store {
    /// The highest user id with a record, if any.
    pub fn max_id(&self) -> Option<u32> {
        let records = self.records.read();
        records.iter().rposition(Option::is_some).map(|i| i as u32)
    }

    /// User `id` as one export line (`None`: no user there).
    pub fn export_user(&self, id: u32) -> Result<Option<Value>, StoreError> {
        let _not_swapping = self.reading();
        let Some(user) = self.load_user(id)? else {
            return Ok(None);
        };
        let mut lists = Vec::new();
        for (kind, count) in [
            (ListKind::Followees, user.followees),
            (ListKind::Followers, user.followers),
        ] {
            let mut ids = Vec::with_capacity(count as usize);
            if count > 0 {
                self.walk_list(kind, id, true, |e| {
                    ids.extend(e.id);
                    ids.len() < count as usize
                })?;
            }
            lists.push(ids);
        }
        let woots = self.read_woots(id, 0..user.woots, WootOrder::OldestFirst)?;
        let p = &user.profile;
        Ok(Some(json!({
            "id": id,
            "username": latin1(user.username.as_bytes()),
            "password": latin1(&p.password),
            "name": latin1(&p.name),
            "age": latin1(&p.age),
            "email": latin1(&p.email),
            "status": latin1(&[user.status.byte()]),
            "followees": lists[0],
            "followers": lists[1],
            "woots": woots.iter().map(|w| json!({"text": latin1(w.text()), "timestamp": latin1(w.timestamp())})).collect::<Vec<_>>(),
        })))
    }
}

/// Writes every user of `store` to `out`, one line each; `progress` is
/// called with each id done. Returns the users written.
pub fn export(store: &Store, out: &mut impl Write, mut progress: impl FnMut(u32)) -> Result<u64, String> {
    writeln!(out, "{}", json!({"wooter_export": 1})).map_err(|e| e.to_string())?;
    let mut written = 0;
    if let Some(max) = store.max_id() {
        for id in 0..=max {
            if let Some(line) = store.export_user(id).map_err(|e| e.to_string())? {
                writeln!(out, "{line}").map_err(|e| e.to_string())?;
                written += 1;
            }
            progress(id);
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(written)
}

/// One user's files: created blank if new, then written.
fn user_write_set(files: &DataFiles, v: &Value, set: &mut WriteSet) -> Result<(), String> {
    let id = v
        .get("id")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or("no id")?;
    let username = Username::new(&bytes_of(v, "username")?).map_err(|e| e.to_string())?;
    let profile = Profile::new(
        &bytes_of(v, "password")?,
        &bytes_of(v, "name")?,
        &bytes_of(v, "age")?,
        &bytes_of(v, "email")?,
    )
    .map_err(|e| e.to_string())?;
    let status = Status::parse(&bytes_of(v, "status")?).map_err(|e| e.to_string())?;
    let followees = ids_of(v, "followees")?;
    let followers = ids_of(v, "followers")?;
    let woots: Vec<Woot> = v
        .get("woots")
        .and_then(Value::as_array)
        .ok_or("no list woots")?
        .iter()
        .map(|w| Woot::new(&bytes_of(w, "text")?, &bytes_of(w, "timestamp")?).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let count = |n: usize| u32::try_from(n).map_err(|_| "too many".to_string());
    let record = UserRecord {
        username,
        id,
        profile,
        followers: count(followers.len())?,
        followees: count(followees.len())?,
        status,
        woots: count(woots.len())?,
    };
    let touch = |file: FileId, set: &mut WriteSet| {
        if !files.exists(file) && !set.creates_file(file) {
            set.create_blank(file);
        }
    };
    let (row, slot) = row_slot(id);
    let user_file = FileId::Users(row);
    touch(user_file, set);
    set.write(user_file, user_offset(slot), record.encode());
    // List and woot files are made as their entries need them (as the old
    // server did); a read of a missing one is an empty list either way.
    for (kind, ids) in [(ListKind::Followees, &followees), (ListKind::Followers, &followers)] {
        for (i, other) in ids.iter().enumerate() {
            let (file, offset) = list_place(kind, id, count(i)?);
            touch(file, set);
            set.write(file, offset, id_cell(Some(*other)));
        }
    }
    for (k, woot) in woots.iter().enumerate() {
        let (file, offset) = woot_place(id, count(k)?);
        if count(k)? % WOOTS_PER_LINE == 0 {
            touch(file, set);
        }
        set.write(file, offset, woot.as_bytes().to_vec());
    }
    Ok(())
}

/// Empty rows allowed between two users of an export (the old server fills
/// slots in order, so an honest export has none, or a few): more would be
/// a hostile id making import write blank user files without end.
const MAX_ROW_GAP: u32 = 1_000;

/// Builds the data directory `root` (which must not hold one yet) from an
/// export read from `input`; `progress` is called per user. Returns the
/// users imported. The directory is built beside `root` and renamed into
/// place only once it checks clean, so a failed import leaves nothing that
/// looks like a data directory.
pub fn import(input: impl BufRead, root: &Path, progress: impl FnMut(u64)) -> Result<u64, String> {
    if root.join("users").exists() {
        return Err(format!("{} already holds a data directory", root.display()));
    }
    let name = root
        .file_name()
        .ok_or_else(|| format!("{} names no directory", root.display()))?
        .to_string_lossy()
        .into_owned();
    let building = root.with_file_name(format!(".{name}.importing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let result = build(input, &building, progress).and_then(|users| {
        if root.exists() {
            // An empty directory made for it (anything else was refused).
            std::fs::remove_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
        }
        std::fs::rename(&building, root).map_err(|e| format!("{}: {e}", root.display()))?;
        Ok(users)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    result
}

fn build(input: impl BufRead, root: &Path, mut progress: impl FnMut(u64)) -> Result<u64, String> {
    for folder in FOLDERS {
        super::create_private_dir(&root.join(folder)).map_err(|e| e.to_string())?;
    }
    let files = DataFiles::new(root);
    let mut lines = input.lines();
    let header = lines.next().ok_or("the export is empty")?.map_err(|e| e.to_string())?;
    let header: Value = serde_json::from_str(&header).map_err(|e| format!("line 1: {e}"))?;
    if header.get("wooter_export").and_then(Value::as_u64) != Some(1) {
        return Err("line 1 is not a wooter export header".into());
    }
    let mut users = 0;
    let mut next_row = 0u32;
    let mut last_id: Option<u32> = None;
    for (n, line) in lines.enumerate() {
        let at = |e: String| format!("line {}: {e}", n + 2);
        let line = line.map_err(|e| at(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        let id = v
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| at("no id".into()))?;
        if last_id.is_some_and(|l| id <= l) {
            return Err(at(format!("id {id} is not above the previous user's")));
        }
        let (row, _) = row_slot(id);
        if row >= super::layout::MAX_ROWS || row > next_row + MAX_ROW_GAP {
            return Err(at(format!("id {id} is far beyond the users before it")));
        }
        let mut set = WriteSet::default();
        // Rows with no user still have their (blank) user file.
        for gap in next_row..row {
            set.create_blank(FileId::Users(gap));
        }
        next_row = next_row.max(row + 1);
        last_id = Some(id);
        user_write_set(&files, &v, &mut set).map_err(at)?;
        files.commit(&set).map_err(|e| at(e.to_string()))?;
        users += 1;
        progress(users);
    }
    // The fids file (free slots per row) follows from the records; any
    // other repair means the export contradicts itself.
    let repairs = super::check::repair(root).map_err(|e| e.to_string())?;
    let wrong: Vec<&String> = repairs.changes.iter().filter(|c| !c.starts_with("fids/")).collect();
    if !wrong.is_empty() {
        let shown: Vec<&str> = wrong.iter().take(5).map(|s| s.as_str()).collect();
        return Err(format!(
            "the export contradicts itself (nothing was imported): making it consistent would take {} change(s), e.g. {}",
            wrong.len(),
            shown.join("; ")
        ));
    }
    Ok(users)
}
