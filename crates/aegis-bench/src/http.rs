//! A minimal HTTP/1.1 keep-alive client over a raw `TcpStream` and the load generator built on
//! it. It is deliberately lean (one pre-built request, no header maps, bodies skipped unless
//! asked for) so that the client costs as little CPU as possible on a machine it shares with
//! the server.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::Summary;

/// One request may take this long before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Latency samples kept per connection (bounds memory whatever the rate).
const MAX_SAMPLES_PER_CONN: usize = 2_000_000;

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub close: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `GET <path>` as sent by the load generator (keep-alive is the HTTP/1.1 default).
pub fn get_request(port: u16, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n")
        .into_bytes()
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(port: u16) -> Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connect 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    async fn fill(&mut self) -> Result<()> {
        self.buf.reserve(64 * 1024);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        Ok(())
    }

    /// Send `req` and read one response (Content-Length or chunked body).
    pub async fn request(&mut self, req: &[u8], keep_body: bool) -> Result<Response> {
        self.stream.write_all(req).await?;
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("non-UTF-8 headers")?;
        let (status, len, chunked, close) = parse_head(head)?;
        let mut body = Vec::new();
        let mut pos = head_end;
        if let Some(n) = len {
            while self.buf.len() < pos + n {
                self.fill().await?;
            }
            if keep_body {
                body.extend_from_slice(&self.buf[pos..pos + n]);
            }
            pos += n;
        } else if chunked {
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf[pos..], b"\r\n") {
                        break pos + p;
                    }
                    self.fill().await?;
                };
                let line = std::str::from_utf8(&self.buf[pos..line_end])?;
                let size_hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_hex, 16)
                    .with_context(|| format!("bad chunk size {line:?}"))?;
                pos = line_end + 2;
                while self.buf.len() < pos + size + 2 {
                    self.fill().await?;
                }
                if keep_body {
                    body.extend_from_slice(&self.buf[pos..pos + size]);
                }
                pos += size + 2;
                if size == 0 {
                    break;
                }
            }
        } else {
            bail!("response without Content-Length or chunked body");
        }
        self.buf.drain(..pos);
        Ok(Response {
            status,
            body,
            close,
        })
    }
}

/// `(status, content-length, chunked, connection: close)`.
fn parse_head(head: &str) -> Result<(u16, Option<usize>, bool, bool)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut len = None;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            len = Some(v.parse().context("bad Content-Length")?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    Ok((status, len, chunked, close))
}

/// One `GET` on a fresh connection; the body must come with a 200.
pub async fn fetch(port: u16, path: &str) -> Result<Vec<u8>> {
    let mut c = Conn::connect(port).await?;
    let r = c.request(&get_request(port, path), true).await?;
    if r.status != 200 {
        bail!(
            "GET {path} → {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(r.body)
}

/// Blocking: the status of one `GET` on a fresh connection (`None` when the connection fails).
/// Used where a tokio timer's 1 ms granularity would blur the measurement (cold start).
pub fn blocking_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if find(&buf, b"\r\n").is_some() {
            break;
        }
    }
    let line = std::str::from_utf8(&buf).ok()?.lines().next()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Result of one load run.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub rps: f64,
    pub latency: Summary,
    /// Every latency sample (ms), for merging runs.
    pub samples_ms: Vec<f64>,
}

impl LoadResult {
    /// Several runs against the same target as one.
    pub fn merge(runs: Vec<LoadResult>) -> LoadResult {
        let requests = runs.iter().map(|r| r.requests).sum::<u64>();
        let errors = runs.iter().map(|r| r.errors).sum();
        let seconds = runs.iter().map(|r| r.seconds).sum::<f64>();
        let samples_ms: Vec<f64> = runs.into_iter().flat_map(|r| r.samples_ms).collect();
        LoadResult {
            requests,
            errors,
            seconds,
            rps: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            latency: Summary::of(samples_ms.clone()),
            samples_ms,
        }
    }
}

/// `conns` keep-alive connections each sending `GET path` back to back: first `warmup`
/// (not recorded), then `duration` (recorded: requests started inside the window).
pub async fn load(
    port: u16,
    path: &str,
    conns: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<LoadResult> {
    let req = Arc::new(get_request(port, path));
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + duration;
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(port).await?;
            let mut lat_us: Vec<u64> = Vec::with_capacity(64 * 1024);
            let mut errors = 0u64;
            loop {
                let t = Instant::now();
                if t >= until || lat_us.len() >= MAX_SAMPLES_PER_CONN {
                    break;
                }
                let r = tokio::time::timeout(REQUEST_TIMEOUT, conn.request(&req, false)).await;
                let ok = match r {
                    Ok(Ok(resp)) => {
                        if resp.close {
                            conn = Conn::connect(port).await?;
                        }
                        resp.status == 200
                    }
                    _ => {
                        conn = Conn::connect(port).await?;
                        false
                    }
                };
                if t >= measure_from {
                    if ok {
                        lat_us.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    } else {
                        errors += 1;
                    }
                }
            }
            anyhow::Ok((lat_us, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.context("load task panicked")??;
        all.extend(lat);
        errors += e;
    }
    let seconds = duration.as_secs_f64();
    let requests = all.len() as u64;
    let ms: Vec<f64> = all.iter().map(|us| *us as f64 / 1000.0).collect();
    Ok(LoadResult {
        requests,
        errors,
        seconds,
        rps: requests as f64 / seconds,
        latency: Summary::of(ms.clone()),
        samples_ms: ms,
    })
}
