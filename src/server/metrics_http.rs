//! `--metrics-listen`: `GET /metrics` in the Prometheus text format, over
//! HTTP/1.1 on its own port, served by the event loop like any socket.
//!
//! Each connection reads one request head (at most [`MAX_HEAD`] bytes),
//! gets one response, and is closed: a scraper asks every few seconds, so
//! keep-alive buys nothing. Anything but `GET /metrics` gets a 404.

use std::fmt::Write as _;
use std::io::{self, ErrorKind, Read, Write};

use mio::net::TcpStream;

use super::event_loop::EventLoop;
use super::metrics::{le_seconds, Histogram, BUCKETS_US};

/// Largest request head read.
pub const MAX_HEAD: usize = 8 * 1024;

/// One scraper's connection.
pub struct HttpConn {
    /// The socket.
    pub stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    answered: bool,
    /// When it was accepted (a silent one is closed by the partial timeout).
    pub since: std::time::Instant,
}

impl HttpConn {
    /// A new connection.
    pub fn new(stream: TcpStream) -> HttpConn {
        HttpConn {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            answered: false,
            since: std::time::Instant::now(),
        }
    }

    /// Reads what is there; returns the request path once the head is
    /// whole (`Err` ends the connection).
    pub fn read_head(&mut self) -> io::Result<Option<String>> {
        let mut buf = [0u8; 2048];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed")),
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if self.input.len() > MAX_HEAD {
                return Err(io::Error::new(ErrorKind::InvalidData, "request head too long"));
            }
        }
        let Some(end) = self.input.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&self.input[..end]).into_owned();
        let mut words = head.lines().next().unwrap_or("").split(' ');
        Ok(match (words.next(), words.next()) {
            (Some("GET"), Some(path)) => Some(path.to_string()),
            _ => Some(String::new()),
        })
    }

    /// Queues the response.
    pub fn respond(&mut self, status: &str, body: &str) {
        self.output = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        self.answered = true;
    }

    /// Writes what it can; true once the response is all written.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "closed")),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(self.answered)
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, bound) in BUCKETS_US.iter().enumerate() {
        cumulative += h.counts[i];
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
            le_seconds(*bound)
        );
    }
    cumulative += h.counts[BUCKETS_US.len()];
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {cumulative}");
}

impl EventLoop {
    /// The metrics page.
    pub(super) fn metrics_page(&self) -> String {
        let mut out = String::new();
        let s = self.snapshot_stats();
        let _ = writeln!(out, "# HELP wooter_uptime_seconds Seconds since the server started.");
        let _ = writeln!(out, "# TYPE wooter_uptime_seconds gauge");
        let _ = writeln!(out, "wooter_uptime_seconds {}", s.uptime_s);
        let _ = writeln!(out, "# HELP wooter_connections Open client connections, by framing.");
        let _ = writeln!(out, "# TYPE wooter_connections gauge");
        for (framing, n) in [("legacy", s.legacy), ("text", s.text), ("undecided", s.undecided)] {
            let _ = writeln!(out, "wooter_connections{{framing=\"{framing}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP wooter_requests_total Requests answered, by command and outcome."
        );
        let _ = writeln!(out, "# TYPE wooter_requests_total counter");
        for ((command, outcome), n) in &self.metrics.outcomes {
            let _ = writeln!(
                out,
                "wooter_requests_total{{command=\"{command}\",outcome=\"{}\"}} {n}",
                outcome.as_str()
            );
        }
        let _ = writeln!(
            out,
            "# HELP wooter_request_duration_seconds Time from a request's arrival to its reply."
        );
        let _ = writeln!(out, "# TYPE wooter_request_duration_seconds histogram");
        for (command, h) in &self.metrics.latency {
            histogram(
                &mut out,
                "wooter_request_duration_seconds",
                &format!("command=\"{command}\""),
                h,
            );
        }
        let _ = writeln!(
            out,
            "# HELP wooter_raft_fsync_duration_seconds Time of each raft log sync."
        );
        let _ = writeln!(out, "# TYPE wooter_raft_fsync_duration_seconds histogram");
        histogram(
            &mut out,
            "wooter_raft_fsync_duration_seconds",
            "",
            &self.replica.fsync_histogram().read(),
        );
        for (name, help, v) in [
            ("wooter_users", "Registered users.", s.users),
            ("wooter_follows", "Follow relations.", s.follows),
            ("wooter_woots", "Woots stored.", s.woots),
            ("wooter_raft_term", "Current raft term.", self.replica.term()),
            (
                "wooter_raft_commit_index",
                "Highest committed log index.",
                self.replica.committed(),
            ),
            (
                "wooter_raft_applied_index",
                "Highest applied log index.",
                self.replica.applied(),
            ),
            (
                "wooter_raft_snapshot_index",
                "Index of the newest snapshot.",
                self.replica.snapshot_index(),
            ),
            (
                "wooter_raft_is_leader",
                "1 on the leader (the primary).",
                u64::from(self.replica.is_leader()),
            ),
            (
                "wooter_storage_failed",
                "1 once storage failed (the RM stopped taking part).",
                u64::from(self.failed.is_some()),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {v}");
        }
        if let Some(progress) = self.replica.progress() {
            let last = self.replica.last_index();
            let _ = writeln!(
                out,
                "# HELP wooter_raft_follower_lag Entries a member is behind the leader's log (on the leader)."
            );
            let _ = writeln!(out, "# TYPE wooter_raft_follower_lag gauge");
            for (id, matched) in progress {
                let _ = writeln!(
                    out,
                    "wooter_raft_follower_lag{{rm=\"{id}\"}} {}",
                    last.saturating_sub(matched)
                );
            }
        }
        out
    }
}
