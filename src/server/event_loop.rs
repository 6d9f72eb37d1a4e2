//! The one thread that owns every socket.
//!
//! A `mio::Poll` loop, edge-triggered: the client listener, the RM-link
//! listener, every client connection and every RM link live in one `slab`,
//! indexed by their `Token`. Workers, the raft persister and the applier
//! hand results back through one `Waker`. Every 100 ms the loop ticks raft;
//! every second it closes connections that went quiet. It never blocks and
//! never touches the disk. How requests travel through raft is in
//! [`super::replication`].

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::config::ServerConfig;
use super::connection::{Connection, Step};
use super::peer_link::PeerLink;
use super::replication::{Pending, ReplicationState};
use super::snapshot_transfer::Transfers;
use super::workers::{Completion, Job, Origin, WorkerPool};
use crate::protocol::Framing;
use crate::raft::node::{ClusterConfig, RaftError, Recovered, Replica};
use crate::storage::Store;

/// The waker's token; slab keys never reach it.
const WAKER: Token = Token(usize::MAX);
/// SIGTERM and SIGINT arrive under this token.
const SIGNALS: Token = Token(usize::MAX - 1);
/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often quiet connections are looked for.
const TICK: Duration = Duration::from_secs(1);
/// How often raft's clock ticks.
pub(super) const RAFT_TICK: Duration = Duration::from_millis(100);
/// How long to stop accepting after an accept error such as `EMFILE`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Replies a connection may get without a worker (errors, help) before the
/// loop turns to other connections: one client streaming bad lines must not
/// keep everyone else waiting.
const INLINE_REPLIES_PER_TURN: usize = 32;
/// How long a closed connection is read (and dropped) for the client to
/// close its side.
const LINGER: Duration = Duration::from_secs(2);

/// Connections the kernel queues for `accept`, at most (it caps this at
/// `net.core.somaxconn`). The default of 128 overflows when thousands
/// connect at once, and each dropped SYN costs its client a second.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// Metrics connections open at once, at most; beyond, new ones are closed.
const MAX_SCRAPERS: usize = 64;
/// How long a metrics page is served again instead of made anew.
const METRICS_FRESH: Duration = Duration::from_millis(250);

/// Binds a listener with a long accept queue.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind(addr)?;
    // SAFETY: listen on a socket this function owns; a second listen on a
    // listening socket only changes its backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

/// Whatever a slab entry holds.
pub(super) enum Endpoint {
    /// The client listener.
    Listener(TcpListener),
    /// The RM-link listener.
    PeerListener(TcpListener),
    /// A client connection.
    Client(Connection),
    /// A link to or from another RM.
    Peer(PeerLink),
    /// The `--metrics-listen` listener.
    MetricsListener(TcpListener),
    /// A metrics scraper's connection.
    Metrics(super::metrics_http::HttpConn),
}

/// The figures `stats` and `/metrics` share.
pub(super) struct StatsNow {
    pub uptime_s: u64,
    pub legacy: u64,
    pub text: u64,
    pub undecided: u64,
    pub users: u64,
    pub follows: u64,
    pub woots: u64,
}

/// The server's event loop.
pub struct EventLoop {
    pub(super) poll: Poll,
    pub(super) endpoints: Slab<Endpoint>,
    pub(super) workers: WorkerPool,
    pub(super) config: ServerConfig,
    clients: usize,
    next_serial: u64,
    accept_paused_until: Option<Instant>,
    refused: u64,
    last_refusal_log: Option<Instant>,
    local_addr: SocketAddr,
    listener: Token,
    pub(super) replica: Replica,
    pub(super) cluster: ClusterConfig,
    pub(super) repl: ReplicationState,
    /// Connections that stopped for fairness and go on next turn.
    again: Vec<Token>,
    /// The primary-address listener, while this RM is the leader.
    primary: Option<Token>,
    primary_retry_at: Instant,
    signals: signal_hook_mio::v1_0::Signals,
    store: Arc<Store>,
    started: Instant,
    /// Requests received, by command (for `stats`).
    requests: std::collections::BTreeMap<&'static str, u64>,
    /// Replies by command and outcome, and their latencies.
    pub(super) metrics: super::metrics::RequestMetrics,
    /// The last metrics page and when it was made: scrapes within
    /// [`METRICS_FRESH`] get it again, so a scrape flood costs little.
    metrics_page_cache: Option<(Instant, String)>,
    scrapers: usize,
    /// Set by SIGTERM or SIGINT: no new connections, finish what is in flight.
    shutting_down: Option<Instant>,
    /// The RM-link listener, once bound.
    peer_listener: Option<Token>,
    /// Snapshot files on their way to or from other RMs.
    pub(super) transfers: Transfers,
    /// Set once this RM is a member: the `--join` thread stops asking.
    pub(super) joined: Arc<std::sync::atomic::AtomicBool>,
    /// Members' addresses the `--join` thread learned.
    pub(super) join_learned: super::join::Learned,
    /// Set by the `--join` thread if the cluster refused this RM.
    pub(super) join_refusal: super::join::Refusal,
    /// Set when raft or the storage failed: why (see `enter_failed`).
    pub(super) failed: Option<String>,
    failure: Option<RaftError>,
}

impl EventLoop {
    /// Binds the addresses, starts raft and the workers.
    pub fn new(
        config: ServerConfig,
        cluster: ClusterConfig,
        store: Arc<Store>,
        applied: u64,
        recovered: Recovered,
    ) -> Result<EventLoop, super::ServeError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let workers = WorkerPool::start(config.workers, store.clone(), waker.clone())?;
        let store_for_stats = store.clone();
        let transfers = Transfers::start(waker.clone())?;
        let replica = Replica::start(&cluster, store, applied, waker, recovered)?;
        let mut signals =
            signal_hook_mio::v1_0::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut listener = bind(config.listen).map_err(|source| super::ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = listener.local_addr()?;
        let mut endpoints = Slab::new();
        let entry = endpoints.vacant_entry();
        let listener_token = Token(entry.key());
        poll.registry()
            .register(&mut listener, listener_token, Interest::READABLE)?;
        entry.insert(Endpoint::Listener(listener));
        let joined = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let join_learned = super::join::Learned::default();
        let join_refusal = super::join::Refusal::default();
        if let Some(member) = cluster.join {
            if !replica.is_member(cluster.id) {
                super::join::spawn(
                    cluster.id,
                    local_addr,
                    member,
                    joined.clone(),
                    join_learned.clone(),
                    join_refusal.clone(),
                )?;
            }
        }
        let mut event_loop = EventLoop {
            poll,
            endpoints,
            workers,
            config,
            clients: 0,
            next_serial: 0,
            accept_paused_until: None,
            refused: 0,
            last_refusal_log: None,
            local_addr,
            listener: listener_token,
            replica,
            cluster,
            repl: ReplicationState::default(),
            again: Vec::new(),
            primary: None,
            primary_retry_at: Instant::now(),
            signals,
            shutting_down: None,
            store: store_for_stats,
            started: Instant::now(),
            requests: Default::default(),
            metrics: Default::default(),
            metrics_page_cache: None,
            scrapers: 0,
            peer_listener: None,
            transfers,
            joined,
            join_learned,
            join_refusal,
            failed: None,
            failure: None,
        };
        event_loop.ensure_peer_listener()?;
        if let Some(addr) = event_loop.config.metrics_listen {
            let mut listener = bind(addr).map_err(|source| super::ServeError::Bind { addr, source })?;
            let bound = listener.local_addr()?;
            let entry = event_loop.endpoints.vacant_entry();
            event_loop
                .poll
                .registry()
                .register(&mut listener, Token(entry.key()), Interest::READABLE)?;
            entry.insert(Endpoint::MetricsListener(listener));
            log::info!("metrics on http://{bound}/metrics");
        }
        Ok(event_loop)
    }

    /// Binds the RM-link listener once this RM is part of a cluster (or
    /// may become one: started with `--id`), at its address in the book.
    pub(super) fn ensure_peer_listener(&mut self) -> Result<(), super::ServeError> {
        if self.peer_listener.is_some() || !(self.cluster.linked || self.replica.book().len() > 1) {
            return Ok(());
        }
        let me = self
            .replica
            .book()
            .get(&self.cluster.id)
            .map(|a| a.peer)
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "this RM's id is not in the cluster list"))?;
        let mut listener = bind(me).map_err(|source| super::ServeError::Bind { addr: me, source })?;
        let entry = self.endpoints.vacant_entry();
        let token = Token(entry.key());
        self.poll
            .registry()
            .register(&mut listener, token, Interest::READABLE)?;
        entry.insert(Endpoint::PeerListener(listener));
        self.peer_listener = Some(token);
        log::info!("RM links accepted on {me}");
        Ok(())
    }

    /// Members of the cluster as this RM knows them (voters and learners).
    pub fn member_count(&self) -> usize {
        self.replica.member_count()
    }

    /// The address the client listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until the process ends or raft fails (fail closed).
    pub fn run(&mut self) -> Result<(), RaftError> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        let mut next_raft_tick = Instant::now() + RAFT_TICK;
        self.dial_peers();
        loop {
            let now = Instant::now();
            let mut timeout = next_tick.min(next_raft_tick).saturating_duration_since(now);
            // Work left from the last turn (a proposal made while answering
            // an applied write, a connection stopped for fairness) must not
            // wait for the next tick.
            if !self.again.is_empty() || self.replica.has_ready() {
                timeout = Duration::ZERO;
            }
            if let Some(until) = self.accept_paused_until {
                timeout = timeout.min(until.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for token in std::mem::take(&mut self.again) {
                self.drive(token);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        self.deliver_completions();
                        self.deliver_snapshot_io();
                    }
                    SIGNALS => self.on_signal(),
                    token => self.handle_event(token, event),
                }
            }
            if self.shutting_down.is_some() && self.shutdown_done() {
                log::info!("wooter stopped: every request in flight was answered");
                return match self.failure.take() {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
            if self.accept_paused_until.is_some_and(|until| Instant::now() >= until) {
                self.accept_paused_until = None;
                self.accept_everywhere();
            }
            if self.failed.is_some() {
                // Nothing of raft runs any more; only clients are answered.
                if Instant::now() >= next_tick {
                    self.close_quiet_connections();
                    next_tick = Instant::now() + TICK;
                }
                next_raft_tick = next_tick;
                continue;
            }
            if Instant::now() >= next_raft_tick {
                self.replica.tick();
                self.raft_tick();
                next_raft_tick = Instant::now() + RAFT_TICK;
            }
            let refused = self.join_refusal.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(why) = refused {
                log::error!("the cluster refused this RM's join: {why}; stopping");
                self.failure = Some(RaftError::Log(io::Error::other(format!("join refused: {why}"))));
                self.begin_shutdown("join refused");
            }
            if let Err(e) = self.drive_raft() {
                self.enter_failed(&e);
                self.failure = Some(e);
                continue;
            }
            self.follow_leadership();
            if Instant::now() >= next_tick {
                let hold = self.transfers.hold();
                self.replica.compact(hold);
                self.close_quiet_connections();
                next_tick = Instant::now() + TICK;
            }
        }
    }

    fn handle_event(&mut self, token: Token, event: &Event) {
        match self.endpoints.get_mut(token.0) {
            Some(Endpoint::Listener(_)) => self.accept_all(token),
            Some(Endpoint::PeerListener(_)) => self.accept_peers(token),
            Some(Endpoint::Peer(_)) => self.peer_event(token, event),
            Some(Endpoint::MetricsListener(_)) => self.accept_scrapers(token),
            Some(Endpoint::Metrics(_)) => self.serve_scraper(token),
            Some(Endpoint::Client(conn)) if conn.lingering.is_some() => {
                let done = !matches!(conn.discard_input(), Ok(false));
                if done {
                    self.remove(token);
                }
            }
            Some(Endpoint::Client(conn)) => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    if let Err(e) = conn.read_available() {
                        log::debug!("connection {}: read failed: {e}", conn.serial);
                        self.remove(token);
                        return;
                    }
                }
                self.drive(token);
            }
            None => {}
        }
    }

    fn listener(&mut self, token: Token) -> Option<&mut TcpListener> {
        match self.endpoints.get_mut(token.0) {
            Some(Endpoint::Listener(l)) => Some(l),
            _ => None,
        }
    }

    /// The figures `stats` and `/metrics` share.
    pub(super) fn snapshot_stats(&self) -> StatsNow {
        let (mut legacy, mut text, mut undecided) = (0, 0, 0);
        for (_, e) in self.endpoints.iter() {
            if let Endpoint::Client(c) = e {
                match c.framing {
                    Some(Framing::Legacy) => legacy += 1,
                    Some(Framing::Text) => text += 1,
                    None => undecided += 1,
                }
            }
        }
        let totals = self.store.totals();
        StatsNow {
            uptime_s: self.started.elapsed().as_secs(),
            legacy,
            text,
            undecided,
            users: totals.users,
            follows: totals.follows,
            woots: totals.woots,
        }
    }

    /// The reply to `stats`: `key=value` lines, then `OK`.
    fn stats_report(&self) -> Vec<u8> {
        let s = self.snapshot_stats();
        let mut out = format!(
            "uptime_s={}\nconnections legacy={} text={} undecided={}\nusers={}\nfollows={} woots={}\n",
            s.uptime_s, s.legacy, s.text, s.undecided, s.users, s.follows, s.woots
        );
        let requests: Vec<String> = self.requests.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("requests {}\n", requests.join(" ")));
        let mut replies: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for ((command, outcome), n) in &self.metrics.outcomes {
            let e = replies.entry(command).or_default();
            match outcome {
                super::metrics::Outcome::Ok => e.0 += n,
                super::metrics::Outcome::Error => e.1 += n,
            }
        }
        let replies: Vec<String> = replies.iter().map(|(k, (ok, err))| format!("{k}={ok}/{err}")).collect();
        out.push_str(&format!("replies_ok/error {}\n", replies.join(" ")));
        let all = self.metrics.all_latency();
        let q = |p: f64| all.quantile_us(p).map_or("none".to_string(), |v| format!("<={v}"));
        out.push_str(&format!(
            "latency_us p50={} p90={} p99={} (bucket bounds; {} replies)\n",
            q(0.5),
            q(0.9),
            q(0.99),
            all.total()
        ));
        match &self.failed {
            Some(why) => out.push_str(&format!("storage=failed error={why}\n")),
            None => out.push_str("storage=ok\n"),
        }
        out.push_str(&format!(
            "raft rm={} role={} term={} leader={} commit={} applied={} log_first={} log_last={} snapshot={}\n",
            self.cluster.id,
            self.replica.role(),
            self.replica.term(),
            self.replica.leader().map_or("none".to_string(), |l| l.to_string()),
            self.replica.committed(),
            self.replica.applied(),
            self.replica.first_index(),
            self.replica.last_index(),
            self.replica.snapshot_index()
        ));
        if let Some(progress) = self.replica.progress() {
            let last = self.replica.last_index();
            let lags: Vec<String> = progress
                .iter()
                .filter(|(id, _)| *id != self.cluster.id)
                .map(|(id, m)| format!("rm{id}={}", last.saturating_sub(*m)))
                .collect();
            if !lags.is_empty() {
                out.push_str(&format!("lag {}\n", lags.join(" ")));
            }
        }
        out.push_str("OK\n");
        out.into_bytes()
    }

    fn accept_scrapers(&mut self, token: Token) {
        for _ in 0..1024 {
            let Some(Endpoint::MetricsListener(l)) = self.endpoints.get(token.0) else {
                return;
            };
            let mut stream = match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock, or out of descriptors: the next event retries
            };
            if self.scrapers >= MAX_SCRAPERS {
                continue; // dropped: closed at once
            }
            let entry = self.endpoints.vacant_entry();
            if self
                .poll
                .registry()
                .register(&mut stream, Token(entry.key()), Interest::READABLE | Interest::WRITABLE)
                .is_ok()
            {
                entry.insert(Endpoint::Metrics(super::metrics_http::HttpConn::new(stream)));
                self.scrapers += 1;
            }
        }
    }

    fn serve_scraper(&mut self, token: Token) {
        let Some(Endpoint::Metrics(conn)) = self.endpoints.get_mut(token.0) else {
            return;
        };
        let path = match conn.read_head() {
            Ok(p) => p,
            Err(_) => {
                self.remove_scraper(token);
                return;
            }
        };
        if let Some(path) = path {
            let (status, body) = if path == "/metrics" {
                let page = match &self.metrics_page_cache {
                    Some((at, page)) if at.elapsed() < METRICS_FRESH => page.clone(),
                    _ => {
                        let page = self.metrics_page();
                        self.metrics_page_cache = Some((Instant::now(), page.clone()));
                        page
                    }
                };
                ("200 OK", page)
            } else {
                ("404 Not Found", "only /metrics is served here\n".to_string())
            };
            if let Some(Endpoint::Metrics(conn)) = self.endpoints.get_mut(token.0) {
                conn.respond(status, &body);
            }
        }
        if let Some(Endpoint::Metrics(conn)) = self.endpoints.get_mut(token.0) {
            if !matches!(conn.flush(), Ok(false)) {
                self.remove_scraper(token);
            }
        }
    }

    fn remove_scraper(&mut self, token: Token) {
        if let Some(Endpoint::Metrics(_)) = self.endpoints.get(token.0) {
            self.endpoints.remove(token.0);
            self.scrapers -= 1;
        }
    }

    /// SIGTERM or SIGINT: shut down.
    fn on_signal(&mut self) {
        let signals: Vec<i32> = self.signals.pending().collect();
        if !signals.is_empty() {
            self.begin_shutdown(&format!("signal {signals:?}"));
        }
    }

    /// Stops accepting, hands leadership over, and lets the loop run until
    /// the requests in flight are answered.
    pub(super) fn begin_shutdown(&mut self, why: &str) {
        if self.shutting_down.is_some() {
            return;
        }
        log::info!("shutting down ({why}): no new connections; finishing what is in flight");
        self.shutting_down = Some(Instant::now());
        self.endpoints.remove(self.listener.0);
        if let Some(p) = self.primary.take() {
            self.endpoints.remove(p.0);
        }
        self.config.primary_listen = None;
        if let Some(to) = self.replica.transfer_leadership() {
            log::info!("handing leadership to RM {to}");
        }
    }

    /// Whether a shutdown may end now: nothing in flight, or out of time.
    fn shutdown_done(&self) -> bool {
        let Some(since) = self.shutting_down else { return false };
        if since.elapsed() >= SHUTDOWN_GRACE {
            log::warn!("shutdown: gave up waiting for requests in flight after {SHUTDOWN_GRACE:?}");
            return true;
        }
        !self.endpoints.iter().any(|(_, e)| match e {
            Endpoint::Client(c) => c.waiting || c.has_output(),
            _ => false,
        })
    }

    /// Accepts on every client listener (after a pause, say).
    fn accept_everywhere(&mut self) {
        // RM links first: they are few and the cluster needs them, and a
        // shutting-down RM still hands its leadership over through them.
        if let Some(peers) = self.peer_listener {
            self.accept_peers(peers);
        }
        if self.shutting_down.is_some() {
            return;
        }
        self.accept_all(self.listener);
        if let Some(primary) = self.primary {
            self.accept_all(primary);
        }
    }

    /// Stops accepting for [`ACCEPT_BACKOFF`] (out of descriptors, say): the
    /// pending connections wait in the backlog instead of the loop spinning.
    pub(super) fn pause_accepts(&mut self) {
        self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
    }

    /// Whether accepts are paused now.
    pub(super) fn accepts_paused(&self) -> bool {
        self.accept_paused_until.is_some()
    }

    /// Binds the primary address while this RM is the leader, and lets it
    /// go the moment it is not: an unmodified frontend pointed at that one
    /// address always reaches the primary.
    fn follow_leadership(&mut self) {
        let Some(addr) = self.config.primary_listen else { return };
        match (self.replica.is_leader(), self.primary) {
            (true, None) if Instant::now() >= self.primary_retry_at => match bind(addr) {
                Ok(mut l) => {
                    let entry = self.endpoints.vacant_entry();
                    let token = Token(entry.key());
                    if self.poll.registry().register(&mut l, token, Interest::READABLE).is_ok() {
                        entry.insert(Endpoint::Listener(l));
                        self.primary = Some(token);
                        log::info!(
                            "RM {} is the primary: now serving the primary address {addr}",
                            self.cluster.id
                        );
                        self.accept_all(token);
                    }
                }
                Err(e) => {
                    // The old primary may hold it a moment longer.
                    log::debug!("primary address {addr} not yet free: {e}");
                    self.primary_retry_at = Instant::now() + Duration::from_millis(100);
                }
            },
            (false, Some(_)) => self.release_primary(),
            _ => {}
        }
    }

    /// Lets the primary address go.
    pub(super) fn release_primary(&mut self) {
        if let (Some(token), Some(addr)) = (self.primary.take(), self.config.primary_listen) {
            self.endpoints.remove(token.0);
            log::info!("RM {} is no longer the primary: released {addr}", self.cluster.id);
        }
    }

    /// Accepts until the backlog is empty.
    fn accept_all(&mut self, listener: Token) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listener(listener) else {
                return;
            };
            let (mut stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the pending connection stays in
                    // the backlog; retry shortly instead of spinning.
                    log::warn!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.pause_accepts();
                    return;
                }
            };
            if self.clients >= self.config.max_connections {
                self.refused += 1;
                let now = Instant::now();
                if self
                    .last_refusal_log
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                {
                    log::warn!(
                        "connection limit ({}) reached: closed {} new connection(s), latest from {peer}",
                        self.config.max_connections,
                        self.refused
                    );
                    self.refused = 0;
                    self.last_refusal_log = Some(now);
                }
                drop(stream);
                continue;
            }
            let entry = self.endpoints.vacant_entry();
            let token = Token(entry.key());
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            {
                log::warn!("cannot register a connection from {peer}: {e}");
                continue;
            }
            self.next_serial += 1;
            log::debug!("connection {} from {peer}", self.next_serial);
            entry.insert(Endpoint::Client(Connection::new(stream, self.next_serial)));
            self.clients += 1;
        }
    }

    pub(super) fn client(&mut self, token: Token) -> Option<&mut Connection> {
        match self.endpoints.get_mut(token.0) {
            Some(Endpoint::Client(c)) => Some(c),
            _ => None,
        }
    }

    /// Moves a connection as far as it can go without blocking: write what
    /// is queued, then take the next request from its input.
    pub(super) fn drive(&mut self, token: Token) {
        let mut inline_replies = 0;
        loop {
            let Some(conn) = self.client(token) else { return };
            if conn.lingering.is_some() {
                return;
            }
            match conn.flush() {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    let serial = conn.serial;
                    log::debug!("connection {serial}: write failed: {e}");
                    self.remove(token);
                    return;
                }
            }
            if conn.closes_after_flush() {
                self.close(token, None);
                return;
            }
            if conn.waiting {
                return;
            }
            if inline_replies >= INLINE_REPLIES_PER_TURN {
                self.again.push(token);
                return;
            }
            if let Err(e) = conn.resume_reading() {
                let serial = conn.serial;
                log::debug!("connection {serial}: read failed: {e}");
                self.remove(token);
                return;
            }
            match conn.next_step() {
                Step::Submit { request, raw } => {
                    conn.waiting = true;
                    conn.current = Some((request.name(), Instant::now()));
                    let pending = Pending {
                        origin: Origin::Client {
                            token,
                            serial: conn.serial,
                        },
                        framing: conn.framing.unwrap_or(Framing::Text),
                        since: Instant::now(),
                    };
                    *self.requests.entry(request.name()).or_default() += 1;
                    self.dispatch(pending, request, raw);
                    return;
                }
                Step::Reply { bytes, close } => {
                    conn.queue(&bytes, close);
                    inline_replies += 1;
                }
                Step::NeedMore => return,
                Step::Stats => {
                    let reply = self.stats_report();
                    if let Some(conn) = self.client(token) {
                        conn.queue(&reply, false);
                    }
                    inline_replies += 1;
                }
                Step::Admin { admin, raw } => {
                    conn.waiting = true;
                    conn.current = Some((admin.name(), Instant::now()));
                    let pending = Pending {
                        origin: Origin::Client {
                            token,
                            serial: conn.serial,
                        },
                        framing: Framing::Text,
                        since: Instant::now(),
                    };
                    *self.requests.entry(admin.name()).or_default() += 1;
                    self.admin(pending, admin, raw);
                    return;
                }
                Step::Rms => {
                    let reply = self.rms_report();
                    if let Some(conn) = self.client(token) {
                        conn.queue(&reply, false);
                    }
                    inline_replies += 1;
                }
                Step::TestPartition(ids) => {
                    let reply = self.test_partition(ids);
                    if let Some(conn) = self.client(token) {
                        conn.queue(&reply, false);
                    }
                    inline_replies += 1;
                }
                Step::Close(reason) => {
                    self.close(token, reason);
                    return;
                }
            }
        }
    }

    /// Runs a query on the worker pool.
    pub(super) fn run_query(&mut self, pending: Pending, query: crate::storage::Query) {
        self.workers.submit(Job {
            origin: pending.origin,
            framing: pending.framing,
            request: crate::command::Request::Query(query),
        });
    }

    fn deliver_completions(&mut self) {
        for Completion { origin, reply } in self.workers.take_completed() {
            self.respond(origin, reply, 0);
        }
    }

    /// Sends a reply to a client of this RM.
    pub(super) fn reply_to_client(&mut self, token: Token, serial: u64, reply: &[u8]) {
        let Some(conn) = self.client(token) else { return };
        if conn.serial != serial {
            return; // that client left; its slot was reused
        }
        conn.waiting = false;
        let close = conn.framing == Some(Framing::Legacy);
        if let Some((command, since)) = conn.current.take() {
            let outcome = if reply.is_empty() || reply.starts_with(b"ERR") {
                super::metrics::Outcome::Error
            } else {
                super::metrics::Outcome::Ok
            };
            self.metrics.record(command, outcome, since.elapsed());
        }
        let Some(conn) = self.client(token) else { return };
        conn.queue(reply, close);
        self.drive(token);
    }

    /// Ends a connection in order: its write side is shut (the reply is
    /// already in the kernel's buffer) and it lingers until the client
    /// closes, or at most [`LINGER`].
    pub(super) fn close(&mut self, token: Token, reason: Option<String>) {
        let Some(conn) = self.client(token) else { return };
        if let Some(reason) = reason {
            log::warn!("connection {}: {reason}", conn.serial);
        }
        if conn.lingering.is_some() {
            return;
        }
        if conn.peer_closed() || conn.stream.shutdown(std::net::Shutdown::Write).is_err() {
            self.remove(token);
            return;
        }
        // The client's end of file (or anything it still sends) arrives as
        // a new readable event, which removes the connection.
        conn.lingering = Some(Instant::now());
    }

    /// Drops a connection at once (dropping the stream closes it, which
    /// also takes it out of the poll set).
    pub(super) fn remove(&mut self, token: Token) {
        if let Some(Endpoint::Client(_)) = self.endpoints.get(token.0) {
            self.endpoints.remove(token.0);
            self.clients -= 1;
        }
    }

    fn close_quiet_connections(&mut self) {
        let now = Instant::now();
        let partial = self.config.partial_timeout;
        let idle = self.config.idle_timeout;
        // (connection, why it is closed; None: its linger simply ran out)
        let quiet: Vec<(usize, Option<String>)> = self
            .endpoints
            .iter()
            .filter_map(|(key, e)| match e {
                Endpoint::Client(c) if c.lingering.is_some_and(|t| now.duration_since(t) >= LINGER) => {
                    Some((key, None))
                }
                Endpoint::Client(c) if c.lingering.is_some() => None,
                Endpoint::Client(c) if !c.waiting => {
                    let quiet_for = now.duration_since(c.last_activity);
                    let reason = if quiet_for >= partial && (c.has_output() || c.kernel_holds_output()) {
                        Some(format!("closed: the client has not read its reply for {quiet_for:?}"))
                    } else if c.framing.is_none() && !c.has_input() && quiet_for >= partial {
                        Some(format!("closed: connected but sent nothing for {quiet_for:?}"))
                    } else if c.has_partial_request() && quiet_for >= partial {
                        Some(format!("closed: a partial request and then nothing for {quiet_for:?}"))
                    } else if c.has_partial_request() && now.duration_since(c.request_started) >= partial {
                        Some(format!(
                            "closed: a request still not whole after {:?} (sent too slowly)",
                            now.duration_since(c.request_started)
                        ))
                    } else if quiet_for >= idle {
                        Some(format!("closed: idle for {quiet_for:?}"))
                    } else {
                        None
                    };
                    reason.map(|r| (key, Some(r)))
                }
                _ => None,
            })
            .collect();
        // A scraper gets the partial timeout for its whole exchange.
        let slow_scrapers: Vec<usize> = self
            .endpoints
            .iter()
            .filter(|(_, e)| matches!(e, Endpoint::Metrics(c) if now.duration_since(c.since) >= partial))
            .map(|(k, _)| k)
            .collect();
        for key in slow_scrapers {
            self.remove_scraper(Token(key));
        }
        for (key, reason) in quiet {
            // Said, then dropped: a quiet client gets no linger.
            if let (Some(reason), Some(c)) = (reason, self.client(Token(key))) {
                log::warn!("connection {}: {reason}", c.serial);
            }
            self.remove(Token(key));
        }
    }
}
