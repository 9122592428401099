//! `docs/CONFIGURATION.md`, generated from the flag definitions and the
//! `--config` file's keys, so the reference cannot drift from the code. The
//! test below fails when the file differs; `CHRONIK_UPDATE_DOCS=1 cargo test
//! -p chronik-server config_reference` writes it.

use std::fmt::Write;

use clap::{Arg, Args, CommandFactory};

use crate::cli::{Cli, RaftClusterArgs};
use crate::security_args::{ListenerArgs, PeerSecurityArgs};

/// The keys a table of the config file takes, from serde's own error for an
/// unknown key (it lists every expected one).
fn file_keys(probe: &str) -> Vec<String> {
    let message = crate::cli::parse_config_file(probe)
        .map(|_| ())
        .expect_err("an unknown key is refused")
        .to_string();
    let list = message
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("no key list in: {message}"))
        .1;
    list.split(", ")
        .map(|key| key.trim().trim_matches('`').to_string())
        .take_while(|key| !key.is_empty())
        .collect()
}

fn ids<T: Args>() -> Vec<String> {
    T::augment_args(clap::Command::new("probe"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect()
}

/// One row per flag: the flag, its variable, its key in the file, and what it does.
fn table(out: &mut String, args: &[&Arg], table_name: Option<&str>, keys: &[String]) {
    out.push_str("| Flag | Environment | In `--config` | Meaning |\n|---|---|---|---|\n");
    for arg in args {
        let long = arg.get_long().expect("every setting has a long flag");
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_string())
            .filter(|v| arg.get_action().takes_values() && !matches!(v.as_str(), "true" | "false"))
            .collect();
        let value = if !arg.get_action().takes_values() {
            String::new()
        } else if !choices.is_empty() {
            format!(" {}", choices.join("\\|"))
        } else {
            arg.get_value_names()
                .and_then(|names| names.first())
                .map(|name| format!(" {name}"))
                .unwrap_or_default()
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let key = long.replace('-', "_");
        let in_file = if keys.contains(&key) {
            match table_name {
                Some(table) => format!("`{key}` in `[{table}]`"),
                None => format!("`{key}`"),
            }
        } else {
            "—".to_string()
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        let _ = writeln!(out, "| `--{long}{value}` | {env} | {in_file} | {help} |");
    }
    out.push('\n');
}

pub fn render() -> String {
    let cli = Cli::command();
    let security: Vec<String> = ids::<ListenerArgs>()
        .into_iter()
        .chain(ids::<PeerSecurityArgs>())
        .collect();
    let settings: Vec<&Arg> = cli
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    let (security_args, server_args): (Vec<&Arg>, Vec<&Arg>) = settings
        .into_iter()
        .partition(|a| security.contains(&a.get_id().to_string()));
    let cluster = RaftClusterArgs::augment_args(clap::Command::new("raft-cluster"));
    let cluster_args: Vec<&Arg> = cluster.get_arguments().filter(|a| a.get_long().is_some()).collect();

    let mut out = String::new();
    out.push_str(
        "# Configuration reference\n\n\
         Generated from the flag definitions of `chronik-server` by\n\
         `CHRONIK_UPDATE_DOCS=1 cargo test -p chronik-server config_reference`;\n\
         a test fails when this file and the flags differ.\n\n\
         Every setting can be given three ways. A flag wins over its environment\n\
         variable, which wins over the `--config` TOML file, which wins over the\n\
         default. In the file, keys are the flag names with `_` for `-`; cluster\n\
         settings go in a `[raft_cluster]` table and listener and security\n\
         settings in a `[security]` table. Unknown keys are an error. Secrets\n\
         (`--cluster-secret`, `--bootstrap-user`) are not read from the file:\n\
         give them as files (`--cluster-secret-file`, `--bootstrap-users-file`)\n\
         or variables.\n\n\
         ## Server\n\n",
    );
    table(&mut out, &server_args, None, &file_keys("zzz_unknown = 0"));
    out.push_str(
        "## Listeners and security\n\n\
         The `--cluster-secret*` and `--peer-tls-*` flags also apply to the\n\
         `cluster` and `user` commands, which call a node's gRPC port.\n\n",
    );
    table(
        &mut out,
        &security_args,
        Some("security"),
        &file_keys("[security]\nzzz_unknown = 0"),
    );
    out.push_str("## Cluster (`chronik-server [flags] raft-cluster …`)\n\n");
    table(
        &mut out,
        &cluster_args,
        Some("raft_cluster"),
        &file_keys("[raft_cluster]\nzzz_unknown = 0"),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn docs_configuration_md_is_generated_from_the_flags() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIGURATION.md");
        let rendered = super::render();
        if std::env::var_os("CHRONIK_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &rendered).unwrap();
        }
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            written == rendered,
            "docs/CONFIGURATION.md differs from the flags; regenerate it with \
             CHRONIK_UPDATE_DOCS=1 cargo test -p chronik-server config_reference"
        );
    }
}
