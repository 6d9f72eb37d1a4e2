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
        let dir = std::env::temp_dir().join(format!("wooter-export-{}", std::process::id()));
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
            let mut out = BufWriter::new(File::create(path).map_err(|e| format!("{}: {e}", path.display()))?);
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

/// Imports `file` into the new data directory `data_dir`.
pub fn import(file: &Path, data_dir: &Path) -> Result<(), String> {
    let lines = std::fs::read(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64;
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
