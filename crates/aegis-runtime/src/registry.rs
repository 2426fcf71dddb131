//! The agent registry: agents are named in configuration; `claude` is built in.
//!
//! `claude` resolves, in order: its configured `command`, `AEGIS_ACP_BIN`, `claude-agent-acp`
//! on `PATH`, the project-pinned adapter installed by `scripts/install-agents.sh`
//! (`agents/node_modules/.bin/claude-agent-acp` next to the Aegis installation), then
//! `npx --yes <pinned package>`. A missing Node.js or adapter is one clear error with the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The adapter release this project pins (also in `agents/package.json`).
pub const CLAUDE_ACP_PACKAGE: &str = "@agentclientprotocol/claude-agent-acp@0.101.0";
/// Name of the adapter executable.
pub const CLAUDE_ACP_BIN: &str = "claude-agent-acp";

/// One configured agent (`agents.<name>` in the config file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Executable; empty = built-in resolution (only meaningful for `claude`).
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Where a resolved command came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AgentSource {
    Config,
    #[serde(rename = "AEGIS_ACP_BIN")]
    AcpBin,
    Path,
    Project,
    Npx,
}

impl AgentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentSource::Config => "config",
            AgentSource::AcpBin => "AEGIS_ACP_BIN",
            AgentSource::Path => "path",
            AgentSource::Project => "project",
            AgentSource::Npx => "npx",
        }
    }
}

/// A resolved agent, ready to become an [`crate::AgentSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAgent {
    pub name: String,
    pub command: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub source: AgentSource,
}

/// Why an agent cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown agent `{name}`; configured agents: {known}")]
    Unknown { name: String, known: String },
    #[error("{0}")]
    Unavailable(String),
}

/// The configured agents plus what resolution needs from the environment.
#[derive(Debug, Clone)]
pub struct AgentRegistry {
    pub agents: BTreeMap<String, AgentConfig>,
    pub default_agent: String,
    /// `AEGIS_ACP_BIN` / `acp.bin`.
    pub acp_bin: Option<PathBuf>,
    /// `AEGIS_ACP_PACKAGE` / `acp.package`.
    pub acp_package: String,
    /// `PATH` used for lookups.
    pub path: Option<String>,
    /// Directories searched for `agents/node_modules/.bin/claude-agent-acp`.
    pub install_roots: Vec<PathBuf>,
}

impl AgentRegistry {
    /// A registry with the built-in `claude` agent plus `agents`.
    pub fn new(agents: BTreeMap<String, AgentConfig>) -> Self {
        let mut all = agents;
        all.entry("claude".to_owned()).or_default();
        AgentRegistry {
            agents: all,
            default_agent: "claude".to_owned(),
            acp_bin: None,
            acp_package: CLAUDE_ACP_PACKAGE.to_owned(),
            path: std::env::var("PATH").ok(),
            install_roots: default_install_roots(),
        }
    }

    /// Names of all configured agents.
    pub fn names(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// Resolve an agent by name.
    pub fn resolve(&self, name: &str) -> Result<ResolvedAgent, ResolveError> {
        let cfg = self.agents.get(name).ok_or_else(|| ResolveError::Unknown {
            name: name.to_owned(),
            known: self.names().join(", "),
        })?;
        let configured = cfg.command.as_deref().filter(|c| !c.trim().is_empty());
        let resolved = |command: PathBuf, args: Vec<String>, source| ResolvedAgent {
            name: name.to_owned(),
            command,
            args,
            env: cfg.env.clone(),
            source,
        };
        if let Some(cmd) = configured {
            let path = self.find_executable(cmd).ok_or_else(|| {
                ResolveError::Unavailable(format!(
                    "agent `{name}`: command `{cmd}` not found or not executable; fix agents.{name}.command in the config"
                ))
            })?;
            self.check_node(name, &path)?;
            return Ok(resolved(path, cfg.args.clone(), AgentSource::Config));
        }
        if name != "claude" {
            return Err(ResolveError::Unavailable(format!(
                "agent `{name}` has no command; set agents.{name}.command in the config"
            )));
        }
        if let Some(bin) = &self.acp_bin {
            if !is_executable(bin) {
                return Err(ResolveError::Unavailable(format!(
                    "AEGIS_ACP_BIN={} is not an executable file; point it at claude-agent-acp or unset it",
                    bin.display()
                )));
            }
            self.check_node(name, bin)?;
            return Ok(resolved(bin.clone(), cfg.args.clone(), AgentSource::AcpBin));
        }
        if let Some(p) = self.which(CLAUDE_ACP_BIN) {
            self.check_node(name, &p)?;
            return Ok(resolved(p, cfg.args.clone(), AgentSource::Path));
        }
        for root in &self.install_roots {
            let p = root
                .join("agents")
                .join("node_modules")
                .join(".bin")
                .join(CLAUDE_ACP_BIN);
            if is_executable(&p) {
                self.check_node(name, &p)?;
                return Ok(resolved(p, cfg.args.clone(), AgentSource::Project));
            }
        }
        if let Some(npx) = self.which("npx") {
            self.check_node(name, &npx)?;
            let mut args = vec!["--yes".to_owned(), self.acp_package.clone()];
            args.extend(cfg.args.iter().cloned());
            return Ok(resolved(npx, args, AgentSource::Npx));
        }
        Err(ResolveError::Unavailable(
            "the Claude agent adapter is not installed and Node.js was not found: install Node.js >= 20, \
             then run `scripts/install-agents.sh` (or `npm install -g @agentclientprotocol/claude-agent-acp`), \
             or set AEGIS_ACP_BIN to the adapter executable"
                .to_owned(),
        ))
    }

    fn check_node(&self, name: &str, path: &Path) -> Result<(), ResolveError> {
        if needs_node(path) && self.which("node").is_none() {
            return Err(ResolveError::Unavailable(format!(
                "agent `{name}` ({}) is a Node.js program but `node` is not on PATH: install Node.js >= 20",
                path.display()
            )));
        }
        Ok(())
    }

    fn find_executable(&self, cmd: &str) -> Option<PathBuf> {
        if cmd.contains('/') {
            let p = PathBuf::from(cmd);
            return is_executable(&p).then_some(p);
        }
        self.which(cmd)
    }

    /// Look a program up on the registry's PATH.
    pub fn which(&self, program: &str) -> Option<PathBuf> {
        let path = self.path.as_deref()?;
        std::env::split_paths(path)
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p))
    }
}

fn default_install_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    roots
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// True for scripts whose shebang runs node (npm bin shims are such scripts).
fn needs_node(path: &Path) -> bool {
    let Ok(target) = std::fs::canonicalize(path) else {
        return false;
    };
    // Only the shebang matters: read the first 128 bytes, never the whole (possibly large
    // native) executable — this runs on every health check and session create.
    let mut head = [0u8; 128];
    let n = match std::fs::File::open(&target) {
        Ok(mut f) => std::io::Read::read(&mut f, &mut head).unwrap_or(0),
        Err(_) => return false,
    };
    let head = &head[..n];
    head.starts_with(b"#!") && String::from_utf8_lossy(head).contains("node")
}

/// Variables of the server's environment an agent may see.
fn passes_through(key: &str) -> bool {
    matches!(
        key,
        "PATH"
            | "HOME"
            | "USER"
            | "LOGNAME"
            | "LANG"
            | "LC_ALL"
            | "TZ"
            | "TMPDIR"
            | "SHELL"
            | "API_TIMEOUT_MS"
            | "IS_SANDBOX"
    ) || key.starts_with("ANTHROPIC_")
        || key.starts_with("CLAUDE_")
        || key.starts_with("LC_")
}

/// Build the agent's complete environment: the allowed part of the server's environment,
/// then the agent's configured env, then the session's env (later wins), then Aegis' own.
pub fn agent_environment(
    server_env: impl IntoIterator<Item = (String, String)>,
    agent: &ResolvedAgent,
    session_env: &BTreeMap<String, String>,
    aegis_vars: &[(&str, String)],
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = server_env
        .into_iter()
        .filter(|(k, _)| passes_through(k))
        .collect();
    for (k, v) in agent.env.iter().chain(session_env.iter()) {
        env.insert(k.clone(), v.clone());
    }
    // IS_SANDBOX: only ever `1` or absent; an inherited `yes` makes Claude refuse sessions as root.
    if env
        .get("IS_SANDBOX")
        .is_some_and(|v| !v.is_empty() && v != "1")
    {
        env.insert("IS_SANDBOX".into(), "1".into());
    }
    env.insert("NO_COLOR".into(), "1".into());
    for (k, v) in aegis_vars {
        env.insert((*k).to_owned(), v.clone());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exe(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn registry(path: &Path) -> AgentRegistry {
        let mut r = AgentRegistry::new(BTreeMap::new());
        r.path = Some(path.display().to_string());
        r.install_roots = vec![];
        r
    }

    #[test]
    fn resolution_order_for_claude() {
        let dir = std::env::temp_dir().join(format!("aegis-reg-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let mut r = registry(&bin);
        // Nothing installed: a clear error naming the fix.
        let err = r.resolve("claude").unwrap_err().to_string();
        assert!(
            err.contains("Node.js") && err.contains("AEGIS_ACP_BIN"),
            "{err}"
        );
        // npx present → npx fallback with the pinned package.
        exe(&bin, "npx", "#!/bin/sh\n");
        let res = r.resolve("claude").unwrap();
        assert_eq!(res.source, AgentSource::Npx);
        assert!(res.args.contains(&CLAUDE_ACP_PACKAGE.to_owned()));
        // On PATH wins over npx.
        exe(&bin, CLAUDE_ACP_BIN, "#!/bin/sh\n");
        assert_eq!(r.resolve("claude").unwrap().source, AgentSource::Path);
        // AEGIS_ACP_BIN wins over PATH.
        let custom = exe(&dir, "my-adapter", "#!/bin/sh\n");
        r.acp_bin = Some(custom.clone());
        let res = r.resolve("claude").unwrap();
        assert_eq!((res.source, res.command), (AgentSource::AcpBin, custom));
        // A Node script without node on PATH: the error says to install Node.js.
        let js = exe(&dir, "node-adapter", "#!/usr/bin/env node\n");
        r.acp_bin = Some(js);
        let err = r.resolve("claude").unwrap_err().to_string();
        assert!(err.contains("install Node.js"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_agent_names_the_known_ones() {
        let r = registry(Path::new("/nonexistent"));
        let err = r.resolve("codex").unwrap_err();
        assert!(matches!(err, ResolveError::Unknown { .. }));
        assert!(err.to_string().contains("claude"));
    }

    #[test]
    fn environment_is_controlled_and_sandbox_normalised() {
        let agent = ResolvedAgent {
            name: "claude".into(),
            command: "/bin/true".into(),
            args: vec![],
            env: BTreeMap::from([("CODEX_HOME".to_owned(), "/x".to_owned())]),
            source: AgentSource::Config,
        };
        let server = vec![
            ("PATH".to_owned(), "/usr/bin".to_owned()),
            ("AEGIS_AUTH_TOKEN".to_owned(), "secret".to_owned()),
            (
                "ANTHROPIC_BASE_URL".to_owned(),
                "http://127.0.0.1:1".to_owned(),
            ),
            ("IS_SANDBOX".to_owned(), "yes".to_owned()),
            ("RANDOM_VAR".to_owned(), "x".to_owned()),
        ];
        let session = BTreeMap::from([("IS_SANDBOX".to_owned(), "yes".to_owned())]);
        let env = agent_environment(
            server,
            &agent,
            &session,
            &[("AEGIS_SESSION_ID", "s1".into())],
        );
        assert_eq!(env.get("PATH").map(String::as_str), Some("/usr/bin"));
        assert!(!env.contains_key("AEGIS_AUTH_TOKEN"));
        assert!(!env.contains_key("RANDOM_VAR"));
        assert_eq!(env.get("IS_SANDBOX").map(String::as_str), Some("1"));
        assert_eq!(env.get("CODEX_HOME").map(String::as_str), Some("/x"));
        assert_eq!(env.get("AEGIS_SESSION_ID").map(String::as_str), Some("s1"));
        assert_eq!(env.get("NO_COLOR").map(String::as_str), Some("1"));
    }
}
