//! Consensus among RMs, built on raft-rs (TiKV's raft).
//!
//! - [`node`]: the raft node the event loop steps, with its persister and
//!   applier threads;
//! - [`wal`]: the raft log on disk;
//! - [`logger`]: raft-rs's `slog` lines into the `log` crate.

pub mod logger;
pub mod node;
pub mod wal;
