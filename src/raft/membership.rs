//! Who is in the cluster and where each RM is reached: part of the
//! replicated state.
//!
//! raft-rs tracks membership as a `ConfState` (voter and learner ids); the
//! addresses ride along. Each conf change entry carries, in its context,
//! the address of the RM it adds, and every snapshot carries the whole
//! address book, so an RM that joins or restarts learns every other RM from
//! the log rather than from a fixed port plan.
//!
//! The encoding is text, one RM per line: `ID CLIENT_ADDR LINK_ADDR`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use raft::eraftpb::ConfState;
use thiserror::Error;

/// Where an RM is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmAddrs {
    /// Its client address (both client framings).
    pub client: SocketAddr,
    /// Its RM-link address.
    pub peer: SocketAddr,
}

/// An RM link port is its client port plus this (the `--peers`, `--rms`
/// and `add_rm` convention).
pub const PEER_PORT_OFFSET: u16 = 1000;

impl RmAddrs {
    /// The addresses of an RM serving clients on `client`, its link on
    /// the client port + [`PEER_PORT_OFFSET`].
    pub fn from_client(client: SocketAddr) -> Result<RmAddrs, String> {
        let port = client
            .port()
            .checked_add(PEER_PORT_OFFSET)
            .ok_or_else(|| format!("{client}: the RM link port (port + {PEER_PORT_OFFSET}) is out of range"))?;
        Ok(RmAddrs {
            client,
            peer: SocketAddr::new(client.ip(), port),
        })
    }
}

/// The address book: every RM (voter or learner) by id.
pub type AddressBook = BTreeMap<u64, RmAddrs>;

/// The bytes are not an address book.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("bad membership record: {0}")]
pub struct MembershipError(pub String);

/// Encodes an address book.
pub fn encode(book: &AddressBook) -> Vec<u8> {
    let mut out = String::new();
    for (id, a) in book {
        out.push_str(&format!("{id} {} {}\n", a.client, a.peer));
    }
    out.into_bytes()
}

/// Decodes what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<AddressBook, MembershipError> {
    let text = std::str::from_utf8(bytes).map_err(|_| MembershipError("not UTF-8".into()))?;
    let mut book = AddressBook::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split(' ');
        let (Some(id), Some(client), Some(peer), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(MembershipError(format!("line '{line}' is not ID CLIENT LINK")));
        };
        let id: u64 = id
            .parse()
            .map_err(|_| MembershipError(format!("'{id}' is not an id")))?;
        let parse = |s: &str| {
            s.parse::<SocketAddr>()
                .map_err(|_| MembershipError(format!("'{s}' is not IP:PORT")))
        };
        book.insert(
            id,
            RmAddrs {
                client: parse(client)?,
                peer: parse(peer)?,
            },
        );
    }
    Ok(book)
}

/// Every member id a `ConfState` names (voters and learners).
pub fn members(cs: &ConfState) -> Vec<u64> {
    let mut ids: Vec<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether `id` votes under `cs`.
pub fn is_voter(cs: &ConfState, id: u64) -> bool {
    cs.voters.contains(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_books_round_trip_and_garbage_is_refused() {
        let mut book = AddressBook::new();
        book.insert(1, RmAddrs::from_client("127.0.0.1:13091".parse().unwrap()).unwrap());
        book.insert(12, RmAddrs::from_client("[::1]:2000".parse().unwrap()).unwrap());
        assert_eq!(decode(&encode(&book)), Ok(book));
        assert!(decode(b"1 nowhere 127.0.0.1:1\n").is_err());
        assert!(decode(b"x 127.0.0.1:1 127.0.0.1:2\n").is_err());
        assert!(decode(b"1 127.0.0.1:1\n").is_err());
        assert!(decode(&[0xff]).is_err());
        assert_eq!(decode(b""), Ok(AddressBook::new()));
    }
}
