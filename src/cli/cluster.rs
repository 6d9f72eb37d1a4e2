//! `wooter cluster --rms N`: N local RMs as child processes, in one command.
//!
//! For trying a cluster out and for demonstrations: each child is a plain
//! `wooter serve --id K --rms N`; their log lines are passed through with
//! an `[rm K]` prefix, and whenever one becomes leader the command says
//! which RM is now the primary. Ctrl-C (or the end of this process) stops
//! them all.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;

use crate::server::config::{BASE_PORT, PEER_PORT_OFFSET};

/// Options of `wooter cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// How many RMs.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rms: u64,
    /// Passed to every RM: followers answer reads from their own data.
    #[arg(long)]
    pub stale_reads: bool,
    /// The primary address, served by whichever RM leads.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:13090")]
    pub primary_listen: std::net::SocketAddr,
    /// Passed to every RM: the cluster secret file for RM links.
    #[arg(long, value_name = "FILE")]
    pub cluster_secret_file: Option<std::path::PathBuf>,
}

fn spawn(k: u64, args: &ClusterArgs) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--id")
        .arg(k.to_string())
        .arg("--rms")
        .arg(args.rms.to_string());
    cmd.arg("--primary-listen").arg(args.primary_listen.to_string());
    if args.stale_reads {
        cmd.arg("--stale-reads");
    }
    if let Some(f) = &args.cluster_secret_file {
        cmd.arg("--cluster-secret-file").arg(f);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child's
        // own process attributes; it runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // Children die with this process, whatever ends it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// Runs `wooter cluster`; returns when every RM has exited.
pub fn run(args: &ClusterArgs) -> ExitCode {
    let (tx, rx) = mpsc::channel::<(u64, String)>();
    let mut children = Vec::new();
    for k in 1..=args.rms {
        let port = BASE_PORT + k as u16;
        println!(
            "RM {k}: clients 127.0.0.1:{port}, RM link 127.0.0.1:{}, data ./wooter-data/rm_{k}",
            port + PEER_PORT_OFFSET
        );
        let mut child = match spawn(k, args) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wooter cluster: cannot start RM {k}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(stderr) = child.stderr.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.send((k, line)).is_err() {
                        return;
                    }
                }
                let _ = tx.send((k, "wooter cluster: this RM has exited".to_string()));
            });
        }
        children.push(child);
    }
    drop(tx);
    println!(
        "primary address {} (served by whichever RM leads); waiting for a primary to be elected; Ctrl-C stops every RM",
        args.primary_listen
    );
    for (k, line) in rx {
        eprintln!("[rm {k}] {line}");
        if line.contains("became leader") {
            println!("primary: RM {k} at 127.0.0.1:{}", BASE_PORT + k as u16);
        }
    }
    let mut ok = true;
    for mut c in children {
        ok &= c.wait().map(|s| s.success()).unwrap_or(false);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
