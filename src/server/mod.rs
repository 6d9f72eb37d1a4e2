//! The server: one event loop thread owning every socket, a pool of worker
//! threads doing the file work.
//!
//! - [`config`]: addresses, directories and limits;
//! - [`event_loop`]: the `mio` poll loop and its slab of sockets;
//! - [`connection`]: one client's buffers and framing;
//! - [`workers`]: the pool that runs requests against the store.

pub mod config;
pub mod connection;
pub mod event_loop;
pub mod workers;

use std::sync::Arc;

use thiserror::Error;

pub use config::ServerConfig;
use event_loop::EventLoop;

use crate::storage::{Store, StoreError};

/// Why the server could not start or stopped.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The data directory could not be opened.
    #[error("cannot open the data directory {dir}: {source}")]
    Store {
        /// The directory.
        dir: String,
        /// Why.
        source: StoreError,
    },
    /// A socket could not be bound or polled.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the data directory, binds the address, and serves until the
/// process ends.
pub fn serve(config: ServerConfig) -> Result<(), ServeError> {
    let opened = std::time::Instant::now();
    let store = Store::open(&config.data_dir).map_err(|source| ServeError::Store {
        dir: config.data_dir.display().to_string(),
        source,
    })?;
    let users = store.user_count();
    let indexed_ms = opened.elapsed().as_millis();
    // Reads the time zone once, here, so the loop's first text-mode woot
    // does not touch the disk.
    let _ = crate::protocol::text::local_timestamp();
    let workers = config.workers;
    let data_dir = config.data_dir.clone();
    let mut event_loop = EventLoop::new(config, Arc::new(store))?;
    log::info!(
        "wooter listening on {} (legacy and text framing), data directory {}, {users} users (indexed in {indexed_ms} ms), {workers} workers",
        event_loop.local_addr(),
        data_dir.display(),
    );
    if !event_loop.local_addr().ip().is_loopback() {
        log::warn!(
            "listening on a non-loopback address: the frontend sends passwords in plain text, keep this port private"
        );
    }
    event_loop.run()?;
    Ok(())
}
