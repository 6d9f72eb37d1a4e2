//! `wooter export` and `wooter import`: the command-line side of
//! `storage::dump` (sources, files, progress bars).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::storage::{dump, Store};

/// A progress bar on standard error for `len` steps (hidden when small).
fn bar(len: u64, what: &str) -> ProgressBar {
    if len < 1_000 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(&format!("{what} {{bar:40}} {{pos}}/{{len}} {{eta}}")) {
        bar.set_style(style);
    }
    bar
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Exports `source` (a data directory or a snapshot file) to `output` or
/// standard output.
pub fn export(source: &Path, output: Option<&Path>) -> Result<(), String> {
    let mut _scratch = None;
    let root = if source.is_file() {
        // A snapshot of a running RM: unpacked (and checked) into a scratch
        // directory, so the RM is not disturbed.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("wooter-export-{}-{nanos}", std::process::id()));
        // Made here, not found: never a directory someone else prepared.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let scratch = Scratch(dir.clone());
        crate::raft::snapshot::install(source, &dir, &dir.join("raft"))
            .map_err(|e| format!("{}: not a readable snapshot: {e}", source.display()))?;
        _scratch = Some(scratch);
        dir
    } else if source.join("users").is_dir() {
        source.to_path_buf()
    } else {
        return Err(format!(
            "{} is neither a data directory nor a snapshot file",
            source.display()
        ));
    };
    let store = Store::open(&root).map_err(|e| e.to_string())?;
    let bar = bar(store.max_id().map_or(0, |m| u64::from(m) + 1), "exporting");
    let result = match output {
        Some(path) => {
            // It holds every password: readable by its owner only.
            let file = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().write(true).create(true).truncate(true),
                0o600,
            )
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut out = BufWriter::new(file);
            dump::export(&store, &mut out, |_| bar.inc(1))
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            dump::export(&store, &mut out, |_| bar.inc(1))
                .and_then(|n| out.flush().map(|()| n).map_err(|e| e.to_string()))
        }
    };
    bar.finish_and_clear();
    let users = result?;
    eprintln!("exported {users} users from {}", source.display());
    Ok(())
}

/// Line breaks in a file, read in blocks (for the progress bar).
fn count_lines(file: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = File::open(file)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// Imports `file` into the new data directory `data_dir`.
pub fn import(file: &Path, data_dir: &Path) -> Result<(), String> {
    let lines = count_lines(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let input = BufReader::new(File::open(file).map_err(|e| format!("{}: {e}", file.display()))?);
    let bar = bar(lines.saturating_sub(1), "importing");
    let users = dump::import(input, data_dir, |_| bar.inc(1))?;
    bar.finish_and_clear();
    let report = crate::storage::check::check(data_dir).map_err(|e| e.to_string())?;
    if !report.is_clean() {
        return Err(format!(
            "imported {users} users into {}, but it does not check clean: {:?}",
            data_dir.display(),
            report.problems
        ));
    }
    eprintln!(
        "imported {users} users, {} follows, {} woots into {} (checks clean)",
        report.follows,
        report.woots,
        data_dir.display()
    );
    Ok(())
}
