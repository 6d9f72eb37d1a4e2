//! Every change to the data is an [`Op`], applied by [`Store::apply`].
//!
//! An op carries everything its result depends on (a woot's timestamp is
//! fixed when its command is parsed), and applying it reads nothing but the
//! data: no clock, no thread timing. What depends on the data (the id a new
//! user gets, whether a name is taken, whether a follow exists) is decided
//! here, when the op is applied. So the same ops applied in the same order
//! give the same bytes on disk, which is what lets the replication work feed
//! ops through a replicated log.

use super::files::WriteSet;
use super::layout::{fids_offset, list_place, row_slot, user_offset, woot_place, FileId, ListKind, ID_WIDTH};
use super::locks::Mode;
use super::record::{right, Profile, Status, UserRecord, Username, Woot};
use super::{Answer, Store, StoreError};

/// One change to the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Registers a user in the first free slot.
    CreateUser {
        /// The new name.
        username: Username,
        /// Password, name, age, email.
        profile: Profile,
    },
    /// Overwrites a user's profile and status (not its id or counters).
    FlushUser {
        /// Who.
        username: Username,
        /// New password, name, age, email.
        profile: Profile,
        /// New status.
        status: Status,
    },
    /// `follower` starts following `followee` (no change if already).
    Follow {
        /// Who follows.
        follower: Username,
        /// Who is followed.
        followee: Username,
    },
    /// `follower` stops following `followee` (no change if not following).
    Unfollow {
        /// Who unfollows.
        follower: Username,
        /// Who is unfollowed.
        followee: Username,
    },
    /// Appends a woot to a user's woots.
    WriteWoot {
        /// Who writes.
        username: Username,
        /// Text and timestamp.
        woot: Woot,
    },
}

impl Op {
    /// The command name of the op, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateUser { .. } => "create_new_user",
            Op::FlushUser { .. } => "flush_user",
            Op::Follow { .. } => "follow",
            Op::Unfollow { .. } => "unfollow",
            Op::WriteWoot { .. } => "write_woot",
        }
    }
}

/// Writes `user`'s record into the set.
fn write_user(set: &mut WriteSet, user: &UserRecord) {
    let (row, slot) = row_slot(user.id);
    set.write(FileId::Users(row), user_offset(slot), user.encode());
}

/// An id as a list place holds it.
pub(crate) fn id_cell(id: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID_WIDTH);
    match id {
        Some(id) => right(&mut out, id.to_string().as_bytes(), ID_WIDTH),
        None => out.resize(ID_WIDTH, b' '),
    }
    out
}

impl Store {
    /// Applies one op: takes its locks in the documented order, computes its
    /// changes, commits them, and answers with the users as now stored.
    pub fn apply(&self, op: &Op) -> Result<Answer, StoreError> {
        match op {
            Op::CreateUser { username, profile } => self.create_user(username, profile),
            Op::FlushUser {
                username,
                profile,
                status,
            } => self.flush_user(username, profile, *status),
            Op::Follow { follower, followee } => self.follow(follower, followee, true),
            Op::Unfollow { follower, followee } => self.follow(follower, followee, false),
            Op::WriteWoot { username, woot } => self.write_woot(username, woot),
        }
    }

    fn create_user(&self, username: &Username, profile: &Profile) -> Result<Answer, StoreError> {
        // The catalog's write lock stands for the fids file's lock: it is
        // first in the lock order and serialises registrations.
        let mut catalog = self.catalog.write();
        if catalog.lookup(username).is_some() {
            return Err(StoreError::UsernameTaken(username.display()));
        }
        let placement = catalog.place_next();
        let row = row_slot(placement.id).0;
        let _held = self.locks.acquire(Mode::Write, &[FileId::Fids, FileId::Users(row)]);
        let mut set = WriteSet::default();
        let digit = b'0' + placement.free_after;
        if placement.new_row || !self.files.is_whole(FileId::Users(row))? {
            set.create_blank(FileId::Users(row));
        }
        let fids_len = self.files.len(FileId::Fids)?.unwrap_or(0);
        if placement.new_row && row == 0 && fids_len == 0 {
            // The old server's quirk (reference §2): the new fids file is
            // written as "10\n", then its first two bytes become "9\n".
            set.create_with(FileId::Fids, b"10\n".to_vec());
            set.write(FileId::Fids, fids_offset(row), vec![digit, b'\n']);
        } else if fids_len < fids_offset(row) + u64::from(!placement.new_row) {
            // The fids file is missing or too short for this row (lost, or
            // rows missing from the directory): write it whole, from the
            // user files, rather than leave NUL-filled holes.
            let rows = catalog.rows().max(row + 1);
            let mut fids: Vec<u8> = (0..rows)
                .flat_map(|r| {
                    [
                        b'0' + if r == row {
                            placement.free_after
                        } else {
                            catalog.fids_digit(r)
                        },
                        b'\n',
                    ]
                })
                .collect();
            if rows == 1 {
                fids.push(b'\n');
            }
            set.create_with(FileId::Fids, Vec::new());
            set.write(FileId::Fids, 0, fids);
        } else if placement.new_row {
            set.write(FileId::Fids, fids_offset(row), vec![digit, b'\n']);
        } else {
            set.write(FileId::Fids, fids_offset(row), vec![digit]);
        }
        let user = UserRecord {
            username: username.clone(),
            id: placement.id,
            profile: profile.clone(),
            followers: 0,
            followees: 0,
            status: Status::Active,
            woots: 0,
        };
        write_user(&mut set, &user);
        self.commit(&set)?;
        catalog.register(username, placement);
        Ok(Answer::User(user))
    }

    fn flush_user(&self, username: &Username, profile: &Profile, status: Status) -> Result<Answer, StoreError> {
        let id = self.lookup(username)?;
        let _held = self.locks.acquire(Mode::Write, &[FileId::Users(row_slot(id).0)]);
        let mut user = self.load_known_user(id)?;
        user.profile = profile.clone();
        user.status = status;
        let mut set = WriteSet::default();
        write_user(&mut set, &user);
        self.commit(&set)?;
        Ok(Answer::User(user))
    }

    /// Follow (`add`) or unfollow (`!add`).
    fn follow(&self, follower: &Username, followee: &Username, add: bool) -> Result<Answer, StoreError> {
        let a = self.lookup(follower)?;
        let b = self.lookup(followee)?;
        if a == b {
            return Err(StoreError::SelfFollow);
        }
        // Holding both users' row locks makes this thread the only writer of
        // both rows' list files; they are read below without their own locks
        // and locked only to write them (readers take those locks).
        let _rows = self.locks.acquire(
            Mode::Write,
            &[FileId::Users(row_slot(a).0), FileId::Users(row_slot(b).0)],
        );
        let mut ua = self.load_known_user(a)?;
        let mut ub = self.load_known_user(b)?;
        let a_has_b = self.find_in_list(ListKind::Followees, a, ua.followees, b, false)?;
        let mut set = WriteSet::default();
        if add {
            if a_has_b.is_some() {
                return Ok(Answer::Pair(ua, ub));
            }
            let ia = self.first_blank(ListKind::Followees, a, &mut set)?;
            let ib = self.first_blank(ListKind::Followers, b, &mut set)?;
            self.set_list_place(&mut set, ListKind::Followees, a, ia, Some(b));
            self.set_list_place(&mut set, ListKind::Followers, b, ib, Some(a));
            ua.followees += 1;
            ub.followers += 1;
        } else {
            let b_has_a = self.find_in_list(ListKind::Followers, b, ub.followers, a, false)?;
            if a_has_b.is_none() && b_has_a.is_none() {
                return Ok(Answer::Pair(ua, ub));
            }
            if let Some(i) = a_has_b {
                self.set_list_place(&mut set, ListKind::Followees, a, i, None);
                ua.followees = ua.followees.saturating_sub(1);
            }
            if let Some(i) = b_has_a {
                self.set_list_place(&mut set, ListKind::Followers, b, i, None);
                ub.followers = ub.followers.saturating_sub(1);
            }
        }
        write_user(&mut set, &ua);
        write_user(&mut set, &ub);
        let list_files: Vec<FileId> = set
            .writes
            .iter()
            .map(|w| w.file)
            .filter(|f| matches!(f, FileId::List { .. }))
            .collect();
        let _lists = self.locks.acquire(Mode::Write, &list_files);
        self.commit(&set)?;
        Ok(Answer::Pair(ua, ub))
    }

    fn set_list_place(&self, set: &mut WriteSet, kind: ListKind, owner: u32, index: u32, id: Option<u32>) {
        let (file, offset) = list_place(kind, owner, index);
        set.write(file, offset, id_cell(id));
    }

    /// Position of `target` in `owner`'s list, looking no further than the
    /// `count` ids the owner's record says it has. `lock` as for `walk_list`.
    pub(super) fn find_in_list(
        &self,
        kind: ListKind,
        owner: u32,
        count: u32,
        target: u32,
        lock: bool,
    ) -> Result<Option<u32>, StoreError> {
        if count == 0 {
            return Ok(None);
        }
        let mut seen = 0;
        let mut found = None;
        self.walk_list(kind, owner, lock, |e| {
            if let Some(id) = e.id {
                if id == target {
                    found = Some(e.index);
                    return false;
                }
                seen += 1;
            }
            seen < count
        })?;
        Ok(found)
    }

    /// The first blank position of `owner`'s list, scanning columns from 0
    /// and places from 0 (so a refilled hole keeps its place). Adds the
    /// column file to `set` when it must be created.
    fn first_blank(&self, kind: ListKind, owner: u32, set: &mut WriteSet) -> Result<u32, StoreError> {
        let mut last = None;
        let mut blank = None;
        self.walk_list(kind, owner, false, |e| {
            last = Some(e.index);
            if e.id.is_none() {
                blank = Some(e.index);
                return false;
            }
            true
        })?;
        let index = match blank {
            Some(i) => i,
            None => last.map_or(0, |l| l + 1),
        };
        let (file, _) = list_place(kind, owner, index);
        if !self.files.is_whole(file)? && !set.creates_file(file) {
            set.create_blank(file);
        }
        Ok(index)
    }

    fn write_woot(&self, username: &Username, woot: &Woot) -> Result<Answer, StoreError> {
        let id = self.lookup(username)?;
        let _row = self.locks.acquire(Mode::Write, &[FileId::Users(row_slot(id).0)]);
        let mut user = self.load_known_user(id)?;
        let (file, offset) = woot_place(id, user.woots);
        let _woots = self.locks.acquire(Mode::Write, &[file]);
        let mut set = WriteSet::default();
        if !self.files.is_whole(file)? {
            set.create_blank(file);
        }
        set.write(file, offset, woot.as_bytes().to_vec());
        user.woots += 1;
        write_user(&mut set, &user);
        self.commit(&set)?;
        Ok(Answer::User(user))
    }
}
