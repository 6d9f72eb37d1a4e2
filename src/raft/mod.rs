//! Consensus among RMs, built on raft-rs (TiKV's raft).
//!
//! - [`node`]: the raft node the event loop steps, with its persister and
//!   applier threads;
//! - [`wal`]: the raft log on disk;
//! - [`log_storage`]: what raft-rs reads the log from;
//! - [`snapshot`]: snapshot files, cut and installed;
//! - [`membership`]: the address book of every RM;
//! - [`logger`]: raft-rs's `slog` lines into the `log` crate.

pub mod applier;
pub mod log_storage;
pub mod logger;
pub mod membership;
pub mod node;
pub mod persister;
pub mod snapshot;
pub mod wal;
