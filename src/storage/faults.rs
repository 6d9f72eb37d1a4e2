//! The storage seam for tests: injected disk failures.
//!
//! `WOOTER_INJECT_FAULT=POINT:N` (read once, at the first check) makes the
//! N-th and every later pass through `POINT` fail with `ENOSPC`, as a full
//! disk would. Points: `data-write` (each write of an op's write set into
//! a data file, so an op can fail halfway), `raft-log` (each append to
//! the raft log) and `snapshot-swap` (each folder swapped in by a snapshot
//! install, so an install can stop halfway). Without the variable nothing ever fails here. It exists
//! so the tests can prove that a failed apply leaves no half op after a
//! restart and that a failed log write stops the RM.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static FAULT: OnceLock<Option<(String, u64)>> = OnceLock::new();
static PASSES: AtomicU64 = AtomicU64::new(0);

fn configured() -> &'static Option<(String, u64)> {
    FAULT.get_or_init(|| {
        let v = std::env::var("WOOTER_INJECT_FAULT").ok()?;
        let (point, n) = v.split_once(':')?;
        let n = n.parse().ok()?;
        log::warn!("test fault injection armed: {point} fails from pass {n} on");
        Some((point.to_string(), n))
    })
}

/// Passes through `point`; fails if a fault is armed there and due.
pub fn check(point: &str) -> io::Result<()> {
    match configured() {
        Some((p, n)) if p == point => {
            let pass = PASSES.fetch_add(1, Ordering::SeqCst) + 1;
            if pass >= *n {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
