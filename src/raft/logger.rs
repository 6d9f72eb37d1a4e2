//! raft-rs logs through `slog`; wooter logs through `log`. This drain
//! forwards one to the other, so `RUST_LOG` governs raft's lines too.

use slog::{Drain, Level, OwnedKVList, Record};

/// A `slog` drain that writes every record to the `log` crate.
pub struct LogDrain;

impl Drain for LogDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, _values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = match record.level() {
            Level::Critical | Level::Error => log::Level::Error,
            Level::Warning => log::Level::Warn,
            Level::Info => log::Level::Info,
            Level::Debug => log::Level::Debug,
            Level::Trace => log::Level::Trace,
        };
        log::log!(target: "wooter::raft", level, "{}", record.msg());
        Ok(())
    }
}

/// The logger to give raft-rs.
pub fn logger() -> slog::Logger {
    slog::Logger::root(LogDrain.fuse(), slog::o!())
}
