//! What `wooter serve` is told: where to listen, where the data is, limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The default client address: loopback, the old server's port plan aside.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:13090";
/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./wooter-data";
/// RM `K` of a cluster on one machine listens for clients on this port + K
/// (the old server's `PORT_PRIM + k`).
pub const BASE_PORT: u16 = 13090;
/// An RM's link port is its client port plus this.
pub const PEER_PORT_OFFSET: u16 = crate::raft::membership::PEER_PORT_OFFSET;

/// Settings of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Client address (both framings).
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Worker threads doing file work.
    pub workers: usize,
    /// Open client connections at most; beyond, new ones are closed at once.
    pub max_connections: usize,
    /// A connection that has sent part of a request (or nothing yet) and
    /// then goes quiet this long is closed; so is one that stops reading
    /// its reply for this long.
    pub partial_timeout: Duration,
    /// A text connection with nothing pending is closed after this long.
    pub idle_timeout: Duration,
    /// Followers answer reads from their own data instead of asking the
    /// leader.
    pub stale_reads: bool,
    /// How long a request waits for a leader before it is refused.
    pub leader_wait: Duration,
    /// Obey the text command `test_partition` (for tests only).
    pub test_partition: bool,
    /// The address the leader serves clients on too (the old `PORT_PRIM`).
    pub primary_listen: Option<SocketAddr>,
    /// Where `/metrics` is served over HTTP, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

impl ServerConfig {
    /// The defaults, with `listen` and `data_dir` as given.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            listen,
            data_dir,
            workers: default_workers(),
            max_connections: 10_000,
            partial_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            stale_reads: false,
            leader_wait: Duration::from_secs(5),
            test_partition: false,
            primary_listen: None,
            metrics_listen: None,
        }
    }
}

/// Twice the cores, at least 2 and at most 16: the work is short file reads
/// and writes that mostly hit the page cache, so a few more threads than
/// cores hide the occasional disk wait.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).clamp(2, 16)
}
