//! Test support: a real `wooter` process on a loopback port, real sockets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod cluster;

/// The wooter binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_wooter");

/// The repository root (tests read `../shared` relative to it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The golden fixtures of the old server.
pub fn fixtures() -> PathBuf {
    repo_root().join("../shared/fixtures/legacy/basic")
}

/// A fresh empty directory under the target dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let base = std::env::temp_dir().join(format!("wooter-test-{}-{name}-{}", std::process::id(), nanos()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("create temp dir");
        TempDir(base)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `wooter serve` on a free loopback port with `data_dir` and
    /// extra arguments; waits (at most 20 s) for its "listening" line.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into(), "--data-dir".into()];
        args.push(data_dir.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::spawn(&args)
    }

    /// Starts `wooter serve` with exactly these arguments.
    pub fn spawn(args: &[String]) -> Server {
        Server::spawn_env(args, &[])
    }

    /// Starts `wooter serve` with these arguments and extra environment.
    pub fn spawn_env(args: &[String], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("WOOTER_TEST_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wooter");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    // Logged before the address is announced, so a test that
                    // has the address also has the line.
                    let mut l = log2.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                if let Some(pos) = line.find("listening on ") {
                    let addr = line[pos + 13..].split_whitespace().next().unwrap_or("").to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(e) => {
                let _ = child.kill();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "server {args:?} did not report its address within 20 s ({e}); log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Server {
            child,
            addr: addr.parse().expect("address in log line"),
            log,
        }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The highest term in which this RM's log says it became leader.
    pub fn leader_term(&self) -> Option<u64> {
        self.log()
            .lines()
            .filter_map(|l| l.split("became leader at term ").nth(1))
            .filter_map(|t| t.trim().parse().ok())
            .max()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (at most `timeout`) for a log line containing `pattern`: the
    /// log is read on another thread, a moment behind the server.
    pub fn wait_for_log(&self, pattern: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(pattern) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Sends one legacy request the way the frontend does and reads the
    /// reply until the server closes.
    pub fn legacy(&self, frame: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(frame).expect("write frame");
        read_to_close(&mut s)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until end of file (bounded by the socket's read timeout).
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read reply to end of file");
    out
}

/// A legacy frame: command padded to 40, payload, padded to 560.
pub fn frame(command: &str, payload: &[u8]) -> Vec<u8> {
    let mut f = command.as_bytes().to_vec();
    f.resize(40, b' ');
    f.extend_from_slice(payload);
    f.resize(560, b' ');
    f
}

/// A user record as the frontend builds it: fields left-aligned.
pub fn user_record(username: &str, password: &str, id: u32, name: &str, age: &str, email: &str, status: u8) -> Vec<u8> {
    let mut r = Vec::new();
    for (v, w) in [
        (username.as_bytes(), 25),
        (password.as_bytes(), 33),
        (id.to_string().as_bytes(), 11),
        (name.as_bytes(), 52),
        (age.as_bytes(), 4),
        (email.as_bytes(), 101),
        (b"0".as_slice(), 11),
        (b"0".as_slice(), 11),
    ] {
        let start = r.len();
        r.extend_from_slice(v);
        r.resize(start + w, b' ');
    }
    r.push(status);
    let start = r.len();
    r.extend_from_slice(b"0");
    r.resize(start + 10, b' ');
    r
}

/// A simple record for `username` (other fields made up).
pub fn simple_record(username: &str) -> Vec<u8> {
    user_record(username, "password123", 0, "Test User", "30", "t@example.org", b'n')
}

/// A text-protocol session on one connection.
pub struct TextSession {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl TextSession {
    pub fn open(server: &Server) -> TextSession {
        let s = server.connect();
        TextSession {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    /// Sends one line; returns the reply lines, the status line last.
    pub fn send(&mut self, line: &str) -> Vec<String> {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        self.read_reply()
    }

    pub fn read_reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let mut buf = Vec::new();
            let n = self.reader.read_until(b'\n', &mut buf).expect("read reply line");
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf).trim_end_matches('\n').to_string();
            let done = line == "OK" || line.starts_with("ERR ");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    }

    pub fn close(self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

/// The five folders of the legacy data layout (an RM also keeps `raft/`).
pub const LEGACY_FOLDERS: [&str; 5] = ["fids", "flwes", "flwrs", "users", "woots"];

/// Every file of the legacy layout under `dir`, relative path to bytes.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut all = all_files(dir);
    all.retain(|name, _| LEGACY_FOLDERS.iter().any(|f| name.starts_with(&format!("{f}/"))));
    all
}

/// Every file under `dir`, relative path to bytes.
pub fn all_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Copies a directory tree (files made writable).
pub fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let dest = to.join(&rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, bytes).unwrap();
    }
}

/// Decodes a fixture string (one char per byte, Latin-1) back to bytes.
pub fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

/// The woot texts of `user`, oldest first, read over the legacy framing
/// (at most 10,000, the server's cap for one reply).
pub fn legacy_woot_texts(server: &Server, user: &str) -> Vec<String> {
    let list = server.legacy(&frame(
        "load_woots_seq",
        &[simple_record(user).as_slice(), b" 10000"].concat(),
    ));
    list.split(|&b| b == b'\n')
        .flat_map(|line| {
            line.chunks(124)
                .map(|w| String::from_utf8_lossy(&w[..w.len().min(100)]).trim().to_string())
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Runs `wooter check` on a data directory: whether it is clean, and its
/// report.
pub fn check_data(dir: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("check")
        .arg(dir)
        .output()
        .expect("run wooter check");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}
