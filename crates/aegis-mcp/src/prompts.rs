//! The prompts `implement_issue`, `review_pr`, `debug_session` (cli-mcp-config §3.5) and the
//! hardening of their arguments: a violation is a JSON-RPC `-32602` whose message names the
//! argument and the rule.

use std::collections::BTreeMap;

use crate::catalogue;
use crate::validate::is_uuid;

/// One prompt argument.
pub struct ArgSpec {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
}

/// One prompt.
pub struct PromptSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub args: &'static [ArgSpec],
}

const fn arg(name: &'static str, required: bool, description: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        required,
        description,
    }
}

pub const PROMPTS: &[PromptSpec] = &[
    PromptSpec {
        name: "implement_issue",
        description: "Implement a GitHub issue in a project with an Aegis session: plan, code, test, commit, report.",
        args: &[
            arg("issueNumber", true, "Issue number (1–9999999999)."),
            arg("workDir", true, "Absolute path of the project checkout."),
            arg(
                "repoOwner",
                false,
                "Repository owner (default: the owner of workDir's origin remote).",
            ),
            arg(
                "repoName",
                false,
                "Repository name (default: the name of workDir's origin remote).",
            ),
        ],
    },
    PromptSpec {
        name: "review_pr",
        description: "Review a GitHub pull request with an Aegis session: correctness, conventions, security, tests, breaking changes.",
        args: &[
            arg("prNumber", true, "Pull request number (1–9999999999)."),
            arg("workDir", true, "Absolute path of the project checkout."),
            arg(
                "repoOwner",
                false,
                "Repository owner (default: the owner of workDir's origin remote).",
            ),
            arg(
                "repoName",
                false,
                "Repository name (default: the name of workDir's origin remote).",
            ),
        ],
    },
    PromptSpec {
        name: "debug_session",
        description: "Diagnose an Aegis session: state, pending approvals, stalls, rate limits and crashes.",
        args: &[arg("sessionId", true, "Session id (full UUID).")],
    },
];

/// A hardening violation: the message for the `-32602` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub String);

fn reject(arg: &str, rule: impl std::fmt::Display) -> Rejected {
    Rejected(format!("invalid argument `{arg}`: {rule}"))
}

const MARKERS: &[&str] = &[
    "<tool_use",
    "</tool_use>",
    "<tool_result",
    "<function_calls",
    "<invoke",
    "\"type\":\"tool_use\"",
    "\"type\":\"tool_result\"",
];

fn forbidden_char(c: char) -> Option<&'static str> {
    match c {
        '\u{0}'..='\u{1f}' => Some("control characters (C0) are not allowed"),
        '\u{7f}' => Some("the DEL control character is not allowed"),
        '\u{2028}' | '\u{2029}' => Some("line/paragraph separators are not allowed"),
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            Some("bidirectional control characters are not allowed")
        }
        '\u{200b}'..='\u{200d}' | '\u{feff}' => Some("zero-width characters are not allowed"),
        _ => None,
    }
}

/// The rules every text argument obeys.
pub fn check_text(name: &str, value: &str) -> Result<(), Rejected> {
    if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find_map(|(i, c)| forbidden_char(c).map(|r| (i, r)))
    {
        return Err(reject(name, format!("{c} (at character {i})")));
    }
    if value.contains("```") || value.contains("~~~") {
        return Err(reject(
            name,
            "code fences (three or more backticks or tildes) are not allowed",
        ));
    }
    let squashed: String = value
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    if let Some(m) = MARKERS.iter().find(|m| squashed.contains(*m)) {
        return Err(reject(
            name,
            format!("tool-call markers such as {m} are not allowed"),
        ));
    }
    let words = value.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    for w in words {
        if let Some(t) = catalogue::tools().iter().find(|t| t.name == w) {
            return Err(reject(
                name,
                format!("tool names such as `{}` are not allowed", t.name),
            ));
        }
    }
    Ok(())
}

fn check_number(name: &str, v: &str) -> Result<(), Rejected> {
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 10
        && (b'1'..=b'9').contains(&b[0])
        && b.iter().all(u8::is_ascii_digit);
    if ok {
        Ok(())
    } else {
        Err(reject(name, "must match ^[1-9][0-9]{0,9}$"))
    }
}

fn check_repo_part(name: &str, v: &str) -> Result<(), Rejected> {
    if v.is_empty() || v.chars().count() > 100 {
        return Err(reject(name, "must be 1–100 characters long"));
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(reject(name, "must match ^[A-Za-z0-9._-]+$"));
    }
    if v.starts_with(['.', '-']) || v.ends_with(['.', '-']) {
        return Err(reject(name, "must not start or end with `.` or `-`"));
    }
    Ok(())
}

fn check_workdir(name: &str, v: &str) -> Result<(), Rejected> {
    if v.is_empty() {
        return Err(reject(name, "must not be empty"));
    }
    if v.chars().count() > 1024 {
        return Err(reject(name, "must be at most 1024 characters long"));
    }
    if v.split(['/', '\\']).any(|s| s == "..") {
        return Err(reject(name, "`..` path segments are not allowed"));
    }
    Ok(())
}

/// Validate the arguments of prompt `p` and render its text.
pub fn render(p: &PromptSpec, args: &BTreeMap<String, String>) -> Result<String, Rejected> {
    for k in args.keys() {
        if !p.args.iter().any(|a| a.name == k) {
            let known: Vec<&str> = p.args.iter().map(|a| a.name).collect();
            return Err(reject(
                k,
                format!(
                    "is not an argument of {} (known: {})",
                    p.name,
                    known.join(", ")
                ),
            ));
        }
    }
    for a in p.args {
        match args.get(a.name) {
            None if a.required => return Err(reject(a.name, "is required")),
            None => {}
            Some(v) => {
                check_text(a.name, v)?;
                match a.name {
                    "issueNumber" | "prNumber" => check_number(a.name, v)?,
                    "repoOwner" | "repoName" => check_repo_part(a.name, v)?,
                    "workDir" => check_workdir(a.name, v)?,
                    "sessionId" if !is_uuid(v) => {
                        return Err(reject(a.name, "must be a full UUID"));
                    }
                    _ => {}
                }
            }
        }
    }
    let get = |k: &str| args.get(k).map(String::as_str);
    let repo = match (get("repoOwner"), get("repoName")) {
        (Some(o), Some(n)) => format!("the GitHub repository {o}/{n}"),
        (Some(o), None) => {
            format!("the repository of owner {o} named like workDir's `origin` remote")
        }
        (None, Some(n)) => format!("the repository {n} of the owner of workDir's `origin` remote"),
        (None, None) => {
            "the repository of workDir's `origin` remote (see `git remote get-url origin`)"
                .to_owned()
        }
    };
    let text = match p.name {
        "implement_issue" => {
            let n = get("issueNumber").unwrap_or_default();
            let wd = get("workDir").unwrap_or_default();
            format!(
                "Implement issue #{n} of {repo}, working in {wd}.\n\n\
                 Steps:\n\
                 1. Call `create_session` with workDir \"{wd}\" and a prompt asking the agent to implement issue #{n} following the steps below.\n\
                 2. Read the issue (for example `gh issue view {n}`) and the code it concerns.\n\
                 3. Plan the change before editing; keep it focused on the issue.\n\
                 4. Implement it, following the project's conventions.\n\
                 5. Run the project's tests and linters; fix what fails.\n\
                 6. Commit with a conventional commit message (e.g. `fix: …` or `feat: …`) that references #{n}.\n\
                 7. Report what changed, how it was tested, and anything left open.\n\n\
                 While it runs, watch it with `get_status`; when its status is `permission_prompt`, inspect the request and answer with `approve_permission` or `reject_permission`; read progress with `get_transcript`."
            )
        }
        "review_pr" => {
            let n = get("prNumber").unwrap_or_default();
            let wd = get("workDir").unwrap_or_default();
            format!(
                "Review pull request #{n} of {repo}, working in {wd}.\n\n\
                 Call `create_session` with workDir \"{wd}\" and ask the agent to check out the pull request (for example `gh pr checkout {n}`) and review it against this checklist:\n\
                 - Correctness: does the change do what it claims; edge cases; error handling.\n\
                 - Project conventions: style, structure, naming, documentation.\n\
                 - Security: input validation, secrets, injection, permissions.\n\
                 - Tests: are the changes covered; do the project's tests pass.\n\
                 - Breaking changes: public APIs, configuration, data formats, migrations.\n\n\
                 Post the review with `gh pr review {n}` (`--comment`, `--approve` or `--request-changes`) with concrete, line-referenced findings. Follow the session with `get_status` and `get_transcript`."
            )
        }
        _ => {
            let id = get("sessionId").unwrap_or_default();
            format!(
                "Diagnose the Aegis session {id}.\n\n\
                 Steps:\n\
                 1. `get_status` with sessionId \"{id}\": status, statusReason, pending permissions, queue, driver, lastError, health.\n\
                 2. `acp_get_timeline` with the same sessionId: the status changes, turns, approvals and agent lifecycle events.\n\
                 3. `get_transcript`: the latest messages and tool calls.\n\
                 4. `acp_get_terminal_debug`: the agent's stderr tail, exit status and protocol errors.\n\n\
                 Then explain: the current state; pending approvals and who must answer them; whether it stalls (no updates) and since when; rate limits and when they reset; crashes and their cause; and the next action to take."
            )
        }
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn hardening() {
        let p = &PROMPTS[0];
        let ok = render(p, &args(&[("issueNumber", "42"), ("workDir", "/src/app")])).unwrap();
        assert!(ok.contains("#42") && ok.contains("origin"), "{ok}");
        let bad = [
            (("issueNumber", "042"), "issueNumber"),
            (("issueNumber", "12345678901"), "issueNumber"),
            (("workDir", "/src/../etc"), "`..`"),
            (("repoOwner", "-x"), "start or end"),
            (("repoName", "a b"), "^[A-Za-z0-9._-]+$"),
            (("repoName", "a\u{202e}b"), "bidirectional"),
            (("repoName", "a\u{200b}b"), "zero-width"),
            (("workDir", "/a\nb"), "control"),
            (("workDir", "/a```b"), "code fences"),
            (("workDir", "/a/< Invoke name"), "tool-call"),
            (("workDir", "/a/get_status/b"), "get_status"),
        ];
        for ((k, v), needle) in bad {
            let mut a = args(&[("issueNumber", "1"), ("workDir", "/w")]);
            a.insert(k.to_owned(), v.to_owned());
            let e = render(p, &a).unwrap_err();
            assert!(
                e.0.contains(k) && e.0.contains(needle),
                "{k}={v:?}: {}",
                e.0
            );
        }
        assert!(render(p, &args(&[("workDir", "/w")])).is_err());
        assert!(render(&PROMPTS[2], &args(&[("sessionId", "nope")])).is_err());
        // Words that merely contain a tool name are fine.
        assert!(check_text("x", "my_get_status_helper").is_ok());
        assert!(check_text("x", "\"type\" : \"tool_use\"").is_err());
    }
}
