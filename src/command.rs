//! A request, whichever framing it came in: the typed value both parsers
//! produce and the worker pool executes.

use crate::storage::{Answer, Op, Query, Store, StoreError};

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A read.
    Query(Query),
    /// A change.
    Op(Op),
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
