//! The `wooter` command line: `serve`, `cluster`, `bench` and `check`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod cluster;
pub mod config_file;
pub mod dump;

use std::collections::BTreeMap;

use crate::raft::node::{ClusterConfig, RmAddrs};
use crate::server::config::{default_workers, ServerConfig, BASE_PORT, DEFAULT_DATA_DIR, DEFAULT_LISTEN};

/// A drop-in backend for the Wooter PHP frontend.
#[derive(Debug, Parser)]
#[command(name = "wooter", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the legacy and text protocols on one port.
    #[command(args_override_self = true)]
    Serve(Box<ServeArgs>),
    /// Start N local RMs as one cluster (child processes); Ctrl-C stops them.
    Cluster(cluster::ClusterArgs),
    /// Drive a server with the frontend's traffic and measure it.
    Bench(crate::bench::BenchArgs),
    /// Write every user, follow and woot as JSON lines (a backup): from a
    /// data directory, or from a snapshot file of a running RM
    /// (DATA_DIR/raft/snapshots/snap-*.wsnap) without stopping it.
    Export {
        /// A data directory, or a `.wsnap` snapshot file.
        source: PathBuf,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Build a new data directory from an export.
    Import {
        /// The export (JSON lines).
        dump: PathBuf,
        /// The new data directory (must not hold one yet).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print a running server's `stats` (exit 1 if it cannot be reached).
    Stats {
        /// The server's client address.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        target: SocketAddr,
    },
    /// Check a data directory's consistency; exits 1 if anything is wrong,
    /// 2 if it cannot be read.
    Check {
        /// The data directory.
        data_dir: PathBuf,
        /// Fix counters, follow mirrors and the fids file in place (stop the
        /// server on the directory first), then check again.
        #[arg(long)]
        repair: bool,
    },
}

/// Options of `wooter serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Read options from this TOML file first (keys are the long option
    /// names, `listen = "127.0.0.1:13090"`, `stale_reads = true`, `peers =
    /// ["1=...", "2=..."]`); options on the command line override it. See
    /// contrib/wooter.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address for clients (both framings) [default: 127.0.0.1:13090; in a
    /// cluster, this RM's address from --peers or --rms].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data directory (created on first start; an old server's directory
    /// is served as it is) [default: ./wooter-data; in a cluster
    /// ./wooter-data/rm_K].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// This RM's id in a cluster (1 and up).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub id: Option<u64>,
    /// A cluster of N RMs on this machine, the old port plan: RM K serves
    /// clients on 127.0.0.1:(13090+K) and links to RMs on (14090+K).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100), conflicts_with = "peers")]
    pub rms: Option<u64>,
    /// Every RM of the cluster as ID=IP:PORT (its client address; its RM
    /// link port is that port + 1000), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// A file listing every RM as ID=IP:PORT, one per line (like --peers;
    /// blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["peers", "rms"])]
    pub cluster: Option<PathBuf>,
    /// Join a running cluster: ask the member serving clients at this
    /// address to add this RM (`--id K`, reached at --listen, its link at
    /// that port + 1000). It starts empty and catches up from a snapshot.
    #[arg(long, value_name = "IP:PORT", conflicts_with_all = ["peers", "rms", "cluster"], requires = "id")]
    pub join: Option<SocketAddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Cut a snapshot (and shorten the raft log) after this many applied
    /// entries; 0: only when the `snapshot` command asks.
    #[arg(long, default_value_t = crate::raft::node::DEFAULT_SNAPSHOT_EVERY)]
    pub snapshot_every: u64,
    /// A file holding the cluster secret RM links authenticate with (one
    /// per line: the first signs, every one is accepted; see
    /// docs/security.md). Give every RM the same file.
    #[arg(long, value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// An address that whichever RM is leader (the primary) also serves
    /// clients on, bound on becoming leader and released on stepping down
    /// (the old PORT_PRIM). For RMs on one machine, e.g. 127.0.0.1:13090.
    #[arg(long, value_name = "IP:PORT")]
    pub primary_listen: Option<SocketAddr>,
    /// Let followers answer reads from their own data (may be a moment old)
    /// instead of asking the leader.
    #[arg(long)]
    pub stale_reads: bool,
    /// Seconds a request waits for a leader before it is refused.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub leader_wait: u64,
    /// For tests: obey the text command `test_partition ID,...`, which drops
    /// RM traffic with those RMs. Never set it in production.
    #[arg(long, hide = true)]
    pub enable_test_partition: bool,
    /// Worker threads for file work, 1 to 256 [default: twice the cores, 2 to 16].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Open connections at most; beyond, new ones are closed at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds before closing a connection that sent part of a request (or
    /// nothing yet) and then nothing more, or stopped reading its reply.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub partial_timeout: u64,
    /// Seconds before closing a text connection with nothing pending.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
}

fn rm_addrs(client: SocketAddr) -> Result<RmAddrs, String> {
    RmAddrs::from_client(client)
}

impl ServeArgs {
    /// The cluster these options describe: one RM (id 1) without `--id`.
    pub fn cluster(&self) -> Result<(ClusterConfig, SocketAddr, PathBuf), String> {
        let mut rms = BTreeMap::new();
        let mut peers = self.peers.clone();
        if let Some(file) = &self.cluster {
            let text = std::fs::read_to_string(file).map_err(|e| format!("--cluster {}: {e}", file.display()))?;
            peers.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        let id = match (self.id, self.rms, peers.is_empty()) {
            (Some(id), None, true) if self.join.is_some() => {
                let listen = self
                    .listen
                    .ok_or_else(|| "--join needs --listen: the client address this RM serves on".to_string())?;
                rms.insert(id, rm_addrs(listen)?);
                id
            }
            (None, None, true) => {
                let listen = self
                    .listen
                    .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address"));
                rms.insert(1, rm_addrs(listen)?);
                1
            }
            (Some(id), Some(n), _) => {
                for k in 1..=n {
                    let client = SocketAddr::from(([127, 0, 0, 1], BASE_PORT + k as u16));
                    rms.insert(k, rm_addrs(client)?);
                }
                id
            }
            (Some(id), None, false) => {
                for p in &peers {
                    let (k, addr) = p
                        .split_once('=')
                        .ok_or_else(|| format!("--peers: '{p}' is not ID=IP:PORT"))?;
                    let k: u64 = k.parse().map_err(|_| format!("--peers: '{k}' is not an RM id"))?;
                    let addr: SocketAddr = addr.parse().map_err(|_| format!("--peers: '{addr}' is not IP:PORT"))?;
                    rms.insert(k, rm_addrs(addr)?);
                }
                id
            }
            (None, _, _) => return Err("--rms, --peers and --cluster need --id".to_string()),
            // A cluster of one that others may join later (its RM link
            // listens at once).
            (Some(id), None, true) => {
                let listen = self
                    .listen
                    .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address"));
                rms.insert(id, rm_addrs(listen)?);
                id
            }
        };
        let me = rms
            .get(&id)
            .ok_or_else(|| format!("RM {id} is not in the cluster list"))?;
        let listen = match (self.listen, rms.len()) {
            (Some(l), 1) => l,
            _ => me.client,
        };
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None if self.id.is_some() => PathBuf::from(DEFAULT_DATA_DIR).join(format!("rm_{id}")),
            None => PathBuf::from(DEFAULT_DATA_DIR),
        };
        let raft_dir = data_dir.join("raft");
        let auth = match &self.cluster_secret_file {
            Some(f) => {
                let text =
                    std::fs::read_to_string(f).map_err(|e| format!("--cluster-secret-file {}: {e}", f.display()))?;
                let auth = crate::server::link_auth::LinkAuth::from_text(&text);
                if !auth.enabled() {
                    return Err(format!(
                        "--cluster-secret-file {}: the file holds no secret",
                        f.display()
                    ));
                }
                auth
            }
            None => Default::default(),
        };
        Ok((
            ClusterConfig {
                id,
                rms,
                raft_dir,
                auth,
                join: self.join,
                snapshot_every: self.snapshot_every,
                linked: self.id.is_some(),
            },
            listen,
            data_dir,
        ))
    }

    /// The server configuration these options describe.
    pub fn config(&self, listen: SocketAddr, data_dir: PathBuf) -> ServerConfig {
        let mut config = ServerConfig::new(listen, data_dir);
        config.stale_reads = self.stale_reads;
        config.test_partition = self.enable_test_partition;
        config.primary_listen = self.primary_listen;
        config.metrics_listen = self.metrics_listen;
        config.leader_wait = std::time::Duration::from_secs(self.leader_wait);
        config.workers = self.workers.map_or_else(default_workers, usize::from);
        config.max_connections = self.max_connections as usize;
        config.partial_timeout = std::time::Duration::from_secs(self.partial_timeout);
        config.idle_timeout = std::time::Duration::from_secs(self.idle_timeout);
        config
    }
}

/// Runs the command line; the process's exit code.
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match config_file::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("wooter serve: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Serve(args) => {
            let (cluster, listen, data_dir) = match args.cluster() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("wooter serve: {e}");
                    return ExitCode::from(2);
                }
            };
            match crate::server::serve(args.config(listen, data_dir), cluster) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { data_dir, repair } => {
            if repair {
                if !data_dir.join("users").is_dir() {
                    eprintln!(
                        "{} is not a data directory (it has no users/ folder)",
                        data_dir.display()
                    );
                    return ExitCode::from(2);
                }
                match crate::storage::check::repair(&data_dir) {
                    Ok(r) => {
                        for c in &r.changes {
                            println!("repaired: {c}");
                        }
                        println!("{} change(s) made", r.changes.len());
                    }
                    Err(e) => {
                        eprintln!("cannot repair {}: {e}", data_dir.display());
                        return ExitCode::from(2);
                    }
                }
            }
            check(&data_dir)
        }
        Command::Cluster(args) => cluster::run(&args),
        Command::Export { source, output } => match dump::export(&source, output.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wooter export: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Import { dump: file, data_dir } => match dump::import(&file, &data_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wooter import: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Stats { target } => match stats(target) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wooter stats: {target}: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => match crate::bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wooter bench: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Asks `target` for `stats` over the text framing; the reply's lines
/// without the final `OK`.
fn stats(target: SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    // A whole answer within 5 s and 64 KiB, or none: whatever listens
    // there may not be a wooter.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let stream = std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(5))?;
    (&stream).write_all(b"stats\n")?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no whole stats reply within 5 s (is it a wooter server?)",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match (&stream).read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break; // closed: whatever came is judged below
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.len() > 64 * 1024 {
            return Err(std::io::Error::other(
                "the reply is over 64 KiB: not a wooter stats reply",
            ));
        }
        if reply.ends_with(b"\nOK\n") || reply.starts_with(b"ERR") && reply.ends_with(b"\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    match text.strip_suffix("OK\n") {
        Some(body) => Ok(body.to_string()),
        None => Err(std::io::Error::other(format!(
            "not a stats reply: {}",
            text.lines().next().unwrap_or("")
        ))),
    }
}

fn check(data_dir: &std::path::Path) -> ExitCode {
    if !data_dir.join("users").is_dir() {
        eprintln!(
            "{} is not a data directory (it has no users/ folder)",
            data_dir.display()
        );
        return ExitCode::from(2);
    }
    match crate::storage::check::check(data_dir) {
        Ok(report) => {
            for p in &report.problems {
                println!("problem: {p}");
            }
            println!(
                "{}: {} users, {} follows, {} woots, {} problem(s)",
                data_dir.display(),
                report.users,
                report.follows,
                report.woots,
                report.problems.len()
            );
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("cannot check {}: {e}", data_dir.display());
            ExitCode::from(2)
        }
    }
}
