//! SIGTERM under load: the server stops accepting, answers what is in
//! flight, exits 0, and every acknowledged write is there after a restart.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_under_load_exits_cleanly_and_keeps_every_acknowledged_write() {
    let dir = TempDir::new("sigterm");
    let mut server = Server::start(dir.path(), &[]);
    assert_eq!(
        server
            .legacy(&frame("create_new_user", &simple_record("stopper01")))
            .len(),
        260
    );
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr;
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    i += 1;
                    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
                        break;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut p = simple_record("stopper01");
                    p.extend_from_slice(format!(" w{t}-{i}").as_bytes());
                    if s.write_all(&frame("write_woot", &p)).is_err() {
                        continue;
                    }
                    let mut reply = Vec::new();
                    let _ = s.read_to_end(&mut reply);
                    // A reply is whole or absent, never cut off.
                    assert!(
                        reply.is_empty() || reply.len() == 260,
                        "a reply of {} bytes",
                        reply.len()
                    );
                    if reply.len() == 260 {
                        acked.push(format!("w{t}-{i}"));
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<String> = writers.into_iter().flat_map(|w| w.join().expect("writer")).collect();
    let exit = exit.expect("the server did not stop within 10 s of SIGTERM");
    assert!(exit.success(), "exit status {exit:?}; log:\n{}", server.log());
    assert!(server.log().contains("shutting down"), "{}", server.log());
    assert!(acked.len() > 5, "too few writes acknowledged: {}", acked.len());
    let server = Server::start(dir.path(), &[]);
    let texts = legacy_woot_texts(&server, "stopper01");
    for w in &acked {
        assert!(texts.contains(w), "acknowledged woot {w} lost");
    }
    drop(server);
    let (clean, out) = check_data(dir.path());
    assert!(clean, "{out}");
}
