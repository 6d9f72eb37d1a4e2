//! What the server counts, for `stats` and for Prometheus.
//!
//! Requests are counted by command and outcome when their reply is handed
//! to the client, with the time from the request's arrival, into fixed
//! latency buckets (a histogram per command, so percentiles can be read
//! off and Prometheus can aggregate). The raft log's syncs are timed by
//! the persister into a shared histogram of atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (the last bucket,
/// `+Inf`, is implied).
pub const BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000,
];

/// A latency histogram.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Counts per bucket of [`BUCKETS_US`], then `+Inf`.
    pub counts: [u64; BUCKETS_US.len() + 1],
    /// Sum of all observations, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(BUCKETS_US.len());
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Observations in all.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0..1), in
    /// microseconds (`None`: no observation, or beyond the last bound).
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return BUCKETS_US.get(i).copied();
            }
        }
        None
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }
}

/// A histogram several threads write.
#[derive(Debug, Default)]
pub struct SharedHistogram {
    counts: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl SharedHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(BUCKETS_US.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// A copy of the counts now.
    pub fn read(&self) -> Histogram {
        let mut h = Histogram::default();
        for (a, b) in h.counts.iter_mut().zip(self.counts.iter()) {
            *a = b.load(Ordering::Relaxed);
        }
        h.sum_us = self.sum_us.load(Ordering::Relaxed);
        h
    }
}

/// How a request ended, from its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// An error reply (`ERR ...`, or the legacy empty reply).
    Error,
}

impl Outcome {
    /// As a label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

/// Per-command counts and latencies.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    /// Replies by command and outcome.
    pub outcomes: BTreeMap<(&'static str, Outcome), u64>,
    /// Latency by command.
    pub latency: BTreeMap<&'static str, Histogram>,
}

impl RequestMetrics {
    /// Records one reply.
    pub fn record(&mut self, command: &'static str, outcome: Outcome, took: Duration) {
        *self.outcomes.entry((command, outcome)).or_default() += 1;
        self.latency.entry(command).or_default().observe(took);
    }

    /// Every command's latencies together.
    pub fn all_latency(&self) -> Histogram {
        let mut all = Histogram::default();
        for h in self.latency.values() {
            all.merge(h);
        }
        all
    }
}

/// Formats a bucket bound for a Prometheus `le` label, in seconds.
pub fn le_seconds(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_us(0.5), None);
        for _ in 0..98 {
            h.observe(Duration::from_micros(80));
        }
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        assert_eq!(h.total(), 100);
        assert_eq!(h.quantile_us(0.5), Some(100));
        assert_eq!(h.quantile_us(0.99), Some(5_000));
        assert_eq!(h.quantile_us(1.0), None, "beyond the last bound");
        let shared = SharedHistogram::default();
        shared.observe(Duration::from_micros(300));
        assert_eq!(shared.read().counts[2], 1);
    }
}
