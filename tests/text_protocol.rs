//! The netcat-friendly text framing, over one real connection.

mod common;

use common::*;

fn ok(lines: &[String]) -> &[String] {
    assert_eq!(lines.last().map(String::as_str), Some("OK"), "reply: {lines:?}");
    &lines[..lines.len() - 1]
}

fn err(lines: &[String], kind: &str) {
    assert_eq!(lines.len(), 1, "one status line: {lines:?}");
    assert!(
        lines[0].starts_with(&format!("ERR {kind} ")),
        "want ERR {kind}: {lines:?}"
    );
}

#[test]
fn a_session_runs_many_commands_on_one_connection() {
    let dir = TempDir::new("text");
    let server = Server::start(dir.path(), &[]);
    let mut t = TextSession::open(&server);
    let body = t.send("create_new_user member001 secretpass1 17 one@example.org Given One");
    assert_eq!(ok(&body), ["id=0 username=member001 status=n age=17 followers=0 followees=0 woots=0 email=one@example.org name=Given One"]);
    ok(&t.send("create_new_user member002 secretpass2 18 two@example.org Ann van Dyke"));
    err(
        &t.send("create_new_user member002 secretpass2 18 two@example.org Ann"),
        "exists",
    );
    let body = t.send("read_user member002");
    assert!(ok(&body)[0].ends_with("name=Ann van Dyke"), "{body:?}");
    assert!(!body[0].contains("secretpass"), "passwords are not shown: {body:?}");
    assert_eq!(ok(&t.send("read_id 1")).len(), 1);
    err(&t.send("read_user nobody_here"), "not_found");
    err(&t.send("read_id 99"), "not_found");
    let body = t.send("follow member001 member002");
    let users = ok(&body);
    assert!(
        users[0].contains("followees=1") && users[1].contains("followers=1"),
        "{users:?}"
    );
    err(&t.send("follow member001 member001"), "invalid");
    assert_eq!(ok(&t.send("load_following member001 followees")), ["1"]);
    assert_eq!(ok(&t.send("load_following member002 followers 5")), ["0"]);
    assert_eq!(ok(&t.send("already_following member001 1")), ["YES"]);
    assert_eq!(ok(&t.send("already_following member002 0")), ["NO"]);
    // A woot with its own timestamp, and one stamped with the server's time.
    ok(&t.send("write_woot member001 [2026-01-01 -> 9:00:00] first woot"));
    let body = t.send("write_woot member001 second  woot, with spaces");
    assert!(ok(&body)[0].contains("woots=2"), "{body:?}");
    let newest = t.send("load_woots member001");
    let woots = ok(&newest);
    assert_eq!(woots.len(), 2);
    assert!(woots[1] == "[2026-01-01 -> 9:00:00] first woot", "{woots:?}");
    let stamped = woots[0]
        .strip_suffix("] second  woot, with spaces")
        .expect("text kept as sent");
    assert_server_time_format(stamped.strip_prefix('[').expect("bracket"));
    let oldest = t.send("load_woots_seq member001 1");
    assert_eq!(ok(&oldest), ["[2026-01-01 -> 9:00:00] first woot"]);
    let mut too_long = "write_woot member001 ".to_string();
    too_long.push_str(&"x".repeat(101));
    err(&t.send(&too_long), "invalid");
    let body = t.send("unfollow member001 member002");
    assert!(ok(&body)[0].contains("followees=0"));
    assert!(ok(&t.send("load_following member001 followees")).is_empty());
    let body = t.send("flush_user member002 newpass123 19 new@example.org d Ann Dyke");
    assert!(
        ok(&body)[0].contains("status=d") && body[0].contains("email=new@example.org"),
        "{body:?}"
    );
    err(
        &t.send("flush_user member002 newpass123 19 new@example.org x Ann Dyke"),
        "invalid",
    );
    err(&t.send("frobnicate"), "unknown_command");
    err(&t.send("read_user"), "invalid");
    err(&t.send("load_woots member001 many"), "invalid");
    let help = t.send("help");
    for command in [
        "create_new_user",
        "read_user",
        "read_id",
        "flush_user",
        "follow",
        "unfollow",
        "load_following",
        "write_woot",
        "load_woots",
        "load_woots_seq",
        "already_following",
        "quit",
    ] {
        assert!(
            help.iter().any(|l| l.trim_start().starts_with(command)),
            "help lacks {command}"
        );
    }
    // Blank lines and CRLF are fine.
    t.writer.write_all(b"\r\n\nread_id 0\r\n").unwrap();
    assert_eq!(ok(&t.read_reply()).len(), 1);
    let stats = t.send("stats");
    let stats = ok(&stats);
    assert!(stats.iter().any(|l| l == "users=2"), "{stats:?}");
    assert!(
        stats
            .iter()
            .any(|l| l.starts_with("connections ") && l.contains("text=1")),
        "{stats:?}"
    );
    let requests = stats
        .iter()
        .find(|l| l.starts_with("requests "))
        .expect("a requests line");
    assert!(
        requests.contains("write_woot=2") && requests.contains("follow=2"),
        "{requests}"
    );
    assert!(
        stats.iter().any(|l| l.starts_with("raft rm=1 role=leader")),
        "{stats:?}"
    );
    assert_eq!(t.send("quit"), ["OK"]);
    let mut rest = Vec::new();
    use std::io::Read;
    assert_eq!(t.reader.read_to_end(&mut rest).unwrap(), 0, "closed after quit");
}

use std::io::Write;

fn assert_server_time_format(stamp: &str) {
    // YYYY-MM-DD -> H:MM:SS, hour without a leading zero.
    let (date, time) = stamp.split_once(" -> ").expect("arrow");
    let d: Vec<&str> = date.split('-').collect();
    assert!(
        d.len() == 3 && d[0].len() == 4 && d[1].len() == 2 && d[2].len() == 2,
        "{stamp}"
    );
    let t: Vec<&str> = time.split(':').collect();
    assert!(
        t.len() == 3 && !t[0].is_empty() && t[0].len() <= 2 && t[1].len() == 2 && t[2].len() == 2,
        "{stamp}"
    );
    assert!(
        !(t[0].len() == 2 && t[0].starts_with('0')),
        "hour has a leading zero: {stamp}"
    );
    assert!(
        stamp.chars().all(|c| c.is_ascii_digit() || " ->:".contains(c)),
        "{stamp}"
    );
}

#[test]
fn commands_sent_at_once_are_answered_in_order() {
    let dir = TempDir::new("pipeline");
    let server = Server::start(dir.path(), &[]);
    let mut t = TextSession::open(&server);
    let mut batch = String::new();
    for i in 0..50 {
        batch.push_str(&format!(
            "create_new_user user{i:05} password{i:05} 20 u{i}@x.org User {i}\n"
        ));
    }
    for i in 0..50 {
        batch.push_str(&format!("read_id {i}\n"));
    }
    t.writer.write_all(batch.as_bytes()).unwrap();
    for i in 0..50 {
        let body = t.read_reply();
        assert!(
            ok(&body)[0].starts_with(&format!("id={i} username=user{i:05} ")),
            "{body:?}"
        );
    }
    for i in 0..50 {
        let body = t.read_reply();
        assert!(ok(&body)[0].starts_with(&format!("id={i} ")), "{body:?}");
    }
}

#[test]
fn a_last_line_without_a_line_break_is_answered_at_end_of_input() {
    let dir = TempDir::new("nolf");
    let server = Server::start(dir.path(), &[]);
    let mut s = server.connect();
    s.write_all(b"help").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let reply = String::from_utf8_lossy(&read_to_close(&mut s)).to_string();
    assert!(reply.starts_with("commands") && reply.ends_with("OK\n"), "{reply}");
}
