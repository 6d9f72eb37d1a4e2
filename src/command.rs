//! A request, whichever framing it came in: the typed value both parsers
//! produce and the worker pool executes.

use std::net::SocketAddr;

use crate::storage::{Answer, Op, Query, Store, StoreError};

/// A cluster administration command (text framing only): answered by the
/// leader, which a follower forwards it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `add_rm ID IP:PORT`: add the RM serving clients at that address
    /// (its link at port + 1000), as a learner, promoted once caught up.
    AddRm {
        /// Its id.
        id: u64,
        /// Its client address.
        client: SocketAddr,
    },
    /// `remove_rm ID`: take an RM out of the cluster.
    RemoveRm(u64),
    /// `snapshot`: cut a snapshot of this RM's data now (not forwarded).
    Snapshot,
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A read.
    Query(Query),
    /// A change.
    Op(Op),
}

impl Admin {
    /// The command name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Admin::AddRm { .. } => "add_rm",
            Admin::RemoveRm(_) => "remove_rm",
            Admin::Snapshot => "snapshot",
        }
    }
}

impl Request {
    /// The command name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Query(q) => q.name(),
            Request::Op(op) => op.name(),
        }
    }

    /// Runs the request against the store.
    pub fn execute(&self, store: &Store) -> Result<Answer, StoreError> {
        match self {
            Request::Query(q) => store.query(q),
            Request::Op(op) => store.apply(op),
        }
    }
}
