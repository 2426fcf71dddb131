//! Server-Sent Events (api §4.3–4.6): the per-session stream and the global stream.
//!
//! Connect sequence: headers, `retry: 3000`, `connected`, replay of every stored event after
//! the cursor (paged from the durable log), then live events. The bus is subscribed *before*
//! the replay is read and live events whose id is ≤ the last one delivered are dropped, so a
//! client sees no gap and no duplicate. A subscriber that lags behind the live channel re-reads
//! the store from the last id it delivered instead of skipping.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_api_types::EventEnvelope;
use aegis_core::{BusEvent, Principal, SessionService};
use aegis_domain::time::iso8601_ms;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::error::{ApiError, SSE_LIMIT_RETRY_AFTER_SECS};
use crate::extract::{QueryParams, parse_int};

/// Events read from the store per replay page.
const REPLAY_PAGE: usize = 500;
/// Frames buffered between the producer task and the connection.
const CHANNEL_FRAMES: usize = 256;
/// A write blocked this long closes the connection (api §4.6).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Connection limits
// ---------------------------------------------------------------------------------------------

/// Open SSE connections, per client IP and in total (api §4.6).
#[derive(Debug)]
pub(crate) struct SseLimiter {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open connection; the counters drop when it does.
#[derive(Debug)]
pub(crate) struct SseSlot {
    limiter: Arc<SseLimiter>,
    ip: Option<IpAddr>,
}

impl SseLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(SseLimiter {
            max_total,
            max_per_ip,
            state: Mutex::new(LimiterState::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a slot: 429 `SSE_LIMIT` (`per_ip_limit`) first, then 503 `SSE_LIMIT`
    /// (`global_limit`), both with `Retry-After: 5`.
    pub fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<SseSlot, ApiError> {
        let mut st = self.lock();
        if let Some(ip) = ip {
            let n = st.per_ip.get(&ip).copied().unwrap_or(0);
            if n >= self.max_per_ip {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "SSE_LIMIT",
                    format!(
                        "Too many event streams from this address (limit {}); close one or retry later",
                        self.max_per_ip
                    ),
                )
                .with_details(json!({"reason": "per_ip_limit", "limit": self.max_per_ip}))
                .with_retry_after(SSE_LIMIT_RETRY_AFTER_SECS));
            }
        }
        if st.total >= self.max_total {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SSE_LIMIT",
                format!(
                    "The server has reached its limit of {} event streams; retry later",
                    self.max_total
                ),
            )
            .with_details(json!({"reason": "global_limit", "limit": self.max_total}))
            .with_retry_after(SSE_LIMIT_RETRY_AFTER_SECS));
        }
        st.total += 1;
        if let Some(ip) = ip {
            *st.per_ip.entry(ip).or_default() += 1;
        }
        Ok(SseSlot {
            limiter: self.clone(),
            ip,
        })
    }

    /// (total, for this ip) — for tests and diagnostics.
    #[cfg(test)]
    fn counts(&self, ip: Option<IpAddr>) -> (usize, usize) {
        let st = self.lock();
        (
            st.total,
            ip.and_then(|ip| st.per_ip.get(&ip).copied()).unwrap_or(0),
        )
    }
}

impl Drop for SseSlot {
    fn drop(&mut self) {
        let mut st = self.limiter.lock();
        st.total = st.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = st.per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.per_ip.remove(&ip);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// Which event types a stream delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeFilter {
    All,
    /// The global default: everything except `message_delta`.
    AllButDeltas,
    Only(BTreeSet<String>),
}

impl TypeFilter {
    fn allows(&self, event: &str) -> bool {
        match self {
            TypeFilter::All => true,
            TypeFilter::AllButDeltas => event != "message_delta",
            TypeFilter::Only(set) => set.contains(event),
        }
    }
}

/// Legacy event names of the global stream (`?legacyNames=true`, api §4.3).
fn legacy_name(event: &str) -> Option<&'static str> {
    Some(match event {
        "status" => "session_status_change",
        "message" => "session_message",
        "approval" => "session_approval",
        "ended" => "session_ended",
        "created" => "session_created",
        "stall" => "session_stall",
        _ => return None,
    })
}

fn canonical_name(event: &str) -> &str {
    match event {
        "session_status_change" => "status",
        "session_message" => "message",
        "session_approval" => "approval",
        "session_ended" => "ended",
        "session_created" => "created",
        "session_stall" => "stall",
        other => other,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StreamParams {
    /// Replay cursor: `Last-Event-ID` header, else `?lastEventId=`, else `?after=`.
    pub cursor: Option<u64>,
    pub types: TypeFilter,
    /// `?named=false` omits `event:` lines.
    pub named: bool,
    /// `?legacyNames=true` (global stream only).
    pub legacy_names: bool,
}

impl StreamParams {
    pub fn parse(headers: &HeaderMap, q: &QueryParams, global: bool) -> Result<Self, ApiError> {
        let header_cursor = match headers.get("last-event-id") {
            None => None,
            Some(v) => {
                let raw = v.to_str().unwrap_or("\u{fffd}").trim();
                if raw.is_empty() {
                    None
                } else {
                    Some(parse_int("Last-Event-ID", raw, 0, u64::MAX)?)
                }
            }
        };
        let query_last = q.cursor("lastEventId")?;
        let query_after = q.cursor("after")?;
        let cursor = header_cursor.or(query_last).or(query_after);

        let list = q.list("types");
        let types = if list.is_empty() {
            if global {
                TypeFilter::AllButDeltas
            } else {
                TypeFilter::All
            }
        } else if list.iter().any(|t| t == "*") {
            TypeFilter::All
        } else {
            TypeFilter::Only(list.iter().map(|t| canonical_name(t).to_owned()).collect())
        };
        let named = q.bool("named")?.unwrap_or(true);
        let legacy_names = global && q.bool("legacyNames")?.unwrap_or(false);
        Ok(StreamParams {
            cursor,
            types,
            named,
            legacy_names,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The envelope of a frame produced here (non-durable: no `id`, no `globalSeq`).
pub(crate) fn local_envelope(event: &str, session_id: Option<&str>, data: Value) -> String {
    let now = now_ms();
    let env = EventEnvelope {
        id: None,
        global_seq: None,
        event: event.to_owned(),
        session_id: session_id.map(str::to_owned),
        timestamp: iso8601_ms(now),
        emitted_at: now,
        data,
    };
    serde_json::to_string(&env).unwrap_or_default()
}

/// One SSE frame. `data` is one line of JSON (serde_json never emits raw newlines; any other
/// text is split over several `data:` lines as the format requires).
pub(crate) fn frame(id: Option<u64>, event: &str, data: &str, named: bool) -> Bytes {
    let mut out = String::with_capacity(data.len() + event.len() + 32);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&id.to_string());
        out.push('\n');
    }
    if named {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The response around a frame channel (api §4.3 headers).
fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// Resolves once the server shuts down (also when that happened before the call).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let gone = rx.wait_for(|stop| *stop).await.is_err();
    if gone {
        // The router was dropped without a shutdown signal: the connection goes with it.
        std::future::pending::<()>().await;
    }
}

/// The connection was closed (client gone, write blocked, shutdown).
struct Closed;

/// The producer side of one stream.
struct Emitter {
    tx: mpsc::Sender<Bytes>,
    named: bool,
    last_frame: Instant,
}

impl Emitter {
    async fn send_bytes(&mut self, bytes: Bytes) -> Result<(), Closed> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.tx.send(bytes)).await {
            Ok(Ok(())) => {
                self.last_frame = Instant::now();
                Ok(())
            }
            _ => Err(Closed),
        }
    }

    async fn send(&mut self, id: Option<u64>, event: &str, data: &str) -> Result<(), Closed> {
        let bytes = frame(id, event, data, self.named);
        self.send_bytes(bytes).await
    }
}

/// How the frames of bus events are rendered on one stream.
struct Renderer {
    global: bool,
    types: TypeFilter,
    legacy_names: bool,
}

impl Renderer {
    /// The frame id of an event: per-session id, or globalSeq on the global stream.
    fn id_of(&self, ev: &BusEvent) -> Option<u64> {
        if self.global { ev.global_seq } else { ev.id }
    }

    async fn emit(&self, out: &mut Emitter, ev: &BusEvent) -> Result<(), Closed> {
        if !self.types.allows(&ev.event) {
            return Ok(());
        }
        let id = self.id_of(ev);
        if self.legacy_names
            && let Some(legacy) = legacy_name(&ev.event)
        {
            let json = match serde_json::from_str::<Value>(&ev.json) {
                Ok(mut v) => {
                    v["event"] = Value::String(legacy.to_owned());
                    serde_json::to_string(&v).unwrap_or_else(|_| ev.json.to_string())
                }
                Err(_) => ev.json.to_string(),
            };
            return out.send(id, legacy, &json).await;
        }
        out.send(id, &ev.event, &ev.json).await
    }
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// Everything a stream task needs.
pub(crate) struct StreamCtx {
    pub service: Arc<SessionService>,
    pub principal: Principal,
    pub params: StreamParams,
    pub heartbeat: Duration,
    pub shutdown: watch::Receiver<bool>,
    pub slot: SseSlot,
}

/// `GET /v1/sessions/{id}/events`: validate, then hand the stream to a task.
pub(crate) fn open_session_stream(
    ctx: StreamCtx,
    session_id: String,
) -> Result<Response, ApiError> {
    // Subscribe before anything is read so that nothing published from now on is missed.
    let live = ctx.service.subscribe();
    let info = ctx.service.stream_info(&ctx.principal, &session_id)?;
    let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
    tokio::spawn(async move {
        let _ = session_stream(ctx, session_id, info, live, tx).await;
    });
    Ok(sse_response(rx))
}

/// `GET /v1/events`.
pub(crate) fn open_global_stream(ctx: StreamCtx) -> Response {
    let live = ctx.service.subscribe();
    let info = ctx.service.global_stream_info(&ctx.principal);
    let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
    tokio::spawn(async move {
        let _ = global_stream(ctx, info, live, tx).await;
    });
    sse_response(rx)
}

async fn session_stream(
    ctx: StreamCtx,
    session_id: String,
    info: Value,
    mut live: broadcast::Receiver<Arc<BusEvent>>,
    tx: mpsc::Sender<Bytes>,
) -> Result<(), Closed> {
    let StreamCtx {
        service,
        principal,
        params,
        heartbeat,
        mut shutdown,
        slot: _slot,
    } = ctx;
    let mut out = Emitter {
        tx,
        named: params.named,
        last_frame: Instant::now(),
    };
    let render = Renderer {
        global: false,
        types: params.types.clone(),
        legacy_names: false,
    };
    let last_event_id = info.get("lastEventId").and_then(Value::as_u64).unwrap_or(0);
    let ended_at_connect = info.get("ended").and_then(Value::as_bool).unwrap_or(false);

    out.send_bytes(Bytes::from_static(b"retry: 3000\n\n"))
        .await?;
    let connected = local_envelope(
        "connected",
        Some(&session_id),
        json!({"sessionId": session_id, "lastEventId": last_event_id}),
    );
    out.send(None, "connected", &connected).await?;

    // Live events with an id ≤ `floor` were delivered by the replay (or precede the connect).
    let mut floor = params.cursor.unwrap_or(last_event_id);
    let mut saw_ended = false;
    if let Some(after) = params.cursor {
        let mut first_page = true;
        let mut cursor = after;
        loop {
            let page = match service
                .replay_session(&principal, &session_id, cursor, REPLAY_PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(session_id = %session_id, error = %e, "SSE replay failed; closing the stream");
                    return Err(Closed);
                }
            };
            if first_page {
                first_page = false;
                // Ids are dense: a first replayed id beyond `after + 1` means retention purged
                // the events in between.
                if let Some(first_id) = page.first().and_then(|e| e.id)
                    && first_id > after.saturating_add(1)
                {
                    let data = local_envelope(
                        "replay_truncated",
                        Some(&session_id),
                        json!({"requestedAfter": after, "oldestAvailableId": first_id}),
                    );
                    out.send(None, "replay_truncated", &data).await?;
                }
            }
            let n = page.len();
            for ev in &page {
                if let Some(id) = ev.id {
                    cursor = cursor.max(id);
                }
                if ev.event == "ended" {
                    saw_ended = true;
                }
                render.emit(&mut out, ev).await?;
            }
            if n < REPLAY_PAGE {
                break;
            }
        }
        floor = floor.max(cursor);
    }

    // A terminal session (also one that ended between `stream_info` and the replay): the
    // stream closes after its `ended` frame.
    if ended_at_connect || saw_ended {
        if !saw_ended {
            send_final_ended(
                &service,
                &principal,
                &session_id,
                last_event_id,
                &render,
                &mut out,
            )
            .await?;
        }
        return Ok(());
    }

    loop {
        let idle = Instant::now().saturating_duration_since(out.last_frame);
        let wait = heartbeat.saturating_sub(idle);
        tokio::select! {
            _ = stopped(&mut shutdown) => return Ok(()),
            _ = out.tx.closed() => return Err(Closed),
            _ = tokio::time::sleep(wait) => {
                let data = local_envelope(
                    "heartbeat",
                    Some(&session_id),
                    json!({"timestamp": iso8601_ms(now_ms())}),
                );
                out.send(None, "heartbeat", &data).await?;
            }
            received = live.recv() => match received {
                Ok(ev) => {
                    if ev.session_id.as_deref() != Some(session_id.as_str()) {
                        continue;
                    }
                    if let Some(id) = ev.id {
                        if id <= floor {
                            continue;
                        }
                        floor = id;
                    }
                    render.emit(&mut out, &ev).await?;
                    if ev.event == "ended" {
                        return Ok(());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(session_id = %session_id, skipped, "SSE subscriber lagged; re-reading the store");
                    loop {
                        let page = service
                            .replay_session(&principal, &session_id, floor, REPLAY_PAGE)
                            .await
                            .map_err(|_| Closed)?;
                        let n = page.len();
                        let mut ended = false;
                        for ev in &page {
                            if let Some(id) = ev.id {
                                floor = floor.max(id);
                            }
                            ended |= ev.event == "ended";
                            render.emit(&mut out, ev).await?;
                        }
                        if ended {
                            return Ok(());
                        }
                        if n < REPLAY_PAGE {
                            break;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// A terminal session whose `ended` event was not part of the replay: send the stored one
/// (found near the end of the log), or a synthesized one when it cannot be found.
async fn send_final_ended(
    service: &SessionService,
    principal: &Principal,
    session_id: &str,
    last_event_id: u64,
    render: &Renderer,
    out: &mut Emitter,
) -> Result<(), Closed> {
    let tail = service
        .replay_session(principal, session_id, last_event_id.saturating_sub(50), 100)
        .await
        .unwrap_or_default();
    if let Some(ev) = tail.iter().rev().find(|e| e.event == "ended") {
        return render.emit(out, ev).await;
    }
    if !render.types.allows("ended") {
        return Ok(());
    }
    let status = service
        .stream_info(principal, session_id)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .unwrap_or(Value::Null);
    let data = local_envelope(
        "ended",
        Some(session_id),
        json!({"status": status, "reason": Value::Null}),
    );
    out.send(None, "ended", &data).await
}

async fn global_stream(
    ctx: StreamCtx,
    info: Value,
    mut live: broadcast::Receiver<Arc<BusEvent>>,
    tx: mpsc::Sender<Bytes>,
) -> Result<(), Closed> {
    let StreamCtx {
        service,
        principal,
        params,
        heartbeat,
        mut shutdown,
        slot: _slot,
    } = ctx;
    let mut out = Emitter {
        tx,
        named: params.named,
        last_frame: Instant::now(),
    };
    let render = Renderer {
        global: true,
        types: params.types.clone(),
        legacy_names: params.legacy_names,
    };
    let last_global_seq = info
        .get("lastGlobalSeq")
        .and_then(Value::as_u64)
        .unwrap_or(0);

    out.send_bytes(Bytes::from_static(b"retry: 3000\n\n"))
        .await?;
    let connected = local_envelope(
        "connected",
        None,
        json!({
            "activeSessions": info.get("activeSessions").cloned().unwrap_or(json!(0)),
            "lastGlobalSeq": last_global_seq,
        }),
    );
    out.send(None, "connected", &connected).await?;

    let mut floor = params.cursor.unwrap_or(last_global_seq);
    if let Some(after) = params.cursor {
        floor = floor.max(replay_global(&service, &principal, after, &render, &mut out).await?);
    }

    loop {
        let idle = Instant::now().saturating_duration_since(out.last_frame);
        let wait = heartbeat.saturating_sub(idle);
        tokio::select! {
            _ = stopped(&mut shutdown) => {
                let data = local_envelope("shutdown", None, json!({}));
                let _ = out.send(None, "shutdown", &data).await;
                return Ok(());
            }
            _ = out.tx.closed() => return Err(Closed),
            _ = tokio::time::sleep(wait) => {
                let data = local_envelope(
                    "heartbeat",
                    None,
                    json!({"timestamp": iso8601_ms(now_ms())}),
                );
                out.send(None, "heartbeat", &data).await?;
            }
            received = live.recv() => match received {
                Ok(ev) => {
                    if let Some(tenant) = ev.tenant_id.as_deref()
                        && !principal.sees_tenant(tenant)
                    {
                        continue;
                    }
                    if let Some(seq) = ev.global_seq {
                        if seq <= floor {
                            continue;
                        }
                        floor = seq;
                    }
                    render.emit(&mut out, &ev).await?;
                    if ev.event == "shutdown" && ev.session_id.is_none() {
                        return Ok(());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "global SSE subscriber lagged; re-reading the store");
                    floor = floor.max(replay_global(&service, &principal, floor, &render, &mut out).await?);
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Replay the global log after `after`; returns the last global sequence read.
async fn replay_global(
    service: &SessionService,
    principal: &Principal,
    after: u64,
    render: &Renderer,
    out: &mut Emitter,
) -> Result<u64, Closed> {
    let mut cursor = after;
    loop {
        let page = match service.replay_global(principal, cursor, REPLAY_PAGE).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "global SSE replay failed; closing the stream");
                return Err(Closed);
            }
        };
        if page.is_empty() {
            return Ok(cursor);
        }
        // Read until an empty page: the service drops other tenants' events from a page after
        // reading it, so a short page does not prove the end of the log.
        for ev in &page {
            if let Some(seq) = ev.global_seq {
                cursor = cursor.max(seq);
            }
            render.emit(out, ev).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_format() {
        assert_eq!(
            frame(Some(42), "status", r#"{"a":1}"#, true),
            Bytes::from("id: 42\nevent: status\ndata: {\"a\":1}\n\n")
        );
        assert_eq!(
            frame(None, "heartbeat", "{}", false),
            Bytes::from("data: {}\n\n")
        );
        assert_eq!(
            frame(None, "x", "a\nb", true),
            Bytes::from("event: x\ndata: a\ndata: b\n\n")
        );
    }

    #[test]
    fn limiter_counts_per_ip_then_global_and_releases_on_drop() {
        let limiter = SseLimiter::new(3, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let s1 = limiter.acquire(Some(a)).expect("1");
        let s2 = limiter.acquire(Some(a)).expect("2");
        let e = limiter.acquire(Some(a)).expect_err("per ip");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            e.details.as_ref().map(|d| d["reason"].clone()),
            Some(json!("per_ip_limit"))
        );
        assert_eq!(e.retry_after, Some(5));
        let s3 = limiter.acquire(Some(b)).expect("3");
        let e = limiter.acquire(Some(b)).expect_err("global");
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            e.details.as_ref().map(|d| d["reason"].clone()),
            Some(json!("global_limit"))
        );
        drop(s1);
        assert_eq!(limiter.counts(Some(a)), (2, 1));
        drop((s2, s3));
        assert_eq!(limiter.counts(Some(a)), (0, 0));
        assert!(limiter.acquire(None).is_ok());
    }

    #[test]
    fn params_cursor_precedence_and_types() {
        let q = QueryParams::from_query("lastEventId=5&after=3&types=status,message&named=false")
            .expect("query");
        let mut headers = HeaderMap::new();
        let p = StreamParams::parse(&headers, &q, false).expect("params");
        assert_eq!(p.cursor, Some(5));
        assert!(!p.named);
        assert!(p.types.allows("status") && !p.types.allows("approval"));
        headers.insert("last-event-id", HeaderValue::from_static("9"));
        assert_eq!(
            StreamParams::parse(&headers, &q, false)
                .map(|p| p.cursor)
                .ok(),
            Some(Some(9))
        );
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert!(StreamParams::parse(&headers, &q, false).is_err());

        let q = QueryParams::from_query("").expect("query");
        let g = StreamParams::parse(&HeaderMap::new(), &q, true).expect("global");
        assert_eq!(g.cursor, None);
        assert!(!g.types.allows("message_delta") && g.types.allows("status"));
        let q = QueryParams::from_query("types=*").expect("query");
        let g = StreamParams::parse(&HeaderMap::new(), &q, true).expect("global");
        assert!(g.types.allows("message_delta"));
        let q = QueryParams::from_query("types=session_ended&legacyNames=true").expect("query");
        let g = StreamParams::parse(&HeaderMap::new(), &q, true).expect("global");
        assert!(g.types.allows("ended") && g.legacy_names);
    }
}
