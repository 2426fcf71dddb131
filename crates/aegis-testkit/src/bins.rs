//! Locating the workspace's binaries from tests of any crate.
//!
//! Cargo only exposes `CARGO_BIN_EXE_*` to tests of the crate that defines the binary, so tests
//! elsewhere find it next to their own executable (`target/<profile>/`). When it is missing
//! (e.g. `cargo test -p some-crate` alone), it is built once with the same cargo.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static BUILD: Mutex<()> = Mutex::new(());

/// `target/<profile>` of the running test executable.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let mut dir = exe
        .parent()
        .expect("test executable directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary, building its package if needed.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let path = target_profile_dir().join(bin);
    if path.exists() {
        return path;
    }
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", bin])
            .current_dir(crate::claude::repo_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building {bin} failed");
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The scripted ACP agent.
pub fn scripted_agent() -> PathBuf {
    workspace_bin("aegis-testkit", "aegis-scripted-agent")
}

/// The `ag` binary.
pub fn ag() -> PathBuf {
    workspace_bin("aegis-cli", "ag")
}
