//! The real `ag` binary and authentication (api §5.2): a non-loopback bind without any
//! credential refuses to start (exit 2, says how to create a token); with a token every seed
//! curl command works with the header and fails 401 without it; no secret reaches the logs;
//! `ag keys` and `ag audit verify` work offline and online.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aegis_e2e::process::{AgServer, free_port, write_config};
use serde_json::{Value, json};

const TOKEN: &str = "seed-master-token-7f3a9c1e5b2d4f6081a3c5e7";

/// `ag` with a clean environment: no inherited AEGIS_* variable, HOME in the test dir.
fn ag(home: &Path) -> Command {
    let mut c = Command::new(aegis_testkit::bins::ag());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("AEGIS_") || k == "CORS_ORIGIN" || k == "TRUST_PROXY" {
            c.env_remove(k);
        }
    }
    c.env("HOME", home).env("NO_COLOR", "1").current_dir(home);
    c
}

async fn wait_healthy(base: &str, log: &Path) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/v1/health")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server did not come up: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(t) = token {
        r = r.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn a_non_loopback_bind_needs_a_credential_and_seed_curls_need_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let state = home.join("state");
    let work = home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let port = free_port();
    let cfg = home.join("config.yaml");
    write_config(
        &cfg,
        port,
        &state,
        &[&work],
        "host: 0.0.0.0\nlogLevel: debug\n",
    );

    // No credential: refuse, exit 2, say how to create one.
    let out = ag(home)
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to bind 0.0.0.0"), "{err}");
    assert!(
        err.contains("AEGIS_AUTH_TOKEN") && err.contains("ag keys create --offline"),
        "{err}"
    );

    // With a master token it starts.
    let log = home.join("server.log");
    let out_file = std::fs::File::create(&log).unwrap();
    let child = ag(home)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("AEGIS_AUTH_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let server = AgServer {
        child,
        base: base.clone(),
    };
    wait_healthy(&base, &log).await;

    // Create (`ag create`'s POST), then the seed's next-step curls: Status, Read, Approve, Kill.
    let create = json!({"workDir": work, "prompt": "hello", "reuse": false});
    let (st, e) = call(
        "POST",
        &format!("{base}/v1/sessions"),
        None,
        Some(create.clone()),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (401, Some("UNAUTHORIZED")), "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{e}"
    );
    let (st, s) = call(
        "POST",
        &format!("{base}/v1/sessions"),
        Some(TOKEN),
        Some(create),
    )
    .await;
    assert_eq!(st, 201, "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    let seed = [
        ("GET", format!("{base}/v1/sessions/{id}/health")),
        ("GET", format!("{base}/v1/sessions/{id}/read")),
        ("POST", format!("{base}/v1/sessions/{id}/approve")),
        ("GET", format!("{base}/v1/sessions")),
        ("DELETE", format!("{base}/v1/sessions/{id}")),
    ];
    for (method, url) in &seed {
        let (st, e) = call(method, url, None, None).await;
        assert_eq!(st, 401, "{method} {url} without the header: {e}");
        assert_eq!(e["code"], "UNAUTHORIZED", "{e}");
        assert!(e["requestId"].is_string() && e["error"].is_string(), "{e}");
    }
    for (method, url) in &seed {
        let (st, v) = call(method, url, Some(TOKEN), None).await;
        assert!(
            st != 401 && st != 403 && st < 500,
            "{method} {url} with the header: {st} {v}"
        );
    }

    // A key created offline while the server runs is usable within 2 s.
    let out = ag(home)
        .args([
            "keys",
            "create",
            "--offline",
            "--name",
            "ci",
            "--role",
            "operator",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with("aegis_"))
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (st, who) = call("GET", &format!("{base}/v1/auth/whoami"), Some(&key), None).await;
        if st == 200 {
            assert_eq!(who["role"], "operator");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "offline key not picked up: {st} {who}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Online `ag keys list` and `ag audit verify` through the server.
    let url = base.clone();
    let out = ag(home)
        .args(["keys", "list", "--json", "--url", &url, "--config"])
        .arg(&cfg)
        .env("AEGIS_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys[0]["name"], "ci");
    let out = ag(home)
        .args(["audit", "verify", "--url", &url, "--config"])
        .arg(&cfg)
        .env("AEGIS_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("Audit chain valid:"),
        "{out:?}"
    );
    let out = ag(home)
        .args(["keys", "list", "--url", &url, "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "no token → exit 3: {out:?}");

    drop(server); // SIGTERM, graceful

    // Nothing secret in the logs (debug level) or the audit files.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("listening"), "{logs}");
    let audit: String = std::fs::read_dir(state.join("audit"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(audit.contains("\"server.start\"") && audit.contains("\"server.stop\""));
    assert!(audit.contains("\"session.create\"") && audit.contains("\"session.kill\""));
    for secret in [TOKEN, &key[23..]] {
        assert!(!logs.contains(secret), "a secret is in the server log");
        assert!(!audit.contains(secret), "a secret is in the audit log");
    }

    // Offline verification: valid, then broken after an edit (exit 1, names the record).
    let out = ag(home)
        .args(["audit", "verify", "--offline", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let file = std::fs::read_dir(state.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen("\"server.start\"", "\"server.restart\"", 1),
    )
    .unwrap();
    let out = ag(home)
        .args(["audit", "verify", "--offline", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Audit chain BROKEN at seq 1 (hash_mismatch)"
    );
}
