//! The ACP runtime against the scripted agent: every behaviour a session depends on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aegis_domain::{PermissionAnswer, PermissionOptionKind, StopReason, ToolCallStatus};
use aegis_runtime::{
    AgentRuntime, AgentSpec, RuntimeError, RuntimeEvent, SessionOpen, SessionUpdate, Spawned,
};
use aegis_runtime_acp::AcpRuntime;
use tokio::sync::mpsc::UnboundedReceiver;

fn scripted_bin() -> PathBuf {
    aegis_testkit::bins::scripted_agent()
}

fn spec(cwd: &Path, env: &[(&str, &str)]) -> AgentSpec {
    let mut e: BTreeMap<String, String> = BTreeMap::new();
    e.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    e.insert(
        "SCRIPTED_AGENT_STATE_DIR".into(),
        cwd.join(".state").display().to_string(),
    );
    for (k, v) in env {
        e.insert((*k).into(), (*v).into());
    }
    AgentSpec {
        name: "scripted".into(),
        command: scripted_bin(),
        args: vec![],
        env: e,
        cwd: cwd.to_path_buf(),
        request_timeout: Duration::from_secs(10),
    }
}

async fn spawn(cwd: &Path) -> Spawned {
    AcpRuntime
        .spawn(spec(cwd, &[]))
        .await
        .expect("spawn scripted agent")
}

/// Next event matching `pred`, failing after 10 s.
async fn next_matching(
    rx: &mut UnboundedReceiver<RuntimeEvent>,
    what: &str,
    mut pred: impl FnMut(&RuntimeEvent) -> bool,
) -> RuntimeEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event stream ended while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn drain(rx: &mut UnboundedReceiver<RuntimeEvent>) -> Vec<RuntimeEvent> {
    let mut out = vec![];
    while let Ok(ev) = rx.try_recv() {
        out.push(ev);
    }
    out
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

#[tokio::test]
async fn handshake_records_capabilities_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let s = spawn(dir.path()).await;
    let info = s.handle.info();
    assert_eq!(info.name.as_deref(), Some("aegis-scripted-agent"));
    assert!(info.capabilities.load_session);
    let started = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap();
    let modes: Vec<_> = started.modes.iter().map(|m| m.id.as_str()).collect();
    assert!(
        modes.contains(&"default") && modes.contains(&"plan"),
        "{modes:?}"
    );
    assert_eq!(started.current_mode.as_deref(), Some("default"));
    s.handle
        .set_mode(&started.agent_session_id, "acceptEdits")
        .await
        .unwrap();
    s.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn text_turn_streams_chunks_with_message_id_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    let outcome = s.handle.prompt(&sid, "hello there").await.unwrap();
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    // Every update the agent sent before its result is already on the channel.
    let mut text = String::new();
    let mut ids = std::collections::BTreeSet::new();
    for ev in drain(&mut s.events) {
        if let RuntimeEvent::Update {
            update:
                SessionUpdate::AgentMessageChunk {
                    message_id,
                    text: t,
                    ..
                },
            ..
        } = ev
        {
            text.push_str(&t);
            ids.insert(message_id);
        }
    }
    assert!(text.starts_with("Scripted reply: hello there"), "{text}");
    assert_eq!(ids.len(), 1, "one message id for the whole reply");
    assert!(ids.iter().all(Option::is_some));
    s.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn permission_is_parked_until_answered_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    let handle = s.handle.clone();
    let sid2 = sid.clone();
    let turn = tokio::spawn(async move { handle.prompt(&sid2, "write out.txt").await });
    let ev = next_matching(&mut s.events, "permission request", |e| {
        matches!(e, RuntimeEvent::PermissionRequested { .. })
    })
    .await;
    let RuntimeEvent::PermissionRequested {
        key,
        tool_call,
        options,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(tool_call.title, "Write out.txt");
    // Parked: nothing is written until we answer.
    assert!(!dir.path().join("out.txt").exists());
    let allow = options
        .iter()
        .find(|o| o.kind == PermissionOptionKind::AllowOnce)
        .expect("an allow_once option");
    s.handle
        .answer_permission(
            key,
            PermissionAnswer::Selected {
                option_id: allow.option_id.clone(),
            },
        )
        .unwrap();
    // Answering twice is an error, not a panic.
    assert!(
        s.handle
            .answer_permission(key, PermissionAnswer::Cancelled)
            .is_err()
    );
    let outcome = turn.await.unwrap().unwrap();
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "hello\n"
    );
    let completed = drain(&mut s.events).into_iter().any(|e| {
        matches!(e, RuntimeEvent::Update { update: SessionUpdate::ToolCallUpdate(p), .. }
            if p.status == Some(ToolCallStatus::Completed))
    });
    assert!(completed, "the tool call completes");
    s.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn rejecting_leaves_no_file_and_the_agent_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    let handle = s.handle.clone();
    let sid2 = sid.clone();
    let turn = tokio::spawn(async move { handle.prompt(&sid2, "write no.txt").await });
    let RuntimeEvent::PermissionRequested { key, options, .. } =
        next_matching(&mut s.events, "permission", |e| {
            matches!(e, RuntimeEvent::PermissionRequested { .. })
        })
        .await
    else {
        unreachable!()
    };
    let reject = options
        .iter()
        .find(|o| o.kind == PermissionOptionKind::RejectOnce)
        .unwrap();
    s.handle
        .answer_permission(
            key,
            PermissionAnswer::Selected {
                option_id: reject.option_id.clone(),
            },
        )
        .unwrap();
    turn.await.unwrap().unwrap();
    assert!(!dir.path().join("no.txt").exists());
    let text: String = drain(&mut s.events)
        .into_iter()
        .filter_map(|e| match e {
            RuntimeEvent::Update {
                update: SessionUpdate::AgentMessageChunk { text, .. },
                ..
            } => Some(text),
            _ => None,
        })
        .collect();
    assert!(text.contains("refused"), "{text}");
    s.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn cancel_mid_turn_ends_cancelled_and_answers_parked_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    let handle = s.handle.clone();
    let sid2 = sid.clone();
    let turn = tokio::spawn(async move { handle.prompt(&sid2, "slow:200").await });
    next_matching(&mut s.events, "first chunk", |e| {
        matches!(
            e,
            RuntimeEvent::Update {
                update: SessionUpdate::AgentMessageChunk { .. },
                ..
            }
        )
    })
    .await;
    s.handle.cancel(&sid).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(2), turn)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(outcome.stop_reason, StopReason::Cancelled);

    // A parked permission is answered `cancelled` by cancel (ACP rule), and withdrawn.
    let handle = s.handle.clone();
    let sid3 = sid.clone();
    let turn = tokio::spawn(async move { handle.prompt(&sid3, "write later.txt").await });
    let RuntimeEvent::PermissionRequested { key, .. } =
        next_matching(&mut s.events, "permission", |e| {
            matches!(e, RuntimeEvent::PermissionRequested { .. })
        })
        .await
    else {
        unreachable!()
    };
    s.handle.cancel(&sid).unwrap();
    let outcome = turn.await.unwrap().unwrap();
    assert_eq!(outcome.stop_reason, StopReason::Cancelled);
    assert!(
        s.handle
            .answer_permission(key, PermissionAnswer::Cancelled)
            .is_err(),
        "already answered"
    );
    assert!(!dir.path().join("later.txt").exists());
    s.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn crash_mid_turn_is_reported_within_a_second_with_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    let result = s.handle.prompt(&sid, "crash now").await;
    let died = Instant::now();
    assert!(matches!(result, Err(RuntimeError::Closed(_))), "{result:?}");
    let RuntimeEvent::Exited(info) = next_matching(&mut s.events, "exit", |e| {
        matches!(e, RuntimeEvent::Exited(_))
    })
    .await
    else {
        unreachable!()
    };
    assert!(
        died.elapsed() < Duration::from_secs(1),
        "exit reported late: {:?}",
        died.elapsed()
    );
    assert_eq!(info.code, Some(3));
    assert!(!info.requested);
    assert!(
        info.stderr_tail
            .iter()
            .any(|l| l.contains("fatal: scripted crash")),
        "{:?}",
        info.stderr_tail
    );
    // Requests after death fail cleanly.
    assert!(s.handle.prompt(&sid, "again").await.is_err());
}

#[tokio::test]
async fn hang_on_initialize_times_out_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut sp = spec(dir.path(), &[("SCRIPTED_AGENT_HANG_INIT", "1")]);
    sp.request_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = match AcpRuntime.spawn(sp).await {
        Ok(_) => panic!("initialize must time out"),
        Err(e) => e,
    };
    assert!(
        matches!(&err, RuntimeError::Timeout { method, .. } if method == "initialize"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn garbage_on_stdout_is_a_protocol_violation_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    let outcome = s.handle.prompt(&sid, "garbage please").await.unwrap();
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    let violation = drain(&mut s.events).into_iter().find_map(|e| match e {
        RuntimeEvent::ProtocolViolation { detail } => Some(detail),
        _ => None,
    });
    assert!(violation.is_some_and(|d| d.contains("this is not json")));
    s.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn every_update_kind_is_typed_and_unknown_kinds_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    let outcome = s
        .handle
        .prompt(&sid, "think plan read usage title commands unknown-update")
        .await
        .unwrap();
    let usage = outcome.usage.expect("usage in the prompt result");
    assert_eq!((usage.input_tokens, usage.output_tokens), (100, 50));
    assert_eq!(usage.cost_usd, Some(0.0123));
    let updates: Vec<SessionUpdate> = drain(&mut s.events)
        .into_iter()
        .filter_map(|e| match e {
            RuntimeEvent::Update { update, .. } => Some(update),
            _ => None,
        })
        .collect();
    let has = |f: &dyn Fn(&SessionUpdate) -> bool| updates.iter().any(f);
    assert!(has(&|u| matches!(
        u,
        SessionUpdate::AgentThoughtChunk { .. }
    )));
    assert!(has(
        &|u| matches!(u, SessionUpdate::Plan(e) if e.len() == 3)
    ));
    assert!(has(
        &|u| matches!(u, SessionUpdate::ToolCall(c) if c.tool_kind == aegis_domain::ToolKind::Read)
    ));
    assert!(has(
        &|u| matches!(u, SessionUpdate::Usage(x) if x.context_size == Some(200_000))
    ));
    assert!(has(
        &|u| matches!(u, SessionUpdate::SessionInfo { title: Some(t), .. } if t == "Scripted title")
    ));
    assert!(has(
        &|u| matches!(u, SessionUpdate::AvailableCommands(c) if c.len() == 2)
    ));
    assert!(has(
        &|u| matches!(u, SessionUpdate::Unknown { kind, .. } if kind == "future_kind_xyz")
    ));
    s.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn load_in_a_fresh_process_replays_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    s.handle
        .prompt(&sid, "remember the word banana")
        .await
        .unwrap();
    s.handle.shutdown(Duration::from_secs(1)).await;

    let mut fresh = spawn(dir.path()).await;
    fresh
        .handle
        .open_session(
            SessionOpen::Load {
                agent_session_id: sid.clone(),
            },
            dir.path().into(),
            vec![],
        )
        .await
        .unwrap();
    let replay: String = drain(&mut fresh.events)
        .into_iter()
        .filter_map(|e| match e {
            RuntimeEvent::Update {
                update: SessionUpdate::UserMessageChunk { text, .. },
                ..
            } => Some(text),
            _ => None,
        })
        .collect();
    assert!(replay.contains("banana"), "{replay}");
    let outcome = fresh.handle.prompt(&sid, "continue").await.unwrap();
    assert_eq!(outcome.stop_reason, StopReason::EndTurn);
    fresh.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn rate_limit_error_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    match s.handle.prompt(&sid, "rate limit").await {
        Err(RuntimeError::Rpc(e)) => {
            assert!(e.message.contains("429"));
            assert_eq!(
                e.data.as_ref().and_then(|d| d["errorKind"].as_str()),
                Some("rate_limit")
            );
        }
        other => panic!("expected an rpc error, got {other:?}"),
    }
    s.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path()).await;
    let sid = s
        .handle
        .open_session(SessionOpen::New, dir.path().into(), vec![])
        .await
        .unwrap()
        .agent_session_id;
    let agent_pid = i32::try_from(s.handle.pid().unwrap()).unwrap();
    s.handle.prompt(&sid, "spawn-child").await.unwrap();
    let text: String = drain(&mut s.events)
        .into_iter()
        .filter_map(|e| match e {
            RuntimeEvent::Update {
                update: SessionUpdate::AgentMessageChunk { text, .. },
                ..
            } => Some(text),
            _ => None,
        })
        .collect();
    let child: i32 = text
        .split("pid ")
        .nth(1)
        .and_then(|r| {
            r.trim_end_matches('.')
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .and_then(|n| n.parse().ok())
        .expect("child pid in the reply");
    assert!(pid_alive(child));
    let exit = s.handle.shutdown(Duration::from_millis(500)).await;
    assert!(exit.requested);
    let deadline = Instant::now() + Duration::from_secs(3);
    while (pid_alive(child) || pid_alive(agent_pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pid_alive(agent_pid), "agent survived shutdown");
    assert!(!pid_alive(child), "grandchild survived shutdown");
}

#[tokio::test]
async fn missing_executable_is_a_clear_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut sp = spec(dir.path(), &[]);
    sp.command = PathBuf::from("/nonexistent/agent-binary");
    match AcpRuntime.spawn(sp).await {
        Err(RuntimeError::Spawn { message, .. }) => {
            assert!(message.contains("not found"), "{message}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("spawn must fail"),
    }
}
