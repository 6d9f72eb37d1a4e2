//! `wooter serve --config FILE`: every option from a TOML file, the
//! command line overriding it.
//!
//! The file's keys are the long option names (with `_` or `-`), so the
//! file and the flags can never drift apart: the file is turned into
//! flags placed before the command line's own, and clap reads both (a
//! later flag overrides an earlier one). An unknown key is refused as an
//! unknown flag would be.

use std::ffi::OsString;

/// The command line with the `--config` file's options inserted after
/// `serve`; unchanged without `--config`.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(serve_at) = args.iter().position(|a| a == "serve") else {
        return Ok(args);
    };
    let mut file = None;
    for (i, a) in args.iter().enumerate().skip(serve_at + 1) {
        let a = a.to_string_lossy();
        if a == "--config" {
            file = args.get(i + 1).cloned();
        } else if let Some(f) = a.strip_prefix("--config=") {
            file = Some(OsString::from(f));
        }
    }
    let Some(file) = file else { return Ok(args) };
    let path = std::path::PathBuf::from(&file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let flags = flags_of(&text).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let mut out: Vec<OsString> = args[..=serve_at].to_vec();
    out.extend(flags.into_iter().map(OsString::from));
    out.extend(args[serve_at + 1..].iter().cloned());
    Ok(out)
}

/// The long options of `wooter serve`, and whether each takes a value.
fn serve_options() -> Vec<(String, bool)> {
    use clap::CommandFactory;
    let cli = super::Cli::command();
    let Some(serve) = cli.find_subcommand("serve") else {
        return Vec::new();
    };
    serve
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?.to_string(), a.get_action().takes_values())))
        .filter(|(name, _)| !matches!(name.as_str(), "help" | "version" | "config"))
        .collect()
}

/// The flags a TOML document stands for.
fn flags_of(text: &str) -> Result<Vec<String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
    let options = serve_options();
    let mut seen = std::collections::HashSet::new();
    let mut flags = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        if name == "config" {
            return Err("a config file cannot name another config file".into());
        }
        let Some(&(_, takes_value)) = options.iter().find(|(o, _)| *o == name) else {
            return Err(format!("'{key}' is not an option of wooter serve"));
        };
        if !seen.insert(name.clone()) {
            return Err(format!("'{key}' is given twice (as {name} and with _ or -)"));
        }
        let flag = format!("--{name}");
        match value {
            toml::Value::Boolean(_) if takes_value => {
                return Err(format!("{key}: wants a value, not true or false"));
            }
            toml::Value::Boolean(true) => flags.push(flag),
            toml::Value::Boolean(false) => {}
            _ if !takes_value => return Err(format!("{key}: is a switch: true or false")),
            toml::Value::String(s) => flags.push(format!("{flag}={s}")),
            toml::Value::Integer(n) => flags.push(format!("{flag}={n}")),
            toml::Value::Array(items) => {
                let items: Result<Vec<String>, String> = items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s.clone()),
                        toml::Value::Integer(n) => Ok(n.to_string()),
                        other => Err(format!("{key}: {} is not a string or a number", other.type_str())),
                    })
                    .collect();
                flags.push(format!("{flag}={}", items?.join(",")));
            }
            other => {
                return Err(format!(
                    "{key}: a {} is not a string, number, boolean or list",
                    other.type_str()
                ))
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_becomes_flags_before_the_command_line() {
        let flags = flags_of(
            "listen = \"127.0.0.1:5000\"\nstale_reads = true\nidle-timeout = 60\npeers = [\"1=127.0.0.1:1\", \"2=127.0.0.1:2\"]\nworkers = 4\nenable_test_partition = false\n",
        )
        .unwrap();
        assert_eq!(
            flags,
            [
                "--idle-timeout=60",
                "--listen=127.0.0.1:5000",
                "--peers=1=127.0.0.1:1,2=127.0.0.1:2",
                "--stale-reads",
                "--workers=4"
            ]
        );
        assert!(flags_of("config = \"x\"").is_err());
        assert!(flags_of("help = true").is_err(), "not an option to set");
        assert!(flags_of("typo_key = false").is_err(), "unknown, even when false");
        assert!(flags_of("\"listen=1.2.3.4:5\" = true").is_err());
        assert!(flags_of("data_dir = \"a\"\ndata-dir = \"b\"").is_err());
        assert!(flags_of("listen = false").is_err());
        assert!(flags_of("stale_reads = \"yes\"").is_err());
        assert!(flags_of("listen = [1.5]").is_err());
        assert!(flags_of("not toml at all").is_err());
    }
}
