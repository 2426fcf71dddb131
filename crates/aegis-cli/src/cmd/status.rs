//! `ag status [<id>]`: the server (health, agents, sessions by status, pending approvals), or
//! one session (status and reason, agent/model/mode, workDir, pending permission, queue, usage,
//! last error).

use aegis_api_types::SessionInfo;
use serde_json::{Value, json};

use super::{CmdResult, Ctx, exit, print_json};
use crate::StatusArgs;
use crate::ui::{age, id8, usd};

pub async fn run(ctx: &Ctx, a: &StatusArgs) -> CmdResult {
    let client = ctx.client()?;
    let health = client.health().await.map_err(|e| ctx.fail(e))?;
    if let Some(arg) = &a.id {
        let id = ctx.resolve_session(&client, arg).await?;
        let info = client.get_session(&id).await.map_err(|e| ctx.fail(e))?;
        if ctx.json() {
            print_json(&info)?;
        } else {
            print_session(ctx, &info);
        }
        return Ok(exit::OK);
    }
    let stats = client.session_stats().await.map_err(|e| ctx.fail(e))?;
    let perms = client
        .permissions(Some("pending"), None)
        .await
        .map_err(|e| ctx.fail(e))?;
    if ctx.json() {
        print_json(&json!({
            "baseUrl": ctx.base_url,
            "health": health,
            "stats": stats,
            "pendingPermissions": perms.get("permissions").cloned().unwrap_or(Value::Array(vec![])),
        }))?;
        return Ok(exit::OK);
    }
    let s = &ctx.out;
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let status = str_of(&health, "status");
    let status_c = if status == "ok" {
        s.green(&status)
    } else {
        s.yellow(&status)
    };
    println!(
        "Server {}  {status_c}  version {}  up {}s",
        ctx.base_url,
        str_of(&health, "version"),
        health.get("uptime").and_then(Value::as_u64).unwrap_or(0)
    );
    if let Some(agents) = health.get("agents").and_then(Value::as_object) {
        println!("Agents:");
        for (name, v) in agents {
            let ok = v.get("available").and_then(Value::as_bool).unwrap_or(false);
            let detail = if ok {
                format!(
                    "{} ({})",
                    v.get("command").and_then(Value::as_str).unwrap_or(""),
                    v.get("source").and_then(Value::as_str).unwrap_or("")
                )
            } else {
                v.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unavailable")
                    .to_owned()
            };
            let mark = if ok {
                s.green("ok")
            } else {
                s.red("unavailable")
            };
            println!("  {name:<10} {mark}  {detail}");
        }
    }
    if let Some(store) = health.get("store") {
        println!(
            "Store: {} ({})",
            str_of(store, "type"),
            if store
                .get("healthy")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                "healthy"
            } else {
                "unhealthy"
            }
        );
    }
    let by = stats
        .get("byStatus")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!(
        "Sessions: {} active, {} created in total{}",
        stats.get("active").and_then(Value::as_u64).unwrap_or(0),
        stats
            .get("totalCreated")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({by})")
        }
    );
    let pending = perms
        .get("permissions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if pending.is_empty() {
        println!("Pending approvals: none");
    } else {
        println!("Pending approvals: {}", pending.len());
        for p in &pending {
            let sid = str_of(p, "sessionId");
            let title = p
                .pointer("/toolCall/title")
                .and_then(Value::as_str)
                .unwrap_or("?");
            println!(
                "  {} {}  {title}  → ag approve {}",
                id8(&sid),
                p.get("sessionName").and_then(Value::as_str).unwrap_or(""),
                id8(&sid)
            );
        }
    }
    Ok(exit::OK)
}

fn print_session(ctx: &Ctx, x: &SessionInfo) {
    let s = &ctx.out;
    println!("Session {} ({})", s.bold(&x.name), x.id);
    let reason = x
        .status_reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    println!(
        "  Status:  {}{reason} for {}  {}",
        s.status(&x.status),
        age(x.status_since),
        s.dim(&x.status_text)
    );
    println!(
        "  Agent:   {}  model {}  mode {}{}",
        x.agent,
        x.model.as_deref().unwrap_or("(agent default)"),
        x.permission_mode,
        if x.mode_emulated { " (emulated)" } else { "" }
    );
    println!("  WorkDir: {}", x.work_dir);
    println!(
        "  Created: {} ago, last activity {} ago",
        age(x.created_at),
        age(x.last_activity)
    );
    if x.paused {
        println!("  Paused:  yes (ag send queues; resume to continue)");
    }
    for p in &x.pending_permissions {
        let opts: Vec<String> = p
            .options
            .iter()
            .map(|o| {
                let v = serde_json::to_value(o).unwrap_or(Value::Null);
                format!(
                    "{} [{}]",
                    v.get("name").and_then(Value::as_str).unwrap_or("?"),
                    v.get("kind").and_then(Value::as_str).unwrap_or("?")
                )
            })
            .collect();
        println!(
            "  Pending: {} (request {})",
            s.yellow(&p.prompt),
            id8(&p.request_id)
        );
        println!("           options: {}", opts.join(", "));
        println!("           ag approve {0} / ag reject {0}", id8(&x.id));
    }
    if let Some(q) = &x.pending_question {
        println!(
            "  Question: {}",
            q.get("message").and_then(Value::as_str).unwrap_or("?")
        );
    }
    println!("  Queue:   {} prompt(s) waiting", x.queue.length);
    let u = serde_json::to_value(&x.usage).unwrap_or(Value::Null);
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cost = u.get("costUsd").and_then(Value::as_f64).unwrap_or(0.0);
    println!(
        "  Usage:   {} in / {} out tokens (cache {} written, {} read), {}",
        n("inputTokens"),
        n("outputTokens"),
        n("cacheCreationTokens"),
        n("cacheReadTokens"),
        usd(cost)
    );
    if let Some(e) = &x.last_error {
        println!("  Last error: {} {}", s.red(&e.code), e.message);
    }
    if let Some(e) = &x.exit {
        println!(
            "  Exit:    code {} signal {} reason {}",
            e.code.map_or("-".to_owned(), |c| c.to_string()),
            e.signal.map_or("-".to_owned(), |c| c.to_string()),
            e.reason.as_deref().unwrap_or("-")
        );
        for l in e.stderr_tail.iter().rev().take(5).rev() {
            println!("           {}", s.dim(l));
        }
    }
}
