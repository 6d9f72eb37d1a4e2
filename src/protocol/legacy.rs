//! The legacy framing: 560-byte requests, fixed-width replies, one request
//! per connection (reference §1).

use nom::bytes::complete::{take, take_till1, take_while};
use nom::sequence::preceded;
use nom::IResult;
use thiserror::Error;

use crate::command::Request;
use crate::storage::layout::{ListKind, ID_WIDTH};
use crate::storage::query::WootOrder;
use crate::storage::record::{
    self, parse_number, raw_record, trim, Profile, RawRecord, RecordError, Status, Username, Woot,
};
use crate::storage::{Answer, Op, Query, StoreError};

/// Length of every request.
pub const FRAME_LEN: usize = 560;
/// Bytes of the command name field.
pub const COMMAND_LEN: usize = 40;
/// Where the part after the first user record starts.
const SECOND_PART: usize = COMMAND_LEN + record::RECORD_LEN + 1;
/// Ids per reply line (the old server's 560 / 12).
pub const IDS_PER_REPLY_LINE: usize = 46;
/// Woots per reply line (the old server's 560 / 123).
pub const WOOTS_PER_REPLY_LINE: usize = 4;

/// What a legacy frame asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyRequest {
    /// A known command.
    Request(Request),
    /// An unknown command: the old server echoed the request back.
    Unknown(Vec<u8>),
}

/// Why a frame of a known command was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LegacyError {
    /// A field was refused.
    #[error("{command}: {source}")]
    Field {
        /// The command.
        command: &'static str,
        /// The refusal.
        source: RecordError,
    },
    /// The payload lacks a value the command needs.
    #[error("{command}: {what}")]
    Malformed {
        /// The command.
        command: &'static str,
        /// What is missing or wrong.
        what: &'static str,
    },
}

/// The next space-separated token.
fn token(input: &[u8]) -> IResult<&[u8], &[u8]> {
    preceded(take_while(|b| b == b' '), take_till1(|b| b == b' '))(input)
}

/// The part of the frame after its command field.
fn payload(frame: &[u8]) -> &[u8] {
    &frame[COMMAND_LEN.min(frame.len())..]
}

fn second_part(frame: &[u8]) -> &[u8] {
    &frame[SECOND_PART.min(frame.len())..]
}

struct Parser {
    command: &'static str,
}

impl Parser {
    fn field<T>(&self, r: Result<T, RecordError>) -> Result<T, LegacyError> {
        r.map_err(|source| LegacyError::Field {
            command: self.command,
            source,
        })
    }

    fn malformed(&self, what: &'static str) -> LegacyError {
        LegacyError::Malformed {
            command: self.command,
            what,
        }
    }

    fn record<'a>(&self, bytes: &'a [u8]) -> Result<RawRecord<'a>, LegacyError> {
        raw_record(bytes)
            .map(|(_, r)| r)
            .map_err(|_| self.malformed("the user record is cut short"))
    }

    fn username(&self, raw: &RawRecord<'_>) -> Result<Username, LegacyError> {
        self.field(Username::new(raw.username))
    }

    fn profile(&self, raw: &RawRecord<'_>) -> Result<Profile, LegacyError> {
        self.field(Profile::new(raw.password, raw.name, raw.age, raw.email))
    }

    fn token<'a>(&self, input: &'a [u8], what: &'static str) -> Result<(&'a [u8], &'a [u8]), LegacyError> {
        token(input).map_err(|_| self.malformed(what))
    }

    fn number(&self, input: &[u8], what: &'static str) -> Result<u32, LegacyError> {
        let (_, t) = self.token(input, what)?;
        parse_number(what, t).map_err(|_| self.malformed(what))
    }
}

/// Parses one whole 560-byte frame.
pub fn parse_frame(frame: &[u8]) -> Result<LegacyRequest, LegacyError> {
    let name = trim(&frame[..COMMAND_LEN.min(frame.len())]);
    let command: &'static str = match name {
        b"create_new_user" => "create_new_user",
        b"read_user" => "read_user",
        b"read_id" => "read_id",
        b"flush_user" => "flush_user",
        b"follow" => "follow",
        b"unfollow" => "unfollow",
        b"load_following" => "load_following",
        b"write_woot" => "write_woot",
        b"load_woots" => "load_woots",
        b"load_woots_seq" => "load_woots_seq",
        b"already_following" => "already_following",
        _ => return Ok(LegacyRequest::Unknown(frame[..frame.len().min(FRAME_LEN - 1)].to_vec())),
    };
    let p = Parser { command };
    let body = payload(frame);
    let request = match command {
        "create_new_user" => {
            let raw = p.record(body)?;
            Request::Op(Op::CreateUser {
                username: p.username(&raw)?,
                profile: p.profile(&raw)?,
            })
        }
        "read_user" => {
            let (_, name) = p.token(body, "username")?;
            Request::Query(Query::ReadUser(p.field(Username::new(name))?))
        }
        "read_id" => Request::Query(Query::ReadId(p.number(body, "id")?)),
        "flush_user" => {
            let raw = p.record(body)?;
            Request::Op(Op::FlushUser {
                username: p.username(&raw)?,
                profile: p.profile(&raw)?,
                status: p.field(Status::parse(raw.status))?,
            })
        }
        "follow" | "unfollow" => {
            let follower = p.username(&p.record(body)?)?;
            let followee = p.username(&p.record(second_part(frame))?)?;
            Request::Op(if command == "follow" {
                Op::Follow { follower, followee }
            } else {
                Op::Unfollow { follower, followee }
            })
        }
        "load_following" => {
            let username = p.username(&p.record(body)?)?;
            let (rest, kind) = p.token(second_part(frame), "list kind")?;
            let kind = ListKind::parse(kind).ok_or_else(|| p.malformed("list kind must be followers or followees"))?;
            let n = p.number(rest, "count")?;
            Request::Query(Query::LoadFollowing { username, kind, n })
        }
        "write_woot" => {
            let username = p.username(&p.record(body)?)?;
            let text = frame
                .get(SECOND_PART..SECOND_PART + record::width::WOOT_TEXT)
                .unwrap_or(&[]);
            let stamp_at = SECOND_PART + record::width::WOOT_TEXT + 1;
            let stamp = frame.get(stamp_at..stamp_at + record::width::WOOT_TIME).unwrap_or(&[]);
            if trim(text).is_empty() {
                return Err(p.malformed("the woot is empty"));
            }
            Request::Op(Op::WriteWoot {
                username,
                woot: p.field(Woot::new(text, stamp))?,
            })
        }
        "load_woots" | "load_woots_seq" => {
            let username = p.username(&p.record(body)?)?;
            let n = p.number(second_part(frame), "count")?;
            let order = if command == "load_woots" {
                WootOrder::NewestFirst
            } else {
                WootOrder::OldestFirst
            };
            Request::Query(Query::LoadWoots { username, n, order })
        }
        _ => {
            let username = p.username(&p.record(body)?)?;
            let id = p.number(second_part(frame), "id")?;
            Request::Query(Query::AlreadyFollowing { username, id })
        }
    };
    Ok(LegacyRequest::Request(request))
}

/// Takes a whole frame off the front of `buf`, if one is there.
pub fn take_frame(buf: &[u8]) -> Option<&[u8]> {
    take::<_, _, nom::error::Error<&[u8]>>(FRAME_LEN)(buf)
        .ok()
        .map(|(_, f)| f)
}

fn user_line(out: &mut Vec<u8>, user: &record::UserRecord) {
    out.extend_from_slice(&user.encode());
    out.push(b'\n');
}

/// The reply bytes the old server sent for this result. Every failure is
/// the empty reply, which the frontend reads as "absent".
pub fn encode_reply(result: &Result<Answer, StoreError>) -> Vec<u8> {
    let mut out = Vec::new();
    match result {
        Err(_) => {}
        Ok(Answer::User(u)) => user_line(&mut out, u),
        Ok(Answer::Pair(a, b)) => {
            user_line(&mut out, a);
            user_line(&mut out, b);
        }
        Ok(Answer::Ids(ids)) => {
            for line in ids.chunks(IDS_PER_REPLY_LINE) {
                for id in line {
                    record::right(&mut out, id.to_string().as_bytes(), ID_WIDTH);
                    out.push(b' ');
                }
                out.push(b'\n');
            }
        }
        Ok(Answer::Woots(woots)) => {
            for line in woots.chunks(WOOTS_PER_REPLY_LINE) {
                for w in line {
                    out.extend_from_slice(w.as_bytes());
                }
                out.push(b'\n');
            }
        }
        Ok(Answer::Bool(yes)) => out.extend_from_slice(if *yes { b"YES\n" } else { b"NO\n" }),
    }
    out
}

/// The old server's answer to an unknown command: the first 559 request
/// bytes (line breaks replaced, so the reply stays one line), then `\n`.
pub fn encode_echo(request: &[u8]) -> Vec<u8> {
    let mut out = record::sanitize(request);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(command: &str, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        record::left(&mut f, command.as_bytes(), COMMAND_LEN);
        f.extend_from_slice(payload);
        f.resize(FRAME_LEN, b' ');
        f
    }

    #[test]
    fn read_user_is_parsed() {
        let f = frame("read_user", b"member001");
        assert_eq!(
            parse_frame(&f).unwrap(),
            LegacyRequest::Request(Request::Query(Query::ReadUser(Username::new(b"member001").unwrap())))
        );
    }

    #[test]
    fn unknown_command_echoes_559_bytes() {
        let f = frame("frobnicate", b"abc");
        let LegacyRequest::Unknown(echo) = parse_frame(&f).unwrap() else {
            panic!("not unknown")
        };
        assert_eq!(encode_echo(&echo).len(), FRAME_LEN);
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert!(parse_frame(&frame("read_id", b"12x")).is_err());
        assert!(parse_frame(&frame("read_id", b"")).is_err());
    }

    #[test]
    fn ids_pack_46_per_line() {
        let ids: Vec<u32> = (0..47).collect();
        let out = encode_reply(&Ok(Answer::Ids(ids)));
        assert_eq!(out.len(), 46 * 12 + 1 + 12 + 1);
        assert_eq!(&out[46 * 12 + 1..46 * 12 + 13], b"         46 ");
    }
}
