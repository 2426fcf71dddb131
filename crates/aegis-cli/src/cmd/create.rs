//! `ag create "<brief>"`: one `POST /v1/sessions`, then the id, name and next-step commands,
//! written and flushed right after the response whether or not stdout is a terminal.

use std::io::Write as _;

use aegis_api_types::{CreateSessionRequest, SessionInfo};

use super::{CmdResult, Ctx, Failure, exit, print_json, work_dir};
use crate::CreateArgs;
use crate::ui::id8;

/// The brief from positional words (`None` when empty).
pub fn brief(words: &[String]) -> Option<String> {
    let b = words.join(" ");
    let b = b.trim();
    (!b.is_empty()).then(|| b.to_owned())
}

pub async fn run(ctx: &Ctx, a: &CreateArgs) -> CmdResult {
    let Some(prompt) = brief(&a.brief) else {
        return Err(Failure::new(
            exit::USAGE,
            "a brief is required\nUsage: ag create \"<brief>\" [--cwd DIR] [--name NAME] [--model M] [--agent A]",
        ));
    };
    let work_dir = work_dir(a.cwd.as_deref())?;
    let client = ctx.connect().await?;
    let req = CreateSessionRequest {
        work_dir,
        prompt: Some(prompt),
        name: a.name.clone(),
        model: a.model.clone(),
        agent: a.agent.clone(),
        permission_mode: if a.accept_permissions {
            Some("bypassPermissions".to_owned())
        } else {
            a.permission_mode.clone()
        },
        reuse: a.no_reuse.then_some(false),
        ..CreateSessionRequest::default()
    };
    let (info, created) = client.create_session(&req).await.map_err(|e| ctx.fail(e))?;
    print_created(ctx, &info, created)?;
    Ok(exit::OK)
}

/// The `ag create` output (or the response body with `--json`), flushed at once.
pub fn print_created(ctx: &Ctx, info: &SessionInfo, created: bool) -> Result<(), Failure> {
    if ctx.json() {
        print_json(info)?;
    } else {
        let base = &ctx.base_url;
        let id = &info.id;
        let auth = if ctx.token.is_some() {
            "-H \"Authorization: Bearer $TOKEN\" "
        } else {
            ""
        };
        let s = &ctx.out;
        let head = if created {
            "Session created:"
        } else {
            "Session reused:"
        };
        let mut out = String::new();
        out.push_str(&format!("{} {}\n", s.green(head), s.bold(&info.name)));
        out.push_str(&format!("  ID: {id}\n"));
        out.push_str(&format!("  Status: {}\n", s.status(&info.status)));
        out.push_str("Next steps:\n");
        out.push_str(&format!(
            "  Status:   curl {auth}{base}/v1/sessions/{id}/health\n"
        ));
        out.push_str(&format!(
            "  Read:     curl {auth}{base}/v1/sessions/{id}/read\n"
        ));
        out.push_str(&format!(
            "  Approve:  curl -X POST {auth}{base}/v1/sessions/{id}/approve\n"
        ));
        out.push_str(&format!(
            "  Kill:     curl -X DELETE {auth}{base}/v1/sessions/{id}\n"
        ));
        out.push_str(&format!("  Follow:   ag tail {}\n", id8(id)));
        if ctx.token.is_some() {
            out.push_str("  (export TOKEN=<your token>, e.g. TOKEN=$AEGIS_AUTH_TOKEN)\n");
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(out.as_bytes())
            .map_err(|e| Failure::new(exit::FAILURE, format!("cannot write to stdout: {e}")))?;
    }
    std::io::stdout()
        .flush()
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot write to stdout: {e}")))
}
