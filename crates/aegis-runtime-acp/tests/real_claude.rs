//! The ACP runtime against the real Claude ACP adapter (`agents/`, installed by
//! `bash scripts/install-agents.sh`), offline: the adapter and its `claude` CLI talk to an
//! in-process [`FakeAnthropic`] (recipe: `testing.md` §1).
//!
//! Every test has its own fake, its own `HOME`/`CLAUDE_CONFIG_DIR` and its own project
//! directory, so the tests are independent and run in parallel. They fail (never skip) when the
//! adapter is not installed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_domain::{
    PermissionAnswer, PermissionOption, PermissionOptionKind, StopReason, ToolCallStatus,
};
use aegis_runtime::{
    AgentHandle, AgentRuntime, AgentSpec, RuntimeError, RuntimeEvent, SessionOpen, SessionUpdate,
};
use aegis_runtime_acp::AcpRuntime;
use aegis_testkit::FakeAnthropic;
use aegis_testkit::claude::{check_claude_prerequisites, claude_test_env};
use aegis_testkit::fake_anthropic::{DEFAULT_REPLY, TOOL_FINISHED_REPLY, TOOL_REFUSED_REPLY};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedReceiver;

/// Bound for one awaited event. Generous: several adapters (Node + `claude`) start in parallel
/// on a small machine, and a cold `session/new` takes several seconds.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for a whole prompt turn against the fake.
const TURN_TIMEOUT: Duration = Duration::from_secs(90);
const GRACE: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

/// One test's world: a fake Messages API, a private HOME and a project directory.
struct World {
    fake: FakeAnthropic,
    home: TempDir,
    _project: TempDir,
    /// Canonical path of `project` (what the agent sees as its cwd).
    project_dir: PathBuf,
}

impl World {
    async fn new() -> Self {
        // Fail loudly (never skip) when the adapter or node is missing.
        if let Err(e) = check_claude_prerequisites() {
            panic!("real Claude tests need the adapter: {e:#}");
        }
        let fake = FakeAnthropic::start().await;
        let home = tempfile::Builder::new()
            .prefix("aegis-claude-home-")
            .tempdir()
            .expect("temp HOME");
        let project = tempfile::Builder::new()
            .prefix("aegis-claude-project-")
            .tempdir()
            .expect("temp project");
        let project_dir = project
            .path()
            .canonicalize()
            .expect("canonical project dir");
        Self {
            fake,
            home,
            _project: project,
            project_dir,
        }
    }

    fn spec(&self) -> AgentSpec {
        let command = match aegis_testkit::claude::claude_adapter_bin() {
            Ok(bin) => bin,
            Err(e) => panic!("{e:#}"),
        };
        AgentSpec {
            name: "claude".into(),
            command,
            args: vec![],
            env: claude_test_env(&self.fake, self.home.path()),
            cwd: self.project_dir.clone(),
            request_timeout: Duration::from_secs(60),
        }
    }

    /// Spawn a fresh adapter process (handshake done).
    async fn spawn(&self) -> Agent {
        let spawned = match AcpRuntime.spawn(self.spec()).await {
            Ok(s) => s,
            Err(e) => panic!("spawning the Claude adapter failed: {e}"),
        };
        let pid = i32::try_from(spawned.handle.pid().expect("agent pid")).expect("pid fits i32");
        Agent {
            handle: spawned.handle,
            events: spawned.events,
            pid,
            guard: GroupGuard(pid),
        }
    }

    /// Spawn an adapter and open a new session in `default` mode (so permissions are asked).
    async fn spawn_with_session(&self) -> (Agent, String) {
        let agent = self.spawn().await;
        let started = agent
            .handle
            .open_session(SessionOpen::New, self.project_dir.clone(), vec![])
            .await
            .unwrap_or_else(|e| panic!("session/new failed: {e}; stderr: {:?}", agent.stderr()));
        let sid = started.agent_session_id;
        assert!(!sid.is_empty(), "the adapter returned an empty session id");
        agent
            .handle
            .set_mode(&sid, "default")
            .await
            .unwrap_or_else(|e| panic!("session/set_mode default failed: {e}"));
        (agent, sid)
    }

    /// Bodies of the model calls that are not session-title calls, oldest first.
    fn model_turn_requests(&self) -> Vec<Value> {
        self.fake
            .message_requests()
            .into_iter()
            .filter(|b| b.pointer("/output_config/format").is_none())
            .collect()
    }
}

/// A running adapter with its ordered event stream.
struct Agent {
    handle: Arc<dyn AgentHandle>,
    events: UnboundedReceiver<RuntimeEvent>,
    /// Process id of the adapter = id of its process group.
    pid: i32,
    guard: GroupGuard,
}

impl Agent {
    fn stderr(&self) -> Vec<String> {
        self.handle.stderr_tail()
    }

    /// Run a prompt turn to its end (bounded).
    async fn prompt(&self, sid: &str, text: &str) -> aegis_runtime::TurnOutcome {
        match tokio::time::timeout(TURN_TIMEOUT, self.handle.prompt(sid, text)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => panic!("prompt {text:?} failed: {e}; stderr: {:?}", self.stderr()),
            Err(_) => panic!("prompt {text:?} did not end within {TURN_TIMEOUT:?}"),
        }
    }

    /// Start a prompt turn in a task.
    fn spawn_prompt(
        &self,
        sid: &str,
        text: &str,
    ) -> tokio::task::JoinHandle<Result<aegis_runtime::TurnOutcome, RuntimeError>> {
        let handle = self.handle.clone();
        let sid = sid.to_owned();
        let text = text.to_owned();
        tokio::spawn(async move { handle.prompt(&sid, &text).await })
    }

    /// Orderly stop; asserts that it was recorded as requested and that the group is gone.
    async fn shutdown(self) {
        let exit = tokio::time::timeout(Duration::from_secs(10), self.handle.shutdown(GRACE))
            .await
            .expect("shutdown resolves");
        assert!(
            exit.requested,
            "shutdown must be recorded as requested: {exit:?}"
        );
        assert_group_gone(self.pid, Duration::from_secs(3)).await;
        self.guard.disarm();
    }
}

/// SIGKILLs the agent's process group when a test fails before an orderly shutdown.
struct GroupGuard(i32);

impl GroupGuard {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.0 > 1 {
            // SAFETY: killpg has no memory-safety preconditions; a stale group id only yields
            // ESRCH.
            #[allow(unsafe_code)]
            unsafe {
                libc::killpg(self.0, libc::SIGKILL);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// Next event matching `pred`, failing after `within`. Every event seen on the way (matching or
/// not) is appended to `seen`.
async fn next_matching_within(
    rx: &mut UnboundedReceiver<RuntimeEvent>,
    seen: &mut Vec<RuntimeEvent>,
    what: &str,
    within: Duration,
    mut pred: impl FnMut(&RuntimeEvent) -> bool,
) -> RuntimeEvent {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(ev)) => {
                seen.push(ev.clone());
                if pred(&ev) {
                    return ev;
                }
            }
            Ok(None) => panic!("event stream ended while waiting for {what}; seen: {seen:#?}"),
            Err(_) => panic!("timed out after {within:?} waiting for {what}; seen: {seen:#?}"),
        }
    }
}

/// Next event matching `pred` within [`EVENT_TIMEOUT`].
async fn next_matching(
    rx: &mut UnboundedReceiver<RuntimeEvent>,
    seen: &mut Vec<RuntimeEvent>,
    what: &str,
    pred: impl FnMut(&RuntimeEvent) -> bool,
) -> RuntimeEvent {
    next_matching_within(rx, seen, what, EVENT_TIMEOUT, pred).await
}

/// Everything already on the channel.
fn drain(rx: &mut UnboundedReceiver<RuntimeEvent>) -> Vec<RuntimeEvent> {
    let mut out = vec![];
    while let Ok(ev) = rx.try_recv() {
        out.push(ev);
    }
    out
}

fn is_agent_chunk(e: &RuntimeEvent) -> bool {
    matches!(
        e,
        RuntimeEvent::Update {
            update: SessionUpdate::AgentMessageChunk { .. },
            ..
        }
    )
}

fn updates(events: &[RuntimeEvent]) -> impl Iterator<Item = &SessionUpdate> {
    events.iter().filter_map(|e| match e {
        RuntimeEvent::Update { update, .. } => Some(update),
        _ => None,
    })
}

/// (message id, text) of every agent message chunk, in order.
fn agent_chunks(events: &[RuntimeEvent]) -> Vec<(Option<String>, String)> {
    updates(events)
        .filter_map(|u| match u {
            SessionUpdate::AgentMessageChunk {
                message_id, text, ..
            } => Some((message_id.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

fn user_text(events: &[RuntimeEvent]) -> String {
    updates(events)
        .filter_map(|u| match u {
            SessionUpdate::UserMessageChunk { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn agent_text(events: &[RuntimeEvent]) -> String {
    agent_chunks(events).into_iter().map(|(_, t)| t).collect()
}

fn tool_statuses(events: &[RuntimeEvent]) -> Vec<ToolCallStatus> {
    updates(events)
        .filter_map(|u| match u {
            SessionUpdate::ToolCallUpdate(p) => p.status,
            _ => None,
        })
        .collect()
}

fn option_of(options: &[PermissionOption], kind: PermissionOptionKind) -> &PermissionOption {
    options
        .iter()
        .find(|o| o.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} option among {options:?}"))
}

/// The JSON of a request's `messages` (what the model saw).
fn messages_json(body: &Value) -> String {
    body.get("messages")
        .map(Value::to_string)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// (state, ppid, pgrp) of a process from `/proc/<pid>/stat`; `None` when it does not exist.
fn proc_stat(pid: i32) -> Option<(char, i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn is_live(state: char) -> bool {
    !matches!(state, 'Z' | 'X' | 'x')
}

/// Live processes whose process group is `pgrp`.
fn group_members(pgrp: i32) -> Vec<(i32, String)> {
    all_pids()
        .into_iter()
        .filter(|&pid| proc_stat(pid).is_some_and(|(s, _, g)| g == pgrp && is_live(s)))
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, comm.trim().to_owned())
        })
        .collect()
}

/// Live descendants of `root` (children, grandchildren, ...).
fn descendants(root: i32) -> BTreeSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in all_pids() {
        if let Some((state, ppid, _)) = proc_stat(pid)
            && is_live(state)
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if out.insert(c) {
                stack.push(c);
            }
        }
    }
    out
}

fn pid_alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(s, _, _)| is_live(s))
}

/// Wait (polling /proc, bounded) until no live process is in group `pgrp`.
async fn assert_group_gone(pgrp: i32, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let members = group_members(pgrp);
        if members.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("processes of agent group {pgrp} survive after {within:?}: {members:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait (polling /proc, bounded) until none of `pids` is alive.
async fn assert_pids_gone(pids: &BTreeSet<i32>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<_> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
        if alive.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let detail: Vec<_> = alive
                .iter()
                .map(|p| {
                    (
                        p,
                        proc_stat(*p),
                        std::fs::read_to_string(format!("/proc/{p}/comm")),
                    )
                })
                .collect();
            panic!("descendants of the agent survive after {within:?}: {detail:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The agent's descendants before it is stopped; asserts that the `claude` CLI is among them
/// (so the later "all gone" check covers the grandchildren).
fn descendants_with_claude(agent_pid: i32) -> BTreeSet<i32> {
    let desc = descendants(agent_pid);
    let names: BTreeMap<i32, String> = desc
        .iter()
        .map(|&p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            (p, comm.trim().to_owned())
        })
        .collect();
    assert!(
        names.values().any(|n| n.contains("claude")),
        "expected a `claude` process under the adapter {agent_pid}: {names:?}"
    );
    desc
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn real_claude_text_turn_streams_chunks_and_ends_end_turn() {
    let world = World::new().await;
    let (mut agent, sid) = world.spawn_with_session().await;

    let outcome = agent.prompt(&sid, "Say hello").await;
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);

    // Updates sent before the prompt result are already on the channel.
    let events = drain(&mut agent.events);
    let chunks = agent_chunks(&events);
    assert!(!chunks.is_empty(), "no agent message chunks: {events:#?}");
    assert!(
        chunks
            .iter()
            .all(|(id, _)| id.as_deref().is_some_and(|i| !i.is_empty())),
        "every chunk carries a messageId: {chunks:?}"
    );
    let ids: BTreeSet<_> = chunks.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 1, "one message id for the one reply: {chunks:?}");
    assert_eq!(agent_text(&events), DEFAULT_REPLY);

    let saw_prompt = world
        .model_turn_requests()
        .iter()
        .any(|b| messages_json(b).contains("Say hello"));
    assert!(
        saw_prompt,
        "the fake never received the prompt: {:#?}",
        world.fake.message_requests()
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn real_claude_bash_tool_asks_permission_and_approve_creates_file() {
    let world = World::new().await;
    let (mut agent, sid) = world.spawn_with_session().await;
    let out = world.project_dir.join("out.txt");

    let turn = agent.spawn_prompt(&sid, "TOOL_BASH");
    let mut seen = vec![];
    let ev = next_matching(&mut agent.events, &mut seen, "permission request", |e| {
        matches!(e, RuntimeEvent::PermissionRequested { .. })
    })
    .await;
    let RuntimeEvent::PermissionRequested {
        key,
        agent_session_id,
        options,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(agent_session_id, sid);
    for kind in [
        PermissionOptionKind::AllowOnce,
        PermissionOptionKind::AllowAlways,
        PermissionOptionKind::RejectOnce,
    ] {
        option_of(&options, kind);
    }
    // Parked: the command has not run.
    assert!(
        !out.exists(),
        "out.txt exists before the permission was answered"
    );
    assert!(
        !turn.is_finished(),
        "the turn ended while the permission was pending"
    );

    let allow = option_of(&options, PermissionOptionKind::AllowOnce);
    agent
        .handle
        .answer_permission(
            key,
            PermissionAnswer::Selected {
                option_id: allow.option_id.clone(),
            },
        )
        .expect("answer allow_once");

    let outcome = tokio::time::timeout(TURN_TIMEOUT, turn)
        .await
        .expect("turn ends")
        .expect("prompt task")
        .unwrap_or_else(|e| panic!("prompt failed: {e}; stderr: {:?}", agent.stderr()));
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    let content = std::fs::read_to_string(&out).expect("out.txt was created in the project");
    assert_eq!(content.trim(), "hello");

    seen.extend(drain(&mut agent.events));
    let statuses = tool_statuses(&seen);
    assert!(
        statuses.contains(&ToolCallStatus::Completed),
        "no completed tool call update: {statuses:?}"
    );
    assert!(
        agent_text(&seen).contains(TOOL_FINISHED_REPLY),
        "the model's follow-up after the tool result: {:?}",
        agent_text(&seen)
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn real_claude_reject_leaves_no_file_and_model_is_told() {
    let world = World::new().await;
    let (mut agent, sid) = world.spawn_with_session().await;
    let refused = world.project_dir.join("refused.txt");

    let turn = agent.spawn_prompt(&sid, &format!("TOOL_WRITE {}", refused.display()));
    let mut seen = vec![];
    let RuntimeEvent::PermissionRequested { key, options, .. } =
        next_matching(&mut agent.events, &mut seen, "permission request", |e| {
            matches!(e, RuntimeEvent::PermissionRequested { .. })
        })
        .await
    else {
        unreachable!()
    };
    assert!(!refused.exists());
    let reject = option_of(&options, PermissionOptionKind::RejectOnce);
    agent
        .handle
        .answer_permission(
            key,
            PermissionAnswer::Selected {
                option_id: reject.option_id.clone(),
            },
        )
        .expect("answer reject_once");

    let outcome = tokio::time::timeout(TURN_TIMEOUT, turn)
        .await
        .expect("turn ends")
        .expect("prompt task")
        .unwrap_or_else(|e| panic!("prompt failed: {e}; stderr: {:?}", agent.stderr()));
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    assert!(!refused.exists(), "a rejected Write created the file");

    seen.extend(drain(&mut agent.events));
    let statuses = tool_statuses(&seen);
    assert!(
        statuses.contains(&ToolCallStatus::Failed),
        "no failed tool call update: {statuses:?}"
    );
    assert!(
        !statuses.contains(&ToolCallStatus::Completed),
        "a rejected tool call completed: {statuses:?}"
    );

    // The model was told: a tool_result with is_error true went back to the API.
    let told = world.fake.message_requests().iter().any(|b| {
        b.get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("content").and_then(Value::as_array))
            .flatten()
            .any(|block| {
                block.get("type").and_then(Value::as_str) == Some("tool_result")
                    && block.get("is_error").and_then(Value::as_bool) == Some(true)
            })
    });
    assert!(
        told,
        "no tool_result with is_error=true reached the model: {:#?}",
        world.fake.message_requests()
    );
    assert!(
        agent_text(&seen).contains(TOOL_REFUSED_REPLY),
        "{:?}",
        agent_text(&seen)
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn real_claude_cancel_mid_turn_ends_cancelled() {
    let world = World::new().await;
    let (mut agent, sid) = world.spawn_with_session().await;

    let turn = agent.spawn_prompt(&sid, "SLOW");
    let mut seen = vec![];
    next_matching(
        &mut agent.events,
        &mut seen,
        "first agent chunk",
        is_agent_chunk,
    )
    .await;
    agent.handle.cancel(&sid).expect("session/cancel");
    let cancelled_at = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(5), turn)
        .await
        .expect("the prompt returns within 5 s of cancel")
        .expect("prompt task")
        .unwrap_or_else(|e| panic!("prompt failed: {e}; stderr: {:?}", agent.stderr()));
    assert_eq!(outcome.stop_reason, StopReason::Cancelled);
    eprintln!("cancel → prompt result: {:?}", cancelled_at.elapsed());

    // The slow reply (40 deltas) was cut short.
    seen.extend(drain(&mut agent.events));
    assert!(
        !agent_text(&seen).contains("slow 40."),
        "the whole slow reply streamed despite the cancel"
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn real_claude_killed_agent_mid_turn_reports_crash_with_exit_info() {
    let world = World::new().await;
    let (mut agent, sid) = world.spawn_with_session().await;

    let turn = agent.spawn_prompt(&sid, "SLOW");
    let mut seen = vec![];
    next_matching(
        &mut agent.events,
        &mut seen,
        "first agent chunk",
        is_agent_chunk,
    )
    .await;
    let desc = descendants_with_claude(agent.pid);

    // SAFETY: kill has no memory-safety preconditions; the pid is our own live child.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(agent.pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill failed: {}", std::io::Error::last_os_error());
    let killed_at = Instant::now();

    let RuntimeEvent::Exited(info) = next_matching_within(
        &mut agent.events,
        &mut seen,
        "Exited",
        Duration::from_secs(1),
        |e| matches!(e, RuntimeEvent::Exited(_)),
    )
    .await
    else {
        unreachable!()
    };
    eprintln!("kill → Exited: {:?}", killed_at.elapsed());
    assert_eq!(info.signal, Some(libc::SIGKILL), "{info:?}");
    assert_eq!(info.code, None);
    assert!(!info.requested, "a crash is not a requested stop: {info:?}");

    let result = tokio::time::timeout(Duration::from_secs(5), turn)
        .await
        .expect("the prompt future resolves after the kill")
        .expect("prompt task");
    assert!(
        matches!(result, Err(RuntimeError::Closed(_) | RuntimeError::Rpc(_))),
        "prompt after kill: {result:?}"
    );
    // Requests after death fail cleanly.
    assert!(agent.handle.prompt(&sid, "again").await.is_err());

    // Nothing of the agent's group (the `claude` grandchildren) survives.
    assert_group_gone(agent.pid, Duration::from_secs(3)).await;
    assert_pids_gone(&desc, Duration::from_secs(3)).await;
    // Already dead: shutdown returns the recorded exit.
    let again = agent.handle.shutdown(GRACE).await;
    assert_eq!(again.signal, Some(libc::SIGKILL));
    agent.guard.disarm();
}

#[tokio::test]
async fn real_claude_load_in_a_fresh_adapter_continues_the_conversation() {
    let world = World::new().await;

    // First adapter: one turn, then an orderly stop.
    let (first, sid) = world.spawn_with_session().await;
    assert!(
        first.handle.info().capabilities.load_session,
        "the adapter advertises session/load"
    );
    let outcome = first.prompt(&sid, "Say hello").await;
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    first.shutdown().await;

    // Second adapter: session/load replays the history, then the conversation continues.
    let mut second = world.spawn().await;
    let started = second
        .handle
        .open_session(
            SessionOpen::Load {
                agent_session_id: sid.clone(),
            },
            world.project_dir.clone(),
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("session/load failed: {e}; stderr: {:?}", second.stderr()));
    assert_eq!(started.agent_session_id, sid);
    // The replay is sent before the load result, so it is complete on the channel now.
    let replay = drain(&mut second.events);
    assert_eq!(
        user_text(&replay),
        "Say hello",
        "replayed user turn: {replay:#?}"
    );
    assert_eq!(
        agent_text(&replay),
        DEFAULT_REPLY,
        "replayed reply: {replay:#?}"
    );
    assert!(
        replay.iter().all(|e| match e {
            RuntimeEvent::Update {
                agent_session_id, ..
            } => agent_session_id == &sid,
            _ => true,
        }),
        "replayed updates belong to the loaded session"
    );
    second
        .handle
        .set_mode(&sid, "default")
        .await
        .expect("set_mode after load");
    let outcome = second.prompt(&sid, "Say goodbye").await;
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    let after_load = drain(&mut second.events);
    assert_eq!(agent_text(&after_load), DEFAULT_REPLY);
    let requests = world.model_turn_requests();
    let last = messages_json(requests.last().expect("model requests"));
    for expected in ["Say hello", DEFAULT_REPLY, "Say goodbye"] {
        assert!(
            last.contains(expected),
            "the model call after load lacks {expected:?}: {last}"
        );
    }
    second.shutdown().await;

    // Third adapter: session/resume continues without needing a replay.
    let mut third = world.spawn().await;
    assert!(
        third.handle.info().capabilities.resume,
        "the pinned adapter advertises session/resume"
    );
    let started = third
        .handle
        .open_session(
            SessionOpen::Resume {
                agent_session_id: sid.clone(),
            },
            world.project_dir.clone(),
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("session/resume failed: {e}; stderr: {:?}", third.stderr()));
    assert_eq!(started.agent_session_id, sid);
    let before_prompt = drain(&mut third.events);
    assert!(
        !user_text(&before_prompt).contains("Say hello"),
        "session/resume replayed the history: {before_prompt:#?}"
    );
    let outcome = third.prompt(&sid, "Say it once more").await;
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    let requests = world.model_turn_requests();
    let last = messages_json(requests.last().expect("model requests"));
    for expected in ["Say hello", "Say goodbye", "Say it once more"] {
        assert!(
            last.contains(expected),
            "the model call after resume lacks {expected:?}: {last}"
        );
    }
    third.shutdown().await;
}

#[tokio::test]
async fn real_claude_usage_is_reported() {
    let world = World::new().await;
    let (mut agent, sid) = world.spawn_with_session().await;

    let outcome = agent.prompt(&sid, "Say hello").await;
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    let usage = outcome.usage.expect("usage in the prompt result");
    assert!(usage.input_tokens > 0, "{usage:?}");
    assert!(usage.output_tokens > 0, "{usage:?}");

    // Live figures (`usage_update`): the adapter sends them before the prompt result, the last
    // one with the turn's cost; waiting (bounded) keeps the test independent of that order.
    let mut seen = drain(&mut agent.events);
    let live_usages = |seen: &[RuntimeEvent]| -> Vec<aegis_domain::Usage> {
        updates(seen)
            .filter_map(|u| match u {
                SessionUpdate::Usage(x) => Some(x.clone()),
                _ => None,
            })
            .collect()
    };
    let complete = |us: &[aegis_domain::Usage]| {
        us.iter().any(|u| u.context_size.is_some_and(|s| s > 0))
            && us.iter().any(|u| u.cost_usd.is_some_and(|c| c > 0.0))
    };
    while !complete(&live_usages(&seen)) {
        next_matching(
            &mut agent.events,
            &mut seen,
            "usage_update with context size and cost",
            |e| {
                matches!(
                    e,
                    RuntimeEvent::Update {
                        update: SessionUpdate::Usage(_),
                        ..
                    }
                )
            },
        )
        .await;
    }
    let live = live_usages(&seen);
    assert!(
        live.iter()
            .all(|u| u.context_used.is_some() && u.context_size.is_some()),
        "{live:?}"
    );
    assert!(
        live.iter()
            .filter(|u| u.cost_usd.is_some())
            .all(|u| u.cost_source.as_deref() == Some("agent")),
        "{live:?}"
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn real_claude_no_orphans_after_shutdown() {
    let world = World::new().await;
    let (agent, sid) = world.spawn_with_session().await;
    let outcome = agent.prompt(&sid, "Say hello").await;
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);

    let pid = agent.pid;
    let desc = descendants_with_claude(pid);
    let started = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(10), agent.handle.shutdown(GRACE))
        .await
        .expect("shutdown resolves");
    eprintln!(
        "shutdown took {:?} (code {:?}, signal {:?})",
        started.elapsed(),
        exit.code,
        exit.signal
    );
    assert!(exit.requested, "{exit:?}");
    assert_group_gone(pid, Duration::from_secs(3)).await;
    assert_pids_gone(&desc, Duration::from_secs(3)).await;
    // Idempotent: a second shutdown returns the same exit at once.
    let again = agent.handle.shutdown(GRACE).await;
    assert_eq!(again, exit);
    agent.guard.disarm();
}
