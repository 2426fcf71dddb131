//! Agent process supervision: spawning in its own process group, stderr capture, group signals.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use aegis_runtime::{AgentSpec, RuntimeError};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

/// How many stderr lines are kept in memory (the API shows at most 50).
pub const STDERR_TAIL_LINES: usize = 200;

/// A spawned agent process with its pipes taken apart.
pub struct AgentProcess {
    pub child: Child,
    pub pid: u32,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// Spawn the agent: explicit cwd, complete environment (nothing inherited), own process group.
pub fn spawn(spec: &AgentSpec) -> Result<AgentProcess, RuntimeError> {
    let spawn_err = |message: String| RuntimeError::Spawn {
        command: spec.command.display().to_string(),
        message,
    };
    if !spec.cwd.is_dir() {
        return Err(spawn_err(format!(
            "working directory {} does not exist",
            spec.cwd.display()
        )));
    }
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (not found: check the agent's `command` in the config, or AEGIS_ACP_BIN)"
        } else {
            ""
        };
        spawn_err(format!("{e}{hint}"))
    })?;
    let pid = child
        .id()
        .ok_or_else(|| spawn_err("process exited immediately".into()))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(spawn_err("could not capture the agent's stdio".into()));
    };
    Ok(AgentProcess {
        child,
        pid,
        stdin,
        stdout,
        stderr,
    })
}

/// Bounded tail of the agent's stderr, shared between the reader task and the handle.
#[derive(Clone, Default)]
pub struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl StderrTail {
    pub fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == STDERR_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `n` lines, secrets redacted.
    pub fn last(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).map(|l| redact(l)).collect()
    }
}

/// Read stderr to its end: every line goes to the log and into the bounded tail.
pub async fn pump_stderr(stderr: ChildStderr, tail: StderrTail, agent: String, pid: u32) {
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                tracing::debug!(target: "aegis::agent_stderr", agent = %agent, pid, "{}", redact(&line));
                tail.push(line);
            }
            Ok(None) => break,
            Err(e) => {
                // Invalid UTF-8 or a read error: keep a marker instead of failing.
                tail.push(format!("[stderr unreadable: {e}]"));
                break;
            }
        }
    }
}

/// Mask things that look like credentials in a log line: known token shapes, `key=value`
/// secrets, and the word after `Bearer` or after a header named like a credential.
pub fn redact(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut out = String::with_capacity(line.len());
    let mut mask_next = false;
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lower = word.to_ascii_lowercase();
        let trimmed = lower.trim_matches(|c: char| c == '"' || c == '\'' || c == ',');
        let scheme = trimmed == "bearer" || trimmed == "basic";
        if mask_next && scheme {
            // `Authorization: Bearer <token>`: keep the scheme, mask what follows.
            out.push_str(word);
            continue;
        }
        if (mask_next && !word.is_empty()) || looks_secret(word) {
            out.push_str("[REDACTED]");
            mask_next = false;
            continue;
        }
        out.push_str(word);
        mask_next = scheme
            || [
                "x-api-key:",
                "api-key:",
                "authorization:",
                "apikey:",
                "token:",
                "password:",
                "secret:",
            ]
            .contains(&trimmed);
    }
    out
}

fn looks_secret(word: &str) -> bool {
    let w = word.trim_matches(|c: char| c == '"' || c == '\'' || c == ',');
    let lower = w.to_ascii_lowercase();
    lower.starts_with("sk-")
        || lower.starts_with("aegis_")
        || lower.starts_with("sse_")
        || ["api_key=", "apikey=", "token=", "secret=", "password="]
            .iter()
            .any(|k| lower.contains(k))
}

/// Send a signal to the whole process group led by `pgid`.
pub fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg has no memory-safety preconditions; a stale group id only yields ESRCH.
    #[allow(unsafe_code)]
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Decode an exit status into (code, signal).
pub fn decode_status(status: std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    (status.code(), status.signal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_tokens() {
        let line = "using key sk-ant-123456 and aegis_abc_def token=xyz ok";
        let r = redact(line);
        assert!(!r.contains("sk-ant-123456"));
        assert!(!r.contains("aegis_abc_def"));
        assert!(!r.contains("xyz"));
        assert!(r.ends_with(" ok"));
        let r = redact("Authorization: Bearer abc123 x-api-key: test-key done");
        assert!(!r.contains("abc123") && !r.contains("test-key"), "{r}");
        assert!(r.ends_with(" done"));
    }

    #[test]
    fn tail_is_bounded() {
        let t = StderrTail::default();
        for i in 0..(STDERR_TAIL_LINES + 10) {
            t.push(format!("line {i}"));
        }
        let last = t.last(50);
        assert_eq!(last.len(), 50);
        assert_eq!(
            last.last().map(String::as_str),
            Some(format!("line {}", STDERR_TAIL_LINES + 9).as_str())
        );
    }
}
