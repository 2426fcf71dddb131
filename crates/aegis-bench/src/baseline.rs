//! `aegis-bench --baseline-server <port> <file>`: a bare axum server that answers every `GET`
//! with the exact bytes of `<file>` (`Content-Type: application/json`). Same runtime shape as
//! `ag serve` (multi-threaded tokio, all cores) and the same HTTP stack (axum 0.8, hyper 1), so
//! the req/s ratio measures what the server adds on top.
//!
//! It stops by itself: when its parent (the bench) goes away or after [`MAX_LIFETIME`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;

const MAX_LIFETIME: Duration = Duration::from_secs(600);

pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aegis-bench --baseline-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let [port, file] = args else {
        anyhow::bail!("usage: aegis-bench --baseline-server <port> <file>");
    };
    let port: u16 = port.parse().context("bad port")?;
    let file = PathBuf::from(file);
    let body = Bytes::from(
        std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?,
    );
    let parent = std::os::unix::process::parent_id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = Router::new().fallback(move || {
            let body = body.clone();
            async move { ([(CONTENT_TYPE, "application/json")], body) }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let stop = async move {
            let deadline = tokio::time::Instant::now() + MAX_LIFETIME;
            while tokio::time::Instant::now() < deadline
                && std::os::unix::process::parent_id() == parent
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .context("baseline server")
    })
}
