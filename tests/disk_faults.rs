//! Disk failures, injected through the storage seam (`storage::faults`):
//! a failed apply or log write stops the RM taking part (fail closed: it
//! stays up only to answer `ERR storage` and report the failure in
//! `stats`), nothing unacknowledged is acknowledged, and a restart
//! finishes the op that was cut halfway, exactly once.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn args(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.display().to_string(),
    ]
}

/// A legacy request whose connection may be cut by a stopping RM: a reset
/// reads as the empty reply, as the frontend would take it.
fn try_legacy(server: &Server, f: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(server.addr) else {
        return Vec::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if s.write_all(f).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => out,
        Err(_) => Vec::new(),
    }
}

/// Waits (bounded) until `stats` says the storage failed; then checks
/// that a text request is answered `ERR storage` and the process is
/// still up to say so.
fn reports_failure(server: &mut Server) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut t = TextSession::open(server);
        let stats = t.send("stats");
        if stats.iter().any(|l| l.starts_with("storage=failed")) {
            let reply = t.send("read_user anybody");
            t.close();
            assert!(
                reply.last().is_some_and(|l| l.starts_with("ERR storage")),
                "a request after the failure: {reply:?}"
            );
            return server.is_running();
        }
        t.close();
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_write_failing_halfway_stops_the_rm_and_is_finished_once_on_restart() {
    let dir = TempDir::new("fault-data");
    // Write 6 is the follow's second cell: its first side is on disk, its
    // second is not, when the disk "fills up".
    let mut server = Server::spawn_env(&args(dir.path()), &[("WOOTER_INJECT_FAULT", "data-write:6")]);
    assert_eq!(
        server
            .legacy(&frame("create_new_user", &simple_record("faulty001")))
            .len(),
        260
    );
    assert_eq!(
        server
            .legacy(&frame("create_new_user", &simple_record("faulty002")))
            .len(),
        260
    );
    let pair = [
        simple_record("faulty001").as_slice(),
        b" ",
        simple_record("faulty002").as_slice(),
    ]
    .concat();
    let reply = try_legacy(&server, &frame("follow", &pair));
    assert!(
        reply.is_empty(),
        "a failed write was acknowledged: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(reports_failure(&mut server), "the RM did not report the failed apply");
    assert!(server.log().contains("no longer takes part"), "{}", server.log());
    server.kill();
    // Half the op is on disk, and the journal holds all of it.
    let (clean, out) = check_data(dir.path());
    assert!(!clean, "the cut was not halfway after all: {out}");
    drop(server);
    let server = Server::spawn(&args(dir.path()));
    let (clean, out) = check_data(dir.path());
    assert!(clean, "restart did not finish the op: {out}");
    let list = server.legacy(&frame(
        "load_following",
        &[simple_record("faulty001").as_slice(), b" followees 10"].concat(),
    ));
    assert_eq!(String::from_utf8_lossy(&list).trim(), "1", "the follow is there, once");
    let user = server.legacy(&frame("read_user", b"faulty002"));
    assert_eq!(
        String::from_utf8_lossy(&user[226..237]).trim(),
        "1",
        "followers counted once"
    );
}

#[test]
fn a_failing_raft_log_write_stops_the_rm_and_loses_nothing_acknowledged() {
    let dir = TempDir::new("fault-log");
    let mut server = Server::spawn_env(&args(dir.path()), &[("WOOTER_INJECT_FAULT", "raft-log:6")]);
    let mut acked = Vec::new();
    for i in 0..50 {
        let reply = try_legacy(
            &server,
            &frame("create_new_user", &simple_record(&format!("logfault{i:03}"))),
        );
        if reply.len() == 260 {
            acked.push(i);
        } else {
            assert!(reply.is_empty(), "{:?}", String::from_utf8_lossy(&reply));
            break;
        }
    }
    assert!(acked.len() < 50, "the injected log failure never happened");
    assert!(
        reports_failure(&mut server),
        "the RM did not report the failed log write"
    );
    assert!(server.log().contains("raft log write failed"), "{}", server.log());
    server.kill();
    drop(server);
    let server = Server::spawn(&args(dir.path()));
    for i in &acked {
        let reply = server.legacy(&frame("read_user", format!("logfault{i:03}").as_bytes()));
        assert_eq!(reply.len(), 260, "acknowledged user logfault{i:03} is missing");
    }
    drop(server);
    let (clean, out) = check_data(dir.path());
    assert!(clean, "{out}");
}
