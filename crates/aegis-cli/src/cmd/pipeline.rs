//! `ag pipeline create | list | show | cancel | resume | approve` (cli-mcp-config §4.1): the
//! REST pipelines API from the command line. `create` parses a YAML or JSON `PipelineConfig`
//! and validates it locally (`check_pipeline_config`) before anything is sent, so a cycle or
//! an unknown dependency is reported with exit 2 without a server.

use std::path::{Path, PathBuf};

use aegis_api_types::orchestration::{PipelineConfig, PipelineState};
use aegis_client::Client;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::{CmdResult, Ctx, Failure, exit, is_uuid, print_json};
use crate::ui::{age, id8, table, truncate};

#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    #[command(subcommand)]
    pub command: PipelineCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum PipelineCommand {
    /// Create a pipeline from a YAML or JSON file (validated locally first: exit 2 on errors).
    Create(CreatePipelineArgs),
    /// List pipelines: ID NAME STATUS STAGES AGE.
    #[command(visible_alias = "ls")]
    List(ListPipelinesArgs),
    /// One pipeline: per-stage status, session ids, timings and the first line of each output.
    Show(PipelineIdArg),
    /// Cancel a running pipeline (a finished one → exit 7).
    Cancel(CancelPipelineArgs),
    /// Run the failed/cancelled/skipped stages of a pipeline again (nothing to resume → exit 7).
    Resume(PipelineIdArg),
    /// Approve a stage's approval gate so it can start.
    Approve(ApproveStageArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CreatePipelineArgs {
    /// The pipeline file: `PipelineConfig` in YAML, or JSON when it ends in `.json`
    /// (`-` reads YAML/JSON from stdin). A relative workDir is resolved against the file's
    /// directory.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    pub file: PathBuf,
    /// Default workDir when the file gives none (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Only validate the file locally; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ListPipelinesArgs {
    /// Only pipelines with this status: running, completed, failed, cancelled.
    #[arg(long, value_name = "S", value_parser = ["running", "completed", "failed", "cancelled"])]
    pub status: Option<String>,
    /// Show full pipeline ids.
    #[arg(long)]
    pub full_ids: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PipelineIdArg {
    /// Pipeline id or a unique prefix of it (≥ 4 characters).
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct CancelPipelineArgs {
    /// Pipeline id or a unique prefix of it (≥ 4 characters).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Also kill the stage sessions.
    #[arg(long)]
    pub kill_sessions: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ApproveStageArgs {
    /// Pipeline id or a unique prefix of it (≥ 4 characters).
    #[arg(value_name = "ID")]
    pub id: String,
    /// The gated stage's name.
    #[arg(value_name = "STAGE")]
    pub stage: String,
}

pub async fn run(ctx: &Ctx, a: &PipelineArgs) -> CmdResult {
    match &a.command {
        PipelineCommand::Create(c) => create(ctx, c).await,
        PipelineCommand::List(l) => list(ctx, l).await,
        PipelineCommand::Show(s) => show(ctx, &s.id).await,
        PipelineCommand::Cancel(c) => {
            let body = json!({"killSessions": c.kill_sessions});
            action(ctx, &c.id, "cancel", Some(body), "Cancelled").await
        }
        PipelineCommand::Resume(r) => action(ctx, &r.id, "resume", None, "Resumed").await,
        PipelineCommand::Approve(p) => {
            let what = format!("stages/{}/approve", encode(&p.stage));
            let done = format!("Approved stage {} of", p.stage);
            action(ctx, &p.id, &what, None, &done).await
        }
    }
}

/// Percent-encode a path segment (stage names are `[A-Za-z0-9_-]`, but be safe).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Read and parse the file (YAML, or JSON for `.json`), fill workDir, validate locally.
pub fn load_config(file: &Path, cwd: Option<&Path>) -> Result<PipelineConfig, Failure> {
    let (text, base) = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| Failure::new(exit::FAILURE, format!("cannot read stdin: {e}")))?;
        (s, None)
    } else {
        let s = std::fs::read_to_string(file).map_err(|e| {
            Failure::new(exit::USAGE, format!("cannot read {}: {e}", file.display()))
        })?;
        let base = std::fs::canonicalize(file)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        (s, base)
    };
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed: Result<PipelineConfig, String> = if is_json {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        // YAML is a superset of JSON: `-` and `.yaml`/`.yml` files go through the YAML parser.
        yaml_serde::from_str(&text).map_err(|e| e.to_string())
    };
    let mut cfg = parsed.map_err(|e| {
        Failure::new(
            exit::USAGE,
            format!("{} is not a valid pipeline: {e}", file.display()),
        )
    })?;
    let resolve = |p: &str| -> String {
        let path = Path::new(p);
        match (&base, path.is_relative()) {
            (Some(b), true) => {
                let j = b.join(path);
                std::fs::canonicalize(&j)
                    .unwrap_or(j)
                    .to_string_lossy()
                    .into_owned()
            }
            _ => p.to_owned(),
        }
    };
    cfg.work_dir = cfg.work_dir.as_deref().map(resolve);
    for s in &mut cfg.stages {
        s.work_dir = s.work_dir.as_deref().map(resolve);
    }
    if cfg.work_dir.is_none() && cfg.stages.iter().any(|s| s.work_dir.is_none()) {
        cfg.work_dir = Some(super::work_dir(cwd)?);
    }
    if let Err(e) = aegis_core::pipeline::check_pipeline_config(&cfg) {
        let mut m = format!("{} is not a valid pipeline:", file.display());
        match e.details.as_ref().and_then(Value::as_array) {
            Some(issues) if !issues.is_empty() => {
                for i in issues {
                    m.push_str(&format!(
                        "\n  {}: {}",
                        i["path"].as_str().unwrap_or(""),
                        i["message"].as_str().unwrap_or("")
                    ));
                }
            }
            _ => m.push_str(&format!("\n  {}", e.message)),
        }
        return Err(Failure::new(exit::USAGE, m));
    }
    Ok(cfg)
}

async fn create(ctx: &Ctx, a: &CreatePipelineArgs) -> CmdResult {
    let cfg = load_config(&a.file, a.cwd.as_deref())?;
    if a.dry_run {
        if ctx.json() {
            print_json(&cfg)?;
        } else {
            println!(
                "{} is valid: pipeline {} with {} stage(s)",
                a.file.display(),
                cfg.name,
                cfg.stages.len()
            );
        }
        return Ok(exit::OK);
    }
    let client = ctx.connect().await?;
    let body = serde_json::to_value(&cfg)
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot encode the pipeline: {e}")))?;
    let v = client
        .call_json(Method::POST, "/v1/pipelines", &[], Some(&body), &[])
        .await
        .map_err(|e| ctx.fail(e))?;
    if ctx.json() {
        print_json(&v)?;
        return Ok(exit::OK);
    }
    let p = state(v)?;
    println!(
        "{} {} ({})",
        ctx.out.green("Pipeline created:"),
        p.name,
        p.id
    );
    println!("  Status: {}", ctx.out.status(&p.status));
    println!("  Stages:");
    for s in &p.stages {
        let deps = if s.depends_on.is_empty() {
            String::new()
        } else {
            format!(" ← {}", s.depends_on.join(", "))
        };
        let gate = if s.gate { " [gate]" } else { "" };
        println!("    {} ({}){deps}{gate}", s.name, s.status);
    }
    println!("Follow:   ag pipeline show {}", p.id);
    Ok(exit::OK)
}

fn state(v: Value) -> Result<PipelineState, Failure> {
    serde_json::from_value(v).map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("unexpected pipeline from the server: {e}"),
        )
    })
}

async fn fetch_all(ctx: &Ctx, client: &Client, status: Option<&str>) -> Result<Value, Failure> {
    let q: Vec<(&str, String)> = status
        .map(|s| ("status", s.to_owned()))
        .into_iter()
        .collect();
    client
        .call_json(Method::GET, "/v1/pipelines", &q, None, &[])
        .await
        .map_err(|e| ctx.fail(e))
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => other
            .get("pipelines")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

async fn list(ctx: &Ctx, a: &ListPipelinesArgs) -> CmdResult {
    let client = ctx.connect().await?;
    let v = fetch_all(ctx, &client, a.status.as_deref()).await?;
    let items = as_list(&v);
    if ctx.json() {
        print_json(&json!({ "pipelines": items }))?;
        return Ok(exit::OK);
    }
    if items.is_empty() {
        println!("No pipelines.");
        return Ok(exit::OK);
    }
    let mut rows = Vec::new();
    for it in items {
        let p = state(it)?;
        let done = p.stages.iter().filter(|s| s.status == "completed").count();
        rows.push(vec![
            if a.full_ids {
                p.id.clone()
            } else {
                id8(&p.id).to_owned()
            },
            truncate(&p.name, 40),
            ctx.out.status(&p.status),
            format!("{done}/{}", p.stages.len()),
            age(p.created_at),
        ]);
    }
    print!(
        "{}",
        table(&["ID", "NAME", "STATUS", "STAGES", "AGE"], &rows)
    );
    Ok(exit::OK)
}

/// A full pipeline id from a full id or a unique prefix (≥ 4 characters); else exit 6.
async fn resolve(ctx: &Ctx, client: &Client, arg: &str) -> Result<String, Failure> {
    let a = arg.trim().to_lowercase();
    if is_uuid(&a) {
        return Ok(a);
    }
    if a.chars().count() < 4 || a.contains('/') {
        return Err(Failure::new(
            exit::NOT_FOUND,
            format!(
                "'{arg}' is not a pipeline id: give a full id or at least 4 characters of one (see `ag pipeline list`)"
            ),
        ));
    }
    let all = as_list(&fetch_all(ctx, client, None).await?);
    let hits: Vec<&Value> = all
        .iter()
        .filter(|p| {
            p["id"]
                .as_str()
                .is_some_and(|id| id.to_lowercase().starts_with(&a))
        })
        .collect();
    match hits.as_slice() {
        [] => Err(Failure::new(
            exit::NOT_FOUND,
            format!("no pipeline id starts with '{arg}' (see `ag pipeline list`)"),
        )),
        [one] => Ok(one["id"].as_str().unwrap_or_default().to_owned()),
        many => {
            let mut m = format!(
                "'{arg}' matches {} pipelines; give more characters:",
                many.len()
            );
            for p in many.iter().take(20) {
                m.push_str(&format!(
                    "\n  {}  {}  {}",
                    p["id"].as_str().unwrap_or(""),
                    p["name"].as_str().unwrap_or(""),
                    p["status"].as_str().unwrap_or("")
                ));
            }
            Err(Failure::new(exit::NOT_FOUND, m))
        }
    }
}

fn duration(from: Option<u64>, to: Option<u64>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => {
            let ms = b.saturating_sub(a);
            if ms < 10_000 {
                format!("{:.1}s", ms as f64 / 1000.0)
            } else {
                format!("{}s", ms / 1000)
            }
        }
        (Some(a), None) => format!("{} so far", age(a)),
        _ => "-".to_owned(),
    }
}

async fn show(ctx: &Ctx, arg: &str) -> CmdResult {
    let client = ctx.connect().await?;
    let id = resolve(ctx, &client, arg).await?;
    let v = client
        .call_json(Method::GET, &format!("/v1/pipelines/{id}"), &[], None, &[])
        .await
        .map_err(|e| ctx.fail(e))?;
    if ctx.json() {
        print_json(&v)?;
        return Ok(exit::OK);
    }
    let p = state(v)?;
    print_state(ctx, &p);
    Ok(exit::OK)
}

fn print_state(ctx: &Ctx, p: &PipelineState) {
    let o = &ctx.out;
    println!("{} {} ({})", o.bold("Pipeline"), p.name, p.id);
    println!("  Status:    {}", o.status(&p.status));
    if let Some(w) = &p.work_dir {
        println!("  WorkDir:   {w}");
    }
    println!("  OnFailure: {}", p.on_failure);
    println!("  Created:   {} ago", age(p.created_at));
    if p.finished_at.is_some() {
        println!(
            "  Duration:  {}",
            duration(Some(p.created_at), p.finished_at)
        );
    }
    println!("  Stages:");
    for s in &p.stages {
        let mut flags = Vec::new();
        if !s.depends_on.is_empty() {
            flags.push(format!("after {}", s.depends_on.join(", ")));
        }
        if s.awaiting_approval {
            flags.push("awaiting approval".to_owned());
        } else if s.gate {
            flags.push(if s.approved { "gate approved" } else { "gate" }.to_owned());
        }
        if s.attempts > 1 {
            flags.push(format!("{} attempts", s.attempts));
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!("  ({})", flags.join("; "))
        };
        println!("    {}  {}{flags}", o.bold(&s.name), o.status(&s.status));
        if let Some(sid) = &s.session_id {
            println!("      session:  {sid}");
        }
        if s.started_at.is_some() {
            println!("      time:     {}", duration(s.started_at, s.completed_at));
        }
        if let Some(out) = s.output.as_deref().filter(|t| !t.trim().is_empty()) {
            let first = out.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let more = if s.output_truncated {
                " (truncated)"
            } else {
                ""
            };
            println!("      output:   {}{more}", truncate(first.trim(), 100));
        }
        if let Some(err) = &s.error {
            println!("      error:    {}", o.red(&truncate(err, 200)));
        }
    }
    if p.stages.iter().any(|s| s.awaiting_approval) {
        for s in p.stages.iter().filter(|s| s.awaiting_approval) {
            println!("Approve:  ag pipeline approve {} {}", id8(&p.id), s.name);
        }
    }
}

/// `POST /v1/pipelines/:id/<what>` and print the resulting state.
async fn action(ctx: &Ctx, arg: &str, what: &str, body: Option<Value>, done: &str) -> CmdResult {
    let client = ctx.connect().await?;
    let id = resolve(ctx, &client, arg).await?;
    let body = body.unwrap_or_else(|| json!({}));
    let v = client
        .call_json(
            Method::POST,
            &format!("/v1/pipelines/{id}/{what}"),
            &[],
            Some(&body),
            &[],
        )
        .await
        .map_err(|e| ctx.fail(e))?;
    if ctx.json() {
        print_json(&v)?;
        return Ok(exit::OK);
    }
    let p = state(v)?;
    println!(
        "{done} pipeline {} ({}): {}",
        p.name,
        id8(&p.id),
        ctx.out.status(&p.status)
    );
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments() {
        assert_eq!(encode("build_1-a"), "build_1-a");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Some(1000), Some(3500)), "2.5s");
        assert_eq!(duration(Some(0), Some(65_000)), "65s");
        assert_eq!(duration(None, None), "-");
    }
}
