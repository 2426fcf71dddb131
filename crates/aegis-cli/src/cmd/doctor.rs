//! `ag doctor [--json] [--deep]`: environment checks, each `ok`/`warn`/`fail` with a one-line
//! fix. Exit 0 when nothing fails, 1 otherwise. Works without a server.

use std::path::{Path, PathBuf};

use aegis_runtime::registry::AgentSource;
use serde::Serialize;
use serde_json::{Value, json};

use super::{CmdResult, Ctx, exit, print_json};
use crate::DoctorArgs;
use crate::config::{self, Config};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub key: String,
    pub label: String,
    pub status: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

fn check(
    key: &str,
    label: &str,
    status: Level,
    message: impl Into<String>,
    hint: Option<&str>,
) -> Check {
    Check {
        key: key.to_owned(),
        label: label.to_owned(),
        status,
        message: message.into(),
        hint: hint.map(str::to_owned),
    }
}

const AUTH_VARS: [&str; 3] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
];

/// Can the `claude` agent authenticate? `Ok(how)` or `Err(message with the fix)`.
///
/// Accepted: `ANTHROPIC_API_KEY` / `ANTHROPIC_AUTH_TOKEN` / `ANTHROPIC_BASE_URL` in the
/// environment, in `agents.claude.env` or in `defaultSessionEnv`; or a logged-in Claude config:
/// `$CLAUDE_CONFIG_DIR` (else `~/.claude`) holding `.credentials.json`, or `~/.claude.json`
/// with an `oauthAccount`.
pub fn claude_auth(c: &Config) -> Result<String, String> {
    for v in AUTH_VARS {
        if std::env::var(v).is_ok_and(|x| !x.is_empty()) {
            return Ok(format!("{v} is set"));
        }
    }
    let claude_env = c.agents.get("claude").map(|a| &a.env);
    for v in AUTH_VARS {
        if claude_env.is_some_and(|e| e.get(v).is_some_and(|x| !x.is_empty())) {
            return Ok(format!("{v} is set in agents.claude.env"));
        }
        if c.default_session_env.get(v).is_some_and(|x| !x.is_empty()) {
            return Ok(format!("{v} is set in defaultSessionEnv"));
        }
    }
    let dir = std::env::var_os("CLAUDE_CONFIG_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| config::home().join(".claude"), PathBuf::from);
    let creds = dir.join(".credentials.json");
    if creds.is_file() {
        return Ok(format!("logged in ({})", creds.display()));
    }
    let legacy = config::home().join(".claude.json");
    if std::fs::read_to_string(&legacy).is_ok_and(|t| t.contains("\"oauthAccount\"")) {
        return Ok(format!("logged in ({})", legacy.display()));
    }
    Err(format!(
        "Claude is not authenticated, so a Claude session would produce no output.\n\
         Fix one of:\n  claude login                       (log in the Claude Code CLI; credentials in {})\n  \
         export ANTHROPIC_API_KEY=<key>      (or ANTHROPIC_AUTH_TOKEN / ANTHROPIC_BASE_URL for a proxy)\n\
         Then run the command again. `ag doctor` shows every check.",
        dir.display()
    ))
}

/// `node --version` as (major, text).
fn node_version(path_dirs: Option<&str>) -> Option<(u32, String)> {
    let mut cmd = std::process::Command::new("node");
    if let Some(p) = path_dirs {
        cmd.env("PATH", p);
    }
    let out = cmd.arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major = text
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()?;
    Some((major, text))
}

/// True when `path` is a script run by node (npm bin shims).
fn is_node_script(path: &Path) -> bool {
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    std::fs::read(real).is_ok_and(|b| {
        let head = &b[..b.len().min(128)];
        head.starts_with(b"#!") && String::from_utf8_lossy(head).contains("node")
    })
}

fn dir_writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".ag-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

pub async fn run(ctx: &Ctx, a: &DoctorArgs) -> CmdResult {
    let mut checks: Vec<Check> = Vec::new();
    let c = &ctx.cfg.config;

    // config
    let file = config::find_config_file(ctx.global.config.as_deref());
    match &file {
        None => checks.push(check(
            "config",
            "Config file",
            Level::Ok,
            "no config file; built-in defaults and environment",
            Some("`ag init` writes .aegis/config.yaml"),
        )),
        Some(f) if !f.is_file() => checks.push(check(
            "config",
            "Config file",
            Level::Fail,
            format!("{} does not exist", f.display()),
            Some("fix --config / AEGIS_CONFIG, or run `ag init`"),
        )),
        Some(f) => match config::load(Some(f)) {
            Err(e) => checks.push(check(
                "config",
                "Config file",
                Level::Fail,
                format!("{}: {e:#}", f.display()),
                Some("fix the key named above; `ag serve` refuses to start with it"),
            )),
            Ok(l) if !l.warnings.is_empty() => checks.push(check(
                "config",
                "Config file",
                Level::Warn,
                l.warnings.join("; "),
                Some("remove or rename the unknown keys"),
            )),
            Ok(l) => {
                use std::os::unix::fs::PermissionsExt as _;
                let secret = l.config.auth_token.as_ref().is_some_and(|t| !t.is_empty())
                    || l.config
                        .client_auth_token
                        .as_ref()
                        .is_some_and(|t| !t.is_empty());
                let mode = std::fs::metadata(f)
                    .map(|m| m.permissions().mode())
                    .unwrap_or(0);
                if secret && mode & 0o077 != 0 {
                    checks.push(check(
                        "config",
                        "Config file",
                        Level::Warn,
                        format!(
                            "{} holds a token and is readable by others (mode {:o})",
                            f.display(),
                            mode & 0o777
                        ),
                        Some(&format!("chmod 600 {}", f.display())),
                    ));
                } else {
                    checks.push(check(
                        "config",
                        "Config file",
                        Level::Ok,
                        format!("{} is valid", f.display()),
                        None,
                    ));
                }
            }
        },
    }

    // state dir
    let state_dir = c.state_dir();
    if state_dir.is_dir() {
        match dir_writable(&state_dir) {
            Ok(()) => checks.push(check(
                "state-dir",
                "State directory",
                Level::Ok,
                format!("{} is writable", state_dir.display()),
                None,
            )),
            Err(e) => checks.push(check(
                "state-dir",
                "State directory",
                Level::Fail,
                format!("{} is not writable: {e}", state_dir.display()),
                Some("fix its permissions or set AEGIS_STATE_DIR"),
            )),
        }
    } else {
        let parent = state_dir.ancestors().skip(1).find(|p| p.is_dir());
        match parent.map(dir_writable) {
            Some(Ok(())) => checks.push(check(
                "state-dir",
                "State directory",
                Level::Ok,
                format!("{} will be created at start", state_dir.display()),
                None,
            )),
            _ => checks.push(check(
                "state-dir",
                "State directory",
                Level::Fail,
                format!("{} cannot be created", state_dir.display()),
                Some("set AEGIS_STATE_DIR to a writable directory"),
            )),
        }
    }

    // bind
    let has_auth = c.auth_token.as_ref().is_some_and(|t| !t.is_empty());
    if c.is_loopback() {
        checks.push(check(
            "bind",
            "Bind address",
            Level::Ok,
            format!("{} (loopback)", c.host),
            None,
        ));
    } else if has_auth {
        checks.push(check(
            "bind",
            "Bind address",
            Level::Ok,
            format!("{} with a master token", c.host),
            None,
        ));
    } else {
        checks.push(check(
            "bind",
            "Bind address",
            Level::Fail,
            format!("{} is not loopback and no authToken is set", c.host),
            Some("run `ag init --host <host>` (creates a token) or bind 127.0.0.1"),
        ));
    }

    // server + port
    let client = ctx.client()?;
    let health = client.health().await;
    match &health {
        Ok(h) => checks.push(check(
            "server",
            "Server",
            Level::Ok,
            format!(
                "running at {} (version {}, status {})",
                ctx.base_url,
                h.get("version").and_then(Value::as_str).unwrap_or("?"),
                h.get("status").and_then(Value::as_str).unwrap_or("?")
            ),
            None,
        )),
        Err(e) => checks.push(check(
            "server",
            "Server",
            Level::Warn,
            format!("not running at {} ({e})", ctx.base_url),
            Some("start it with `ag` (foreground) or `ag run \"…\"`"),
        )),
    }
    let port = c.port;
    if health.is_ok() && config::url_port(&ctx.base_url) == Some(port) {
        checks.push(check(
            "port",
            "Port",
            Level::Ok,
            format!("{port} is held by this Aegis server"),
            None,
        ));
    } else {
        let host = match c.host.as_str() {
            "localhost" => "127.0.0.1",
            h => h,
        };
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        match std::net::TcpListener::bind(&addr) {
            Ok(_) => checks.push(check(
                "port",
                "Port",
                Level::Ok,
                format!("{port} is free"),
                None,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => checks.push(check(
                "port",
                "Port",
                Level::Fail,
                format!("{port} is in use by another program"),
                Some("pick another port: AEGIS_PORT=<port> or --port <port>"),
            )),
            Err(e) => checks.push(check(
                "port",
                "Port",
                Level::Warn,
                format!("cannot test {addr}: {e}"),
                None,
            )),
        }
    }

    // agents
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let registry = crate::serve::service_config(c, &cwd).agents;
    let claude_default = c.default_agent == "claude";
    let mut claude_needs_node = false;
    for name in registry.names() {
        let key = format!("agent:{name}");
        let label = format!("Agent {name}");
        match registry.resolve(&name) {
            Ok(r) => {
                if name == "claude" && (r.source == AgentSource::Npx || is_node_script(&r.command))
                {
                    claude_needs_node = true;
                }
                checks.push(check(
                    &key,
                    &label,
                    Level::Ok,
                    format!("{} (source: {})", r.command.display(), r.source.as_str()),
                    None,
                ));
            }
            Err(e) => {
                let needed = name == c.default_agent;
                checks.push(check(
                    &key,
                    &label,
                    if needed { Level::Fail } else { Level::Warn },
                    e.to_string(),
                    Some(if name == "claude" {
                        "run `bash scripts/install-agents.sh`, or set AEGIS_ACP_BIN to claude-agent-acp"
                    } else {
                        "fix agents.<name>.command in the config"
                    }),
                ));
            }
        }
    }
    if !registry.names().contains(&c.default_agent) {
        checks.push(check(
            "default-agent",
            "Default agent",
            Level::Fail,
            format!("defaultAgent `{}` is not configured", c.default_agent),
            Some("set defaultAgent to a configured agent"),
        ));
    }

    // claude
    let soft = if claude_default {
        Level::Fail
    } else {
        Level::Warn
    };
    match registry.which("claude") {
        Some(p) => checks.push(check("claude-cli", "Claude Code CLI", Level::Ok, p.display().to_string(), None)),
        None => checks.push(check(
            "claude-cli",
            "Claude Code CLI",
            Level::Warn,
            "`claude` is not on PATH (the adapter bundles its own copy; needed only for `claude login`)",
            Some("npm install -g @anthropic-ai/claude-code"),
        )),
    }
    match claude_auth(c) {
        Ok(how) => checks.push(check(
            "claude-auth",
            "Claude authentication",
            Level::Ok,
            how,
            None,
        )),
        Err(_) => checks.push(check(
            "claude-auth",
            "Claude authentication",
            soft,
            "not logged in and no ANTHROPIC_API_KEY / ANTHROPIC_AUTH_TOKEN / ANTHROPIC_BASE_URL",
            Some("run claude login, or export ANTHROPIC_API_KEY=<key>"),
        )),
    }
    if claude_needs_node {
        match node_version(registry.path.as_deref()) {
            Some((m, v)) if m >= 22 => checks.push(check("node", "Node.js", Level::Ok, v, None)),
            Some((m, v)) if m >= 20 => checks.push(check(
                "node",
                "Node.js",
                Level::Warn,
                format!("{v} works; the adapter prefers ≥ 22"),
                Some("upgrade Node.js to 22 when convenient"),
            )),
            Some((_, v)) => checks.push(check(
                "node",
                "Node.js",
                soft,
                format!("{v} is too old (≥ 20 required)"),
                Some("install Node.js 20 or newer"),
            )),
            None => checks.push(check(
                "node",
                "Node.js",
                soft,
                "node is not on PATH",
                Some("install Node.js 20 or newer"),
            )),
        }
    }

    // acp handshake (deep)
    if a.deep {
        match &health {
            Ok(_) => {
                let name = c.default_agent.clone();
                match client.agent_check(&name).await {
                    Ok(v) if v.get("ok").and_then(Value::as_bool) == Some(true) => {
                        checks.push(check(
                            "acp-handshake",
                            "ACP handshake",
                            Level::Ok,
                            format!(
                                "{name}: modes {}",
                                v.get("modes").map(Value::to_string).unwrap_or_default()
                            ),
                            None,
                        ))
                    }
                    Ok(v) => checks.push(check(
                        "acp-handshake",
                        "ACP handshake",
                        Level::Fail,
                        format!(
                            "{name}: {}",
                            v.get("error").map(Value::to_string).unwrap_or_default()
                        ),
                        Some("see `ag status` and the server log"),
                    )),
                    Err(e) => checks.push(check(
                        "acp-handshake",
                        "ACP handshake",
                        Level::Warn,
                        format!("agent check unavailable: {e}"),
                        None,
                    )),
                }
            }
            Err(_) => checks.push(check(
                "acp-handshake",
                "ACP handshake",
                Level::Warn,
                "skipped: needs a running server",
                Some("start the server with `ag`, then `ag doctor --deep`"),
            )),
        }
    }

    // store
    match c.session_store.as_str() {
        "file" => {
            let healthy = health
                .as_ref()
                .ok()
                .and_then(|h| h.pointer("/store/healthy"))
                .and_then(Value::as_bool);
            let store = state_dir.join("store");
            match healthy {
                Some(false) => checks.push(check(
                    "store",
                    "Store",
                    Level::Fail,
                    "the server reports its file store unhealthy",
                    Some("check the disk and the server log"),
                )),
                _ => checks.push(check(
                    "store",
                    "Store",
                    Level::Ok,
                    format!("file store at {}", store.display()),
                    None,
                )),
            }
        }
        other => checks.push(check(
            "store",
            "Store",
            Level::Fail,
            format!("sessionStore `{other}` is not available in this build"),
            Some("use sessionStore: file"),
        )),
    }

    // allowed workdirs
    if c.allowed_work_dirs.is_empty() {
        checks.push(check(
            "allowed-workdirs",
            "Allowed workDirs",
            Level::Ok,
            "defaults: your home and the server's start-up directory (temporary directories excluded)",
            None,
        ));
    } else {
        let missing: Vec<&String> = c
            .allowed_work_dirs
            .iter()
            .filter(|d| !config::expand(d).is_dir())
            .collect();
        if missing.is_empty() {
            checks.push(check(
                "allowed-workdirs",
                "Allowed workDirs",
                Level::Ok,
                c.allowed_work_dirs.join(", "),
                None,
            ));
        } else {
            checks.push(check(
                "allowed-workdirs",
                "Allowed workDirs",
                Level::Warn,
                format!(
                    "missing: {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some("create them or remove them from allowedWorkDirs"),
            ));
        }
    }

    let failed = checks.iter().filter(|c| c.status == Level::Fail).count();
    let warnings = checks.iter().filter(|c| c.status == Level::Warn).count();
    let passed = checks.len() - failed - warnings;
    if ctx.json() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        print_json(&json!({
            "ok": failed == 0,
            "timestamp": aegis_domain::time::iso8601_ms(now),
            "baseUrl": ctx.base_url,
            "configPath": file,
            "stateDir": state_dir,
            "summary": {"total": checks.len(), "passed": passed, "warnings": warnings, "failed": failed},
            "checks": checks,
        }))?;
    } else {
        let s = &ctx.out;
        for ch in &checks {
            let mark = match ch.status {
                Level::Ok => s.green("✓"),
                Level::Warn => s.yellow("!"),
                Level::Fail => s.red("✗"),
            };
            println!("{mark} {:<24} {}", ch.label, ch.message);
            if ch.status != Level::Ok
                && let Some(h) = &ch.hint
            {
                println!("  {:<24} {}", "", s.dim(&format!("→ {h}")));
            }
        }
        println!(
            "\nSummary: {passed} ok, {warnings} warning{}, {failed} failing",
            if warnings == 1 { "" } else { "s" }
        );
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILURE })
}
