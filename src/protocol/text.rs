//! The text framing, for people with netcat: one command per line, words
//! separated by spaces, every reply closed by one `OK` or `ERR` line.

use nom::bytes::complete::{tag, take_till1, take_while, take_while_m_n};
use nom::combinator::{opt, recognize, rest};
use nom::sequence::{delimited, preceded, tuple};
use nom::IResult;
use thiserror::Error;

use crate::command::{Admin, Request};
use crate::storage::layout::ListKind;
use crate::storage::query::WootOrder;
use crate::storage::record::{parse_number, trim, Profile, RecordError, Status, UserRecord, Username, Woot};
use crate::storage::{Answer, Op, Query, StoreError};

/// Longest accepted line, without its line break.
pub const MAX_LINE: usize = 4096;

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextCommand {
    /// A request for the store.
    Request(Request),
    /// `help`: list the commands.
    Help,
    /// `quit`: close the connection.
    Quit,
    /// A blank line: nothing to do, nothing to answer.
    Nothing,
    /// `rms`: the cluster's members, their roles and lag.
    Rms,
    /// `stats`: what the server is doing.
    Stats,
    /// `add_rm`, `remove_rm`, `snapshot`: cluster administration.
    Admin(Admin),
    /// `test_partition [ID,...]`: drop all RM traffic with these RMs (none:
    /// heal). Only an RM started with `--enable-test-partition` obeys; it is
    /// how the tests cut a cluster in two. Not listed by `help`.
    TestPartition(Vec<u64>),
}

/// Why a line was refused: becomes `ERR <kind> <message>`.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TextError {
    /// The command name is not known.
    #[error("unknown command '{0}'; type help for the list")]
    UnknownCommand(String),
    /// The arguments do not fit the command.
    #[error("usage: {0} {1}")]
    Usage(&'static str, &'static str),
    /// A value was refused.
    #[error(transparent)]
    Field(#[from] RecordError),
    /// The line is longer than [`MAX_LINE`].
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
}

impl TextError {
    /// The word after `ERR`.
    pub fn kind(&self) -> &'static str {
        match self {
            TextError::UnknownCommand(_) => "unknown_command",
            TextError::Usage(..) | TextError::Field(_) => "invalid",
            TextError::TooLong => "too_long",
        }
    }
}

/// Every command: name, arguments, what it does. `help` prints this.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "create_new_user",
        "USERNAME PASSWORD AGE EMAIL FULL NAME",
        "register a user",
    ),
    ("read_user", "USERNAME", "show a user"),
    ("read_id", "ID", "show the user with this id"),
    (
        "flush_user",
        "USERNAME PASSWORD AGE EMAIL STATUS FULL NAME",
        "rewrite a user's profile; STATUS n (active) or d (deactivated)",
    ),
    ("follow", "USERNAME OTHER", "USERNAME follows OTHER"),
    ("unfollow", "USERNAME OTHER", "USERNAME stops following OTHER"),
    (
        "load_following",
        "USERNAME followers|followees [N]",
        "ids in a follow list, oldest first (all, or the first N)",
    ),
    (
        "write_woot",
        "USERNAME [[YYYY-MM-DD -> H:MM:SS]] TEXT",
        "post a woot (at most 100 bytes); the time defaults to now",
    ),
    ("load_woots", "USERNAME [N]", "woots, newest first (all, or N)"),
    ("load_woots_seq", "USERNAME [N]", "woots, oldest first (all, or N)"),
    (
        "already_following",
        "USERNAME ID",
        "YES if USERNAME follows user ID, else NO",
    ),
    (
        "rms",
        "",
        "the RMs of the cluster: address, role, applied index, lag; the primary marked",
    ),
    (
        "stats",
        "",
        "uptime, connections, requests by command, users, raft state",
    ),
    (
        "add_rm",
        "ID IP:PORT",
        "add the RM serving clients at IP:PORT (its link at PORT+1000) to the cluster",
    ),
    (
        "remove_rm",
        "ID",
        "take an RM out of the cluster (refused if the rest could not make a quorum)",
    ),
    (
        "snapshot",
        "",
        "cut a snapshot of this RM's data now and shorten its raft log",
    ),
    ("help", "", "this list"),
    ("quit", "", "close the connection"),
];

fn usage(command: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(name, _, _)| *name == command)
        .map_or("help", |(_, args, _)| args)
}

fn spaces(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while(|b| b == b' ' || b == b'\t')(input)
}

/// The next word.
fn word(input: &[u8]) -> IResult<&[u8], &[u8]> {
    preceded(spaces, take_till1(|b| b == b' ' || b == b'\t'))(input)
}

/// The rest of the line after the spaces that follow the previous word.
fn remainder(input: &[u8]) -> IResult<&[u8], &[u8]> {
    preceded(spaces, rest)(input)
}

/// `[YYYY-MM-DD -> H:MM:SS]`, the frontend's timestamp format.
fn bracketed_timestamp(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let digits = |n, m| take_while_m_n(n, m, |b: u8| b.is_ascii_digit());
    delimited(
        tag("["),
        recognize(tuple((
            digits(4, 4),
            tag("-"),
            digits(2, 2),
            tag("-"),
            digits(2, 2),
            tag(" -> "),
            digits(1, 2),
            tag(":"),
            digits(2, 2),
            tag(":"),
            digits(2, 2),
        ))),
        tag("]"),
    )(input)
}

/// Reads a command's arguments one at a time.
struct Args<'a> {
    command: &'static str,
    input: &'a [u8],
}

impl<'a> Args<'a> {
    fn word(&mut self) -> Result<&'a [u8], TextError> {
        let (rest, w) = word(self.input).map_err(|_| TextError::Usage(self.command, usage(self.command)))?;
        self.input = rest;
        Ok(w)
    }

    fn rm_id(&mut self) -> Result<u64, TextError> {
        let word = self.word()?;
        std::str::from_utf8(word)
            .ok()
            .and_then(|w| w.parse::<u64>().ok())
            .filter(|id| *id > 0)
            .ok_or(TextError::Usage(self.command, usage(self.command)))
    }

    fn optional_word(&mut self) -> Option<&'a [u8]> {
        self.word().ok()
    }

    fn username(&mut self) -> Result<Username, TextError> {
        Ok(Username::new(self.word()?)?)
    }

    fn number(&mut self, what: &'static str) -> Result<u32, TextError> {
        Ok(parse_number(what, self.word()?)?)
    }

    fn optional_count(&mut self) -> Result<u32, TextError> {
        match self.optional_word() {
            None => Ok(u32::MAX),
            Some(w) => Ok(parse_number("count", w)?),
        }
    }

    fn remainder(&mut self) -> &'a [u8] {
        let (rest, r) = remainder(self.input).unwrap_or((&[], &[]));
        self.input = rest;
        trim(r)
    }

    fn end(&self) -> Result<(), TextError> {
        match word(self.input) {
            Ok(_) => Err(TextError::Usage(self.command, usage(self.command))),
            Err(_) => Ok(()),
        }
    }
}

/// Parses one line (without its line break). `now` gives the timestamp of
/// a woot that has none; it is called at most once, here, so the op carries
/// its time and applying it never reads the clock.
pub fn parse_line(line: &[u8], now: impl FnOnce() -> Vec<u8>) -> Result<TextCommand, TextError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return Err(TextError::TooLong);
    }
    let Ok((input, name)) = word(line) else {
        return Ok(TextCommand::Nothing);
    };
    if name == b"test_partition" {
        let ids: Option<Vec<u64>> = trim(input)
            .split(|&b| b == b',')
            .filter(|p| !trim(p).is_empty())
            .map(|p| std::str::from_utf8(trim(p)).ok()?.parse().ok())
            .collect();
        return ids
            .map(TextCommand::TestPartition)
            .ok_or(TextError::Usage("test_partition", "[ID,ID,...]"));
    }
    let Some(&(command, _, _)) = COMMANDS.iter().find(|(c, _, _)| c.as_bytes() == name) else {
        return Err(TextError::UnknownCommand(
            String::from_utf8_lossy(&name[..name.len().min(40)]).into_owned(),
        ));
    };
    let mut args = Args { command, input };
    let request = match command {
        "help" | "quit" | "rms" | "stats" | "snapshot" => {
            args.end()?;
            return Ok(match command {
                "help" => TextCommand::Help,
                "quit" => TextCommand::Quit,
                "stats" => TextCommand::Stats,
                "snapshot" => TextCommand::Admin(Admin::Snapshot),
                _ => TextCommand::Rms,
            });
        }
        "add_rm" | "remove_rm" => {
            let id = args.rm_id()?;
            let admin = if command == "add_rm" {
                let addr = args.word()?;
                let client = std::str::from_utf8(addr)
                    .ok()
                    .and_then(|a| a.parse().ok())
                    .ok_or(TextError::Usage("add_rm", "ID IP:PORT"))?;
                Admin::AddRm { id, client }
            } else {
                Admin::RemoveRm(id)
            };
            args.end()?;
            return Ok(TextCommand::Admin(admin));
        }
        "create_new_user" | "flush_user" => {
            let username = args.username()?;
            let password = args.word()?;
            let age = args.word()?;
            let email = args.word()?;
            let status = if command == "flush_user" {
                Some(Status::parse(args.word()?)?)
            } else {
                None
            };
            let name = args.remainder();
            if name.is_empty() {
                return Err(TextError::Usage(command, usage(command)));
            }
            let profile = Profile::new(password, name, age, email)?;
            Request::Op(match status {
                None => Op::CreateUser { username, profile },
                Some(status) => Op::FlushUser {
                    username,
                    profile,
                    status,
                },
            })
        }
        "read_user" => {
            let u = args.username()?;
            args.end()?;
            Request::Query(Query::ReadUser(u))
        }
        "read_id" => {
            let id = args.number("id")?;
            args.end()?;
            Request::Query(Query::ReadId(id))
        }
        "follow" | "unfollow" => {
            let follower = args.username()?;
            let followee = args.username()?;
            args.end()?;
            Request::Op(if command == "follow" {
                Op::Follow { follower, followee }
            } else {
                Op::Unfollow { follower, followee }
            })
        }
        "load_following" => {
            let username = args.username()?;
            let kind = ListKind::parse(args.word()?).ok_or(TextError::Usage(command, usage(command)))?;
            let n = args.optional_count()?;
            args.end()?;
            Request::Query(Query::LoadFollowing { username, kind, n })
        }
        "write_woot" => {
            let username = args.username()?;
            let text = args.remainder();
            let (text, stamp) = match opt(bracketed_timestamp)(text) {
                Ok((rest, Some(stamp))) => (trim(rest), stamp.to_vec()),
                _ => (text, now()),
            };
            if text.is_empty() {
                return Err(TextError::Usage(command, usage(command)));
            }
            Request::Op(Op::WriteWoot {
                username,
                woot: Woot::new(text, &stamp)?,
            })
        }
        "load_woots" | "load_woots_seq" => {
            let username = args.username()?;
            let n = args.optional_count()?;
            args.end()?;
            let order = if command == "load_woots" {
                WootOrder::NewestFirst
            } else {
                WootOrder::OldestFirst
            };
            Request::Query(Query::LoadWoots { username, n, order })
        }
        _ => {
            let username = args.username()?;
            let id = args.number("id")?;
            args.end()?;
            Request::Query(Query::AlreadyFollowing { username, id })
        }
    };
    Ok(TextCommand::Request(request))
}

/// The server's local time in the frontend's format, `YYYY-MM-DD -> H:MM:SS`
/// (hour without a leading zero).
pub fn local_timestamp() -> Vec<u8> {
    chrono::Local::now()
        .format("%Y-%m-%d -> %-H:%M:%S")
        .to_string()
        .into_bytes()
}

fn user_line(out: &mut Vec<u8>, u: &UserRecord) {
    let p = &u.profile;
    out.extend_from_slice(format!("id={} username=", u.id).as_bytes());
    out.extend_from_slice(u.username.as_bytes());
    out.extend_from_slice(b" status=");
    out.push(u.status.byte());
    out.extend_from_slice(b" age=");
    out.extend_from_slice(&p.age);
    out.extend_from_slice(
        format!(
            " followers={} followees={} woots={} email=",
            u.followers, u.followees, u.woots
        )
        .as_bytes(),
    );
    out.extend_from_slice(&p.email);
    out.extend_from_slice(b" name=");
    out.extend_from_slice(&p.name);
    out.push(b'\n');
}

/// Appends the `ERR` line for a refusal.
pub fn encode_error(out: &mut Vec<u8>, kind: &str, message: &str) {
    let message: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    out.extend_from_slice(format!("ERR {kind} {message}\n").as_bytes());
}

/// The reply to a request: its lines, then `OK`, or one `ERR` line.
pub fn encode_reply(result: &Result<Answer, StoreError>) -> Vec<u8> {
    let mut out = Vec::new();
    let answer = match result {
        Ok(a) => a,
        Err(e) => {
            encode_error(&mut out, e.kind(), &e.to_string());
            return out;
        }
    };
    match answer {
        Answer::User(u) => user_line(&mut out, u),
        Answer::Pair(a, b) => {
            user_line(&mut out, a);
            user_line(&mut out, b);
        }
        Answer::Ids(ids) => {
            for id in ids {
                out.extend_from_slice(format!("{id}\n").as_bytes());
            }
        }
        Answer::Woots(woots) => {
            for w in woots {
                out.push(b'[');
                out.extend_from_slice(w.timestamp());
                out.extend_from_slice(b"] ");
                out.extend_from_slice(w.text());
                out.push(b'\n');
            }
        }
        Answer::Bool(yes) => out.extend_from_slice(if *yes { b"YES\n" } else { b"NO\n" }),
    }
    out.extend_from_slice(b"OK\n");
    out
}

/// The reply to `help`.
pub fn help() -> Vec<u8> {
    let mut out = String::from("commands (one per line; words separated by spaces):\n");
    for (name, args, what) in COMMANDS {
        let line = format!("  {name} {args}");
        out.push_str(line.trim_end());
        out.push_str(&format!("\n      {what}\n"));
    }
    out.push_str("OK\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Vec<u8> {
        b"2026-12-03 -> 9:05:00".to_vec()
    }

    #[test]
    fn woot_without_timestamp_gets_now() {
        let TextCommand::Request(Request::Op(Op::WriteWoot { woot, .. })) =
            parse_line(b"write_woot member001 hello  world", now).unwrap()
        else {
            panic!()
        };
        assert_eq!(woot.text(), b"hello  world");
        assert_eq!(woot.timestamp(), b"2026-12-03 -> 9:05:00");
    }

    #[test]
    fn woot_with_timestamp_keeps_it() {
        let TextCommand::Request(Request::Op(Op::WriteWoot { woot, .. })) =
            parse_line(b"write_woot member001 [2026-01-01 -> 10:00:00] hi", || {
                panic!("clock read")
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(woot.timestamp(), b"2026-01-01 -> 10:00:00");
        assert_eq!(woot.text(), b"hi");
    }

    #[test]
    fn names_keep_their_spaces() {
        let TextCommand::Request(Request::Op(Op::CreateUser { profile, .. })) =
            parse_line(b"create_new_user someone12 pw12345678 33 a@b.c Ann van Dyke\r", now).unwrap()
        else {
            panic!()
        };
        assert_eq!(profile.name, b"Ann van Dyke");
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(parse_line(b"nope", now).unwrap_err().kind(), "unknown_command");
        assert_eq!(parse_line(b"read_user", now).unwrap_err().kind(), "invalid");
        assert_eq!(parse_line(b"read_user a b", now).unwrap_err().kind(), "invalid");
        assert_eq!(parse_line(b"   ", now).unwrap(), TextCommand::Nothing);
    }
}
