//! The policy layer (api §2.5): decides a permission request before a human is asked.
//!
//! Order: the session's permission profile (first matching rule), else mode emulation for
//! agents that lack the requested mode, else ask.

use std::path::Path;

use aegis_api_types::{PermissionProfile, RuleBehavior};
use aegis_domain::{ToolCall, ToolKind};
use serde_json::Value;

/// The policy's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Ask,
}

/// Glob match: `*` = anything but `/`, `**` = anything, `?` = one char; case-insensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') if p.get(1) == Some(&'*') => {
                let rest = &p[2..];
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some('*') => {
                let rest = &p[1..];
                for i in 0..=t.len() {
                    if go(rest, &t[i..]) {
                        return true;
                    }
                    if i < t.len() && t[i] == '/' {
                        break;
                    }
                }
                false
            }
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

fn tool_matches(rule_tool: &str, call: &ToolCall) -> bool {
    if rule_tool == "*" {
        return true;
    }
    if let Some(kind) = rule_tool.strip_prefix("kind:") {
        return call.tool_kind.as_str().eq_ignore_ascii_case(kind);
    }
    call.tool_name
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(rule_tool))
}

fn subject(call: &ToolCall) -> String {
    match &call.raw_input {
        Some(v) => v
            .get("command")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string()),
        None => call.title.clone(),
    }
}

/// Path-like values of a tool call: its locations and path-named input fields.
fn paths(call: &ToolCall) -> Vec<String> {
    let mut out: Vec<String> = call.locations.iter().map(|l| l.path.clone()).collect();
    if let Some(Value::Object(m)) = &call.raw_input {
        for (k, v) in m {
            let k = k.to_ascii_lowercase();
            if k.contains("path") || k == "file" || k == "directory" {
                if let Some(s) = v.as_str() {
                    out.push(s.to_owned());
                }
            }
        }
    }
    out
}

fn under_any(path: &str, prefixes: &[String]) -> bool {
    let real = std::fs::canonicalize(path)
        .or_else(|_| {
            // A file about to be created: resolve its parent.
            let p = Path::new(path);
            match (p.parent(), p.file_name()) {
                (Some(parent), Some(name)) => std::fs::canonicalize(parent).map(|d| d.join(name)),
                _ => Err(std::io::Error::other("no parent")),
            }
        })
        .unwrap_or_else(|_| Path::new(path).to_path_buf());
    prefixes.iter().any(|pre| {
        let pre = std::fs::canonicalize(pre).unwrap_or_else(|_| Path::new(pre).to_path_buf());
        real.starts_with(pre)
    })
}

/// Evaluate a profile. `None` = no rule matched and no default behaviour.
pub fn evaluate_profile(profile: &PermissionProfile, call: &ToolCall) -> Option<Verdict> {
    let subj = subject(call);
    for rule in &profile.rules {
        if !tool_matches(&rule.tool, call) {
            continue;
        }
        if let Some(pattern) = &rule.pattern {
            if !glob_match(pattern, &subj) {
                continue;
            }
        }
        if let Some(c) = &rule.constraints {
            if c.read_only == Some(true)
                && !matches!(
                    call.tool_kind,
                    ToolKind::Read | ToolKind::Search | ToolKind::Think | ToolKind::Fetch
                )
            {
                continue;
            }
            if let Some(prefixes) = &c.paths {
                let ps = paths(call);
                if ps.is_empty() || !ps.iter().all(|p| under_any(p, prefixes)) {
                    continue;
                }
            }
            if let Some(max) = c.max_file_size {
                let size = call
                    .raw_input
                    .as_ref()
                    .and_then(|v| v.get("content"))
                    .and_then(Value::as_str)
                    .map_or(0, str::len);
                if u64::try_from(size).unwrap_or(u64::MAX) > max {
                    continue;
                }
            }
        }
        return Some(match rule.behavior {
            RuleBehavior::Allow => Verdict::Allow,
            RuleBehavior::Deny => Verdict::Deny,
            RuleBehavior::Ask => Verdict::Ask,
        });
    }
    profile.default_behavior.map(|b| match b {
        RuleBehavior::Allow => Verdict::Allow,
        RuleBehavior::Deny => Verdict::Deny,
        RuleBehavior::Ask => Verdict::Ask,
    })
}

/// Mode emulation for an agent that lacks the session's mode (api §2.5 table).
pub fn emulate_mode(mode: &str, call: &ToolCall, work_dir: &Path) -> Verdict {
    match mode {
        "bypassPermissions" => Verdict::Allow,
        "dontAsk" => Verdict::Deny,
        "acceptEdits" => {
            let edit = matches!(
                call.tool_kind,
                ToolKind::Edit | ToolKind::Delete | ToolKind::Move
            );
            let inside = !call.locations.is_empty()
                && call
                    .locations
                    .iter()
                    .all(|l| under_any(&l.path, &[work_dir.display().to_string()]));
            if edit && inside {
                Verdict::Allow
            } else {
                Verdict::Ask
            }
        }
        _ => Verdict::Ask,
    }
}

/// Modes a session may request.
pub const MODES: [&str; 6] = [
    "default",
    "bypassPermissions",
    "plan",
    "acceptEdits",
    "dontAsk",
    "auto",
];

/// Whether `mode` can be emulated when the agent lacks it.
pub fn emulable(mode: &str) -> bool {
    matches!(
        mode,
        "default" | "bypassPermissions" | "acceptEdits" | "dontAsk" | "auto"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_api_types::PermissionRule;
    use aegis_domain::Location;

    #[test]
    fn globs() {
        assert!(glob_match("echo *", "echo hello"));
        assert!(!glob_match("echo *", "echo a/b"));
        assert!(glob_match("echo **", "echo a/b"));
        assert!(glob_match("RM -rf ?", "rm -rf x"));
        assert!(!glob_match("git push*", "git status"));
    }

    fn bash(cmd: &str) -> ToolCall {
        ToolCall {
            tool_call_id: "t".into(),
            title: cmd.into(),
            tool_kind: ToolKind::Execute,
            tool_name: Some("Bash".into()),
            raw_input: Some(serde_json::json!({"command": cmd})),
            ..ToolCall::default()
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let profile = PermissionProfile {
            default_behavior: None,
            rules: vec![
                PermissionRule {
                    tool: "Bash".into(),
                    behavior: RuleBehavior::Deny,
                    pattern: Some("rm **".into()),
                    constraints: None,
                },
                PermissionRule {
                    tool: "kind:execute".into(),
                    behavior: RuleBehavior::Allow,
                    pattern: None,
                    constraints: None,
                },
            ],
        };
        assert_eq!(
            evaluate_profile(&profile, &bash("rm -rf /x")),
            Some(Verdict::Deny)
        );
        assert_eq!(
            evaluate_profile(&profile, &bash("ls")),
            Some(Verdict::Allow)
        );
        let empty = PermissionProfile::default();
        assert_eq!(evaluate_profile(&empty, &bash("ls")), None);
    }

    #[test]
    fn accept_edits_emulation_allows_edits_inside_workdir_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut call = ToolCall {
            tool_kind: ToolKind::Edit,
            locations: vec![Location {
                path: dir.path().join("a.txt").display().to_string(),
                line: None,
            }],
            ..ToolCall::default()
        };
        assert_eq!(
            emulate_mode("acceptEdits", &call, dir.path()),
            Verdict::Allow
        );
        call.locations[0].path = "/etc/passwd".into();
        assert_eq!(emulate_mode("acceptEdits", &call, dir.path()), Verdict::Ask);
        assert_eq!(emulate_mode("dontAsk", &call, dir.path()), Verdict::Deny);
    }
}
