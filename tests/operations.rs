//! Running wooter for real: `/metrics` scraped over HTTP with curl, the
//! `stats` command and `wooter stats`, after known traffic.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::text_at;
use common::*;

/// The address in the "metrics on http://ADDR/metrics" start line.
fn metrics_addr(server: &Server) -> String {
    assert!(
        server.wait_for_log("metrics on http://", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let log = server.log();
    let at = log.find("metrics on http://").expect("line") + "metrics on http://".len();
    log[at..].split('/').next().expect("address").to_string()
}

/// Whether curl is here; outside CI a missing curl skips the test (said
/// on standard error), in CI it fails it.
fn have_curl() -> bool {
    if Command::new("curl").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have curl (.ci/run installs it)"
    );
    eprintln!("curl is not installed: this metrics test did not run");
    false
}

fn curl(url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--max-time", "10", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (body.to_string(), code.to_string())
}

#[test]
fn metrics_and_stats_count_known_traffic() {
    if !have_curl() {
        return;
    }
    let dir = TempDir::new("metrics");
    let server = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let addr = metrics_addr(&server);
    for name in ["metrics01", "metrics02", "metrics03"] {
        let reply = text_at(
            server.addr,
            &format!("create_new_user {name} pw 20 m@x.org Metric User"),
        )
        .expect("reply");
        assert_eq!(reply.last().map(String::as_str), Some("OK"), "{reply:?}");
    }
    let missing = text_at(server.addr, "read_user nobody").expect("reply");
    assert!(
        missing.last().is_some_and(|l| l.starts_with("ERR not_found")),
        "{missing:?}"
    );
    let found = server.legacy(&frame("read_user", b"metrics01"));
    assert_eq!(found.len(), 260);
    let woot = text_at(server.addr, "write_woot metrics01 counted").expect("reply");
    assert_eq!(woot.last().map(String::as_str), Some("OK"), "{woot:?}");
    let follow = text_at(server.addr, "follow metrics01 metrics02").expect("reply");
    assert_eq!(follow.last().map(String::as_str), Some("OK"), "{follow:?}");

    let (page, code) = curl(&format!("http://{addr}/metrics"));
    assert_eq!(code, "200", "{page}");
    for line in [
        "wooter_requests_total{command=\"create_new_user\",outcome=\"ok\"} 3",
        "wooter_requests_total{command=\"read_user\",outcome=\"error\"} 1",
        "wooter_requests_total{command=\"read_user\",outcome=\"ok\"} 1",
        "wooter_requests_total{command=\"write_woot\",outcome=\"ok\"} 1",
        "wooter_request_duration_seconds_count{command=\"create_new_user\"} 3",
        "wooter_request_duration_seconds_bucket{command=\"read_user\",le=\"+Inf\"} 2",
        "wooter_users 3",
        "wooter_follows 1",
        "wooter_woots 1",
        "wooter_raft_is_leader 1",
        "wooter_storage_failed 0",
        "# TYPE wooter_raft_fsync_duration_seconds histogram",
    ] {
        assert!(page.lines().any(|l| l == line), "no line {line:?} in:\n{page}");
    }
    let syncs: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("wooter_raft_fsync_duration_seconds_count "))
        .and_then(|v| v.parse().ok())
        .expect("fsync count");
    assert!(syncs >= 5, "five writes, {syncs} syncs counted");
    let (_, code) = curl(&format!("http://{addr}/elsewhere"));
    assert_eq!(code, "404");

    let out = Command::new(BIN)
        .args(["stats", "--target", &server.addr.to_string()])
        .output()
        .expect("wooter stats");
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stats}");
    for want in [
        "users=3",
        "follows=1 woots=1",
        "create_new_user=3/0",
        "read_user=1/1",
        "storage=ok",
    ] {
        assert!(stats.contains(want), "no {want:?} in:\n{stats}");
    }
    assert!(stats.contains("latency_us p50=<="), "{stats}");
    let unreachable = Command::new(BIN)
        .args(["stats", "--target", "127.0.0.1:1"])
        .output()
        .expect("wooter stats");
    assert!(!unreachable.status.success());
}

#[test]
fn a_config_file_sets_the_options_and_the_command_line_overrides_it() {
    let dir = TempDir::new("config");
    let from_file = dir.path().join("from-file");
    let from_flag = dir.path().join("from-flag");
    let config = dir.path().join("wooter.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nmetrics_listen = \"127.0.0.1:0\"\nidle_timeout = 60\n",
            from_file.display()
        ),
    )
    .expect("write config");
    // The file alone.
    let server = Server::spawn(&["--config".into(), config.display().to_string()]);
    assert!(
        server
            .log()
            .contains(&format!("data directory {}", from_file.display())),
        "{}",
        server.log()
    );
    let _ = metrics_addr(&server);
    drop(server);
    // A flag after it wins.
    let server = Server::spawn(&[
        "--config".into(),
        config.display().to_string(),
        "--data-dir".into(),
        from_flag.display().to_string(),
    ]);
    assert!(
        server
            .log()
            .contains(&format!("data directory {}", from_flag.display())),
        "{}",
        server.log()
    );
    drop(server);
    // The example in contrib/ is valid: every key is an option.
    let example = repo_root().join("contrib/wooter.toml");
    let text = std::fs::read_to_string(&example).expect("contrib/wooter.toml");
    let local = text
        .replace("127.0.0.1:13090", "127.0.0.1:0")
        .replace("127.0.0.1:9187", "127.0.0.1:0")
        .replace("/var/lib/wooter", &dir.path().join("example").display().to_string());
    let example_copy = dir.path().join("example.toml");
    std::fs::write(&example_copy, local).expect("write");
    let server = Server::spawn(&["--config".into(), example_copy.display().to_string()]);
    let _ = metrics_addr(&server);
    drop(server);
    // A key that is no option is refused at start.
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nno_such_option = 1\n").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'no_such_option' is not an option"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wooter(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run wooter")
}

/// `wooter export SOURCE -o DUMP`, which must succeed.
fn export(source: &std::path::Path, dump: &std::path::Path) {
    let out = wooter(&["export".as_ref(), source.as_os_str(), "-o".as_ref(), dump.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `wooter import DUMP --data-dir TARGET`, as it ended.
fn import(dump: &std::path::Path, target: &std::path::Path) -> std::process::Output {
    wooter(&[
        "import".as_ref(),
        dump.as_os_str(),
        "--data-dir".as_ref(),
        target.as_os_str(),
    ])
}

#[test]
fn an_export_imported_gives_back_the_old_servers_directory_byte_for_byte() {
    let dir = TempDir::new("export-golden");
    let orig = dir.path().join("orig");
    copy_tree(&fixtures().join("data"), &orig);
    let dump = dir.path().join("dump.jsonl");
    let new = dir.path().join("new");
    export(&orig, &dump);
    let lines = std::fs::read_to_string(&dump).expect("dump").lines().count();
    assert_eq!(lines, 1 + 25, "a header and the fixture's 25 users");
    let out = import(&dump, &new);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checks clean"));
    assert!(
        tree(&orig) == tree(&new),
        "the imported directory differs from the original"
    );
    // Importing over an existing directory is refused.
    let again = import(&dump, &new);
    assert!(!again.status.success());
}

/// Every read the frontend makes, for every user, as reply bytes.
fn all_reads(server: &Server, users: &[String]) -> Vec<Vec<u8>> {
    let mut replies = Vec::new();
    for u in users {
        replies.push(server.legacy(&frame("read_user", u.as_bytes())));
        let rec = server.legacy(&frame("read_user", u.as_bytes()));
        for (cmd, arg) in [
            ("load_following", " followers 1000"),
            ("load_following", " followees 1000"),
            ("load_woots", " 1000"),
            ("load_woots_seq", " 1000"),
        ] {
            let mut payload = rec.clone();
            payload.extend_from_slice(arg.as_bytes());
            replies.push(server.legacy(&frame(cmd, &payload)));
        }
    }
    replies
}

#[test]
fn a_running_rms_snapshot_exports_and_imports_to_the_same_answers() {
    let dir = TempDir::new("export-live");
    let live = dir.path().join("live");
    copy_tree(&fixtures().join("data"), &live);
    let server = Server::start(&live, &[]);
    let mut users: Vec<String> = (0..25).map(|i| format!("member{i:03}")).collect();
    for i in 0..5 {
        let name = format!("live{i:02}");
        let reply = text_at(server.addr, &format!("create_new_user {name} pw 20 l@x.org Live {i}")).expect("reply");
        assert_eq!(reply.last().map(String::as_str), Some("OK"), "{reply:?}");
        let reply = text_at(server.addr, &format!("follow {name} member00{i}")).expect("reply");
        assert_eq!(reply.last().map(String::as_str), Some("OK"), "{reply:?}");
        let reply = text_at(
            server.addr,
            &format!("write_woot {name} [2026-12-03 -> 9:0{i}:00] live woot {i}"),
        )
        .expect("reply");
        assert_eq!(reply.last().map(String::as_str), Some("OK"), "{reply:?}");
        users.push(name);
    }
    let snap = text_at(server.addr, "snapshot").expect("reply");
    assert_eq!(snap.last().map(String::as_str), Some("OK"), "{snap:?}");
    let index = snap[0]
        .split(' ')
        .find_map(|w| w.strip_prefix("index="))
        .expect("index")
        .to_string();
    let file = std::fs::read_dir(live.join("raft/snapshots"))
        .expect("snapshots")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("snap-{index}-")))
        })
        .expect("the snapshot file");
    let dump = dir.path().join("dump.jsonl");
    export(&file, &dump);
    let new = dir.path().join("new");
    let out = import(&dump, &new);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = Server::start(&new, &[]);
    let before = all_reads(&server, &users);
    let after = all_reads(&restored, &users);
    assert_eq!(before.len(), after.len());
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        assert_eq!(a, b, "read {i} differs after export and import");
    }
    assert!(
        before.iter().filter(|r| r.len() >= 260).count() >= 30,
        "the reads found the users"
    );
}

#[test]
fn an_old_servers_directory_becomes_a_three_rm_cluster_by_joining() {
    let _serial = common::cluster::serial();
    let plan = common::cluster::Cluster::prepare(3, "upgrade", &[]);
    let addr = |k: u16| format!("127.0.0.1:{}", plan.base + k);
    copy_tree(&fixtures().join("data"), &plan.dirs[0]);
    let first = Server::spawn(&[
        "--id".into(),
        "1".into(),
        "--listen".into(),
        addr(1),
        "--data-dir".into(),
        plan.dirs[0].display().to_string(),
    ]);
    let joiners: Vec<Server> = (2..=3u16)
        .map(|k| {
            Server::spawn(&[
                "--id".into(),
                k.to_string(),
                "--join".into(),
                addr(1),
                "--listen".into(),
                addr(k),
                "--data-dir".into(),
                plan.dirs[k as usize - 1].display().to_string(),
            ])
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut voters = 0;
    while std::time::Instant::now() < deadline {
        let rms = text_at(first.addr, "rms").unwrap_or_default();
        voters = rms
            .iter()
            .filter(|l| l.contains("role=leader") || l.contains("role=follower"))
            .count();
        if voters == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(voters, 3, "{:?}", text_at(first.addr, "rms"));
    let reply = text_at(joiners[1].addr, "read_user member001").expect("reply");
    assert!(reply[0].starts_with("id=1 username=member001"), "{reply:?}");
    let dirs: Vec<&std::path::Path> = plan.dirs.iter().map(|d| d.as_path()).collect();
    assert!(
        common::cluster::converged(&dirs, Duration::from_secs(10)),
        "the joined RMs' data differs from the old directory's"
    );
    assert!(
        tree(&plan.dirs[2]) == tree(&fixtures().join("data")),
        "the old data changed on the way"
    );
}

#[test]
fn an_export_that_contradicts_itself_is_refused_and_leaves_no_directory() {
    let dir = TempDir::new("import-bad");
    let header = "{\"wooter_export\":1}\n";
    let user = |id: u32, followees: &str, followers: &str| {
        format!(
            "{{\"id\":{id},\"username\":\"u{id}\",\"password\":\"p\",\"name\":\"N\",\"age\":\"1\",\"email\":\"e\",\"status\":\"n\",\"followees\":[{followees}],\"followers\":[{followers}],\"woots\":[]}}\n"
        )
    };
    for (name, body) in [
        ("dangling", user(0, "7", "")),
        ("one-sided", format!("{}{}", user(0, "1", ""), user(1, "", ""))),
        ("self", user(0, "0", "0")),
        ("duplicate id", format!("{}{}", user(3, "", ""), user(3, "", ""))),
        ("huge id", user(4_294_967_295, "", "")),
        ("bad header", user(0, "", "")),
    ] {
        let dump = dir.path().join("dump.jsonl");
        let text = if name == "bad header" {
            body
        } else {
            format!("{header}{body}")
        };
        std::fs::write(&dump, text).expect("write");
        let target = dir.path().join("target");
        let out = import(&dump, &target);
        assert!(!out.status.success(), "{name}: imported");
        assert!(!target.exists(), "{name}: a directory was left behind");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("importing"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: a half-built directory was left");
    }
}

#[test]
fn silent_scrapers_are_closed_and_cannot_starve_the_client_port() {
    if !have_curl() {
        return;
    }
    let dir = TempDir::new("scrapers");
    let server = Server::start(
        dir.path(),
        &["--metrics-listen", "127.0.0.1:0", "--partial-timeout", "1"],
    );
    let addr: std::net::SocketAddr = metrics_addr(&server).parse().expect("address");
    // More silent scrapers than the port takes at once.
    let mut silent = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = std::net::TcpStream::connect(addr) {
            silent.push(s);
        }
    }
    let reply = text_at(server.addr, "stats").expect("stats beside the scrapers");
    assert_eq!(reply.last().map(String::as_str), Some("OK"));
    // After the partial timeout they are closed: a read sees the end.
    std::thread::sleep(Duration::from_millis(2_500));
    let mut closed = 0;
    for s in &mut silent {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let mut buf = [0u8; 1];
        if matches!(s.read(&mut buf), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, silent.len(), "silent scrapers still open");
    let (page, code) = curl(&format!("http://{addr}/metrics"));
    assert_eq!(code, "200", "{page}");
}
