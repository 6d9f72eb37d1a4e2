//! Regression cases from attacking a running server: each was a way to
//! stall other clients, lose a reply, or damage the data.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn create(server: &Server, name: &str) {
    let reply = server.legacy(&frame("create_new_user", &simple_record(name)));
    assert_eq!(reply.len(), 260, "create {name}");
}

#[test]
fn a_client_streaming_bad_lines_does_not_stall_the_others() {
    let dir = TempDir::new("hog");
    let server = Server::start(dir.path(), &[]);
    create(&server, "member001");
    let stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let (stop, mut s) = (stop.clone(), server.connect());
        let mut reader = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let drain = std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline && matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
            });
            let lines = b"x\n".repeat(32 * 1024);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                if s.write_all(&lines).is_err() {
                    break;
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Both);
            let _ = drain.join();
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // Every request of a well-behaved client is answered (each bounded by
    // the 20 s read timeout of the test client) while the hog runs.
    for _ in 0..20 {
        let reply = server.legacy(&frame("read_id", b"0"));
        assert_eq!(reply.len(), 260);
    }
    stop.store(true, Ordering::SeqCst);
    hog.join().unwrap();
}

#[test]
fn a_byte_sent_after_the_request_does_not_cut_the_reply() {
    let dir = TempDir::new("linger");
    let server = Server::start(dir.path(), &[]);
    create(&server, "heavy0001");
    let mut t = TextSession::open(&server);
    let mut batch = String::new();
    for i in 0..2000 {
        batch.push_str(&format!(
            "write_woot heavy0001 [2026-01-01 -> 9:00:00] woot {i} with some text to make it longer\n"
        ));
    }
    t.writer.write_all(batch.as_bytes()).unwrap();
    for _ in 0..2000 {
        assert_eq!(t.read_reply().last().map(String::as_str), Some("OK"));
    }
    let mut s = server.connect();
    s.write_all(&frame(
        "load_woots",
        &[simple_record("heavy0001").as_slice(), b" 2000"].concat(),
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = s.write_all(b"\n");
    let reply = read_to_close(&mut s);
    assert_eq!(reply.len(), 2000 * 124 + 500, "the whole reply arrives");
}

fn user_line(dir: &std::path::Path, id: usize) -> Vec<u8> {
    let bytes = std::fs::read(dir.join(format!("users/u_{}.txt", id / 10))).unwrap();
    bytes[(id % 10) * 260..(id % 10) * 260 + 260].to_vec()
}

#[test]
fn a_missing_user_file_never_costs_the_others_their_data() {
    let dir = TempDir::new("gap");
    {
        let server = Server::start(dir.path(), &[]);
        for i in 0..30 {
            create(&server, &format!("user{i:05}"));
        }
    }
    let row2: Vec<Vec<u8>> = (20..30).map(|i| user_line(dir.path(), i)).collect();
    std::fs::rename(dir.path().join("users/u_1.txt"), dir.path().join("u_1.moved")).unwrap();
    let server = Server::start(dir.path(), &[]);
    assert!(
        server.wait_for_log("u_1.txt is missing", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert_eq!(
        server.legacy(&frame("read_user", b"user00025")).len(),
        260,
        "row 2 is indexed"
    );
    for i in 30..50 {
        create(&server, &format!("new{i:05}"));
    }
    // user00025's name is still taken, and row 2 is untouched.
    assert_eq!(
        server.legacy(&frame("create_new_user", &simple_record("user00025"))),
        b""
    );
    for (i, line) in (20..30).zip(row2) {
        assert_eq!(user_line(dir.path(), i), line, "user {i} kept");
    }
    for (name, bytes) in tree(dir.path()) {
        assert!(!bytes.contains(&0), "{name} holds NUL bytes");
    }
}

#[test]
fn empty_or_missing_files_are_completed_not_left_with_holes() {
    let dir = TempDir::new("short");
    {
        let server = Server::start(dir.path(), &[]);
        for i in 0..12 {
            create(&server, &format!("user{i:05}"));
        }
        let pair = [
            simple_record("user00005").as_slice(),
            b" ",
            simple_record("user00011").as_slice(),
        ]
        .concat();
        assert_eq!(server.legacy(&frame("follow", &pair)).len(), 520);
    }
    // A list file left empty (a full disk), and the fids file lost.
    std::fs::write(dir.path().join("flwes/fe_r0c0.txt"), b"").unwrap();
    std::fs::remove_file(dir.path().join("fids/fids.txt")).unwrap();
    let server = Server::start(dir.path(), &[]);
    let pair = [
        simple_record("user00005").as_slice(),
        b" ",
        simple_record("user00001").as_slice(),
    ]
    .concat();
    assert_eq!(
        server.legacy(&frame("follow", &pair)).len(),
        520,
        "follow works on a completed file"
    );
    let list = server.legacy(&frame(
        "load_following",
        &[simple_record("user00005").as_slice(), b" followees 10"].concat(),
    ));
    assert!(
        String::from_utf8_lossy(&list).contains(" 1 "),
        "{:?}",
        String::from_utf8_lossy(&list)
    );
    create(&server, "user00012");
    let files = tree(dir.path());
    for (name, bytes) in &files {
        assert!(!bytes.contains(&0), "{name} holds NUL bytes");
    }
    assert_eq!(files["flwes/fe_r0c0.txt"].len(), 1110);
    assert_eq!(files["fids/fids.txt"], b"0\n7\n", "fids rebuilt from the user files");
}

#[test]
fn blank_woots_and_passwords_are_refused_after_cleaning() {
    let dir = TempDir::new("blank");
    let server = Server::start(dir.path(), &[]);
    create(&server, "member001");
    let mut payload = simple_record("member001");
    payload.push(b' ');
    payload.extend_from_slice(&[0u8; 100]);
    assert_eq!(
        server.legacy(&frame("write_woot", &payload)),
        b"",
        "a woot of NUL bytes"
    );
    let rec = user_record("member002", "\0\0\0", 0, "A B", "1", "e@x", b'n');
    assert_eq!(
        server.legacy(&frame("create_new_user", &rec)),
        b"",
        "a password of NUL bytes"
    );
    let mut t = TextSession::open(&server);
    let reply = t.send("write_woot member001 \r\r");
    assert!(reply[0].starts_with("ERR invalid"), "{reply:?}");
}
