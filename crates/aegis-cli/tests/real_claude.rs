//! The seed's quick start, end to end: `ag run "Analyze this project and list the main
//! technologies." --cwd <project>` with the REAL Claude ACP adapter (installed by
//! `bash scripts/install-agents.sh`) against the fake Anthropic API, from no config and no
//! running server. Fails loudly (never skips) when the adapter is missing.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use aegis_testkit::FakeAnthropic;
use aegis_testkit::claude::{check_claude_prerequisites, claude_test_env};
use aegis_testkit::fake_anthropic::DEFAULT_REPLY;
use common::{Output, TestEnv, healthy};

const BRIEF: &str = "Analyze this project and list the main technologies.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_ag_run_quick_start() {
    let adapter = check_claude_prerequisites().unwrap_or_else(|e| panic!("{e:#}"));
    let fake = FakeAnthropic::start().await;
    let env = TestEnv::bare();
    std::fs::write(
        env.project.join("Cargo.toml"),
        "[package]\nname = \"demo\"\n",
    )
    .unwrap();
    let claude_env = claude_test_env(&fake, &env.home);
    let run = std::sync::Arc::new(move |env: &TestEnv| -> Output {
        let mut cmd = env
            .ag(["run", BRIEF, "--cwd"])
            .arg(env.project.display().to_string())
            .env("AEGIS_ACP_BIN", adapter.display().to_string())
            .env("AEGIS_STATE_DIR", env.state.display().to_string())
            .env("AEGIS_PORT", env.port.to_string())
            .timeout(Duration::from_secs(180));
        for (k, v) in &claude_env {
            cmd = cmd.env(k, v.clone());
        }
        cmd.run()
    });
    let env = std::sync::Arc::new(env);

    // First run: no config, no server.
    let cfg = env.home.join(".aegis/config.yaml");
    assert!(!cfg.exists());
    assert!(!healthy(env.port));
    let e = env.clone();
    let r = run.clone();
    let first = tokio::task::spawn_blocking(move || r(&e)).await.unwrap();
    first
        .ok()
        .stdout_has(DEFAULT_REPLY)
        .stderr_has(&format!("Created {}", cfg.display()))
        .stderr_has("Started the Aegis server")
        .stderr_has("Session cc-analyze-this-proje");
    assert!(healthy(env.port), "the server keeps running after ag run");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains(&format!("port: {}", env.port)), "{text}");
    let modified = std::fs::metadata(&cfg).unwrap().modified().unwrap();
    let pid = std::fs::read_to_string(env.state.join("aegis.pid")).unwrap();
    // The model saw the brief.
    assert!(
        fake.message_requests()
            .iter()
            .any(|r| r.to_string().contains("Analyze this project")),
        "the brief never reached the model"
    );

    // Second run: the server is reused and the config untouched.
    let e = env.clone();
    let r = run.clone();
    let second = tokio::task::spawn_blocking(move || r(&e)).await.unwrap();
    second
        .ok()
        .stdout_has(DEFAULT_REPLY)
        .stderr_lacks("Started the Aegis server")
        .stderr_lacks("Created ");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().modified().unwrap(),
        modified
    );
    assert_eq!(
        std::fs::read_to_string(env.state.join("aegis.pid")).unwrap(),
        pid
    );

    // Stop the server (the Drop guard also does, should an assertion above fail).
    let e = env.clone();
    let stop = tokio::task::spawn_blocking(move || {
        e.ag(["stop"])
            .env("AEGIS_STATE_DIR", e.state.display().to_string())
            .env("AEGIS_PORT", e.port.to_string())
            .run()
    })
    .await
    .unwrap();
    stop.ok().stdout_has("Stopped the Aegis server");
    assert!(!healthy(env.port));
}
