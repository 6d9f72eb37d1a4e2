//! Passwords never appear in the log, at any level.

mod common;

use common::*;

#[test]
fn no_password_reaches_the_log_even_at_trace_level() {
    // This file holds one test, so setting the level for the child here
    // touches no other test.
    std::env::set_var("WOOTER_TEST_LOG", "trace");
    let dir = TempDir::new("logs");
    let server = Server::start(dir.path(), &[]);
    let text = std::fs::read_to_string(fixtures().join("transcript.jsonl")).unwrap();
    let mut passwords = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let req = latin1(v["req"].as_str().unwrap());
        server.legacy(&req);
        if req.len() >= 98 {
            let pw = String::from_utf8_lossy(&req[65..98]).trim().to_string();
            if pw.len() >= 8 {
                passwords.push(pw);
            }
        }
    }
    // Refusals, too: a taken name, a bad age, a text-mode registration.
    server.legacy(&frame(
        "create_new_user",
        &user_record("member001", "hunter2hunter2", 0, "A B", "30", "e@x", b'n'),
    ));
    server.legacy(&frame(
        "create_new_user",
        &user_record("freshname", "opensesame99", 0, "A B", "4000", "e@x", b'n'),
    ));
    let mut t = TextSession::open(&server);
    t.send("create_new_user textuser1 tiger-lily-7 30 t@x.org Text User");
    t.send("create_new_user textuser1 tiger-lily-7 30 t@x.org Text User");
    t.send("flush_user textuser1 swordfish-42 31 t@x.org n Text User");
    passwords.extend(["hunter2hunter2", "opensesame99", "tiger-lily-7", "swordfish-42"].map(String::from));
    drop(t);
    // The refused registration is logged (the log has caught up).
    assert!(
        server.wait_for_log("'textuser1' is taken", std::time::Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log was not verbose"
    );
    passwords.sort();
    passwords.dedup();
    assert!(passwords.len() > 20, "passwords collected: {}", passwords.len());
    for pw in &passwords {
        assert!(!log.contains(pw.as_str()), "password {pw} appears in the log");
    }
}
