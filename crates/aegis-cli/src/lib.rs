//! The `ag` command line (alias `aegis`): the server (`ag` / `ag serve`) and, later, the
//! clients of its REST API.

pub mod config;
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (ACP protocol 1)");

/// Aegis: a self-hosted control plane for coding-agent sessions.
#[derive(Parser, Debug)]
#[command(name = "ag", version = VERSION, disable_help_subcommand = true)]
pub struct Cli {
    /// Config file (default: .aegis/config.yaml, then ~/.aegis/config.yaml, ...).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Listen port for `serve`.
    #[arg(long, global = true, value_name = "N")]
    pub port: Option<u16>,
    /// JSON log lines on stderr.
    #[arg(long, global = true)]
    pub json_logs: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server in the foreground (the default when no command is given).
    Serve {
        /// Bind address (default 127.0.0.1; AEGIS_HOST).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
}

/// Entry point shared by the `ag` and `aegis` binaries.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 2,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let host = match &cli.command {
        Some(Command::Serve { host }) => host.clone(),
        None => None,
    };
    serve::run(serve::ServeArgs {
        config: cli.config,
        port: cli.port,
        host,
        json_logs: cli.json_logs,
    })
}
