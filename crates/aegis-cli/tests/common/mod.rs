//! Harness for tests that run the real `ag` binary: a per-test directory (outside `/tmp`, so
//! the server's default allowed roots accept projects under the temp HOME), a free port, the
//! scripted agent, a command wrapper whose failures print command, cwd, stdout and stderr, and
//! guards that stop every server a test started (by pid).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const AG: &str = env!("CARGO_BIN_EXE_ag");
pub const AEGIS: &str = env!("CARGO_BIN_EXE_aegis");

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True when an Aegis server answers `GET /v1/health` on `port`.
pub fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(500),
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
    buf.starts_with("HTTP/1.")
        && buf.contains(" 200 ")
        && buf.to_lowercase().contains("x-aegis-api-version: 1")
}

/// Wait until `f` holds (polling every 100 ms) or panic with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(pid: i32, sig: i32) {
    #[allow(unsafe_code)]
    // SAFETY: `kill` has no memory-safety preconditions; `pid` is a server this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn pid_alive(pid: i32) -> bool {
    #[allow(unsafe_code)]
    // SAFETY: signal 0 only checks existence.
    let r = unsafe { libc::kill(pid, 0) };
    if r != 0 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(|st| st != "Z"))
                .unwrap_or(true)
        })
        .unwrap_or(false)
}

/// SIGTERM `pid`, wait up to 10 s, then SIGKILL.
pub fn stop_pid(pid: i32) {
    if !pid_alive(pid) {
        return;
    }
    signal(pid, libc::SIGTERM);
    let start = Instant::now();
    while pid_alive(pid) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if pid_alive(pid) {
        signal(pid, libc::SIGKILL);
    }
}

/// The result of one `ag` invocation.
pub struct Output {
    pub cmd: String,
    pub cwd: PathBuf,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Everything about the run, ripgrep style.
    pub fn describe(&self) -> String {
        format!(
            "\n\n==================== command ====================\n{}\n==================== cwd ====================\n{}\n==================== exit code ====================\n{:?} (after {:?})\n==================== stdout ====================\n{}\n==================== stderr ====================\n{}\n",
            self.cmd,
            self.cwd.display(),
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }

    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(expected),
            "unexpected exit code{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.code(0)
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stdout_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stdout.contains(needle),
            "stdout has {needle:?}{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stderr_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stderr.contains(needle),
            "stderr has {needle:?}{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}{}", self.describe()))
    }
}

/// A command being built.
pub struct Cmd {
    bin: String,
    args: Vec<String>,
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    stdin: Option<String>,
    timeout: Duration,
}

impl Cmd {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.insert(k.to_owned(), v.into());
        self
    }

    pub fn env_remove(mut self, k: &str) -> Self {
        self.env.remove(k);
        self
    }

    pub fn cwd(mut self, p: impl AsRef<Path>) -> Self {
        self.cwd = p.as_ref().to_path_buf();
        self
    }

    pub fn stdin(mut self, s: &str) -> Self {
        self.stdin = Some(s.to_owned());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.env {
            if k.starts_with("AEGIS_") || k.starts_with("ANTHROPIC_") || k == "HOME" {
                s.push_str(&format!("{k}={v} "));
            }
        }
        s.push_str(&self.bin);
        for a in &self.args {
            s.push_str(&format!(" {a:?}"));
        }
        s
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(&self.args)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(&self.env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        c
    }

    /// Start without waiting.
    pub fn spawn(self) -> Running {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.describe()));
        if let Some(input) = &self.stdin {
            let mut si = child.stdin.take().unwrap();
            si.write_all(input.as_bytes()).unwrap();
        }
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let pump = |mut r: Box<dyn std::io::Read + Send>, buf: Arc<Mutex<String>>| {
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                loop {
                    match r.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf
                            .lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&chunk[..n])),
                    }
                }
            })
        };
        let t1 = pump(Box::new(child.stdout.take().unwrap()), stdout.clone());
        let t2 = pump(Box::new(child.stderr.take().unwrap()), stderr.clone());
        Running {
            desc: self.describe(),
            cwd: self.cwd.clone(),
            child,
            stdout,
            stderr,
            pumps: vec![t1, t2],
            started: Instant::now(),
            timeout: self.timeout,
        }
    }

    /// Run to completion (killed and reported after the timeout).
    pub fn run(self) -> Output {
        self.spawn().wait()
    }
}

/// A running `ag`.
pub struct Running {
    desc: String,
    cwd: PathBuf,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    pumps: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
    timeout: Duration,
}

impl Running {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn snapshot(&self) -> Output {
        Output {
            cmd: self.desc.clone(),
            cwd: self.cwd.clone(),
            code: None,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
            elapsed: self.started.elapsed(),
        }
    }

    /// Wait until stderr contains `needle`.
    #[track_caller]
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        let buf = self.stderr.clone();
        self.wait_for(&buf, "stderr", needle, timeout)
    }

    /// Wait until stdout contains `needle`.
    #[track_caller]
    pub fn wait_stdout(&mut self, needle: &str, timeout: Duration) -> String {
        let buf = self.stdout.clone();
        self.wait_for(&buf, "stdout", needle, timeout)
    }

    #[track_caller]
    fn wait_for(
        &mut self,
        buf: &Arc<Mutex<String>>,
        name: &str,
        needle: &str,
        timeout: Duration,
    ) -> String {
        let start = Instant::now();
        loop {
            let err = buf.lock().unwrap().clone();
            if err.contains(needle) {
                return err;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let err = buf.lock().unwrap().clone();
                if err.contains(needle) {
                    return err;
                }
                panic!(
                    "exited before {name} had {needle:?}{}",
                    self.snapshot().describe()
                );
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("{name} never had {needle:?}{}", self.snapshot().describe());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send a signal to the process.
    pub fn signal(&self, sig: i32) {
        signal(self.pid(), sig);
    }

    pub fn wait(mut self) -> Output {
        let deadline = self.started + self.timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
        let mut out = self.snapshot();
        match status {
            Some(st) => out.code = st.code(),
            None => panic!("timed out after {:?}{}", self.timeout, out.describe()),
        }
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One test's world: temp HOME, state dir, project, port; stops its servers when dropped.
pub struct TestEnv {
    pub root: tempfile::TempDir,
    pub home: PathBuf,
    pub project: PathBuf,
    /// An empty directory used as the cwd of commands (no `.aegis/` in it).
    pub work: PathBuf,
    pub state: PathBuf,
    pub port: u16,
    /// The config file (scripted agent) when written with [`TestEnv::with_config`].
    pub config: Option<PathBuf>,
    servers: Mutex<Vec<Child>>,
}

impl TestEnv {
    /// Directories and a port; no config file anywhere.
    pub fn bare() -> TestEnv {
        let root = tempfile::Builder::new()
            .prefix("ag-cli-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let base = root.path().canonicalize().unwrap();
        let home = base.join("home");
        let project = home.join("project");
        let work = base.join("work");
        let state = base.join("state");
        for d in [&home, &project, &work] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(project.join("README.md"), "# test project\n").unwrap();
        TestEnv {
            root,
            home,
            project,
            work,
            state,
            port: free_port(),
            config: None,
            servers: Mutex::new(Vec::new()),
        }
    }

    /// With `<root>/config.yaml`: the scripted agent as default, this env's port and state dir.
    pub fn with_config() -> TestEnv {
        let mut env = TestEnv::bare();
        let path = env.root.path().canonicalize().unwrap().join("config.yaml");
        let agent = aegis_testkit::bins::scripted_agent();
        std::fs::write(
            &path,
            format!(
                "port: {}\nstateDir: {}\ndefaultAgent: scripted\nallowedWorkDirs: [{}]\nagents:\n  scripted: {{command: {}}}\n",
                env.port,
                env.state.display(),
                env.root.path().canonicalize().unwrap().display(),
                agent.display()
            ),
        )
        .unwrap();
        env.config = Some(path);
        env
    }

    /// `ag <args>` with a clean environment: PATH, HOME, and `AEGIS_CONFIG` when configured.
    pub fn ag<I: IntoIterator<Item = S>, S: Into<String>>(&self, args: I) -> Cmd {
        self.bin(AG, args)
    }

    pub fn bin<I: IntoIterator<Item = S>, S: Into<String>>(&self, bin: &str, args: I) -> Cmd {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_owned(), std::env::var("PATH").unwrap_or_default());
        env.insert("HOME".to_owned(), self.home.display().to_string());
        if let Some(c) = &self.config {
            env.insert("AEGIS_CONFIG".to_owned(), c.display().to_string());
        }
        Cmd {
            bin: bin.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            cwd: self.work.clone(),
            env,
            stdin: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// Start `ag serve` (foreground child of the test) and wait for health.
    pub fn start_server(&self) {
        let config = self
            .config
            .as_ref()
            .expect("start_server needs with_config()");
        let log = std::fs::File::create(self.root.path().join(format!("serve-{}.log", self.port)))
            .unwrap();
        let child = Command::new(AG)
            .args(["serve", "--config"])
            .arg(config)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.servers.lock().unwrap().push(child);
        let port = self.port;
        wait_until("the server to answer", Duration::from_secs(20), || {
            healthy(port)
        });
    }

    /// The server log of [`TestEnv::start_server`].
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.root.path().join(format!("serve-{}.log", self.port)))
            .unwrap_or_default()
    }

    /// Stop servers started by this test (foreground children and `ag run`'s detached one).
    pub fn stop_servers(&self) {
        for mut c in self.servers.lock().unwrap().drain(..) {
            stop_pid(i32::try_from(c.id()).unwrap());
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = std::fs::read_to_string(self.state.join("aegis.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            stop_pid(pid);
        }
    }

    /// Create a session through the CLI and return its full id.
    pub fn create(&self, brief: &str) -> String {
        let out = self
            .ag(["create", brief, "--no-reuse", "--json", "--cwd"])
            .arg(self.project.display().to_string())
            .run();
        out.ok();
        out.json()["id"].as_str().unwrap().to_owned()
    }

    /// The session as JSON (`ag status <id> --json`).
    pub fn session(&self, id: &str) -> serde_json::Value {
        let out = self.ag(["status", id, "--json"]).run();
        out.ok();
        out.json()
    }

    /// Wait until the session has `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        let start = Instant::now();
        loop {
            let s = self.session(id);
            if s["status"] == status {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "session {id} never reached {status}; now {}\n{}",
                s["status"],
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.stop_servers();
    }
}

/// A minimal HTTP server answering every request with `(status, body)` from `answer(path)`,
/// carrying `X-Aegis-API-Version: 1`; records request heads.
pub struct FakeServer {
    pub port: u16,
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl FakeServer {
    pub fn start(answer: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let rec = heads.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { break };
                let rec = rec.clone();
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    rec.lock().unwrap().push(head);
                    let (status, body) = answer(&path);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nX-Aegis-API-Version: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes());
                });
            }
        });
        FakeServer { port, heads }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
