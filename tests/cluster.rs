//! Replicated RMs: real `wooter serve` processes on loopback, linked by
//! raft, killed with SIGKILL.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

#[test]
fn writes_through_every_rm_leave_identical_data_directories() {
    let _serial = serial();
    let cluster = Cluster::start(3, "identical");
    assert!(cluster.leader(Duration::from_secs(10)).is_some(), "no leader elected");
    for k in 1..=3 {
        let s = cluster.rm(k);
        let body = text(
            s,
            &format!("create_new_user rm{k}user password{k} 3{k} u{k}@x.org User Number {k}"),
        );
        assert_eq!(
            body.last().map(String::as_str),
            Some("OK"),
            "create through RM {k}: {body:?}"
        );
        for i in 0..10 {
            let r = text(
                s,
                &format!(
                    "write_woot rm{k}user [2026-01-0{} -> 9:00:00] woot {i} through rm {k}",
                    1 + i % 9
                ),
            );
            assert_eq!(r.last().map(String::as_str), Some("OK"), "{r:?}");
        }
        // A client that writes and then reads through the same RM sees its write.
        let r = text(s, &format!("read_user rm{k}user"));
        assert!(r[0].contains("woots=10"), "RM {k} read its own write: {r:?}");
    }
    for k in 1..=3 {
        let other = k % 3 + 1;
        let r = text(cluster.rm(k), &format!("follow rm{k}user rm{other}user"));
        assert_eq!(r.last().map(String::as_str), Some("OK"), "{r:?}");
        // Legacy framing through a follower too.
        let reply = cluster
            .rm(k)
            .legacy(&frame("read_user", format!("rm{other}user").as_bytes()));
        assert_eq!(reply.len(), 260, "legacy read through RM {k}");
    }
    let dirs: Vec<&Path> = cluster.dirs.iter().map(PathBuf::as_path).collect();
    assert!(converged(&dirs, Duration::from_secs(10)), "data directories differ");
    for d in &dirs {
        check_clean(d);
    }
    // `rms` on the leader lists every member, marks the primary, and knows
    // each one's lag; a follower names the same primary.
    let leader = cluster.leader(Duration::from_secs(5)).expect("a leader");
    let report = text(cluster.rm(leader), "rms");
    assert_eq!(report.len(), 4, "{report:?}");
    assert_eq!(
        report.iter().filter(|l| l.contains("primary=yes")).count(),
        1,
        "{report:?}"
    );
    assert!(
        report[leader - 1].contains("role=leader") && report[leader - 1].contains("self=yes"),
        "{report:?}"
    );
    assert!(
        report[..3]
            .iter()
            .all(|l| l.contains(" lag=") && !l.contains("lag=unknown")),
        "{report:?}"
    );
    let follower = leader % 3 + 1;
    let report = text(cluster.rm(follower), "rms");
    assert!(report[leader - 1].contains("primary=yes"), "{report:?}");
    let users = tree(dirs[0]);
    assert!(users.contains_key("users/u_0.txt"));
}

/// Writes woots `prefix-i` for `user` through `addr` until `stop`; returns
/// the acknowledged numbers and the longest gap between two acknowledged
/// writes.
fn writer(addr: std::net::SocketAddr, user: String, prefix: String, stop: Arc<AtomicBool>) -> (Vec<u32>, Duration) {
    let mut acked = Vec::new();
    let mut last_ack = Instant::now();
    let mut longest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0u32;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && i < 5000 {
        let reply = text_at(addr, &format!("write_woot {user} [2026-01-01 -> 9:00:00] {prefix}-{i}"));
        if reply.as_ref().and_then(|r| r.last()).map(String::as_str) == Some("OK") {
            acked.push(i);
            longest = longest.max(last_ack.elapsed());
            last_ack = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        i += 1;
    }
    (acked, longest)
}

/// The woot texts of `user` as `addr` serves them.
fn woots(addr: std::net::SocketAddr, user: &str) -> Vec<String> {
    let lines = text_at(addr, &format!("load_woots_seq {user}")).expect("load woots");
    assert_eq!(lines.last().map(String::as_str), Some("OK"), "{lines:?}");
    lines[..lines.len() - 1]
        .iter()
        .map(|l| l.split("] ").nth(1).unwrap_or("").to_string())
        .collect()
}

fn assert_each_acked_once(found: &[String], prefix: &str, acked: &[u32], rm: &str) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in found {
        *counts.entry(w.as_str()).or_default() += 1;
    }
    for (w, n) in &counts {
        assert_eq!(*n, 1, "{rm}: woot '{w}' applied {n} times");
    }
    for i in acked {
        let w = format!("{prefix}-{i}");
        assert!(
            counts.contains_key(w.as_str()),
            "{rm}: acknowledged woot {w} is missing"
        );
    }
}

#[test]
fn killing_the_leader_loses_no_acknowledged_write() {
    let _serial = serial();
    let mut cluster = Cluster::start(3, "failover");
    let leader = cluster.leader(Duration::from_secs(10)).expect("a leader");
    let survivor = leader % 3 + 1;
    let addr = cluster.rm(survivor).addr;
    let r = text(
        cluster.rm(survivor),
        "create_new_user failover password1 30 f@x.org Fail Over",
    );
    assert_eq!(r.last().map(String::as_str), Some("OK"), "{r:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || writer(addr, "failover".into(), "w".into(), stop))
    };
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = Instant::now();
    cluster.kill(leader);
    // A new leader must serve writes again within 3 s.
    let first_after = Arc::new(Mutex::new(None));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if text_at(addr, "write_woot failover [2026-01-01 -> 9:00:00] probe")
            .and_then(|r| r.last().cloned())
            .as_deref()
            == Some("OK")
        {
            *first_after.lock().unwrap() = Some(killed_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let (acked, _) = handle.join().expect("writer");
    let served_after = first_after
        .lock()
        .unwrap()
        .expect("no write succeeded after the leader was killed");
    assert!(
        served_after < Duration::from_secs(3),
        "a new leader served only after {served_after:?}"
    );
    assert!(acked.len() > 10, "too few writes acknowledged: {}", acked.len());
    let alive: Vec<usize> = (1..=3).filter(|k| *k != leader).collect();
    let dirs: Vec<&Path> = alive.iter().map(|k| cluster.dirs[k - 1].as_path()).collect();
    assert!(converged(&dirs, Duration::from_secs(10)), "survivors differ");
    for k in &alive {
        let found: Vec<String> = woots(cluster.rm(*k).addr, "failover")
            .into_iter()
            .filter(|w| w != "probe")
            .collect();
        assert_each_acked_once(&found, "w", &acked, &format!("RM {k}"));
    }
    // The killed RM comes back, catches up, and agrees.
    cluster.restart(leader);
    let all: Vec<&Path> = cluster.dirs.iter().map(PathBuf::as_path).collect();
    assert!(
        converged(&all, Duration::from_secs(15)),
        "restarted RM did not catch up"
    );
    for d in &all {
        check_clean(d);
    }
}

#[test]
fn a_single_rm_killed_mid_load_keeps_every_acknowledged_write() {
    let _serial = serial();
    let dir = TempDir::new("single-kill");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let r = text(&server, "create_new_user solo12345 password1 30 s@x.org Solo Writer");
    assert_eq!(r.last().map(String::as_str), Some("OK"), "{r:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr;
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || writer(addr, "solo12345".into(), format!("t{t}"), stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<Vec<u32>> = handles.into_iter().map(|h| h.join().expect("writer").0).collect();
    assert!(
        acked.iter().map(Vec::len).sum::<usize>() > 10,
        "too few writes acknowledged"
    );
    let server = Server::start(&data, &[]);
    let found = woots(server.addr, "solo12345");
    for (t, acked) in acked.iter().enumerate() {
        let mine: Vec<String> = found
            .iter()
            .filter(|w| w.starts_with(&format!("t{t}-")))
            .cloned()
            .collect();
        assert_each_acked_once(&mine, &format!("t{t}"), acked, "restarted RM");
    }
    drop(server);
    check_clean(&data);
}

#[test]
fn a_partitioned_minority_never_acknowledges_and_all_converge_after_healing() {
    let _serial = serial();
    let cluster = Cluster::start(3, "partition");
    let old = cluster.leader(Duration::from_secs(10)).expect("a leader");
    let others: Vec<usize> = (1..=3).filter(|k| *k != old).collect();
    let r = text(cluster.rm(old), "create_new_user parted01 password1 30 p@x.org Part Ed");
    assert_eq!(r.last().map(String::as_str), Some("OK"), "{r:?}");
    // Cut the leader off from both others, both ways.
    let ids = |ks: &[usize]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(
        text(cluster.rm(old), &format!("test_partition {}", ids(&others))),
        ["OK"]
    );
    for k in &others {
        assert_eq!(text(cluster.rm(*k), &format!("test_partition {old}")), ["OK"]);
    }
    // The minority side never acknowledges a write.
    let minority = text_at(
        cluster.rm(old).addr,
        "write_woot parted01 [2026-01-01 -> 9:00:00] minority",
    );
    assert_ne!(
        minority.as_ref().and_then(|r| r.last()).map(String::as_str),
        Some("OK"),
        "{minority:?}"
    );
    // The majority elects a leader and keeps serving.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut majority_ok = 0;
    while Instant::now() < deadline && majority_ok < 5 {
        let r = text_at(
            cluster.rm(others[0]).addr,
            &format!("write_woot parted01 [2026-01-01 -> 9:00:00] majority {majority_ok}"),
        );
        if r.and_then(|r| r.last().cloned()).as_deref() == Some("OK") {
            majority_ok += 1;
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(majority_ok, 5, "the majority did not serve writes");
    // Heal: everyone converges on the majority's history.
    for k in 1..=3 {
        assert_eq!(text(cluster.rm(k), "test_partition"), ["OK"]);
    }
    let dirs: Vec<&Path> = cluster.dirs.iter().map(PathBuf::as_path).collect();
    assert!(
        converged(&dirs, Duration::from_secs(15)),
        "RMs did not converge after healing"
    );
    let found = woots(cluster.rm(old).addr, "parted01");
    assert!(
        !found.iter().any(|w| w == "minority"),
        "an unacknowledged minority write was applied: {found:?}"
    );
    for i in 0..5 {
        assert!(
            found.contains(&format!("majority {i}")),
            "majority write {i} missing: {found:?}"
        );
    }
    for d in &dirs {
        check_clean(d);
    }
}

#[test]
fn an_rm_killed_at_random_moments_under_load_catches_up_each_time() {
    let _serial = serial();
    let mut cluster = Cluster::start(3, "randomkill");
    let leader = cluster.leader(Duration::from_secs(10)).expect("a leader");
    // The victim is a follower, and the writer talks to the leader, so the
    // load goes on while the victim dies and comes back.
    let victim = leader % 3 + 1;
    let addr = cluster.rm(leader).addr;
    let r = text(
        cluster.rm(leader),
        "create_new_user victim01 password1 30 v@x.org Vic Tim",
    );
    assert_eq!(r.last().map(String::as_str), Some("OK"), "{r:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || writer(addr, "victim01".into(), "k".into(), stop))
    };
    let mut seed = 0x9e37_79b9_u64;
    for _ in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 250));
        cluster.kill(victim);
        std::thread::sleep(Duration::from_millis(seed % 100));
        cluster.restart(victim);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (acked, _) = handle.join().expect("writer");
    assert!(acked.len() > 10, "too few writes acknowledged: {}", acked.len());
    let dirs: Vec<&Path> = cluster.dirs.iter().map(PathBuf::as_path).collect();
    if !converged(&dirs, Duration::from_secs(15)) {
        let logs: Vec<String> = (1..=3)
            .map(|k| format!("--- RM {k}:\n{}", cluster.rm(k).log()))
            .collect();
        let tail: String = logs
            .iter()
            .map(|l| l.lines().rev().take(25).collect::<Vec<_>>().join("\n"))
            .collect::<Vec<_>>()
            .join("\n");
        panic!("the victim did not catch up; last log lines (newest first):\n{tail}");
    }
    for k in 1..=3 {
        let found = woots(cluster.rm(k).addr, "victim01");
        assert_each_acked_once(&found, "k", &acked, &format!("RM {k}"));
    }
    for d in &dirs {
        check_clean(d);
    }
}

#[test]
fn a_peer_with_a_wrong_or_missing_secret_is_refused_and_changes_nothing() {
    use std::io::{Read, Write};
    use wooter::protocol::peer::{parse_frame, PeerFrame};
    let _serial = serial();
    let secret_dir = TempDir::new("secret");
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, "correct-horse-battery-staple\n").unwrap();
    let s = secret.display().to_string();
    let cluster = Cluster::start_with(3, "auth", &["--cluster-secret-file", &s]);
    assert!(
        cluster.leader(Duration::from_secs(10)).is_some(),
        "members with the secret elect a leader"
    );
    let r = text(
        cluster.rm(1),
        "create_new_user authuser1 password1 30 a@x.org Auth User",
    );
    assert_eq!(r.last().map(String::as_str), Some("OK"), "{r:?}");
    // Let every RM apply the create first, so only the rogue could change
    // anything from here on.
    let dirs: Vec<&Path> = cluster.dirs.iter().map(PathBuf::as_path).collect();
    assert!(converged(&dirs, Duration::from_secs(10)), "RMs did not converge");
    let before: Vec<_> = cluster.dirs.iter().map(|d| tree(d)).collect();
    let link = std::net::SocketAddr::new(cluster.rm(1).addr.ip(), cluster.rm(1).addr.port() + 1000);
    for mac in [vec![0u8; 32], Vec::new()] {
        let mut sock = std::net::TcpStream::connect(link).expect("connect to the RM link port");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        let challenge = loop {
            let n = sock.read(&mut chunk).expect("a challenge");
            assert!(n > 0, "closed before the challenge");
            buf.extend_from_slice(&chunk[..n]);
            if let Ok(Some((frame, _))) = parse_frame(&buf) {
                break frame;
            }
        };
        assert!(
            matches!(challenge, PeerFrame::Challenge { ref nonce } if nonce.len() == 32),
            "{challenge:?}"
        );
        // Claim to be RM 2, with a made-up or no answer, then try a raft message.
        let _ = sock.write_all(
            &PeerFrame::Hello {
                rm_id: 2,
                mac: mac.clone(),
            }
            .encode(),
        );
        let _ = sock.write_all(&PeerFrame::Raft(vec![8, 3, 16, 2, 24, 1]).encode());
        let mut rest = [0u8; 64];
        match sock.read(&mut rest) {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("the RM answered a refused peer with {n} bytes"),
        }
    }
    assert!(
        cluster
            .rm(1)
            .wait_for_log("refused a hello as RM 2", Duration::from_secs(5)),
        "no refusal logged"
    );
    let after: Vec<_> = cluster.dirs.iter().map(|d| tree(d)).collect();
    assert!(before == after, "a refused peer changed data");
    let r = text(cluster.rm(2), "read_user authuser1");
    assert_eq!(
        r.last().map(String::as_str),
        Some("OK"),
        "the cluster still serves: {r:?}"
    );
    for k in 1..=3 {
        assert!(
            !cluster.rm(k).log().contains("correct-horse"),
            "the secret appeared in RM {k}'s log"
        );
    }
}

/// One legacy request; `None` if the connection was refused or reset.
fn legacy_at(addr: std::net::SocketAddr, frame: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(frame).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    Some(out)
}

#[test]
fn the_primary_address_follows_the_leader() {
    let _serial = serial();
    let mut cluster = Cluster::start_with(3, "primary", &["--primary-listen", "{primary}"]);
    let primary = cluster.primary();
    let leader = cluster.leader(Duration::from_secs(10)).expect("a leader");
    // The leader serves the primary address.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut created = None;
    while Instant::now() < deadline && created.is_none() {
        created = legacy_at(primary, &frame("create_new_user", &simple_record("primary01"))).filter(|r| r.len() == 260);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(created.is_some(), "the primary address did not serve");
    assert!(cluster
        .rm(leader)
        .wait_for_log("now serving the primary address", Duration::from_secs(5)));
    let php = std::process::Command::new("php").arg("--version").output().is_ok();
    assert!(php || std::env::var_os("CI").is_none(), "CI must have php installed");
    // Kill the primary: the address moves to the new leader within 3 s.
    let killed = Instant::now();
    cluster.kill(leader);
    // The PHP client, pointed only at the primary address, runs across the
    // failover (retrying refused connections, as behind a load balancer).
    let php_run = php.then(|| {
        std::process::Command::new("php")
            .arg(repo_root().join("tests/php/client.php"))
            .arg(primary.to_string())
            .arg("3")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start php")
    });
    let mut moved = None;
    while killed.elapsed() < Duration::from_secs(10) {
        let reply = legacy_at(primary, &frame("read_user", b"primary01"));
        if reply
            .as_ref()
            .is_some_and(|r| r.len() == 260 && &r[16..25] == b"primary01")
        {
            moved = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let moved = moved.expect("the primary address never answered again");
    assert!(
        moved < Duration::from_secs(3),
        "the primary address moved only after {moved:?}"
    );
    if let Some(child) = php_run {
        let out = child.wait_with_output().expect("run php");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("checks, 0 failed"),
            "php across the failover:\n{stdout}"
        );
    }
    let new_leader = cluster.leader(Duration::from_secs(5)).expect("a new leader");
    assert_ne!(new_leader, leader);
}
