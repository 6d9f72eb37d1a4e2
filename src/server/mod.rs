//! The server: one event loop thread owning every socket, a pool of worker
//! threads doing the file work.
//!
//! - [`config`]: addresses, directories and limits;
//! - [`event_loop`]: the `mio` poll loop and its slab of sockets;
//! - [`connection`]: one client's buffers and framing;
//! - [`workers`]: the pool that runs requests against the store;
//! - [`replication`]: how requests travel through raft, and the RM links
//!   ([`peer_link`], authenticated by [`link_auth`]);
//! - [`snapshot_transfer`]: snapshot files moved between RMs;
//! - [`join`]: a new RM asking to be added (`--join`).

pub mod config;
pub mod connection;
pub mod event_loop;
pub mod join;
pub mod link_auth;
pub mod metrics;
pub mod metrics_http;
pub mod peer_link;
pub mod replication;
pub mod snapshot_transfer;
pub mod workers;

use std::sync::Arc;

use thiserror::Error;

pub use config::ServerConfig;

use crate::raft::node::ClusterConfig;
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
    /// An address could not be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Raft could not start or go on (the RM stops: fail closed).
    #[error("{0}")]
    Raft(#[from] crate::raft::node::RaftError),
}

/// Raises the soft limit on open files to the hard limit: every connection
/// is a descriptor, and the data files take some more. Warns when even the
/// hard limit is below what `--max-connections` needs.
fn raise_open_file_limit(max_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    let needed = max_connections as u64 + 4200;
    if lim.rlim_cur < needed {
        log::warn!(
            "open files are limited to {}; --max-connections {max_connections} needs about {needed} (raise LimitNOFILE / ulimit -n)",
            lim.rlim_cur
        );
    }
}

/// Opens the data directory, binds the addresses, starts raft, and serves
/// until the process ends.
pub fn serve(config: ServerConfig, cluster: ClusterConfig) -> Result<(), ServeError> {
    let opened = std::time::Instant::now();
    let recovered = crate::raft::node::recover(&cluster, &config.data_dir)?;
    let (store, applied) =
        Store::open_logged(&config.data_dir, &cluster.raft_dir.join("apply.journal")).map_err(|source| {
            ServeError::Store {
                dir: config.data_dir.display().to_string(),
                source,
            }
        })?;
    let users = store.user_count();
    let indexed_ms = opened.elapsed().as_millis();
    // Reads the time zone once, here, so the loop's first text-mode woot
    // does not touch the disk.
    let _ = crate::protocol::text::local_timestamp();
    let workers = config.workers;
    let data_dir = config.data_dir.clone();
    raise_open_file_limit(config.max_connections);
    let rm = cluster.id;
    let secret = cluster.auth.enabled();
    let mut event_loop = EventLoop::new(config, cluster, Arc::new(store), applied, recovered)?;
    let size = event_loop.member_count();
    let member = match size {
        0 => format!("RM {rm}, not a member yet"),
        n => format!("RM {rm} of {n}"),
    };
    log::info!(
        "wooter listening on {} (legacy and text framing), data directory {}, {users} users (indexed in {indexed_ms} ms), {workers} workers, {member}, applied index {applied}",
        event_loop.local_addr(),
        data_dir.display(),
    );
    if !event_loop.local_addr().ip().is_loopback() {
        log::warn!(
            "listening on a non-loopback address: the frontend sends passwords in plain text, keep this port private"
        );
        if size > 1 && !secret {
            log::warn!("RM links are not authenticated: give every RM --cluster-secret-file (docs/security.md)");
        }
    }
    event_loop.run()?;
    Ok(())
}
