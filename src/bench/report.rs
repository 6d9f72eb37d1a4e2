//! Turning latencies and counts into the bench's table and JSON.

use std::time::Duration;

use serde_json::json;

/// The outcome of one timed run against one server.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Requests answered with the right shape.
    pub requests: u64,
    /// Requests that failed or had the wrong shape.
    pub errors: u64,
    /// How long the run lasted.
    pub elapsed: Duration,
    /// Latency of every request, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// A few error messages, to say what went wrong.
    pub error_samples: Vec<String>,
}

impl RunResult {
    /// Requests (successful) per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub fn percentile(&self, q: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let rank = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
        self.latencies_us[rank.min(self.latencies_us.len() - 1)]
    }

    /// The result as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.elapsed.as_secs_f64(),
            "rps": self.rps(),
            "latency_us": {
                "p50": self.percentile(0.5),
                "p90": self.percentile(0.9),
                "p99": self.percentile(0.99),
                "p99_9": self.percentile(0.999),
                "max": self.latencies_us.last().copied().unwrap_or(0),
            },
            "error_samples": self.error_samples,
        })
    }
}

fn ms(us: u32) -> String {
    format!("{:.2}", f64::from(us) / 1000.0)
}

/// The table header.
pub fn header() -> String {
    format!(
        "{:<8} {:>10} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "server", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    )
}

/// One table row.
pub fn row(label: &str, r: &RunResult) -> String {
    format!(
        "{:<8} {:>10} {:>8} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>8}",
        label,
        r.requests,
        r.errors,
        r.rps(),
        ms(r.percentile(0.5)),
        ms(r.percentile(0.9)),
        ms(r.percentile(0.99)),
        ms(r.percentile(0.999)),
        ms(r.latencies_us.last().copied().unwrap_or(0)),
    )
}

/// Parses a duration like `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (try 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn percentiles_pick_ranks() {
        let r = RunResult {
            latencies_us: (1..=100).collect(),
            ..Default::default()
        };
        assert_eq!(r.percentile(0.5), 51);
        assert_eq!(r.percentile(0.99), 99);
        assert_eq!(r.percentile(1.0), 100);
    }
}
