//! Child processes: spawned with a parent-death signal, stopped by pid (SIGTERM, then SIGKILL),
//! measured through `/proc`, and any process re-parented to the bench (it is a child subreaper)
//! killed by pid at the end.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Pids of the children held by a live [`Proc`] (the orphan sweep leaves them alone).
static HELD: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn held() -> std::sync::MutexGuard<'static, Option<HashSet<u32>>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A child process that is stopped when dropped (also on error and on unwinding).
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    pid: u32,
    name: String,
}

impl Proc {
    /// Spawn `cmd`. The child gets SIGTERM if the spawning thread dies (call this from the main
    /// thread or a runtime worker, never from a short-lived blocking thread).
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Proc> {
        set_parent_death_signal(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child.id();
        held().get_or_insert_with(HashSet::new).insert(pid);
        Ok(Proc {
            child: Some(child),
            pid,
            name: name.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; always reaps the child.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            signal(self.pid, libc::SIGTERM);
            let deadline = Instant::now() + grace;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        eprintln!(
                            "  {} (pid {}) did not stop within {grace:?}; SIGKILL",
                            self.name, self.pid
                        );
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if let Some(set) = held().as_mut() {
            set.remove(&self.pid);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(20));
    }
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
            Ok(())
        });
    }
}

/// Send `sig` to one pid.
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Make this process the reaper of its orphaned descendants (the agents of a server that
/// exits are re-parented here, so the final sweep can find and kill them).
#[allow(unsafe_code)]
pub fn become_subreaper() -> bool {
    // SAFETY: prctl(2) with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

#[allow(unsafe_code)]
fn reap(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: waitpid(2) on a child of ours with a null status pointer (allowed).
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// `(state, ppid)` of a process from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Pids whose parent is `ppid`.
pub fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|(_, p)| p == ppid))
        .collect()
}

/// `VmRSS` of a process in KiB.
pub fn rss_kb(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let n = v.trim().trim_end_matches("kB").trim();
            return n
                .parse()
                .with_context(|| format!("bad VmRSS line {line:?}"));
        }
    }
    bail!("no VmRSS for process {pid}")
}

/// Kill (SIGKILL) and reap every child of this process that no live [`Proc`] holds, over a
/// few rounds (a killed orphan's own children are re-parented here in turn). Returns how many
/// were still running (exited orphans are only reaped).
pub fn sweep_orphans() -> usize {
    let me = std::process::id();
    let mut n = 0;
    for _ in 0..10 {
        let keep = held().clone().unwrap_or_default();
        let orphans: Vec<u32> = children_of(me)
            .into_iter()
            .filter(|p| !keep.contains(p))
            .collect();
        if orphans.is_empty() {
            break;
        }
        for pid in orphans {
            if alive(pid) {
                n += 1;
            }
            signal(pid, libc::SIGKILL);
            reap(pid);
        }
    }
    n
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(close) = s.rfind(')') else {
        return 0.0;
    };
    // After the command: state(3) ppid(4) … utime(14) stime(15); index 0 here is field 3.
    let fields: Vec<&str> = s[close + 1..].split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

#[allow(unsafe_code)]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf(3) with a constant name; no memory is involved.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}
