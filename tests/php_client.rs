//! The PHP client in `tests/php/` (framing requests exactly as the frontend
//! does) against a real server. Runs when `php` is installed; in CI (where
//! `.ci/run` installs php-cli) a missing `php` is a failure.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_php_client_gets_correct_answers() {
    if Command::new("php").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have php installed (.ci/run installs php-cli)"
        );
        eprintln!("php is not installed: the PHP client test did not run");
        return;
    }
    let dir = TempDir::new("php");
    let server = Server::start(dir.path(), &[]);
    let out = Command::new("php")
        .arg(repo_root().join("tests/php/client.php"))
        .arg(server.addr.to_string())
        .output()
        .expect("run php");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "php client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checks, 0 failed"), "{stdout}");
}
