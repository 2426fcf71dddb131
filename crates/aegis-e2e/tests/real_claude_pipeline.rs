//! A pipeline end to end with the REAL Claude ACP adapter against the fake Anthropic API: the
//! second stage's prompt carries the first stage's output to the model.
//! Fails (never skips) when the adapter is not installed: `bash scripts/install-agents.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use aegis_e2e::TestServer;
use aegis_runtime::registry::{AgentConfig, AgentRegistry};
use aegis_testkit::FakeAnthropic;
use aegis_testkit::claude::{claude_adapter_bin, claude_test_env};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn stage<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn real_claude_pipeline_two_stages() {
    let bin = claude_adapter_bin()
        .expect("the Claude adapter must be installed: run `bash scripts/install-agents.sh`");
    let fake = FakeAnthropic::start().await;
    let home = tempfile::tempdir().unwrap();
    let env: BTreeMap<String, String> = claude_test_env(&fake, home.path());
    let s = TestServer::start_with(move |cfg| {
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

    let (st, p) = s
        .post(
            "/v1/pipelines",
            json!({"name": "claude-two", "workDir": s.work, "stageTimeoutMs": 120_000, "stages": [
                {"name": "first", "prompt": "PIPE_OUTPUT banana-42 is the secret"},
                {"name": "second", "prompt": "PIPE_OUTPUT relayed: {{stages.first.output}}",
                 "dependsOn": ["first"]},
            ]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();

    let mut rx = s.svc.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let done = loop {
        let (_, v) = s.get(&format!("/v1/pipelines/{id}")).await;
        if v["status"] != "running" {
            break v;
        }
        if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
            panic!("pipeline did not finish: {v:#}");
        }
    };
    assert_eq!(done["status"], "completed", "{done:#}");
    let first = stage(&done, "first")["output"].as_str().unwrap().to_owned();
    assert!(first.contains("banana-42 is the secret"), "{first}");
    let second = stage(&done, "second")["output"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        second.contains("relayed:") && second.contains("banana-42"),
        "{second}"
    );
    // The model saw the first stage's output in the second stage's prompt.
    assert!(
        fake.message_requests().iter().any(|b| {
            let t = b.to_string();
            t.contains("PIPE_OUTPUT relayed:") && t.contains("banana-42 is the secret")
        }),
        "the second prompt never reached the model with the first output"
    );
    // Two sessions of the claude agent.
    for name in ["first", "second"] {
        let sid = stage(&done, name)["sessionId"].as_str().unwrap().to_owned();
        let (_, info) = s.get(&format!("/v1/sessions/{sid}")).await;
        assert_eq!(info["agent"], "claude");
        let _ = s.delete(&format!("/v1/sessions/{sid}")).await;
    }
    s.svc.shutdown().await;
}
