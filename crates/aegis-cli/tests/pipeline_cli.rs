//! `ag pipeline …` and `ag init --list-templates / --from-template` end to end: the real
//! binary against a live `ag serve` with the scripted agent (cli-mcp-config §1, §4).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::TestEnv;

/// Write `name` into the env's root and return its path as a string.
fn write_file(env: &TestEnv, name: &str, text: &str) -> String {
    let p = env.root.path().canonicalize().unwrap().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// `ag pipeline show <id> --json` until `f` holds (30 s).
fn wait_pipeline(
    env: &TestEnv,
    id: &str,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let out = env.ag(["pipeline", "show", id, "--json"]).run();
        out.ok();
        let v = out.json();
        if f(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pipeline {id} never reached {what}; now {v:#}\n{}",
            env.server_log()
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn create(env: &TestEnv, file: &str) -> String {
    let out = env.ag(["pipeline", "create", "-f", file, "--json"]).run();
    out.ok();
    out.json()["id"].as_str().unwrap().to_owned()
}

#[test]
fn pipeline_help_usage_errors_and_server_down() {
    let env = TestEnv::with_config();
    env.ag(["pipeline", "--help"])
        .run()
        .ok()
        .stdout_has("create")
        .stdout_has("list")
        .stdout_has("show")
        .stdout_has("cancel")
        .stdout_has("resume")
        .stdout_has("approve");
    env.ag(["help", "pipeline"]).run().ok().stdout_has("resume");
    env.ag(["pipeline", "create", "--help"])
        .run()
        .ok()
        .stdout_has("--file")
        .stdout_has("-f")
        .stdout_has("--dry-run");
    env.ag(["pipeline", "list", "--help"])
        .run()
        .ok()
        .stdout_has("--status");
    env.ag(["pipeline", "cancel", "--help"])
        .run()
        .ok()
        .stdout_has("--kill-sessions");
    env.ag(["pipeline", "approve", "-h"])
        .run()
        .ok()
        .stdout_has("<STAGE>");
    env.ag(["--help"]).run().ok().stdout_has("pipeline");
    // Usage errors: no file, unknown flag, bad status.
    env.ag(["pipeline", "create"]).run().code(2);
    env.ag(["pipeline", "list", "--status", "bogus"])
        .run()
        .code(2);
    env.ag(["pipeline", "show"]).run().code(2);

    // A cycle is rejected locally (no server needed), naming the stages.
    let cyc = write_file(
        &env,
        "cycle.yaml",
        "name: cyc\nstages:\n  - name: alpha\n    prompt: one\n    dependsOn: [beta]\n  - name: beta\n    prompt: two\n    dependsOn: [alpha]\n",
    );
    env.ag(["pipeline", "create", "-f", cyc.as_str()])
        .run()
        .code(2)
        .stderr_has("cycle.yaml")
        .stderr_has("cycle")
        .stderr_has("alpha");
    // Unknown dependency, unknown field (strict), bad JSON: exit 2 naming them.
    let unk = write_file(
        &env,
        "unknown.json",
        r#"{"name":"u","stages":[{"name":"a","prompt":"x","dependsOn":["ghost"]}]}"#,
    );
    env.ag(["pipeline", "create", "-f", unk.as_str()])
        .run()
        .code(2)
        .stderr_has("ghost");
    let strict = write_file(
        &env,
        "strict.yaml",
        "name: s\nbogusField: 1\nstages:\n  - name: a\n    prompt: x\n",
    );
    env.ag(["pipeline", "create", "-f", strict.as_str()])
        .run()
        .code(2)
        .stderr_has("bogusField");
    env.ag(["pipeline", "create", "-f", "/nonexistent/p.yaml"])
        .run()
        .code(2)
        .stderr_has("/nonexistent/p.yaml");
    // A valid file validates offline with --dry-run.
    let ok = write_file(
        &env,
        "ok.yaml",
        "name: ok\nstages:\n  - name: a\n    prompt: x\n",
    );
    env.ag(["pipeline", "create", "-f", ok.as_str(), "--dry-run"])
        .run()
        .ok()
        .stdout_has("is valid");

    // Server down → 4 naming the URL.
    let url = format!("http://127.0.0.1:{}", env.port);
    for args in [
        &["pipeline", "list"][..],
        &["pipeline", "show", "abcd1234"],
        &["pipeline", "cancel", "abcd1234"],
        &["pipeline", "resume", "abcd1234"],
        &["pipeline", "approve", "abcd1234", "a"],
        &["pipeline", "create", "-f", ok.as_str()],
    ] {
        env.ag(args.iter().copied()).run().code(4).stderr_has(&url);
    }
}

#[test]
fn two_stage_pipeline_from_yaml_completes() {
    let env = TestEnv::with_config();
    env.start_server();
    let file = write_file(
        &env,
        "two.yaml",
        &format!(
            "name: plan-build\nworkDir: {}\nstages:\n  - name: plan\n    prompt: Make a plan\n  - name: build\n    prompt: \"Build it: {{{{stages.plan.output}}}}\"\n    dependsOn: [plan]\n",
            env.project.display()
        ),
    );
    // Human output: id, name, stages.
    let out = env
        .ag(["pipeline", "create", "-f", file.as_str()])
        .cwd(&env.work)
        .run();
    out.ok()
        .stdout_has("Pipeline created: plan-build (")
        .stdout_has("plan (")
        .stdout_has("build (pending) ← plan")
        .stdout_has("ag pipeline show ");
    let id = out
        .stdout
        .split_once('(')
        .unwrap()
        .1
        .split_once(')')
        .unwrap()
        .0
        .to_owned();
    assert_eq!(id.len(), 36, "{}", out.describe());

    let v = wait_pipeline(&env, &id, "completed", |v| v["status"] == "completed");
    let stages = v["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    assert!(stages.iter().all(|s| s["status"] == "completed"), "{v:#}");
    assert!(
        stages[1]["output"]
            .as_str()
            .unwrap()
            .contains("Scripted reply: Build it: Scripted reply"),
        "the second stage saw the first's output: {v:#}"
    );

    // Human show: per-stage status, session ids, timings, output first line; by prefix too.
    let plan_session = stages[0]["sessionId"].as_str().unwrap();
    for arg in [id.as_str(), &id[..8]] {
        env.ag(["pipeline", "show", arg])
            .run()
            .ok()
            .stdout_has("Pipeline plan-build (")
            .stdout_has("Status:    completed")
            .stdout_has("plan  completed")
            .stdout_has("build  completed  (after plan)")
            .stdout_has(&format!("session:  {plan_session}"))
            .stdout_has("time:     ")
            .stdout_has("output:   Scripted reply: Make a plan");
    }

    // list: table, status filter, JSON.
    env.ag(["pipeline", "list"])
        .run()
        .ok()
        .stdout_has("ID")
        .stdout_has("NAME")
        .stdout_has("STAGES")
        .stdout_has("AGE")
        .stdout_has(&id[..8])
        .stdout_has("plan-build")
        .stdout_has("2/2");
    env.ag(["pipeline", "list", "--status", "completed", "--full-ids"])
        .run()
        .ok()
        .stdout_has(&id);
    env.ag(["pipeline", "list", "--status", "running"])
        .run()
        .ok()
        .stdout_lacks(&id[..8])
        .stdout_has("No pipelines.");
    let out = env.ag(["pipeline", "ls", "--json"]).run();
    out.ok();
    assert_eq!(out.json()["pipelines"].as_array().unwrap().len(), 1);

    // A finished pipeline: cancel and resume are conflicts (7); unknown ids are 6.
    env.ag(["pipeline", "cancel", id.as_str()])
        .run()
        .code(7)
        .stderr_has("error:");
    env.ag(["pipeline", "resume", id.as_str()]).run().code(7);
    env.ag(["pipeline", "show", "00000000-0000-4000-8000-000000000000"])
        .run()
        .code(6);
    env.ag(["pipeline", "show", "ffff"])
        .run()
        .code(6)
        .stderr_has("no pipeline id starts with 'ffff'");
    env.ag(["pipeline", "cancel", "no"]).run().code(6);

    // The server rejects what only it can check (workDir outside the allowed roots) → 2.
    let bad = write_file(
        &env,
        "bad-dir.yaml",
        "name: bad\nworkDir: /\nstages:\n  - name: a\n    prompt: x\n",
    );
    env.ag(["pipeline", "create", "-f", bad.as_str()])
        .run()
        .code(2);
}

#[test]
fn cancel_resume_and_approve_a_gate() {
    let env = TestEnv::with_config();
    env.start_server();
    // A hanging stage: cancel it (with its session killed), cancel again → 7, then resume.
    let file = write_file(
        &env,
        "hang.yaml",
        "name: hanging\nstages:\n  - name: wait\n    prompt: hang here\n  - name: after\n    prompt: next\n    dependsOn: [wait]\n",
    );
    // workDir comes from --cwd when the file has none.
    let out = env
        .ag(["pipeline", "create", "-f", file.as_str(), "--json", "--cwd"])
        .arg(env.project.display().to_string())
        .run();
    out.ok();
    let id = out.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(out.json()["workDir"], env.project.display().to_string());
    wait_pipeline(&env, &id, "the stage running", |v| {
        v["stages"][0]["status"] == "running" && v["stages"][0]["sessionId"].is_string()
    });
    env.ag(["pipeline", "list", "--status", "running"])
        .run()
        .ok()
        .stdout_has(&id[..8])
        .stdout_has("0/2");
    env.ag(["pipeline", "cancel", &id[..8], "--kill-sessions"])
        .run()
        .ok()
        .stdout_has("Cancelled pipeline hanging")
        .stdout_has("cancelled");
    let v = wait_pipeline(&env, &id, "cancelled", |v| v["status"] == "cancelled");
    assert_eq!(v["stages"][1]["status"], "skipped", "{v:#}");
    env.ag(["pipeline", "cancel", id.as_str()])
        .run()
        .code(7)
        .stderr_has("error:");
    env.ag(["pipeline", "resume", id.as_str()])
        .run()
        .ok()
        .stdout_has("Resumed pipeline hanging")
        .stdout_has("running");
    wait_pipeline(&env, &id, "running again", |v| {
        v["status"] == "running" && v["stages"][0]["status"] == "running"
    });
    env.ag(["pipeline", "cancel", id.as_str(), "--json"])
        .run()
        .ok();

    // An approval gate holds the stage until `ag pipeline approve`.
    let gated = write_file(
        &env,
        "gate.yaml",
        &format!(
            "name: gated\nworkDir: {}\nstages:\n  - name: first\n    prompt: hello\n  - name: ship\n    prompt: ship it\n    gate: true\n    dependsOn: [first]\n",
            env.project.display()
        ),
    );
    let gid = create(&env, &gated);
    wait_pipeline(&env, &gid, "the gate", |v| {
        v["stages"][1]["awaitingApproval"] == true
    });
    env.ag(["pipeline", "show", gid.as_str()])
        .run()
        .ok()
        .stdout_has("awaiting approval")
        .stdout_has(&format!("ag pipeline approve {} ship", &gid[..8]));
    env.ag(["pipeline", "approve", gid.as_str(), "nosuchstage"])
        .run()
        .code(6);
    env.ag(["pipeline", "approve", gid.as_str(), "ship"])
        .run()
        .ok()
        .stdout_has("Approved stage ship of pipeline gated");
    wait_pipeline(&env, &gid, "completed", |v| v["status"] == "completed");
}

#[test]
fn init_lists_and_scaffolds_starter_templates() {
    let env = TestEnv::with_config();
    let out = env.ag(["init", "--list-templates"]).run();
    out.ok();
    for name in ["code-reviewer", "ci-runner", "pr-reviewer", "docs-writer"] {
        out.stdout_has(name);
    }
    out.stdout_has("Review the working tree's changes");
    let j = env.ag(["init", "--list-templates", "--json"]).run();
    j.ok();
    assert_eq!(j.json()["templates"].as_array().unwrap().len(), 4);
    env.ag(["init", "--help"])
        .run()
        .ok()
        .stdout_has("--list-templates")
        .stdout_has("--from-template")
        .stdout_has(".aegis/templates/NAME.yaml")
        .stdout_has("--register");

    // Scaffold into --cwd: a POST /v1/templates body with workDir = that directory.
    let project = env.project.display().to_string();
    let path = env.project.join(".aegis/templates/code-reviewer.yaml");
    env.ag([
        "init",
        "--from-template",
        "code-reviewer",
        "--cwd",
        project.as_str(),
    ])
    .run()
    .ok()
    .stdout_has("Wrote")
    .stdout_has("code-reviewer.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("name: code-reviewer"), "{text}");
    assert!(text.contains(&format!("workDir: {project}")), "{text}");
    assert!(
        text.contains("prompt: Review the uncommitted changes"),
        "{text}"
    );
    // No config was written by a template scaffold.
    assert!(!env.work.join(".aegis/config.yaml").exists());

    // Never overwritten without --overwrite.
    std::fs::write(&path, "# edited\n").unwrap();
    env.ag([
        "init",
        "--from-template",
        "code-reviewer",
        "--cwd",
        project.as_str(),
    ])
    .run()
    .ok()
    .stdout_has("left unchanged (use --overwrite to replace)");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# edited\n");
    env.ag([
        "init",
        "--from-template",
        "code-reviewer",
        "--cwd",
        project.as_str(),
        "--overwrite",
    ])
    .run()
    .ok()
    .stdout_has("Wrote");
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("name: code-reviewer")
    );

    // Default target: the current directory; variables are reported.
    env.ag(["init", "--from-template", "ci-runner"])
        .cwd(&env.project)
        .run()
        .ok()
        .stdout_has("Variables: test_command");
    assert!(Path::new(&env.project.join(".aegis/templates/ci-runner.yaml")).exists());

    // Unknown NAME → 2 with the list; nothing written.
    env.ag(["init", "--from-template", "nope", "--cwd", project.as_str()])
        .run()
        .code(2)
        .stderr_has("unknown template 'nope'")
        .stderr_has("code-reviewer")
        .stderr_has("docs-writer");
    assert!(!env.project.join(".aegis/templates/nope.yaml").exists());
    // --cwd / --register only make sense with --from-template.
    env.ag(["init", "--cwd", project.as_str(), "--yes"])
        .run()
        .code(2);

    // --register: no server → 4; with one → created there from the file on disk.
    env.ag([
        "init",
        "--from-template",
        "docs-writer",
        "--cwd",
        project.as_str(),
        "--register",
    ])
    .run()
    .code(4);
    env.start_server();
    let out = env
        .ag([
            "init",
            "--from-template",
            "docs-writer",
            "--cwd",
            project.as_str(),
            "--register",
            "--json",
        ])
        .run();
    out.ok();
    let v = out.json();
    assert_eq!(v["template"]["name"], "docs-writer", "{}", out.describe());
    assert_eq!(v["template"]["workDir"], project.as_str());
    assert!(v["template"]["id"].is_string());
}
