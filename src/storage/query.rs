//! Every read of the data is a [`Query`], run by [`Store::query`].
//!
//! Queries take only read locks of the files they read, one file at a time,
//! so they run in parallel with each other and see data at most a moment
//! old. They use the stored counters, never the client's (the old server
//! trusted the frontend's stale copy and showed stale pages).

use super::layout::{woot_place, FileId, ListKind, WOOT_LEN};
use super::locks::{Held, Mode};
use super::record::{Username, Woot};
use super::{Answer, Store, StoreError};

/// Which end of a user's woots a list starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WootOrder {
    /// `load_woots`: newest first.
    NewestFirst,
    /// `load_woots_seq`: oldest first.
    OldestFirst,
}

/// One read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A user by name.
    ReadUser(Username),
    /// A user by id.
    ReadId(u32),
    /// Up to `n` ids of a user's followers or followees, oldest first.
    LoadFollowing {
        /// Whose list.
        username: Username,
        /// Which list.
        kind: ListKind,
        /// At most this many.
        n: u32,
    },
    /// Up to `n` woots of a user.
    LoadWoots {
        /// Whose woots.
        username: Username,
        /// At most this many.
        n: u32,
        /// Newest or oldest first.
        order: WootOrder,
    },
    /// Whether `username` follows user `id`.
    AlreadyFollowing {
        /// Who.
        username: Username,
        /// Followed whom.
        id: u32,
    },
}

impl Query {
    /// The command name of the query, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Query::ReadUser(_) => "read_user",
            Query::ReadId(_) => "read_id",
            Query::LoadFollowing { .. } => "load_following",
            Query::LoadWoots {
                order: WootOrder::NewestFirst,
                ..
            } => "load_woots",
            Query::LoadWoots { .. } => "load_woots_seq",
            Query::AlreadyFollowing { .. } => "already_following",
        }
    }
}

impl Store {
    /// Runs one query.
    pub fn query(&self, query: &Query) -> Result<Answer, StoreError> {
        match query {
            Query::ReadUser(name) => {
                let id = self.lookup(name)?;
                Ok(Answer::User(self.load_known_user(id)?))
            }
            Query::ReadId(id) => self
                .load_user(*id)?
                .map(Answer::User)
                .ok_or_else(|| StoreError::NoSuchUser(format!("id {id}"))),
            Query::LoadFollowing { username, kind, n } => {
                let id = self.lookup(username)?;
                let user = self.load_known_user(id)?;
                let count = match kind {
                    ListKind::Followers => user.followers,
                    ListKind::Followees => user.followees,
                };
                let want = (*n).min(count) as usize;
                let mut ids = Vec::with_capacity(want);
                if want > 0 {
                    self.walk_list(*kind, id, true, |e| {
                        ids.extend(e.id);
                        ids.len() < want
                    })?;
                }
                Ok(Answer::Ids(ids))
            }
            Query::LoadWoots { username, n, order } => {
                let id = self.lookup(username)?;
                let user = self.load_known_user(id)?;
                let take = (*n).min(user.woots);
                let numbers: Vec<u32> = match order {
                    WootOrder::NewestFirst => (user.woots - take..user.woots).rev().collect(),
                    WootOrder::OldestFirst => (0..take).collect(),
                };
                self.read_woots(id, &numbers).map(Answer::Woots)
            }
            Query::AlreadyFollowing { username, id: target } => {
                let id = self.lookup(username)?;
                let user = self.load_known_user(id)?;
                let found = self.find_in_list(ListKind::Followees, id, user.followees, *target, true)?;
                Ok(Answer::Bool(found.is_some()))
            }
        }
    }

    /// Reads woots by number, one read lock per column file.
    fn read_woots(&self, id: u32, numbers: &[u32]) -> Result<Vec<Woot>, StoreError> {
        let mut woots = Vec::with_capacity(numbers.len());
        let mut current: Option<(FileId, Held)> = None;
        for &k in numbers {
            let (file, offset) = woot_place(id, k);
            if current.as_ref().map(|(f, _)| *f) != Some(file) {
                drop(current.take()); // release before taking the next
                current = Some((file, self.locks.acquire(Mode::Read, &[file])));
            }
            let bytes = self
                .files
                .read_at(file, offset, WOOT_LEN)?
                .ok_or_else(|| self.corrupt(file, format!("woot {k} of id {id} is counted but its file is missing")))?;
            woots.push(Woot::from_stored(&bytes));
        }
        Ok(woots)
    }
}
