//! `wooter bench`: a load generator that drives any server speaking the
//! legacy protocol the way the frontend does, checks every reply, and
//! measures against a floor server in the same process.
//!
//! - [`client`]: the calls, their framing, their reply shapes;
//! - [`populate`]: filling a server with a realistic spread of data;
//! - [`load`]: the timed run and its mixes;
//! - [`floor`]: the fastest possible server for the same traffic;
//! - [`report`]: percentiles, the table and the JSON.

pub mod client;
pub mod floor;
pub mod load;
pub mod populate;
pub mod report;

use std::net::SocketAddr;
use std::time::Duration;

use client::{legacy_call, BenchFraming, Call, Reply};
use load::{user_name, LoadSpec, Mix};

use crate::server::config::DEFAULT_LISTEN;

/// Options of `wooter bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The server to drive.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub target: SocketAddr,
    /// Register N users (bench000000...) with follows and woots, then stop.
    #[arg(long, value_name = "N")]
    pub populate: Option<u32>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long the timed run lasts (10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = report::parse_duration)]
    pub duration: Duration,
    /// Which requests.
    #[arg(long, value_enum, default_value = "read")]
    pub mix: Mix,
    /// Which framing.
    #[arg(long, value_enum, default_value = "legacy")]
    pub framing: BenchFraming,
    /// How many bench users exist [default: found by asking the server].
    #[arg(long)]
    pub users: Option<u32>,
    /// Also run the same load against a floor server first, and print the
    /// ratio target/floor.
    #[arg(long)]
    pub floor: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Whether user `i` exists on the target.
fn exists(target: SocketAddr, i: u32) -> Result<bool, String> {
    let call = Call::ReadUser(user_name(i));
    let reply = legacy_call(target, &call.legacy_frame()).map_err(|e| format!("cannot reach {target}: {e}"))?;
    Ok(matches!(call.check_legacy(&reply)?, Reply::User { .. }))
}

/// How many bench users the target has (they are registered densely).
fn discover_users(target: SocketAddr) -> Result<u32, String> {
    if !exists(target, 0)? {
        return Ok(0);
    }
    let mut high = 1u32;
    while high < 1 << 30 && exists(target, high)? {
        high *= 2;
    }
    let mut low = high / 2; // exists; `high` does not
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if exists(target, mid)? {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(low + 1)
}

/// Runs `wooter bench`; returns the process exit code.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    if let Some(n) = args.populate {
        let r = populate::populate(args.target, n, args.clients);
        let line = format!(
            "populated {}: {} users created, {} already there, {} follows, {} woots, {} errors in {:.1} s",
            args.target,
            r.created,
            r.existing,
            r.follows,
            r.woots,
            r.errors,
            r.elapsed.as_secs_f64()
        );
        if args.json {
            println!(
                "{}",
                serde_json::json!({"populate": n, "created": r.created, "existing": r.existing, "follows": r.follows,
                    "woots": r.woots, "errors": r.errors, "seconds": r.elapsed.as_secs_f64()})
            );
        } else {
            println!("{line}");
        }
        return if r.errors == 0 {
            Ok(())
        } else {
            Err(format!("{} requests failed", r.errors))
        };
    }
    let users = match args.users {
        Some(u) => u,
        None => discover_users(args.target)?,
    };
    if users == 0 {
        return Err(format!(
            "{} has no bench users: run wooter bench --populate N first",
            args.target
        ));
    }
    let spec = LoadSpec {
        target: args.target,
        clients: args.clients,
        duration: args.duration,
        mix: args.mix,
        framing: args.framing,
        users,
        check: true,
    };
    let floor = if args.floor {
        let server = floor::Floor::start(args.framing).map_err(|e| format!("cannot start the floor server: {e}"))?;
        let floor_spec = LoadSpec {
            target: server.addr,
            check: false,
            ..spec.clone()
        };
        Some(load::run(&floor_spec))
    } else {
        None
    };
    let result = load::run(&spec);
    let ratio = floor.as_ref().map(|f| result.rps() / f.rps().max(1e-9));
    if args.json {
        let mut out = serde_json::json!({
            "target": args.target.to_string(),
            "mix": format!("{:?}", args.mix).to_lowercase(),
            "framing": format!("{:?}", args.framing).to_lowercase(),
            "clients": args.clients,
            "users": users,
            "duration_s": args.duration.as_secs_f64(),
            "result": result.to_json(),
        });
        if let (Some(f), Some(r)) = (&floor, ratio) {
            out["floor"] = f.to_json();
            out["ratio"] = serde_json::json!(r);
        }
        println!("{out}");
    } else {
        println!(
            "target {}  mix {:?}  framing {:?}  clients {}  users {}  duration {:?}",
            args.target, args.mix, args.framing, args.clients, users, args.duration
        );
        println!("{}", report::header());
        if let Some(f) = &floor {
            println!("{}", report::row("floor", f));
        }
        println!("{}", report::row("target", &result));
        if let Some(r) = ratio {
            println!("ratio target/floor: {r:.3}");
        }
        for e in &result.error_samples {
            println!("error: {e}");
        }
    }
    Ok(())
}
