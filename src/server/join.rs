//! `--join`: a new RM asks a member to add it.
//!
//! It does what an operator would: it connects to the member's client
//! port, asks `rms` (so that it knows where every member is: until its
//! snapshot arrives it has no other way to answer the leader), and sends
//! `add_rm ID ADDR` (the member forwards it to the leader). It runs on its own thread, with blocking I/O and
//! timeouts, so the event loop never waits on it, and retries until the
//! cluster answers `OK` or says this RM is already a member.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::raft::membership::{AddressBook, RmAddrs};

/// Addresses the join learned, for the event loop to dial.
pub type Learned = Arc<Mutex<AddressBook>>;

/// Why the cluster refused this RM for good, once it has (`ERR refused` or
/// `ERR invalid`: asking again would not help).
pub type Refusal = Arc<Mutex<Option<String>>>;

/// Starts asking `member` to add RM `id` serving clients at `me`. The
/// thread ends on success or once `stop` is set.
pub fn spawn(
    id: u64,
    me: SocketAddr,
    member: SocketAddr,
    stop: Arc<AtomicBool>,
    learned: Learned,
    refusal: Refusal,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("wooter-join".into()).spawn(move || {
        let mut wait = Duration::from_millis(500);
        while !stop.load(Ordering::SeqCst) {
            match ask(id, me, member, &learned) {
                Ok(reply) if reply.ends_with("OK") => {
                    log::info!("RM {member} answered our join: {reply}");
                    return;
                }
                Ok(reply) if reply.contains("ERR refused") || reply.contains("ERR invalid") => {
                    *refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(reply);
                    return;
                }
                Ok(reply) => log::warn!("joining through {member}: {reply}; asking again in {wait:?}"),
                Err(e) => log::warn!("joining through {member}: {e}; asking again in {wait:?}"),
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    })?;
    Ok(())
}

/// One attempt: the add_rm reply (its lines joined, `OK` or `ERR ...` last).
fn ask(id: u64, me: SocketAddr, member: SocketAddr, learned: &Learned) -> std::io::Result<String> {
    let stream = TcpStream::connect_timeout(&member, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(3)))?;
    (&stream).write_all(format!("rms\nadd_rm {id} {me}\n").as_bytes())?;
    let mut reader = BufReader::new(&stream);
    let members = reply(&mut reader)?;
    let mut book = learned.lock().unwrap_or_else(|e| e.into_inner());
    for line in &members {
        if let Some((rm, addrs)) = parse_rms_line(line) {
            book.insert(rm, addrs);
        }
    }
    drop(book);
    Ok(reply(&mut reader)?.join(" / "))
}

/// One `rm=ID client=ADDR link=ADDR ...` line of an `rms` reply.
fn parse_rms_line(line: &str) -> Option<(u64, RmAddrs)> {
    let field = |name: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    Some((
        field("rm")?.parse().ok()?,
        RmAddrs {
            client: field("client")?.parse().ok()?,
            peer: field("link")?.parse().ok()?,
        },
    ))
}

/// The lines of one reply, up to and including `OK` or `ERR ...`.
fn reply(reader: &mut BufReader<&TcpStream>) -> std::io::Result<Vec<String>> {
    let mut said = Vec::new();
    for _ in 0..1000 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end().to_string();
        let last = line == "OK" || line.starts_with("ERR");
        said.push(line);
        if last {
            return Ok(said);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the member closed without an answer",
    ))
}
