//! `ferroserve serve --config FILE` (or `FERROSERVE_CONFIG`): a TOML file whose keys are the
//! long names of `serve`'s flags (`data-dir = "/var/lib/ferroserve"`, `prediction-log =
//! ["sqlite", "redis://127.0.0.1:6379"]`; `_` for `-` is accepted). Its values become the
//! flags' defaults, so the command line wins over the environment, which wins over the file,
//! which wins over the built-in defaults. An unknown key is refused, naming it.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context};
use clap::Command;

/// The flag naming the file, and its variable.
pub const FLAG: &str = "config";
pub const ENV: &str = "FERROSERVE_CONFIG";

/// The config file `args` (the whole command line) or the environment names for `serve`.
pub fn named(args: &[OsString]) -> Option<OsString> {
    let serve = args.iter().position(|a| a == "serve")?;
    let mut it = args[serve + 1..].iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            break;
        }
        if s == format!("--{FLAG}") {
            return it.next().cloned();
        }
        if let Some(v) = s.strip_prefix(&format!("--{FLAG}=")) {
            return Some(v.into());
        }
    }
    std::env::var_os(ENV).filter(|v| !v.is_empty())
}

/// `cmd` with the `serve` flags' defaults taken from the TOML file at `path`.
pub fn apply(cmd: Command, path: &Path) -> anyhow::Result<Command> {
    let shown = path.file_name().map_or_else(
        || "the config file".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let text = std::fs::read_to_string(path).with_context(|| format!("--config {shown}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("--config {shown}: {}", e.message()))?;
    let serve = cmd
        .get_subcommands()
        .find(|c| c.get_name() == "serve")
        .expect("a serve command");
    let mut defaults: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        let Some(arg) = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()) && flag != FLAG)
        else {
            bail!("--config {shown}: unknown key `{key}`: the keys are the long names of `ferroserve serve`'s flags (see `ferroserve serve --help`)");
        };
        let values = match value {
            toml::Value::Array(items) => items
                .iter()
                .map(|v| scalar(v).ok_or(()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|()| {
                    anyhow::anyhow!("--config {shown}: `{key}`: expected a list of strings, numbers or booleans")
                })?,
            v => vec![scalar(v).ok_or_else(|| {
                anyhow::anyhow!("--config {shown}: `{key}`: expected a string, a number or a boolean")
            })?],
        };
        if values.len() > 1
            && arg.get_num_args().is_none_or(|n| n.max_values() <= 1)
            && !matches!(arg.get_action(), clap::ArgAction::Append)
        {
            bail!("--config {shown}: `{key}` takes one value");
        }
        defaults.push((arg.get_id().to_string(), values));
    }
    Ok(cmd.mut_subcommand("serve", |mut serve| {
        for (id, values) in defaults {
            serve = serve.mut_arg(id, |a| {
                let values: Vec<clap::builder::OsStr> =
                    values.into_iter().map(Into::into).collect();
                a.default_values(values)
            });
        }
        serve
    }))
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}
