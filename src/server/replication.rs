//! How a request travels through the cluster, and the RM links.
//!
//! - On the **leader** (the primary), a write is proposed to raft and
//!   answered once its entry is committed and applied here; a read asks
//!   raft for a read index (one confirmation round with a majority) and
//!   runs once this RM has applied up to it. In a one-member cluster the
//!   leader is trivially current, so reads run at once.
//! - A **follower** forwards the client's bytes to the leader over its RM
//!   link and relays the answer; for a write it first waits until it has
//!   applied that write itself, so the client's next read here sees it.
//!   With `--stale-reads` a follower answers reads from its own data.
//! - With **no leader**, a request waits up to `--leader-wait`, then gets
//!   the legacy empty reply or `ERR unavailable`.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use protobuf::Message as _;
use raft::eraftpb::Message;

use super::event_loop::{Endpoint, EventLoop};
use super::peer_link::PeerLink;
use super::workers::Origin;
use crate::command::{Admin, Request};
use crate::protocol::legacy::{self, LegacyRequest};
use crate::protocol::peer::PeerFrame;
use crate::protocol::text::{self, TextCommand};
use crate::protocol::Framing;
use crate::raft::node::RaftError;
use crate::raft::node::{MembershipChange, RmAddrs};
use crate::storage::StoreError;

/// How long to wait before dialling a peer again.
const REDIAL: Duration = Duration::from_millis(300);
/// A peer heard from within this is live, for the quorum check of
/// `remove_rm`.
const LIVE: Duration = Duration::from_secs(2);

/// A request waiting for something: raft, the leader, or this RM's apply.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    /// Whom the reply goes to.
    pub origin: Origin,
    /// The framing to answer in.
    pub framing: Framing,
    /// When it arrived.
    pub since: Instant,
}

/// The loop's bookkeeping for requests in flight through raft.
#[derive(Default)]
pub struct ReplicationState {
    /// Writes proposed here, by proposal number.
    writes: HashMap<u64, Pending>,
    /// Reads waiting for their read index, by read id.
    reads: HashMap<u64, (Pending, crate::storage::Query)>,
    /// Reads whose index is known, waiting for this RM to apply up to it.
    reads_to_apply: Vec<(u64, Pending, crate::storage::Query)>,
    /// Requests waiting for a leader.
    leaderless: VecDeque<(Pending, Request, Vec<u8>)>,
    /// Requests forwarded to the leader, by forward id.
    forwarded: HashMap<u64, Pending>,
    next_forward: u64,
    /// Replies from the leader waiting for this RM to apply their write.
    replies_to_apply: Vec<(u64, Origin, Vec<u8>)>,
    /// Outbound link of each peer, and when to dial again if none.
    outbound: HashMap<u64, Token>,
    redial_at: HashMap<u64, Instant>,
    /// RMs whose traffic is dropped (the test-only partition switch).
    blocked: std::collections::HashSet<u64>,
    /// Membership changes proposed here: the request, and what to answer.
    admin: HashMap<u64, (Pending, String)>,
    /// `snapshot` commands waiting for the applier.
    snapshot_waiters: Vec<Pending>,
    /// When each RM last sent a raft message.
    last_heard: HashMap<u64, Instant>,
}

/// The reply to a request that could not reach a leader in time.
fn unavailable(framing: Framing) -> Vec<u8> {
    match framing {
        Framing::Legacy => Vec::new(),
        Framing::Text => {
            let mut out = Vec::new();
            text::encode_error(
                &mut out,
                "unavailable",
                "no primary (raft leader) answered in time; try again",
            );
            out
        }
    }
}

impl EventLoop {
    /// The test-only partition switch: from now on, drop all RM traffic
    /// with `ids` (an empty list heals). Refused unless enabled.
    pub(super) fn test_partition(&mut self, ids: Vec<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.config.test_partition {
            text::encode_error(
                &mut out,
                "unknown_command",
                "unknown command 'test_partition'; type help for the list",
            );
            return out;
        }
        log::warn!("test partition: dropping RM traffic with {ids:?}");
        self.repl.blocked = ids.into_iter().collect();
        out.extend_from_slice(b"OK\n");
        out
    }

    /// The reply to `rms`: one line per member, then `OK`. Lag (entries
    /// behind the leader's log) is known on the leader only.
    pub(super) fn rms_report(&mut self) -> Vec<u8> {
        let leader = self.replica.leader();
        let progress = self.replica.progress();
        let last = self.replica.last_index();
        let cs = self.replica.conf_state();
        let mut out = String::new();
        for (id, addrs) in self.replica.book() {
            let role = match (leader == Some(*id), *id == self.cluster.id) {
                (true, _) => "leader",
                (false, true) => self.replica.role(),
                _ if cs.learners.contains(id) => "learner",
                _ if cs.voters.contains(id) => "follower",
                _ => "joining",
            };
            out.push_str(&format!(
                "rm={id} client={} link={} role={role}",
                addrs.client, addrs.peer
            ));
            if leader == Some(*id) {
                out.push_str(" primary=yes");
                if let Some(addr) = self.config.primary_listen {
                    out.push_str(&format!(" primary_address={addr}"));
                }
            }
            if *id == self.cluster.id {
                out.push_str(&format!(
                    " self=yes term={} commit={} applied={} snapshot={}",
                    self.replica.term(),
                    self.replica.committed(),
                    self.replica.applied(),
                    self.replica.snapshot_index()
                ));
            }
            match progress.as_ref().and_then(|p| p.iter().find(|(m, _)| m == id)) {
                Some((_, matched)) => {
                    out.push_str(&format!(" matched={matched} lag={}", last.saturating_sub(*matched)))
                }
                None => out.push_str(" lag=unknown"),
            }
            if *id != self.cluster.id {
                // The lag alone says nothing of a member that just died.
                match self.repl.last_heard.get(id) {
                    Some(t) => out.push_str(&format!(" heard_ms_ago={}", t.elapsed().as_millis())),
                    None => out.push_str(" heard_ms_ago=never"),
                }
            }
            out.push('\n');
        }
        out.push_str("OK\n");
        out.into_bytes()
    }

    /// `add_rm`, `remove_rm` and `snapshot`. Membership changes are the
    /// leader's: a follower forwards them, and the answer comes once the
    /// change is applied.
    pub(super) fn admin(&mut self, pending: Pending, admin: Admin, raw: Vec<u8>) {
        if self.failed.is_some() {
            return self.respond(pending.origin, self.storage_failed_reply(pending.framing), 0);
        }
        let change = match admin {
            Admin::Snapshot => {
                self.repl.snapshot_waiters.push(pending);
                self.replica.request_snapshot();
                return;
            }
            Admin::AddRm { id, client } => match RmAddrs::from_client(client) {
                Ok(addrs) => MembershipChange::Add(id, addrs),
                Err(e) => return self.admin_error(pending, "invalid", &e),
            },
            Admin::RemoveRm(id) => MembershipChange::Remove(id),
        };
        if !self.replica.is_leader() {
            let from_peer = matches!(pending.origin, Origin::Peer { .. });
            match self.replica.leader() {
                Some(leader) if !from_peer && leader != self.replica.id() && self.forward(leader, pending, &raw) => {}
                _ => self.admin_error(pending, "unavailable", "no leader to take the change; try again"),
            }
            return;
        }
        let heard = &self.repl.last_heard;
        let alive = |id: u64| heard.get(&id).is_some_and(|t| t.elapsed() < LIVE);
        match self.replica.propose_membership(change, alive) {
            Ok(number) => {
                let done = match change {
                    MembershipChange::Add(id, _) => {
                        format!("rm {id} added as a learner; it becomes a voter once it has caught up\nOK\n")
                    }
                    MembershipChange::Remove(id) => format!("rm {id} removed\nOK\n"),
                };
                log::info!("membership change proposed: {change:?}");
                self.repl.admin.insert(number, (pending, done));
            }
            Err(why) if why == "already a member" => {
                self.respond(pending.origin, b"already a member\nOK\n".to_vec(), 0);
            }
            Err(why) => {
                if matches!(change, MembershipChange::Remove(id) if id == self.replica.id()) {
                    if let Some(to) = self.replica.transfer_leadership() {
                        log::info!("asked to remove the leader: handing leadership to RM {to}");
                    }
                }
                self.admin_error(pending, "refused", &why);
            }
        }
    }

    fn admin_error(&mut self, pending: Pending, kind: &str, why: &str) {
        let mut out = Vec::new();
        text::encode_error(&mut out, kind, why);
        self.respond(pending.origin, out, 0);
    }

    /// Routes a parsed request from a client or a peer.
    pub(super) fn dispatch(&mut self, pending: Pending, request: Request, raw: Vec<u8>) {
        if self.failed.is_some() {
            return self.respond(pending.origin, self.storage_failed_reply(pending.framing), 0);
        }
        let from_peer = matches!(pending.origin, Origin::Peer { .. });
        let single = self.replica.is_single();
        match request {
            Request::Query(query) if single || (self.config.stale_reads && !from_peer) => {
                self.run_query(pending, query);
            }
            Request::Query(query) if self.replica.is_leader() => {
                let id = self.replica.read_index();
                self.repl.reads.insert(id, (pending, query));
            }
            Request::Op(op) if self.replica.is_leader() => match self.replica.propose(&op) {
                Ok(number) => {
                    self.repl.writes.insert(number, pending);
                }
                Err(e) => {
                    log::warn!("{}: proposal refused by raft: {e}", op.name());
                    self.respond(pending.origin, unavailable(pending.framing), 0);
                }
            },
            // A forwarded request that finds this RM no longer leader is
            // not forwarded again (that could go round in circles).
            _ if from_peer => self.respond(pending.origin, unavailable(pending.framing), 0),
            request => match self.replica.leader() {
                // A leader whose link is down (it may have just died) is as
                // good as none: wait for one, up to --leader-wait.
                Some(leader) if leader != self.replica.id() && self.forward(leader, pending, &raw) => {}
                _ => self.repl.leaderless.push_back((pending, request, raw)),
            },
        }
    }

    /// Hands a request to the leader; false if the link to it is down
    /// (the request then waits for a leader, as with none known).
    pub(super) fn forward(&mut self, leader: u64, pending: Pending, raw: &[u8]) -> bool {
        self.repl.next_forward += 1;
        let req_id = self.repl.next_forward;
        let framing = u8::from(pending.framing == Framing::Text);
        let frame = PeerFrame::Forward {
            req_id,
            framing,
            request: raw.to_vec(),
        };
        if !self.send_to_peer(leader, &frame) {
            return false;
        }
        self.repl.forwarded.insert(req_id, pending);
        true
    }

    /// Sends a reply where it belongs. `index` is the log index a follower
    /// must apply before relaying it (0: none).
    pub(super) fn respond(&mut self, origin: Origin, reply: Vec<u8>, index: u64) {
        match origin {
            Origin::Client { token, serial } => self.reply_to_client(token, serial, &reply),
            Origin::Peer { rm, req_id } => {
                let frame = PeerFrame::ForwardReply { req_id, index, reply };
                self.send_to_peer(rm, &frame);
            }
        }
    }

    /// Takes raft's output: sends messages, starts granted reads, answers
    /// applied writes. A raft failure ends the loop (fail closed).
    pub(super) fn drive_raft(&mut self) -> Result<(), RaftError> {
        let mut out = self.replica.poll()?;
        let failed = out.failed.take();
        for msg in out.messages {
            self.send_raft(msg);
        }
        if out.membership_changed {
            self.membership_changed();
        }
        if out.snapshot_built.is_some() {
            let hold = self.transfers.hold();
            self.replica.compact(hold);
        }
        let answer = match (out.snapshot_built, out.snapshot_skipped) {
            (Some((index, term, bytes)), _) => Some(format!("snapshot index={index} term={term} bytes={bytes}\nOK\n")),
            (None, true) => Some(format!(
                "snapshot index={} (nothing applied since the last one)\nOK\n",
                self.replica.snapshot_index()
            )),
            (None, false) => None,
        };
        if let Some(reply) = answer {
            for p in std::mem::take(&mut self.repl.snapshot_waiters) {
                self.respond(p.origin, reply.clone().into_bytes(), 0);
            }
        }
        if out.removed {
            // It does not exit: a removal replayed from the log at a
            // restart may be followed by a later `add_rm` of the same id.
            log::warn!(
                "this RM was removed from the cluster: it no longer takes part (stop it, or add it again with add_rm)"
            );
        }
        for (id, index) in out.reads {
            if let Some((pending, query)) = self.repl.reads.remove(&id) {
                self.repl.reads_to_apply.push((index, pending, query));
            }
        }
        for applied in out.applied {
            let Some((rm, number)) = applied.proposal else { continue };
            if rm != self.replica.id() {
                continue;
            }
            if let Some((pending, reply)) = self.repl.admin.remove(&number) {
                self.respond(pending.origin, reply.into_bytes(), applied.index);
                continue;
            }
            let (Some(pending), Some(result)) = (self.repl.writes.remove(&number), applied.result) else {
                continue;
            };
            let reply = match pending.framing {
                Framing::Legacy => legacy::encode_reply(&result),
                Framing::Text => text::encode_reply(&result),
            };
            match &result {
                Err(e @ (StoreError::Io(_) | StoreError::Corrupt { .. })) => {
                    log::error!("write at log index {}: {e}", applied.index)
                }
                Err(e) => log::debug!("write at log index {}: {e}", applied.index),
                Ok(_) => {}
            }
            self.respond(pending.origin, reply, applied.index);
        }
        let applied = self.replica.applied();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.repl.reads_to_apply)
            .into_iter()
            .partition(|(i, _, _)| *i <= applied);
        self.repl.reads_to_apply = waiting;
        for (_, pending, query) in ready {
            self.run_query(pending, query);
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.repl.replies_to_apply)
            .into_iter()
            .partition(|(i, _, _)| *i <= applied);
        self.repl.replies_to_apply = waiting;
        for (_, origin, reply) in ready {
            self.respond(origin, reply, 0);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Raft or the storage failed: this RM stops taking part (fail closed)
    /// but stays up to say so. Its RM links and listener close (to the
    /// others it is down), it lets the primary address go, and every
    /// request, waiting or new, is answered `ERR storage` (the legacy empty
    /// reply) until it is restarted; `stats` shows the failure.
    pub(super) fn enter_failed(&mut self, e: &RaftError) {
        log::error!(
            "{e}: this RM no longer takes part; it answers every request with ERR storage until it is restarted"
        );
        self.failed = Some(e.to_string());
        let links: Vec<usize> = self
            .endpoints
            .iter()
            .filter(|(_, ep)| matches!(ep, Endpoint::Peer(_) | Endpoint::PeerListener(_)))
            .map(|(k, _)| k)
            .collect();
        for k in links {
            self.endpoints.remove(k);
        }
        self.repl.outbound.clear();
        self.release_primary();
        let mut waiting: Vec<Pending> = Vec::new();
        waiting.extend(self.repl.writes.drain().map(|(_, p)| p));
        waiting.extend(self.repl.reads.drain().map(|(_, (p, _))| p));
        waiting.extend(self.repl.reads_to_apply.drain(..).map(|(_, p, _)| p));
        waiting.extend(self.repl.leaderless.drain(..).map(|(p, _, _)| p));
        waiting.extend(self.repl.forwarded.drain().map(|(_, p)| p));
        waiting.extend(self.repl.admin.drain().map(|(_, (p, _))| p));
        waiting.append(&mut self.repl.snapshot_waiters);
        for p in waiting {
            self.respond(p.origin, self.storage_failed_reply(p.framing), 0);
        }
        for (_, origin, _) in std::mem::take(&mut self.repl.replies_to_apply) {
            // The leader applied it; this RM cannot show it: say so.
            self.respond(origin, Vec::new(), 0);
        }
    }

    /// What a request gets from an RM whose storage failed.
    pub(super) fn storage_failed_reply(&self, framing: Framing) -> Vec<u8> {
        match framing {
            Framing::Legacy => Vec::new(),
            Framing::Text => {
                let mut out = Vec::new();
                let why = self.failed.as_deref().unwrap_or("failed");
                text::encode_error(
                    &mut out,
                    "storage",
                    &format!("this RM stopped taking part after a storage failure ({why}); restart it once fixed"),
                );
                out
            }
        }
    }

    /// Every raft tick: retry leaderless requests, time out stale ones,
    /// redial peers.
    pub(super) fn raft_tick(&mut self) {
        let wait = self.config.leader_wait;
        let now = Instant::now();
        let leaderless = std::mem::take(&mut self.repl.leaderless);
        for (pending, request, raw) in leaderless {
            if now.duration_since(pending.since) >= wait {
                self.respond(pending.origin, unavailable(pending.framing), 0);
            } else if self.replica.leader().is_some() {
                self.dispatch(pending, request, raw);
            } else {
                self.repl.leaderless.push_back((pending, request, raw));
            }
        }
        // A proposal or forward that outlives twice the wait was lost with
        // a leader change: say so rather than keep the client forever.
        let expired = |p: &Pending| now.duration_since(p.since) >= wait * 2;
        let mut lost: Vec<Pending> = Vec::new();
        self.repl.writes.retain(|_, p| {
            !expired(p) || {
                lost.push(*p);
                false
            }
        });
        self.repl.forwarded.retain(|_, p| {
            !expired(p) || {
                lost.push(*p);
                false
            }
        });
        self.repl.reads.retain(|_, (p, _)| {
            !expired(p) || {
                lost.push(*p);
                false
            }
        });
        self.repl.admin.retain(|_, (p, _)| {
            !expired(p) || {
                lost.push(*p);
                false
            }
        });
        for p in lost {
            self.respond(p.origin, unavailable(p.framing), 0);
        }
        if let Some(id) = self.replica.promote_caught_up_learner() {
            log::info!("promoting learner RM {id}");
        }
        self.snapshot_tick();
        let learned: Vec<(u64, RmAddrs)> =
            std::mem::take(&mut *self.join_learned.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        for (id, a) in learned {
            if !self.replica.book().contains_key(&id) {
                self.transfers.learned.insert(id, a);
            }
        }
        self.dial_peers();
    }

    /// Dials every peer without an outbound link whose redial time came,
    /// after dropping dials that did not connect within a second.
    pub(super) fn dial_peers(&mut self) {
        let now = Instant::now();
        let stuck: Vec<Token> = self
            .repl
            .outbound
            .values()
            .copied()
            .filter(|t| {
                matches!(self.endpoints.get(t.0), Some(Endpoint::Peer(l))
                    if !l.connected && now.duration_since(l.since) > Duration::from_secs(1))
            })
            .collect();
        for token in stuck {
            self.drop_peer(token, "dial did not connect within 1 s");
        }
        let peers: Vec<(u64, std::net::SocketAddr)> = self
            .replica
            .book()
            .iter()
            .chain(self.transfers.learned.iter())
            .filter(|(id, _)| **id != self.cluster.id && !self.repl.outbound.contains_key(id))
            .filter(|(id, _)| self.repl.redial_at.get(id).is_none_or(|t| now >= *t))
            .map(|(id, a)| (*id, a.peer))
            .collect();
        for (id, addr) in peers {
            self.repl.redial_at.insert(id, now + REDIAL);
            let mut stream = match TcpStream::connect(addr) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("dial RM {id} at {addr}: {e}");
                    continue;
                }
            };
            let entry = self.endpoints.vacant_entry();
            let token = Token(entry.key());
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            // The hello waits for the acceptor's challenge.
            entry.insert(Endpoint::Peer(PeerLink::new(stream, Some(id), true)));
            self.repl.outbound.insert(id, token);
        }
    }

    pub(super) fn accept_peers(&mut self, token: Token) {
        if self.accepts_paused() {
            return; // the pause's end accepts again
        }
        loop {
            let Some(Endpoint::PeerListener(l)) = self.endpoints.get_mut(token.0) else {
                return;
            };
            let (mut stream, addr) = match l.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the dial waits in the backlog; the
                    // loop tries again after the same pause as for clients.
                    log::warn!("RM link accept failed: {e}; pausing accepts");
                    self.pause_accepts();
                    return;
                }
            };
            let entry = self.endpoints.vacant_entry();
            if self
                .poll
                .registry()
                .register(&mut stream, Token(entry.key()), Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            let _ = stream.set_nodelay(true);
            log::debug!("RM link from {addr}");
            let mut link = PeerLink::new(stream, None, false);
            link.nonce = super::link_auth::nonce();
            link.send(&PeerFrame::Challenge {
                nonce: link.nonce.clone(),
            });
            let _ = link.flush();
            entry.insert(Endpoint::Peer(link));
        }
    }

    fn drop_peer(&mut self, token: Token, why: &str) {
        if let Some(Endpoint::Peer(link)) = self.endpoints.try_remove(token.0) {
            if let Some(id) = link.rm_id {
                log::debug!(
                    "RM link {} RM {id} closed: {why}",
                    if link.outbound { "to" } else { "from" }
                );
                if link.outbound {
                    self.repl.outbound.remove(&id);
                    self.replica.report_unreachable(id);
                }
            } else {
                log::warn!("RM link from an unknown peer closed: {why}");
            }
        }
    }

    pub(super) fn peer_event(&mut self, token: Token, event: &Event) {
        let Some(Endpoint::Peer(link)) = self.endpoints.get_mut(token.0) else {
            return;
        };
        if link.outbound && !link.connected {
            if event.is_error() || event.is_write_closed() {
                self.drop_peer(token, "dial failed");
                return;
            }
            if let Ok(Some(e)) | Err(e) = link.stream.take_error() {
                self.drop_peer(token, &format!("dial failed: {e}"));
                return;
            }
            if event.is_writable() {
                match link.stream.peer_addr() {
                    Ok(_) => {
                        link.connected = true;
                        let _ = link.stream.set_nodelay(true);
                        log::info!("RM link to RM {} connected", link.rm_id.unwrap_or(0));
                    }
                    Err(_) => return,
                }
            }
        }
        if let Err(e) = link.flush() {
            self.drop_peer(token, &e.to_string());
            return;
        }
        if !(event.is_readable() || event.is_read_closed()) {
            return;
        }
        let (frames, closed) = match link.receive() {
            Ok(r) => r,
            Err(e) => {
                self.drop_peer(token, &e.to_string());
                return;
            }
        };
        for frame in frames {
            if !self.peer_frame(token, frame) {
                self.drop_peer(token, "protocol violation");
                return;
            }
        }
        if closed {
            self.drop_peer(token, "peer closed the link");
        }
    }

    /// Handles one frame from a link; false if the link must be dropped.
    fn peer_frame(&mut self, token: Token, frame: PeerFrame) -> bool {
        let Some(Endpoint::Peer(link)) = self.endpoints.get_mut(token.0) else {
            return false;
        };
        if link.outbound {
            // The only thing an accepting RM says on our link: its challenge.
            return match frame {
                PeerFrame::Challenge { nonce } => {
                    let mac = self.cluster.auth.answer(&nonce, self.cluster.id);
                    link.send(&PeerFrame::Hello {
                        rm_id: self.cluster.id,
                        mac,
                    });
                    link.greeted = true;
                    link.flush().is_ok()
                }
                _ => false,
            };
        }
        let Some(from) = link.rm_id else {
            // Nothing but a hello answering our challenge, from a member, is
            // accepted first.
            let peer = link
                .stream
                .peer_addr()
                .map_or("an unknown address".to_string(), |a| a.to_string());
            return match frame {
                // Anyone holding the cluster secret may link, member or not
                // yet: a new RM is linked to by the leader before it knows
                // it is a member.
                PeerFrame::Hello { rm_id, mac }
                    if rm_id != self.cluster.id && self.cluster.auth.verify(&link.nonce, rm_id, &mac) =>
                {
                    link.rm_id = Some(rm_id);
                    link.nonce.clear();
                    let member = if self.replica.is_member(rm_id) {
                        ""
                    } else {
                        " (not a member yet)"
                    };
                    log::info!("RM link from RM {rm_id} ({peer}) accepted{member}");
                    true
                }
                PeerFrame::Hello { rm_id, .. } => {
                    log::warn!(
                        "RM link from {peer}: refused a hello as RM {rm_id} (a wrong or missing secret, or this RM's own id)"
                    );
                    false
                }
                other => {
                    log::warn!(
                        "RM link from {peer}: refused, its first frame was {}",
                        frame_kind(&other)
                    );
                    false
                }
            };
        };
        if self.repl.blocked.contains(&from) {
            return true; // partitioned: as if it never arrived
        }
        match frame {
            PeerFrame::Hello { .. } | PeerFrame::Challenge { .. } => false,
            PeerFrame::Raft(bytes) => match Message::parse_from_bytes(&bytes) {
                Ok(msg) if msg.from == from => {
                    self.repl.last_heard.insert(from, Instant::now());
                    if super::snapshot_transfer::is_snapshot(&msg) {
                        self.snapshot_received(msg);
                    } else if msg.get_msg_type() == raft::eraftpb::MessageType::MsgAppend
                        && self.replica.awaits_first_snapshot()
                    {
                        let ask = self.replica.snapshot_request_for(&msg);
                        self.send_raft(ask);
                    } else {
                        self.replica.step(msg);
                    }
                    true
                }
                Ok(msg) => {
                    log::warn!("RM {from} sent a raft message claiming to be from {}", msg.from);
                    false
                }
                Err(_) => false,
            },
            PeerFrame::Forward {
                req_id,
                framing,
                request,
            } => {
                self.forwarded_request(from, req_id, framing, request);
                true
            }
            PeerFrame::ForwardReply { req_id, index, reply } => {
                if let Some(pending) = self.repl.forwarded.remove(&req_id) {
                    if index <= self.replica.applied() {
                        self.respond(pending.origin, reply, 0);
                    } else {
                        self.repl.replies_to_apply.push((index, pending.origin, reply));
                    }
                }
                true
            }
            PeerFrame::SnapshotRequest { index, term, offset } => {
                self.snapshot_requested(from, index, term, offset);
                true
            }
            PeerFrame::SnapshotChunk {
                index,
                term,
                offset,
                total,
                bytes,
            } => {
                self.snapshot_chunk(from, index, term, offset, total, bytes);
                true
            }
            PeerFrame::SnapshotDone { index, ok, .. } => {
                self.snapshot_done(from, index, ok);
                true
            }
        }
    }

    /// A request a follower forwarded: parse it as its client sent it.
    fn forwarded_request(&mut self, rm: u64, req_id: u64, framing: u8, raw: Vec<u8>) {
        let framing = if framing == 1 { Framing::Text } else { Framing::Legacy };
        let pending = Pending {
            origin: Origin::Peer { rm, req_id },
            framing,
            since: Instant::now(),
        };
        let request = match framing {
            Framing::Legacy => match legacy::parse_frame(&raw) {
                Ok(LegacyRequest::Request(r)) => Some(r),
                _ => None,
            },
            Framing::Text => match text::parse_line(&raw, text::local_timestamp) {
                Ok(TextCommand::Request(r)) => Some(r),
                _ => None,
            },
        };
        if framing == Framing::Text {
            if let Ok(TextCommand::Admin(admin)) = text::parse_line(&raw, text::local_timestamp) {
                return self.admin(pending, admin, raw);
            }
        }
        match request {
            Some(request) => self.dispatch(pending, request, raw),
            None => self.respond(pending.origin, unavailable(framing), 0),
        }
    }

    /// Membership changed: bind the link listener if this RM now has
    /// company, stop dialling RMs that left, note a completed join.
    fn membership_changed(&mut self) {
        if let Err(e) = self.ensure_peer_listener() {
            log::error!("cannot listen for RM links: {e}");
        }
        if self.replica.is_member(self.cluster.id) {
            self.joined.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let book = self.replica.book().clone();
        self.transfers.learned.retain(|id, _| !book.contains_key(id));
        let gone: Vec<Token> = self
            .repl
            .outbound
            .iter()
            .filter(|(id, _)| !book.contains_key(id) && !self.transfers.fetching_from(**id))
            .map(|(_, t)| *t)
            .collect();
        for token in gone {
            self.drop_peer(token, "no longer a member");
        }
    }

    fn send_raft(&mut self, msg: Message) {
        let to = msg.to;
        if super::snapshot_transfer::is_snapshot(&msg) {
            self.snapshot_sent(&msg);
        }
        match msg.write_to_bytes() {
            Ok(bytes) => {
                if !self.send_to_peer(to, &PeerFrame::Raft(bytes)) {
                    self.replica.report_unreachable(to);
                }
            }
            Err(e) => log::error!("cannot encode a raft message: {e}"),
        }
    }

    /// Queues a frame on the outbound link to `rm`; false if there is none.
    pub(super) fn send_to_peer(&mut self, rm: u64, frame: &PeerFrame) -> bool {
        let Some(&token) = self.repl.outbound.get(&rm) else {
            return false;
        };
        let Some(Endpoint::Peer(link)) = self.endpoints.get_mut(token.0) else {
            self.repl.outbound.remove(&rm);
            return false;
        };
        if !link.greeted {
            return false; // not until the peer's challenge is answered
        }
        if !link.send(frame) {
            self.drop_peer(token, "send queue full");
            return false;
        }
        if let Err(e) = link.flush() {
            self.drop_peer(token, &e.to_string());
            return false;
        }
        true
    }
}

fn frame_kind(frame: &PeerFrame) -> &'static str {
    match frame {
        PeerFrame::Hello { .. } => "a hello",
        PeerFrame::Challenge { .. } => "a challenge",
        PeerFrame::Raft(_) => "a raft message",
        PeerFrame::Forward { .. } => "a forwarded request",
        PeerFrame::ForwardReply { .. } => "a forwarded reply",
        PeerFrame::SnapshotRequest { .. } => "a snapshot request",
        PeerFrame::SnapshotChunk { .. } => "a snapshot chunk",
        PeerFrame::SnapshotDone { .. } => "a snapshot outcome",
    }
}
