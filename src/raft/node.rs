//! One RM's consensus: raft-rs's `RawNode`, stepped by the event loop, with
//! two helper threads so that the loop never touches the disk.
//!
//! - the **persister** (`persister`) writes the raft log: each `Ready`'s
//!   entries and hard state, group-committed, and the rewrites behind a
//!   snapshot;
//! - the **applier** (`applier`) applies committed entries, in log order,
//!   to the store, reports each result with the proposal it answers, and
//!   cuts and installs snapshots.
//!
//! Membership changes (conf changes) are applied to raft here, on the
//! loop's thread, as soon as they are committed; the address book they
//! carry goes to the applier with the entries, so a snapshot it cuts holds
//! the membership at its own index.
//!
//! The `Ready` is handled in the order raft-rs requires: messages that may
//! go at once are sent at once (a leader's appends), entries and hard state
//! are put into the in-memory storage before `advance_append_async`, and the
//! messages that depend on them are held until the persister reports them
//! durable. A failed log write stops the RM (fail closed): it never goes on
//! with state it may not have persisted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::storage::MemStorage;
use raft::{Config, GetEntriesContext, ProgressState, RawNode, SnapshotStatus, StateRole, Storage as _};
use thiserror::Error;

use super::applier::{ApplierState, ApplyJob};
use super::log_storage::LogStorage;
pub use super::membership::RmAddrs;
use super::membership::{self, AddressBook};
use super::persister::{LogSnapshot, PersistJob};
use super::snapshot::{self, Descriptor};
use super::wal::{LogState, Replayed, Wal};
use crate::storage::{Answer, Op, Store, StoreError};
use crate::wake_queue::WakeQueue;

/// Raft ticks per election timeout (at the loop's 100 ms tick: 0.8 to 1.6 s,
/// raft randomising it up to twice this).
pub const ELECTION_TICKS: usize = 8;
/// Raft ticks per heartbeat (100 ms).
pub const HEARTBEAT_TICKS: usize = 1;
/// A learner this close to the leader's last index is caught up and is
/// promoted to voter.
pub const CAUGHT_UP: u64 = 100;
/// Default `--snapshot-every`.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;

/// The cluster as this RM is told of it at start.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This RM's id (1 and up).
    pub id: u64,
    /// Every RM, this one included (for a new cluster; a running one's
    /// membership is in its raft log).
    pub rms: AddressBook,
    /// Where the raft log and the apply journal live.
    pub raft_dir: PathBuf,
    /// The cluster secret(s) RM links are authenticated with.
    pub auth: crate::server::link_auth::LinkAuth,
    /// `--join`: a member's client address to ask for admission; this RM
    /// starts empty and waits for a snapshot.
    pub join: Option<SocketAddr>,
    /// Cut a snapshot after this many applied entries (0: only when asked).
    pub snapshot_every: u64,
    /// Run an RM-link listener even while alone (`--id` was given), so the
    /// cluster can grow.
    pub linked: bool,
}

/// Why the RM cannot go on.
#[derive(Debug, Error)]
pub enum RaftError {
    /// The raft log could not be read or written.
    #[error("raft log: {0}")]
    Log(#[from] std::io::Error),
    /// raft-rs refused the state.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// Applying a committed op failed in a way that is not the op's own
    /// answer (the disk failed).
    #[error("applying log entry {index} failed: {source}")]
    Apply {
        /// The entry.
        index: u64,
        /// Why.
        source: StoreError,
    },
    /// A snapshot could not be cut, read or installed.
    #[error("snapshot: {0}")]
    Snapshot(std::io::Error),
}

/// One applied entry's outcome.
#[derive(Debug)]
pub struct Applied {
    /// Its log index.
    pub index: u64,
    /// The RM that proposed it and its proposal number, if it carried one.
    pub proposal: Option<(u64, u64)>,
    /// The op's answer (`None` for an entry without an op).
    pub result: Option<Result<Answer, StoreError>>,
}

/// What the helper threads report back to the loop.
pub enum Event {
    /// Every `Ready` up to this number is durable.
    Persisted(u64),
    /// Entries applied.
    Applied(Vec<Applied>),
    /// A snapshot was cut.
    SnapshotBuilt(Snapshot),
    /// A snapshot was asked for, but nothing was applied since the last.
    SnapshotSkipped,
    /// A received snapshot is now the data; its index.
    Installed(u64),
    /// The RM cannot go on.
    Failed(RaftError),
}

/// What handling a `Ready` (or a helper's report) produced for the loop.
#[derive(Debug, Default)]
pub struct Output {
    /// Raft messages to send, each to its `to`.
    pub messages: Vec<Message>,
    /// Read indexes granted: (read id, index to wait for).
    pub reads: Vec<(u64, u64)>,
    /// Entries applied since the last call.
    pub applied: Vec<Applied>,
    /// The membership or an address changed: links may need dialling.
    pub membership_changed: bool,
    /// A snapshot was cut: (index, term, bytes).
    pub snapshot_built: Option<(u64, u64, u64)>,
    /// A requested snapshot was not cut: nothing new was applied.
    pub snapshot_skipped: bool,
    /// This RM was removed from the cluster.
    pub removed: bool,
    /// A helper thread failed: this RM cannot go on (what was applied
    /// before the failure is in `applied` all the same).
    pub failed: Option<RaftError>,
}

/// A membership change asked for by `add_rm` or `remove_rm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add an RM (as a learner; it is promoted once caught up).
    Add(u64, RmAddrs),
    /// Remove an RM.
    Remove(u64),
}

/// The raft log opened and the data directory brought level with it.
pub struct Recovered {
    wal: Wal,
    replayed: Replayed,
    /// The data directory's lock, held while the process runs.
    _lock: std::fs::File,
}

/// Takes `raft/lock` (an exclusive `flock`), so that a second server
/// started on the same directory stops before it touches the raft log.
fn lock_data_dir(raft_dir: &Path) -> Result<std::fs::File, RaftError> {
    use std::os::fd::AsRawFd;
    let file = crate::storage::files::open_private(&raft_dir.join("lock"))?;
    // SAFETY: flock on a descriptor owned by `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(RaftError::Log(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!(
                "{} is in use by another running wooter (its raft/lock is held)",
                raft_dir.parent().unwrap_or(raft_dir).display()
            ),
        )));
    }
    Ok(file)
}

/// Opens the raft log of `config` and, if it starts after a snapshot the
/// data directory `data_dir` has not reached (an install a crash cut
/// short), installs that snapshot again. Runs before the store is opened.
pub fn recover(config: &ClusterConfig, data_dir: &Path) -> Result<Recovered, RaftError> {
    let raft_dir = &config.raft_dir;
    crate::storage::create_private_dir(raft_dir)?;
    let lock = lock_data_dir(raft_dir)?;
    let (wal, replayed) = Wal::open(&raft_dir.join("log"))?;
    if replayed.torn_bytes > 0 {
        log::warn!(
            "raft log: cut off a torn tail of {} bytes (a crash mid-write)",
            replayed.torn_bytes
        );
    }
    snapshot::clean_leftovers(raft_dir);
    snapshot::remove_partials(&raft_dir.join("snapshots"));
    if let Some(meta) = &replayed.snapshot {
        let (mut journal, newest) = crate::storage::journal::Journal::open(&raft_dir.join("apply.journal"))?;
        let applied = newest.map_or(0, |(i, _)| i);
        if applied < meta.index {
            let path = snapshot::path_of(&raft_dir.join("snapshots"), meta.index, meta.term);
            log::warn!(
                "the data directory is at applied index {applied} but the raft log starts after snapshot {}: installing it again (an install was cut short)",
                meta.index
            );
            snapshot::install(&path, data_dir, raft_dir).map_err(RaftError::Snapshot)?;
            journal.record(meta.index, &crate::storage::files::WriteSet::default())?;
        }
    }
    Ok(Recovered {
        wal,
        replayed,
        _lock: lock,
    })
}

/// This RM's raft node and its helpers.
pub struct Replica {
    raw: RawNode<LogStorage>,
    id: u64,
    persist: Sender<PersistJob>,
    apply: Sender<ApplyJob>,
    events: Arc<WakeQueue<Event>>,
    /// Messages waiting for the `Ready` they belong to to be durable.
    held: VecDeque<(u64, Vec<Message>)>,
    /// Highest index the applier has applied.
    applied: u64,
    next_id: u64,
    /// Every RM's addresses (the members', and this RM's own).
    book: AddressBook,
    /// Index of the newest snapshot cut or installed here.
    snapshot_index: u64,
    /// A snapshot was asked of the applier and not yet reported.
    building: bool,
    raft_dir: PathBuf,
    fsync: Arc<crate::server::metrics::SharedHistogram>,
}

/// Encodes a proposal's context: proposer id and proposal number.
fn proposal_context(rm: u64, number: u64) -> Vec<u8> {
    let mut ctx = rm.to_be_bytes().to_vec();
    ctx.extend_from_slice(&number.to_be_bytes());
    ctx
}

/// Reads what [`proposal_context`] wrote.
pub(super) fn parse_context(ctx: &[u8]) -> Option<(u64, u64)> {
    if ctx.len() != 16 {
        return None;
    }
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&ctx[..8]);
    b.copy_from_slice(&ctx[8..]);
    Some((u64::from_be_bytes(a), u64::from_be_bytes(b)))
}

/// The in-memory log rebuilt from what the raft log replayed.
fn rebuild_storage(replayed: &Replayed, conf_state: &ConfState) -> Result<MemStorage, RaftError> {
    let storage = MemStorage::new();
    let mut wl = storage.wl();
    let mut after = 0;
    if let Some(meta) = &replayed.snapshot {
        wl.apply_snapshot(Snapshot {
            metadata: Some(meta.clone()).into(),
            ..Default::default()
        })?;
        after = meta.index;
    }
    wl.set_conf_state(conf_state.clone());
    for batch in &replayed.entries {
        let fresh: Vec<Entry> = batch.iter().filter(|e| e.index > after).cloned().collect();
        if !fresh.is_empty() {
            wl.append(&fresh)?;
        }
    }
    if let Some(hs) = &replayed.hard_state {
        let mut hs = hs.clone();
        hs.commit = hs.commit.max(after);
        wl.set_hardstate(hs);
    }
    drop(wl);
    Ok(storage)
}

impl Replica {
    /// Builds the node from the recovered log and starts the persister and
    /// applier. `applied` is the store's applied index (from its journal).
    pub fn start(
        config: &ClusterConfig,
        store: Arc<Store>,
        applied: u64,
        waker: Arc<Waker>,
        recovered: Recovered,
    ) -> Result<Replica, RaftError> {
        let Recovered {
            mut wal,
            replayed,
            _lock,
        } = recovered;
        // Held for the life of the process (the threads outlive this call).
        std::mem::forget(_lock);
        let me: AddressBook = config
            .rms
            .get(&config.id)
            .map(|a| (config.id, *a))
            .into_iter()
            .collect();
        let (conf_state, book) = match (&replayed.conf_state, &replayed.book) {
            (Some(cs), Some(book)) => (cs.clone(), book.clone()),
            // A log from before addresses were replicated.
            (Some(cs), None) => (cs.clone(), config.rms.clone()),
            // A new RM joining: no members known until the snapshot comes.
            (None, _) if config.join.is_some() => (ConfState::default(), me.clone()),
            (None, _) => {
                let cs = ConfState {
                    voters: config.rms.keys().copied().collect(),
                    ..Default::default()
                };
                wal.persist_members(&cs, &config.rms)?;
                (cs, config.rms.clone())
            }
        };
        let mut book = book;
        if let Some(a) = me.get(&config.id) {
            let alone = conf_state.voters == [config.id] && conf_state.learners.is_empty();
            match book.get(&config.id) {
                None => {
                    book.insert(config.id, *a);
                }
                Some(old) if old != a && alone => {
                    // No one else knows this RM yet: its address is what it
                    // was started with.
                    log::info!(
                        "RM {}'s address changes from {} (link {}) to {} (link {})",
                        config.id,
                        old.client,
                        old.peer,
                        a.client,
                        a.peer
                    );
                    book.insert(config.id, *a);
                    wal.persist_members(&conf_state, &book)?;
                }
                Some(old) if old != a => log::warn!(
                    "the cluster knows RM {} at {} (link {}), not at {} as started: the others keep reaching it there (remove_rm and add_rm it to move it)",
                    config.id,
                    old.client,
                    old.peer,
                    a.client
                ),
                Some(_) => {}
            }
        }
        let listed: Vec<u64> = config.rms.keys().copied().collect();
        if replayed.conf_state.is_some() && listed.len() > 1 && listed != membership::members(&conf_state) {
            log::warn!(
                "the raft log's membership (voters {:?}, learners {:?}) is not the list this RM was started with ({listed:?}): the log wins; change members with add_rm and remove_rm, or start a new cluster from copies of the five data folders without raft/",
                conf_state.voters,
                conf_state.learners
            );
        }
        let mem = rebuild_storage(&replayed, &conf_state)?;
        let mut storage = LogStorage::new(mem);
        let snapshot_index = replayed.snapshot.as_ref().map_or(0, |m| m.index);
        if let (Some(meta), Some(descriptor)) = (&replayed.snapshot, &replayed.snapshot_descriptor) {
            let path = snapshot::path_of(&config.raft_dir.join("snapshots"), meta.index, meta.term);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() == descriptor.size => storage.set_latest(Snapshot {
                    data: descriptor.encode().into(),
                    metadata: Some(meta.clone()).into(),
                    ..Default::default()
                }),
                _ => log::warn!(
                    "snapshot file {} is missing or not the one the log names; a new one will be cut",
                    path.display()
                ),
            }
        }
        let (last_index, mut hard_state, first_index) = (
            storage.last_index()?,
            storage.initial_state()?.hard_state,
            storage.first_index()?,
        );
        // The store may have applied entries beyond the commit index the
        // log's hard state records: the hard state is synced after the
        // entries are applied. Everything applied was committed, so the
        // commit index is raised to it; otherwise raft would hand those
        // entries out again and they would be applied twice.
        let applied = applied.min(last_index).max(first_index - 1);
        if hard_state.commit < applied {
            log::info!(
                "raft: commit index raised from {} to the applied index {applied}",
                hard_state.commit
            );
            hard_state.commit = applied;
            storage.wl().set_hardstate(hard_state);
        }
        let applied_term = storage.term(applied).unwrap_or(0);
        let raft_config = Config {
            id: config.id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_config.validate()?;
        let mut raw = RawNode::new(&raft_config, storage, &super::logger::logger())?;
        if conf_state.voters == [config.id] && conf_state.learners.is_empty() && raw.raft.state != StateRole::Leader {
            // A one-member cluster need not wait out an election timeout.
            raw.campaign()?;
        }
        let events = Arc::new(WakeQueue::new(waker));
        let fsync = wal.sync_timer();
        let (persist, persist_rx) = crossbeam_channel::unbounded();
        let (apply, apply_rx) = crossbeam_channel::unbounded();
        {
            let events = events.clone();
            let apply = apply.clone();
            std::thread::Builder::new()
                .name("wooter-persist".into())
                .spawn(move || super::persister::run(wal, persist_rx, &events, apply))?;
        }
        {
            let events = events.clone();
            let state = ApplierState {
                applied: (applied, applied_term),
                conf_state: conf_state.clone(),
                book: book.clone(),
                last_snapshot: snapshot_index,
                every: config.snapshot_every,
                raft_dir: config.raft_dir.clone(),
            };
            std::thread::Builder::new()
                .name("wooter-apply".into())
                .spawn(move || super::applier::run(&store, apply_rx, &events, state))?;
        }
        Ok(Replica {
            raw,
            id: config.id,
            persist,
            apply,
            events,
            held: VecDeque::new(),
            applied,
            next_id: 1,
            book,
            snapshot_index,
            building: false,
            raft_dir: config.raft_dir.clone(),
            fsync,
        })
    }

    /// How long the raft log's syncs take.
    pub fn fsync_histogram(&self) -> &crate::server::metrics::SharedHistogram {
        &self.fsync
    }

    /// Members (voters and learners) now.
    pub fn member_count(&self) -> usize {
        membership::members(&self.conf_state()).len()
    }

    /// This RM's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether this RM is the leader (the primary).
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// This RM's raft role, as a word.
    pub fn role(&self) -> &'static str {
        match self.raw.raft.state {
            StateRole::Leader => "leader",
            StateRole::Follower if self.is_learner(self.id) => "learner",
            StateRole::Follower if !self.is_member(self.id) && self.snapshot_index == 0 => "joining",
            StateRole::Follower if !self.is_member(self.id) => "removed",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
        }
    }

    /// The leader's id, if one is known.
    pub fn leader(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Highest index applied to the store.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Index of the newest snapshot this RM holds (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// Every RM's addresses.
    pub fn book(&self) -> &AddressBook {
        &self.book
    }

    /// The membership now (voters and learners).
    pub fn conf_state(&self) -> ConfState {
        self.raw.raft.prs().conf().to_conf_state()
    }

    /// Whether `id` is a voter or a learner.
    pub fn is_member(&self, id: u64) -> bool {
        let conf = self.raw.raft.prs().conf();
        conf.voters().contains(id) || conf.learners().contains(&id)
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: u64) -> bool {
        self.raw.raft.prs().conf().learners().contains(&id)
    }

    /// Whether this RM is the whole cluster (its only member, a voter).
    /// Asked for every request: read from raft's configuration in place.
    pub fn is_single(&self) -> bool {
        let conf = self.raw.raft.prs().conf();
        conf.voters().is_singleton() && conf.voters().contains(self.id) && conf.learners().is_empty()
    }

    /// Each member's matched log index, as the leader tracks it (`None` on
    /// a follower, which does not know).
    pub fn progress(&self) -> Option<Vec<(u64, u64)>> {
        self.is_leader()
            .then(|| self.raw.raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect())
    }

    /// Index of the last entry in this RM's log.
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// Index of the first entry still in this RM's in-memory log.
    pub fn first_index(&self) -> u64 {
        self.raw.store().first_index().unwrap_or(0)
    }

    /// Highest committed index.
    pub fn committed(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Whether raft has work for [`Replica::poll`] (a proposal made while
    /// handling the last output, say): the loop must not sleep on it.
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// Where this RM keeps snapshot files.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.raft_dir.join("snapshots")
    }

    /// Drops from memory the log entries the newest snapshot covers, but
    /// keeps those a live follower still needs (a follower that fell
    /// further behind gets the snapshot) and those after `hold` (a snapshot
    /// being sent). The log file is shortened when a snapshot is cut.
    pub fn compact(&mut self, hold: Option<u64>) {
        let mut to = self.snapshot_index.min(self.applied);
        let first = self.first_index();
        if self.is_leader() {
            for (id, p) in self.raw.raft.prs().iter() {
                if *id != self.id && p.recent_active && p.matched >= first && p.matched < to {
                    to = p.matched;
                }
            }
        }
        if let Some(h) = hold {
            to = to.min(h);
        }
        if to > first {
            if let Err(e) = self.raw.mut_store().wl().compact(to) {
                log::warn!("raft log compaction to {to} failed: {e}");
            }
        }
    }

    /// Asks the applier for a snapshot now (`snapshot` command, or raft
    /// needing one it does not have).
    pub fn request_snapshot(&mut self) {
        if !self.building {
            self.building = true;
            let _ = self.apply.send(ApplyJob::Build);
        }
    }

    /// Hands leadership to the follower that has the most of the log (on
    /// shutdown), if this RM leads and has voting followers. Returns the
    /// choice.
    pub fn transfer_leadership(&mut self) -> Option<u64> {
        let voters = self.conf_state().voters;
        let best = self
            .progress()?
            .into_iter()
            .filter(|(id, _)| *id != self.id && voters.contains(id))
            .max_by_key(|(_, matched)| *matched)
            .map(|(id, _)| id)?;
        self.raw.transfer_leader(best);
        Some(best)
    }

    /// Advances raft's clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Proposes an op; returns its proposal number.
    pub fn propose(&mut self, op: &Op) -> Result<u64, raft::Error> {
        let number = self.next_id;
        self.next_id += 1;
        self.raw.propose(proposal_context(self.id, number), op.encode())?;
        Ok(number)
    }

    /// Proposes a membership change, on the leader, after checking it is
    /// one the cluster can take: one change at a time, no removal that
    /// leaves fewer live voters than a quorum (`alive` says which RMs were
    /// heard from lately). Returns its proposal number, or why not.
    pub fn propose_membership(&mut self, change: MembershipChange, alive: impl Fn(u64) -> bool) -> Result<u64, String> {
        if !self.is_leader() {
            return Err("this RM is not the leader".into());
        }
        if self.raw.raft.has_pending_conf() {
            return Err("another membership change is still in progress; try again in a moment".into());
        }
        let cs = self.conf_state();
        let mut cc = ConfChange::default();
        match change {
            MembershipChange::Add(id, addrs) => {
                let mine = [addrs.client, addrs.peer];
                if let Some((other, _)) = self
                    .book
                    .iter()
                    .find(|(k, a)| **k != id && (mine.contains(&a.client) || mine.contains(&a.peer)))
                {
                    return Err(format!("RM {other} already uses {} or {}", addrs.client, addrs.peer));
                }
                if self.is_member(id) {
                    return match self.book.get(&id) {
                        Some(a) if *a == addrs => Err("already a member".into()),
                        _ => Err(format!(
                            "RM {id} is already a member, at another address; remove it first"
                        )),
                    };
                }
                cc.set_change_type(ConfChangeType::AddLearnerNode);
                cc.node_id = id;
                cc.context = membership::encode(&[(id, addrs)].into_iter().collect()).into();
            }
            MembershipChange::Remove(id) => {
                if !self.is_member(id) {
                    return Err(format!("RM {id} is not a member"));
                }
                if id == self.id {
                    return Err(format!(
                        "RM {id} is the leader; it hands leadership over now, ask again in a moment"
                    ));
                }
                if membership::is_voter(&cs, id) {
                    let rest: Vec<u64> = cs.voters.iter().copied().filter(|v| *v != id).collect();
                    let live = rest.iter().filter(|v| **v == self.id || alive(**v)).count();
                    let quorum = rest.len() / 2 + 1;
                    if live < quorum {
                        return Err(format!(
                            "removing RM {id} would leave {live} live voter(s) of {}, fewer than the quorum of {quorum}",
                            rest.len()
                        ));
                    }
                }
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = id;
            }
        }
        let number = self.next_id;
        self.next_id += 1;
        self.raw
            .propose_conf_change(proposal_context(self.id, number), cc)
            .map_err(|e| format!("raft refused the change: {e}"))?;
        Ok(number)
    }

    /// On the leader: proposes to make a voter of the first learner that
    /// has caught up (within [`CAUGHT_UP`] entries). Returns its id.
    pub fn promote_caught_up_learner(&mut self) -> Option<u64> {
        if !self.is_leader() || self.raw.raft.has_pending_conf() {
            return None;
        }
        let last = self.last_index();
        let learner = self.conf_state().learners.into_iter().find(|id| {
            self.raw
                .raft
                .prs()
                .get(*id)
                // Replicating, or probing from a match already close (an idle
                // cluster sends no appends that would move it to replicate).
                .is_some_and(|p| {
                    p.recent_active
                        && p.matched > 0
                        && p.matched + CAUGHT_UP >= last
                        && p.state != ProgressState::Snapshot
                })
        })?;
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = learner;
        match self.raw.propose_conf_change(Vec::new(), cc) {
            Ok(()) => {
                log::info!("RM {learner} has caught up: proposing it as a voter");
                Some(learner)
            }
            Err(e) => {
                log::warn!("promoting RM {learner}: {e}");
                None
            }
        }
    }

    /// Asks for a read index; returns the read's id.
    pub fn read_index(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.raw.read_index(id.to_be_bytes().to_vec());
        id
    }

    /// Whether this RM is new and empty: it is in no membership it knows
    /// of and holds no snapshot. Such an RM must start from a snapshot: the
    /// log alone does not hold the cluster's first membership.
    pub fn awaits_first_snapshot(&self) -> bool {
        self.snapshot_index == 0 && !self.is_member(self.id)
    }

    /// The answer of an RM that [`Replica::awaits_first_snapshot`] to the
    /// leader's append: a rejection asking for a snapshot. (raft-rs's own
    /// `request_snapshot` will not ask with an empty log, and the leader
    /// would otherwise send the log from its first entry.)
    pub fn snapshot_request_for(&self, append: &Message) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppendResponse);
        m.to = append.from;
        m.from = self.id;
        m.term = append.term;
        m.reject = true;
        m.index = append.index;
        m.reject_hint = 0;
        m.request_snapshot = 1;
        m
    }

    /// Feeds a message from a peer.
    pub fn step(&mut self, msg: Message) {
        if let Err(e) = self.raw.step(msg) {
            log::debug!("raft refused a message: {e}");
        }
    }

    /// Tells raft a peer could not be reached.
    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }

    /// Tells raft how sending a snapshot to `id` ended.
    pub fn report_snapshot(&mut self, id: u64, ok: bool) {
        let status = if ok {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.raw.report_snapshot(id, status);
    }

    /// Takes the helpers' reports and handles every pending `Ready`.
    pub fn poll(&mut self) -> Result<Output, RaftError> {
        let mut out = Output::default();
        let events = self.events.take();
        for event in events {
            match event {
                Event::Persisted(number) => {
                    self.raw.on_persist_ready(number);
                    while self.held.front().is_some_and(|(n, _)| *n <= number) {
                        if let Some((_, msgs)) = self.held.pop_front() {
                            out.messages.extend(msgs);
                        }
                    }
                }
                Event::Applied(applied) => {
                    if let Some(last) = applied.last() {
                        self.applied = self.applied.max(last.index);
                    }
                    out.applied.extend(applied);
                }
                Event::SnapshotBuilt(snap) => self.snapshot_built(snap, &mut out),
                Event::SnapshotSkipped => {
                    self.building = false;
                    out.snapshot_skipped = true;
                }
                Event::Installed(index) => {
                    self.applied = self.applied.max(index);
                }
                Event::Failed(e) => {
                    out.failed = Some(e);
                    return Ok(out);
                }
            }
        }
        self.mark_applied();
        if self.raw.store().take_wanted() {
            self.request_snapshot();
        }
        // Each round may make more ready (a persisted entry commits).
        for _ in 0..16 {
            if !self.raw.has_ready() {
                break;
            }
            self.handle_ready(&mut out)?;
        }
        Ok(out)
    }

    /// The entries after `index` in the in-memory log.
    fn entries_after(&self, index: u64) -> Vec<Entry> {
        let store = self.raw.store();
        let (Ok(first), Ok(last)) = (store.first_index(), store.last_index()) else {
            return Vec::new();
        };
        let lo = (index + 1).max(first);
        if lo > last {
            return Vec::new();
        }
        store
            .entries(lo, last + 1, None, GetEntriesContext::empty(false))
            .unwrap_or_default()
    }

    fn log_state_after(&self, index: u64) -> LogState {
        // The read guard must be gone before `entries` takes the write lock.
        let hard_state = self.raw.store().rl().hard_state().clone();
        LogState {
            conf_state: self.conf_state(),
            book: self.book.clone(),
            hard_state,
            entries: self.entries_after(index),
        }
    }

    fn snapshot_built(&mut self, snap: Snapshot, out: &mut Output) {
        self.building = false;
        let meta = snap.get_metadata().clone();
        let Some(descriptor) = Descriptor::decode(&snap.data) else {
            return;
        };
        out.snapshot_built = Some((meta.index, meta.term, descriptor.size));
        if meta.index <= self.snapshot_index {
            return;
        }
        self.snapshot_index = meta.index;
        self.raw.mut_store().set_latest(snap);
        let now = self.log_state_after(meta.index);
        let _ = self
            .persist
            .send(PersistJob::Compact(LogSnapshot { meta, descriptor, now }));
    }

    /// Applies a committed conf change to raft and the address book;
    /// false if it changed nothing.
    fn apply_conf_change(&mut self, entry: &Entry, out: &mut Output) -> bool {
        let cc = match ConfChange::parse_from_bytes(&entry.data) {
            Ok(cc) => cc,
            Err(e) => {
                log::error!("log entry {} is not a conf change ({e}); skipped", entry.index);
                return false;
            }
        };
        let cs = match self.raw.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(e) => {
                log::warn!("conf change at log index {} refused by raft: {e}", entry.index);
                return false;
            }
        };
        self.raw.mut_store().wl().set_conf_state(cs.clone());
        let id = cc.node_id;
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if let Some(a) = membership::decode(&cc.context).ok().and_then(|b| b.get(&id).copied()) {
                    self.book.insert(id, a);
                }
            }
            ConfChangeType::RemoveNode => {
                if id == self.id {
                    out.removed = true;
                } else {
                    self.book.remove(&id);
                }
            }
        }
        log::info!(
            "membership at log index {}: voters {:?}, learners {:?}",
            entry.index,
            cs.voters,
            cs.learners
        );
        true
    }

    /// Adopts a snapshot raft restored from (its file was fetched and
    /// checked before its message was stepped): the in-memory log starts
    /// after it, and the persister records it, then has it installed.
    fn restore_snapshot(&mut self, snap: &Snapshot, entries: &[Entry], out: &mut Output) -> Result<(), RaftError> {
        let meta = snap.get_metadata().clone();
        let book = Descriptor::decode(&snap.data).map(|d| d.book).unwrap_or_default();
        self.raw.mut_store().wl().apply_snapshot(snap.clone())?;
        if !entries.is_empty() {
            self.raw.mut_store().wl().append(entries)?;
        }
        let mine = self.book.get(&self.id).copied();
        self.book = book.clone();
        if let Some(a) = mine {
            self.book.entry(self.id).or_insert(a);
        }
        self.snapshot_index = meta.index;
        self.raw.mut_store().set_latest(snap.clone());
        out.membership_changed = true;
        log::info!(
            "restoring from the leader's snapshot of index {} (term {})",
            meta.index,
            meta.term
        );
        Ok(())
    }

    fn handle_ready(&mut self, out: &mut Output) -> Result<(), RaftError> {
        let mut rd = self.raw.ready();
        out.messages.extend(rd.take_messages());
        let committed = rd.take_committed_entries();
        if !committed.is_empty() {
            let mut changed = false;
            for e in committed
                .iter()
                .filter(|e| e.get_entry_type() == EntryType::EntryConfChange)
            {
                changed |= self.apply_conf_change(e, out);
            }
            let membership = changed.then(|| (self.conf_state(), self.book.clone()));
            if let Some((cs, book)) = &membership {
                out.membership_changed = true;
                let _ = self.persist.send(PersistJob::Members(cs.clone(), book.clone()));
            }
            let _ = self.apply.send(ApplyJob::Entries {
                entries: committed,
                membership,
            });
        }
        for rs in rd.take_read_states() {
            if rs.request_ctx.len() == 8 {
                let mut id = [0u8; 8];
                id.copy_from_slice(&rs.request_ctx);
                out.reads.push((u64::from_be_bytes(id), rs.index));
            }
        }
        let entries = rd.take_entries();
        let hard_state = rd.hs().cloned();
        let persisted_messages = rd.take_persisted_messages();
        let number = rd.number();
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.restore_snapshot(&snap, &entries, out)?;
            if let Some(hs) = &hard_state {
                self.raw.mut_store().wl().set_hardstate(hs.clone());
            }
            let meta = snap.get_metadata().clone();
            let path = snapshot::path_of(&self.snapshot_dir(), meta.index, meta.term);
            let now = self.log_state_after(meta.index);
            self.held.push_back((number, persisted_messages));
            let _ = self.persist.send(PersistJob::Restore {
                number,
                snapshot: LogSnapshot {
                    meta,
                    // The file's size and checksum, with the book as this RM
                    // adopted it.
                    descriptor: Descriptor {
                        book: self.book.clone(),
                        ..Descriptor::decode(&snap.data).unwrap_or(Descriptor {
                            size: 0,
                            crc: 0,
                            book: AddressBook::new(),
                        })
                    },
                    now,
                },
                path,
            });
            // Not applied until it is persisted (see `mark_applied`).
            self.raw.advance_append_async(rd);
            return Ok(());
        }
        {
            // raft reads these back from storage before they are durable.
            let store = self.raw.mut_store();
            let mut wl = store.wl();
            if !entries.is_empty() {
                wl.append(&entries)?;
            }
            if let Some(hs) = &hard_state {
                wl.set_hardstate(hs.clone());
            }
        }
        if entries.is_empty() && hard_state.is_none() && self.held.is_empty() {
            // Nothing to make durable and nothing earlier still on its way:
            // this Ready is as persisted as it will ever be.
            out.messages.extend(persisted_messages);
            self.raw.advance_append_async(rd);
            self.raw.on_persist_ready(number);
        } else {
            self.held.push_back((number, persisted_messages));
            let _ = self.persist.send(PersistJob::Ready {
                number,
                entries,
                hard_state,
            });
            self.raw.advance_append_async(rd);
        }
        self.mark_applied();
        Ok(())
    }

    /// Tells raft that what it handed out is applied (the applier applies
    /// in order, and results are matched by proposal, so raft need not
    /// wait). Never beyond what is persisted: a snapshot being recorded
    /// is not applied yet.
    fn mark_applied(&mut self) {
        let log = &self.raw.raft.raft_log;
        let to = log.committed.min(log.persisted);
        if to > log.applied {
            self.raw.advance_apply_to(to);
        }
    }
}
