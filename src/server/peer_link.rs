//! One RM link: a TCP connection to or from another RM, carrying
//! length-prefixed [`PeerFrame`]s.
//!
//! Each RM dials every other RM and sends on that *outbound* link; what it
//! accepts are *inbound* links, which it reads. An inbound link opens with a
//! challenge from the acceptor, answered by the dialler's hello (see
//! `link_auth`); it is trusted with nothing until that hello checks out.

use std::io::{self, ErrorKind, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

use crate::protocol::peer::{parse_frame, PeerFrame, PeerFrameError, MAX_FRAME};

/// Most bytes queued for a peer; beyond, the link is dropped and raft is
/// told the peer is unreachable (it will resend what matters).
pub const MAX_QUEUED: usize = 64 * 1024 * 1024;

/// A link to or from another RM.
pub struct PeerLink {
    /// The socket.
    pub stream: TcpStream,
    /// The other RM, once known (given for outbound, from hello inbound).
    pub rm_id: Option<u64>,
    /// Whether this RM dialled it.
    pub outbound: bool,
    /// Whether the connection is established (outbound dials finish later).
    pub connected: bool,
    /// When the dial started (outbound).
    pub since: Instant,
    /// The challenge sent on an accepted link, until its hello answers it.
    pub nonce: Vec<u8>,
    /// On an outbound link: the challenge is answered, frames may follow.
    pub greeted: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
}

impl PeerLink {
    /// A link around a socket.
    pub fn new(stream: TcpStream, rm_id: Option<u64>, outbound: bool) -> PeerLink {
        PeerLink {
            stream,
            rm_id,
            outbound,
            connected: !outbound,
            since: Instant::now(),
            nonce: Vec::new(),
            greeted: false,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
        }
    }

    /// Queues a frame. Returns false if the queue is over its cap.
    pub fn send(&mut self, frame: &PeerFrame) -> bool {
        if self.output.len() - self.written > MAX_QUEUED {
            return false;
        }
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
        }
        self.output.extend(frame.encode());
        true
    }

    /// Writes queued bytes until the socket stops taking them.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.connected {
            return Ok(());
        }
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "peer took no bytes")),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the socket has; returns the whole frames received and
    /// whether the peer closed the link. An error means the link must be
    /// dropped.
    pub fn receive(&mut self) -> io::Result<(Vec<PeerFrame>, bool)> {
        let mut chunk = [0u8; 64 * 1024];
        let mut closed = false;
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    if self.input.len() > MAX_FRAME + 4 + chunk.len() {
                        break; // parse what is here before reading on
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let mut frames = Vec::new();
        let mut used = 0;
        loop {
            match parse_frame(&self.input[used..]) {
                Ok(Some((frame, n))) => {
                    frames.push(frame);
                    used += n;
                }
                Ok(None) => break,
                Err(
                    e @ (PeerFrameError::BadLength(_) | PeerFrameError::UnknownType(_) | PeerFrameError::Malformed(_)),
                ) => {
                    return Err(io::Error::new(ErrorKind::InvalidData, e.to_string()));
                }
            }
        }
        self.input.drain(..used);
        Ok((frames, closed))
    }
}
