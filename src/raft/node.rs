//! One RM's consensus: raft-rs's `RawNode`, stepped by the event loop, with
//! two helper threads so that the loop never touches the disk.
//!
//! - the **persister** appends each `Ready`'s entries and hard state to the
//!   [`Wal`] and syncs, several `Ready`s per sync when they queue up (group
//!   commit), then reports the highest `Ready` number it made durable;
//! - the **applier** applies committed entries, in log order, to the store
//!   (each op journalled first, see `storage::journal`), and reports each
//!   result with the proposal it answers.
//!
//! The `Ready` is handled in the order raft-rs requires: messages that may
//! go at once are sent at once (a leader's appends), entries and hard state
//! are put into the in-memory storage before `advance_append_async`, and the
//! messages that depend on them are held until the persister reports them
//! durable. A failed log write stops the RM (fail closed): it never goes on
//! with state it may not have persisted.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};
use thiserror::Error;

use super::wal::Wal;
use crate::storage::{Answer, Op, Store, StoreError};
use crate::wake_queue::WakeQueue;

/// Raft ticks per election timeout (at the loop's 100 ms tick: 0.8 to 1.6 s,
/// raft randomising it up to twice this).
pub const ELECTION_TICKS: usize = 8;
/// Raft ticks per heartbeat (100 ms).
pub const HEARTBEAT_TICKS: usize = 1;

/// Where an RM is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmAddrs {
    /// Its client address (both client framings).
    pub client: SocketAddr,
    /// Its RM-link address.
    pub peer: SocketAddr,
}

/// The cluster as this RM knows it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This RM's id (1 and up).
    pub id: u64,
    /// Every RM, this one included.
    pub rms: BTreeMap<u64, RmAddrs>,
    /// Where the raft log and the apply journal live.
    pub raft_dir: PathBuf,
    /// The cluster secret(s) RM links are authenticated with.
    pub auth: crate::server::link_auth::LinkAuth,
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
enum Event {
    Persisted(u64),
    Applied(Vec<Applied>),
    Failed(RaftError),
}

struct PersistJob {
    number: u64,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
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
}

/// This RM's raft node and its helpers.
pub struct Replica {
    raw: RawNode<MemStorage>,
    id: u64,
    persist: Sender<PersistJob>,
    apply: Sender<Vec<Entry>>,
    events: Arc<WakeQueue<Event>>,
    /// Messages waiting for the `Ready` they belong to to be durable.
    held: VecDeque<(u64, Vec<Message>)>,
    /// Highest index the applier has applied.
    applied: u64,
    next_id: u64,
}

/// Encodes a proposal's context: proposer id and proposal number.
fn proposal_context(rm: u64, number: u64) -> Vec<u8> {
    let mut ctx = rm.to_be_bytes().to_vec();
    ctx.extend_from_slice(&number.to_be_bytes());
    ctx
}

fn parse_context(ctx: &[u8]) -> Option<(u64, u64)> {
    if ctx.len() != 16 {
        return None;
    }
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&ctx[..8]);
    b.copy_from_slice(&ctx[8..]);
    Some((u64::from_be_bytes(a), u64::from_be_bytes(b)))
}

impl Replica {
    /// Opens the raft log, builds the node, and starts the persister and
    /// applier. `applied` is the store's applied index (from its journal).
    pub fn start(
        config: &ClusterConfig,
        store: Arc<Store>,
        applied: u64,
        waker: Arc<Waker>,
    ) -> Result<Replica, RaftError> {
        crate::storage::create_private_dir(&config.raft_dir)?;
        let (mut wal, replayed) = Wal::open(&config.raft_dir.join("log"))?;
        if replayed.torn_bytes > 0 {
            log::warn!(
                "raft log: cut off a torn tail of {} bytes (a crash mid-write)",
                replayed.torn_bytes
            );
        }
        let conf_state = match replayed.conf_state {
            Some(cs) => cs,
            None => {
                let cs = ConfState {
                    voters: config.rms.keys().copied().collect(),
                    ..Default::default()
                };
                wal.persist_conf_state(&cs)?;
                cs
            }
        };
        let storage = MemStorage::new_with_conf_state(conf_state.clone());
        {
            let mut wl = storage.wl();
            for batch in &replayed.entries {
                wl.append(batch)?;
            }
            if let Some(hs) = replayed.hard_state {
                wl.set_hardstate(hs);
            }
        }
        let (last_index, mut hard_state) = {
            use raft::Storage as _;
            (storage.last_index()?, storage.initial_state()?.hard_state)
        };
        // The store may have applied entries beyond the commit index the
        // log's hard state records: the hard state is synced after the
        // entries are applied. Everything applied was committed, so the
        // commit index is raised to it; otherwise raft would hand those
        // entries out again and they would be applied twice.
        let applied = applied.min(last_index);
        if hard_state.commit < applied {
            log::info!(
                "raft: commit index raised from {} to the applied index {applied}",
                hard_state.commit
            );
            hard_state.commit = applied;
            storage.wl().set_hardstate(hard_state);
        }
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
        if conf_state.voters == [config.id] && raw.raft.state != StateRole::Leader {
            // A one-member cluster need not wait out an election timeout.
            raw.campaign()?;
        }
        let events = Arc::new(WakeQueue::new(waker));
        let (persist, persist_rx) = crossbeam_channel::unbounded();
        let (apply, apply_rx) = crossbeam_channel::unbounded();
        {
            let events = events.clone();
            std::thread::Builder::new()
                .name("wooter-persist".into())
                .spawn(move || persister(wal, persist_rx, &events))?;
        }
        {
            let events = events.clone();
            std::thread::Builder::new()
                .name("wooter-apply".into())
                .spawn(move || applier(&store, apply_rx, &events))?;
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
        })
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

    /// Highest committed index.
    pub fn committed(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Whether raft has work for [`Replica::poll`] (a proposal made while
    /// handling the last output, say): the loop must not sleep on it.
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// Drops from memory the log entries no RM can still need: everything
    /// before what this RM has applied and (on a leader) every follower has
    /// matched. Without it the in-memory log grows with every write.
    /// Followers keep theirs (one may become leader and need them), and the
    /// log file on disk is not shortened: both wait for snapshots.
    pub fn compact(&mut self) {
        let single = self.raw.raft.prs().iter().count() == 1;
        let bound = if single {
            self.applied
        } else if self.is_leader() {
            self.raw
                .raft
                .prs()
                .iter()
                .map(|(_, p)| p.matched)
                .min()
                .unwrap_or(0)
                .min(self.applied)
        } else {
            return;
        };
        // One entry more is kept, so the term before the first entry is
        // always known.
        let to = bound.saturating_sub(1);
        use raft::Storage as _;
        let store = self.raw.mut_store();
        // Read before the write lock is taken: first_index takes the read lock.
        let first = store.first_index().unwrap_or(u64::MAX);
        if to > first {
            if let Err(e) = store.wl().compact(to) {
                log::warn!("raft log compaction to {to} failed: {e}");
            }
        }
    }

    /// Hands leadership to the follower that has the most of the log (on
    /// shutdown), if this RM leads and has followers. Returns the choice.
    pub fn transfer_leadership(&mut self) -> Option<u64> {
        let best = self
            .progress()?
            .into_iter()
            .filter(|(id, _)| *id != self.id)
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

    /// Asks for a read index; returns the read's id.
    pub fn read_index(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.raw.read_index(id.to_be_bytes().to_vec());
        id
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
                Event::Failed(e) => return Err(e),
            }
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

    fn handle_ready(&mut self, out: &mut Output) -> Result<(), RaftError> {
        let mut rd = self.raw.ready();
        out.messages.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            log::error!("raft sent a snapshot; installing snapshots is not built yet (issue 5): ignored");
        }
        let committed = rd.take_committed_entries();
        if !committed.is_empty() {
            let _ = self.apply.send(committed);
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
            let _ = self.persist.send(PersistJob {
                number,
                entries,
                hard_state,
            });
            self.raw.advance_append_async(rd);
        }
        self.raw.advance_apply();
        Ok(())
    }
}

fn persister(mut wal: Wal, jobs: Receiver<PersistJob>, events: &WakeQueue<Event>) {
    while let Ok(first) = jobs.recv() {
        // Group commit: everything queued meanwhile goes in the same sync.
        let mut number = first.number;
        let mut entries = first.entries;
        let mut hard_state = first.hard_state;
        while let Ok(more) = jobs.try_recv() {
            number = more.number;
            entries.extend(more.entries);
            if more.hard_state.is_some() {
                hard_state = more.hard_state;
            }
        }
        match wal.persist(&entries, hard_state.as_ref()) {
            Ok(()) => events.push(Event::Persisted(number)),
            Err(e) => {
                log::error!("raft log write failed: {e}; this RM stops taking part");
                events.push(Event::Failed(RaftError::Log(e)));
                return;
            }
        }
    }
}

fn applier(store: &Store, batches: Receiver<Vec<Entry>>, events: &WakeQueue<Event>) {
    while let Ok(batch) = batches.recv() {
        let mut applied = Vec::with_capacity(batch.len());
        for entry in batch {
            let index = entry.index;
            let proposal = parse_context(&entry.context);
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                applied.push(Applied {
                    index,
                    proposal,
                    result: None,
                });
                continue;
            }
            let result = match Op::decode(&entry.data) {
                Ok(op) => store.apply_logged(index, &op),
                Err(e) => {
                    log::error!("log entry {index} is not an op ({e}); skipped on every RM alike");
                    Err(StoreError::Corrupt {
                        file: PathBuf::from("raft/log"),
                        detail: e.to_string(),
                    })
                }
            };
            if let Err(StoreError::Io(e)) = result {
                log::error!("applying log entry {index} failed: {e}; this RM stops taking part");
                events.push(Event::Failed(RaftError::Apply {
                    index,
                    source: StoreError::Io(e),
                }));
                return;
            }
            applied.push(Applied {
                index,
                proposal,
                result: Some(result),
            });
        }
        events.push(Event::Applied(applied));
    }
}
