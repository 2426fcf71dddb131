//! Server-Sent Events (api §4): a frame parser and a resuming event stream.
//!
//! [`EventStream`] connects with the requested cursor (`after`), parses frames, and when the
//! connection drops (error, end of body, or nothing received for `idle_timeout` — the server
//! sends heartbeats) reconnects with `Last-Event-ID` set to the last durable id it delivered,
//! with exponential backoff. Frames whose id is not greater than the last delivered one are
//! dropped, so a caller never sees a durable event twice. A stream of a terminal session ends
//! after its `ended` event and the server closing the connection.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use aegis_api_types::EventEnvelope;
use futures::{Stream, StreamExt as _};
use reqwest::Method;
use serde_json::Value;

use crate::{Client, ClientError, Result, api_error};

/// How a stream connects and resumes.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Cursor of the first connection (`?after=`); `None` = live only.
    pub after: Option<u64>,
    /// `types=` filter (comma list).
    pub types: Option<String>,
    /// Reconnection attempts after a drop before giving up (spec: 5).
    pub max_retries: u32,
    /// First backoff delay (spec: 1 s), doubled per attempt up to `backoff_max` (spec: 16 s).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A connection silent for this long is considered dropped (heartbeats come every 15 s).
    pub idle_timeout: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            after: None,
            types: None,
            max_retries: 5,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(16),
            idle_timeout: Duration::from_secs(45),
        }
    }
}

impl StreamOptions {
    /// Replay everything after event id `after`, then follow live.
    #[must_use]
    pub fn after(after: u64) -> Self {
        StreamOptions {
            after: Some(after),
            ..StreamOptions::default()
        }
    }
}

/// One frame of an event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `id:` of the frame (durable events only).
    pub id: Option<u64>,
    /// The event type (`event:` line, else the envelope's `event` field).
    pub event: String,
    /// The full JSON envelope (api §4.1); `Value::Null` if the data was not JSON.
    pub envelope: Value,
}

impl SseEvent {
    /// The envelope's `data` object.
    pub fn data(&self) -> &Value {
        self.envelope.get("data").unwrap_or(&Value::Null)
    }

    /// The envelope as the typed DTO, when it has every field.
    pub fn to_envelope(&self) -> Option<EventEnvelope> {
        serde_json::from_value(self.envelope.clone()).ok()
    }
}

/// A raw frame before interpretation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Incremental SSE parser (WHATWG rules for the fields Aegis uses).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    cur: Frame,
    has_data: bool,
}

impl SseParser {
    /// Feed bytes; returns the frames completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            self.line(&line, &mut out);
        }
        out
    }

    fn line(&mut self, line: &str, out: &mut Vec<Frame>) {
        if line.is_empty() {
            if self.has_data || self.cur.event.is_some() {
                out.push(std::mem::take(&mut self.cur));
            } else {
                self.cur = Frame::default();
            }
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => self.cur.id = Some(value.to_owned()),
            "event" => self.cur.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.cur.data.push('\n');
                }
                self.cur.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// A resuming event stream (see the module docs).
pub struct EventStream {
    client: Client,
    path: String,
    opts: StreamOptions,
    last_id: Option<u64>,
    body: Option<Body>,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
    connected_once: bool,
    attempts: u32,
    saw_ended: bool,
    finished: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("path", &self.path)
            .field("last_id", &self.last_id)
            .finish()
    }
}

impl EventStream {
    pub(crate) fn new(client: Client, path: String, opts: StreamOptions) -> Self {
        EventStream {
            client,
            path,
            last_id: opts.after,
            opts,
            body: None,
            parser: SseParser::default(),
            queue: VecDeque::new(),
            connected_once: false,
            attempts: 0,
            saw_ended: false,
            finished: false,
        }
    }

    /// The id of the last durable event delivered (or the initial cursor).
    pub fn last_event_id(&self) -> Option<u64> {
        self.last_id
    }

    /// The next event; `Ok(None)` when the stream ended normally (terminal session closed).
    pub async fn next(&mut self) -> Result<Option<SseEvent>> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(Some(ev));
            }
            if self.finished {
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                self.connect().await?;
                continue;
            };
            match tokio::time::timeout(self.opts.idle_timeout, body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    for frame in self.parser.push(&chunk) {
                        self.accept(frame);
                    }
                }
                Ok(Some(Err(_)) | None) | Err(_) => {
                    self.body = None;
                    self.parser = SseParser::default();
                    if self.saw_ended {
                        self.finished = true;
                    }
                }
            }
        }
    }

    fn accept(&mut self, frame: Frame) {
        let envelope: Value = serde_json::from_str(&frame.data).unwrap_or(Value::Null);
        let id = frame
            .id
            .as_deref()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .or_else(|| envelope.get("id").and_then(Value::as_u64));
        let event = frame
            .event
            .clone()
            .or_else(|| {
                envelope
                    .get("event")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "message".to_owned());
        if let Some(id) = id {
            if self.last_id.is_some_and(|last| id <= last) {
                // Already delivered — except the `ended` frame a terminal session's stream
                // sends when the cursor is past it: it marks the end of this stream.
                if event != "ended" || self.saw_ended {
                    return;
                }
            } else {
                self.last_id = Some(id);
            }
        }
        if event != "connected" {
            // Data flows again: the next drop gets a fresh set of attempts.
            self.attempts = 0;
        }
        if event == "ended" {
            self.saw_ended = true;
        }
        self.queue.push_back(SseEvent {
            id,
            event,
            envelope,
        });
    }

    fn backoff(&self) -> Duration {
        let shift = self.attempts.saturating_sub(1).min(16);
        let d = self.opts.backoff_min.saturating_mul(1u32 << shift);
        d.min(self.opts.backoff_max)
    }

    /// Connect (first time) or reconnect with backoff; errors when attempts are exhausted
    /// or the server refuses the stream for good (4xx other than 429).
    async fn connect(&mut self) -> Result<()> {
        let url = format!("{}{}", self.client.base_url(), self.path);
        let mut last_reason = String::new();
        loop {
            if self.connected_once {
                if self.attempts >= self.opts.max_retries {
                    return Err(ClientError::StreamLost {
                        url,
                        attempts: self.attempts,
                        reason: if last_reason.is_empty() {
                            "the server closed the stream".to_owned()
                        } else {
                            last_reason
                        },
                    });
                }
                self.attempts += 1;
                tokio::time::sleep(self.backoff()).await;
            }
            let mut b = self
                .client
                .builder(Method::GET, &self.path)
                .header(reqwest::header::ACCEPT, "text/event-stream");
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(t) = &self.opts.types {
                q.push(("types", t.clone()));
            }
            match (self.connected_once, self.last_id) {
                (false, Some(after)) => q.push(("after", after.to_string())),
                (true, Some(last)) => b = b.header("Last-Event-ID", last.to_string()),
                _ => {}
            }
            if !q.is_empty() {
                b = b.query(&q);
            }
            let first = !self.connected_once;
            self.connected_once = true;
            match b.send().await {
                Ok(res) if res.status().is_success() => {
                    self.body = Some(Box::pin(res.bytes_stream().map(|r| r.map(|b| b.to_vec()))));
                    return Ok(());
                }
                Ok(res) => {
                    let status = res.status().as_u16();
                    let err = api_error(res).await;
                    let retryable = status == 429 || status >= 500;
                    if !retryable || first {
                        return Err(err);
                    }
                    if let ClientError::Api {
                        retry_after: Some(s),
                        ..
                    } = &err
                    {
                        tokio::time::sleep(Duration::from_secs((*s).min(30))).await;
                    }
                    last_reason = err.to_string();
                }
                Err(e) => {
                    let err = self
                        .client
                        .transport_error(&self.path, &e, self.opts.idle_timeout);
                    if first {
                        return Err(err);
                    }
                    last_reason = err.to_string();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames_split_anywhere() {
        let text = "retry: 3000\n\n: comment\nid: 42\nevent: status\ndata: {\"id\":42}\n\nevent: heartbeat\r\ndata: {}\r\n\r\n";
        for split in 0..text.len() {
            let mut p = SseParser::default();
            let mut frames = p.push(&text.as_bytes()[..split]);
            frames.extend(p.push(&text.as_bytes()[split..]));
            assert_eq!(
                frames,
                vec![
                    Frame {
                        id: Some("42".into()),
                        event: Some("status".into()),
                        data: "{\"id\":42}".into()
                    },
                    Frame {
                        id: None,
                        event: Some("heartbeat".into()),
                        data: "{}".into()
                    }
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = SseParser::default();
        let f = p.push(b"data: a\ndata: b\n\n");
        assert_eq!(f[0].data, "a\nb");
    }
}
