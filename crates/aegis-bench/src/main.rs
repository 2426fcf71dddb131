//! `aegis-bench`: the server benchmark (issue 3, item 10).
//!
//! `cargo run --release -p aegis-bench [-- --out PATH]` builds the release `ag` and
//! `aegis-scripted-agent` next to itself (when run through cargo), starts `ag serve` processes
//! with temporary state dirs on free loopback ports, measures, prints one Markdown table to
//! stdout (progress goes to stderr) and writes the figures as JSON (`bench-results.json` in the
//! current directory unless `--out` says otherwise).
//!
//! Every loop is bounded by a count or a deadline, only 127.0.0.1 is contacted, and every
//! process started here is stopped by pid — on success, on error, on Ctrl-C; the bench is a
//! child subreaper, so agents orphaned by a server that exits are found and killed too.

mod baseline;
mod http;
mod procs;
mod sse;
mod stats;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tempfile::TempDir;

use crate::http::LoadResult;
use crate::procs::Proc;
use crate::sse::Sse;
use crate::stats::{Summary, median, round3};

const USAGE: &str = "\
aegis-bench: benchmark `ag serve` with the scripted agent (loopback only).

USAGE: cargo run --release -p aegis-bench -- [OPTIONS]

OPTIONS:
  --out PATH            JSON results (default: bench-results.json in the current dir)
  --sessions N          sessions for the 1000-session figures (default 1000)
  --duration SECS       measured seconds per req/s run (default 3)
  --concurrency N       keep-alive connections per req/s run (default 16)
  --create-samples N    sessions timed for create → idle (default 50)
  --subscribers N       SSE subscribers for the fan-out latency row (default 100)
  --slow-chunks N       chunks per `slow:N` turn in the SSE latency rows (default 200)
  --relay-sessions N    sessions driven in the events/s row (default 32)
  --relay-secs SECS     length of the events/s window (default 5)
  --ag PATH             the `ag` binary (default: next to this binary)
  --agent PATH          the `aegis-scripted-agent` binary (default: next to this binary)
  --no-build            do not run `cargo build` for the two binaries first
  --keep                keep the servers' temporary dirs (state, config, server.log)
  --quick               small smoke run (200 sessions, 1 s runs, 3 cold starts)

Internal: aegis-bench --baseline-server <port> <file>";

/// Server and baseline runs alternate this many times per endpoint.
const ROUNDS: usize = 2;
/// Give up on a server that is not healthy this long after spawn.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Give up on a session that is not idle this long after create/send.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Opts {
    out: PathBuf,
    sessions: usize,
    cold_starts: usize,
    warmup: Duration,
    duration: Duration,
    concurrency: usize,
    create_samples: usize,
    subscribers: usize,
    slow_chunks: usize,
    relay_sessions: usize,
    relay_secs: Duration,
    ag: Option<PathBuf>,
    agent: Option<PathBuf>,
    build: bool,
    keep: bool,
}

/// `--keep`: leave the servers' temporary dirs in place.
static KEEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Default for Opts {
    fn default() -> Self {
        Opts {
            out: PathBuf::from("bench-results.json"),
            sessions: 1000,
            cold_starts: 10,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(3),
            concurrency: 16,
            create_samples: 50,
            subscribers: 100,
            slow_chunks: 200,
            relay_sessions: 32,
            relay_secs: Duration::from_secs(5),
            ag: None,
            agent: None,
            build: true,
            keep: false,
        }
    }
}

fn parse_args(args: &[String]) -> Result<Option<Opts>> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        let num = |name: &str, v: String, max: usize| -> Result<usize> {
            v.parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .with_context(|| format!("{name} must be a whole number in 1..={max}, not {v:?}"))
        };
        let secs = |name: &str, v: String| -> Result<Duration> {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && *s <= 600.0)
                .map(Duration::from_secs_f64)
                .with_context(|| format!("{name} must be seconds in (0, 600], not {v:?}"))
        };
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--out" => o.out = PathBuf::from(val(a)?),
            "--sessions" => o.sessions = num(a, val(a)?, 10_000)?,
            "--duration" => o.duration = secs(a, val(a)?)?,
            "--concurrency" => o.concurrency = num(a, val(a)?, 1024)?,
            "--create-samples" => o.create_samples = num(a, val(a)?, 1000)?,
            "--subscribers" => o.subscribers = num(a, val(a)?, 4000)?,
            "--slow-chunks" => o.slow_chunks = num(a, val(a)?, 10_000)?,
            "--relay-sessions" => o.relay_sessions = num(a, val(a)?, 1000)?,
            "--relay-secs" => o.relay_secs = secs(a, val(a)?)?,
            "--ag" => o.ag = Some(PathBuf::from(val(a)?)),
            "--agent" => o.agent = Some(PathBuf::from(val(a)?)),
            "--no-build" => o.build = false,
            "--keep" => o.keep = true,
            "--quick" => {
                o.sessions = 200;
                o.cold_starts = 3;
                o.duration = Duration::from_secs(1);
                o.warmup = Duration::from_millis(200);
                o.create_samples = 10;
                o.subscribers = 20;
                o.slow_chunks = 50;
                o.relay_sessions = 8;
                o.relay_secs = Duration::from_secs(2);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    // The fixed sessions used by the later rows come out of the measured ones.
    o.sessions = o.sessions.max(o.create_samples + o.relay_sessions + 2);
    Ok(Some(o))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--baseline-server") {
        return baseline::main(&args[1..]);
    }
    let opts = match parse_args(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if !procs::become_subreaper() {
        eprintln!("warning: cannot become a child subreaper; orphaned agents may be missed");
    }
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(&opts)));
    let swept = procs::sweep_orphans();
    if swept > 0 {
        eprintln!("killed {swept} leftover process(es)");
    }
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

fn run(opts: &Opts) -> Result<()> {
    let bins = locate_binaries(opts)?;
    KEEP.store(opts.keep, std::sync::atomic::Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        tokio::select! {
            r = bench(opts, &bins) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    drop(rt);
    let (rows, mut json) = report?;
    println!("{}", render_table(&rows));
    json.insert(
        "table".into(),
        Value::Array(
            rows.iter()
                .map(|r| json!({"metric": r.metric, "result": r.result, "target": r.target, "met": r.met}))
                .collect(),
        ),
    );
    let text = serde_json::to_string_pretty(&Value::Object(json))?;
    std::fs::write(&opts.out, text + "\n")
        .with_context(|| format!("cannot write {}", opts.out.display()))?;
    eprintln!("results written to {}", opts.out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Bins {
    ag: PathBuf,
    agent: PathBuf,
    me: PathBuf,
    release: bool,
}

/// `ag` and `aegis-scripted-agent` from the target dir this binary lives in; built first
/// (a no-op when fresh) when run through cargo.
fn locate_binaries(opts: &Opts) -> Result<Bins> {
    let me = std::env::current_exe().context("cannot locate this executable")?;
    let dir = me
        .parent()
        .context("executable without a directory")?
        .to_path_buf();
    let release = dir.file_name().is_some_and(|n| n == "release");
    if !release {
        eprintln!(
            "warning: aegis-bench runs from {} — not a release build; the figures are not comparable (use `cargo run --release -p aegis-bench`)",
            dir.display()
        );
    }
    let ag = opts.ag.clone().unwrap_or_else(|| dir.join("ag"));
    let agent = opts
        .agent
        .clone()
        .unwrap_or_else(|| dir.join("aegis-scripted-agent"));
    let cargo = std::env::var_os("CARGO");
    if opts.build
        && opts.ag.is_none()
        && opts.agent.is_none()
        && let Some(cargo) = cargo
    {
        eprintln!("building ag and aegis-scripted-agent (no-op when up to date)…");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "aegis-cli", "-p", "aegis-testkit", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        if manifest.is_dir() {
            cmd.current_dir(manifest);
        }
        let status = cmd.status().context("cannot run cargo build")?;
        if !status.success() {
            bail!("cargo build -p aegis-cli -p aegis-testkit --bins failed");
        }
    }
    for p in [&ag, &agent] {
        if !p.is_file() {
            bail!(
                "{} is missing: run `cargo build --release -p aegis-cli -p aegis-testkit --bins` first (same target dir), or pass --ag/--agent",
                p.display()
            );
        }
    }
    Ok(Bins {
        ag,
        agent,
        me,
        release,
    })
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?.port())
}

fn yaml_str(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap_or_default()
}

/// Blocking: `GET path` until a 200 (or the process dies, or the deadline passes); returns the
/// instant of the 200. Retries every 200 µs.
fn wait_ok_blocking(port: u16, path: &str, pid: u32, deadline: Instant) -> Result<Instant> {
    loop {
        if http::blocking_status(port, path) == Some(200) {
            return Ok(Instant::now());
        }
        if !procs::alive(pid) {
            bail!("process {pid} exited before answering {path}");
        }
        if Instant::now() > deadline {
            bail!("no 200 from 127.0.0.1:{port}{path} in time");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// One `ag serve` with its own temporary state dir, work dir and log.
struct Server {
    proc: Proc,
    port: u16,
    base: String,
    work: PathBuf,
    log: PathBuf,
    dir: TempDir,
}

impl Server {
    /// Spawn `ag serve` on a fresh state dir and wait for its first healthy answer; returns the
    /// time from spawn to it.
    async fn start(bins: &Bins) -> Result<(Server, Duration)> {
        let mut dir = tempfile::Builder::new().prefix("aegis-bench-").tempdir()?;
        dir.disable_cleanup(KEEP.load(std::sync::atomic::Ordering::Relaxed));
        Server::start_in(bins, dir).await
    }

    /// The same, on the state dir of an earlier server (a restart).
    async fn start_in(bins: &Bins, dir: TempDir) -> Result<(Server, Duration)> {
        let port = free_port()?;
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work)?;
        let cfg = dir.path().join("config.yaml");
        let yaml = format!(
            "port: {port}\nhost: 127.0.0.1\nstateDir: {}\ndefaultAgent: scripted\nmaxSessions: 100000\nrateLimit: {{perKeyPerMinute: 0, perIpPerMinute: 0, unauthPerIpPerMinute: 0}}\nallowedWorkDirs: [{}]\nsse: {{maxConnections: 5000, maxPerIp: 5000}}\nagents:\n  scripted:\n    command: {}\n    env: {{SCRIPTED_AGENT_STATE_DIR: {}}}\n",
            yaml_str(&dir.path().join("state")),
            yaml_str(&work),
            yaml_str(&bins.agent),
            yaml_str(&dir.path().join("scripted")),
        );
        std::fs::write(&cfg, yaml)?;
        let log = dir.path().join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(&bins.ag);
        cmd.arg("serve")
            .arg("--config")
            .arg(&cfg)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AEGIS_") {
                cmd.env_remove(&k);
            }
        }
        let t0 = Instant::now();
        let proc = Proc::spawn("ag serve", cmd)?;
        let pid = proc.pid();
        let ready = tokio::task::spawn_blocking(move || {
            wait_ok_blocking(port, "/v1/health", pid, t0 + STARTUP_TIMEOUT)
        })
        .await?;
        let ready = match ready {
            Ok(t) => t,
            Err(e) => {
                let tail = tail(&log);
                bail!("ag serve did not come up: {e}\n--- server log ---\n{tail}");
            }
        };
        Ok((
            Server {
                proc,
                port,
                base: format!("http://127.0.0.1:{port}"),
                work,
                log,
                dir,
            },
            ready - t0,
        ))
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn rss_kb(&self) -> Result<u64> {
        procs::rss_kb(self.pid())
    }

    /// Graceful stop (SIGTERM; SIGKILL after 60 s), then kill whatever it left behind.
    fn stop(self) {
        drop(self.stop_keep_state());
    }

    /// [`Server::stop`], keeping the state dir for a restart.
    fn stop_keep_state(mut self) -> TempDir {
        self.proc.stop(Duration::from_secs(60));
        procs::sweep_orphans();
        self.dir
    }
}

fn tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The agents of a server: (processes, summed VmRSS in KiB).
fn agents_rss(server_pid: u32) -> (usize, u64) {
    let kids = procs::children_of(server_pid);
    let rss = kids.iter().filter_map(|p| procs::rss_kb(*p).ok()).sum();
    (kids.len(), rss)
}

// ---------------------------------------------------------------------------------------------
// REST client
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    port: u16,
    work: String,
}

/// What the per-session stream showed until `idle`: (event label, server `emittedAt` in epoch
/// ms, client receive time in epoch ms).
type Timeline = Vec<(String, u64, f64)>;

/// One timed create → idle.
struct CreateSample {
    id: String,
    total: Duration,
    /// Until the 201 was read.
    post: Duration,
    /// Client start (epoch ms), to place the server's stamps.
    t0_epoch: f64,
    timeline: Timeline,
}

impl Api {
    fn new(server: &Server) -> Result<Api> {
        Ok(Api {
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(256)
                .build()?,
            base: server.base.clone(),
            port: server.port,
            work: server.work.display().to_string(),
        })
    }

    async fn create(&self, prompt: &str) -> Result<String> {
        let r = self
            .http
            .post(format!("{}/v1/sessions", self.base))
            .json(&json!({"workDir": self.work, "prompt": prompt, "reuse": false}))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status.as_u16() != 201 {
            bail!("POST /v1/sessions → {status}: {body}");
        }
        body["id"]
            .as_str()
            .map(str::to_owned)
            .context("create response without id")
    }

    /// Follow the session's SSE stream (replayed from the start) until status `idle`.
    async fn wait_idle(&self, id: &str) -> Result<Timeline> {
        let path = format!("/v1/sessions/{id}/events?after=0&types=created,agent,turn,status");
        let mut sse = Sse::open(self.port, &path).await?;
        let deadline = Instant::now() + TURN_TIMEOUT;
        let mut timeline = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = sse
                .next_within(left)
                .await
                .with_context(|| format!("session {id} did not become idle"))?;
            if f.event == "connected" {
                continue;
            }
            let v = f.json();
            let at = v["emittedAt"].as_u64().unwrap_or(0);
            let d = &v["data"];
            let label = match f.event.as_str() {
                "agent" | "turn" => format!("{}:{}", f.event, d["phase"].as_str().unwrap_or("?")),
                "status" => format!("status:{}", d["status"].as_str().unwrap_or("?")),
                other => other.to_owned(),
            };
            timeline.push((label.clone(), at, f.recv_ms));
            match label.as_str() {
                "status:idle" => return Ok(timeline),
                "status:crashed" | "status:killed" | "status:completed" | "status:interrupted" => {
                    bail!("session {id} ended instead of becoming idle: {v}")
                }
                _ => {}
            }
        }
    }

    /// Wait until the session is idle now. The stream replays the session's whole log (all
    /// types, so the dense ids show where the replay ends: `connected` names the last id), then
    /// goes live; the last status at the end of the replay is the current one. No polling, and
    /// no window between reading the status and subscribing.
    async fn wait_settled(&self, id: &str) -> Result<()> {
        let mut sse = Sse::open(self.port, &format!("/v1/sessions/{id}/events?after=0")).await?;
        let deadline = Instant::now() + TURN_TIMEOUT;
        let mut last_at_connect: Option<u64> = None;
        let mut replayed = false;
        let mut status = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = sse
                .next_within(left)
                .await
                .with_context(|| format!("session {id} did not settle (status {status:?})"))?;
            let v = f.json();
            if f.event == "connected" {
                let last = v["data"]["lastEventId"].as_u64().unwrap_or(0);
                last_at_connect = Some(last);
                replayed = last == 0;
                continue;
            }
            if f.event == "status" {
                status = v["data"]["status"].as_str().unwrap_or("").to_owned();
            }
            let fid = f.id.as_deref().and_then(|i| i.parse::<u64>().ok());
            if let (Some(last), Some(fid)) = (last_at_connect, fid)
                && fid >= last
            {
                replayed = true;
            }
            if replayed && status == "idle" {
                return Ok(());
            }
        }
    }

    /// POST with a prompt, then wait for `idle` on the session's stream.
    async fn create_idle(&self, prompt: &str) -> Result<CreateSample> {
        let t0_epoch = sse::epoch_ms();
        let t0 = Instant::now();
        let id = self.create(prompt).await?;
        let post = t0.elapsed();
        let timeline = self.wait_idle(&id).await?;
        Ok(CreateSample {
            id,
            total: t0.elapsed(),
            post,
            t0_epoch,
            timeline,
        })
    }

    async fn send(&self, id: &str, text: &str) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/v1/sessions/{id}/send", self.base))
            .json(&json!({"text": text}))
            .send()
            .await?;
        if !r.status().is_success() {
            let s = r.status();
            bail!("send to {id} → {s}: {}", r.text().await.unwrap_or_default());
        }
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<()> {
        let r = self
            .http
            .delete(format!("{}/v1/sessions/{id}", self.base))
            .send()
            .await?;
        if !r.status().is_success() {
            let s = r.status();
            bail!("DELETE {id} → {s}: {}", r.text().await.unwrap_or_default());
        }
        Ok(())
    }

    async fn health(&self) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}/v1/health", self.base))
            .send()
            .await?
            .json()
            .await?)
    }
}

/// Create sessions (prompt `hello`, each waited to idle) until `ids` holds `target`, `conc` at a
/// time. Stops at the first failure and returns it (the bench measures what it got).
async fn fill(api: &Api, ids: &mut Vec<String>, target: usize, conc: usize) -> Option<String> {
    let need = target.saturating_sub(ids.len());
    let mut results = futures::stream::iter(0..need)
        .map(|_| {
            let api = api.clone();
            async move { api.create_idle("bench hello").await }
        })
        .buffer_unordered(conc);
    let mut error = None;
    while let Some(r) = results.next().await {
        match r {
            Ok(sample) => ids.push(sample.id),
            Err(e) => {
                error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        if ids.len().is_multiple_of(100) {
            eprintln!("  {} sessions", ids.len());
        }
    }
    error
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

struct Row {
    metric: String,
    result: String,
    target: String,
    met: String,
}

fn row(metric: impl Into<String>, result: impl Into<String>, target: &str, met: String) -> Row {
    Row {
        metric: metric.into(),
        result: result.into(),
        target: target.into(),
        met,
    }
}

/// Verdict for "at most `target`".
fn at_most(value: f64, target: f64, unit: &str) -> String {
    if value <= target {
        "yes".into()
    } else {
        format!(
            "**no**: {:.1} {unit} over ({:.1}× the target)",
            value - target,
            value / target
        )
    }
}

/// Verdict for a ratio that should be at least `target` (both as fractions).
fn at_least_ratio(value: f64, target: f64) -> String {
    if value >= target {
        "yes".into()
    } else {
        format!(
            "**no**: {:.0}% ({:.0} points short)",
            value * 100.0,
            (target - value) * 100.0
        )
    }
}

fn render_table(rows: &[Row]) -> String {
    let mut s = String::from("| Metric | Result | Target | Met |\n|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.metric, r.result, r.target, r.met
        ));
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn load_json(r: &LoadResult, server_cores: f64, client_cores: f64) -> Value {
    json!({
        "requests": r.requests,
        "errors": r.errors,
        "seconds": r.seconds,
        "reqPerSec": round3(r.rps),
        "latencyMs": r.latency.json(),
        "serverCpuCores": round3(server_cores),
        "benchCpuCores": round3(client_cores),
    })
}

// ---------------------------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------------------------

fn step(s: &str) {
    eprintln!("== {s}");
}

async fn bench(opts: &Opts, bins: &Bins) -> Result<(Vec<Row>, Map<String, Value>)> {
    let mut rows = Vec::new();
    let mut out = Map::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(load1) = loadavg().and_then(|l| l.split(' ').next()?.parse::<f64>().ok())
        && load1 > cores as f64 / 2.0
    {
        eprintln!(
            "warning: the machine is busy (load average {load1:.1} on {cores} cores): the figures will be inflated; rerun when it is quiet"
        );
    }
    out.insert("machine".into(), machine_facts());
    out.insert(
        "settings".into(),
        json!({
            "release": bins.release,
            "ag": bins.ag.display().to_string(),
            "agent": bins.agent.display().to_string(),
            "coldStarts": opts.cold_starts,
            "sessions": opts.sessions,
            "warmupSecs": opts.warmup.as_secs_f64(),
            "durationSecs": opts.duration.as_secs_f64(),
            "concurrency": opts.concurrency,
            "createSamples": opts.create_samples,
            "subscribers": opts.subscribers,
            "slowChunks": opts.slow_chunks,
            "relaySessions": opts.relay_sessions,
            "relaySecs": opts.relay_secs.as_secs_f64(),
        }),
    );

    // 1. Cold start.
    step(&format!("cold start × {}", opts.cold_starts));
    let mut cold = Vec::new();
    for _ in 0..opts.cold_starts {
        let (server, took) = Server::start(bins).await?;
        cold.push(ms(took));
        server.stop();
    }
    let cold_med = median(&cold);
    let cold_s = Summary::of(cold.clone());
    out.insert(
        "coldStartMs".into(),
        json!({"samples": cold.iter().map(|x| round3(*x)).collect::<Vec<_>>(), "median": round3(cold_med), "min": round3(cold_s.min), "max": round3(cold_s.max), "target": 30}),
    );
    rows.push(row(
        format!(
            "Cold start: spawn `ag serve` → first 200 from `/v1/health` (median of {})",
            opts.cold_starts
        ),
        format!(
            "{cold_med:.1} ms (min {:.1}, max {:.1})",
            cold_s.min, cold_s.max
        ),
        "≤ 30 ms",
        at_most(cold_med, 30.0, "ms"),
    ));

    // 2. Idle RSS.
    step("idle RSS");
    let (server, _) = Server::start(bins).await?;
    eprintln!(
        "  server pid {}, log {}",
        server.pid(),
        server.log.display()
    );
    let api = Api::new(&server)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = server.rss_kb()?;
    out.insert(
        "idleRssKb".into(),
        json!({"value": rss0, "targetKb": 20 * 1024}),
    );
    rows.push(row(
        "Idle RSS of the server (0 sessions, after its first request)",
        format!("{:.1} MiB", mib(rss0)),
        "≤ 20 MiB",
        at_most(mib(rss0), 20.0, "MiB"),
    ));

    // The same comparison for the health check with no session at all (shows what grows with
    // the session count).
    let scratch0 = tempfile::Builder::new()
        .prefix("aegis-bench-bodies-")
        .tempdir()?;
    let mut http_json = Vec::new();
    let (r, j) = compare(
        &server,
        bins,
        opts,
        scratch0.path(),
        "GET /v1/health",
        "/v1/health",
        true,
        0,
    )
    .await?;
    rows.push(r);
    http_json.push(j);

    // 3. Create → idle.
    step(&format!("create → idle × {}", opts.create_samples));
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..2 {
        // Warm-up (page cache of the agent binary, first store files): not timed.
        ids.push(api.create_idle("bench warm-up").await?.id);
    }
    let mut create_ms = Vec::new();
    // Where the time goes, from the client's start: the 201, the server's stamps of each event
    // (ms resolution), and the arrival of `idle`.
    let mut phases: HashMap<String, Vec<f64>> = HashMap::new();
    for _ in 0..opts.create_samples {
        let s = api.create_idle("bench hello").await?;
        create_ms.push(ms(s.total));
        phases
            .entry("client: 201 received".into())
            .or_default()
            .push(ms(s.post));
        for (label, at, recv) in &s.timeline {
            phases
                .entry(format!("server: {label} stamped"))
                .or_default()
                .push(*at as f64 - s.t0_epoch);
            if label == "status:idle" {
                phases
                    .entry("client: idle received".into())
                    .or_default()
                    .push(recv - s.t0_epoch);
            }
        }
        ids.push(s.id);
    }
    let create = Summary::of(create_ms);
    let mut phase_json = Map::new();
    let mut phase_list: Vec<(String, f64)> =
        phases.iter().map(|(k, v)| (k.clone(), median(v))).collect();
    phase_list.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (k, v) in &phase_list {
        phase_json.insert(k.clone(), json!(round3(*v)));
    }
    out.insert(
        "createToIdleMs".into(),
        json!({"latency": create.json(), "phasesMedianMsSinceStart": phase_json, "targetP50": 20}),
    );
    rows.push(row(
        format!(
            "Create → idle: POST with a prompt → `idle` on the session's SSE stream ({} sessions, one at a time)",
            opts.create_samples
        ),
        format!("p50 {:.1} ms, p99 {:.1} ms", create.p50, create.p99),
        "p50 ≤ 20 ms",
        at_most(create.p50, 20.0, "ms"),
    ));

    // 4. RSS per session at 100 and at N live sessions.
    let mut rss_rows = Vec::new();
    let mut fill_error = None;
    let mut checkpoints = vec![100.min(opts.sessions), opts.sessions];
    checkpoints.dedup();
    for target in checkpoints {
        step(&format!("fill to {target} live sessions"));
        if fill_error.is_none() {
            fill_error = fill(&api, &mut ids, target, 8).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = server.rss_kb()?;
        let (agents, agents_kb) = agents_rss(server.pid());
        let n = ids.len();
        let per = (rss.saturating_sub(rss0)) as f64 / n as f64;
        rss_rows.push(json!({"sessions": n, "serverRssKb": rss, "perSessionKb": round3(per), "agentProcesses": agents, "agentsRssKb": agents_kb}));
        eprintln!(
            "  {n} live: server {:.1} MiB, {per:.1} KiB/session; {agents} agents use {:.0} MiB",
            mib(rss),
            mib(agents_kb)
        );
    }
    if let Some(e) = &fill_error {
        eprintln!("  could not create every session: {e}");
    }
    let health = api.health().await.unwrap_or(Value::Null);
    out.insert(
        "rssPerLiveSession".into(),
        json!({"points": rss_rows, "fillError": fill_error, "health": health["sessions"], "targetKb": 100}),
    );
    for (i, p) in rss_rows.iter().enumerate() {
        let per = p["perSessionKb"].as_f64().unwrap_or(0.0);
        let rss = p["serverRssKb"].as_u64().unwrap_or(0);
        let n = p["sessions"].as_u64().unwrap_or(0);
        let marginal = match i.checked_sub(1).and_then(|j| rss_rows.get(j)) {
            Some(prev) => {
                let (r0, n0) = (
                    prev["serverRssKb"].as_u64().unwrap_or(0),
                    prev["sessions"].as_u64().unwrap_or(0),
                );
                let m = rss.saturating_sub(r0) as f64 / n.saturating_sub(n0).max(1) as f64;
                format!("; {m:.1} KiB/session from {n0} to {n}")
            }
            None => String::new(),
        };
        rows.push(row(
            format!(
                "Server RSS per live session at {n} sessions: (RSS − idle RSS) / {n} (server pid only; agents excluded)"
            ),
            format!(
                "{per:.1} KiB/session ({:.1} MiB total{marginal}; the {} agents: {:.0} MiB)",
                mib(rss),
                p["agentProcesses"],
                mib(p["agentsRssKb"].as_u64().unwrap_or(0))
            ),
            "≤ 100 KiB",
            at_most(per, 100.0, "KiB"),
        ));
    }

    // 5. req/s against a bare axum handler returning the same bytes.
    let scratch = tempfile::Builder::new()
        .prefix("aegis-bench-bodies-")
        .tempdir()?;
    let endpoints = [
        ("GET /v1/health", "/v1/health".to_owned(), true),
        (
            "GET /v1/sessions/:id",
            format!("/v1/sessions/{}", ids[2]),
            true,
        ),
        (
            "GET /v1/sessions?limit=100",
            "/v1/sessions?limit=100".to_owned(),
            false,
        ),
    ];
    for (label, path, targeted) in &endpoints {
        let (r, j) = compare(
            &server,
            bins,
            opts,
            scratch.path(),
            label,
            path,
            *targeted,
            ids.len(),
        )
        .await?;
        rows.push(r);
        http_json.push(j);
    }
    out.insert("http".into(), Value::Array(http_json));

    // 6. Agent chunk → SSE client latency.
    let mut sse_json = Vec::new();
    let mut fanouts = vec![1, opts.subscribers];
    fanouts.dedup();
    for subs in fanouts {
        step(&format!(
            "SSE latency: slow:{} with {subs} subscriber(s)",
            opts.slow_chunks
        ));
        let (lat, received, (server_cores, bench_cores)) =
            sse_latency(&api, &ids[1], subs, opts.slow_chunks, server.pid()).await?;
        let expected = subs * opts.slow_chunks;
        sse_json.push(json!({"subscribers": subs, "latencyMs": lat.json(), "deltasReceived": received, "deltasExpected": expected, "serverCpuCores": round3(server_cores), "benchCpuCores": round3(bench_cores)}));
        let target = subs == opts.subscribers && subs >= 100;
        rows.push(row(
            format!(
                "Agent chunk → SSE client, {subs} subscriber(s) (`slow:{}`, receive time − `emittedAt`)",
                opts.slow_chunks
            ),
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({received}/{expected} deltas; server {server_cores:.2} cores, bench {bench_cores:.2})",
                lat.p50, lat.p99, lat.max
            ),
            if target { "p99 ≤ 5 ms" } else { "—" },
            if target {
                at_most(lat.p99, 5.0, "ms")
            } else {
                "—".into()
            },
        ));
    }
    out.insert("sseChunkLatency".into(), Value::Array(sse_json));

    // 7. Events relayed per second to one SSE subscriber.
    step(&format!(
        "events/s: {} sessions prompting back to back for {:?}",
        opts.relay_sessions, opts.relay_secs
    ));
    let relay_ids: Vec<String> = ids
        .iter()
        .skip(2)
        .take(opts.relay_sessions)
        .cloned()
        .collect();
    let relay_json = relay(&api, &relay_ids, opts.relay_secs, server.pid()).await?;
    let eps = relay_json["eventsPerSec"].as_f64().unwrap_or(0.0);
    rows.push(row(
        format!(
            "Events relayed to one `/v1/events?types=*` subscriber ({} sessions prompting back to back, {:.0} s)",
            opts.relay_sessions,
            opts.relay_secs.as_secs_f64()
        ),
        format!(
            "{} events/s ({} durable/s + {} deltas/s; {:.0} turns/s; server {:.2} cores)",
            thousands(eps),
            thousands(relay_json["durablePerSec"].as_f64().unwrap_or(0.0)),
            thousands(relay_json["deltasPerSec"].as_f64().unwrap_or(0.0)),
            relay_json["turnsPerSec"].as_f64().unwrap_or(0.0),
            relay_json["serverCpuCores"].as_f64().unwrap_or(0.0),
        ),
        "— (reported)",
        "—".into(),
    ));
    out.insert("eventsRelayed".into(), relay_json);

    // 8. RSS per session with the agents stopped (sessions killed, records retained).
    step(&format!("kill {} sessions", ids.len()));
    let mut kills = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let api = api.clone();
            async move { api.kill(&id).await }
        })
        .buffer_unordered(16);
    let mut kill_errors = 0;
    while let Some(r) = kills.next().await {
        if r.is_err() {
            kill_errors += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_killed = server.rss_kb()?;
    let (agents_left, _) = agents_rss(server.pid());
    let per_killed = rss_killed.saturating_sub(rss0) as f64 / ids.len() as f64;
    out.insert(
        "rssPerKilledSession".into(),
        json!({"sessions": ids.len(), "serverRssKb": rss_killed, "perSessionKb": round3(per_killed), "killErrors": kill_errors, "agentProcessesLeft": agents_left}),
    );
    rows.push(row(
        format!(
            "Server RSS per session after killing all {} (records kept, no agents)",
            ids.len()
        ),
        format!(
            "{per_killed:.1} KiB/session ({:.1} MiB total)",
            mib(rss_killed)
        ),
        "≤ 100 KiB",
        at_most(per_killed, 100.0, "KiB"),
    ));

    // 9. Restart on that state: start-up time and RSS with only the records loaded.
    step(&format!("restart with {} sessions in the store", ids.len()));
    let log = server.log.clone();
    let dir = server.stop_keep_state();
    let (server, restart) = Server::start_in(bins, dir).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_restart = server.rss_kb()?;
    let per_restart = rss_restart.saturating_sub(rss0) as f64 / ids.len() as f64;
    out.insert(
        "restart".into(),
        json!({"sessions": ids.len(), "startMs": round3(ms(restart)), "serverRssKb": rss_restart, "perSessionKb": round3(per_restart)}),
    );
    rows.push(row(
        format!(
            "Restart with {} ended sessions in the store: spawn → first 200; RSS per session",
            ids.len()
        ),
        format!(
            "{:.1} ms; {per_restart:.1} KiB/session ({:.1} MiB total)",
            ms(restart),
            mib(rss_restart)
        ),
        "— (reported)",
        "—".into(),
    ));

    out.insert("loadAvgAtEnd".into(), json!(loadavg()));
    step("stop");
    server.stop();
    let warnings: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .take(20)
        .map(str::to_owned)
        .collect();
    out.insert("serverLogWarnings".into(), json!(warnings));
    Ok((rows, out))
}

/// `GET path` on the server and on a bare axum process serving the same bytes, same load,
/// one after the other; returns the table row and the JSON.
#[allow(clippy::too_many_arguments)]
async fn compare(
    server: &Server,
    bins: &Bins,
    opts: &Opts,
    scratch: &Path,
    label: &str,
    path: &str,
    targeted: bool,
    sessions: usize,
) -> Result<(Row, Value)> {
    step(&format!(
        "{label}: {} connections, {ROUNDS} × {:?} each ({sessions} sessions)",
        opts.concurrency, opts.duration
    ));
    let body = http::fetch(server.port, path).await?;
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = scratch.join(format!("body-{n}.json"));
    std::fs::write(&file, &body)?;
    let port = free_port()?;
    let mut cmd = Command::new(&bins.me);
    cmd.arg("--baseline-server")
        .arg(port.to_string())
        .arg(&file)
        .stdin(Stdio::null());
    let baseline = Proc::spawn("baseline server", cmd)?;
    let bpid = baseline.pid();
    let p2 = path.to_owned();
    tokio::task::spawn_blocking(move || {
        wait_ok_blocking(port, &p2, bpid, Instant::now() + STARTUP_TIMEOUT)
    })
    .await??;
    // Alternate (server, baseline) × ROUNDS so that a drift in the machine's load hits both.
    let (mut ag_runs, mut base_runs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ag_runs.push(measured_load(server.port, path, server.pid(), opts).await?);
        base_runs.push(measured_load(port, path, bpid, opts).await?);
    }
    drop(baseline);
    let (ag, ag_cpu, ag_self) = merge_measured(ag_runs);
    let (base, base_cpu, base_self) = merge_measured(base_runs);
    let ratio = if base.rps > 0.0 {
        ag.rps / base.rps
    } else {
        0.0
    };
    eprintln!(
        "  ag {:.0} req/s ({:.2} cores), bare axum {:.0} req/s ({:.2} cores) → {:.0}%",
        ag.rps,
        ag_cpu,
        base.rps,
        base_cpu,
        ratio * 100.0
    );
    let j = json!({
        "endpoint": label,
        "path": path,
        "sessions": sessions,
        "responseBytes": body.len(),
        "aegis": load_json(&ag, ag_cpu, ag_self),
        "bareAxum": load_json(&base, base_cpu, base_self),
        "ratio": round3(ratio),
        "targetRatio": if targeted { json!(0.5) } else { Value::Null },
    });
    let errors = if ag.errors + base.errors > 0 {
        format!("; errors {} / {}", ag.errors, base.errors)
    } else {
        String::new()
    };
    let r = row(
        format!(
            "`{label}` with {sessions} sessions ({} keep-alive connections, {ROUNDS} × {:.0} s alternating with the baseline)",
            opts.concurrency,
            opts.duration.as_secs_f64()
        ),
        format!(
            "{} req/s, p50 {:.2} ms, p99 {:.2} ms; bare axum, same {} bytes: {} req/s, p50 {:.2} ms, p99 {:.2} ms → **{:.0}%**{errors}",
            thousands(ag.rps),
            ag.latency.p50,
            ag.latency.p99,
            body.len(),
            thousands(base.rps),
            base.latency.p50,
            base.latency.p99,
            ratio * 100.0
        ),
        if targeted {
            "≥ 50% of bare axum"
        } else {
            "— (reported)"
        },
        if targeted {
            at_least_ratio(ratio, 0.5)
        } else {
            "—".into()
        },
    );
    Ok((r, j))
}

/// Merge measured runs: latencies and counts pooled, CPU averaged.
fn merge_measured(runs: Vec<(LoadResult, f64, f64)>) -> (LoadResult, f64, f64) {
    let n = runs.len().max(1) as f64;
    let server = runs.iter().map(|r| r.1).sum::<f64>() / n;
    let client = runs.iter().map(|r| r.2).sum::<f64>() / n;
    (
        LoadResult::merge(runs.into_iter().map(|r| r.0).collect()),
        server,
        client,
    )
}

/// A load run plus the CPU (in cores) the target process and this process used meanwhile.
async fn measured_load(
    port: u16,
    path: &str,
    pid: u32,
    opts: &Opts,
) -> Result<(LoadResult, f64, f64)> {
    let me = std::process::id();
    let (s0, c0, t0) = (procs::cpu_secs(pid), procs::cpu_secs(me), Instant::now());
    let r = http::load(port, path, opts.concurrency, opts.warmup, opts.duration).await?;
    let wall = t0.elapsed().as_secs_f64();
    let server = (procs::cpu_secs(pid) - s0) / wall;
    let client = (procs::cpu_secs(me) - c0) / wall;
    Ok((r, server, client))
}

/// `subs` subscribers on the session's stream; one `slow:N` turn; latency of every
/// `message_delta` = receive time − `emittedAt`. Returns the summary, the deltas received and
/// the CPU (cores) the server and this process used during the turn.
async fn sse_latency(
    api: &Api,
    id: &str,
    subs: usize,
    chunks: usize,
    server_pid: u32,
) -> Result<(Summary, usize, (f64, f64))> {
    let path = format!("/v1/sessions/{id}/events?types=message_delta,status");
    let mut streams = Vec::with_capacity(subs);
    for _ in 0..subs {
        let mut s = Sse::open(api.port, &path).await?;
        s.connected(Duration::from_secs(10)).await?;
        streams.push(s);
    }
    // Bounded: the turn takes chunks × 20 ms; allow a generous margin.
    let deadline = Instant::now() + Duration::from_millis(20 * chunks as u64) + TURN_TIMEOUT;
    let mut tasks = Vec::with_capacity(subs);
    for mut s in streams {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(chunks);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let f = s.next_within(left).await?;
                let v = f.json();
                match f.event.as_str() {
                    "message_delta" => {
                        if let Some(at) = v["emittedAt"].as_u64() {
                            lat.push(f.recv_ms - at as f64);
                        }
                    }
                    "status" if v["data"]["status"] == "idle" => break,
                    _ => {}
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let me = std::process::id();
    let (s0, c0, t0) = (
        procs::cpu_secs(server_pid),
        procs::cpu_secs(me),
        Instant::now(),
    );
    api.send(id, &format!("slow:{chunks}")).await?;
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cores = (
        (procs::cpu_secs(server_pid) - s0) / wall,
        (procs::cpu_secs(me) - c0) / wall,
    );
    let n = all.len();
    Ok((Summary::of(all), n, cores))
}

/// One global subscriber (`types=*`); `ids` each prompt back to back (send, wait for `idle` as
/// seen by that subscriber, repeat) for `window`. Counts the frames delivered in the window.
async fn relay(api: &Api, ids: &[String], window: Duration, server_pid: u32) -> Result<Value> {
    let mut sse = Sse::open(api.port, "/v1/events?types=*").await?;
    sse.connected(Duration::from_secs(10)).await?;
    let mut senders = HashMap::new();
    let mut receivers = Vec::new();
    for id in ids {
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        senders.insert(id.clone(), tx);
        receivers.push((id.clone(), rx));
    }
    let cpu0 = procs::cpu_secs(server_pid);
    let start = tokio::time::Instant::now();
    let end = start + window;
    let sub = tokio::spawn(async move {
        let (mut durable, mut deltas, mut other) = (0u64, 0u64, 0u64);
        loop {
            let f = match tokio::time::timeout_at(end, sse.next()).await {
                Err(_) => break,
                Ok(Ok(Some(f))) => f,
                Ok(Ok(None)) => bail!("the global stream ended"),
                Ok(Err(e)) => return Err(e),
            };
            match f.event.as_str() {
                "message_delta" => deltas += 1,
                _ if f.id.is_some() => durable += 1,
                _ => other += 1,
            }
            if f.event == "status" {
                let v = f.json();
                if v["data"]["status"] == "idle"
                    && let Some(tx) = v["sessionId"].as_str().and_then(|s| senders.get(s))
                {
                    tx.send_modify(|n| *n += 1);
                }
            }
        }
        anyhow::Ok((durable, deltas, other))
    });
    let mut drivers = Vec::new();
    for (id, mut rx) in receivers {
        let api = api.clone();
        drivers.push(tokio::spawn(async move {
            let mut turns = 0u64;
            while tokio::time::Instant::now() < end {
                let before = *rx.borrow_and_update();
                api.send(&id, "bench relay").await?;
                loop {
                    if *rx.borrow_and_update() > before {
                        turns += 1;
                        break;
                    }
                    match tokio::time::timeout_at(end, rx.changed()).await {
                        Ok(Ok(())) => {}
                        _ => return anyhow::Ok(turns),
                    }
                }
            }
            anyhow::Ok(turns)
        }));
    }
    let mut turns = 0;
    for d in drivers {
        turns += d.await??;
    }
    let (durable, deltas, other) = sub.await??;
    let secs = start.elapsed().as_secs_f64().max(window.as_secs_f64());
    let cores = (procs::cpu_secs(server_pid) - cpu0) / secs;
    // Let the last turns finish before the next step.
    for id in ids {
        api.wait_settled(id).await?;
    }
    let w = window.as_secs_f64();
    Ok(json!({
        "windowSecs": w,
        "durable": durable,
        "deltas": deltas,
        "otherFrames": other,
        "turns": turns,
        "eventsPerSec": round3((durable + deltas) as f64 / w),
        "durablePerSec": round3(durable as f64 / w),
        "deltasPerSec": round3(deltas as f64 / w),
        "turnsPerSec": round3(turns as f64 / w),
        "serverCpuCores": round3(cores),
    }))
}

// ---------------------------------------------------------------------------------------------
// Machine facts
// ---------------------------------------------------------------------------------------------

fn machine_facts() -> Value {
    let cmd = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        });
    json!({
        "date": utc_now(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memTotalGiB": mem_kb.map(|k| round3(k as f64 / 1024.0 / 1024.0)),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
        "rustc": cmd("rustc", &["--version"]),
        "loadAvgAtStart": loadavg(),
        "fdatasyncMs": fsync_probe().map(|s| s.json()).unwrap_or(Value::Null),
    })
}

/// `/proc/loadavg` (1, 5, 15 minutes): the bench shares the machine with whatever else runs.
fn loadavg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// 50 × (append 200 bytes + fdatasync) in the temp dir the servers' state dirs live in: the
/// floor under every durable write of the file store.
fn fsync_probe() -> Result<Summary> {
    use std::io::Write;
    let dir = tempfile::Builder::new()
        .prefix("aegis-bench-fsync-")
        .tempdir()?;
    let mut f = std::fs::File::create(dir.path().join("probe"))?;
    let mut v = Vec::new();
    for _ in 0..50 {
        f.write_all(&[b'x'; 200])?;
        let t = Instant::now();
        f.sync_data()?;
        v.push(ms(t.elapsed()));
    }
    Ok(Summary::of(v))
}

/// `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, no calendar crate).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }

    #[test]
    fn args_parse() {
        let o = parse_args(&["--out".into(), "x.json".into(), "--quick".into()])
            .unwrap()
            .unwrap();
        assert_eq!(o.out, PathBuf::from("x.json"));
        assert_eq!(o.sessions, 200);
        assert!(parse_args(&["--bogus".into()]).is_err());
        assert!(parse_args(&["--help".into()]).unwrap().is_none());
    }

    #[test]
    fn date_is_iso() {
        let d = utc_now();
        assert_eq!(d.len(), 20);
        assert!(d.starts_with("20"));
    }
}
