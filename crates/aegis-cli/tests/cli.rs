//! The `ag` CLI end to end: the real binary, a temp HOME and state dir, a free port, the
//! scripted agent (cli-mcp-config §1).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{AEGIS, FakeServer, TestEnv, healthy};

// ---------------------------------------------------------------------------------------------
// Dispatch, help, version
// ---------------------------------------------------------------------------------------------

#[test]
fn help_version_and_per_command_help() {
    let env = TestEnv::bare();
    env.ag(["--help"])
        .run()
        .ok()
        .stdout_has("run")
        .stdout_has("doctor");
    for args in [&["run", "--help"][..], &["run", "-h"], &["help", "run"]] {
        env.ag(args.iter().copied())
            .run()
            .ok()
            .stdout_has("--cwd")
            .stdout_has("--no-stream")
            .stdout_has("--accept-permissions")
            .stdout_has("--timeout")
            .stdout_has("--permission-mode");
    }
    env.ag(["list", "--help"])
        .run()
        .ok()
        .stdout_has("--status")
        .stdout_has("--full-ids");
    env.ag(["tail", "--help"])
        .run()
        .ok()
        .stdout_has("--until")
        .stdout_has("--since");
    env.ag(["init", "--help"])
        .run()
        .ok()
        .stdout_has("--overwrite")
        .stdout_has("--force");
    for flag in ["--version", "-v"] {
        let out = env.ag([flag]).run();
        out.ok()
            .stdout_has("ag 0.1.0 (")
            .stdout_has(", ACP protocol 1)");
    }
    // Help never contacts a server: nothing listens on the port and it still exits 0 fast.
    env.ag(["status", "--help"]).run().ok();
    env.ag(["run", "--bogus-flag", "x"]).run().code(2);
}

#[test]
fn unknown_word_is_an_error_and_creates_nothing() {
    let env = TestEnv::with_config();
    env.start_server();
    env.ag(["lsit"])
        .run()
        .code(2)
        .stderr_has("error: unknown command 'lsit'. Did you mean 'list'?")
        .stderr_has("To start a session, quote the brief: ag \"lsit\"")
        .stderr_has("ag run \"…\" / ag create \"…\"");
    env.ag(["fix", "the", "tests", "--cwd", "."])
        .run()
        .code(2)
        .stderr_has("unknown command 'fix'")
        .stderr_has("quote the brief: ag \"fix the tests\"");
    env.bin(AEGIS, ["sttus"])
        .run()
        .code(2)
        .stderr_has("Did you mean 'status'?");
    let list = env.ag(["list", "--all", "--json"]).run();
    list.ok();
    assert_eq!(
        list.json()["sessions"].as_array().unwrap().len(),
        0,
        "{}",
        list.describe()
    );
}

#[test]
fn quoted_brief_is_create_and_output_is_flushed() {
    let env = TestEnv::with_config();
    env.start_server();
    let out = env
        .ag(["Say hello to the tests", "--cwd"])
        .arg(env.project.display().to_string())
        .run();
    let base = format!("http://127.0.0.1:{}", env.port);
    out.ok()
        .stdout_has("Session created: cc-say-hello-to-the-te")
        .stdout_has("  ID: ")
        .stdout_has("  Status: ")
        .stdout_has(&format!("Status:   curl {base}/v1/sessions/"))
        .stdout_has(&format!("Read:     curl {base}/v1/sessions/"))
        .stdout_has(&format!("Approve:  curl -X POST {base}/v1/sessions/"))
        .stdout_has(&format!("Kill:     curl -X DELETE {base}/v1/sessions/"))
        .stdout_has("Follow:   ag tail ")
        .stdout_lacks("Authorization")
        .stdout_lacks("\x1b[");
    // Same through the alias, with --json: the response body only.
    let out = env
        .bin(
            AEGIS,
            ["create", "Another one", "--no-reuse", "--json", "--cwd"],
        )
        .arg(env.project.display().to_string())
        .run();
    out.ok();
    let v = out.json();
    assert_eq!(v["reused"], false, "{}", out.describe());
    assert_eq!(v["workDir"], env.project.display().to_string());
    let list = env.ag(["list", "--all", "--json"]).run();
    assert_eq!(
        list.json()["sessions"].as_array().unwrap().len(),
        2,
        "{}",
        list.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// Error paths
// ---------------------------------------------------------------------------------------------

#[test]
fn server_down_is_exit_4_naming_the_url() {
    let env = TestEnv::with_config();
    let url = format!("http://127.0.0.1:{}", env.port);
    for args in [
        &["list"][..],
        &["status"],
        &["status", "abcd"],
        &["read", "abcd"],
        &["tail", "abcd"],
        &["send", "abcd", "hi"],
        &["approve", "abcd"],
        &["reject", "abcd"],
        &["interrupt", "abcd"],
        &["kill", "abcd"],
        &["create", "a brief"],
    ] {
        env.ag(args.iter().copied())
            .run()
            .code(4)
            .stderr_has(&url)
            .stderr_has("ag");
    }
    // `stop` with nothing running is not an error.
    env.ag(["stop"])
        .run()
        .ok()
        .stdout_has("No Aegis server is running");
    // --url / --port select the server.
    env.ag(["list", "--port", "1"])
        .run()
        .code(4)
        .stderr_has("http://127.0.0.1:1");
    env.ag(["list", "--url", "http://127.0.0.1:2"])
        .run()
        .code(4)
        .stderr_has("http://127.0.0.1:2");
}

#[test]
fn port_in_use_is_reported_with_the_fix() {
    let env = TestEnv::with_config();
    // Something that is not Aegis holds the port (answers HTTP without the API header).
    let holder = std::net::TcpListener::bind(("127.0.0.1", env.port)).unwrap();
    std::thread::spawn(move || {
        for s in holder.incoming() {
            let Ok(mut s) = s else { break };
            use std::io::{Read as _, Write as _};
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let config = env.config.clone().unwrap();
    env.ag(["serve", "--config"])
        .arg(config.display().to_string())
        .run()
        .code(1)
        .stderr_has(&format!("port {} is already in use", env.port))
        .stderr_has("AEGIS_PORT");
    let start = Instant::now();
    env.ag(["run", "hello", "--cwd"])
        .arg(env.project.display().to_string())
        .run()
        .code(4)
        .stderr_has("something other than Aegis")
        .stderr_has("--port");
    assert!(start.elapsed() < Duration::from_secs(5));
    env.ag(["list"])
        .run()
        .code(4)
        .stderr_has("not an Aegis server");
}

#[test]
fn bad_session_ids_are_exit_6() {
    let env = TestEnv::with_config();
    env.start_server();
    env.ag(["status", "zz-top"])
        .run()
        .code(6)
        .stderr_has("not a session id");
    env.ag(["status", "abc"])
        .run()
        .code(6)
        .stderr_has("at least 4 hex");
    env.ag(["read", "0000"])
        .run()
        .code(6)
        .stderr_has("no session id starts with '0000'");
    env.ag(["kill", "00000000-0000-4000-8000-000000000000"])
        .run()
        .code(6);
    // A unique prefix works, upper case too.
    let id = env.create("hello");
    env.ag(["status", &id[..6].to_uppercase()])
        .run()
        .ok()
        .stdout_has(&id);
}

#[test]
fn ambiguous_prefix_lists_the_candidates() {
    // Two sessions sharing a prefix cannot be forced on a real server; a fake one answers
    // the idPrefix lookup with two candidates.
    let env = TestEnv::with_config();
    env.start_server();
    let id = env.create("hello");
    let info = env.session(&id);
    let mut a = info.clone();
    let mut b = info;
    a["id"] = "abcd0000-0000-4000-8000-000000000001".into();
    b["id"] = "abcd0000-0000-4000-8000-000000000002".into();
    let body = serde_json::json!({"sessions": [a, b], "pagination": {"page":1,"limit":100,"total":2,"totalPages":1}}).to_string();
    let fake = FakeServer::start(move |path| {
        if path.starts_with("/v1/health") {
            (200, "{\"status\":\"ok\"}".to_owned())
        } else {
            (200, body.clone())
        }
    });
    env.ag(["status", "abcd", "--url", &fake.url()])
        .run()
        .code(6)
        .stderr_has("'abcd' matches 2 sessions")
        .stderr_has("abcd0000-0000-4000-8000-000000000001")
        .stderr_has("abcd0000-0000-4000-8000-000000000002");
    assert!(
        fake.heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.contains("idPrefix=abcd"))
    );
}

#[test]
fn auth_token_is_sent_and_401_is_exit_3() {
    let env = TestEnv::bare();
    let fake = FakeServer::start(|path| {
        if path.starts_with("/v1/health") {
            (200, "{\"status\":\"ok\"}".to_owned())
        } else {
            (
                401,
                r#"{"code":"UNAUTHORIZED","message":"Missing or invalid credential","requestId":"r-1","error":"Missing or invalid credential"}"#.to_owned(),
            )
        }
    });
    env.ag(["list", "--url", &fake.url()])
        .env("AEGIS_AUTH_TOKEN", "s3cret")
        .run()
        .code(3)
        .stderr_has("Missing or invalid credential")
        .stderr_has("AEGIS_AUTH_TOKEN")
        .stderr_has("Set AEGIS_AUTH_TOKEN or run ag login");
    assert!(
        fake.heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.to_lowercase().contains("authorization: bearer s3cret")),
        "no bearer header sent"
    );
    // Without a token: no Authorization header at all, and the message says none was sent.
    fake.heads.lock().unwrap().clear();
    env.ag(["list", "--url", &fake.url()])
        .run()
        .code(3)
        .stderr_has("No token was sent");
    assert!(
        !fake
            .heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.to_lowercase().contains("authorization")),
        "an Authorization header was sent without a credential"
    );
    // AEGIS_TOKEN and the config's clientAuthToken are credentials too.
    let cfg = env.root.path().join("client.yaml");
    std::fs::write(&cfg, "clientAuthToken: from-file\n").unwrap();
    fake.heads.lock().unwrap().clear();
    env.ag(["list", "--url", &fake.url(), "--config"])
        .arg(cfg.display().to_string())
        .run()
        .code(3)
        .stderr_has("clientAuthToken");
    assert!(
        fake.heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.contains("Bearer from-file"))
    );
}

#[test]
fn create_with_a_token_prints_the_auth_header() {
    let env = TestEnv::with_config();
    env.start_server();
    let id = env.create("hello");
    let info = env.session(&id).to_string();
    let fake = FakeServer::start(move |path| {
        if path.starts_with("/v1/health") {
            (200, "{\"status\":\"ok\"}".to_owned())
        } else {
            (201, info.clone())
        }
    });
    env.ag(["create", "hello", "--url", &fake.url(), "--cwd"])
        .arg(env.project.display().to_string())
        .env("AEGIS_AUTH_TOKEN", "s3cret")
        .run()
        .ok()
        .stdout_has(&format!(
            "Status:   curl -H \"Authorization: Bearer $TOKEN\" {}/v1/sessions/{id}/health",
            fake.url()
        ))
        .stdout_has(&format!(
            "Kill:     curl -X DELETE -H \"Authorization: Bearer $TOKEN\" {}/v1/sessions/{id}",
            fake.url()
        ))
        .stdout_lacks("s3cret");
}

// ---------------------------------------------------------------------------------------------
// Session commands
// ---------------------------------------------------------------------------------------------

#[test]
fn list_filters_and_formats() {
    let env = TestEnv::with_config();
    env.start_server();
    let other = env.home.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let a = env.create("first session");
    let b = env
        .ag(["create", "second session", "--no-reuse", "--json", "--cwd"])
        .arg(other.display().to_string())
        .run()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.wait_status(&a, "idle");
    env.wait_status(&b, "idle");
    env.ag(["list"])
        .run()
        .ok()
        .stdout_has("ID        NAME")
        .stdout_has("STATUS")
        .stdout_has("PENDING")
        .stdout_has("WORKDIR")
        .stdout_has(&a[..8])
        .stdout_has(&b[..8])
        .stdout_lacks(&a);
    env.ag(["list", "--full-ids"])
        .run()
        .ok()
        .stdout_has(&a)
        .stdout_has(&b);
    let ids = |args: &[&str]| -> Vec<String> {
        let out = env.ag(args.iter().copied().chain(["--json"])).run();
        out.ok();
        out.json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let other_s = other.display().to_string();
    assert_eq!(ids(&["list", "--cwd", &other_s]), vec![b.clone()]);
    assert_eq!(ids(&["list", "--limit", "1"]).len(), 1);
    assert_eq!(ids(&["list", "--agent", "scripted"]).len(), 2);
    assert_eq!(ids(&["list", "--agent", "nope"]).len(), 0);
    assert_eq!(ids(&["list", "--status", "idle"]).len(), 2);
    env.ag(["kill", &a[..8]]).run().ok().stdout_has("killed");
    assert_eq!(
        ids(&["list"]),
        vec![b.clone()],
        "default is active sessions only"
    );
    assert_eq!(ids(&["list", "--all"]).len(), 2);
    assert_eq!(ids(&["list", "--status", "ended"]), vec![a.clone()]);
    env.ag(["list", "--status", "bogus"]).run().code(2);
    env.ag(["list", "--limit", "0"]).run().code(2);
}

#[test]
fn status_read_send_and_tail() {
    let env = TestEnv::with_config();
    env.start_server();
    let id = env.create("hello there");
    let id8 = &id[..8];
    env.ag(["tail", id8, "--until", "idle", "--timeout", "20"])
        .run()
        .ok();
    env.ag(["status", id8])
        .run()
        .ok()
        .stdout_has(&id)
        .stdout_has("Status:  idle")
        .stdout_has("Agent:   scripted")
        .stdout_has(&format!("WorkDir: {}", env.project.display()))
        .stdout_has("Usage:");
    env.ag(["status"])
        .run()
        .ok()
        .stdout_has(&format!("Server http://127.0.0.1:{}", env.port))
        .stdout_has("scripted")
        .stdout_has("Sessions: 1 active")
        .stdout_has("Pending approvals: none");
    assert_eq!(
        env.ag(["status", "--json"]).run().json()["health"]["status"],
        "ok"
    );
    env.ag(["read", id8])
        .run()
        .ok()
        .stdout_has("› hello there")
        .stdout_has("Scripted reply: hello there");
    env.ag(["read", id8, "--all"])
        .run()
        .ok()
        .stdout_has("Scripted reply");
    env.ag(["read", id8, "--kinds", "user_message"])
        .run()
        .ok()
        .stdout_has("hello there")
        .stdout_lacks("Scripted reply");
    let r = env.ag(["read", id8, "--after", "0"]).run();
    r.ok()
        .stdout_has("Scripted reply")
        .stdout_has("Next cursor: ");
    let j = env.ag(["read", id8, "--json"]).run().json();
    assert!(j["messages"].as_array().unwrap().len() >= 3);

    // send: text, then stdin; tail --json emits NDJSON without duplicate ids.
    let s = env.ag(["send", id8, "second", "prompt"]).run();
    s.ok();
    assert!(
        s.stdout.starts_with("Delivered") || s.stdout.starts_with("Queued (position"),
        "{}",
        s.describe()
    );
    env.ag(["tail", id8, "--until", "idle", "--timeout", "20"])
        .run()
        .ok();
    env.ag(["send", id8, "-"]).stdin("from stdin\n").run().ok();
    let t = env
        .ag([
            "tail",
            id8,
            "--from-start",
            "--until",
            "idle",
            "--json",
            "--timeout",
            "20",
        ])
        .run();
    t.ok();
    let mut seen = std::collections::HashSet::new();
    for line in t.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}{}", t.describe()));
        if let Some(i) = v["id"].as_u64() {
            assert!(seen.insert(i), "duplicate event id {i}{}", t.describe());
        }
    }
    assert!(t.stdout.contains("from stdin"), "{}", t.describe());
    env.ag(["read", id8])
        .run()
        .ok()
        .stdout_has("Scripted reply: from stdin");
    env.ag(["send", id8, "  "]).run().code(2);
    // tail of an ended session: replay and exit with its final status.
    env.ag(["kill", id8]).run().ok();
    env.ag(["tail", id8, "--timeout", "20"]).run().code(5);
    env.ag(["send", id8, "too late"])
        .run()
        .code(7)
        .stderr_has("SESSION_ENDED");
}

#[test]
fn tail_follows_live_output_and_times_out() {
    let env = TestEnv::with_config();
    env.start_server();
    let id = env.create("hang");
    env.wait_status(&id, "working");
    let start = Instant::now();
    env.ag(["tail", &id[..8], "--timeout", "1"])
        .run()
        .code(8)
        .stderr_has("--timeout");
    assert!(start.elapsed() < Duration::from_secs(10));
    env.ag(["interrupt", &id[..8]])
        .run()
        .ok()
        .stdout_has("Interrupted");
    env.wait_status(&id, "idle");
    env.ag(["interrupt", &id[..8]])
        .run()
        .ok()
        .stdout_has("Nothing to interrupt");
    // Live: a follower started before the prompt sees the reply; the session's end ends it (5).
    let mut follower = env.ag(["tail", &id[..8], "--timeout", "30"]).spawn();
    std::thread::sleep(Duration::from_millis(500));
    env.ag(["send", &id[..8], "live text please"]).run().ok();
    follower.wait_stdout("Scripted reply: live text please", Duration::from_secs(20));
    env.ag(["kill", &id[..8]]).run().ok();
    let out = follower.wait();
    out.code(5)
        .stdout_has("· status: working")
        .stdout_has("· session ended: killed");
}

#[test]
fn approve_and_reject() {
    let env = TestEnv::with_config();
    env.start_server();
    let id = env.create("write approved.txt");
    let id8 = &id[..8];
    env.wait_status(&id, "permission_prompt");
    env.ag(["status"])
        .run()
        .ok()
        .stdout_has("Pending approvals: 1")
        .stdout_has("Write approved.txt");
    env.ag(["status", id8])
        .run()
        .ok()
        .stdout_has("Pending: ")
        .stdout_has("allow_once")
        .stdout_has(&format!("ag approve {id8}"));
    env.ag(["approve", id8])
        .run()
        .ok()
        .stdout_has("Approved: Write approved.txt")
        .stdout_has("allow_once");
    env.wait_status(&id, "idle");
    assert!(env.project.join("approved.txt").exists());
    env.ag(["approve", id8])
        .run()
        .code(7)
        .stderr_has("NO_PENDING_PERMISSION");
    env.ag(["reject", id8]).run().code(7);
    env.ag(["send", id8, "write rejected.txt"]).run().ok();
    env.wait_status(&id, "permission_prompt");
    let r = env
        .ag(["reject", id8, "--reason", "not now", "--json"])
        .run();
    r.ok();
    assert_eq!(r.json()["decision"], "rejected", "{}", r.describe());
    env.wait_status(&id, "idle");
    assert!(!env.project.join("rejected.txt").exists());
}

#[test]
fn kill_prints_the_final_status() {
    let env = TestEnv::with_config();
    env.start_server();
    let id = env.create("hello");
    env.ag(["kill", &id[..8]]).run().ok().stdout_has("killed");
    env.ag(["kill", &id]).run().ok().stdout_has("killed");
    assert_eq!(env.session(&id)["status"], "killed");
}

// ---------------------------------------------------------------------------------------------
// ag run
// ---------------------------------------------------------------------------------------------

#[test]
fn run_streams_to_end_turn() {
    let env = TestEnv::with_config();
    env.start_server();
    let proj = env.project.display().to_string();
    let out = env
        .ag(["run", "Analyze this project", "--cwd", &proj])
        .run();
    out.ok()
        .stdout_has("Scripted reply: Analyze this project")
        .stderr_has("Session cc-analyze-this-proje")
        .stderr_has(&format!(
            "Dashboard: http://127.0.0.1:{}/dashboard/sessions/",
            env.port
        ))
        .stdout_lacks("\x1b[");
    // Tool cards, plans and usage.
    let out = env.ag(["run", "plan read usage", "--cwd", &proj]).run();
    out.ok()
        .stdout_has("Plan:")
        .stdout_has("[x] Read the code")
        .stdout_has("⚙ ")
        .stdout_has("— completed")
        .stderr_has("Usage: ")
        .stderr_has("Reused session");
    // --yes: only agent output.
    let out = env
        .ag(["run", "quiet please", "--yes", "--cwd", &proj])
        .run();
    out.ok().stdout_has("Scripted reply: quiet please");
    assert!(out.stderr.trim().is_empty(), "{}", out.describe());
    // --json: one document at the end.
    let out = env
        .ag([
            "run",
            "json output",
            "--json",
            "--name",
            "jsonrun",
            "--cwd",
            &proj,
        ])
        .run();
    out.ok();
    let v = out.json();
    assert_eq!(v["stopReason"], "end_turn", "{}", out.describe());
    assert!(
        v["output"]
            .as_str()
            .unwrap()
            .contains("Scripted reply: json output")
    );
    assert!(v["sessionId"].as_str().is_some() && v["durationMs"].as_u64().is_some());
    assert!(v.get("reused").is_some() && v.get("status").is_some() && v.get("usage").is_some());
    // --no-stream: create output and exit.
    env.ag(["run", "no stream", "--no-stream", "--cwd", &proj])
        .run()
        .ok()
        .stdout_has("Session reused:")
        .stdout_has("Next steps:");
    // A brief is required; -y conflicts with --permission-mode.
    env.ag(["run"])
        .run()
        .code(2)
        .stderr_has("a brief is required");
    env.ag(["run", "x", "-y", "--permission-mode", "default"])
        .run()
        .code(2);
}

#[test]
fn run_reports_failures_and_timeouts() {
    let env = TestEnv::with_config();
    env.start_server();
    let proj = env.project.display().to_string();
    env.ag(["run", "please fail", "--cwd", &proj])
        .run()
        .code(5)
        .stderr_has("the turn failed")
        .stderr_has("scripted failure");
    env.ag(["run", "please crash", "--cwd", &proj])
        .run()
        .code(5)
        .stderr_has("crash");
    let start = Instant::now();
    let out = env
        .ag(["run", "hang", "--timeout", "1", "--cwd", &proj])
        .run();
    out.code(8)
        .stderr_has("--timeout elapsed")
        .stderr_has("ag tail ");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{}",
        out.describe()
    );
    // The session is left running.
    let list = env
        .ag(["list", "--status", "working", "--json"])
        .run()
        .json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
}

#[test]
fn run_ctrl_c_interrupts_the_turn() {
    let env = TestEnv::with_config();
    env.start_server();
    let mut run = env
        .ag(["run", "hang", "--cwd"])
        .arg(env.project.display().to_string())
        .spawn();
    run.wait_stderr("Dashboard:", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    run.signal(libc::SIGINT);
    let out = run.wait();
    out.code(130).stderr_has("Interrupting");
    let list = env.ag(["list", "--all", "--json"]).run().json();
    let id = list["sessions"][0]["id"].as_str().unwrap().to_owned();
    env.wait_status(&id, "idle");
}

#[test]
fn run_non_interactive_permission_waits_then_approve() {
    let env = TestEnv::with_config();
    env.start_server();
    let mut run = env
        .ag(["run", "write perm.txt", "--cwd"])
        .arg(env.project.display().to_string())
        .spawn();
    let err = run.wait_stderr("Waiting for approval: ag approve ", Duration::from_secs(30));
    let id8 = err
        .split("Waiting for approval: ag approve ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(id8.len(), 8);
    let s = env.session(&id8);
    assert_eq!(s["status"], "permission_prompt");
    assert_eq!(
        err.matches("Waiting for approval").count(),
        1,
        "printed once: {err}"
    );
    env.ag(["approve", &id8]).run().ok();
    let out = run.wait();
    out.ok().stdout_has("⚙ Write perm.txt — completed");
    assert!(env.project.join("perm.txt").exists());
}

#[test]
fn run_accept_permissions_approves() {
    let env = TestEnv::with_config();
    env.start_server();
    let out = env
        .ag(["run", "-y", "write yes.txt", "--cwd"])
        .arg(env.project.display().to_string())
        .run();
    out.ok().stderr_lacks("Waiting for approval");
    assert!(env.project.join("yes.txt").exists(), "{}", out.describe());
    let id = env.ag(["list", "--json"]).run().json()["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env.session(&id)["permissionMode"], "bypassPermissions");
}

#[test]
fn run_without_claude_auth_fails_fast_and_creates_nothing() {
    let env = TestEnv::with_config();
    // No server yet: nothing may be started either.
    let start = Instant::now();
    env.ag(["run", "hello", "--agent", "claude", "--cwd"])
        .arg(env.project.display().to_string())
        .run()
        .code(2)
        .stderr_has("Claude is not authenticated")
        .stderr_has("claude login")
        .stderr_has("ANTHROPIC_API_KEY");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert!(!healthy(env.port), "a server was started");
    assert!(!env.state.join("aegis.pid").exists());
    // With a server: still fast, and no session.
    env.start_server();
    let start = Instant::now();
    env.ag(["run", "hello", "--agent", "claude", "--cwd"])
        .arg(env.project.display().to_string())
        .run()
        .code(2)
        .stderr_has("claude login");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    let list = env.ag(["list", "--all", "--json"]).run().json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 0);
    // A logged-in Claude config or an API key passes the check (seen through `ag doctor`).
    let auth = |cmd: common::Cmd| -> serde_json::Value {
        let v = cmd.run().json();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == "claude-auth")
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(auth(env.ag(["doctor", "--json"])), "warn");
    assert_eq!(
        auth(env.ag(["doctor", "--json"]).env("ANTHROPIC_API_KEY", "k")),
        "ok"
    );
    std::fs::create_dir_all(env.home.join(".claude")).unwrap();
    std::fs::write(env.home.join(".claude/.credentials.json"), "{}").unwrap();
    assert_eq!(auth(env.ag(["doctor", "--json"])), "ok");
}

#[test]
fn run_bootstraps_config_and_server_then_reuses_them() {
    // No config anywhere: `ag run` writes ~/.aegis/config.yaml and starts the server detached.
    // The `claude` agent resolves to the scripted agent through AEGIS_ACP_BIN.
    let env = TestEnv::bare();
    let agent = aegis_testkit::bins::scripted_agent();
    let run = |brief: &str| {
        env.ag(["run", brief, "--cwd"])
            .arg(env.project.display().to_string())
            .env("AEGIS_STATE_DIR", env.state.display().to_string())
            .env("AEGIS_PORT", env.port.to_string())
            .env("AEGIS_ACP_BIN", agent.display().to_string())
            .env("ANTHROPIC_API_KEY", "test-key")
            .run()
    };
    let out = run("first brief");
    let cfg = env.home.join(".aegis/config.yaml");
    out.ok()
        .stdout_has("Scripted reply: first brief")
        .stderr_has(&format!("Created {}", cfg.display()))
        .stderr_has("Started the Aegis server");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains(&format!("port: {}", env.port)), "{text}");
    assert!(
        text.contains("host: \"127.0.0.1\"") && text.contains("dashboardEnabled: true"),
        "{text}"
    );
    assert!(!text.contains("authToken"), "{text}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let pid: i32 = std::fs::read_to_string(env.state.join("aegis.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        std::fs::read_to_string(env.state.join("logs/server.log"))
            .unwrap()
            .contains("listening")
    );
    let before = std::fs::metadata(&cfg).unwrap().modified().unwrap();
    let out = run("second brief");
    out.ok()
        .stdout_has("Scripted reply: second brief")
        .stderr_lacks("Started the Aegis server")
        .stderr_lacks("Created ");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
    assert_eq!(std::fs::metadata(&cfg).unwrap().modified().unwrap(), before);
    let pid2: i32 = std::fs::read_to_string(env.state.join("aegis.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, pid2, "the server was reused");
    // ag stop (falls back to SIGTERM on the pid file while /v1/admin/shutdown is missing).
    env.ag(["stop"])
        .env("AEGIS_STATE_DIR", env.state.display().to_string())
        .env("AEGIS_PORT", env.port.to_string())
        .run()
        .ok()
        .stdout_has("Stopped the Aegis server");
    assert!(!healthy(env.port));
}

// ---------------------------------------------------------------------------------------------
// init, doctor, completions
// ---------------------------------------------------------------------------------------------

#[test]
fn init_writes_once_and_never_regenerates() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = TestEnv::bare();
    let out = env
        .ag([
            "init",
            "--yes",
            "--model",
            "anthropic/claude-sonnet",
            "--name",
            "team",
        ])
        .run();
    out.ok()
        .stdout_has("Wrote .aegis/config.yaml")
        .stdout_has("No token");
    let path = env.work.join(".aegis/config.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("defaultModel: \"anthropic/claude-sonnet\""),
        "{text}"
    );
    assert!(text.contains("defaultSessionName: \"team\""), "{text}");
    assert!(!text.contains("authToken"), "{text}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(env.work.join(".aegis"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // Twice: untouched, no token, exit 0.
    env.ag(["init", "--yes", "--force"])
        .run()
        .ok()
        .stdout_has(
            "Config exists at .aegis/config.yaml; left unchanged (use --overwrite to replace)",
        )
        .stdout_lacks("AEGIS_AUTH_TOKEN");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // --force on loopback: a token, printed once.
    let out = env
        .ag(["init", "--yes", "--force", "--config", "forced.yaml"])
        .run();
    out.ok();
    let token = out
        .stdout
        .split("export AEGIS_AUTH_TOKEN=")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(out.stdout.matches(&token).count(), 1);
    let forced = std::fs::read_to_string(env.work.join("forced.yaml")).unwrap();
    assert!(forced.contains(&token));
    // --overwrite backs up first, and a new file gets a new token.
    let out = env
        .ag([
            "init",
            "--yes",
            "--force",
            "--overwrite",
            "--config",
            "forced.yaml",
        ])
        .run();
    out.ok();
    assert_eq!(
        std::fs::read_to_string(env.work.join("forced.yaml.bak")).unwrap(),
        forced
    );
    assert!(
        !std::fs::read_to_string(env.work.join("forced.yaml"))
            .unwrap()
            .contains(&token)
    );
    // A non-loopback host always gets a token.
    env.ag([
        "init",
        "--yes",
        "--host",
        "0.0.0.0",
        "--port",
        "9999",
        "--config",
        "public.yaml",
    ])
    .run()
    .ok()
    .stdout_has("export AEGIS_AUTH_TOKEN=");
    let public = std::fs::read_to_string(env.work.join("public.yaml")).unwrap();
    assert!(
        public.contains("authToken: ") && public.contains("port: 9999"),
        "{public}"
    );
    // Invalid values.
    env.ag(["init", "--yes", "--model", "", "--config", "x.yaml"])
        .run()
        .code(2);
    assert!(!env.work.join("x.yaml").exists());
    // The written file loads (the server would accept it).
    env.ag(["doctor", "--json", "--config", "public.yaml"])
        .run();
}

#[test]
fn doctor_checks_and_exit_codes() {
    let env = TestEnv::with_config();
    let out = env.ag(["doctor", "--json"]).run();
    out.ok();
    let v = out.json();
    let status = |key: &str| -> String {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == key)
            .unwrap_or_else(|| panic!("no check {key}{}", out.describe()))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status("config"), "ok");
    assert_eq!(status("state-dir"), "ok");
    assert_eq!(status("bind"), "ok");
    assert_eq!(status("port"), "ok");
    assert_eq!(status("server"), "warn");
    assert_eq!(status("agent:scripted"), "ok");
    assert_eq!(status("store"), "ok");
    assert!(v["summary"]["total"].as_u64().unwrap() >= 8);
    assert_eq!(v["ok"], true);
    for k in ["timestamp", "baseUrl", "configPath", "stateDir"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    env.start_server();
    let v = env.ag(["doctor", "--json"]).run().json();
    let st = |key: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == key)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(st("server"), "ok");
    assert_eq!(st("port"), "ok");
    env.ag(["doctor"])
        .run()
        .ok()
        .stdout_has("✓ ")
        .stdout_has("Summary: ");
    // A broken config, a missing agent command → failures, exit 1.
    let bad = env.root.path().join("bad.yaml");
    std::fs::write(&bad, "defaultPermissionMode: yolo\n").unwrap();
    env.ag(["doctor", "--config"])
        .arg(bad.display().to_string())
        .run()
        .code(1)
        .stdout_has("defaultPermissionMode");
    let missing = env.root.path().join("missing-agent.yaml");
    std::fs::write(
        &missing,
        "defaultAgent: ghost\nagents:\n  ghost: {command: /nonexistent/ghost}\n",
    )
    .unwrap();
    env.ag(["doctor", "--json", "--config"])
        .arg(missing.display().to_string())
        .run()
        .code(1)
        .stdout_has("agent:ghost");
}

#[test]
fn completions_for_each_shell() {
    let env = TestEnv::bare();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.ag(["completions", shell]).run();
        out.ok();
        assert!(
            out.stdout.contains("ag") && out.stdout.contains("tail"),
            "{}",
            out.describe()
        );
    }
    env.ag(["completions", "tcsh"]).run().code(2);
}

#[test]
fn tail_resumes_across_a_server_restart_without_duplicates() {
    let env = TestEnv::with_config();
    env.start_server();
    let id = env.create("hello before the restart");
    env.wait_status(&id, "idle");
    let mut tail = env
        .ag([
            "tail",
            &id[..8],
            "--from-start",
            "--json",
            "--timeout",
            "90",
        ])
        .timeout(Duration::from_secs(100))
        .spawn();
    tail.wait_stdout(
        "Scripted reply: hello before the restart",
        Duration::from_secs(20),
    );
    // Drop every connection: stop the server, start it again on the same port and state.
    env.stop_servers();
    assert!(!healthy(env.port));
    env.start_server();
    env.wait_status(&id, "idle");
    env.ag(["send", &id[..8], "hello after the restart"])
        .run()
        .ok();
    tail.wait_stdout(
        "Scripted reply: hello after the restart",
        Duration::from_secs(40),
    );
    env.ag(["kill", &id[..8]]).run().ok();
    let out = tail.wait();
    out.code(5);
    let mut ids = Vec::new();
    for line in out.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not NDJSON ({e}): {line}{}", out.describe()));
        if let Some(i) = v["id"].as_u64() {
            ids.push(i);
        }
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        ids,
        sorted,
        "event ids repeat or go backwards{}",
        out.describe()
    );
    // Dense: nothing was lost across the reconnect.
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(
        ids.len() as u64,
        *ids.last().unwrap(),
        "a gap in event ids{}",
        out.describe()
    );
}
