//! A lean Server-Sent Events reader: one raw HTTP/1.1 connection per stream, the chunked body
//! decoded by hand, frames split on blank lines. Each frame carries the wall-clock time (epoch
//! ms, sub-millisecond) at which the read that completed it returned — taken before any parsing,
//! and with no task hop between the socket and the stamp.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Epoch milliseconds with sub-millisecond precision.
pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// One frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
    /// When the bytes completing this frame arrived (epoch ms).
    pub recv_ms: f64,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Waiting for a `size\r\n` line.
    Size,
    /// This many body bytes of the current chunk are still to come.
    Data(usize),
    /// The `\r\n` after a chunk's data.
    Crlf,
    /// The zero-size chunk was seen: the server closed the stream.
    Done,
}

/// An open event stream.
pub struct Sse {
    stream: TcpStream,
    chunked: bool,
    state: Chunk,
    /// Received bytes not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet split into frames.
    body: Vec<u8>,
    frames: VecDeque<Frame>,
    closed: bool,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Sse {
    /// `GET path` on 127.0.0.1:`port` as an event stream; the response must be a 200.
    pub async fn open(port: u16, path: &str) -> Result<Sse> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connect 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::with_capacity(16 * 1024);
        let head_end = loop {
            if let Some(p) = find(&raw, b"\r\n\r\n") {
                break p + 4;
            }
            if stream.read_buf(&mut raw).await? == 0 {
                bail!("GET {path}: connection closed before the response head");
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let status = head.split_whitespace().nth(1).unwrap_or("?").to_owned();
        if status != "200" {
            bail!(
                "GET {path} → {status}: {}",
                String::from_utf8_lossy(&raw[head_end..])
            );
        }
        let chunked = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("transfer-encoding")
                    && v.to_ascii_lowercase().contains("chunked")
            })
        });
        raw.drain(..head_end);
        let mut sse = Sse {
            stream,
            chunked,
            state: Chunk::Size,
            raw,
            body: Vec::new(),
            frames: VecDeque::new(),
            closed: false,
        };
        sse.decode(epoch_ms())?;
        Ok(sse)
    }

    /// The next frame (`None` when the server closed the stream).
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Ok(Some(f));
            }
            if self.closed {
                return Ok(None);
            }
            self.raw.reserve(16 * 1024);
            let n = self.stream.read_buf(&mut self.raw).await?;
            let now = epoch_ms();
            if n == 0 {
                self.closed = true;
            }
            self.decode(now)?;
        }
    }

    /// The next frame within `timeout`; an error on timeout or end of stream.
    pub async fn next_within(&mut self, timeout: Duration) -> Result<Frame> {
        match tokio::time::timeout(timeout, self.next()).await {
            Ok(Ok(Some(f))) => Ok(f),
            Ok(Ok(None)) => bail!("the event stream ended"),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!("no event within {timeout:?}"),
        }
    }

    /// Read until the `connected` frame.
    pub async fn connected(&mut self, timeout: Duration) -> Result<()> {
        loop {
            if self.next_within(timeout).await?.event == "connected" {
                return Ok(());
            }
        }
    }

    /// Move de-chunked bytes from `raw` to `body`, then split frames off `body`.
    fn decode(&mut self, recv_ms: f64) -> Result<()> {
        if !self.chunked {
            self.body.append(&mut self.raw);
        } else {
            loop {
                match self.state {
                    Chunk::Size => {
                        let Some(p) = find(&self.raw, b"\r\n") else {
                            break;
                        };
                        let line = String::from_utf8_lossy(&self.raw[..p]).into_owned();
                        let hex = line.split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(hex, 16)
                            .with_context(|| format!("bad chunk size {line:?}"))?;
                        self.raw.drain(..p + 2);
                        self.state = if size == 0 {
                            Chunk::Done
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(left) => {
                        if self.raw.is_empty() {
                            break;
                        }
                        let take = left.min(self.raw.len());
                        self.body.extend(self.raw.drain(..take));
                        self.state = if take == left {
                            Chunk::Crlf
                        } else {
                            Chunk::Data(left - take)
                        };
                    }
                    Chunk::Crlf => {
                        if self.raw.len() < 2 {
                            break;
                        }
                        self.raw.drain(..2);
                        self.state = Chunk::Size;
                    }
                    Chunk::Done => {
                        self.closed = true;
                        self.raw.clear();
                        break;
                    }
                }
            }
        }
        self.split_frames(recv_ms);
        Ok(())
    }

    fn split_frames(&mut self, recv_ms: f64) {
        while let Some(p) = find(&self.body, b"\n\n") {
            let raw: Vec<u8> = self.body.drain(..p + 2).collect();
            let text = String::from_utf8_lossy(&raw);
            let mut id = None;
            let mut event = String::new();
            let mut data: Vec<&str> = Vec::new();
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                }
            }
            if data.is_empty() && event.is_empty() {
                continue; // `retry:` or a comment
            }
            if event.is_empty() {
                event = "message".into();
            }
            self.frames.push_back(Frame {
                id,
                event,
                data: data.join("\n"),
                recv_ms,
            });
        }
    }
}
