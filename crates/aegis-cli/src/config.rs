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
    "port",
    "host",
    "baseUrl",
    "authToken",
    "clientAuthToken",
    "stateDir",
    "logLevel",
    "logFormat",
    "sessionStore",
    "stateStore",
    "postgres",
    "postgresUrl",
    "redis",
    "strictRbac",
    "acp",
    "defaultAgent",
    "agents",
    "defaultModel",
    "defaultPermissionMode",
    "defaultPermissionProfile",
    "defaultSessionName",
    "defaultSessionEnv",
    "envDenylist",
    "envAdminAllowlist",
    "allowedWorkDirs",
    "tenantWorkdirs",
    "defaultTenantId",
    "enforceSessionOwnership",
    "maxSessions",
    "maxQueuedPrompts",
    "stallThresholdMs",
    "turnTimeoutMs",
    "permissionTimeoutMs",
    "permissionTimeoutAction",
    "rateLimitAutoResume",
    "rateLimitRetryMs",
    "idleTimeoutMs",
    "maxSessionAgeMs",
    "autoReattach",
    "shutdownSessions",
    "shutdownGraceMs",
    "retention",
    "rateLimit",
    "keyRotationGraceSeconds",
    "sse",
    "oidc",
    "authDir",
    "dashboardEnabled",
    "corsOrigins",
    "trustProxy",
    "metricsToken",
    "memoryBridge",
    "pipelineStageTimeoutMs",
    "verification",
    "screenshot",
    "pricing",
    "webhooks",
    "alerting",
    "slack",
    "email",
    "telegram",
    "otel",
    "audit",
];

/// The parsed configuration (only what this build uses; other known keys are accepted).
/// `Debug` is hand-written in `auth_config.rs`: it never shows a token or a store URL.
#[derive(Clone, Deserialize)]
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
    #[serde(default)]
    pub postgres: PostgresSection,
    /// Legacy alias of `postgres.url`.
    #[serde(default)]
    pub postgres_url: Option<String>,
    #[serde(default)]
    pub redis: RedisSection,
    #[serde(default)]
    pub memory_bridge: MemoryBridgeSection,
    #[serde(default)]
    pub pipeline_stage_timeout_ms: u64,
    /// strictRbac, rateLimit.*, corsOrigins, trustProxy, enforceSessionOwnership,
    /// defaultTenantId, audit.secret, keyRotationGraceSeconds (auth_config.rs).
    #[serde(flatten)]
    pub security: crate::auth_config::SecurityConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSection {
    pub url: Option<String>,
    pub table: Option<String>,
    pub schema: Option<String>,
    pub pool_max: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryBridgeSection {
    #[serde(default = "d_true")]
    pub enabled: bool,
    #[serde(default = "d_memory_max")]
    pub max_entries_per_tenant: usize,
}

impl Default for MemoryBridgeSection {
    fn default() -> Self {
        MemoryBridgeSection {
            enabled: true,
            max_entries_per_tenant: d_memory_max(),
        }
    }
}

fn d_memory_max() -> usize {
    10_000
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisSection {
    pub url: Option<String>,
    pub key_prefix: Option<String>,
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
    search_order().into_iter().find(|p| p.is_file())
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
                    (Err(_), None) => bail!(
                        "{path}: environment variable {name} is not set (use ${{{name}:-default}})"
                    ),
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

/// Edit distance where an adjacent transposition counts as one edit (optimal string
/// alignment), so `lsit` is 1 away from `list`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
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
            file.map(|p| format!(" in {}", p.display()))
                .unwrap_or_default()
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
    if config.postgres.url.is_none() {
        config.postgres.url = config.postgres_url.clone();
    }
    if let Some(u) = env_str("AEGIS_POSTGRES_URL") {
        config.postgres.url = Some(u);
    }
    if let Some(t) = env_str("AEGIS_PG_TABLE") {
        config.postgres.table = Some(t);
    }
    if let Some(t) = env_str("AEGIS_PG_SCHEMA") {
        config.postgres.schema = Some(t);
    }
    if let Some(n) = env_u64("AEGIS_PG_POOL_MAX", 1, 100)? {
        config.postgres.pool_max = u32::try_from(n).ok();
    }
    if let Some(b) = env_bool("AEGIS_MEMORY_ENABLED")? {
        config.memory_bridge.enabled = b;
    }
    if let Some(n) = env_u64("AEGIS_PIPELINE_STAGE_TIMEOUT_MS", 0, 86_400_000)? {
        config.pipeline_stage_timeout_ms = n;
    }
    if let Some(u) = env_str("AEGIS_REDIS_URL") {
        config.redis.url = Some(u);
    }
    if let Some(p) = env_str("AEGIS_REDIS_KEY_PREFIX") {
        config.redis.key_prefix = Some(p);
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
    if let Some(w) =
        env_str("AEGIS_ALLOWED_WORK_DIRS").or_else(|| env_str("AEGIS_ALLOWED_WORKDIRS"))
    {
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
    config.security.apply_env()?;
    validate(&config)?;
    Ok(Loaded {
        config,
        file: file.map(Path::to_path_buf),
        warnings,
    })
}

fn validate(c: &Config) -> Result<()> {
    if !["file", "postgres", "redis"].contains(&c.session_store.as_str()) {
        bail!(
            "sessionStore '{}' must be file, postgres or redis",
            c.session_store
        );
    }
    if !["error", "warn", "info", "debug", "trace"].contains(&c.log_level.as_str()) {
        bail!(
            "logLevel '{}' must be error, warn, info, debug or trace",
            c.log_level
        );
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
        matches!(self.host.as_str(), "127.0.0.1" | "::1" | "localhost")
            || self.host.starts_with("127.")
    }
}

// ---------------------------------------------------------------------------------------------
// Client side: the config as seen by client commands, server URL and credential resolution,
// bootstrap and `ag init` writing.
// ---------------------------------------------------------------------------------------------

/// The search order of config files (§2.1), relative paths against the current directory.
pub fn search_order() -> Vec<PathBuf> {
    let h = home();
    vec![
        PathBuf::from(".aegis/config.yaml"),
        PathBuf::from(".aegis/config.yml"),
        PathBuf::from("aegis.config.json"),
        h.join(".aegis/config.yaml"),
        h.join(".aegis/config.yml"),
        h.join(".aegis/config.json"),
    ]
}

/// Where `ag run` bootstraps a config when none exists anywhere: `~/.aegis/config.yaml`.
pub fn bootstrap_path() -> PathBuf {
    home().join(".aegis").join("config.yaml")
}

impl Config {
    /// Built-in defaults only (no file, no environment).
    pub fn defaults() -> Config {
        // Every field has a serde default, so an empty object always deserialises.
        serde_json::from_value(Value::Object(Default::default()))
            .expect("every Config field has a default")
    }
}

/// The configuration as a client command sees it: a file that does not load is a warning
/// (cli-mcp-config §2.1), never fatal.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub config: Config,
    /// The file in use (`None` = defaults + environment).
    pub file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

/// Load the configuration for a client command.
pub fn load_for_client(explicit: Option<&Path>) -> ClientConfig {
    let mut warnings = Vec::new();
    let file = find_config_file(explicit);
    if let Some(f) = &file
        && !f.is_file()
    {
        warnings.push(format!(
            "config file {} does not exist; using defaults",
            f.display()
        ));
        return match load(None) {
            Ok(l) => ClientConfig {
                config: l.config,
                file: None,
                warnings,
            },
            Err(e) => {
                warnings.push(format!("{e:#}; using built-in defaults"));
                ClientConfig {
                    config: Config::defaults(),
                    file: None,
                    warnings,
                }
            }
        };
    }
    match load(file.as_deref()) {
        Ok(l) => ClientConfig {
            config: l.config,
            file: l.file,
            warnings: l.warnings,
        },
        Err(e) => {
            warnings.push(format!("{e:#}; continuing without it"));
            let config = load(None).map(|l| l.config).unwrap_or_else(|e2| {
                warnings.push(format!("{e2:#}; using built-in defaults"));
                Config::defaults()
            });
            ClientConfig {
                config,
                file: None,
                warnings,
            }
        }
    }
}

/// Where the credential a client sends comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    EnvAuthToken,
    EnvToken,
    ClientAuthToken,
    AuthToken,
}

impl TokenSource {
    pub fn describe(self) -> &'static str {
        match self {
            TokenSource::EnvAuthToken => "AEGIS_AUTH_TOKEN",
            TokenSource::EnvToken => "AEGIS_TOKEN",
            TokenSource::ClientAuthToken => "clientAuthToken in the config file",
            TokenSource::AuthToken => "authToken in the config file",
        }
    }
}

/// The client credential (§1.2): `AEGIS_AUTH_TOKEN` > `AEGIS_TOKEN` > config `clientAuthToken`
/// > config `authToken` (file value; the env var was already taken first). Empty = none.
pub fn client_token(c: &Config) -> Option<(String, TokenSource)> {
    if let Some(t) = env_str("AEGIS_AUTH_TOKEN") {
        return Some((t, TokenSource::EnvAuthToken));
    }
    if let Some(t) = env_str("AEGIS_TOKEN") {
        return Some((t, TokenSource::EnvToken));
    }
    if let Some(t) = c.client_auth_token.as_ref().filter(|t| !t.is_empty()) {
        return Some((t.clone(), TokenSource::ClientAuthToken));
    }
    c.auth_token
        .as_ref()
        .filter(|t| !t.is_empty())
        .map(|t| (t.clone(), TokenSource::AuthToken))
}

/// The server URL for client commands (§1.2): `--url` > `--port` > `AEGIS_BASE_URL` > config
/// `baseUrl` > `http://<host>:<port>` (`AEGIS_BASE_URL`/`AEGIS_PORT` are already in `c`).
pub fn client_url(c: &Config, url_flag: Option<&str>, port_flag: Option<u16>) -> String {
    if let Some(u) = url_flag {
        return u.trim().trim_end_matches('/').to_owned();
    }
    if let Some(p) = port_flag {
        return format!("http://127.0.0.1:{p}");
    }
    c.client_base_url()
}

/// True for URLs whose host is a loopback address (a server `ag run` may start).
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or("");
    let host = if let Some(r) = rest.strip_prefix('[') {
        r.split(']').next().unwrap_or("")
    } else {
        rest.rsplit_once(':').map_or(rest, |(h, _)| h)
    };
    matches!(host, "localhost" | "::1") || host.starts_with("127.")
}

/// The port of an `http://host:port` URL (default 80/443 by scheme).
pub fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let port = if let Some(r) = authority.strip_prefix('[') {
        r.split_once("]:").map(|(_, p)| p)
    } else {
        authority.rsplit_once(':').map(|(_, p)| p)
    };
    match port {
        Some(p) => p.parse().ok(),
        None => Some(if scheme == "https" { 443 } else { 80 }),
    }
}

/// Write a new private file (mode 0600, parent directories 0700). Fails if it exists unless
/// `replace`.
pub fn write_private(path: &Path, contents: &str, replace: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if replace {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Values written by `ag init` / the `ag run` bootstrap.
#[derive(Debug, Clone, Default)]
pub struct InitValues {
    pub port: u16,
    pub host: String,
    pub dashboard: bool,
    pub model: Option<String>,
    pub name: Option<String>,
    pub token: Option<String>,
}

fn yaml_str(s: &str) -> String {
    // JSON strings are valid YAML double-quoted scalars.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The YAML text of a new config file.
pub fn render_config(v: &InitValues) -> String {
    let mut out = String::from(
        "# Aegis configuration (cli-mcp-config §2). Flags > environment > this file > defaults.\n",
    );
    out.push_str(&format!("port: {}\n", v.port));
    out.push_str(&format!("host: {}\n", yaml_str(&v.host)));
    out.push_str(&format!("dashboardEnabled: {}\n", v.dashboard));
    if let Some(m) = &v.model {
        out.push_str(&format!("defaultModel: {}\n", yaml_str(m)));
    }
    if let Some(n) = &v.name {
        out.push_str(&format!("defaultSessionName: {}\n", yaml_str(n)));
    }
    if let Some(t) = &v.token {
        out.push_str(&format!("authToken: {}\n", yaml_str(t)));
    }
    out
}

/// 64 random lowercase hex characters (a master token).
pub fn random_token() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("lsit", &["list", "kill"]), Some("list"));
        assert_eq!(suggest("lsit", &["init", "list"]), Some("list"));
        assert_eq!(
            suggest("allowedWorkdirs", KNOWN_KEYS),
            Some("allowedWorkDirs")
        );
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
        assert!(
            l.warnings[0].contains("did you mean 'allowedWorkDirs'"),
            "{:?}",
            l.warnings
        );
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
