//! The binary form of an [`Op`], as the replicated log carries it.
//!
//! `version (1) | tag (1) | fields`, each field a big-endian `u16` length
//! and its bytes. Decoding checks every value again (a log entry is input
//! like any other), so a damaged entry is refused, never applied.

use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u8};
use nom::IResult;
use thiserror::Error;

use super::layout::WOOT_LEN;
use super::op::Op;
use super::record::{Profile, RecordError, Status, Username, Woot};

/// The encoding's version byte.
const VERSION: u8 = 1;

/// Why bytes are not an op.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OpCodecError {
    /// The bytes end early or have an unknown tag or version.
    #[error("not an encoded op: {0}")]
    Malformed(&'static str),
    /// A value inside is not valid.
    #[error("encoded op holds an invalid value: {0}")]
    Invalid(#[from] RecordError),
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..len as usize]);
}

fn field(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (input, len) = be_u16(input)?;
    take(len)(input)
}

fn put_profile(out: &mut Vec<u8>, p: &Profile) {
    put(out, &p.password);
    put(out, &p.name);
    put(out, &p.age);
    put(out, &p.email);
}

impl Op {
    /// The op's bytes for the log.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Op::CreateUser { username, profile } => {
                out.push(1);
                put(&mut out, username.as_bytes());
                put_profile(&mut out, profile);
            }
            Op::FlushUser {
                username,
                profile,
                status,
            } => {
                out.push(2);
                put(&mut out, username.as_bytes());
                put_profile(&mut out, profile);
                out.push(status.byte());
            }
            Op::Follow { follower, followee } | Op::Unfollow { follower, followee } => {
                out.push(if matches!(self, Op::Follow { .. }) { 3 } else { 4 });
                put(&mut out, follower.as_bytes());
                put(&mut out, followee.as_bytes());
            }
            Op::WriteWoot { username, woot } => {
                out.push(5);
                put(&mut out, username.as_bytes());
                put(&mut out, woot.as_bytes());
            }
        }
        out
    }

    /// Reads an op from its log bytes.
    pub fn decode(bytes: &[u8]) -> Result<Op, OpCodecError> {
        let short = |_| OpCodecError::Malformed("cut short");
        let (input, version) = be_u8::<_, nom::error::Error<&[u8]>>(bytes).map_err(short)?;
        if version != VERSION {
            return Err(OpCodecError::Malformed("unknown version"));
        }
        let (mut input, tag) = be_u8::<_, nom::error::Error<&[u8]>>(input).map_err(short)?;
        let mut next = || -> Result<&[u8], OpCodecError> {
            let (rest, f) = field(input).map_err(short)?;
            input = rest;
            Ok(f)
        };
        let op = match tag {
            1 | 2 => {
                let username = Username::new(next()?)?;
                let (pw, name, age, email) = (next()?, next()?, next()?, next()?);
                let profile = Profile::new(pw, name, age, email)?;
                if tag == 1 {
                    Op::CreateUser { username, profile }
                } else {
                    let (rest, status) = be_u8::<_, nom::error::Error<&[u8]>>(input).map_err(short)?;
                    input = rest;
                    Op::FlushUser {
                        username,
                        profile,
                        status: Status::parse(&[status])?,
                    }
                }
            }
            3 | 4 => {
                let follower = Username::new(next()?)?;
                let followee = Username::new(next()?)?;
                if tag == 3 {
                    Op::Follow { follower, followee }
                } else {
                    Op::Unfollow { follower, followee }
                }
            }
            5 => {
                let username = Username::new(next()?)?;
                let woot = next()?;
                if woot.len() != WOOT_LEN {
                    return Err(OpCodecError::Malformed("a woot is not 124 bytes"));
                }
                Op::WriteWoot {
                    username,
                    woot: Woot::from_stored(woot),
                }
            }
            _ => return Err(OpCodecError::Malformed("unknown op tag")),
        };
        if !input.is_empty() {
            return Err(OpCodecError::Malformed("trailing bytes"));
        }
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        let u = |s: &str| Username::new(s.as_bytes()).unwrap();
        let p = Profile::new(b"secret", b"Ann van Dyke", b"33", b"a@b.c").unwrap();
        vec![
            Op::CreateUser {
                username: u("member001"),
                profile: p.clone(),
            },
            Op::FlushUser {
                username: u("member001"),
                profile: p,
                status: Status::Deactivated,
            },
            Op::Follow {
                follower: u("a1"),
                followee: u("b2"),
            },
            Op::Unfollow {
                follower: u("a1"),
                followee: u("b2"),
            },
            Op::WriteWoot {
                username: u("a1"),
                woot: Woot::new(b"hello", b"2026-01-01 -> 9:00:00").unwrap(),
            },
        ]
    }

    #[test]
    fn every_op_round_trips() {
        for op in ops() {
            assert_eq!(Op::decode(&op.encode()), Ok(op));
        }
    }

    #[test]
    fn damaged_bytes_are_refused() {
        for op in ops() {
            let bytes = op.encode();
            for cut in 0..bytes.len() {
                assert!(Op::decode(&bytes[..cut]).is_err(), "cut at {cut} accepted");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Op::decode(&longer).is_err());
        }
        assert!(Op::decode(&[1, 99]).is_err());
        assert!(Op::decode(&[2, 1]).is_err());
    }
}
