//! Helpers for tests that run the real Claude ACP adapter (`@agentclientprotocol/claude-agent-acp`,
//! pinned in `agents/package-lock.json`) against a [`FakeAnthropic`].
//!
//! Install the adapter first with `bash scripts/install-agents.sh`. Tests that need it must fail
//! loudly when it is missing ([`claude_adapter_bin`] returns an error saying how to install it);
//! they never skip.
//!
//! The environment recipe is the one proven in `testing.md` §1: start the agent process from an
//! empty environment and add only [`claude_test_env`].

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::fake_anthropic::FakeAnthropic;

/// Path of the adapter's launcher, relative to the repository root.
pub const CLAUDE_ADAPTER_REL_PATH: &str = "agents/node_modules/.bin/claude-agent-acp";

/// The settings written to `$CLAUDE_CONFIG_DIR/settings.json`: permission mode `default`, so
/// `session/request_permission` is actually sent (the adapter's `auto` mode approves everything
/// when its classifier cannot reach the real API).
pub const CLAUDE_TEST_SETTINGS: &str = r#"{"permissions":{"defaultMode":"default"}}"#;

/// The workspace root (the directory holding the top `Cargo.toml` and `agents/`).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // crates/aegis-testkit -> repository root
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest_dir);
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

/// The installed `claude-agent-acp` launcher, or an error telling how to install it.
pub fn claude_adapter_bin() -> anyhow::Result<PathBuf> {
    let bin = repo_root().join(CLAUDE_ADAPTER_REL_PATH);
    if !bin.exists() {
        bail!(
            "the Claude ACP adapter is not installed: {} is missing.\n\
             Run `bash scripts/install-agents.sh` from the repository root \
             (needs Node >= 20, npm and access to the npm registry).",
            bin.display()
        );
    }
    if !is_executable(&bin) {
        bail!(
            "{} is not executable; re-run `bash scripts/install-agents.sh --force`",
            bin.display()
        );
    }
    Ok(bin)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Find `program` on the current `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// A `PATH` holding the directories of `node`, `bash` and `git` (as found on the current `PATH`)
/// followed by the usual system directories.
pub fn claude_test_path() -> String {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for program in ["node", "bash", "git"] {
        if let Some(dir) = which(program).and_then(|p| p.parent().map(Path::to_path_buf))
            && !dirs.contains(&dir)
        {
            dirs.push(dir);
        }
    }
    for system in ["/usr/local/bin", "/usr/bin", "/bin"] {
        let dir = PathBuf::from(system);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    std::env::join_paths(dirs.iter().map(|d| d.as_os_str()))
        .map(|joined| joined.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())
}

fn create_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path)
        .unwrap_or_else(|e| panic!("cannot create test directory {}: {e}", path.display()));
    path.to_path_buf()
}

fn path_string(path: &Path) -> String {
    let os: &OsStr = path.as_os_str();
    os.to_str()
        .unwrap_or_else(|| panic!("test path is not UTF-8: {}", path.display()))
        .to_owned()
}

/// The complete environment for a Claude adapter process talking to `fake`, with all state under
/// `home` (a per-test temporary directory). Use it on a command whose environment was cleared
/// (`env_clear()` then `envs(..)`).
///
/// Creates under `home`: `.claude/` (`HOME/.claude` = `CLAUDE_CONFIG_DIR`, with
/// [`CLAUDE_TEST_SETTINGS`] in `settings.json`), `tmp/` (`CLAUDE_CODE_TMPDIR`) and `run/`
/// (`XDG_RUNTIME_DIR`, mode 0700). `HOME` is `home` itself.
///
/// # Panics
/// If the directories or the settings file cannot be created, or a path is not UTF-8.
pub fn claude_test_env(fake: &FakeAnthropic, home: &Path) -> BTreeMap<String, String> {
    let home = create_dir(home);
    let config_dir = create_dir(&home.join(".claude"));
    let tmp_dir = create_dir(&home.join("tmp"));
    let run_dir = create_dir(&home.join("run"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", run_dir.display()));
    }
    let settings = config_dir.join("settings.json");
    std::fs::write(&settings, CLAUDE_TEST_SETTINGS)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", settings.display()));

    [
        ("PATH", claude_test_path()),
        ("HOME", path_string(&home)),
        ("CLAUDE_CONFIG_DIR", path_string(&config_dir)),
        ("ANTHROPIC_BASE_URL", fake.base_url()),
        ("ANTHROPIC_API_KEY", "test-key".to_owned()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
        ("CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION", "false".to_owned()),
        ("CLAUDE_CODE_TMPDIR", path_string(&tmp_dir)),
        ("XDG_RUNTIME_DIR", path_string(&run_dir)),
        // This machine exports IS_SANDBOX=yes, which as root makes the CLI refuse every session.
        ("IS_SANDBOX", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Check that the adapter is installed and that `node` is on [`claude_test_path`]; returns the
/// adapter launcher or a readable error. Call at the start of a test for a clear failure.
pub fn check_claude_prerequisites() -> anyhow::Result<PathBuf> {
    let bin = claude_adapter_bin()?;
    let path = claude_test_path();
    let has_node = std::env::split_paths(OsStr::new(&path)).any(|d| is_executable(&d.join("node")));
    if !has_node {
        bail!("node is not on PATH ({path}); install Node.js >= 20");
    }
    Ok(bin)
}
