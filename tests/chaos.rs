//! A live chaos run: clients send random bytes, valid and invalid frames and
//! lines, split at random points, and vanish at random moments, while a
//! well-behaved client works beside them. Bounded: 4 s of chaos.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Every command the server knows, and one it does not.
fn commands() -> Vec<&'static str> {
    let mut all: Vec<&str> = wooter::protocol::text::COMMANDS.iter().map(|c| c.0).collect();
    all.push("nonsense");
    all
}

fn chaotic_request(rng: &mut SmallRng) -> Vec<u8> {
    match rng.gen_range(0..5) {
        0 => (0..rng.gen_range(0..1200)).map(|_| rng.gen()).collect(),
        1 | 2 => {
            let all = commands();
            let cmd = all[rng.gen_range(0..all.len())];
            let mut payload = simple_record(&format!("chaos{:04}", rng.gen_range(0..50)));
            payload.push(b' ');
            for _ in 0..rng.gen_range(0..40) {
                payload.push(if rng.gen_bool(0.8) {
                    rng.gen_range(b' '..=b'~')
                } else {
                    rng.gen()
                });
            }
            frame(cmd, &payload)
        }
        _ => {
            let all = commands();
            let cmd = all[rng.gen_range(0..all.len())];
            let mut line = format!("{cmd} chaos{:04} ", rng.gen_range(0..50)).into_bytes();
            for _ in 0..rng.gen_range(0..60) {
                line.push(if rng.gen_bool(0.9) {
                    rng.gen_range(b' '..=b'~')
                } else {
                    rng.gen()
                });
            }
            line.push(b'\n');
            line
        }
    }
}

fn chaos_client(addr: std::net::SocketAddr, seed: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let req = chaotic_request(&mut rng);
        // Split at random points; sometimes vanish before, during or after.
        let mut at = 0;
        while at < req.len() {
            let n = rng.gen_range(1..=req.len() - at);
            if s.write_all(&req[at..at + n]).is_err() {
                break;
            }
            at += n;
            if rng.gen_bool(0.05) {
                break; // vanish mid-request
            }
        }
        sent += 1;
        match rng.gen_range(0..3) {
            0 => {} // vanish without reading
            1 => {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf); // read a little, then vanish
            }
            _ => {
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
            }
        }
    }
    sent
}

#[test]
fn chaos_harms_no_well_behaved_client_and_loses_nothing() {
    let dir = TempDir::new("chaos");
    let mut server = Server::start(dir.path(), &["--partial-timeout", "2"]);
    for i in 0..50 {
        let r = server.legacy(&frame("create_new_user", &simple_record(&format!("chaos{i:04}"))));
        assert_eq!(r.len(), 260);
    }
    let r = server.legacy(&frame("create_new_user", &simple_record("steady001")));
    assert_eq!(r.len(), 260);
    let stop = Arc::new(AtomicBool::new(false));
    let chaos: Vec<_> = (0..8)
        .map(|c| {
            let stop = stop.clone();
            let addr = server.addr;
            std::thread::spawn(move || chaos_client(addr, 1000 + c, stop))
        })
        .collect();
    // The well-behaved client: every request succeeds, every write counts.
    let started = Instant::now();
    let mut acked = 0u32;
    while started.elapsed() < Duration::from_secs(4) {
        let mut p = simple_record("steady001");
        p.extend_from_slice(format!(" steady woot {acked}").as_bytes());
        let r = server.legacy(&frame("write_woot", &p));
        assert_eq!(r.len(), 260, "a well-behaved write failed under chaos");
        acked += 1;
        let r = server.legacy(&frame("read_user", b"steady001"));
        assert_eq!(String::from_utf8_lossy(&r[249..259]).trim(), acked.to_string());
    }
    stop.store(true, Ordering::SeqCst);
    let sent: u64 = chaos.into_iter().map(|t| t.join().expect("chaos client")).sum();
    assert!(sent > 100, "chaos sent only {sent} requests");
    assert!(server.is_running(), "the server stopped under chaos");
    let texts = legacy_woot_texts(&server, "steady001");
    for i in 0..acked {
        assert!(
            texts.contains(&format!("steady woot {i}")),
            "acknowledged woot {i} missing"
        );
    }
    drop(server);
    let (clean, out) = check_data(dir.path());
    assert!(clean, "check after chaos: {out}");
}
