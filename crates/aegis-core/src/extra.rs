//! The rest of the session API: latency, tools, debug, lineage (spawn/fork/children), commands,
//! permission profiles, history, swarm, agent checks, verification, the MCP tool catalogue.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aegis_api_types::{CreateSessionRequest, PermissionProfile, SessionInfo};
use aegis_domain::SessionStatus;
use aegis_runtime::{AgentSpec, SessionOpen};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::actor::Cmd;
use crate::bus::now_ms;
use crate::{CoreError, CoreResult, ErrorKind, Principal, SessionService};

/// The 34 MCP tools: (name, category, role, description).
pub const MCP_TOOLS: [(&str, &str, &str, &str); 34] = [
    (
        "list_sessions",
        "session",
        "viewer",
        "List sessions visible to the caller",
    ),
    (
        "get_status",
        "session",
        "viewer",
        "A session with its health",
    ),
    (
        "get_transcript",
        "session",
        "viewer",
        "Recent transcript entries",
    ),
    (
        "send_message",
        "session",
        "operator",
        "Send a follow-up prompt (queued if busy)",
    ),
    (
        "create_session",
        "session",
        "operator",
        "Create (or reuse) a session",
    ),
    ("kill_session", "session", "admin", "Stop a session"),
    (
        "approve_permission",
        "session",
        "operator",
        "Approve the pending permission request",
    ),
    (
        "reject_permission",
        "session",
        "operator",
        "Reject the pending permission request",
    ),
    (
        "escape_session",
        "session",
        "operator",
        "Dismiss pending prompts, or interrupt",
    ),
    (
        "interrupt_session",
        "session",
        "operator",
        "Cancel the running turn",
    ),
    (
        "send_command",
        "session",
        "operator",
        "Send a slash command",
    ),
    (
        "server_health",
        "monitoring",
        "viewer",
        "Server status, version, sessions, agents",
    ),
    (
        "get_session_metrics",
        "monitoring",
        "viewer",
        "Counts, tokens and cost of a session",
    ),
    (
        "get_session_summary",
        "monitoring",
        "viewer",
        "Last messages and key facts",
    ),
    (
        "get_session_latency",
        "monitoring",
        "viewer",
        "Permission, first-update and turn latencies",
    ),
    (
        "get_swarm",
        "monitoring",
        "viewer",
        "Agent process snapshot",
    ),
    (
        "batch_create_sessions",
        "pipelines",
        "operator",
        "Create many sessions at once",
    ),
    (
        "create_pipeline",
        "pipelines",
        "operator",
        "Create a staged pipeline",
    ),
    (
        "list_pipelines",
        "pipelines",
        "viewer",
        "Pipelines and their stages",
    ),
    ("state_get", "state", "viewer", "Read a memory entry"),
    ("state_set", "state", "operator", "Write a memory entry"),
    ("state_delete", "state", "operator", "Delete a memory entry"),
    (
        "acp_send_prompt",
        "acp",
        "operator",
        "Prompt with an idempotency key",
    ),
    (
        "acp_respond_approval",
        "acp",
        "operator",
        "Answer a permission request",
    ),
    (
        "acp_pause_session",
        "acp",
        "operator",
        "Stop dequeuing prompts",
    ),
    (
        "acp_resume_session",
        "acp",
        "operator",
        "Unpause, reattach or retry",
    ),
    (
        "acp_cancel_session",
        "acp",
        "operator",
        "Cancel the turn and drop the queue",
    ),
    (
        "acp_claim_driver",
        "acp",
        "operator",
        "Take exclusive control of a session",
    ),
    ("acp_release_driver", "acp", "operator", "Give up control"),
    (
        "acp_transfer_driver",
        "acp",
        "operator",
        "Hand control to another principal",
    ),
    (
        "acp_get_events",
        "acp",
        "viewer",
        "Durable events of a session",
    ),
    ("acp_get_chat", "acp", "viewer", "The conversation only"),
    ("acp_get_timeline", "acp", "viewer", "Lifecycle events"),
    (
        "acp_get_terminal_debug",
        "acp",
        "operator",
        "Agent stderr tail and diagnostics",
    ),
];

/// Resident memory (bytes) of every process in a process group.
pub fn process_group_rss(pgid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 5 (pgrp) comes after the parenthesised command name.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|f| f.parse::<u32>().ok());
        if pgrp == Some(pgid) {
            total += process_rss(pid);
        }
    }
    total
}

/// VmRSS of one process in bytes.
pub fn process_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl SessionService {
    /// `GET …/latency`.
    pub fn latency(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        let s = h.snapshot();
        let c = &s.counters;
        let has = c.permission_response_ms.count
            + c.prompt_first_update_ms.count
            + c.turn_duration_ms.count
            > 0;
        Ok(json!({
            "sessionId": s.info.id,
            "realtime": has.then(|| json!({
                "permission_response_ms": c.permission_response_ms.last,
                "prompt_first_update_ms": c.prompt_first_update_ms.last,
                "turn_duration_ms": c.turn_duration_ms.last,
            })),
            "aggregated": has.then(|| json!({
                "permission_response_ms": c.permission_response_ms.summary(),
                "prompt_first_update_ms": c.prompt_first_update_ms.summary(),
                "turn_duration_ms": c.turn_duration_ms.summary(),
            })),
        }))
    }

    /// `GET …/tools`.
    pub fn session_tools(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        let s = h.snapshot();
        let tools: Vec<Value> = s
            .counters
            .tools
            .iter()
            .map(|(name, t)| {
                json!({"name": name, "kind": t.kind, "count": t.count, "errors": t.errors,
                       "firstUsedAt": t.first_used_at, "lastUsedAt": t.last_used_at})
            })
            .collect();
        let total: u64 = s.counters.tools.values().map(|t| t.count).sum();
        Ok(json!({"sessionId": s.info.id, "tools": tools, "totalCalls": total}))
    }

    /// `GET …/commands`.
    pub fn commands(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        Ok(json!({"commands": h.snapshot().available_commands}))
    }

    /// `GET …/children`.
    pub fn children(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        let parent = h.id.to_string();
        let mut kids: Vec<(u64, Value)> = self
            .visible(p)
            .into_iter()
            .filter_map(|c| {
                let s = c.snapshot();
                (s.info.parent_id.as_deref() == Some(parent.as_str())).then(|| {
                    (
                        s.info.created_at,
                        json!({"id": s.info.id, "name": s.info.name, "windowName": s.info.name,
                               "status": s.info.status, "createdAt": s.info.created_at}),
                    )
                })
            })
            .collect();
        kids.sort_by_key(|(t, _)| *t);
        Ok(json!({"children": kids.into_iter().map(|(_, v)| v).collect::<Vec<_>>()}))
    }

    /// `GET …/debug`.
    pub async fn debug(&self, p: &Principal, id: &str, max_lines: usize) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        let (tx, rx) = oneshot::channel();
        h.cmd
            .send(Cmd::Debug { reply: tx })
            .await
            .map_err(|_| CoreError::internal("the session actor stopped"))?;
        let mut v = rx
            .await
            .map_err(|_| CoreError::internal("the session actor stopped"))?;
        if let Some(tail) = v["stderrTail"].as_array_mut() {
            let skip = tail.len().saturating_sub(max_lines);
            tail.drain(..skip);
        }
        let cfg = self.config();
        if let Ok(r) = cfg.agents.resolve(&h.agent) {
            v["command"] = json!(r.command.display().to_string());
            v["args"] = json!(r.args);
        }
        Ok(v)
    }

    /// `GET/PUT …/permission-profile`.
    pub fn permission_profile(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        let s = h.snapshot();
        Ok(json!({"permissionProfile": s.permission_profile}))
    }

    pub async fn set_permission_profile(
        &self,
        p: &Principal,
        id: &str,
        profile: PermissionProfile,
    ) -> CoreResult<Value> {
        if profile.rules.len() > 100 {
            return Err(CoreError::validation("rules", "at most 100 rules"));
        }
        for (i, r) in profile.rules.iter().enumerate() {
            if let Some(c) = &r.constraints {
                if c.paths.as_ref().is_some_and(|p| p.len() > 50) {
                    return Err(CoreError::validation(
                        &format!("rules[{i}].constraints.paths"),
                        "at most 50 paths",
                    ));
                }
                if c.max_file_size.is_some_and(|m| m > 10_000_000) {
                    return Err(CoreError::validation(
                        &format!("rules[{i}].constraints.maxFileSize"),
                        "at most 10000000",
                    ));
                }
            }
        }
        let h = self.lookup(p, id)?;
        let (tx, rx) = oneshot::channel();
        h.cmd
            .send(Cmd::SetProfile { profile, reply: tx })
            .await
            .map_err(|_| CoreError::internal("the session actor stopped"))?;
        rx.await
            .map_err(|_| CoreError::internal("the session actor stopped"))?
    }

    /// `GET /v1/sessions/history`.
    #[allow(clippy::too_many_arguments)]
    pub fn history(
        &self,
        p: &Principal,
        page: u64,
        limit: u64,
        status: Option<&str>,
        owner: Option<&str>,
        name: Option<&str>,
        created_after: Option<u64>,
        created_before: Option<u64>,
        ascending: bool,
    ) -> CoreResult<Value> {
        let filter = match status {
            Some(s) => Some(aegis_domain::StatusFilter::parse(s).map_err(|e| {
                CoreError::validation("status", format!("unknown status or group '{}'", e.token))
            })?),
            None => None,
        };
        let mut rows: Vec<SessionInfo> = self
            .visible(p)
            .into_iter()
            .map(|h| h.snapshot().info.clone())
            .filter(|i| {
                filter
                    .as_ref()
                    .is_none_or(|f| i.status.parse().is_ok_and(|st| f.matches(st)))
                    && owner.is_none_or(|o| i.owner_key_id == o)
                    && name.is_none_or(|n| i.name.to_lowercase().contains(&n.to_lowercase()))
                    && created_after.is_none_or(|t| i.created_at >= t)
                    && created_before.is_none_or(|t| i.created_at <= t)
            })
            .collect();
        rows.sort_by_key(|i| i.created_at);
        if !ascending {
            rows.reverse();
        }
        let total = rows.len() as u64;
        let skip = usize::try_from((page.max(1) - 1).saturating_mul(limit)).unwrap_or(usize::MAX);
        let records: Vec<Value> = rows
            .iter()
            .skip(skip)
            .take(usize::try_from(limit).unwrap_or(50))
            .map(|i| {
                json!({"id": i.id, "name": i.name, "agent": i.agent, "ownerKeyId": i.owner_key_id,
                       "createdAt": i.created_at, "endedAt": i.ended_at, "lastSeenAt": i.last_activity,
                       "finalStatus": i.status})
            })
            .collect();
        Ok(
            json!({"records": records, "pagination": {"page": page, "limit": limit, "total": total,
                  "totalPages": total.div_ceil(limit.max(1))}}),
        )
    }

    /// `GET /v1/swarm`.
    pub fn swarm(&self, p: &Principal) -> Value {
        let mut total = 0;
        let processes: Vec<Value> = self
            .visible(p)
            .into_iter()
            .filter_map(|h| {
                let s = h.snapshot();
                let live = s.info.status.parse::<SessionStatus>().is_ok_and(SessionStatus::is_live);
                let pid = s.info.pid.filter(|_| live && s.agent_running)?;
                let rss = process_group_rss(pid);
                total += rss;
                Some(json!({"sessionId": s.info.id, "agent": s.info.agent, "status": s.info.status,
                            "pid": pid, "supervisorPid": Value::Null, "rssBytes": rss, "cpuPercent": Value::Null,
                            "startedAt": s.info.created_at}))
            })
            .collect();
        json!({"totalProcesses": processes.len(), "processes": processes, "totalRssBytes": total,
               "scannedAt": now_ms()})
    }

    /// `GET /v1/tools`: the MCP tool catalogue.
    pub fn tools_catalog(&self) -> Value {
        let tools: Vec<Value> = MCP_TOOLS
            .iter()
            .map(|(n, c, r, d)| json!({"name": n, "category": c, "description": d, "role": r}))
            .collect();
        let mut cats: Vec<&str> = MCP_TOOLS.iter().map(|t| t.1).collect();
        cats.dedup();
        json!({"tools": tools, "categories": cats, "totalTools": MCP_TOOLS.len()})
    }

    /// `POST …/spawn`: a child session with the parent's settings (never reused).
    pub async fn spawn_child(
        &self,
        p: &Principal,
        id: &str,
        mut req: CreateSessionRequest,
        fork: bool,
    ) -> CoreResult<SessionInfo> {
        let parent = self.get(p, id)?;
        if req.work_dir.is_empty() {
            req.work_dir = parent.work_dir.clone();
        }
        req.agent = req.agent.or(Some(parent.agent.clone()));
        req.model = req.model.or(parent.model.clone());
        req.permission_mode = req.permission_mode.or(Some(parent.permission_mode.clone()));
        req.parent_id = Some(parent.id.clone());
        req.reuse = Some(false);
        let (mut info, _) = self.create(p, req).await?;
        if let Ok(h) = self.lookup(p, id) {
            let _ = h
                .cmd
                .send(Cmd::AddChild {
                    child: info.id.clone(),
                })
                .await;
        }
        if fork {
            info.meta.insert("forkedFrom".into(), parent.id.clone());
        }
        Ok(info)
    }

    /// `POST /v1/agents/:name/check`: spawn, initialize, session/new in a scratch dir, close.
    pub async fn check_agent(&self, name: &str) -> CoreResult<Value> {
        let cfg = self.config();
        let resolved = match cfg.agents.resolve(name) {
            Ok(r) => r,
            Err(aegis_runtime::registry::ResolveError::Unknown { .. }) => {
                return Err(CoreError::not_found("agent"));
            }
            Err(e) => {
                return Ok(json!({"ok": false, "durationMs": 0, "error": e.to_string()}));
            }
        };
        let scratch: PathBuf = cfg.state_dir.join("run").join("agent-check").join(name);
        std::fs::create_dir_all(&scratch).map_err(|e| {
            CoreError::internal(format!("cannot create {}: {e}", scratch.display()))
        })?;
        let env = aegis_runtime::registry::agent_environment(
            cfg.server_env.clone(),
            &resolved,
            &cfg.default_session_env,
            &[("AEGIS_URL", cfg.base_url.clone())],
        );
        let spec = AgentSpec {
            name: name.to_owned(),
            command: resolved.command.clone(),
            args: resolved.args.clone(),
            env,
            cwd: scratch.clone(),
            request_timeout: Duration::from_millis(cfg.request_timeout_ms),
        };
        let started = Instant::now();
        let spawned = match self.shared().runtime.spawn(spec).await {
            Ok(s) => s,
            Err(aegis_runtime::RuntimeError::Timeout { method, timeout_ms }) => {
                return Err(CoreError::new(
                    ErrorKind::AgentTimeout,
                    format!("agent `{name}` did not answer `{method}` within {timeout_ms} ms"),
                ));
            }
            Err(e) => {
                return Ok(
                    json!({"ok": false, "durationMs": started.elapsed().as_millis() as u64, "error": e.to_string()}),
                );
            }
        };
        let h = spawned.handle;
        let info = h.info();
        let opened = h
            .open_session(SessionOpen::New, scratch.clone(), vec![])
            .await;
        let result = match &opened {
            Ok(s) => {
                let _ = h.close_session(&s.agent_session_id).await;
                json!({"ok": true, "modes": s.modes.iter().map(|m| m.id.clone()).collect::<Vec<_>>()})
            }
            Err(e) => json!({"ok": false, "error": e.to_string(), "stderrTail": h.stderr_tail()}),
        };
        h.shutdown(Duration::from_millis(500)).await;
        let mut v = result;
        v["durationMs"] = json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        v["agentInfo"] = json!({"name": info.name, "version": info.version, "protocolVersion": info.protocol_version});
        v["capabilities"] = json!(info.capabilities);
        v["authMethods"] = json!(info.auth_methods);
        Ok(v)
    }

    /// `POST …/verify`: run the verification commands in the session's workDir.
    pub async fn verify(
        &self,
        p: &Principal,
        id: &str,
        commands: &[(String, String, Vec<String>, u64)],
    ) -> CoreResult<(bool, Value)> {
        let info = self.get(p, id)?;
        let dir = Path::new(&info.work_dir);
        let mut cmds: Vec<(String, String, Vec<String>, u64)> = commands.to_vec();
        if cmds.is_empty() && dir.join("package.json").is_file() {
            cmds = vec![
                (
                    "typecheck".into(),
                    "npx".into(),
                    vec!["tsc".into(), "--noEmit".into()],
                    120_000,
                ),
                (
                    "build".into(),
                    "npm".into(),
                    vec!["run".into(), "build".into()],
                    120_000,
                ),
                ("test".into(), "npm".into(), vec!["test".into()], 120_000),
            ];
        }
        if cmds.is_empty() {
            return Err(CoreError::validation(
                "verification.commands",
                "no verification commands apply: configure verification.commands",
            ));
        }
        let total = Instant::now();
        let mut steps = Vec::new();
        let mut ok = true;
        for (name, cmd, args, timeout_ms) in cmds {
            let t = Instant::now();
            let run = tokio::process::Command::new(&cmd)
                .args(&args)
                .current_dir(dir)
                .kill_on_drop(true)
                .output();
            let step = match tokio::time::timeout(Duration::from_millis(timeout_ms), run).await {
                Ok(Ok(out)) => {
                    let good = out.status.success();
                    let text = String::from_utf8_lossy(&out.stdout);
                    let tail: String = text
                        .chars()
                        .rev()
                        .take(4000)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    json!({"name": name, "ok": good, "durationMs": t.elapsed().as_millis() as u64, "output": tail,
                           "error": (!good).then(|| String::from_utf8_lossy(&out.stderr).chars().take(4000).collect::<String>())})
                }
                Ok(Err(e)) => {
                    json!({"name": name, "ok": false, "durationMs": t.elapsed().as_millis() as u64, "error": e.to_string()})
                }
                Err(_) => {
                    json!({"name": name, "ok": false, "durationMs": timeout_ms, "error": format!("timed out after {timeout_ms} ms")})
                }
            };
            ok &= step["ok"] == true;
            steps.push(step);
        }
        let passed = steps.iter().filter(|s| s["ok"] == true).count();
        let n = steps.len();
        Ok((
            ok,
            json!({"ok": ok, "steps": steps, "totalDurationMs": total.elapsed().as_millis() as u64,
                       "summary": format!("{passed}/{n} steps passed")}),
        ))
    }
}
