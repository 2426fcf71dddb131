//! `ag mcp`: an MCP server over stdio (cli-mcp-config §3) built on the official Rust SDK
//! (`rmcp`). Every tool is a thin REST call to an Aegis server through `aegis-client`.
//!
//! * stdout carries protocol frames only; logs go to stderr (`AEGIS_MCP_LOG`, default `warn`).
//! * Start-up never waits for the backend: `initialize` is answered at once while the server
//!   URL is probed in the background; tool calls wait for that probe (and for an embedded
//!   server to come up).
//! * Backend (§3.1): an Aegis server answering at the URL is used. Otherwise, unless
//!   `--no-embedded`, a full server is started **in this process** through [`EmbeddedServer`],
//!   which the `ag` binary supplies (this crate cannot depend on the CLI crate that depends on
//!   it); on stdin EOF (or SIGINT/SIGTERM) it is shut down gracefully.
//! * The process never exits on bad input: every failure of a call is a tool error or a
//!   JSON-RPC error.

pub mod backend;
pub mod catalogue;
pub mod prompts;
pub mod server;
pub mod tools;
pub mod validate;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aegis_client::{Client, ClientError};
use anyhow::Context as _;
use rmcp::ServiceExt as _;
use tokio::sync::{oneshot, watch};

use crate::backend::{Backend, Resolution};
pub use crate::server::AegisMcp;

/// A future that completes when the embedded server must stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts a full Aegis server inside this process (implemented by the `ag` binary with the
/// same code as `ag serve`).
pub trait EmbeddedServer: Send + Sync {
    /// Run a server listening at `base_url` until `shutdown` completes, then stop it
    /// gracefully. Resolves when the server has stopped; `Err` = it could not start (the
    /// message says why).
    fn run(
        &self,
        base_url: String,
        shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

/// Options of `ag mcp`.
pub struct McpOptions {
    /// Resolved server URL (cli-mcp-config §1.2).
    pub base_url: String,
    /// Resolved credential, sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// `--no-embedded`: never start a server.
    pub no_embedded: bool,
    /// How to start an in-process server (`None` = cannot).
    pub embedded: Option<Arc<dyn EmbeddedServer>>,
}

impl std::fmt::Debug for McpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpOptions")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("no_embedded", &self.no_embedded)
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

/// True for URLs whose host is a loopback address (an embedded server may serve them).
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or("");
    let host = if let Some(r) = rest.strip_prefix('[') {
        r.split(']').next().unwrap_or("")
    } else {
        rest.rsplit_once(':').map_or(rest, |(h, _)| h)
    };
    matches!(host, "localhost" | "::1") || host.starts_with("127.")
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let level = std::env::var("AEGIS_MCP_LOG").unwrap_or_else(|_| "warn".to_owned());
    let filter = EnvFilter::try_new(format!("{level},hyper=warn,h2=warn,rmcp=warn"))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Probe the URL and, when nothing answers, start the embedded server.
async fn resolve(
    client: Client,
    opts_no_embedded: bool,
    embedded: Option<Arc<dyn EmbeddedServer>>,
    tx: watch::Sender<Resolution>,
    stop: oneshot::Receiver<()>,
    stopped: oneshot::Sender<()>,
) {
    let url = client.base_url().to_owned();
    let probe = client.health().await;
    let unreachable = match probe {
        Ok(_) => {
            let _ = tx.send(Resolution::Ready { embedded: false });
            return;
        }
        Err(ClientError::NotAegis { .. }) => {
            let _ = tx.send(Resolution::Unavailable {
                message: format!(
                    "{url} answers, but it is not an Aegis server; point ag mcp elsewhere with --url or AEGIS_BASE_URL (or pick a free port with AEGIS_PORT)"
                ),
                retry: false,
            });
            return;
        }
        Err(e) => e,
    };
    let embedded = match embedded {
        Some(e) if !opts_no_embedded && is_loopback_url(&url) => e,
        _ => {
            tracing::info!("no Aegis server at {url}: {unreachable}");
            let _ = tx.send(Resolution::Unavailable {
                message: format!("{unreachable}"),
                retry: true,
            });
            return;
        }
    };
    tracing::info!("no Aegis server at {url}; starting one in this process");
    let shutdown: Shutdown = Box::pin(async move {
        let _ = stop.await;
    });
    // Its own task: the server must keep running while this one awaits health probes.
    let mut server = tokio::spawn(embedded.run(url.clone(), shutdown));
    let start = tokio::time::Instant::now();
    loop {
        tokio::select! {
            r = &mut server => {
                let message = match r {
                    Ok(Ok(())) => "the embedded Aegis server stopped".to_owned(),
                    Ok(Err(m)) => format!("could not start an Aegis server at {url}: {m}"),
                    Err(e) => format!("the embedded Aegis server failed: {e}"),
                };
                tracing::error!("{message}");
                let _ = tx.send(Resolution::Unavailable { message, retry: false });
                let _ = stopped.send(());
                return;
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if tx.borrow().clone() == Resolution::Pending {
                    if client.health().await.is_ok() {
                        tracing::info!("embedded Aegis server listening at {url}");
                        let _ = tx.send(Resolution::Ready { embedded: true });
                    } else if start.elapsed() > backend::START_WAIT {
                        let _ = tx.send(Resolution::Unavailable {
                            message: format!("the embedded Aegis server did not answer at {url} within {} s", backend::START_WAIT.as_secs()),
                            retry: true,
                        });
                    }
                }
            }
        }
    }
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Serve MCP on stdin/stdout until EOF (or SIGINT/SIGTERM).
pub async fn run_stdio(opts: McpOptions) -> anyhow::Result<()> {
    init_logging();
    let client = Client::new(&opts.base_url, opts.token.clone())
        .with_context(|| format!("invalid server URL {}", opts.base_url))?;
    let (tx, rx) = watch::channel(Resolution::Pending);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (stopped_tx, stopped_rx) = oneshot::channel();
    let resolver = tokio::spawn(resolve(
        client.clone(),
        opts.no_embedded,
        opts.embedded.clone(),
        tx,
        stop_rx,
        stopped_tx,
    ));
    let backend = Backend::new(client, rx.clone());
    let handler = AegisMcp::new(backend);
    let served = tokio::select! {
        r = handler.clone().serve(rmcp::transport::stdio()) => Some(r),
        () = terminated() => None,
    };
    if let Some(Ok(running)) = served {
        tokio::select! {
            r = running.waiting() => {
                if let Err(e) = r {
                    tracing::warn!("MCP service ended abnormally: {e}");
                }
            }
            () = terminated() => {}
        }
    } else if let Some(Err(e)) = served {
        // A client that closes before `initialize` is not an error worth a non-zero exit.
        tracing::info!("MCP session ended before initialisation: {e}");
    }
    handler.close();
    // Stop an embedded server gracefully (sessions are stopped as by `ag serve`).
    let embedded = matches!(*rx.borrow(), Resolution::Ready { embedded: true });
    let _ = stop_tx.send(());
    if embedded {
        let _ = tokio::time::timeout(Duration::from_secs(20), stopped_rx).await;
    }
    resolver.abort();
    Ok(())
}

/// Synchronous entry point: build a runtime and [`run_stdio`]; exit code 0, or 1 with the
/// error on stderr.
pub fn run(opts: McpOptions) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let r = rt.block_on(run_stdio(opts));
    // stdin may still be held by a blocking reader thread; do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(100));
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
