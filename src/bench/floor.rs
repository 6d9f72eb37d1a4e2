//! The floor: the fastest server for the same traffic, to measure against.
//!
//! It accepts, reads a whole request (560 bytes, or a line in the text
//! framing), writes a fixed 260-byte answer and, in the legacy framing,
//! closes. No parsing, no storage: whatever wooter costs beyond this is
//! wooter's own. It runs on one thread with the same edge-triggered `mio`
//! loop as wooter, in the bench's own process.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::client::BenchFraming;

const LISTENER: Token = Token(usize::MAX);

/// A running floor server; stopped when dropped.
pub struct Floor {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Conn {
    stream: TcpStream,
    got: usize,
    out: Vec<u8>,
    sent: usize,
}

fn fixed_reply(framing: BenchFraming) -> Vec<u8> {
    match framing {
        BenchFraming::Legacy => {
            let mut r = vec![b' '; 259];
            r.push(b'\n');
            r
        }
        BenchFraming::Text => {
            let mut r = vec![b'x'; 256];
            r.extend_from_slice(b"\nOK\n");
            r
        }
    }
}

impl Floor {
    /// Starts a floor server on a free loopback port.
    pub fn start(framing: BenchFraming) -> std::io::Result<Floor> {
        let mut listener = TcpListener::bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-floor".into())
            .spawn(move || run(poll, listener, framing, &stop2))?;
        Ok(Floor {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut poll: Poll, listener: TcpListener, framing: BenchFraming, stop: &AtomicBool) {
    let reply = fixed_reply(framing);
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        if poll.poll(&mut events, Some(Duration::from_millis(100))).is_err() {
            continue;
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let entry = conns.vacant_entry();
                    let token = Token(entry.key());
                    if poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        let _ = stream.set_nodelay(true);
                        entry.insert(Conn {
                            stream,
                            got: 0,
                            out: Vec::new(),
                            sent: 0,
                        });
                    }
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else { continue };
            let mut close = false;
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => {
                        close = true;
                        break;
                    }
                    Ok(n) => match framing {
                        BenchFraming::Legacy => {
                            conn.got += n;
                            if conn.got >= 560 && conn.out.is_empty() {
                                conn.out.extend_from_slice(&reply);
                            }
                        }
                        BenchFraming::Text => {
                            for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
                                conn.out.extend_from_slice(&reply);
                            }
                        }
                    },
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        close = true;
                        break;
                    }
                }
            }
            while conn.sent < conn.out.len() {
                match conn.stream.write(&conn.out[conn.sent..]) {
                    Ok(n) => conn.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        close = true;
                        break;
                    }
                }
            }
            let done = conn.sent == conn.out.len() && !conn.out.is_empty();
            if done && framing == BenchFraming::Text {
                conn.out.clear();
                conn.sent = 0;
            }
            if close || (done && framing == BenchFraming::Legacy) {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}
