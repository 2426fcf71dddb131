//! The session service end to end with the scripted agent and the file store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aegis_api_types::{ApproveRequest, CreateSessionRequest, RejectRequest};
use aegis_core::{ErrorKind, Principal, SendKind, ServiceConfig, SessionService, Via};
use aegis_runtime::registry::{AgentConfig, AgentRegistry};
use aegis_runtime_acp::AcpRuntime;
use aegis_store::file::FileStore;
use serde_json::Value;

struct Env {
    _dir: tempfile::TempDir,
    state: PathBuf,
    work: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    Env {
        _dir: dir,
        state,
        work,
    }
}

fn config(e: &Env) -> ServiceConfig {
    let mut cfg = ServiceConfig::new(e.state.clone());
    cfg.allowed_workdirs = vec![e.work.display().to_string()];
    let mut agents = BTreeMap::new();
    agents.insert(
        "scripted".to_owned(),
        AgentConfig {
            command: Some(aegis_testkit::bins::scripted_agent().display().to_string()),
            args: vec![],
            env: BTreeMap::from([(
                "SCRIPTED_AGENT_STATE_DIR".to_owned(),
                e.state.join("scripted").display().to_string(),
            )]),
        },
    );
    let mut reg = AgentRegistry::new(agents);
    reg.default_agent = "scripted".into();
    cfg.agents = reg;
    cfg
}

async fn start(e: &Env, cfg: ServiceConfig) -> Arc<SessionService> {
    let store = FileStore::open(e.state.join("store")).unwrap();
    SessionService::start(cfg, Arc::new(store), Arc::new(AcpRuntime))
        .await
        .unwrap()
}

fn req(work: &Path, prompt: Option<&str>) -> CreateSessionRequest {
    CreateSessionRequest {
        work_dir: work.display().to_string(),
        prompt: prompt.map(str::to_owned),
        ..CreateSessionRequest::default()
    }
}

/// Wait (event-driven, via the bus) until the session reaches `status`.
async fn wait_status(svc: &SessionService, id: &str, status: &str) -> aegis_api_types::SessionInfo {
    let p = Principal::local();
    let mut rx = svc.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let info = svc.get(&p, id).unwrap();
        if info.status == status {
            return info;
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(_) => {}
            Err(_) => panic!(
                "session {id} stuck in {} (wanted {status}): {:?}",
                info.status, info.last_error
            ),
        }
    }
}

async fn transcript_text(svc: &SessionService, id: &str) -> Vec<(String, String)> {
    let v = svc
        .transcript_page(&Principal::local(), id, 1, 200, None, vec![], None)
        .await
        .unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn prompt_on_create_runs_to_idle_with_the_reply_in_the_transcript() {
    let e = env();
    let svc = start(&e, config(&e)).await;
    let p = Principal::local();
    let (info, reused) = svc
        .create(&p, req(&e.work, Some("hello world")))
        .await
        .unwrap();
    assert!(!reused);
    assert_eq!(info.status, "pending");
    assert_eq!(info.name, "cc-hello-world");
    let pd = info.prompt_delivery.unwrap();
    assert!(pd.queued && pd.prompt_id.is_some());
    wait_status(&svc, &info.id, "idle").await;
    let t = transcript_text(&svc, &info.id).await;
    assert!(
        t.iter()
            .any(|(k, x)| k == "user_message" && x == "hello world"),
        "{t:?}"
    );
    assert!(
        t.iter()
            .any(|(k, x)| k == "agent_message" && x.starts_with("Scripted reply: hello world")),
        "{t:?}"
    );
    // The event log is dense from 1 and replayable.
    let log = svc
        .events_log(&p, &info.id, 0, 1000, &Default::default())
        .await
        .unwrap();
    let ids: Vec<u64> = log
        .events
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    let types: Vec<&str> = log
        .events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(types[0], "created");
    assert!(types.contains(&"turn"));
    // Reuse: same workDir and owner, idle → reused.
    let (again, reused) = svc.create(&p, req(&e.work, Some("second"))).await.unwrap();
    assert!(reused);
    assert_eq!(again.id, info.id);
    svc.shutdown().await;
}

#[tokio::test]
async fn permission_prompt_approve_and_first_answer_wins() {
    let e = env();
    let svc = start(&e, config(&e)).await;
    let p = Principal::local();
    let (info, _) = svc
        .create(&p, req(&e.work, Some("write made.txt")))
        .await
        .unwrap();
    let s = wait_status(&svc, &info.id, "permission_prompt").await;
    let pending = s.pending_permission.expect("pending request");
    assert_eq!(pending.tool_call.title, "Write made.txt");
    assert!(s.status_text.contains("Write made.txt"));
    // Visible in the inbox.
    let inbox = svc.permissions(&p, None, None, 1, 20).unwrap();
    assert_eq!(inbox["permissions"].as_array().unwrap().len(), 1);
    let r = svc
        .approve(&p, &info.id, ApproveRequest::default(), Via::Rest)
        .await
        .unwrap();
    assert_eq!(r.option_kind.as_deref(), Some("allow_once"));
    let err = svc
        .approve(
            &p,
            &info.id,
            ApproveRequest {
                request_id: Some(r.request_id.clone()),
                ..Default::default()
            },
            Via::Rest,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::AlreadyResolved);
    wait_status(&svc, &info.id, "idle").await;
    assert!(e.work.join("made.txt").exists());
    let err = svc
        .approve(&p, &info.id, ApproveRequest::default(), Via::Rest)
        .await
        .unwrap_err();
    assert!(matches!(
        err.kind,
        ErrorKind::NoPendingPermission | ErrorKind::AlreadyResolved
    ));
    svc.shutdown().await;
}

#[tokio::test]
async fn reject_leaves_no_file() {
    let e = env();
    let svc = start(&e, config(&e)).await;
    let p = Principal::local();
    let (info, _) = svc
        .create(&p, req(&e.work, Some("write nope.txt")))
        .await
        .unwrap();
    wait_status(&svc, &info.id, "permission_prompt").await;
    let r = svc
        .reject(
            &p,
            &info.id,
            RejectRequest {
                reason: Some("no".into()),
                ..Default::default()
            },
            Via::Rest,
        )
        .await
        .unwrap();
    assert_eq!(r.decision, "rejected");
    wait_status(&svc, &info.id, "idle").await;
    assert!(!e.work.join("nope.txt").exists());
    let t = transcript_text(&svc, &info.id).await;
    assert!(
        t.iter()
            .any(|(k, x)| k == "agent_message" && x.contains("refused")),
        "{t:?}"
    );
    svc.shutdown().await;
}

#[tokio::test]
async fn kill_keeps_the_session_and_refuses_prompts() {
    let e = env();
    let svc = start(&e, config(&e)).await;
    let p = Principal::local();
    let (info, _) = svc
        .create(&p, req(&e.work, Some("slow:500")))
        .await
        .unwrap();
    wait_status(&svc, &info.id, "working").await;
    let v = svc.kill(&p, &info.id).await.unwrap();
    assert_eq!(v["status"], "killed");
    let err = svc
        .send(&p, &info.id, "more".into(), SendKind::Text)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::SessionEnded);
    // Killing again answers with the final status.
    assert_eq!(svc.kill(&p, &info.id).await.unwrap()["status"], "killed");
    assert_eq!(svc.get(&p, &info.id).unwrap().status, "killed");
    svc.shutdown().await;
}

#[tokio::test]
async fn crash_is_reported_with_exit_code_and_stderr() {
    let e = env();
    let svc = start(&e, config(&e)).await;
    let p = Principal::local();
    let (info, _) = svc.create(&p, req(&e.work, Some("crash"))).await.unwrap();
    let s = wait_status(&svc, &info.id, "crashed").await;
    let exit = s.exit.expect("exit details");
    assert_eq!(exit.code, Some(3));
    assert!(
        exit.stderr_tail
            .iter()
            .any(|l| l.contains("fatal: scripted crash"))
    );
    svc.shutdown().await;
}

#[tokio::test]
async fn stall_then_recovery() {
    let e = env();
    let svc = start(&e, config(&e)).await;
    let p = Principal::local();
    let mut r = req(&e.work, Some("hang"));
    r.stall_threshold_ms = Some(1000);
    let (info, _) = svc.create(&p, r).await.unwrap();
    let s = wait_status(&svc, &info.id, "stalled").await;
    assert_eq!(s.status_reason.as_deref(), Some("no_updates"));
    let v = svc.interrupt(&p, &info.id).await.unwrap();
    assert_eq!(v["turnEnded"], Value::Bool(true));
    wait_status(&svc, &info.id, "idle").await;
    svc.shutdown().await;
}

#[tokio::test]
async fn rate_limit_then_auto_resume() {
    let e = env();
    let svc = start(&e, config(&e)).await;
    let p = Principal::local();
    let (info, _) = svc
        .create(&p, req(&e.work, Some("rate limit")))
        .await
        .unwrap();
    let s = wait_status(&svc, &info.id, "rate_limited").await;
    assert!(s.resume_at.is_some());
    assert_eq!(s.queue.length, 1, "the failed prompt returns to the queue");
    svc.shutdown().await;
}

#[tokio::test]
async fn policy_profile_answers_before_a_human_is_asked() {
    let e = env();
    let svc = start(&e, config(&e)).await;
    let p = Principal::local();
    let mut r = req(&e.work, Some("write auto.txt"));
    r.permission_profile = Some(
        serde_json::from_value(serde_json::json!({
            "rules": [{"tool": "kind:edit", "behavior": "allow"}]
        }))
        .unwrap(),
    );
    let (info, _) = svc.create(&p, r).await.unwrap();
    wait_status(&svc, &info.id, "idle").await;
    assert!(e.work.join("auto.txt").exists());
    let all = svc
        .permissions(&p, Some("resolved"), Some(&info.id), 1, 20)
        .unwrap();
    let d = &all["permissions"][0]["decision"];
    assert_eq!(d["outcome"], "auto");
    assert_eq!(d["by"], "policy");
    svc.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_a_typed_error() {
    let e = env();
    let svc = start(&e, config(&e)).await;
    let p = Principal::local();
    let bad = |w: &str| req(Path::new(w), None);
    assert_eq!(
        svc.create(&p, bad("relative")).await.unwrap_err().kind,
        ErrorKind::InvalidWorkdir
    );
    assert_eq!(
        svc.create(&p, bad("/etc")).await.unwrap_err().kind,
        ErrorKind::InvalidWorkdir
    );
    let mut r = req(&e.work, None);
    r.agent = Some("nope".into());
    assert_eq!(
        svc.create(&p, r).await.unwrap_err().kind,
        ErrorKind::UnknownAgent
    );
    let mut r = req(&e.work, None);
    r.permission_mode = Some("yolo".into());
    assert_eq!(
        svc.create(&p, r).await.unwrap_err().kind,
        ErrorKind::ValidationError
    );
    assert_eq!(
        svc.get(&p, "not-a-uuid").unwrap_err().kind,
        ErrorKind::InvalidSessionId
    );
    assert_eq!(
        svc.get(&p, "00000000-0000-4000-8000-000000000000")
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    svc.shutdown().await;
}

#[tokio::test]
async fn restart_reattaches_with_history_intact_and_ids_continue() {
    let e = env();
    let p = Principal::local();
    let (id, last_before) = {
        let svc = start(&e, config(&e)).await;
        let (info, _) = svc
            .create(&p, req(&e.work, Some("remember banana")))
            .await
            .unwrap();
        let s = wait_status(&svc, &info.id, "idle").await;
        svc.shutdown().await;
        (info.id, s.last_event_id)
    };
    let svc = start(&e, config(&e)).await;
    let s = wait_status(&svc, &id, "idle").await;
    assert!(s.last_event_id > last_before);
    let log = svc
        .events_log(&p, &id, 0, 10_000, &Default::default())
        .await
        .unwrap();
    let ids: Vec<u64> = log
        .events
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "no id reused or skipped"
    );
    let statuses: Vec<&str> = log
        .events
        .iter()
        .filter(|e| e["event"] == "status")
        .map(|e| e["data"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses.ends_with(&["interrupted", "idle"]), "{statuses:?}");
    let t = transcript_text(&svc, &id).await;
    assert!(
        t.iter().filter(|(k, _)| k == "user_message").count() == 1,
        "history not duplicated: {t:?}"
    );
    svc.send(&p, &id, "and again".into(), SendKind::Text)
        .await
        .unwrap();
    wait_status(&svc, &id, "idle").await;
    svc.shutdown().await;
}
