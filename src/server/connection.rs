//! One client connection: its buffers, its framing, and what it needs next.
//!
//! The connection never blocks: it reads what the socket has (until
//! `WouldBlock`), turns whole frames or lines into [`Step`]s, and writes as
//! much of its reply as the socket takes, keeping the rest for the next
//! writable event.

use std::io::{self, ErrorKind, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

use crate::command::Request;
use crate::protocol::detect::detect;
use crate::protocol::legacy::{self, LegacyRequest, FRAME_LEN};
use crate::protocol::text::{self, TextCommand, TextError, MAX_LINE};
use crate::protocol::Framing;

/// Input kept at most while a request is in flight; beyond it the
/// connection stops reading until it has answered (back-pressure).
const MAX_BUFFERED_INPUT: usize = 64 * 1024;

/// What the connection needs next.
#[derive(Debug)]
pub enum Step {
    /// Run this request; `raw` is how the client sent it (a frame or a
    /// line), for forwarding to the leader.
    Submit {
        /// The parsed request.
        request: Request,
        /// The client's bytes.
        raw: Vec<u8>,
    },
    /// Send these bytes; then close if `close`.
    Reply {
        /// Reply bytes.
        bytes: Vec<u8>,
        /// Close once they are written.
        close: bool,
    },
    /// Nothing to do until more bytes arrive.
    NeedMore,
    /// `rms`: answered by the loop from raft's state.
    Rms,
    /// `stats`: answered by the loop from its counters.
    Stats,
    /// `add_rm`, `remove_rm`, `snapshot`: handled by the loop and raft;
    /// `raw` is the line, for forwarding to the leader.
    Admin {
        /// The command.
        admin: crate::command::Admin,
        /// The client's line.
        raw: Vec<u8>,
    },
    /// The test-only partition switch (see `TextCommand::TestPartition`).
    TestPartition(Vec<u64>),
    /// Close now; the reason is for the log (`None`: an ordinary end).
    Close(Option<String>),
}

/// A client connection.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// Unique per connection for the life of the process.
    pub serial: u64,
    /// Known once the first bytes arrive.
    pub framing: Option<Framing>,
    /// A request of this connection is on the worker pool.
    pub waiting: bool,
    /// The request being answered: its command and when it arrived.
    pub current: Option<(&'static str, std::time::Instant)>,
    /// Some reply was queued on it once.
    answered: bool,
    /// Last time bytes moved in either direction.
    pub last_activity: Instant,
    /// When the request now being received began (its first byte, or the
    /// connection's start): a request must be whole within the partial
    /// timeout of this, however slowly its bytes trickle in (slowloris).
    pub request_started: Instant,
    /// Set once the reply is written and the write side shut: the
    /// connection is read (and the bytes dropped) until the client closes,
    /// since closing with unread input would reset the connection and
    /// destroy a reply still on its way.
    pub lingering: Option<Instant>,
    input: Vec<u8>,
    /// Bytes of `input` already used (lines are consumed by moving this,
    /// not by shifting the buffer each time).
    start: usize,
    output: Vec<u8>,
    written: usize,
    close_after_flush: bool,
    peer_closed: bool,
    read_paused: bool,
}

impl Connection {
    /// Wraps an accepted socket.
    pub fn new(stream: TcpStream, serial: u64) -> Connection {
        Connection {
            stream,
            serial,
            framing: None,
            waiting: false,
            last_activity: Instant::now(),
            request_started: Instant::now(),
            lingering: None,
            current: None,
            answered: false,
            input: Vec::new(),
            start: 0,
            output: Vec::new(),
            written: 0,
            close_after_flush: false,
            peer_closed: false,
            read_paused: false,
        }
    }

    /// Whether part of a request has arrived (or nothing at all yet).
    pub fn has_partial_request(&self) -> bool {
        self.framing.is_none() || self.has_input()
    }

    fn pending(&self) -> &[u8] {
        &self.input[self.start..]
    }

    /// Whether any unprocessed input is buffered.
    pub fn has_input(&self) -> bool {
        self.start < self.input.len()
    }

    /// Whether reply bytes wait for the socket.
    pub fn has_output(&self) -> bool {
        self.written < self.output.len()
    }

    /// Whether the kernel still holds reply bytes the client has not taken
    /// (its send queue: a reply may fit there whole while the client reads
    /// nothing). Only asked of connections that were answered.
    pub fn kernel_holds_output(&self) -> bool {
        if !self.answered {
            return false;
        }
        use std::os::fd::AsRawFd;
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one int, into `queued`, for a socket
        // this connection owns.
        let ok = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) } == 0;
        ok && queued > 0
    }

    /// Reads everything the socket has now (edge-triggered readiness needs
    /// that), up to the input cap. Notes end of file.
    pub fn read_available(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        loop {
            if self.input.len() >= MAX_BUFFERED_INPUT {
                self.read_paused = true;
                return Ok(());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.peer_closed = true;
                    return Ok(());
                }
                Ok(n) => {
                    if !self.has_input() && self.framing.is_some() {
                        self.request_started = Instant::now();
                    }
                    self.input.extend_from_slice(&chunk[..n]);
                    self.last_activity = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the client has closed its side.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Reads and drops whatever the socket has; true at end of file.
    pub fn discard_input(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// If reading was paused by the input cap and there is room again,
    /// reads on (nothing else will announce the bytes the kernel holds).
    pub fn resume_reading(&mut self) -> io::Result<()> {
        if self.read_paused && self.input.len() - self.start < MAX_BUFFERED_INPUT {
            self.read_paused = false;
            self.read_available()?;
        }
        Ok(())
    }

    /// Queues reply bytes.
    pub fn queue(&mut self, bytes: &[u8], close: bool) {
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
        }
        self.output.extend_from_slice(bytes);
        self.close_after_flush |= close;
        self.answered = true;
    }

    /// Writes as much queued output as the socket takes. Returns true when
    /// all of it is written.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "socket took no bytes")),
                Ok(n) => {
                    self.written += n;
                    self.last_activity = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.written = 0;
        Ok(true)
    }

    /// Whether the connection is done once its output is flushed.
    pub fn closes_after_flush(&self) -> bool {
        self.close_after_flush
    }

    /// Works out the next step from the buffered input.
    pub fn next_step(&mut self) -> Step {
        let framing = match self.framing {
            Some(f) => f,
            None => match detect(self.pending()) {
                Some(f) => {
                    if f == Framing::Text {
                        // Replies of a long-lived connection must not wait
                        // for Nagle; a legacy reply is one write and a close.
                        let _ = self.stream.set_nodelay(true);
                    }
                    self.framing = Some(f);
                    f
                }
                None if self.peer_closed && !self.has_input() => return Step::Close(None),
                // A short line without a line break, then end of file: a
                // person's `printf 'help' | nc -N`.
                None if self.peer_closed => {
                    self.framing = Some(Framing::Text);
                    Framing::Text
                }
                None => return Step::NeedMore,
            },
        };
        match framing {
            Framing::Legacy => self.next_legacy(),
            Framing::Text => self.next_text(),
        }
    }

    fn next_legacy(&mut self) -> Step {
        let Some(frame) = legacy::take_frame(self.pending()) else {
            if self.peer_closed {
                return Step::Close(Some(format!(
                    "closed after {} of {FRAME_LEN} bytes of a legacy frame",
                    self.pending().len()
                )));
            }
            return Step::NeedMore;
        };
        let step = match legacy::parse_frame(frame) {
            Ok(LegacyRequest::Request(request)) => Step::Submit {
                request,
                raw: frame.to_vec(),
            },
            Ok(LegacyRequest::Unknown(echo)) => {
                // Escaped: the name is the client's bytes, and must not put
                // control characters into the log.
                let name = crate::storage::record::trim(&echo[..legacy::COMMAND_LEN]).escape_ascii();
                log::warn!("legacy: unknown command '{name}', echoed");
                Step::Reply {
                    bytes: legacy::encode_echo(&echo),
                    close: true,
                }
            }
            Err(e) => {
                log::warn!("legacy: malformed frame: {e}; answered with the empty reply");
                Step::Reply {
                    bytes: Vec::new(),
                    close: true,
                }
            }
        };
        // One request per connection: whatever follows the frame is unused.
        self.start = self.input.len();
        step
    }

    fn next_text(&mut self) -> Step {
        loop {
            let pending = self.pending();
            let line_end = pending.iter().position(|&b| b == b'\n');
            let line: Vec<u8> = match line_end {
                Some(end) if end <= MAX_LINE + 1 => {
                    let line = pending[..end].to_vec();
                    self.start += end + 1;
                    // The next request's clock starts now.
                    self.request_started = Instant::now();
                    line
                }
                Some(_) => return too_long(),
                None if pending.len() > MAX_LINE + 1 => return too_long(),
                None if self.peer_closed && !pending.is_empty() => {
                    let line = pending.to_vec();
                    self.start = self.input.len();
                    line
                }
                None if self.peer_closed => return Step::Close(None),
                None => return Step::NeedMore,
            };
            match text::parse_line(&line, text::local_timestamp) {
                Ok(TextCommand::Request(request)) => return Step::Submit { request, raw: line },
                Ok(TextCommand::Help) => {
                    return Step::Reply {
                        bytes: text::help(),
                        close: false,
                    }
                }
                Ok(TextCommand::Quit) => {
                    return Step::Reply {
                        bytes: b"OK\n".to_vec(),
                        close: true,
                    }
                }
                Ok(TextCommand::Nothing) => continue,
                Ok(TextCommand::TestPartition(ids)) => return Step::TestPartition(ids),
                Ok(TextCommand::Rms) => return Step::Rms,
                Ok(TextCommand::Stats) => return Step::Stats,
                Ok(TextCommand::Admin(admin)) => return Step::Admin { admin, raw: line },
                Err(e) => {
                    let mut bytes = Vec::new();
                    text::encode_error(&mut bytes, e.kind(), &e.to_string());
                    return Step::Reply {
                        bytes,
                        close: e == TextError::TooLong,
                    };
                }
            }
        }
    }
}

fn too_long() -> Step {
    log::warn!("text: line longer than {MAX_LINE} bytes; connection closed");
    let mut bytes = Vec::new();
    text::encode_error(&mut bytes, TextError::TooLong.kind(), &TextError::TooLong.to_string());
    Step::Reply { bytes, close: true }
}
