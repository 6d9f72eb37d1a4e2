//! The timed run: C clients making the frontend's requests for a duration.
//!
//! The `read` mix is what one home page costs: the user, their newest woots,
//! both follow lists, the users they follow by id, and a follow check. The
//! `mixed` mix replaces one request in ten by a write; `write` is writes
//! only. Every latency is recorded; every reply's shape is checked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::client::{legacy_call, BenchFraming, Call, Reply, TextConnection};
use super::report::RunResult;
use crate::storage::layout::ListKind;

/// Which requests the clients make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Home-page reads only.
    Read,
    /// Home-page reads with one request in ten a write.
    Mixed,
    /// Writes only.
    Write,
}

/// What one timed run does.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The server.
    pub target: SocketAddr,
    /// Concurrent clients.
    pub clients: usize,
    /// How long.
    pub duration: Duration,
    /// Which requests.
    pub mix: Mix,
    /// Which framing.
    pub framing: BenchFraming,
    /// Users `bench000000` .. this many exist.
    pub users: u32,
    /// Check reply shapes (off for the floor, whose replies are fixed).
    pub check: bool,
}

/// The bench's name for user `i`.
pub fn user_name(i: u32) -> String {
    format!("bench{i:06}")
}

/// One client's connection, whichever the framing.
enum Link {
    Legacy(SocketAddr),
    Text(Option<TextConnection>, SocketAddr),
}

impl Link {
    fn call(&mut self, call: &Call, check: bool) -> Result<Reply, String> {
        match self {
            Link::Legacy(addr) => {
                let reply = legacy_call(*addr, &call.legacy_frame()).map_err(|e| format!("{}: {e}", call.name()))?;
                if check {
                    call.check_legacy(&reply)
                } else {
                    Ok(Reply::Fine)
                }
            }
            Link::Text(conn, addr) => {
                if conn.is_none() {
                    *conn = Some(TextConnection::open(*addr).map_err(|e| format!("connect: {e}"))?);
                }
                let c = conn.as_mut().ok_or("no connection")?;
                match c.call(&call.text_line()) {
                    Ok(lines) if check => call.check_text(&lines),
                    Ok(_) => Ok(Reply::Fine),
                    Err(e) => {
                        *conn = None;
                        Err(format!("{}: {e}", call.name()))
                    }
                }
            }
        }
    }
}

struct ClientState {
    rng: SmallRng,
    users: u32,
    mix: Mix,
    /// The rest of the current home page.
    page: Vec<Call>,
    current: Option<u32>,
}

impl ClientState {
    fn write(&mut self) -> Call {
        let n = self.users.max(2);
        let me_i = self.current.unwrap_or_else(|| self.rng.gen_range(0..n));
        // Never the writer itself: a self-follow is refused by design.
        let other_i = (me_i + 1 + self.rng.gen_range(0..n - 1)) % n;
        let (me, other) = (user_name(me_i), user_name(other_i));
        match self.rng.gen_range(0..10) {
            0..=5 => Call::WriteWoot(me, format!("bench woot {}", self.rng.gen::<u32>())),
            6..=7 => Call::Follow(me, other),
            _ => Call::Unfollow(me, other),
        }
    }

    fn start_page(&mut self) {
        let me_i = self.rng.gen_range(0..self.users.max(1));
        let me = user_name(me_i);
        let other = self.rng.gen_range(0..self.users.max(1));
        self.page = vec![
            Call::AlreadyFollowing(me.clone(), other),
            Call::LoadFollowing(me.clone(), ListKind::Followers, 20),
            Call::LoadFollowing(me.clone(), ListKind::Followees, 20),
            Call::LoadWoots(me.clone(), 10),
            Call::ReadUser(me.clone()),
        ];
        self.current = Some(me_i);
    }

    fn next(&mut self) -> Call {
        if self.mix == Mix::Write || (self.mix == Mix::Mixed && self.rng.gen_range(0..10) == 0) {
            return self.write();
        }
        if self.page.is_empty() {
            self.start_page();
        }
        self.page.pop().unwrap_or(Call::ReadId(0))
    }

    /// After a followees list, the page shows those users: read them by id.
    fn saw(&mut self, call: &Call, reply: &Reply) {
        if let (Call::LoadFollowing(_, ListKind::Followees, _), Reply::Ids(ids)) = (call, reply) {
            // The page is a stack: these come next.
            self.page.extend(ids.iter().take(5).map(|&id| Call::ReadId(id)));
        }
    }
}

/// Runs the load; returns the merged result.
pub fn run(spec: &LoadSpec) -> RunResult {
    let deadline = Instant::now() + spec.duration;
    let start = Instant::now();
    let threads: Vec<_> = (0..spec.clients.max(1))
        .map(|c| {
            let spec = spec.clone();
            std::thread::spawn(move || {
                let mut state = ClientState {
                    rng: SmallRng::seed_from_u64(0x5eed + c as u64),
                    users: spec.users,
                    mix: spec.mix,
                    page: Vec::new(),
                    current: None,
                };
                let mut link = match spec.framing {
                    BenchFraming::Legacy => Link::Legacy(spec.target),
                    BenchFraming::Text => Link::Text(None, spec.target),
                };
                let mut result = RunResult::default();
                while Instant::now() < deadline {
                    let call = state.next();
                    let t0 = Instant::now();
                    let outcome = link.call(&call, spec.check);
                    let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    match outcome {
                        Ok(reply) => {
                            result.requests += 1;
                            result.latencies_us.push(us);
                            state.saw(&call, &reply);
                        }
                        Err(e) => {
                            result.errors += 1;
                            if result.error_samples.len() < 3 {
                                result.error_samples.push(e);
                            }
                            // A refused connection would otherwise spin.
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                result
            })
        })
        .collect();
    let mut merged = RunResult::default();
    for t in threads {
        if let Ok(r) = t.join() {
            merged.requests += r.requests;
            merged.errors += r.errors;
            merged.latencies_us.extend(r.latencies_us);
            for e in r.error_samples {
                if merged.error_samples.len() < 5 {
                    merged.error_samples.push(e);
                }
            }
        }
    }
    merged.elapsed = start.elapsed();
    merged.latencies_us.sort_unstable();
    merged
}
