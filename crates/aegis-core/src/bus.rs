//! The event bus: every durable event is appended to the store *before* it is published.
//!
//! One writer task owns the global sequence. Session actors hand it batches of events whose
//! per-session ids they assigned; the writer gathers every batch waiting at that moment
//! (group commit), assigns global sequences, appends them in one store call, then publishes
//! them in sequence order. So the global stream is delivered in `globalSeq` order and a
//! subscriber that resumes from the last `globalSeq` it saw misses nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aegis_api_types::EventEnvelope;
use aegis_domain::time::iso8601_ms;
use aegis_store::{Store, StoredEvent};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::service::BusEvent;
use crate::{CoreError, CoreResult};

/// Capacity of the live channel; a subscriber that falls further behind re-reads the store.
const LIVE_CAPACITY: usize = 16_384;
/// Most append requests merged into one store write.
const MAX_BATCH: usize = 512;

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub session_id: Option<String>,
    pub tenant_id: Option<String>,
    /// Per-session id assigned by the session's actor (0 for global events).
    pub id: u64,
    pub event: String,
    pub data: Value,
}

struct AppendReq {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<CoreResult<Vec<Arc<BusEvent>>>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The bus.
pub struct EventBus {
    tx: mpsc::Sender<AppendReq>,
    live: broadcast::Sender<Arc<BusEvent>>,
    last_seq: Arc<AtomicU64>,
}

impl EventBus {
    /// Start the writer; the global sequence continues from the store's last one.
    pub async fn start(store: Arc<dyn Store>) -> CoreResult<Arc<EventBus>> {
        let last = store.last_global_seq().await?;
        let last_seq = Arc::new(AtomicU64::new(last));
        let (tx, rx) = mpsc::channel(4096);
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        tokio::spawn(writer(store, rx, live.clone(), last_seq.clone()));
        Ok(Arc::new(EventBus { tx, live, last_seq }))
    }

    /// Append durable events; resolves once they are stored and published.
    pub async fn append(&self, events: Vec<NewEvent>) -> CoreResult<Vec<Arc<BusEvent>>> {
        if events.is_empty() {
            return Ok(vec![]);
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(AppendReq { events, reply })
            .await
            .map_err(|_| CoreError::internal("event writer stopped"))?;
        rx.await
            .map_err(|_| CoreError::internal("event writer stopped"))?
    }

    /// Publish a non-durable event (`message_delta`, ...): no id, no global sequence.
    pub fn publish_ephemeral(
        &self,
        session_id: Option<String>,
        tenant_id: Option<String>,
        event: &str,
        data: Value,
    ) {
        if self.live.receiver_count() == 0 {
            return;
        }
        let now = now_ms();
        let env = EventEnvelope {
            id: None,
            global_seq: None,
            event: event.to_owned(),
            session_id: session_id.clone(),
            timestamp: iso8601_ms(now),
            emitted_at: now,
            data,
        };
        let json = serde_json::to_string(&env).unwrap_or_default();
        let _ = self.live.send(Arc::new(BusEvent {
            session_id,
            tenant_id,
            id: None,
            global_seq: None,
            event: event.to_owned(),
            json: json.into(),
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.live.subscribe()
    }

    /// Highest published global sequence.
    pub fn last_global_seq(&self) -> u64 {
        self.last_seq.load(Ordering::SeqCst)
    }

    /// Number of live subscribers.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }
}

/// Decode a stored event into what subscribers receive.
pub fn bus_event(e: &StoredEvent) -> BusEvent {
    BusEvent {
        session_id: e.session_id.clone(),
        tenant_id: e.tenant_id.clone(),
        id: (e.id > 0).then_some(e.id),
        global_seq: Some(e.global_seq),
        event: e.event.clone(),
        json: e.json.as_str().into(),
    }
}

async fn writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<AppendReq>,
    live: broadcast::Sender<Arc<BusEvent>>,
    last_seq: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        let mut seq = last_seq.load(Ordering::SeqCst);
        let now = now_ms();
        let timestamp = iso8601_ms(now);
        let mut stored = Vec::new();
        let mut sizes = Vec::with_capacity(batch.len());
        for req in &batch {
            sizes.push(req.events.len());
            for e in &req.events {
                seq += 1;
                let env = EventEnvelope {
                    id: (e.id > 0).then_some(e.id),
                    global_seq: Some(seq),
                    event: e.event.clone(),
                    session_id: e.session_id.clone(),
                    timestamp: timestamp.clone(),
                    emitted_at: now,
                    data: e.data.clone(),
                };
                stored.push(StoredEvent {
                    session_id: e.session_id.clone(),
                    id: e.id,
                    global_seq: seq,
                    event: e.event.clone(),
                    tenant_id: e.tenant_id.clone(),
                    json: serde_json::to_string(&env).unwrap_or_default(),
                });
            }
        }
        match store.append_events(&stored).await {
            Ok(()) => {
                last_seq.store(seq, Ordering::SeqCst);
                let mut published = stored.iter().map(|s| Arc::new(bus_event(s)));
                for (req, n) in batch.into_iter().zip(sizes) {
                    let mine: Vec<Arc<BusEvent>> = published.by_ref().take(n).collect();
                    for ev in &mine {
                        let _ = live.send(ev.clone());
                    }
                    let _ = req.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "event append failed");
                let err = CoreError::store(e);
                for req in batch {
                    let _ = req.reply.send(Err(err.clone()));
                }
            }
        }
    }
}
