//! `ag stop [--stop-sessions]`: `POST /v1/admin/shutdown`; when the API refuses or cannot be
//! reached and `<stateDir>/aegis.pid` names a live Aegis server, `SIGTERM` to that pid. Waits
//! up to 20 s for the server to go away.

use std::time::{Duration, Instant};

use super::{CmdResult, Ctx, Failure, exit};
use crate::StopArgs;
use crate::daemon;

const WAIT: Duration = Duration::from_secs(20);

pub async fn run(ctx: &Ctx, a: &StopArgs) -> CmdResult {
    let client = ctx.client()?;
    let state_dir = ctx.cfg.config.state_dir();
    let reachable = client.health().await.is_ok();
    let policy = if a.stop_sessions { "stop" } else { "detach" };
    let mut requested = false;
    if reachable {
        match client.shutdown(policy).await {
            Ok(_) => requested = true,
            Err(e)
                if matches!(e.status(), Some(401 | 403))
                    && daemon::read_pid(&state_dir).is_none() =>
            {
                return Err(ctx.fail(e));
            }
            Err(_) => {}
        }
    }
    let mut pid = None;
    if !requested {
        if let Some(p) = daemon::read_pid(&state_dir).filter(|p| daemon::alive(*p)) {
            if !daemon::looks_like_aegis(p) {
                return Err(Failure::new(
                    exit::FAILURE,
                    format!(
                        "{} names pid {p}, which is not an Aegis server; remove the stale file",
                        daemon::pid_path(&state_dir).display()
                    ),
                ));
            }
            daemon::terminate(p).map_err(|e| {
                Failure::new(
                    exit::FAILURE,
                    format!("cannot signal the server (pid {p}): {e}"),
                )
            })?;
            if a.stop_sessions && !ctx.json() {
                eprintln!(
                    "note: stopped by signal; sessions follow the server's shutdownSessions policy"
                );
            }
            pid = Some(p);
        } else if !reachable {
            println!("No Aegis server is running at {}", ctx.base_url);
            return Ok(exit::OK);
        } else {
            return Err(Failure::new(
                exit::FAILURE,
                format!(
                    "the server at {} refused to shut down and {} names no running server; stop it where it runs (Ctrl-C)",
                    ctx.base_url,
                    daemon::pid_path(&state_dir).display()
                ),
            ));
        }
    }
    let start = Instant::now();
    loop {
        let up = client.health().await.is_ok();
        let proc_alive = pid.is_some_and(daemon::alive);
        if !up && !proc_alive {
            break;
        }
        if start.elapsed() > WAIT {
            return Err(Failure::new(
                exit::FAILURE,
                format!("the server is still running after {} s", WAIT.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    match pid {
        Some(p) => println!("Stopped the Aegis server at {} (pid {p})", ctx.base_url),
        None => println!("Stopped the Aegis server at {}", ctx.base_url),
    }
    Ok(exit::OK)
}
