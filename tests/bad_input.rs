//! Bad, split, slow and vanishing input against a real server: every case
//! gets the legacy empty reply or a text ERR, and the server keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::*;

fn create(server: &Server, name: &str) -> Vec<u8> {
    server.legacy(&frame("create_new_user", &simple_record(name)))
}

fn assert_serving(server: &mut Server) {
    assert!(server.is_running(), "server exited; log:\n{}", server.log());
    let reply = server.legacy(&frame("read_user", b"alive_check"));
    if reply.is_empty() {
        let created = create(server, "alive_check");
        assert_eq!(created.len(), 260, "server no longer answers");
    } else {
        assert_eq!(reply.len(), 260);
    }
}

#[test]
fn a_frame_sent_one_byte_at_a_time_is_answered() {
    let dir = TempDir::new("bytewise");
    let server = Server::start(dir.path(), &[]);
    assert_eq!(create(&server, "member001").len(), 260);
    let f = frame("read_user", b"member001");
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    for (i, b) in f.iter().enumerate() {
        s.write_all(&[*b]).unwrap();
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let reply = read_to_close(&mut s);
    assert_eq!(reply.len(), 260);
    assert_eq!(&reply[16..25], b"member001");
}

#[test]
fn malformed_frames_get_the_empty_reply_and_a_warning() {
    let dir = TempDir::new("malformed");
    let mut server = Server::start(dir.path(), &[]);
    assert_eq!(create(&server, "member001").len(), 260);
    assert_eq!(create(&server, "member002").len(), 260);
    let one = simple_record("member001");
    let two = simple_record("member002");
    let ghost = simple_record("nobody_here");
    let pair = |a: &[u8], b: &[u8]| [a, b" ", b].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("read_id of letters", frame("read_id", b"12ab")),
        ("read_id empty", frame("read_id", b"")),
        ("read_id huge", frame("read_id", b"99999999999999999999")),
        ("read_id beyond the files", frame("read_id", b"4000")),
        ("read_id of an empty slot", frame("read_id", b"7")),
        ("unknown user", frame("read_user", b"nobody_here")),
        ("duplicate username", frame("create_new_user", &one)),
        (
            "username too long",
            frame("create_new_user", &simple_record("abcdefghijklmnopqrstuvwxy")),
        ),
        (
            "age too wide",
            frame(
                "create_new_user",
                &user_record("member009", "password123", 0, "A B", "1000", "e@x", b'n'),
            ),
        ),
        (
            "age not a number",
            frame(
                "create_new_user",
                &user_record("member009", "password123", 0, "A B", "x1", "e@x", b'n'),
            ),
        ),
        ("empty username", frame("create_new_user", &simple_record(""))),
        (
            "empty password",
            frame(
                "create_new_user",
                &user_record("member009", "", 0, "A B", "1", "e@x", b'n'),
            ),
        ),
        ("follow unknown", frame("follow", &pair(&one, &ghost))),
        ("follow self", frame("follow", &pair(&one, &one))),
        ("unfollow unknown", frame("unfollow", &pair(&ghost, &two))),
        (
            "bad list kind",
            frame("load_following", &[one.as_slice(), b" friends 10"].concat()),
        ),
        (
            "list count missing",
            frame("load_following", &[one.as_slice(), b" followers"].concat()),
        ),
        (
            "woots count not a number",
            frame("load_woots", &[one.as_slice(), b" ten"].concat()),
        ),
        (
            "woots of unknown user",
            frame("load_woots", &[ghost.as_slice(), b" 10"].concat()),
        ),
        (
            "already_following bad id",
            frame("already_following", &[one.as_slice(), b" x"].concat()),
        ),
        (
            "flush with bad status",
            frame(
                "flush_user",
                &user_record("member001", "password123", 0, "A B", "1", "e@x", b'z'),
            ),
        ),
        ("flush unknown user", frame("flush_user", &ghost)),
        ("empty woot", frame("write_woot", &one)),
        (
            "woot for unknown user",
            frame("write_woot", &[ghost.as_slice(), b" hello"].concat()),
        ),
    ];
    for (what, f) in &cases {
        assert_eq!(server.legacy(f), b"", "{what}: expected the empty reply");
    }
    assert_serving(&mut server);
    // Nothing was stored by any refused request.
    let (clean, out) = check_data(dir.path());
    assert!(clean, "{out}");
    assert!(out.contains("3 users, 0 follows, 0 woots"), "{out}");
    assert!(
        server.wait_for_log("WARN", Duration::from_secs(5)),
        "no warning logged:\n{}",
        server.log()
    );
}

#[test]
fn unknown_commands_are_echoed_like_the_old_server() {
    let dir = TempDir::new("echo");
    let server = Server::start(dir.path(), &[]);
    let f = frame("frobnicate", b"abc");
    let reply = server.legacy(&f);
    assert_eq!(reply.len(), 560);
    assert_eq!(&reply[..559], &f[..559]);
    assert_eq!(reply[559], b'\n');
}

#[test]
fn line_breaks_and_nul_never_reach_a_file_or_a_reply_line() {
    let dir = TempDir::new("linebreaks");
    let server = Server::start(dir.path(), &[]);
    let rec = user_record("member001", "pass\nword1", 0, "Ann\rB\0C", "20", "a\n@b", b'n');
    let created = server.legacy(&frame("create_new_user", &rec));
    assert_eq!(created.len(), 260);
    assert_eq!(created.iter().filter(|&&b| b == b'\n').count(), 1);
    let mut payload = simple_record("member001");
    payload.extend_from_slice(b" two\nlines\0and\rmore");
    let reply = server.legacy(&frame("write_woot", &payload));
    assert_eq!(reply.len(), 260);
    let woots = server.legacy(&frame(
        "load_woots",
        &[simple_record("member001").as_slice(), b" 5"].concat(),
    ));
    assert_eq!(woots.len(), 125);
    assert_eq!(woots.iter().filter(|&&b| b == b'\n').count(), 1);
    assert!(String::from_utf8_lossy(&woots).starts_with("two lines and more"));
    for (name, bytes) in tree(dir.path()) {
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        assert!(!bytes.contains(&0), "{name} holds a NUL");
        if name.starts_with("users") || name.starts_with("woots") {
            assert_eq!(lines, 10, "{name} has {lines} line breaks");
        }
    }
}

#[test]
fn garbage_and_vanishing_clients_harm_nobody() {
    let dir = TempDir::new("garbage");
    let mut server = Server::start(dir.path(), &[]);
    assert_eq!(create(&server, "member001").len(), 260);
    // 560 bytes of noise, closed without reading.
    let noise: Vec<u8> = (0..560u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let mut s = server.connect();
    s.write_all(&noise).unwrap();
    drop(s);
    // Noise, then read whatever comes back after a half-close.
    let mut s = server.connect();
    s.write_all(&noise).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let _ = read_to_close(&mut s);
    // A valid request whose client vanishes before the reply.
    for _ in 0..50 {
        let mut s = server.connect();
        s.write_all(&frame(
            "load_woots",
            &[simple_record("member001").as_slice(), b" 100"].concat(),
        ))
        .unwrap();
        drop(s);
    }
    // Half a frame, then gone.
    let mut s = server.connect();
    s.write_all(&frame("read_user", b"member001")[..100]).unwrap();
    drop(s);
    // A text line longer than 4 KiB: ERR, then closed.
    let mut s = server.connect();
    let mut long = b"write_woot member001 ".to_vec();
    long.resize(5000, b'x');
    long.push(b'\n');
    s.write_all(&long).unwrap();
    let reply = read_to_close(&mut s);
    assert!(
        String::from_utf8_lossy(&reply).starts_with("ERR too_long"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    assert_serving(&mut server);
    let reply = server.legacy(&frame("read_user", b"member001"));
    assert_eq!(&reply[249..259], b"         0", "no woot was stored by garbage");
}

#[test]
fn a_partial_frame_then_silence_is_closed_by_the_timeout() {
    let dir = TempDir::new("partial");
    let mut server = Server::start(dir.path(), &["--partial-timeout", "1"]);
    let mut s = server.connect();
    s.write_all(&frame("read_user", b"member001")[..300]).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).expect("the server closes, not the read timeout");
    assert_eq!(n, 0, "closed without a reply");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    // Silent since its first byte, it is both a partial request gone quiet
    // and a request not whole in time: either reason may be logged first.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(server.log().contains("partial request") || server.log().contains("still not whole"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.log().contains("partial request") || server.log().contains("still not whole"),
        "{}",
        server.log()
    );
    assert_serving(&mut server);
}

#[test]
fn beyond_the_connection_limit_new_connections_are_closed_at_once() {
    let dir = TempDir::new("limit");
    let mut server = Server::start(dir.path(), &["--max-connections", "4"]);
    let held: Vec<_> = (0..4).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = server.connect();
    let mut buf = [0u8; 16];
    assert_eq!(extra.read(&mut buf).expect("closed, not timed out"), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("connection limit") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.log().contains("connection limit (4) reached"),
        "{}",
        server.log()
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_serving(&mut server);
}

#[test]
fn a_slowloris_client_is_closed_even_though_it_keeps_sending() {
    let dir = TempDir::new("slowloris");
    let mut server = Server::start(dir.path(), &["--partial-timeout", "2"]);
    let mut s = server.connect();
    let f = frame("read_user", b"member001");
    let start = Instant::now();
    let mut closed = false;
    // One byte every 300 ms would take 168 s for a frame; the server must
    // close the connection after about 2 s, although bytes keep coming.
    for b in f.iter().take(40) {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if start.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    if !closed {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        closed = matches!(s.read(&mut buf), Ok(0) | Err(_));
    }
    assert!(closed, "a trickling client was never closed");
    assert!(
        server.wait_for_log("sent too slowly", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert_serving(&mut server);
}

#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let dir = TempDir::new("emfile");
    // A hard limit of 64 descriptors: the server cannot raise it, and the
    // connections below exhaust it.
    let script = format!(
        "ulimit -n 64 && exec {} serve --listen 127.0.0.1:0 --data-dir {}",
        BIN,
        dir.path().display()
    );
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(pos) = line.find("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line[pos + 13..].split_whitespace().next().unwrap_or("").to_string());
                    }
                }
            }
        });
    }
    let addr: std::net::SocketAddr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("address")
        .parse()
        .unwrap();
    let pid = child.id();
    let cpu = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
    };
    let held: Vec<_> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    let before = cpu();
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu() - before;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.lock().unwrap().contains("accept failed") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        log.lock().unwrap().contains("pausing accepts"),
        "{}",
        log.lock().unwrap()
    );
    // Clock ticks are 1/100 s: backing off, the server used well under the
    // 300 ticks a spinning loop would.
    assert!(
        used < 100,
        "the server spun while out of descriptors: {used} ticks in 3 s"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    let mut s = std::net::TcpStream::connect(addr).expect("connect after recovery");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"help\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("the server answers again");
    assert!(
        n > 0 && buf.starts_with(b"commands"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Raises this process's open-file limit to its hard limit; returns it.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Connects to `to` from the loopback address `from` (port chosen by the
/// kernel at bind time, per source address): one source address has only
/// so many ephemeral ports toward one destination, and Linux's search for
/// a free one slows down as they fill.
fn connect_from(from: std::net::Ipv4Addr, to: std::net::SocketAddr) -> Option<std::net::TcpStream> {
    connect_with(from, to, None)
}

/// As [`connect_from`], with the receive buffer set to `rcvbuf` bytes
/// first (the kernel then holds little of a reply the client does not read).
fn connect_with(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
    rcvbuf: Option<libc::c_int>,
) -> Option<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(to) = to else { return None };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; it is
    // closed on every failure and otherwise handed to a TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        if let Some(size) = rcvbuf {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // The port is then picked at connect, by the whole address pair.
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let local = sockaddr(from, 0);
        let remote = sockaddr(*to.ip(), to.port());
        let ok = libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) == 0
            && libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) == 0;
        if !ok {
            libc::close(fd);
            return None;
        }
        Some(std::net::TcpStream::from_raw_fd(fd))
    }
}

#[test]
fn ten_thousand_idle_connections_do_not_stop_the_others() {
    let dir = TempDir::new("flood");
    // 10,000 connections here and 10,000 in the server, on this machine's
    // limit (20,000 on the CI machines); on a smaller one, as many as fit.
    let limit = raise_fd_limit();
    let wanted = 10_000.min(limit.saturating_sub(1_000) as usize);
    // Silent connections are closed after the partial timeout; give them
    // longer than the test takes.
    let mut server = Server::start(dir.path(), &["--partial-timeout", "300", "--max-connections", "10100"]);
    assert_eq!(create(&server, "member001").len(), 260);
    let mut idle = Vec::new();
    let opening = Instant::now();
    let deadline = opening + Duration::from_secs(60);
    let mut failures = 0;
    while idle.len() < wanted && Instant::now() < deadline && failures < 1_000 {
        // Spread over 127.0.0.2 .. 127.0.0.9.
        let from = std::net::Ipv4Addr::new(127, 0, 0, 2 + (idle.len() % 8) as u8);
        match connect_from(from, server.addr) {
            Some(s) => idle.push(s),
            None => {
                failures += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    eprintln!("opened {} idle connections in {:?}", idle.len(), opening.elapsed());
    assert!(
        idle.len() >= wanted,
        "only {} of {wanted} connections opened (open-file limit {limit})",
        idle.len()
    );
    // Every one of them is accepted and held: the server says so.
    let mut held = 0;
    for _ in 0..100 {
        let mut t = TextSession::open(&server);
        let stats = t.send("stats");
        t.close();
        held = stats
            .iter()
            .find_map(|l| l.strip_prefix("connections "))
            .and_then(|l| {
                l.split(' ')
                    .find_map(|w| w.strip_prefix("undecided=")?.parse::<usize>().ok())
            })
            .unwrap_or(0);
        if held >= wanted {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(held >= wanted, "the server holds {held} of {wanted} idle connections");
    eprintln!("all held after {:?}", opening.elapsed());
    let mut latencies = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let reply = server.legacy(&frame("read_user", b"member001"));
        latencies.push(t.elapsed());
        assert_eq!(reply.len(), 260, "a request failed beside the idle connections");
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let rss = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .ok()
        .and_then(|st| st.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .unwrap_or_default();
    eprintln!(
        "p99 of 500 requests beside {} idle connections: {p99:?}; server {rss}",
        idle.len()
    );
    // The target is 10 ms, measured by the benchmark; a loose bound here
    // only catches a loop that walks every connection per request.
    assert!(
        p99 < Duration::from_millis(100),
        "p99 {p99:?} beside the idle connections"
    );
    drop(idle);
    assert_serving(&mut server);
}

/// The server's resident memory in kB.
fn rss_kb(server: &Server) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn readers_that_never_read_a_large_reply_are_bounded_and_closed() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("nonreader");
    let mut server = Server::start(dir.path(), &["--partial-timeout", "2"]);
    // A user with 3,000 woots: a full load_woots reply is ~370 KB.
    let mut t = TextSession::open(&server);
    assert_eq!(
        t.send("create_new_user bigwooter pw 20 b@x.org Big")
            .last()
            .map(String::as_str),
        Some("OK")
    );
    t.close();
    let s = std::net::TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut lines = String::new();
    for i in 0..3_000 {
        lines.push_str(&format!(
            "write_woot bigwooter [2026-12-03 -> 9:00:00] woot number {i} {}\n",
            "x".repeat(60)
        ));
    }
    // Written from a thread: the replies must be read meanwhile, or both
    // sides' buffers fill and each waits for the other.
    let writer = std::thread::spawn(move || w.write_all(lines.as_bytes()).is_ok());
    let mut r = BufReader::new(s);
    let mut oks = 0;
    let mut line = String::new();
    while oks < 3_000 {
        line.clear();
        if r.read_line(&mut line).expect("reply") == 0 {
            break;
        }
        if line == "OK\n" {
            oks += 1;
        }
    }
    assert_eq!(oks, 3_000, "every woot answered");
    assert!(writer.join().unwrap_or(false), "sending the woots failed");

    let before = rss_kb(&server);
    // 200 clients ask for all of them and never read a byte.
    let mut stuck = Vec::new();
    for i in 0..200u8 {
        let from = std::net::Ipv4Addr::new(127, 0, 0, 2 + i % 8);
        let mut c = connect_with(from, server.addr, Some(4096)).expect("connect");
        c.write_all(b"load_woots bigwooter\n").expect("ask");
        stuck.push(c);
    }
    // The server keeps serving others meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    let reply = server.legacy(&frame("read_user", b"bigwooter"));
    assert_eq!(reply.len(), 260, "a request failed beside the non-readers");
    let during = rss_kb(&server);
    // Each holds at most its one reply (~370 KB less what the kernel's
    // buffers took): 200 of them stay well under 200 MB, and after the
    // partial timeout they are closed and their buffers freed.
    assert!(during < before + 200 * 1024, "RSS grew from {before} to {during} kB");
    std::thread::sleep(Duration::from_secs(4));
    let mut closed = 0;
    for c in &mut stuck {
        c.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let mut sink = vec![0u8; 1 << 20];
        // Drain what the kernel holds; the end must follow.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match c.read(&mut sink) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    closed += 1;
                    break;
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                Err(e) => panic!("reading a non-reader's socket: {e}"),
                Ok(_) => {}
            }
        }
    }
    eprintln!("RSS before {before} kB, with 200 non-readers {during} kB; {closed} closed");
    assert_eq!(closed, stuck.len(), "non-readers still open after the partial timeout");
    assert!(server.log().contains("has not read its reply"), "{}", server.log());
    assert_serving(&mut server);
}
