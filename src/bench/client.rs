//! The bench's client side: the calls a frontend makes, how each is framed,
//! and the reply shape each must have.
//!
//! Replies are checked, not trusted: a reply of the wrong shape (or an
//! empty one where an answer is due) is an error, so a server that answers
//! quickly and wrongly does not look fast.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::protocol::legacy::{COMMAND_LEN, FRAME_LEN, IDS_PER_REPLY_LINE, WOOTS_PER_REPLY_LINE};
use crate::storage::layout::{ListKind, WOOT_LEN};
use crate::storage::record::{left, trim};

/// How long one request may take before it counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The framing the bench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchFraming {
    /// One connection per request, 560-byte frames, as the frontend does.
    Legacy,
    /// One connection per client, one command at a time.
    Text,
}

/// One request the bench sends.
#[derive(Debug, Clone)]
pub enum Call {
    /// Register a user.
    Create(String),
    /// A user by name.
    ReadUser(String),
    /// A user by id.
    ReadId(u32),
    /// Up to n woots, newest first.
    LoadWoots(String, u32),
    /// Up to n ids of a list.
    LoadFollowing(String, ListKind, u32),
    /// Whether the user follows an id.
    AlreadyFollowing(String, u32),
    /// Post a woot.
    WriteWoot(String, String),
    /// First follows second.
    Follow(String, String),
    /// First unfollows second.
    Unfollow(String, String),
}

/// What a checked reply said, as far as the bench needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// One user: id and username; `absent` for the empty reply to a lookup.
    User {
        /// The id.
        id: u32,
    },
    /// A lookup answered "absent" (the empty reply / `ERR not_found`).
    Absent,
    /// A refusal that is not an error for the bench (a taken username).
    Refused,
    /// Ids of a list.
    Ids(Vec<u32>),
    /// Anything else that had the right shape.
    Fine,
}

fn record(username: &str) -> Vec<u8> {
    // The frontend sends its (possibly stale) copy; the server must use its
    // own state, so a fixed made-up profile is as good as any.
    let mut r = Vec::with_capacity(259);
    left(&mut r, username.as_bytes(), 25);
    left(&mut r, b"benchpassword", 33);
    left(&mut r, b"0", 11);
    left(&mut r, b"Bench User", 52);
    left(&mut r, b"30", 4);
    left(&mut r, format!("{username}@bench.example").as_bytes(), 101);
    left(&mut r, b"0", 11);
    left(&mut r, b"0", 11);
    r.push(b'n');
    left(&mut r, b"0", 10);
    r
}

impl Call {
    /// The command name.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Create(_) => "create_new_user",
            Call::ReadUser(_) => "read_user",
            Call::ReadId(_) => "read_id",
            Call::LoadWoots(..) => "load_woots",
            Call::LoadFollowing(..) => "load_following",
            Call::AlreadyFollowing(..) => "already_following",
            Call::WriteWoot(..) => "write_woot",
            Call::Follow(..) => "follow",
            Call::Unfollow(..) => "unfollow",
        }
    }

    /// Whether the call changes data.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Call::Create(_) | Call::WriteWoot(..) | Call::Follow(..) | Call::Unfollow(..)
        )
    }

    /// The 560-byte legacy frame.
    pub fn legacy_frame(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(FRAME_LEN);
        left(&mut f, self.name().as_bytes(), COMMAND_LEN);
        match self {
            Call::Create(u) => f.extend(record(u)),
            Call::ReadUser(u) => f.extend_from_slice(u.as_bytes()),
            Call::ReadId(id) => f.extend_from_slice(id.to_string().as_bytes()),
            Call::LoadWoots(u, n) => {
                f.extend(record(u));
                f.extend_from_slice(format!(" {n}").as_bytes());
            }
            Call::LoadFollowing(u, kind, n) => {
                f.extend(record(u));
                f.extend_from_slice(format!(" {} {n}", kind.as_str()).as_bytes());
            }
            Call::AlreadyFollowing(u, id) => {
                f.extend(record(u));
                f.extend_from_slice(format!(" {id}").as_bytes());
            }
            Call::WriteWoot(u, text) => {
                f.extend(record(u));
                f.push(b' ');
                left(&mut f, text.as_bytes(), 100);
                f.push(b' ');
                left(&mut f, b"2026-01-01 -> 12:00:00", 22);
            }
            Call::Follow(a, b) | Call::Unfollow(a, b) => {
                f.extend(record(a));
                f.push(b' ');
                f.extend(record(b));
            }
        }
        f.resize(FRAME_LEN, b' ');
        f
    }

    /// The text-framing line, with its line break.
    pub fn text_line(&self) -> String {
        match self {
            Call::Create(u) => format!("create_new_user {u} benchpassword 30 {u}@bench.example Bench User\n"),
            Call::ReadUser(u) => format!("read_user {u}\n"),
            Call::ReadId(id) => format!("read_id {id}\n"),
            Call::LoadWoots(u, n) => format!("load_woots {u} {n}\n"),
            Call::LoadFollowing(u, kind, n) => format!("load_following {u} {} {n}\n", kind.as_str()),
            Call::AlreadyFollowing(u, id) => format!("already_following {u} {id}\n"),
            Call::WriteWoot(u, text) => format!("write_woot {u} [2026-01-01 -> 12:00:00] {text}\n"),
            Call::Follow(a, b) => format!("follow {a} {b}\n"),
            Call::Unfollow(a, b) => format!("unfollow {a} {b}\n"),
        }
    }

    /// Checks a legacy reply's shape.
    pub fn check_legacy(&self, reply: &[u8]) -> Result<Reply, String> {
        let lines: Vec<&[u8]> = reply.split_inclusive(|&b| b == b'\n').collect();
        if lines.iter().any(|l| l.last() != Some(&b'\n')) {
            return Err(format!("{}: reply does not end with a line break", self.name()));
        }
        let user = |line: &[u8], name: Option<&str>| -> Result<u32, String> {
            if line.len() != 260 {
                return Err(format!("{}: user line of {} bytes", self.name(), line.len()));
            }
            if let Some(name) = name {
                if trim(&line[..25]) != name.as_bytes() {
                    return Err(format!("{}: reply names another user", self.name()));
                }
            }
            parse_u32(trim(&line[58..69])).ok_or_else(|| format!("{}: id is not a number", self.name()))
        };
        match self {
            Call::Create(_) if reply.is_empty() => Ok(Reply::Refused),
            Call::ReadUser(_) | Call::ReadId(_) if reply.is_empty() => Ok(Reply::Absent),
            Call::Create(u) | Call::ReadUser(u) | Call::WriteWoot(u, _) => match lines.as_slice() {
                [line] => Ok(Reply::User {
                    id: user(line, Some(u))?,
                }),
                _ => Err(format!("{}: {} lines, want 1", self.name(), lines.len())),
            },
            Call::ReadId(id) => match lines.as_slice() {
                [line] if user(line, None)? == *id => Ok(Reply::User { id: *id }),
                [_] => Err("read_id: reply is another id".to_string()),
                _ => Err(format!("read_id: {} lines, want 1", lines.len())),
            },
            Call::Follow(a, b) | Call::Unfollow(a, b) => match lines.as_slice() {
                [la, lb] => {
                    user(la, Some(a))?;
                    user(lb, Some(b))?;
                    Ok(Reply::Fine)
                }
                _ => Err(format!("{}: {} lines, want 2", self.name(), lines.len())),
            },
            Call::AlreadyFollowing(..) => match reply {
                b"YES\n" | b"NO\n" => Ok(Reply::Fine),
                _ => Err("already_following: neither YES nor NO".to_string()),
            },
            Call::LoadWoots(_, n) => {
                let count = packed(&lines, WOOT_LEN, WOOTS_PER_REPLY_LINE).map_err(|e| format!("load_woots: {e}"))?;
                check_count("load_woots", count, *n)?;
                Ok(Reply::Fine)
            }
            Call::LoadFollowing(_, _, n) => {
                packed(&lines, 12, IDS_PER_REPLY_LINE).map_err(|e| format!("load_following: {e}"))?;
                let ids: Option<Vec<u32>> = reply
                    .split(|&b| b == b' ' || b == b'\n')
                    .filter(|t| !t.is_empty())
                    .map(parse_u32)
                    .collect();
                let ids = ids.ok_or("load_following: an id is not a number")?;
                check_count("load_following", ids.len(), *n)?;
                Ok(Reply::Ids(ids))
            }
        }
    }

    /// Checks a text reply's shape (its lines without line breaks).
    pub fn check_text(&self, lines: &[String]) -> Result<Reply, String> {
        let Some((status, body)) = lines.split_last() else {
            return Err(format!("{}: no reply", self.name()));
        };
        if status.starts_with("ERR not_found") && matches!(self, Call::ReadUser(_) | Call::ReadId(_)) {
            return Ok(Reply::Absent);
        }
        if status.starts_with("ERR exists") && matches!(self, Call::Create(_)) {
            return Ok(Reply::Refused);
        }
        if status != "OK" {
            return Err(format!("{}: {status}", self.name()));
        }
        let user_id = |line: &str| -> Option<u32> { line.strip_prefix("id=")?.split(' ').next()?.parse().ok() };
        match self {
            Call::Create(_) | Call::ReadUser(_) | Call::ReadId(_) | Call::WriteWoot(..) => match body {
                [line] => user_id(line)
                    .map(|id| Reply::User { id })
                    .ok_or(format!("{}: not a user line", self.name())),
                _ => Err(format!("{}: {} lines, want 1", self.name(), body.len())),
            },
            Call::Follow(..) | Call::Unfollow(..) => match body {
                [a, b] if user_id(a).is_some() && user_id(b).is_some() => Ok(Reply::Fine),
                _ => Err(format!("{}: want two user lines", self.name())),
            },
            Call::AlreadyFollowing(..) => match body {
                [l] if l == "YES" || l == "NO" => Ok(Reply::Fine),
                _ => Err("already_following: neither YES nor NO".to_string()),
            },
            Call::LoadWoots(_, n) => {
                if body.iter().any(|l| !l.starts_with('[')) {
                    return Err("load_woots: not a woot line".to_string());
                }
                check_count("load_woots", body.len(), *n).map(|_| Reply::Fine)
            }
            Call::LoadFollowing(_, _, n) => {
                let ids: Option<Vec<u32>> = body.iter().map(|l| l.parse().ok()).collect();
                let ids = ids.ok_or("load_following: an id is not a number")?;
                check_count("load_following", ids.len(), *n)?;
                Ok(Reply::Ids(ids))
            }
        }
    }
}

fn parse_u32(bytes: &[u8]) -> Option<u32> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn check_count(command: &str, got: usize, most: u32) -> Result<(), String> {
    if got as u64 > u64::from(most) {
        return Err(format!("{command}: {got} items, asked for at most {most}"));
    }
    Ok(())
}

/// Checks lines of `per_line` fixed-width items (all full but the last);
/// returns the item count.
fn packed(lines: &[&[u8]], item: usize, per_line: usize) -> Result<usize, String> {
    let mut count = 0;
    for (i, line) in lines.iter().enumerate() {
        let body = line.len() - 1;
        if body == 0 || body % item != 0 {
            return Err(format!("line of {} bytes is not whole items", line.len()));
        }
        let items = body / item;
        if items > per_line || (i + 1 < lines.len() && items != per_line) {
            return Err(format!("line {i} holds {items} items"));
        }
        count += items;
    }
    Ok(count)
}

/// Sends one legacy request on a new connection; reads to end of file.
pub fn legacy_call(addr: SocketAddr, frame: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    s.write_all(frame)?;
    let mut reply = Vec::with_capacity(512);
    s.read_to_end(&mut reply)?;
    Ok(reply)
}

/// A text-framing connection kept open across calls.
pub struct TextConnection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl TextConnection {
    /// Connects.
    pub fn open(addr: SocketAddr) -> std::io::Result<TextConnection> {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(TextConnection {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Sends one line and reads the reply up to its status line.
    pub fn call(&mut self, line: &str) -> std::io::Result<Vec<String>> {
        self.writer.write_all(line.as_bytes())?;
        let mut lines = Vec::new();
        // Bounded: a reply longer than this many lines is not one the bench asked for.
        for _ in 0..100_000 {
            let mut buf = String::new();
            if self.reader.read_line(&mut buf)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            let line = buf.trim_end_matches('\n').to_string();
            let done = line == "OK" || line.starts_with("ERR ");
            lines.push(line);
            if done {
                return Ok(lines);
            }
        }
        Err(std::io::Error::other("reply without a status line"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn woot_shapes_are_checked() {
        let call = Call::LoadWoots("x".into(), 5);
        let line4 = [vec![b'a'; 4 * 124], vec![b'\n']].concat();
        let line1 = [vec![b'a'; 124], vec![b'\n']].concat();
        assert!(call.check_legacy(&[line4.clone(), line1.clone()].concat()).is_ok());
        assert!(call.check_legacy(&[line1.clone(), line4.clone()].concat()).is_err());
        assert!(call.check_legacy(&[line4.clone(), line4].concat()).is_err(), "8 > 5");
        assert!(call.check_legacy(b"").is_ok());
    }

    #[test]
    fn frames_are_560_bytes() {
        for call in [
            Call::Create("bench000001".into()),
            Call::Follow("a".into(), "b".into()),
            Call::WriteWoot("a".into(), "hi".into()),
        ] {
            assert_eq!(call.legacy_frame().len(), FRAME_LEN);
        }
    }
}
