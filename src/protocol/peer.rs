//! Frames between RMs: `length (u32, big-endian) | type (u8) | payload`.
//!
//! The length counts the type byte and the payload. A frame longer than
//! [`MAX_FRAME`] is refused and the link dropped, so a peer cannot make an
//! RM buffer without bound.

use nom::bytes::complete::take;
use nom::number::complete::{be_u32, be_u64, be_u8};
use nom::IResult;
use thiserror::Error;

/// Largest frame accepted (type byte and payload).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// One frame on an RM link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerFrame {
    /// The dialler's answer to a challenge: who is speaking, and the proof.
    Hello {
        /// The sender's RM id.
        rm_id: u64,
        /// HMAC-SHA-256 of the challenge and the id under the cluster
        /// secret (empty when the cluster has no secret).
        mac: Vec<u8>,
    },
    /// First frame on an accepted link: a fresh nonce the dialler must
    /// answer with a hello.
    Challenge {
        /// 32 random bytes.
        nonce: Vec<u8>,
    },
    /// A raft message, protobuf-encoded.
    Raft(Vec<u8>),
    /// A client request a follower hands to the leader.
    Forward {
        /// The follower's id for the request.
        req_id: u64,
        /// The client's framing: 0 legacy, 1 text.
        framing: u8,
        /// The request as the client sent it (a frame or a line).
        request: Vec<u8>,
    },
    /// The leader's answer to a forwarded request.
    ForwardReply {
        /// The follower's id for the request.
        req_id: u64,
        /// The log index the follower must have applied before it answers
        /// (0 for a read).
        index: u64,
        /// The reply bytes, in the client's framing.
        reply: Vec<u8>,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PeerFrameError {
    /// The length is larger than [`MAX_FRAME`] or zero.
    #[error("frame length {0} out of range")]
    BadLength(usize),
    /// The type byte is unknown.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// The payload does not match its type.
    #[error("malformed {0} frame")]
    Malformed(&'static str),
}

impl PeerFrame {
    /// The frame's bytes, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            PeerFrame::Hello { rm_id, mac } => {
                body.push(1);
                body.extend_from_slice(&rm_id.to_be_bytes());
                body.extend_from_slice(mac);
            }
            PeerFrame::Challenge { nonce } => {
                body.push(5);
                body.extend_from_slice(nonce);
            }
            PeerFrame::Raft(bytes) => {
                body.push(2);
                body.extend_from_slice(bytes);
            }
            PeerFrame::Forward {
                req_id,
                framing,
                request,
            } => {
                body.push(3);
                body.extend_from_slice(&req_id.to_be_bytes());
                body.push(*framing);
                body.extend_from_slice(request);
            }
            PeerFrame::ForwardReply { req_id, index, reply } => {
                body.push(4);
                body.extend_from_slice(&req_id.to_be_bytes());
                body.extend_from_slice(&index.to_be_bytes());
                body.extend_from_slice(reply);
            }
        }
        let mut out = Vec::with_capacity(body.len() + 4);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend(body);
        out
    }
}

fn hello(input: &[u8]) -> IResult<&[u8], PeerFrame> {
    let (mac, rm_id) = be_u64(input)?;
    Ok((
        &[],
        PeerFrame::Hello {
            rm_id,
            mac: mac.to_vec(),
        },
    ))
}

fn forward(input: &[u8]) -> IResult<&[u8], PeerFrame> {
    let (input, req_id) = be_u64(input)?;
    let (request, framing) = be_u8(input)?;
    Ok((
        &[],
        PeerFrame::Forward {
            req_id,
            framing,
            request: request.to_vec(),
        },
    ))
}

fn forward_reply(input: &[u8]) -> IResult<&[u8], PeerFrame> {
    let (input, req_id) = be_u64(input)?;
    let (reply, index) = be_u64(input)?;
    Ok((
        &[],
        PeerFrame::ForwardReply {
            req_id,
            index,
            reply: reply.to_vec(),
        },
    ))
}

/// Parses one frame off the front of `buf`: `Ok(None)` until a whole frame
/// is there; otherwise the frame and the bytes it used.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(PeerFrame, usize)>, PeerFrameError> {
    let Ok((rest, len)) = be_u32::<_, nom::error::Error<&[u8]>>(buf) else {
        return Ok(None);
    };
    let len = len as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(PeerFrameError::BadLength(len));
    }
    let Ok((_, body)) = take::<_, _, nom::error::Error<&[u8]>>(len)(rest) else {
        return Ok(None);
    };
    let (kind, payload) = (body[0], &body[1..]);
    let parsed = match kind {
        1 => hello(payload).map_err(|_| PeerFrameError::Malformed("hello"))?,
        2 => (&payload[payload.len()..], PeerFrame::Raft(payload.to_vec())),
        3 => forward(payload).map_err(|_| PeerFrameError::Malformed("forward"))?,
        4 => forward_reply(payload).map_err(|_| PeerFrameError::Malformed("forward reply"))?,
        5 => (
            &payload[payload.len()..],
            PeerFrame::Challenge {
                nonce: payload.to_vec(),
            },
        ),
        other => return Err(PeerFrameError::UnknownType(other)),
    };
    if !parsed.0.is_empty() {
        return Err(PeerFrameError::Malformed("hello"));
    }
    Ok(Some((parsed.1, 4 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_whole_frames() {
        let frames = [
            PeerFrame::Hello {
                rm_id: 7,
                mac: vec![9; 32],
            },
            PeerFrame::Challenge { nonce: vec![1; 32] },
            PeerFrame::Raft(vec![1, 2, 3]),
            PeerFrame::Forward {
                req_id: 9,
                framing: 1,
                request: b"read_user x\n".to_vec(),
            },
            PeerFrame::ForwardReply {
                req_id: 9,
                index: 42,
                reply: b"OK\n".to_vec(),
            },
        ];
        for f in frames {
            let bytes = f.encode();
            for cut in 0..bytes.len() {
                assert_eq!(parse_frame(&bytes[..cut]), Ok(None), "cut {cut}");
            }
            assert_eq!(parse_frame(&bytes), Ok(Some((f, bytes.len()))));
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(parse_frame(&[0, 0, 0, 0]), Err(PeerFrameError::BadLength(0)));
        assert!(parse_frame(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(parse_frame(&[0, 0, 0, 1, 9]), Err(PeerFrameError::UnknownType(9)));
        assert!(parse_frame(&[0, 0, 0, 3, 1, 0, 0]).is_err(), "short hello");
    }
}
