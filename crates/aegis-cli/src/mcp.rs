//! `ag mcp [--no-embedded]` (cli-mcp-config §3): the stdio MCP server of the `aegis-mcp` crate,
//! with the URL and credential resolved as for every client command (§1.2) and, when no server
//! answers, a full server started in this process with the code of `ag serve`
//! ([`crate::serve::serve_until`]) — supplied to `aegis-mcp` as an [`aegis_mcp::EmbeddedServer`]
//! because that crate cannot depend on this one.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::{cmd, config, serve};

#[derive(Args, Debug, Clone)]
pub struct McpArgs {
    /// Never start a server in this process; tools fail with SERVER_UNREACHABLE when none runs.
    #[arg(long)]
    pub no_embedded: bool,
}

/// The in-process server: the configuration as `ag serve` loads it, listening on the port of
/// the resolved URL.
struct Embedded {
    config: Option<PathBuf>,
}

impl aegis_mcp::EmbeddedServer for Embedded {
    fn run(
        &self,
        base_url: String,
        shutdown: aegis_mcp::Shutdown,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        let explicit = self.config.clone();
        Box::pin(async move {
            let file = config::find_config_file(explicit.as_deref());
            if let Some(f) = &file {
                if !f.is_file() {
                    return Err(format!("config file {} does not exist", f.display()));
                }
            }
            let mut loaded = config::load(file.as_deref()).map_err(|e| format!("{e:#}"))?;
            if let Some(p) = config::url_port(&base_url) {
                loaded.config.port = p;
            }
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            if serve::serve_until(loaded, shutdown).await == ExitCode::SUCCESS {
                Ok(())
            } else {
                Err("the server failed (see the error above on stderr)".to_owned())
            }
        })
    }
}

/// `ag mcp`.
pub fn run(global: &cmd::Global, a: &McpArgs) -> ExitCode {
    let ctx = cmd::Ctx::new(global);
    aegis_mcp::run(aegis_mcp::McpOptions {
        base_url: ctx.base_url.clone(),
        token: ctx.token.as_ref().map(|(t, _)| t.clone()),
        no_embedded: a.no_embedded,
        embedded: Some(Arc::new(Embedded {
            config: global.config.clone(),
        })),
    })
}
