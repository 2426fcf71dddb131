//! `ag mcp` driven by real MCP clients: the Python `mcp` package (tests/py/driver.py) and raw
//! JSON-RPC frames, against a live `ag serve` with the scripted agent.
//!
//! Needs the project virtualenv with `mcp` (scripts/install-test-deps.sh); fails loudly without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    aegis_testkit::claude::repo_root()
}

/// The `ag` binary, rebuilt when it is older than this test (it embeds this crate).
fn ag() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let path = aegis_testkit::bins::target_profile_dir().join("ag");
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let me = std::env::current_exe().unwrap();
        if mtime(&path).is_none() || mtime(&path) < mtime(&me) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "aegis-cli", "--bin", "ag"])
                .current_dir(repo_root())
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building ag failed");
        }
        path
    })
    .clone()
}

/// The project virtualenv's python with the `mcp` package.
fn python() -> PathBuf {
    let py = repo_root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/install-test-deps.sh (it installs scripts/requirements-test.txt, including mcp)",
        py.display()
    );
    let out = Command::new(&py)
        .args(["-c", "import mcp, jsonschema"])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the Python `mcp` package is missing from {}: run scripts/install-test-deps.sh\n{}",
        py.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    py
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn healthy(port: u16) -> bool {
    use std::io::Read as _;
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(300),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v1/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.contains(" 200 ") && buf.to_lowercase().contains("x-aegis-api-version: 1")
}

fn signal(pid: u32, sig: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on a child this test started; no memory is involved.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Stop a child: SIGTERM, up to 10 s, then SIGKILL.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A temp directory with a config for the scripted agent, and optionally a running server.
struct Env {
    dir: tempfile::TempDir,
    port: u16,
    config: PathBuf,
    workdir: PathBuf,
    server: Option<Child>,
    master: Option<String>,
}

impl Env {
    fn new(master: Option<&str>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let port = free_port();
        let workdir = root.join("project");
        std::fs::create_dir_all(&workdir).unwrap();
        let state = root.join("state");
        let mut cfg = format!(
            "port: {port}\nhost: 127.0.0.1\nstateDir: \"{}\"\ndefaultAgent: scripted\nallowedWorkDirs: [\"{}\"]\nagents:\n  scripted:\n    command: \"{}\"\n    env: {{SCRIPTED_AGENT_STATE_DIR: \"{}\"}}\n",
            state.display(),
            root.display(),
            aegis_testkit::bins::scripted_agent().display(),
            state.join("scripted").display(),
        );
        if let Some(m) = master {
            // Auth tests: any key of the tenant may act on a session (the driver rule, not
            // ownership, is under test).
            cfg.push_str(&format!(
                "authToken: \"{m}\"\nenforceSessionOwnership: false\n"
            ));
        }
        let config = root.join("config.yaml");
        std::fs::write(&config, cfg).unwrap();
        Env {
            dir,
            port,
            config,
            workdir,
            server: None,
            master: master.map(str::to_owned),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Start `ag serve` and wait for its health.
    fn serve(mut self) -> Env {
        let out = std::fs::File::create(self.log()).unwrap();
        let child = Command::new(ag())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("HOME", self.dir.path())
            .env_remove("AEGIS_PORT")
            .env_remove("AEGIS_STATE_DIR")
            .env_remove("AEGIS_AUTH_TOKEN")
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn ag serve");
        self.server = Some(child);
        let start = Instant::now();
        while !healthy(self.port) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ag serve did not come up:\n{}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self
    }

    /// Run one scenario of the Python driver; its stdout on success.
    fn driver(&self, scenario: &str) -> String {
        let py = python();
        let mcp_log = self.dir.path().join(format!("mcp-{scenario}.log"));
        let snapshot = repo_root().join("crates/aegis-mcp/tests/snapshots/tools.json");
        let mut cmd = Command::new(py);
        cmd.arg(repo_root().join("crates/aegis-mcp/tests/py/driver.py"))
            .arg(scenario)
            .env("AG_BIN", ag())
            .env("AEGIS_URL", self.url())
            .env("AG_CONFIG", &self.config)
            .env("WORKDIR", &self.workdir)
            .env("SNAPSHOT", snapshot)
            .env("MCP_STDERR", &mcp_log)
            .env("HOME", self.dir.path())
            .env("ADMIN_KEY_FILE", self.dir.path().join("admin.key"))
            .env_remove("AEGIS_AUTH_TOKEN")
            .env_remove("AEGIS_TOKEN")
            .env_remove("AEGIS_BASE_URL");
        if let Some(m) = &self.master {
            cmd.env("MASTER_TOKEN", m);
        }
        let start = Instant::now();
        let out = cmd.output().expect("run the python driver");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "python MCP driver scenario `{scenario}` failed ({:?} after {:?})\n--- stdout\n{stdout}\n--- stderr\n{}\n--- ag mcp stderr\n{}\n--- server log (tail)\n{}",
            out.status,
            start.elapsed(),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&mcp_log).unwrap_or_default(),
            tail(&std::fs::read_to_string(self.log()).unwrap_or_default(), 60),
        );
        eprintln!(
            "scenario {scenario}: ok in {:?}\n{stdout}{}",
            start.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(c) = &mut self.server {
            stop(c);
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn tools_list_is_the_34_tool_snapshot_with_prompts_and_resources() {
    let env = Env::new(None).serve();
    env.driver("catalogue");
}

#[test]
fn full_flow_create_approve_transcript_kill() {
    let env = Env::new(None).serve();
    env.driver("flow");
    let out = std::fs::read_to_string(env.workdir.join("out.txt"));
    assert!(out.is_ok(), "the approved write did not create out.txt");
}

#[test]
fn every_one_of_the_34_tools_succeeds_against_the_live_server() {
    let env = Env::new(None).serve();
    env.driver("every_tool");
}

#[test]
fn fuzz_every_tool_with_wrong_and_missing_arguments() {
    let env = Env::new(None).serve();
    env.driver("fuzz");
}

#[test]
fn driver_claim_by_key_a_blocks_key_b_until_released() {
    let env = Env::new(Some("mcp-test-master-token-0123456789")).serve();
    let out = env.driver("driver");
    if out.contains("DEGRADED") {
        eprintln!(
            "NOTICE: the full driver scenario could not run against this server: {}",
            out.trim()
        );
    }
    let out = env.driver("forbidden");
    if out.contains("DEGRADED") {
        eprintln!(
            "NOTICE: the viewer-role scenario could not run against this server: {}",
            out.trim()
        );
    }
}

// ------------------------------------------------------------------------------------------
// Raw JSON-RPC clients (timing and embedded server).

struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Raw {
    fn spawn(env: &Env, args: &[&str]) -> Raw {
        let mut child = Command::new(ag())
            .arg("mcp")
            .arg("--config")
            .arg(&env.config)
            .args(args)
            .env("HOME", env.dir.path())
            .env_remove("AEGIS_AUTH_TOKEN")
            .env_remove("AEGIS_BASE_URL")
            .env_remove("AEGIS_PORT")
            .current_dir(&env.workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(env.dir.path().join("raw-mcp.log"))
                    .unwrap(),
            ))
            .spawn()
            .expect("spawn ag mcp");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Raw {
            child,
            stdin,
            lines: rx,
        }
    }

    fn send(&mut self, v: &Value) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{v}").unwrap();
        s.flush().unwrap();
    }

    /// The response with `id`; every stdout line must be a JSON-RPC frame.
    fn recv(&self, id: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no response {id} within {timeout:?}: {e}"));
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carried a non-JSON line {line:?}: {e}"));
            assert_eq!(v["jsonrpc"], "2.0", "{v}");
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    fn initialize(&mut self) -> Value {
        self.send(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}));
        self.recv(1, Duration::from_secs(10))
    }

    /// Close stdin and wait for the exit (≤ `timeout`).
    fn close(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.stdin.take();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.stdin.take();
        stop(&mut self.child);
    }
}

#[test]
fn initialize_reply_in_under_100ms_with_a_running_server() {
    let env = Env::new(None).serve();
    let url = env.url();
    let mut times = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let mut raw = Raw::spawn(&env, &["--url", &url, "--no-embedded"]);
        let init = raw.initialize();
        let elapsed = start.elapsed();
        assert_eq!(init["result"]["serverInfo"]["name"], "aegis", "{init}");
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
        times.push(elapsed);
        let st = raw.close(Duration::from_secs(10));
        assert!(
            st.is_some_and(|s| s.success()),
            "ag mcp did not exit cleanly on EOF: {st:?}"
        );
    }
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!(
        "ag mcp spawn → initialize reply: best {:?}, median {:?}, all {times:?}",
        sorted[0],
        sorted[sorted.len() / 2]
    );
    assert!(
        sorted[sorted.len() / 2] < Duration::from_millis(100),
        "start → initialize reply took {:?} (median; all: {times:?})",
        sorted[sorted.len() / 2]
    );
}

#[test]
fn embedded_server_starts_when_none_runs_and_stops_on_eof() {
    let env = Env::new(None); // no server
    assert!(!healthy(env.port));
    let mut raw = Raw::spawn(&env, &[]);
    let init = raw.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "aegis", "{init}");
    raw.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    raw.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"server_health","arguments":{}}}));
    let r = raw.recv(2, Duration::from_secs(40));
    assert_ne!(r["result"]["isError"], true, "{r}");
    assert_eq!(r["result"]["structuredContent"]["status"], "ok", "{r}");
    // The embedded server is a full server: other clients can use it.
    assert!(
        healthy(env.port),
        "the embedded server does not answer on its port"
    );
    // Bad input does not kill it.
    raw.send(&json!("garbage"));
    raw.stdin
        .as_mut()
        .unwrap()
        .write_all(b"{not json\n")
        .unwrap();
    raw.send(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_status","arguments":{"sessionId": 5}}}));
    let r = raw.recv(3, Duration::from_secs(10));
    assert_eq!(r["result"]["isError"], true, "{r}");
    let st = raw.close(Duration::from_secs(25));
    assert!(
        st.is_some_and(|s| s.success()),
        "ag mcp did not stop on EOF: {st:?}\n{}",
        std::fs::read_to_string(env.dir.path().join("raw-mcp.log")).unwrap_or_default()
    );
    assert!(!healthy(env.port), "the embedded server outlived ag mcp");
}

#[test]
fn no_embedded_reports_server_unreachable() {
    let env = Env::new(None); // no server
    let mut raw = Raw::spawn(&env, &["--no-embedded"]);
    raw.initialize();
    raw.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    raw.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_sessions","arguments":{}}}));
    let r = raw.recv(2, Duration::from_secs(10));
    assert_eq!(r["result"]["isError"], true, "{r}");
    let text: Value =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text["code"], "SERVER_UNREACHABLE", "{text}");
    assert!(!healthy(env.port), "--no-embedded started a server");
}
