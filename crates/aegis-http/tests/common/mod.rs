//! A real server on 127.0.0.1:0 over a real session service (file store, ACP runtime, the
//! scripted agent), driven with a real HTTP client.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aegis_core::{ServiceConfig, SessionService};
use aegis_http::{AppState, HttpConfig};
use aegis_runtime::registry::{AgentConfig, AgentRegistry};
use aegis_runtime_acp::AcpRuntime;
use aegis_store::file::FileStore;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::oneshot;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub service: Arc<SessionService>,
    pub work: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// The one place a service for tests is built.
pub async fn test_state(http: HttpConfig) -> (AppState, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut cfg = ServiceConfig::new(state.clone());
    cfg.allowed_workdirs = vec![work.display().to_string()];
    let mut agents = BTreeMap::new();
    agents.insert(
        "scripted".to_owned(),
        AgentConfig {
            command: Some(aegis_testkit::bins::scripted_agent().display().to_string()),
            args: vec![],
            env: BTreeMap::from([(
                "SCRIPTED_AGENT_STATE_DIR".to_owned(),
                state.join("scripted").display().to_string(),
            )]),
        },
    );
    let mut registry = AgentRegistry::new(agents);
    registry.default_agent = "scripted".into();
    cfg.agents = registry;
    let store = FileStore::open(state.join("store")).expect("file store");
    let service = SessionService::start(cfg, Arc::new(store), Arc::new(AcpRuntime))
        .await
        .expect("service starts");
    (
        AppState {
            service,
            config: http,
        },
        dir,
        work,
    )
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::with_config(HttpConfig::default()).await
    }

    pub async fn with_config(http: HttpConfig) -> TestServer {
        let (state, dir, work) = test_state(http).await;
        let service = state.service.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(aegis_http::serve(listener, state, async move {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            service,
            work,
            shutdown: Some(tx),
            join: Some(join),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// Create a session in the work dir with an optional prompt; returns its id.
    pub async fn create(&self, prompt: Option<&str>) -> String {
        let mut body =
            serde_json::json!({"workDir": self.work.display().to_string(), "reuse": false});
        if let Some(p) = prompt {
            body["prompt"] = Value::String(p.to_owned());
        }
        let res = self.post_json("/v1/sessions", &body).await;
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.expect("json");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Poll until the session reaches `status`.
    pub async fn wait_status(&self, id: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v: Value = self
                .get(&format!("/v1/sessions/{id}"))
                .await
                .json()
                .await
                .expect("json");
            if v["status"] == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {id} stuck in {} (wanted {status})",
                v["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop serving (graceful) and wait for `serve` to return.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.join.take() {
            Some(join) => tokio::time::timeout(Duration::from_secs(10), join)
                .await
                .expect("serve returns after shutdown")
                .expect("serve task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Assert the error envelope and return it.
pub async fn envelope(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let rid = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("X-Request-Id");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(ct, "application/json; charset=utf-8");
    let v: Value = res.json().await.expect("json body");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["requestId"], rid.as_str(), "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(v["error"], v["message"], "{v}");
    v
}

/// One parsed SSE frame.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("frame data is JSON")
    }
}

/// Reads frames from an SSE response.
pub struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buf: String,
}

impl SseReader {
    pub fn new(res: reqwest::Response) -> SseReader {
        SseReader {
            stream: res.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next frame; `None` when the stream ends. Panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..pos + 2).collect();
                let mut frame = Frame::default();
                let mut data = Vec::new();
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        frame.id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        frame.event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("retry: ") {
                        frame.retry = v.parse().ok();
                    }
                }
                frame.data = data.join("\n");
                return Some(frame);
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("SSE frame in time");
            match chunk {
                Some(Ok(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Some(Err(e)) => panic!("SSE read error: {e}"),
                None => return None,
            }
        }
    }

    /// Frames until one with event `event` (inclusive).
    pub async fn until(&mut self, event: &str, timeout: Duration) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            let f = self
                .next(timeout)
                .await
                .unwrap_or_else(|| panic!("stream ended before {event}: {out:?}"));
            let done = f.event.as_deref() == Some(event);
            out.push(f);
            if done {
                return out;
            }
        }
    }
}
