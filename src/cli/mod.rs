//! The `wooter` command line: `serve`, `bench` and `check`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::server::config::{default_workers, ServerConfig, DEFAULT_DATA_DIR, DEFAULT_LISTEN};

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
    Serve(ServeArgs),
    /// Drive a server with the frontend's traffic and measure it.
    Bench(crate::bench::BenchArgs),
    /// Check a data directory's consistency; exits 1 if anything is wrong,
    /// 2 if it cannot be read.
    Check {
        /// The data directory.
        data_dir: PathBuf,
    },
}

/// Options of `wooter serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address for clients (both framings).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Data directory (created on first start; an old server's directory
    /// is served as it is).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
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

impl ServeArgs {
    /// The server configuration these options describe.
    pub fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::new(self.listen, self.data_dir.clone());
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
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match crate::server::serve(args.config()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Check { data_dir } => check(&data_dir),
        Command::Bench(args) => match crate::bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wooter bench: {e}");
                ExitCode::FAILURE
            }
        },
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
