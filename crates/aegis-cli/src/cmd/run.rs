//! `ag run "<brief>"`: ensure a server (bootstrap a config and start `ag serve` detached when
//! nothing answers on a loopback URL), create a session with the brief, and stream it until
//! the turn of that prompt ends (cli-mcp-config §1.4 "ag run").

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aegis_api_types::{ApproveRequest, CreateSessionRequest, RejectRequest, SessionInfo};
use aegis_client::{Client, ClientError, StreamOptions};
use serde_json::{Value, json};

use super::read::{TextTracker, plan_text, tool_line, usage_line};
use super::{CmdResult, Ctx, Failure, exit, print_json, work_dir};
use crate::RunArgs;
use crate::config::{self, InitValues};
use crate::daemon;
use crate::ui::{self, Spinner, id8};

/// How long `ag run` waits for a server it started.
const START_WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(250);

pub async fn run(ctx: &Ctx, a: RunArgs) -> CmdResult {
    let t0 = Instant::now();
    let deadline = a.timeout.map(|s| t0 + Duration::from_secs_f64(s.max(0.0)));
    let Some(brief) = super::create::brief(&a.brief) else {
        return Err(Failure::new(
            exit::USAGE,
            "a brief is required\nUsage: ag run \"<brief>\" [--cwd DIR] [--agent A] [--model M] [-y] [--no-stream] [--json]",
        ));
    };
    let work_dir = work_dir(a.cwd.as_deref())?;
    let quiet = a.yes || ctx.json();
    let client = ctx.client()?;
    let mut spinner = Spinner::start(&format!("Connecting to {}…", ctx.base_url), !quiet);

    // 1. Probe the server.
    let health = match client.health().await {
        Ok(h) => Some(h),
        Err(ClientError::NotAegis { url }) => {
            return Err(Failure::new(
                exit::UNREACHABLE,
                format!(
                    "something other than Aegis answers at {url}; pick a free port with --port <N> or AEGIS_PORT=<N>"
                ),
            ));
        }
        Err(e) if e.is_unreachable() => None,
        Err(e) => return Err(ctx.fail(e)),
    };

    // 2. The agent must be able to authenticate before anything is created.
    let agent = match (&a.agent, &health) {
        (Some(a), _) => a.clone(),
        (None, Some(_)) => server_default_agent(&client)
            .await
            .unwrap_or_else(|| ctx.cfg.config.default_agent.clone()),
        (None, None) => ctx.cfg.config.default_agent.clone(),
    };
    if agent == "claude" {
        let server_says = health
            .as_ref()
            .and_then(|h| h.pointer("/agents/claude/authenticated"))
            .and_then(Value::as_bool);
        if server_says != Some(true)
            && let Err(fix) = super::doctor::claude_auth(&ctx.cfg.config)
        {
            spinner.stop();
            return Err(Failure::new(exit::USAGE, fix));
        }
    }

    // 3. Start a server when none answers (loopback only).
    let reused_server = health.is_some();
    let mut started_pid = None;
    if health.is_none() {
        if !config::is_loopback_url(&ctx.base_url) {
            return Err(Failure::new(
                exit::UNREACHABLE,
                format!(
                    "no Aegis server answers at {} (a remote server is never started by ag run)",
                    ctx.base_url
                ),
            ));
        }
        spinner.set(&format!("Starting the Aegis server on {}…", ctx.base_url));
        let pid = start_server(ctx, Path::new(&work_dir), &client, &mut spinner, quiet).await?;
        started_pid = Some(pid);
    }
    if let Some(pid) = started_pid {
        spinner.stop();
        status(
            quiet,
            &format!(
                "Started the Aegis server at {} (pid {pid}; log {}; stop it with `ag stop`)",
                ctx.base_url,
                daemon::log_path(&ctx.cfg.config.state_dir()).display()
            ),
        );
    }

    // 4. Create the session.
    spinner.set("Creating the session…");
    let req = CreateSessionRequest {
        work_dir,
        prompt: Some(brief),
        name: a.name.clone(),
        model: a.model.clone(),
        agent: a.agent.clone(),
        permission_mode: if a.accept_permissions {
            Some("bypassPermissions".to_owned())
        } else {
            a.permission_mode.clone()
        },
        ..CreateSessionRequest::default()
    };
    let (info, created) = client.create_session(&req).await.map_err(|e| {
        spinner.stop();
        ctx.fail(e)
    })?;
    spinner.stop();
    if a.no_stream {
        super::create::print_created(ctx, &info, created)?;
        return Ok(exit::OK);
    }
    if !quiet {
        let s = &ctx.err;
        eprintln!(
            "{} {} ({}){}",
            if created { "Session" } else { "Reused session" },
            s.bold(&info.name),
            id8(&info.id),
            if reused_server {
                " on the running server"
            } else {
                ""
            }
        );
        eprintln!("Dashboard: {}/dashboard/sessions/{}", ctx.base_url, info.id);
    }

    // 5. Stream until the initial prompt's turn ends.
    let mut w = Watcher::new(ctx, &a, &info, quiet);
    w.spinner = Spinner::start(&format!("Waiting for {}…", info.agent), !quiet);
    let outcome = w.watch(&client, deadline).await;
    w.spinner.stop();
    w.end_line();
    let final_status = match client.get_session(&info.id).await {
        Ok(s) => s.status,
        Err(_) => w.status.clone(),
    };
    let (code, message) = match outcome {
        Outcome::Done { stop_reason } if stop_reason.as_deref() == Some("end_turn") => {
            (exit::OK, None)
        }
        Outcome::Done { stop_reason } => (
            exit::SESSION_FAILED,
            Some(match (&stop_reason, &w.turn_error) {
                (_, Some(e)) => format!("the turn failed: {e}"),
                (Some(r), None) => format!("the turn ended with stop reason `{r}` (not end_turn)"),
                (None, None) => "the turn ended without a stop reason".to_owned(),
            }),
        ),
        Outcome::Ended { status, reason } => (
            exit::SESSION_FAILED,
            Some(format!(
                "the session ended: {status}{}{}",
                reason.map(|r| format!(" ({r})")).unwrap_or_default(),
                w.exit_detail()
            )),
        ),
        Outcome::Timeout => (
            exit::TIMEOUT,
            Some(format!(
                "--timeout elapsed; the session keeps running: ag tail {}",
                id8(&info.id)
            )),
        ),
        Outcome::Interrupted => (exit::INTERRUPTED, None),
        Outcome::Failed(f) => return Err(f),
    };
    if ctx.json() {
        print_json(&json!({
            "sessionId": info.id,
            "name": info.name,
            "reused": !created,
            "status": final_status,
            "stopReason": w.stop_reason,
            "output": w.output(),
            "usage": w.usage,
            "durationMs": u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
        }))?;
    } else if code == exit::OK && !quiet {
        if let Some(u) = &w.usage {
            eprintln!("{}", ctx.err.dim(&usage_line(u)));
        }
    }
    match message {
        Some(m) => Err(Failure::new(code, m)),
        None => Ok(code),
    }
}

fn status(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("{msg}");
    }
}

/// The server's default agent (`GET /v1/agents`, the entry with `default: true`).
async fn server_default_agent(client: &Client) -> Option<String> {
    let v = client.agents().await.ok()?;
    v.get("agents")?
        .as_array()?
        .iter()
        .find(|a| a.get("default").and_then(Value::as_bool) == Some(true))
        .and_then(|a| a.get("name").and_then(Value::as_str))
        .map(str::to_owned)
}

/// The config file the started server uses: the one in use, or a bootstrapped
/// `~/.aegis/config.yaml` when none exists anywhere (never modifying an existing file).
fn server_config_file(ctx: &Ctx, port: u16, quiet: bool) -> Result<PathBuf, Failure> {
    if let Some(f) = &ctx.cfg.file {
        return Ok(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()));
    }
    if let Some(f) = config::find_config_file(ctx.global.config.as_deref()) {
        if f.is_file() {
            // It exists but did not load: the server reports why (in its log).
            return Ok(std::fs::canonicalize(&f).unwrap_or(f));
        }
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "config file {} does not exist (run `ag init --config {0}`)",
                f.display()
            ),
        ));
    }
    let path = config::bootstrap_path();
    let values = InitValues {
        port,
        host: "127.0.0.1".to_owned(),
        dashboard: true,
        ..InitValues::default()
    };
    match config::write_private(&path, &config::render_config(&values), false) {
        Ok(()) => status(
            quiet,
            &format!(
                "Created {} (port {port}, no token: local only)",
                path.display()
            ),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Failure::new(
                exit::FAILURE,
                format!("cannot write {}: {e}", path.display()),
            ));
        }
    }
    Ok(path)
}

/// Start `ag serve` detached and wait for its health (every 250 ms, ≤ 20 s).
async fn start_server(
    ctx: &Ctx,
    cwd: &Path,
    client: &Client,
    spinner: &mut Spinner,
    quiet: bool,
) -> Result<u32, Failure> {
    let port = config::url_port(&ctx.base_url).unwrap_or(9100);
    let state_dir = ctx.cfg.config.state_dir();
    let file = server_config_file(ctx, port, quiet)?;
    let mut child = daemon::start(Some(&file), port, cwd, &state_dir).map_err(|e| {
        Failure::new(
            exit::UNREACHABLE,
            format!("cannot start the server (`ag serve`): {e}"),
        )
    })?;
    let pid = child.id();
    let start = Instant::now();
    let failure = |why: String| {
        let mut m = format!(
            "{why}\nLast lines of {}:",
            daemon::log_path(&state_dir).display()
        );
        for l in daemon::log_tail(&state_dir, 20) {
            m.push_str("\n  ");
            m.push_str(&l);
        }
        Failure::new(exit::UNREACHABLE, m)
    };
    loop {
        if client.health().await.is_ok() {
            return Ok(pid);
        }
        if let Ok(Some(st)) = child.try_wait() {
            spinner.stop();
            return Err(failure(format!("the server exited during start-up ({st})")));
        }
        if start.elapsed() > START_WAIT {
            spinner.stop();
            let _ = child.kill();
            let _ = child.wait();
            return Err(failure(format!(
                "the server did not answer at {} within {} s",
                ctx.base_url,
                START_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

enum Outcome {
    Done {
        stop_reason: Option<String>,
    },
    Ended {
        status: String,
        reason: Option<String>,
    },
    Timeout,
    Interrupted,
    Failed(Failure),
}

/// Follows the session's events and renders the initial prompt's turn.
struct Watcher<'a> {
    ctx: &'a Ctx,
    session_id: String,
    prompt_id: Option<String>,
    start_after: u64,
    interactive: bool,
    quiet: bool,
    json: bool,
    spinner: Spinner,
    /// Our turn has started (events before it belong to earlier turns of a reused session).
    gate_open: bool,
    turn_id: Option<String>,
    text: TextTracker,
    /// Final texts of our turn's agent messages (for `--json` output).
    texts: BTreeMap<u64, String>,
    tools_done: HashSet<String>,
    last_plan: Option<String>,
    at_line_start: bool,
    notified: HashSet<String>,
    resolved: HashSet<String>,
    deferred: Vec<Value>,
    replay_end: u64,
    last_id: u64,
    status: String,
    stop_reason: Option<String>,
    turn_error: Option<String>,
    usage: Option<Value>,
    exit_info: Option<Value>,
}

impl<'a> Watcher<'a> {
    fn new(ctx: &'a Ctx, a: &RunArgs, info: &SessionInfo, quiet: bool) -> Self {
        Watcher {
            ctx,
            session_id: info.id.clone(),
            prompt_id: info
                .prompt_delivery
                .as_ref()
                .and_then(|p| p.prompt_id.clone()),
            start_after: info.last_event_id,
            interactive: ui::stdin_tty() && ui::stdout_tty() && !a.yes && !ctx.json(),
            quiet,
            json: ctx.json(),
            spinner: Spinner::none(),
            gate_open: false,
            turn_id: None,
            text: TextTracker::default(),
            texts: BTreeMap::new(),
            tools_done: HashSet::new(),
            last_plan: None,
            at_line_start: true,
            notified: HashSet::new(),
            resolved: HashSet::new(),
            deferred: Vec::new(),
            replay_end: 0,
            last_id: 0,
            status: info.status.clone(),
            stop_reason: None,
            turn_error: None,
            usage: None,
            exit_info: None,
        }
    }

    fn output(&self) -> String {
        self.texts.values().cloned().collect::<Vec<_>>().join("\n")
    }

    fn exit_detail(&self) -> String {
        let Some(e) = &self.exit_info else {
            return String::new();
        };
        let mut out = String::new();
        if let Some(code) = e.get("code").and_then(Value::as_i64) {
            out.push_str(&format!("; exit code {code}"));
        }
        let tail: Vec<&str> = e
            .get("stderrTail")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !tail.is_empty() {
            out.push_str("\nAgent stderr (last lines):");
            for l in tail.iter().rev().take(10).rev() {
                out.push_str("\n  ");
                out.push_str(l);
            }
        }
        out
    }

    /// Write agent output to stdout (never in `--json` mode).
    fn out(&mut self, text: &str) {
        if self.json || text.is_empty() {
            return;
        }
        self.spinner.stop();
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
        self.at_line_start = text.ends_with('\n');
    }

    /// End a partial stdout line.
    fn end_line(&mut self) {
        if !self.at_line_start {
            self.out("\n");
        }
    }

    /// A whole line on stdout (tool cards, plans).
    fn out_line(&mut self, line: &str) {
        self.end_line();
        self.out(&format!("{line}\n"));
    }

    /// A status line on stderr.
    fn note(&mut self, line: &str, even_quiet: bool) {
        if self.quiet && !even_quiet {
            return;
        }
        self.spinner.stop();
        self.end_line();
        eprintln!("{line}");
    }

    fn ours(&self, entry: &Value) -> bool {
        self.gate_open
            && match (&self.turn_id, entry.get("turnId").and_then(Value::as_str)) {
                (Some(t), Some(e)) => t == e,
                _ => true,
            }
    }

    async fn watch(&mut self, client: &Client, deadline: Option<Instant>) -> Outcome {
        let mut stream = client.session_events(&self.session_id, StreamOptions::after(0));
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        // A turn that ended without a stop reason or error usually means the agent died: wait
        // briefly for the session's `ended` event to report why.
        let mut settle: Option<tokio::time::Instant> = None;
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let sleep_until = deadline.map_or_else(far, tokio::time::Instant::from_std);
            let settle_at = settle.unwrap_or_else(far);
            let ev = tokio::select! {
                ev = stream.next() => ev,
                _ = tokio::time::sleep_until(sleep_until) => return Outcome::Timeout,
                _ = tokio::time::sleep_until(settle_at) => return Outcome::Done { stop_reason: None },
                _ = &mut ctrl_c => return self.interrupt(client).await,
            };
            let ev = match ev {
                Ok(Some(ev)) => ev,
                Ok(None) => {
                    return Outcome::Ended {
                        status: self.status.clone(),
                        reason: Some("event stream closed".to_owned()),
                    };
                }
                Err(e) => return Outcome::Failed(self.ctx.fail(e)),
            };
            if let Some(id) = ev.id {
                self.last_id = id;
            }
            let data = ev.data().clone();
            match ev.event.as_str() {
                "connected" => {
                    self.replay_end = data.get("lastEventId").and_then(Value::as_u64).unwrap_or(0);
                }
                "turn" => {
                    let phase = data.get("phase").and_then(Value::as_str).unwrap_or("");
                    let prompt = data.get("promptId").and_then(Value::as_str);
                    let turn = data
                        .get("turnId")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let is_ours = match &self.prompt_id {
                        Some(p) => prompt == Some(p.as_str()),
                        None => ev.id.is_some_and(|id| id > self.start_after),
                    };
                    if phase == "started" && is_ours {
                        self.gate_open = true;
                        self.turn_id = turn;
                        self.spinner.set("Working…");
                    } else if phase == "ended" && is_ours && self.gate_open && turn == self.turn_id
                    {
                        if data.get("reason").and_then(Value::as_str) == Some("rate_limited") {
                            // The prompt goes back to the queue and is re-sent later.
                            continue;
                        }
                        self.stop_reason = data
                            .get("stopReason")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        self.turn_error = data
                            .get("error")
                            .filter(|e| !e.is_null())
                            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned));
                        self.usage = data.get("usage").filter(|u| !u.is_null()).cloned();
                        if self.stop_reason.is_none() && self.turn_error.is_none() {
                            settle = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                            continue;
                        }
                        return Outcome::Done {
                            stop_reason: self.stop_reason.clone(),
                        };
                    }
                }
                "message_delta"
                    if self.gate_open
                        && data.get("kind").and_then(Value::as_str) == Some("agent_message") =>
                {
                    let entry = data.get("entryId").and_then(Value::as_u64).unwrap_or(0);
                    let text = data.get("text").and_then(Value::as_str).unwrap_or("");
                    if let Some(extra) = self.text.delta(entry, text) {
                        self.out(&extra);
                    }
                }
                "message" => self.on_entry(&data),
                "approval" => {
                    if ev.id.is_some_and(|id| id <= self.replay_end) {
                        self.deferred.push(data);
                    } else if let Some(o) = self.on_approval(client, &data).await {
                        return o;
                    }
                }
                "approval_resolved" => {
                    if let Some(r) = data.get("requestId").and_then(Value::as_str) {
                        self.resolved.insert(r.to_owned());
                    }
                }
                "question" => {
                    if let Some(o) = self.on_question(client, &data).await {
                        return o;
                    }
                }
                "status" => {
                    let st = data
                        .get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    if st == "rate_limited" && ev.id.is_some_and(|id| id > self.replay_end) {
                        let when = data
                            .get("resumeAt")
                            .and_then(Value::as_u64)
                            .map(|ms| {
                                format!("resumes in about {} s", ms.saturating_sub(now_ms()) / 1000)
                            })
                            .unwrap_or_else(|| "will retry later".to_owned());
                        self.note(
                            &format!("Rate limited by the model provider; {when}. Waiting…"),
                            false,
                        );
                    }
                    if !st.is_empty() {
                        self.status = st;
                    }
                }
                "ended" => {
                    self.exit_info = data.get("exit").filter(|e| !e.is_null()).cloned();
                    return Outcome::Ended {
                        status: data
                            .get("status")
                            .and_then(Value::as_str)
                            .unwrap_or("ended")
                            .to_owned(),
                        reason: data
                            .get("reason")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    };
                }
                _ => {}
            }
            if self.last_id >= self.replay_end && !self.deferred.is_empty() {
                for d in std::mem::take(&mut self.deferred) {
                    if let Some(o) = self.on_approval(client, &d).await {
                        return o;
                    }
                }
            }
        }
    }

    fn on_entry(&mut self, m: &Value) {
        if !self.ours(m) {
            return;
        }
        let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
        let entry = m.get("entryId").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "agent_message" => {
                let text = m
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if let Some(extra) = self.text.full(entry, &text) {
                    self.out(&extra);
                }
                self.texts.insert(entry, text);
            }
            "tool_call" => {
                let st = m.get("status").and_then(Value::as_str).unwrap_or("");
                let id = m
                    .get("toolCallId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if matches!(st, "completed" | "failed") && self.tools_done.insert(id) {
                    let line = tool_line(
                        m.get("title").and_then(Value::as_str).unwrap_or("tool"),
                        st,
                        &self.ctx.out,
                    );
                    self.out_line(&line);
                } else if !matches!(st, "completed" | "failed") {
                    let title = m
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or("tool")
                        .to_owned();
                    self.spinner.set(&format!("⚙ {title}…"));
                }
            }
            "plan" => {
                let text = plan_text(m, &self.ctx.out);
                if self.last_plan.as_deref() != Some(text.as_str()) {
                    self.last_plan = Some(text.clone());
                    self.out_line(&text);
                }
            }
            _ => {}
        }
    }

    async fn on_approval(&mut self, client: &Client, data: &Value) -> Option<Outcome> {
        let p = data.get("permission")?;
        let rid = p.get("requestId").and_then(Value::as_str)?.to_owned();
        if self.resolved.contains(&rid)
            || p.get("status").and_then(Value::as_str) != Some("pending")
        {
            return None;
        }
        if !self.notified.insert(rid.clone()) {
            return None;
        }
        let title = p
            .pointer("/toolCall/title")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .or_else(|| data.get("prompt").and_then(Value::as_str))
            .unwrap_or("a tool call")
            .to_owned();
        let sid8 = id8(&self.session_id).to_owned();
        if !self.interactive {
            self.note(
                &format!(
                    "Waiting for approval: ag approve {sid8}   (or: ag reject {sid8})  — {title}"
                ),
                true,
            );
            return None;
        }
        self.spinner.stop();
        self.end_line();
        let answer = match prompt_line(&format!("Allow {title}? [y]es / [a]lways / [n]o ")).await {
            PromptAnswer::Line(l) => l,
            PromptAnswer::Interrupted => return Some(self.interrupt(client).await),
            PromptAnswer::Closed => {
                self.note(&format!("Waiting for approval: ag approve {sid8}"), true);
                return None;
            }
        };
        let r = match answer.trim().to_lowercase().as_str() {
            "y" | "yes" | "" => client
                .approve(
                    &self.session_id,
                    &ApproveRequest {
                        request_id: Some(rid),
                        ..Default::default()
                    },
                )
                .await
                .map(|_| "approved"),
            "a" | "always" => client
                .approve(
                    &self.session_id,
                    &ApproveRequest {
                        request_id: Some(rid),
                        always: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map(|_| "approved (always)"),
            _ => client
                .reject(
                    &self.session_id,
                    &RejectRequest {
                        request_id: Some(rid),
                        ..Default::default()
                    },
                )
                .await
                .map(|_| "rejected"),
        };
        match r {
            Ok(what) => self.note(&format!("{title}: {what}"), false),
            Err(e) if e.status() == Some(409) => {
                self.note("That request was already answered.", false)
            }
            Err(e) => return Some(Outcome::Failed(self.ctx.fail(e))),
        }
        None
    }

    async fn on_question(&mut self, client: &Client, data: &Value) -> Option<Outcome> {
        let q = data.get("question")?;
        let qid = q.get("questionId").and_then(Value::as_str)?.to_owned();
        if !self.gate_open || !self.notified.insert(qid.clone()) {
            return None;
        }
        let message = q
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        if !self.interactive {
            self.note(
                &format!(
                    "Waiting for an answer to: {message}\n  answer with: curl -X POST {}/v1/sessions/{}/answer -d '{{\"questionId\":\"{qid}\",\"answer\":\"…\"}}'",
                    self.ctx.base_url, self.session_id
                ),
                true,
            );
            return None;
        }
        self.spinner.stop();
        self.end_line();
        match prompt_line(&format!("{message}\n> ")).await {
            PromptAnswer::Line(l) => {
                let body = json!({"questionId": qid, "answer": l.trim()});
                if let Err(e) = client.answer(&self.session_id, &body).await {
                    self.note(&format!("Could not answer: {e}"), true);
                }
                None
            }
            PromptAnswer::Interrupted => Some(self.interrupt(client).await),
            PromptAnswer::Closed => None,
        }
    }

    /// First Ctrl-C: interrupt the turn (the server waits ≤ 5 s for it to end), exit 130.
    /// A second Ctrl-C exits at once.
    async fn interrupt(&mut self, client: &Client) -> Outcome {
        self.spinner.stop();
        self.end_line();
        eprintln!("Interrupting the turn… (Ctrl-C again to leave it running)");
        tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(7), client.interrupt(&self.session_id)) => {
                if let Ok(Err(e)) = r {
                    eprintln!("warning: could not interrupt: {e}");
                }
            }
            _ = tokio::signal::ctrl_c() => {}
        }
        Outcome::Interrupted
    }
}

enum PromptAnswer {
    Line(String),
    Interrupted,
    Closed,
}

/// Ask on stderr and read one line from stdin (Ctrl-C aware).
async fn prompt_line(question: &str) -> PromptAnswer {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    });
    tokio::select! {
        r = read => match r {
            Ok(Some(l)) => PromptAnswer::Line(l),
            _ => PromptAnswer::Closed,
        },
        _ = tokio::signal::ctrl_c() => PromptAnswer::Interrupted,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
