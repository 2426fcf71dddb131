//! A background server for `ag run` / `ag stop`: `ag serve` started as a detached child (own
//! session, no terminal, output appended to `<stateDir>/logs/server.log`; `serve` writes its pid
//! to `<stateDir>/aegis.pid`), and signalling that pid.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `<stateDir>/logs/server.log`.
pub fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("logs").join("server.log")
}

/// `<stateDir>/aegis.pid`.
pub fn pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join("aegis.pid")
}

/// Start `<this executable> serve --config <file> --port <port>` detached, with `cwd` as its
/// working directory (so it is an allowed root for sessions).
pub fn start(
    config_file: Option<&Path>,
    port: u16,
    cwd: &Path,
    state_dir: &Path,
) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let log = log_path(state_dir);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve").arg("--port").arg(port.to_string());
    if let Some(f) = config_file {
        cmd.arg("--config").arg(f);
    }
    cmd.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        // Never inherit a colour/tty decision from the terminal `ag run` was started in.
        .env("NO_COLOR", "1");
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only calls `setsid`, which
    // is async-signal-safe; it allocates nothing and touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// The pid recorded in `<stateDir>/aegis.pid`.
pub fn read_pid(state_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_path(state_dir))
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 1)
}

/// True when a process with this pid exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    #[allow(unsafe_code)]
    // SAFETY: `kill` with signal 0 only checks for existence/permission; no memory is involved.
    let r = unsafe { libc::kill(pid, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z"),
        Err(_) => true,
    }
}

/// True when `pid` looks like an Aegis server (`ag`/`aegis` with `serve`, or our own binary),
/// so a stale pid file never makes us signal an unrelated process. Where `/proc` is missing the
/// check cannot be made and the pid is trusted.
pub fn looks_like_aegis(pid: i32) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return !Path::new("/proc/self").exists();
    };
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let exe = args
        .first()
        .and_then(|a| {
            Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    matches!(exe.as_str(), "ag" | "aegis") || exe.starts_with("aegis")
}

/// Send `SIGTERM` to `pid`.
pub fn terminate(pid: i32) -> std::io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: `kill` has no memory-safety preconditions.
    let r = unsafe { libc::kill(pid, libc::SIGTERM) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The last `n` lines of the server log.
pub fn log_tail(state_dir: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(log_path(state_dir)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}
