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
    /// A receiver asks for the next chunk of a snapshot file.
    SnapshotRequest {
        /// The snapshot's index.
        index: u64,
        /// The snapshot's term.
        term: u64,
        /// Where the chunk starts.
        offset: u64,
    },
    /// A chunk of a snapshot file (no bytes and a total of 0: the sender
    /// no longer has it).
    SnapshotChunk {
        /// The snapshot's index.
        index: u64,
        /// The snapshot's term.
        term: u64,
        /// Where the chunk starts.
        offset: u64,
        /// The whole file's length.
        total: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The receiver is done with a snapshot: fetched and checked, or not.
    SnapshotDone {
        /// The snapshot's index.
        index: u64,
        /// The snapshot's term.
        term: u64,
        /// Whether it arrived whole and its checksum matched.
        ok: bool,
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
            PeerFrame::SnapshotRequest { index, term, offset } => {
                body.push(6);
                for n in [index, term, offset] {
                    body.extend_from_slice(&n.to_be_bytes());
                }
            }
            PeerFrame::SnapshotChunk {
                index,
                term,
                offset,
                total,
                bytes,
            } => {
                body.push(7);
                for n in [index, term, offset, total] {
                    body.extend_from_slice(&n.to_be_bytes());
                }
                body.extend_from_slice(bytes);
            }
            PeerFrame::SnapshotDone { index, term, ok } => {
                body.push(8);
                body.extend_from_slice(&index.to_be_bytes());
                body.extend_from_slice(&term.to_be_bytes());
                body.push(u8::from(*ok));
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

fn snapshot_request(input: &[u8]) -> IResult<&[u8], PeerFrame> {
    let (input, index) = be_u64(input)?;
    let (input, term) = be_u64(input)?;
    let (input, offset) = be_u64(input)?;
    Ok((input, PeerFrame::SnapshotRequest { index, term, offset }))
}

fn snapshot_chunk(input: &[u8]) -> IResult<&[u8], PeerFrame> {
    let (input, index) = be_u64(input)?;
    let (input, term) = be_u64(input)?;
    let (input, offset) = be_u64(input)?;
    let (bytes, total) = be_u64(input)?;
    Ok((
        &[],
        PeerFrame::SnapshotChunk {
            index,
            term,
            offset,
            total,
            bytes: bytes.to_vec(),
        },
    ))
}

fn snapshot_done(input: &[u8]) -> IResult<&[u8], PeerFrame> {
    let (input, index) = be_u64(input)?;
    let (input, term) = be_u64(input)?;
    let (input, ok) = be_u8(input)?;
    Ok((
        input,
        PeerFrame::SnapshotDone {
            index,
            term,
            ok: ok == 1,
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
        6 => snapshot_request(payload).map_err(|_| PeerFrameError::Malformed("snapshot request"))?,
        7 => snapshot_chunk(payload).map_err(|_| PeerFrameError::Malformed("snapshot chunk"))?,
        8 => snapshot_done(payload).map_err(|_| PeerFrameError::Malformed("snapshot done"))?,
        other => return Err(PeerFrameError::UnknownType(other)),
    };
    if !parsed.0.is_empty() {
        return Err(PeerFrameError::Malformed("frame with trailing bytes"));
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
            PeerFrame::SnapshotRequest {
                index: 7,
                term: 2,
                offset: 1 << 20,
            },
            PeerFrame::SnapshotChunk {
                index: 7,
                term: 2,
                offset: 0,
                total: 3,
                bytes: vec![1, 2, 3],
            },
            PeerFrame::SnapshotDone {
                index: 7,
                term: 2,
                ok: true,
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
