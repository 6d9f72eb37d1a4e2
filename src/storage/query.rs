//! Every read of the data is a [`Query`], run by [`Store::query`].
//!
//! Queries take only read locks of the files they read, one file at a time,
//! so they run in parallel with each other and see data at most a moment
//! old. They use the stored counters, never the client's (the old server
//! trusted the frontend's stale copy and showed stale pages).

use super::layout::{woot_place, ListKind, WOOTS_PER_LINE, WOOT_LEN};
use super::locks::Mode;
use super::record::{Username, Woot};
use super::{Answer, Store, StoreError};

/// Most ids or woots one reply holds, whatever `n` asks: bounds the memory
/// and the worker time one request can take (10,000 woots are 1.24 MB).
pub const MAX_LIST_ITEMS: u32 = 10_000;

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
        let _not_swapping = self.reading();
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
                let want = (*n).min(count).min(MAX_LIST_ITEMS) as usize;
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
                let take = (*n).min(user.woots).min(MAX_LIST_ITEMS);
                let range = match order {
                    WootOrder::NewestFirst => user.woots - take..user.woots,
                    WootOrder::OldestFirst => 0..take,
                };
                self.read_woots(id, range, *order).map(Answer::Woots)
            }
            Query::AlreadyFollowing { username, id: target } => {
                let id = self.lookup(username)?;
                let user = self.load_known_user(id)?;
                let found = self.find_in_list(ListKind::Followees, id, user.followees, *target, true)?;
                Ok(Answer::Bool(found.is_some()))
            }
        }
    }

    /// Reads woots `range` (by number), in `order`: one read (under its read
    /// lock) per column file, since a column holds ten consecutive woots.
    pub(crate) fn read_woots(
        &self,
        id: u32,
        range: std::ops::Range<u32>,
        order: WootOrder,
    ) -> Result<Vec<Woot>, StoreError> {
        let mut woots = Vec::with_capacity(range.len());
        let mut k = range.start;
        while k < range.end {
            let col_end = (k / WOOTS_PER_LINE + 1) * WOOTS_PER_LINE;
            let upto = col_end.min(range.end);
            let (file, offset) = woot_place(id, k);
            let _held = self.locks.acquire(Mode::Read, &[file]);
            let len = (upto - k) as usize * WOOT_LEN;
            let bytes = self
                .files
                .read_at(file, offset, len)?
                .filter(|b| b.len() == len)
                .ok_or_else(|| {
                    self.corrupt(file, format!("woots {k}..{upto} of id {id} are counted but not stored"))
                })?;
            woots.extend(bytes.chunks(WOOT_LEN).map(Woot::from_stored));
            k = upto;
        }
        if order == WootOrder::NewestFirst {
            woots.reverse();
        }
        Ok(woots)
    }
}
