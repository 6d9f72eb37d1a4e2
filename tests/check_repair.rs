//! `wooter check` finds inconsistencies; `--repair` fixes them.

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().expect("run wooter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_reports_and_repair_restores_a_damaged_directory() {
    let dir = TempDir::new("repair");
    let data = dir.path().join("data");
    copy_tree(&fixtures().join("data"), &data);
    let d = data.to_str().unwrap();
    assert_eq!(run(&["check", d]).0, 0, "the fixture is clean");
    // A wrong counter and a one-sided follow.
    let users = data.join("users/u_0.txt");
    let mut bytes = std::fs::read(&users).unwrap();
    bytes[260 + 226..260 + 237].copy_from_slice(b"          9");
    std::fs::write(&users, bytes).unwrap();
    let followers = data.join("flwrs/fr_r0c0.txt");
    let mut bytes = std::fs::read(&followers).unwrap();
    bytes[2 * 111..2 * 111 + 11].copy_from_slice(&[b' '; 11]);
    std::fs::write(&followers, bytes).unwrap();
    let (code, out) = run(&["check", d]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("followers counter is 9"), "{out}");
    assert!(out.contains("0 follows 2, but 2's followers lack 0"), "{out}");
    let (code, out) = run(&["check", "--repair", d]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 change(s) made"), "{out}");
    // Repaired back to the very bytes the old server wrote.
    assert!(
        tree(&data) == tree(&fixtures().join("data")),
        "repair did not restore the original bytes"
    );
    assert_eq!(run(&["check", "/nonexistent/dir"]).0, 2);
}
