//! Test support for clusters: `n` real RM processes on loopback ports
//! chosen for this test process.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;

pub static NEXT_CLUSTER: AtomicU16 = AtomicU16::new(0);

/// Cluster tests run one at a time: three RMs each on a two-core machine
/// are enough load; two clusters at once would measure the machine.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cluster of `n` RMs on loopback ports chosen for this test process.
pub struct Cluster {
    pub base: u16,
    pub rms: Vec<Option<Server>>,
    pub dirs: Vec<PathBuf>,
    pub peers: String,
    pub extra: Vec<String>,
    pub dir: TempDir,
}

impl Cluster {
    pub fn start(n: usize, name: &str) -> Cluster {
        Cluster::start_with(n, name, &[])
    }

    /// A cluster whose RMs all start from a copy of the data directory
    /// `seed` (an old server's directory, say).
    pub fn start_seeded(n: usize, name: &str, extra: &[&str], seed: &Path) -> Cluster {
        let mut cluster = Cluster::prepare(n, name, extra);
        for k in 1..=n {
            copy_tree(seed, &cluster.dirs[k - 1]);
            cluster.restart(k);
        }
        cluster
    }

    pub fn start_with(n: usize, name: &str, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::prepare(n, name, extra);
        for k in 1..=n {
            cluster.restart(k);
        }
        cluster
    }

    /// The ports and directories of a cluster, nothing started.
    pub fn prepare(n: usize, name: &str, extra: &[&str]) -> Cluster {
        let dir = TempDir::new(name);
        let slot = NEXT_CLUSTER.fetch_add(1, Ordering::SeqCst);
        // Below the ephemeral range (32768 and up), so no outgoing socket holds them.
        let base = 20000 + (std::process::id() % 500) as u16 * 20 + slot * 5;
        let peers = (1..=n)
            .map(|k| format!("{k}=127.0.0.1:{}", base + k as u16))
            .collect::<Vec<_>>()
            .join(",");
        let dirs: Vec<PathBuf> = (1..=n).map(|k| dir.path().join(format!("rm_{k}"))).collect();
        let extra: Vec<String> = extra
            .iter()
            .map(|s| s.replace("{primary}", &format!("127.0.0.1:{}", base + 4)))
            .collect();
        Cluster {
            base,
            rms: (0..n).map(|_| None).collect(),
            dirs,
            peers,
            extra,
            dir,
        }
    }

    pub fn restart(&mut self, k: usize) {
        let args: Vec<String> = vec![
            "--id".into(),
            k.to_string(),
            "--peers".into(),
            self.peers.clone(),
            "--data-dir".into(),
            self.dirs[k - 1].display().to_string(),
            "--leader-wait".into(),
            "2".into(),
            "--enable-test-partition".into(),
        ];
        let args: Vec<String> = args.into_iter().chain(self.extra.iter().cloned()).collect();
        self.rms[k - 1] = Some(Server::spawn(&args));
    }

    /// The primary address given with `{primary}` in the extra arguments.
    pub fn primary(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.base + 4))
    }

    pub fn rm(&self, k: usize) -> &Server {
        self.rms[k - 1].as_ref().expect("RM running")
    }

    /// The RM that most recently became leader, among those running.
    pub fn leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let best = self
                .rms
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().and_then(|s| s.leader_term()).map(|t| (t, i + 1)))
                .max();
            if let Some((_, k)) = best {
                return Some(k);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn kill(&mut self, k: usize) {
        if let Some(mut s) = self.rms[k - 1].take() {
            s.kill();
        }
    }
}

/// Sends one text command on a new connection; returns the lines.
pub fn text(server: &Server, line: &str) -> Vec<String> {
    let mut t = TextSession::open(server);
    let reply = t.send(line);
    t.close();
    reply
}

pub fn text_at(addr: std::net::SocketAddr, line: &str) -> Option<Vec<String>> {
    use std::io::{BufRead, BufReader, Write};
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut w = s.try_clone().ok()?;
    w.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut lines = Vec::new();
    let mut r = BufReader::new(s);
    for _ in 0..100_000 {
        let mut buf = String::new();
        if r.read_line(&mut buf).ok()? == 0 {
            return None;
        }
        let l = buf.trim_end().to_string();
        let done = l == "OK" || l.starts_with("ERR");
        lines.push(l);
        if done {
            return Some(lines);
        }
    }
    None
}

/// Waits (bounded) until every running RM's legacy files are identical.
pub fn converged(dirs: &[&Path], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let trees: Vec<_> = dirs.iter().map(|d| tree(d)).collect();
        if trees.windows(2).all(|w| w[0] == w[1]) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub fn check_clean(dir: &Path) {
    let (clean, out) = check_data(dir);
    assert!(clean, "check {}: {out}", dir.display());
}
