#![warn(missing_docs)]
//! wooter: a drop-in backend for the Wooter PHP frontend.
//!
//! The crate is laid out by concern:
//! - [`storage`]: the legacy data directory, its index, locks and ops;
//! - [`protocol`]: the legacy and text framings;
//! - [`command`]: the typed request both framings parse into;
//! - [`raft`]: consensus among RMs: the raft node, its log, its helpers;
//! - [`server`]: the event loop, connections, RM links and worker pool;
//! - [`bench`]: the load generator behind `wooter bench`;
//! - [`cli`]: the `wooter` command line;
//! - [`wake_queue`]: how helper threads hand results to the event loop.

pub mod bench;
pub mod cli;
pub mod command;
pub mod protocol;
pub mod raft;
pub mod server;
pub mod storage;
pub mod wake_queue;
