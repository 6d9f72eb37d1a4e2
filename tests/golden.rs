//! The old server's golden recording, replayed against a real wooter.

mod common;

use common::*;

struct Exchange {
    note: String,
    req: Vec<u8>,
    rep: Vec<u8>,
}

fn transcript() -> Vec<Exchange> {
    let text = std::fs::read_to_string(fixtures().join("transcript.jsonl")).expect("read transcript");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            Exchange {
                note: v["note"].as_str().unwrap_or("").to_string(),
                req: latin1(v["req"].as_str().expect("req")),
                rep: latin1(v["rep"].as_str().expect("rep")),
            }
        })
        .collect()
}

#[test]
fn replay_is_byte_identical_and_leaves_identical_files() {
    let dir = TempDir::new("golden");
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let exchanges = transcript();
    assert!(exchanges.len() > 100, "transcript too short: {}", exchanges.len());
    for (i, ex) in exchanges.iter().enumerate() {
        assert_eq!(ex.req.len(), 560, "exchange {i} request length");
        let got = server.legacy(&ex.req);
        assert!(
            got == ex.rep,
            "exchange {i} ({}): reply differs\n  want {:?}\n  got  {:?}",
            ex.note,
            String::from_utf8_lossy(&ex.rep),
            String::from_utf8_lossy(&got)
        );
    }
    let want = tree(&fixtures().join("data"));
    let got = tree(&data);
    let want_names: Vec<_> = want.keys().collect();
    let got_names: Vec<_> = got.keys().collect();
    assert_eq!(got_names, want_names, "the same files");
    for (name, bytes) in &want {
        assert!(
            got[name] == *bytes,
            "{name} differs:\n want {:?}\n got  {:?}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&got[name])
        );
    }
    let (clean, out) = check_data(&data);
    assert!(clean, "check: {out}");
    // What wooter creates is private: folders 0700, files 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [data.clone(), data.join("raft"), data.join("users")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in [
        data.join("users/u_0.txt"),
        data.join("raft/log"),
        data.join("raft/apply.journal"),
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

/// Parses the fixture's user files independently of wooter's code.
fn fixture_users() -> Vec<(u32, Vec<u8>)> {
    let mut users = Vec::new();
    for row in 0.. {
        let Ok(bytes) = std::fs::read(fixtures().join(format!("data/users/u_{row}.txt"))) else {
            break;
        };
        for (slot, line) in bytes.chunks(260).enumerate() {
            if line[..259].iter().any(|&b| b != b' ') {
                users.push((row * 10 + slot as u32, line.to_vec()));
            }
        }
    }
    users
}

fn field(line: &[u8], start: usize, len: usize) -> String {
    String::from_utf8_lossy(&line[start..start + len]).trim().to_string()
}

fn list_ids(prefix: &str, folder: &str, id: u32) -> Vec<String> {
    let (row, slot) = (id / 10, (id % 10) as usize);
    let mut ids = Vec::new();
    for col in 0.. {
        let Ok(bytes) = std::fs::read(fixtures().join(format!("data/{folder}/{prefix}_r{row}c{col}.txt"))) else {
            break;
        };
        let line = &bytes[slot * 111..slot * 111 + 110];
        for cell in line.chunks(11) {
            let s = String::from_utf8_lossy(cell).trim().to_string();
            if !s.is_empty() {
                ids.push(s);
            }
        }
    }
    ids
}

#[test]
fn a_copy_of_the_old_data_reads_back_correctly() {
    let dir = TempDir::new("olddata");
    let data = dir.path().join("data");
    copy_tree(&fixtures().join("data"), &data);
    let server = Server::start(&data, &[]);
    assert!(server.log().contains("25 users"), "log: {}", server.log());
    let users = fixture_users();
    assert_eq!(users.len(), 25);
    for (id, line) in &users {
        let name = field(line, 0, 25);
        assert_eq!(
            server.legacy(&frame("read_user", name.as_bytes())),
            *line,
            "read_user {name}"
        );
        assert_eq!(
            server.legacy(&frame("read_id", id.to_string().as_bytes())),
            *line,
            "read_id {id}"
        );
        let mut record = simple_record(&name);
        for (kind, folder, prefix, count_at) in [("followees", "flwes", "fe", 237), ("followers", "flwrs", "fr", 226)] {
            let count: usize = field(line, count_at, 11).parse().unwrap();
            let want = list_ids(prefix, folder, *id);
            assert_eq!(want.len(), count, "fixture counter of {name} {kind}");
            let mut payload = record.clone();
            payload.extend_from_slice(format!(" {kind} 1000").as_bytes());
            let got = server.legacy(&frame("load_following", &payload));
            let got_ids: Vec<String> = String::from_utf8_lossy(&got)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            assert_eq!(got_ids, want, "{kind} of {name}");
        }
        let woots: u32 = field(line, 249, 10).parse().unwrap();
        record.extend_from_slice(b" 1000");
        let got = server.legacy(&frame("load_woots", &record));
        let mut want = Vec::new();
        let (row, slot) = (id / 10, (id % 10) as usize);
        for k in (0..woots).rev() {
            let bytes = std::fs::read(fixtures().join(format!("data/woots/w_r{row}c{}.txt", k / 10))).unwrap();
            let at = slot * 1241 + (k % 10) as usize * 124;
            want.extend_from_slice(&bytes[at..at + 124]);
            if (woots - k).is_multiple_of(4) {
                want.push(b'\n');
            }
        }
        if !woots.is_multiple_of(4) {
            want.push(b'\n');
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "woots of {name}"
        );
    }
}
