//! Real headless Chromium for the dashboard tests, driven over W3C WebDriver through Debian's
//! `chromedriver` (package `chromium-driver`). A small client over reqwest: navigation, script
//! execution, element clicks and typing, keyboard actions (real key events, not synthetic DOM
//! events), screenshots and the browser console log.
//!
//! Missing Chromium or chromedriver is a hard failure (run `scripts/install-browser.sh`), never
//! a skip. `chromedriver` runs in its own process group, Chromium inside it (crashpad is off so
//! no helper escapes the group); [`Browser::close`] ends the WebDriver session and the group is
//! killed, also from `Drop` when a test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver key codes.
pub mod key {
    pub const CONTROL: &str = "\u{E009}";
    pub const SHIFT: &str = "\u{E008}";
    pub const ENTER: &str = "\u{E007}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const TAB: &str = "\u{E004}";
    pub const END: &str = "\u{E010}";
    pub const HOME: &str = "\u{E011}";
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The Chromium binary: `AEGIS_CHROMIUM`, else `chromium` on PATH.
pub fn chromium_path() -> PathBuf {
    if let Some(p) = std::env::var_os("AEGIS_CHROMIUM") {
        return PathBuf::from(p);
    }
    which("chromium")
        .or_else(|| which("chromium-browser"))
        .unwrap_or_else(|| {
            panic!(
                "Chromium is not installed: the dashboard tests need a real browser. \
                 Run scripts/install-browser.sh (apt-get install chromium chromium-driver) \
                 or set AEGIS_CHROMIUM."
            )
        })
}

/// chromedriver: `AEGIS_CHROMEDRIVER`, else `chromedriver` on PATH.
pub fn chromedriver_path() -> PathBuf {
    if let Some(p) = std::env::var_os("AEGIS_CHROMEDRIVER") {
        return PathBuf::from(p);
    }
    which("chromedriver").unwrap_or_else(|| {
        panic!(
            "chromedriver is not installed: the dashboard tests need it to drive Chromium. \
             Run scripts/install-browser.sh (apt-get install chromium chromium-driver) \
             or set AEGIS_CHROMEDRIVER."
        )
    })
}

/// Where screenshots go: `<repo>/test-output/screenshots/` (gitignored; CI artifacts).
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-output/screenshots");
    std::fs::create_dir_all(&dir).expect("create test-output/screenshots");
    dir.canonicalize().unwrap_or(dir)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

/// A web element reference.
#[derive(Debug, Clone)]
pub struct Element(pub String);

/// One Chromium under one chromedriver.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Option<Child>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Headless Chromium with a 1280×900 window.
    pub async fn launch() -> Browser {
        Self::launch_sized(1280, 900).await
    }

    pub async fn launch_sized(width: u32, height: u32) -> Browser {
        let chromium = chromium_path();
        let chromedriver = chromedriver_path();
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log"))
            .expect("chromedriver log");
        let mut cmd = Command::new(&chromedriver);
        cmd.arg(format!("--port={port}"))
            .arg("--log-level=WARNING")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log));
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            http,
            session: String::new(),
            driver: Some(driver),
            _profile: profile,
        };
        // Wait for chromedriver.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = browser.http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("chromedriver did not become ready on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let user_data = browser._profile.path().join("chrome");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "unhandledPromptBehavior": "dismiss",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-crashpad-for-testing", "--disable-breakpad",
                    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-color-profile=srgb",
                    "--lang=en-US", "--js-flags=--expose-gc",
                    // On this VM kind the out-of-process network service crashes ("FD
                    // ownership violation") and every navigation ends in ERR_ABORTED.
                    "--enable-features=NetworkServiceInProcess2",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", user_data.display()),
                ],
            },
        }}});
        let r = browser
            .http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new WebDriver session");
        let v: Value = r.json().await.expect("session JSON");
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver could not start Chromium: {v}"))
            .to_owned();
        browser.session = format!("{base}/session/{id}");
        browser.set_size(width, height).await;
        browser
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            panic!(
                "WebDriver {method} {path} failed ({status}): {} — {}",
                v["value"]["error"],
                v["value"]["message"].as_str().unwrap_or("")
            );
        }
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn set_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// Navigate and wait for the load event.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn current_url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Run a synchronous script (its body; use `return …`).
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Run an asynchronous script: it gets a callback as its last argument and calls it with
    /// the result.
    pub async fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/async", json!({"script": script, "args": args}))
            .await
    }

    /// Poll `expr` (a JS expression) until it is truthy; returns its value. Panics with `what`
    /// and the last value on timeout.
    pub async fn wait_for(&self, what: &str, expr: &str, timeout: Duration) -> Value {
        let script = format!("try {{ return ({expr}); }} catch (e) {{ return null; }}");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = self.js(&script, vec![]).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                let url = self.current_url().await;
                let body = self
                    .js(
                        "return document.body ? document.body.innerText.slice(0, 1500) : ''",
                        vec![],
                    )
                    .await;
                self.screenshot(&format!("FAILED-{}", sanitize(what))).await;
                panic!(
                    "timed out after {timeout:?} waiting for {what} ({expr}); last value {v}; at {url}\npage text:\n{}",
                    body.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        Element(
            v[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {v}"))
                .to_owned(),
        )
    }

    /// Wait until `css` matches a visible element, then click it (a real pointer click).
    pub async fn click(&self, css: &str) {
        let sel = serde_json::to_string(css).unwrap_or_default();
        self.wait_for(
            &format!("{css} to be clickable"),
            &format!(
                "(() => {{ const e = document.querySelector({sel}); return !!e && !e.disabled && e.getClientRects().length > 0; }})()"
            ),
            Duration::from_secs(15),
        )
        .await;
        let el = self.find(css).await;
        self.post(&format!("/element/{}/click", el.0), json!({}))
            .await;
    }

    /// Type into an element (focuses it first; real key events).
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{}/value", el.0), json!({"text": text}))
            .await;
    }

    pub async fn clear(&self, css: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{}/clear", el.0), json!({}))
            .await;
    }

    /// Press keys one after another (each down + up), to whatever has focus.
    pub async fn keys(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.perform(actions).await;
    }

    /// Press a chord: all down in order, then all up in reverse (e.g. Control+K).
    pub async fn chord(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
        }
        for k in keys.iter().rev() {
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.perform(actions).await;
    }

    async fn perform(&self, actions: Vec<Value>) {
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
        self.cmd(reqwest::Method::DELETE, "/actions", None).await;
    }

    /// Save a PNG screenshot as `test-output/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64_decode(v.as_str().unwrap_or(""));
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Browser console entries since the last call: `(level, message)`.
    pub async fn console(&self) -> Vec<(String, String)> {
        let v = self.post("/se/log", json!({"type": "browser"})).await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_owned(),
                            e["message"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// End the WebDriver session (Chromium quits) and stop chromedriver.
    pub async fn close(mut self) {
        let _ = self
            .http
            .delete(&self.session)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        self.kill_driver();
    }

    fn kill_driver(&mut self) {
        if let Some(mut child) = self.driver.take() {
            // The whole group: chromedriver and the Chromium it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The profile directory (for chromedriver's log when debugging).
    pub fn profile_dir(&self) -> &Path {
        self._profile.path()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_driver();
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect()
}

/// Standard base64 (screenshots).
pub fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let Some(v) = val(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_round_trip() {
        assert_eq!(super::base64_decode("aGVsbG8="), b"hello");
        assert_eq!(super::base64_decode("aGk="), b"hi");
        assert_eq!(super::base64_decode("YWJj"), b"abc");
    }
}
