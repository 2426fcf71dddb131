//! Harness for end-to-end tests: a real server (session service + HTTP surface + file store +
//! ACP runtime) listening on 127.0.0.1, driven over real HTTP.

pub mod browser;
pub mod proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aegis_core::{ServiceConfig, SessionService};
use aegis_runtime::registry::{AgentConfig, AgentRegistry};
use aegis_runtime_acp::AcpRuntime;
use aegis_store::file::FileStore;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;

/// A running in-process server with its own state dir and an allowed work dir.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub work: PathBuf,
    pub state: PathBuf,
    pub svc: Arc<SessionService>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// The scripted agent as agent `scripted` (and the default), state under `state`.
pub fn scripted_agents(state: &Path) -> AgentRegistry {
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
    let mut reg = AgentRegistry::new(agents);
    reg.default_agent = "scripted".into();
    reg
}

impl TestServer {
    /// A server with the scripted agent as default.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server whose service configuration `tune` may change.
    pub async fn start_with(tune: impl FnOnce(&mut ServiceConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::create_dir_all(&work).expect("work dir");
        let mut s = Self::start_in(&state, &work, tune).await;
        s._dir = Some(dir);
        s
    }

    /// A server whose HTTP configuration (authentication, limits) is `http`.
    pub async fn start_http(http: aegis_http::HttpConfig) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::create_dir_all(&work).expect("work dir");
        let mut s = Self::start_in_http(&state, &work, |_| {}, http).await;
        s._dir = Some(dir);
        s
    }

    /// A server on existing directories (restart tests reuse them).
    pub async fn start_in(
        state: &Path,
        work: &Path,
        tune: impl FnOnce(&mut ServiceConfig),
    ) -> TestServer {
        Self::start_in_http(state, work, tune, aegis_http::HttpConfig::default()).await
    }

    /// [`TestServer::start_in`] with an HTTP configuration.
    pub async fn start_in_http(
        state: &Path,
        work: &Path,
        tune: impl FnOnce(&mut ServiceConfig),
        http: aegis_http::HttpConfig,
    ) -> TestServer {
        let mut cfg = ServiceConfig::new(state.to_path_buf());
        cfg.allowed_workdirs = vec![work.display().to_string()];
        cfg.agents = scripted_agents(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        cfg.base_url = format!("http://{addr}");
        tune(&mut cfg);
        let store = FileStore::open(state.join("store")).expect("file store");
        let svc = SessionService::start(cfg, Arc::new(store), Arc::new(AcpRuntime))
            .await
            .expect("service");
        let app = aegis_http::AppState {
            service: svc.clone(),
            config: http,
        };
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = aegis_http::serve(listener, app, async {
                let _ = rx.await;
            })
            .await;
        });
        TestServer {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            work: work.to_path_buf(),
            state: state.to_path_buf(),
            svc,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path))).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.patch(self.url(path)).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    /// Create a session in the work dir; returns its JSON (201 expected).
    pub async fn create(&self, body: Value) -> Value {
        let mut body = body;
        if body.get("workDir").is_none() {
            body["workDir"] = Value::String(self.work.display().to_string());
        }
        let (st, v) = self.post("/v1/sessions", body).await;
        assert!(
            st == StatusCode::CREATED || st == StatusCode::OK,
            "create: {st} {v}"
        );
        v
    }

    /// Wait, driven by the event bus, until the session has `status`.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let mut rx = self.svc.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, s) = self.get(&format!("/v1/sessions/{id}")).await;
            if s["status"] == status {
                return s;
            }
            if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
                panic!("session {id} is {} (wanted {status}): {s}", s["status"]);
            }
        }
    }

    /// Stop serving and stop every session (they stay resumable in the store).
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.svc.shutdown().await;
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Text of the agent messages in a `/read` response.
pub fn agent_text(read: &Value) -> String {
    read["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["kind"] == "agent_message")
                .filter_map(|m| m["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Read SSE frames from a response until `stop` returns true or the deadline passes.
pub async fn read_sse(
    resp: reqwest::Response,
    deadline: Duration,
    mut stop: impl FnMut(&[SseFrame]) -> bool,
) -> Vec<SseFrame> {
    use futures::StreamExt;
    let mut frames = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    let end = tokio::time::Instant::now() + deadline;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(end, stream.next()).await {
        let Ok(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(pos) = buf.find("\n\n") {
            let raw: String = buf.drain(..pos + 2).collect();
            let mut f = SseFrame::default();
            for line in raw.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    f.id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    f.event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    f.data = serde_json::from_str(v).unwrap_or(Value::Null);
                }
            }
            if f.event.is_empty() && f.data.is_null() {
                continue;
            }
            frames.push(f);
            if stop(&frames) {
                return frames;
            }
        }
    }
    frames
}

/// One SSE frame.
#[derive(Debug, Clone, Default)]
pub struct SseFrame {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// The real `ag serve` process, for tests that kill and restart it.
pub mod process {
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::Value;

    /// A running `ag serve`; dropping it stops it gracefully (SIGTERM, then SIGKILL).
    pub struct AgServer {
        pub child: Child,
        pub base: String,
    }

    impl AgServer {
        /// `kill -9`: no graceful path at all.
        pub fn kill9(mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            std::mem::forget(self);
        }
    }

    impl Drop for AgServer {
        fn drop(&mut self) {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: kill(2) on our own child's pid; no memory is involved.
                #[allow(unsafe_code)]
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A free loopback port.
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    /// Write a config for the scripted agent (atomically, like an editor saving by rename).
    pub fn write_config(path: &Path, port: u16, state: &Path, allowed: &[&Path], extra: &str) {
        let allowed: Vec<String> = allowed
            .iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect();
        let cfg = format!(
            "port: {port}\nstateDir: \"{}\"\ndefaultAgent: scripted\nmaxSessions: 200\nrateLimit: {{perKeyPerMinute: 0, perIpPerMinute: 0, unauthPerIpPerMinute: 0}}\nallowedWorkDirs: [{}]\nagents:\n  scripted:\n    command: \"{}\"\n    env: {{SCRIPTED_AGENT_STATE_DIR: \"{}\"}}\n{extra}",
            state.display(),
            allowed.join(", "),
            crate::aegis_testkit_bins_scripted().display(),
            state.join("scripted").display(),
        );
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, cfg).expect("write config");
        std::fs::rename(&tmp, path).expect("rename config");
    }

    /// Start `ag serve --config <config>` and wait for its health endpoint.
    pub async fn start(config: &Path, port: u16, log: &Path) -> AgServer {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(aegis_testkit::bins::ag())
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("AEGIS_PORT")
            .env_remove("AEGIS_STATE_DIR")
            .env_remove("AEGIS_SESSION_STORE")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn ag serve");
        let server = AgServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/v1/health", server.base)).send().await {
                if r.status().is_success() {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not come up: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get(base: &str, path: &str) -> Value {
        reqwest::get(format!("{base}{path}"))
            .await
            .expect("GET")
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    pub async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .expect("POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

fn aegis_testkit_bins_scripted() -> PathBuf {
    aegis_testkit::bins::scripted_agent()
}
