//! Configuration: file discovery, `${VAR}` substitution, env overrides, validation.
//!
//! Precedence per key: flags > environment > file > defaults (cli-mcp-config §2.2). Env values
//! are parsed strictly; an invalid value is an error naming the variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aegis_api_types::PermissionProfile;
use aegis_runtime::registry::AgentConfig;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

/// Keys the file may contain (unknown keys warn with a suggestion).
const KNOWN_KEYS: &[&str] = &[
    "port", "host", "baseUrl", "authToken", "clientAuthToken", "stateDir", "logLevel", "logFormat",
    "sessionStore", "stateStore", "postgres", "postgresUrl", "redis", "strictRbac", "acp",
    "defaultAgent", "agents", "defaultModel", "defaultPermissionMode", "defaultPermissionProfile",
    "defaultSessionName", "defaultSessionEnv", "envDenylist", "envAdminAllowlist", "allowedWorkDirs",
    "tenantWorkdirs", "defaultTenantId", "enforceSessionOwnership", "maxSessions", "maxQueuedPrompts",
    "stallThresholdMs", "turnTimeoutMs", "permissionTimeoutMs", "permissionTimeoutAction",
    "rateLimitAutoResume", "rateLimitRetryMs", "idleTimeoutMs", "maxSessionAgeMs", "autoReattach",
    "shutdownSessions", "shutdownGraceMs", "retention", "rateLimit", "keyRotationGraceSeconds", "sse",
    "oidc", "authDir", "dashboardEnabled", "corsOrigins", "trustProxy", "metricsToken", "memoryBridge",
    "pipelineStageTimeoutMs", "verification", "screenshot", "pricing", "webhooks", "alerting", "slack",
    "email", "telegram", "otel", "audit",
];

/// The parsed configuration (only what this build uses; other known keys are accepted).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(default = "d_port")]
    pub port: u16,
    #[serde(default = "d_host")]
    pub host: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub client_auth_token: Option<String>,
    #[serde(default)]
    pub state_dir: Option<String>,
    #[serde(default = "d_log")]
    pub log_level: String,
    #[serde(default = "d_store", alias = "stateStore")]
    pub session_store: String,
    #[serde(default)]
    pub acp: AcpSection,
    #[serde(default = "d_agent")]
    pub default_agent: String,
    #[serde(default)]
    pub agents: BTreeMap<String, AgentConfig>,
    #[serde(default)]
    pub default_model: Option<String>,
    #[serde(default = "d_mode")]
    pub default_permission_mode: String,
    #[serde(default)]
    pub default_permission_profile: Option<PermissionProfile>,
    #[serde(default)]
    pub default_session_name: Option<String>,
    #[serde(default)]
    pub default_session_env: BTreeMap<String, String>,
    #[serde(default)]
    pub allowed_work_dirs: Vec<String>,
    #[serde(default = "d_max_sessions")]
    pub max_sessions: usize,
    #[serde(default = "d_20")]
    pub max_queued_prompts: usize,
    #[serde(default = "d_stall")]
    pub stall_threshold_ms: u64,
    #[serde(default)]
    pub permission_timeout_ms: u64,
    #[serde(default = "d_reject")]
    pub permission_timeout_action: String,
    #[serde(default = "d_true")]
    pub rate_limit_auto_resume: bool,
    #[serde(default = "d_retry")]
    pub rate_limit_retry_ms: u64,
    #[serde(default = "d_true")]
    pub auto_reattach: bool,
    #[serde(default = "d_true")]
    pub dashboard_enabled: bool,
    #[serde(default)]
    pub sse: SseSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcpSection {
    pub request_timeout_ms: Option<u64>,
    pub bin: Option<String>,
    pub package: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SseSection {
    pub max_connections: Option<usize>,
    pub max_per_ip: Option<usize>,
    pub heartbeat_ms: Option<u64>,
}

fn d_port() -> u16 {
    9100
}
fn d_host() -> String {
    "127.0.0.1".into()
}
fn d_log() -> String {
    "info".into()
}
fn d_store() -> String {
    "file".into()
}
fn d_agent() -> String {
    "claude".into()
}
fn d_mode() -> String {
    "default".into()
}
fn d_max_sessions() -> usize {
    20
}
fn d_20() -> usize {
    20
}
fn d_stall() -> u64 {
    300_000
}
fn d_reject() -> String {
    "reject".into()
}
fn d_true() -> bool {
    true
}
fn d_retry() -> u64 {
    300_000
}

/// The user's home directory.
pub fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// Expand `~/` in a path-valued setting.
pub fn expand(p: &str) -> PathBuf {
    if p == "~" {
        home()
    } else if let Some(rest) = p.strip_prefix("~/") {
        home().join(rest)
    } else {
        PathBuf::from(p)
    }
}

/// The config file to use: `--config`, `AEGIS_CONFIG`, then the first existing of the
/// search order (files are never merged).
pub fn find_config_file(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("AEGIS_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let h = home();
    [
        PathBuf::from(".aegis/config.yaml"),
        PathBuf::from(".aegis/config.yml"),
        PathBuf::from("aegis.config.json"),
        h.join(".aegis/config.yaml"),
        h.join(".aegis/config.yml"),
        h.join(".aegis/config.json"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Replace `${VAR}` / `${VAR:-default}` in every string value.
fn substitute(v: &mut Value, path: &str) -> Result<()> {
    match v {
        Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after
                    .find('}')
                    .with_context(|| format!("{path}: unterminated ${{ in value"))?;
                let expr = &after[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                match (std::env::var(name), default) {
                    (Ok(val), _) => out.push_str(&val),
                    (Err(_), Some(d)) => out.push_str(d),
                    (Err(_), None) => bail!("{path}: environment variable {name} is not set (use ${{{name}:-default}})"),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                substitute(x, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                substitute(x, &format!("{path}.{k}"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `candidates` within edit distance 2.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A loaded configuration with its provenance.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

fn parse_file(path: &Path) -> Result<(Value, Vec<String>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let is_yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let mut v: Value = if is_yaml {
        if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            yaml_serde::from_str(&text)
                .with_context(|| format!("config file {} is not valid YAML", path.display()))?
        }
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("config file {} is not valid JSON", path.display()))?
    };
    if v.is_null() {
        v = Value::Object(Default::default());
    }
    let Value::Object(map) = &v else {
        bail!("config file {} must hold a mapping of keys", path.display());
    };
    let mut warnings = vec![];
    for k in map.keys() {
        if !KNOWN_KEYS.contains(&k.as_str()) {
            let hint = suggest(k, KNOWN_KEYS)
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            warnings.push(format!("{}: unknown key '{k}'{hint}", path.display()));
        }
    }
    substitute(&mut v, "config")?;
    Ok((v, warnings))
}

fn env_u64(name: &str, min: u64, max: u64) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {
            let n: u64 = v
                .trim()
                .parse()
                .with_context(|| format!("{name}={v} is not a whole number"))?;
            if !(min..=max).contains(&n) {
                bail!("{name}={v} is out of range ({min}-{max})");
            }
            Ok(Some(n))
        }
        _ => Ok(None),
    }
}

fn env_bool(name: &str) -> Result<Option<bool>> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => match v.trim() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => bail!("{name}={v} must be true, false, 1 or 0"),
        },
        _ => Ok(None),
    }
}

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Load file + env. `file` is the already-discovered path (or none).
pub fn load(file: Option<&Path>) -> Result<Loaded> {
    let (v, warnings) = match file {
        Some(p) => parse_file(p)?,
        None => (Value::Object(Default::default()), vec![]),
    };
    let mut config: Config = serde_json::from_value(v).map_err(|e| {
        anyhow::anyhow!(
            "invalid config{}: {e}",
            file.map(|p| format!(" in {}", p.display())).unwrap_or_default()
        )
    })?;
    if let Some(p) = env_u64("AEGIS_PORT", 1, 65535)? {
        config.port = u16::try_from(p).unwrap_or(9100);
    }
    if let Some(h) = env_str("AEGIS_HOST") {
        config.host = h;
    }
    if let Some(u) = env_str("AEGIS_BASE_URL") {
        config.base_url = Some(u);
    }
    if let Some(t) = env_str("AEGIS_AUTH_TOKEN") {
        config.auth_token = Some(t);
    }
    if let Some(d) = env_str("AEGIS_STATE_DIR") {
        config.state_dir = Some(d);
    }
    if let Some(l) = env_str("AEGIS_LOG_LEVEL") {
        config.log_level = l;
    }
    if let Some(s) = env_str("AEGIS_SESSION_STORE") {
        config.session_store = s;
    }
    if let Some(t) = env_u64("AEGIS_ACP_PROMPT_TIMEOUT_MS", 1, 86_400_000)? {
        config.acp.request_timeout_ms = Some(t);
    }
    if let Some(b) = env_str("AEGIS_ACP_BIN") {
        config.acp.bin = Some(b);
    }
    if let Some(p) = env_str("AEGIS_ACP_PACKAGE") {
        config.acp.package = Some(p);
    }
    if let Some(a) = env_str("AEGIS_DEFAULT_AGENT") {
        config.default_agent = a;
    }
    if let Some(m) = env_str("AEGIS_DEFAULT_MODEL") {
        config.default_model = Some(m);
    }
    if let Some(m) = env_str("AEGIS_PERMISSION_MODE") {
        config.default_permission_mode = m;
    }
    if let Some(w) = env_str("AEGIS_ALLOWED_WORK_DIRS").or_else(|| env_str("AEGIS_ALLOWED_WORKDIRS")) {
        config.allowed_work_dirs = w
            .split([':', ';'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(n) = env_u64("AEGIS_MAX_SESSIONS", 1, 100_000)? {
        config.max_sessions = usize::try_from(n).unwrap_or(20);
    }
    if let Some(n) = env_u64("AEGIS_STALL_THRESHOLD_MS", 1000, 86_400_000)? {
        config.stall_threshold_ms = n;
    }
    if let Some(n) = env_u64("AEGIS_PERMISSION_TIMEOUT_MS", 0, 86_400_000)? {
        config.permission_timeout_ms = n;
    }
    if let Some(a) = env_str("AEGIS_PERMISSION_TIMEOUT_ACTION") {
        config.permission_timeout_action = a;
    }
    if let Some(b) = env_bool("AEGIS_RATE_LIMIT_AUTO_RESUME")? {
        config.rate_limit_auto_resume = b;
    }
    if let Some(b) = env_bool("AEGIS_AUTO_REATTACH")? {
        config.auto_reattach = b;
    }
    if let Some(b) = env_bool("AEGIS_DASHBOARD_ENABLED")? {
        config.dashboard_enabled = b;
    }
    if let Some(n) = env_u64("AEGIS_SSE_MAX_CONNECTIONS", 1, 100_000)? {
        config.sse.max_connections = usize::try_from(n).ok();
    }
    if let Some(n) = env_u64("AEGIS_SSE_MAX_PER_IP", 1, 100_000)? {
        config.sse.max_per_ip = usize::try_from(n).ok();
    }
    if let Some(n) = env_u64("AEGIS_SSE_HEARTBEAT_MS", 100, 3_600_000)? {
        config.sse.heartbeat_ms = Some(n);
    }
    validate(&config)?;
    Ok(Loaded {
        config,
        file: file.map(Path::to_path_buf),
        warnings,
    })
}

fn validate(c: &Config) -> Result<()> {
    if !["file", "postgres", "redis"].contains(&c.session_store.as_str()) {
        bail!("sessionStore '{}' must be file, postgres or redis", c.session_store);
    }
    if !["error", "warn", "info", "debug", "trace"].contains(&c.log_level.as_str()) {
        bail!("logLevel '{}' must be error, warn, info, debug or trace", c.log_level);
    }
    if !aegis_core::policy::MODES.contains(&c.default_permission_mode.as_str()) {
        bail!(
            "defaultPermissionMode '{}' must be one of {}",
            c.default_permission_mode,
            aegis_core::policy::MODES.join(", ")
        );
    }
    if !["reject", "approve", "cancel"].contains(&c.permission_timeout_action.as_str()) {
        bail!("permissionTimeoutAction must be reject, approve or cancel");
    }
    if c.port == 0 {
        bail!("port must be 1-65535");
    }
    Ok(())
}

impl Config {
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .as_deref()
            .map_or_else(|| home().join(".aegis"), expand)
    }

    /// The URL clients use (`0.0.0.0` → `127.0.0.1`, `::` → `[::1]`).
    pub fn client_base_url(&self) -> String {
        if let Some(u) = &self.base_url {
            return u.trim_end_matches('/').to_owned();
        }
        let host = match self.host.as_str() {
            "0.0.0.0" => "127.0.0.1".to_owned(),
            "::" => "[::1]".to_owned(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_owned(),
        };
        format!("http://{host}:{}", self.port)
    }

    pub fn is_loopback(&self) -> bool {
        matches!(self.host.as_str(), "127.0.0.1" | "::1" | "localhost") || self.host.starts_with("127.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("lsit", &["list", "kill"]), Some("list"));
        assert_eq!(suggest("allowedWorkdirs", KNOWN_KEYS), Some("allowedWorkDirs"));
        assert_eq!(suggest("zzzzzz", &["list"]), None);
    }

    #[test]
    fn yaml_file_with_substitution_and_unknown_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        std::fs::write(
            &p,
            "port: 9200\nallowedWorkDirs: [~/x]\nauthToken: ${AEGIS_TEST_UNSET_VAR:-}\nalowedWorkDirs: []\n",
        )
        .unwrap();
        let l = load(Some(&p)).unwrap();
        assert_eq!(l.config.port, 9200);
        assert_eq!(l.config.auth_token.as_deref(), Some(""));
        assert!(l.warnings[0].contains("did you mean 'allowedWorkDirs'"), "{:?}", l.warnings);
    }

    #[test]
    fn invalid_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        std::fs::write(&p, "defaultPermissionMode: yolo\n").unwrap();
        let e = load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("defaultPermissionMode"), "{e}");
        std::fs::write(&p, "port: [1]\n").unwrap();
        assert!(load(Some(&p)).is_err());
    }
}
