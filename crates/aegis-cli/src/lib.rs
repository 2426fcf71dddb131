//! The `ag` command line (alias `aegis`).

use clap::Parser;

/// Aegis: a self-hosted control plane for coding-agent sessions.
#[derive(Parser)]
#[command(name = "ag", version = concat!(env!("CARGO_PKG_VERSION"), " (ACP protocol 1)"))]
struct Cli {}

/// Entry point shared by the `ag` and `aegis` binaries.
pub fn main_entry() -> std::process::ExitCode {
    let _cli = Cli::parse();
    std::process::ExitCode::SUCCESS
}
