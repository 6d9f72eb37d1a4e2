//! The one thread that owns every socket.
//!
//! A `mio::Poll` loop, edge-triggered: the listener and every connection
//! live in one `slab`, indexed by their `Token`; workers hand replies back
//! through a `Waker`. Once a second the loop closes connections that went
//! quiet. It never blocks and never touches the disk.

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
use super::workers::{Completion, Job, WorkerPool};
use crate::storage::Store;

/// The waker's token; slab keys never reach it.
const WAKER: Token = Token(usize::MAX);
/// How often quiet connections are looked for.
const TICK: Duration = Duration::from_secs(1);
/// How long to stop accepting after an accept error such as `EMFILE`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Whatever a slab entry holds.
enum Endpoint {
    /// The client listener.
    Listener(TcpListener),
    /// A client connection.
    Client(Connection),
}

/// The server's event loop.
pub struct EventLoop {
    poll: Poll,
    endpoints: Slab<Endpoint>,
    workers: WorkerPool,
    config: ServerConfig,
    clients: usize,
    next_serial: u64,
    accept_paused_until: Option<Instant>,
    refused: u64,
    last_refusal_log: Option<Instant>,
    local_addr: SocketAddr,
    listener: Token,
}

impl EventLoop {
    /// Binds the client address and starts the workers.
    pub fn new(config: ServerConfig, store: Arc<Store>) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let workers = WorkerPool::start(config.workers, store, waker)?;
        let mut listener = TcpListener::bind(config.listen)?;
        let local_addr = listener.local_addr()?;
        let mut endpoints = Slab::new();
        let entry = endpoints.vacant_entry();
        let listener_token = Token(entry.key());
        poll.registry()
            .register(&mut listener, listener_token, Interest::READABLE)?;
        entry.insert(Endpoint::Listener(listener));
        Ok(EventLoop {
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
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until the process ends.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            let mut timeout = next_tick.saturating_duration_since(now);
            if let Some(until) = self.accept_paused_until {
                timeout = timeout.min(until.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => self.deliver_completions(),
                    token => self.handle_event(token, event),
                }
            }
            if self.accept_paused_until.is_some_and(|until| Instant::now() >= until) {
                self.accept_paused_until = None;
                self.accept_all();
            }
            if Instant::now() >= next_tick {
                self.close_quiet_connections();
                next_tick = Instant::now() + TICK;
            }
        }
    }

    fn handle_event(&mut self, token: Token, event: &Event) {
        match self.endpoints.get_mut(token.0) {
            Some(Endpoint::Listener(_)) => self.accept_all(),
            Some(Endpoint::Client(conn)) => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    if let Err(e) = conn.read_available() {
                        log::debug!("connection {}: read failed: {e}", conn.serial);
                        self.close(token, None);
                        return;
                    }
                }
                self.drive(token);
            }
            None => {}
        }
    }

    fn listener(&mut self) -> Option<&mut TcpListener> {
        match self.endpoints.get_mut(self.listener.0) {
            Some(Endpoint::Listener(l)) => Some(l),
            _ => None,
        }
    }

    /// Accepts until the backlog is empty.
    fn accept_all(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listener() else { return };
            let (mut stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the pending connection stays in
                    // the backlog; retry shortly instead of spinning.
                    log::warn!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
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

    fn client(&mut self, token: Token) -> Option<&mut Connection> {
        match self.endpoints.get_mut(token.0) {
            Some(Endpoint::Client(c)) => Some(c),
            _ => None,
        }
    }

    /// Moves a connection as far as it can go without blocking: write what
    /// is queued, then take the next request from its input.
    fn drive(&mut self, token: Token) {
        loop {
            let Some(conn) = self.client(token) else { return };
            match conn.flush() {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    let serial = conn.serial;
                    log::debug!("connection {serial}: write failed: {e}");
                    self.close(token, None);
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
            if let Err(e) = conn.resume_reading() {
                let serial = conn.serial;
                log::debug!("connection {serial}: read failed: {e}");
                self.close(token, None);
                return;
            }
            match conn.next_step() {
                Step::Submit(request) => {
                    conn.waiting = true;
                    let job = Job {
                        token,
                        serial: conn.serial,
                        framing: conn.framing.unwrap_or(crate::protocol::Framing::Text),
                        request,
                    };
                    self.workers.submit(job);
                    return;
                }
                Step::Reply { bytes, close } => conn.queue(&bytes, close),
                Step::NeedMore => return,
                Step::Close(reason) => {
                    self.close(token, reason);
                    return;
                }
            }
        }
    }

    fn deliver_completions(&mut self) {
        for Completion { token, serial, reply } in self.workers.take_completed() {
            let Some(conn) = self.client(token) else { continue };
            if conn.serial != serial {
                continue; // that client left; its slot was reused
            }
            conn.waiting = false;
            let close = conn.framing == Some(crate::protocol::Framing::Legacy);
            conn.queue(&reply, close);
            self.drive(token);
        }
    }

    fn close(&mut self, token: Token, reason: Option<String>) {
        if let Some(Endpoint::Client(conn)) = self.endpoints.try_remove(token.0) {
            if let Some(reason) = reason {
                log::warn!("connection {}: {reason}", conn.serial);
            }
            // Dropping the stream closes it, which also takes it out of the
            // poll set; the reply is already in the kernel's buffer.
            drop(conn);
            self.clients -= 1;
        }
    }

    fn close_quiet_connections(&mut self) {
        let now = Instant::now();
        let partial = self.config.partial_timeout;
        let idle = self.config.idle_timeout;
        let quiet: Vec<(usize, String)> = self
            .endpoints
            .iter()
            .filter_map(|(key, e)| match e {
                Endpoint::Client(c) if !c.waiting => {
                    let quiet_for = now.duration_since(c.last_activity);
                    let reason = if c.has_output() && quiet_for >= partial {
                        Some(format!("closed: the client has not read its reply for {quiet_for:?}"))
                    } else if c.framing.is_none() && !c.has_input() && quiet_for >= partial {
                        Some(format!("closed: connected but sent nothing for {quiet_for:?}"))
                    } else if c.has_partial_request() && quiet_for >= partial {
                        Some(format!("closed: a partial request and then nothing for {quiet_for:?}"))
                    } else if quiet_for >= idle {
                        Some(format!("closed: idle for {quiet_for:?}"))
                    } else {
                        None
                    };
                    reason.map(|r| (key, r))
                }
                _ => None,
            })
            .collect();
        for (key, reason) in quiet {
            self.close(Token(key), Some(reason));
        }
    }
}
