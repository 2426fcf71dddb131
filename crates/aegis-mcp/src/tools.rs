//! Tool calls: validation, the role check, and the REST call(s) of each tool (§3.3).

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::backend::{Backend, ToolError, segment};
use crate::catalogue::{self, ToolSpec};
use crate::validate;

type Args = Map<String, Value>;

fn s<'a>(a: &'a Args, k: &str) -> Option<&'a str> {
    a.get(k).and_then(Value::as_str)
}

fn int(a: &Args, k: &str) -> Option<i64> {
    a.get(k).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .filter(|_| !v.is_null())
    })
}

fn bool_arg(a: &Args, k: &str) -> Option<bool> {
    a.get(k).and_then(Value::as_bool)
}

/// Copy the given (non-null) arguments into a request body, renaming as listed.
fn body(a: &Args, keys: &[(&str, &str)]) -> Value {
    let mut o = Map::new();
    for (from, to) in keys {
        if let Some(v) = a.get(*from).filter(|v| !v.is_null()) {
            o.insert((*to).to_owned(), v.clone());
        }
    }
    Value::Object(o)
}

/// Validate the arguments of `tool` (`INVALID_ARGUMENT` / `INVALID_SESSION_ID`).
#[allow(clippy::result_large_err)] // built once per call, never in a hot loop
pub fn check_args(tool: &ToolSpec, args: &Value) -> Result<(), ToolError> {
    validate::check(&tool.schema, args, "").map_err(|e| {
        let code = if e.session_id {
            "INVALID_SESSION_ID"
        } else {
            "INVALID_ARGUMENT"
        };
        let mut msg = format!("{}: {e}", tool.name);
        if e.session_id {
            msg.push_str("; pass the full id returned by list_sessions or create_session");
        }
        ToolError::new(code, msg).with_details(json!({"argument": e.path}))
    })
}

/// The role check (§3.1): role ≥ the tool's role, or the permission its REST call checks;
/// `kill_session` always needs admin.
pub async fn authorize(backend: &Backend, tool: &ToolSpec, args: &Args) -> Result<(), ToolError> {
    let caller = backend.caller().await?;
    if caller.role >= tool.role {
        return Ok(());
    }
    let permission = match tool.name {
        "acp_respond_approval" if bool_arg(args, "approved") == Some(false) => Some("reject"),
        _ => tool.permission,
    };
    if tool.name != "kill_session" {
        if let Some(p) = permission {
            if caller.permissions.iter().any(|x| x == p) {
                return Ok(());
            }
        }
    }
    let via = match permission {
        Some(p) if tool.name != "kill_session" => format!(" (or the `{p}` permission)"),
        _ => String::new(),
    };
    Err(ToolError::new(
        "FORBIDDEN",
        format!(
            "{} needs the {} role{via}; you ({}) have the {} role",
            tool.name,
            tool.role.as_str(),
            if caller.principal.is_empty() {
                "the caller"
            } else {
                &caller.principal
            },
            caller.role.as_str()
        ),
    )
    .with_details(
        json!({"tool": tool.name, "required": tool.role.as_str(), "role": caller.role.as_str()}),
    ))
}

/// Run a tool: validate, authorize, call. The result is the structured content.
pub async fn run(backend: &Backend, name: &str, args: Option<Args>) -> Result<Value, ToolError> {
    let Some(tool) = catalogue::find(name) else {
        let known: Vec<&str> = catalogue::tools().iter().map(|t| t.name).collect();
        return Err(ToolError::new(
            "INVALID_ARGUMENT",
            format!("unknown tool `{name}`; known tools: {}", known.join(", ")),
        ));
    };
    let args = args.unwrap_or_default();
    check_args(tool, &Value::Object(args.clone()))?;
    authorize(backend, tool, &args).await?;
    let mut out = execute(backend, tool, &args).await?;
    if !out.is_object() {
        out = json!({ "result": out });
    }
    if let (Some(action), Some(o)) = (tool.action_type, out.as_object_mut()) {
        o.insert("actionType".into(), json!(action));
    }
    Ok(out)
}

fn session_path(a: &Args, rest: &str) -> String {
    format!(
        "/v1/sessions/{}{rest}",
        segment(&s(a, "sessionId").unwrap_or_default().to_ascii_lowercase())
    )
}

#[allow(clippy::too_many_lines)]
async fn execute(b: &Backend, tool: &ToolSpec, a: &Args) -> Result<Value, ToolError> {
    let name = tool.name;
    let get = |path: String, query: Vec<(&'static str, String)>| async move {
        b.call(name, Method::GET, &path, &query, None, &[]).await
    };
    let post = |path: String, body: Value| async move {
        b.call(name, Method::POST, &path, &[], Some(&body), &[])
            .await
    };
    match name {
        "list_sessions" => list_sessions(b, a).await,
        "get_status" => {
            let mut info = get(session_path(a, ""), vec![]).await?;
            let health = match get(session_path(a, "/health"), vec![]).await {
                Ok(h) => h,
                Err(e) if e.code == "NOT_AVAILABLE" => Value::Null,
                Err(e) => return Err(e),
            };
            if let Some(o) = info.as_object_mut() {
                o.insert("health".into(), health);
            }
            Ok(info)
        }
        "get_transcript" | "acp_get_chat" => {
            let mut q = vec![("limit", int(a, "limit").unwrap_or(50).to_string())];
            if let Some(bid) = int(a, "beforeId") {
                q.push(("before_id", bid.to_string()));
            }
            if name == "acp_get_chat" {
                q.push(("kind", "user_message,agent_message".into()));
            }
            get(session_path(a, "/transcript/cursor"), q).await
        }
        "send_message" => post(session_path(a, "/send"), body(a, &[("text", "text")])).await,
        "create_session" => {
            let req = body(
                a,
                &[
                    ("workDir", "workDir"),
                    ("name", "name"),
                    ("prompt", "prompt"),
                    ("agent", "agent"),
                    ("model", "model"),
                    ("permissionMode", "permissionMode"),
                ],
            );
            let info = post("/v1/sessions".into(), req).await?;
            let pick = |k: &str| info.get(k).cloned().unwrap_or(Value::Null);
            Ok(json!({
                "id": pick("id"), "name": pick("name"), "status": pick("status"),
                "reused": info.get("reused").cloned().unwrap_or(json!(false)),
                "workDir": pick("workDir"), "promptDelivery": pick("promptDelivery"),
            }))
        }
        "kill_session" => {
            b.call(name, Method::DELETE, &session_path(a, ""), &[], None, &[])
                .await
        }
        "approve_permission" => {
            let req = body(
                a,
                &[
                    ("requestId", "requestId"),
                    ("optionId", "optionId"),
                    ("always", "always"),
                ],
            );
            post(session_path(a, "/approve"), req).await
        }
        "reject_permission" => {
            let req = body(
                a,
                &[
                    ("requestId", "requestId"),
                    ("always", "always"),
                    ("reason", "reason"),
                ],
            );
            post(session_path(a, "/reject"), req).await
        }
        "escape_session" => post(session_path(a, "/escape"), json!({})).await,
        "interrupt_session" => post(session_path(a, "/interrupt"), json!({})).await,
        "send_command" => {
            post(
                session_path(a, "/command"),
                body(a, &[("command", "command")]),
            )
            .await
        }
        "server_health" => get("/v1/health".into(), vec![]).await,
        "get_session_metrics" => get(session_path(a, "/metrics"), vec![]).await,
        "get_session_summary" => get(session_path(a, "/summary"), vec![]).await,
        "get_session_latency" => get(session_path(a, "/latency"), vec![]).await,
        "get_swarm" => get("/v1/swarm".into(), vec![]).await,
        "batch_create_sessions" => {
            post(
                "/v1/sessions/batch".into(),
                body(a, &[("sessions", "sessions")]),
            )
            .await
        }
        "list_pipelines" => {
            let mut q = vec![];
            if let Some(st) = s(a, "status") {
                q.push(("status", st.to_owned()));
            }
            let v = get("/v1/pipelines".into(), q).await?;
            Ok(match v {
                Value::Array(list) => json!({"pipelines": list, "total": list.len()}),
                other => other,
            })
        }
        "create_pipeline" => post("/v1/pipelines".into(), pipeline_config(a)).await,
        "state_get" => {
            get(
                format!("/v1/memory/{}", segment(s(a, "key").unwrap_or_default())),
                vec![],
            )
            .await
        }
        "state_set" => {
            post(
                "/v1/memory".into(),
                body(
                    a,
                    &[
                        ("key", "key"),
                        ("value", "value"),
                        ("ttlSeconds", "ttlSeconds"),
                    ],
                ),
            )
            .await
        }
        "state_delete" => {
            let path = format!("/v1/memory/{}", segment(s(a, "key").unwrap_or_default()));
            b.call(name, Method::DELETE, &path, &[], None, &[]).await
        }
        "acp_send_prompt" => {
            let mut headers = Vec::new();
            if let Some(k) = s(a, "idempotencyKey") {
                headers.push(("Idempotency-Key", k.to_owned()));
            }
            let req = body(a, &[("prompt", "text")]);
            b.call(
                name,
                Method::POST,
                &session_path(a, "/prompt"),
                &[],
                Some(&req),
                &headers,
            )
            .await
        }
        "acp_respond_approval" => {
            if bool_arg(a, "approved") == Some(true) {
                let req = body(
                    a,
                    &[
                        ("requestId", "requestId"),
                        ("optionId", "optionId"),
                        ("always", "always"),
                    ],
                );
                post(session_path(a, "/approve"), req).await
            } else {
                let req = body(
                    a,
                    &[
                        ("requestId", "requestId"),
                        ("optionId", "optionId"),
                        ("always", "always"),
                        ("reason", "reason"),
                    ],
                );
                post(session_path(a, "/reject"), req).await
            }
        }
        "acp_pause_session" => {
            post(session_path(a, "/pause"), body(a, &[("reason", "reason")])).await
        }
        "acp_resume_session" => {
            post(session_path(a, "/resume"), body(a, &[("fresh", "fresh")])).await
        }
        "acp_cancel_session" => {
            post(session_path(a, "/cancel"), body(a, &[("force", "force")])).await
        }
        "acp_claim_driver" => {
            post(
                session_path(a, "/driver/claim"),
                body(a, &[("ttlSeconds", "ttlSeconds")]),
            )
            .await
        }
        "acp_release_driver" => post(session_path(a, "/driver/release"), json!({})).await,
        "acp_transfer_driver" => {
            post(
                session_path(a, "/driver/transfer"),
                body(a, &[("targetKeyId", "principalId")]),
            )
            .await
        }
        "acp_get_events" | "acp_get_timeline" => {
            let mut q = vec![
                ("after", int(a, "since").unwrap_or(0).to_string()),
                ("limit", int(a, "limit").unwrap_or(100).to_string()),
            ];
            if name == "acp_get_timeline" {
                q.push(("category", "timeline".into()));
            } else if let Some(t) = s(a, "types") {
                q.push(("types", t.to_owned()));
            }
            get(session_path(a, "/events/log"), q).await
        }
        "acp_get_terminal_debug" => {
            let q = vec![("maxLines", int(a, "maxLines").unwrap_or(100).to_string())];
            get(session_path(a, "/debug"), q).await
        }
        other => Err(ToolError::new(
            "INTERNAL_ERROR",
            format!("tool {other} has no implementation"),
        )),
    }
}

/// `list_sessions`: page through `GET /v1/sessions` (100 per page) until `limit`.
async fn list_sessions(b: &Backend, a: &Args) -> Result<Value, ToolError> {
    let limit = usize::try_from(int(a, "limit").unwrap_or(100).clamp(1, 500)).unwrap_or(100);
    let mut out: Vec<Value> = Vec::new();
    let mut page = 1u64;
    let mut total = 0u64;
    loop {
        let mut q = vec![("page", page.to_string()), ("limit", "100".to_owned())];
        if let Some(st) = s(a, "status") {
            q.push(("status", st.to_owned()));
        }
        if let Some(w) = s(a, "workDir") {
            q.push(("workDir", w.to_owned()));
        }
        let v = b
            .call("list_sessions", Method::GET, "/v1/sessions", &q, None, &[])
            .await?;
        let list = v
            .get("sessions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        total = v
            .pointer("/pagination/total")
            .and_then(Value::as_u64)
            .unwrap_or(total);
        let pages = v
            .pointer("/pagination/totalPages")
            .and_then(Value::as_u64)
            .unwrap_or(page);
        let n = list.len();
        for sess in list {
            let pick = |k: &str| sess.get(k).cloned().unwrap_or(Value::Null);
            let pending = sess
                .get("pendingPermissions")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            out.push(json!({
                "id": pick("id"), "name": pick("name"), "status": pick("status"),
                "workDir": pick("workDir"), "agent": pick("agent"),
                "createdAt": pick("createdAt"), "lastActivity": pick("lastActivity"),
                "pendingPermissions": pending,
            }));
        }
        if out.len() >= limit || n == 0 || page >= pages {
            break;
        }
        page += 1;
    }
    out.truncate(limit);
    let truncated = total > out.len() as u64;
    Ok(json!({"sessions": out, "returned": out.len(), "total": total, "truncated": truncated}))
}

/// `create_pipeline` arguments → `PipelineConfig` (cli-mcp-config §4.1).
fn pipeline_config(a: &Args) -> Value {
    let dag = s(a, "mode") == Some("dag");
    let steps = a
        .get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut stages = Vec::new();
    let mut prev: Option<String> = None;
    for (i, step) in steps.iter().enumerate() {
        let empty = Map::new();
        let st = step.as_object().unwrap_or(&empty);
        let name = s(st, "name").map_or_else(|| format!("step-{}", i + 1), str::to_owned);
        let mut stage = body(
            st,
            &[
                ("prompt", "prompt"),
                ("workDir", "workDir"),
                ("agent", "agent"),
                ("model", "model"),
                ("permissionMode", "permissionMode"),
            ],
        );
        stage["name"] = json!(name);
        if dag {
            if let Some(d) = st.get("dependsOn").filter(|d| !d.is_null()) {
                stage["dependsOn"] = d.clone();
            }
        } else if let Some(p) = &prev {
            stage["dependsOn"] = json!([p]);
        }
        prev = Some(name);
        stages.push(stage);
    }
    json!({"name": s(a, "name"), "workDir": s(a, "workDir"), "stages": stages})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_are_built_from_steps() {
        let a: Args = serde_json::from_value(json!({
            "name": "p", "workDir": "/w",
            "steps": [{"prompt": "a"}, {"name": "two", "prompt": "b", "dependsOn": ["x"]}]
        }))
        .unwrap();
        let c = pipeline_config(&a);
        assert_eq!(c["stages"][0]["name"], "step-1");
        assert!(c["stages"][0].get("dependsOn").is_none());
        assert_eq!(c["stages"][1]["dependsOn"], json!(["step-1"]));
        let mut a = a;
        a.insert("mode".into(), json!("dag"));
        assert_eq!(pipeline_config(&a)["stages"][1]["dependsOn"], json!(["x"]));
    }
}
