//! Session actions: `ag approve`, `ag reject`, `ag interrupt`, `ag kill`.

use aegis_api_types::{ApproveRequest, DecisionResponse, RejectRequest, SessionInfo};
use serde_json::Value;

use super::{CmdResult, Ctx, exit, print_json};
use crate::{ApproveArgs, IdArg, RejectArgs};

/// The title of the request a decision targets (`request` or the oldest pending).
fn target_title(info: &SessionInfo, request: Option<&str>) -> Option<String> {
    info.pending_permissions
        .iter()
        .find(|p| request.is_none_or(|r| p.request_id == r))
        .map(|p| {
            if p.tool_call.title.is_empty() {
                p.prompt.clone()
            } else {
                p.tool_call.title.clone()
            }
        })
}

fn print_decision(ctx: &Ctx, verb: &str, title: Option<String>, r: &DecisionResponse) -> CmdResult {
    if ctx.json() {
        print_json(r)?;
    } else {
        println!(
            "{verb}: {} — option {} ({})",
            title.unwrap_or_else(|| format!("request {}", r.request_id)),
            r.option_id.as_deref().unwrap_or("-"),
            r.option_kind.as_deref().unwrap_or("-")
        );
    }
    Ok(exit::OK)
}

pub async fn approve(ctx: &Ctx, a: &ApproveArgs) -> CmdResult {
    let client = ctx.connect().await?;
    let id = ctx.resolve_session(&client, &a.id).await?;
    let info = client.get_session(&id).await.map_err(|e| ctx.fail(e))?;
    let title = target_title(&info, a.request.as_deref());
    let req = ApproveRequest {
        request_id: a.request.clone(),
        option_id: a.option.clone(),
        always: a.always.then_some(true),
    };
    let r = client.approve(&id, &req).await.map_err(|e| ctx.fail(e))?;
    print_decision(ctx, "Approved", title, &r)
}

pub async fn reject(ctx: &Ctx, a: &RejectArgs) -> CmdResult {
    let client = ctx.connect().await?;
    let id = ctx.resolve_session(&client, &a.id).await?;
    let info = client.get_session(&id).await.map_err(|e| ctx.fail(e))?;
    let title = target_title(&info, a.request.as_deref());
    let req = RejectRequest {
        request_id: a.request.clone(),
        option_id: None,
        always: a.always.then_some(true),
        reason: a.reason.clone(),
    };
    let r = client.reject(&id, &req).await.map_err(|e| ctx.fail(e))?;
    print_decision(ctx, "Rejected", title, &r)
}

pub async fn interrupt(ctx: &Ctx, a: &IdArg) -> CmdResult {
    let client = ctx.connect().await?;
    let id = ctx.resolve_session(&client, &a.id).await?;
    let r = client.interrupt(&id).await.map_err(|e| ctx.fail(e))?;
    if ctx.json() {
        print_json(&r)?;
    } else {
        match r.get("action").and_then(Value::as_str) {
            Some("cancelled") => {
                let ended = r.get("turnEnded").and_then(Value::as_bool).unwrap_or(false);
                println!(
                    "Interrupted{}",
                    if ended {
                        " (turn ended)"
                    } else {
                        " (the turn is still ending)"
                    }
                );
            }
            _ => println!("Nothing to interrupt: no turn is running"),
        }
    }
    Ok(exit::OK)
}

pub async fn kill(ctx: &Ctx, a: &IdArg) -> CmdResult {
    let client = ctx.connect().await?;
    let id = ctx.resolve_session(&client, &a.id).await?;
    let r = client.kill(&id).await.map_err(|e| ctx.fail(e))?;
    if ctx.json() {
        print_json(&r)?;
    } else {
        println!(
            "Session {}: {}",
            crate::ui::id8(&id),
            r.get("status").and_then(Value::as_str).unwrap_or("killed")
        );
    }
    Ok(exit::OK)
}
