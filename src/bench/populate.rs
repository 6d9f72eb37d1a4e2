//! `wooter bench --populate N`: fills a server with users, follows and
//! woots in a realistic spread.
//!
//! Most users follow a handful of others, a few follow dozens; who gets
//! followed is skewed (a few users have many followers). Most users have a
//! few woots; one in fifty has hundreds. Everything goes through the
//! legacy protocol, as the frontend would send it, from several clients at
//! once; the spread is seeded, so two runs of the same N send the same.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::client::{legacy_call, Call, Reply};
use super::load::user_name;

/// What populating did.
#[derive(Debug, Default)]
pub struct PopulateReport {
    /// Users registered now.
    pub created: u64,
    /// Users that were there already.
    pub existing: u64,
    /// Follow requests sent.
    pub follows: u64,
    /// Woots written.
    pub woots: u64,
    /// Requests that failed.
    pub errors: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// The follows of user `i`: a few for most, dozens for some; followees
/// drawn with a cubic skew towards low ids (the popular users).
fn follows_of(i: u32, n: u32) -> Vec<u32> {
    let mut rng = SmallRng::seed_from_u64(u64::from(i) * 31 + 7);
    let count = match rng.gen_range(0..100) {
        0..=69 => rng.gen_range(1..=5),
        70..=94 => rng.gen_range(6..=20),
        _ => rng.gen_range(21..=40),
    };
    (0..count)
        .map(|_| {
            let r: f64 = rng.gen();
            ((r * r * r) * f64::from(n)) as u32 % n.max(1)
        })
        .filter(|&j| j != i)
        .collect()
}

/// How many woots user `i` writes.
fn woots_of(i: u32) -> u32 {
    let mut rng = SmallRng::seed_from_u64(u64::from(i) * 17 + 3);
    if i.is_multiple_of(50) {
        rng.gen_range(100..=400)
    } else {
        rng.gen_range(0..=8)
    }
}

/// Registers users `0..n` and gives them follows and woots.
pub fn populate(target: SocketAddr, n: u32, clients: usize) -> PopulateReport {
    let start = Instant::now();
    let total: u64 = (0..n)
        .map(|i| 1 + follows_of(i, n).len() as u64 + u64::from(woots_of(i)))
        .sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} populate [{elapsed_precise}] {wide_bar} {pos}/{len} requests ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let counters: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
    let clients = clients.max(1) as u32;
    // Phase one registers everyone, so follows in phase two find both ends.
    for phase in 0..2 {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let (bar, counters) = (bar.clone(), counters.clone());
                std::thread::spawn(move || {
                    let send = |call: Call| {
                        let outcome = legacy_call(target, &call.legacy_frame())
                            .map_err(|e| e.to_string())
                            .and_then(|reply| call.check_legacy(&reply));
                        bar.inc(1);
                        outcome
                    };
                    for i in (c..n).step_by(clients as usize) {
                        let me = user_name(i);
                        let counted = if phase == 0 {
                            match send(Call::Create(me)) {
                                Ok(Reply::Refused) => vec![1],
                                Ok(_) => vec![0],
                                Err(_) => vec![4],
                            }
                        } else {
                            let mut counted = Vec::new();
                            for j in follows_of(i, n) {
                                counted.push(if send(Call::Follow(me.clone(), user_name(j))).is_ok() {
                                    2
                                } else {
                                    4
                                });
                            }
                            for k in 0..woots_of(i) {
                                let text = format!("woot {k} of {me}: bench text for a realistic length of a woot");
                                counted.push(if send(Call::WriteWoot(me.clone(), text)).is_ok() {
                                    3
                                } else {
                                    4
                                });
                            }
                            counted
                        };
                        for slot in counted {
                            counters[slot].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
    bar.finish_and_clear();
    let get = |i: usize| counters[i].load(Ordering::Relaxed);
    PopulateReport {
        created: get(0),
        existing: get(1),
        follows: get(2),
        woots: get(3),
        errors: get(4),
        elapsed: start.elapsed(),
    }
}
