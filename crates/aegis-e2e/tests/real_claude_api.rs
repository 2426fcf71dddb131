//! The REST API end to end with the REAL Claude ACP adapter against the fake Anthropic API.
//! These fail (never skip) when the adapter is not installed: `bash scripts/install-agents.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use aegis_e2e::{TestServer, agent_text, read_sse};
use aegis_runtime::registry::{AgentConfig, AgentRegistry};
use aegis_testkit::FakeAnthropic;
use aegis_testkit::claude::{claude_adapter_bin, claude_test_env};
use reqwest::StatusCode;
use serde_json::json;

struct Claude {
    server: TestServer,
    fake: FakeAnthropic,
    _home: tempfile::TempDir,
}

async fn start() -> Claude {
    let bin = claude_adapter_bin()
        .expect("the Claude adapter must be installed: run `bash scripts/install-agents.sh`");
    let fake = FakeAnthropic::start().await;
    let home = tempfile::tempdir().unwrap();
    let env: BTreeMap<String, String> = claude_test_env(&fake, home.path());
    let server = TestServer::start_with(move |cfg| {
        let mut agents = BTreeMap::new();
        agents.insert(
            "claude".to_owned(),
            AgentConfig {
                command: Some(bin.display().to_string()),
                args: vec![],
                env,
            },
        );
        cfg.agents = AgentRegistry::new(agents);
        cfg.request_timeout_ms = 60_000;
    })
    .await;
    Claude {
        server,
        fake,
        _home: home,
    }
}

#[tokio::test]
async fn real_claude_rest_create_with_prompt_reaches_idle_with_the_reply() {
    let c = start().await;
    let s = &c.server;
    let v = s.create(json!({"prompt": "Say hello"})).await;
    assert_eq!(v["agent"], "claude");
    let sid = v["id"].as_str().unwrap().to_owned();
    let info = s.wait_status(&sid, "idle").await;
    assert_eq!(info["permissionMode"], "default");
    assert_eq!(info["agentInfo"]["capabilities"]["loadSession"], true);
    let (_, r) = s.get(&format!("/v1/sessions/{sid}/read?after=0")).await;
    let text = agent_text(&r);
    assert!(
        text.contains(aegis_testkit::fake_anthropic::DEFAULT_REPLY),
        "{text}"
    );
    assert!(
        c.fake
            .message_requests()
            .iter()
            .any(|b| b.to_string().contains("Say hello")),
        "the model saw the prompt"
    );
    // Usage is reported on the session.
    assert!(
        info["usage"]["inputTokens"].as_u64().unwrap() > 0,
        "{}",
        info["usage"]
    );
    s.kill_all().await;
}

#[tokio::test]
async fn real_claude_rest_bash_permission_approve_creates_the_file() {
    let c = start().await;
    let s = &c.server;
    let sid = s.create(json!({"prompt": "TOOL_BASH"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = s.wait_status(&sid, "permission_prompt").await;
    let kinds: Vec<&str> = v["pendingPermission"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"allow_once") && kinds.contains(&"reject_once"),
        "{kinds:?}"
    );
    assert!(!s.work.join("out.txt").exists());
    let (st, d) = s.post_empty(&format!("/v1/sessions/{sid}/approve")).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    s.wait_status(&sid, "idle").await;
    assert_eq!(
        std::fs::read_to_string(s.work.join("out.txt"))
            .unwrap()
            .trim(),
        "hello"
    );
    let (_, t) = s
        .get(&format!(
            "/v1/sessions/{sid}/transcript?kind=tool_call&limit=200"
        ))
        .await;
    let tool = &t["messages"][0];
    assert_eq!(tool["status"], "completed", "{t}");
    assert_eq!(tool["toolName"], "Bash");
    assert!(
        tool["rawInput"]["command"]
            .as_str()
            .unwrap()
            .contains("out.txt")
    );
    s.kill_all().await;
}

#[tokio::test]
async fn real_claude_rest_sse_last_event_id_replays_exactly_the_missed_events() {
    let c = start().await;
    let s = &c.server;
    let sid = s.create(json!({"prompt": "Say hello"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.wait_status(&sid, "idle").await;
    let (_, log) = s
        .get(&format!("/v1/sessions/{sid}/events/log?limit=1000"))
        .await;
    let ids: Vec<u64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    let last = *ids.last().unwrap();
    let cut = last - 3;
    let resp = s
        .http
        .get(s.url(&format!("/v1/sessions/{sid}/events")))
        .header("Last-Event-ID", cut.to_string())
        .send()
        .await
        .unwrap();
    let frames = read_sse(resp, Duration::from_secs(10), |f| {
        f.iter().any(|x| x.id == Some(last))
    })
    .await;
    let got: Vec<u64> = frames.iter().filter_map(|f| f.id).collect();
    assert_eq!(got, ((cut + 1)..=last).collect::<Vec<_>>());
    s.kill_all().await;
}

trait KillAll {
    async fn kill_all(&self);
}

impl KillAll for TestServer {
    /// Kill every session so no adapter outlives the test.
    async fn kill_all(&self) {
        let (_, l) = self.get("/v1/sessions?status=active&limit=100").await;
        for x in l["sessions"].as_array().cloned().unwrap_or_default() {
            let _ = self
                .delete(&format!("/v1/sessions/{}", x["id"].as_str().unwrap()))
                .await;
        }
        self.svc.shutdown().await;
    }
}
