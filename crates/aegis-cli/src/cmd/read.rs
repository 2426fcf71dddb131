//! `ag read <id>`: the transcript — the last 50 entries by default, `--all`, or the entries
//! changed after an event id (`--after`, printing the next cursor).

use serde_json::{Value, json};

use super::{CmdResult, Ctx, exit, print_json};
use crate::ReadArgs;
use crate::ui::Style;

pub async fn run(ctx: &Ctx, a: &ReadArgs) -> CmdResult {
    let client = ctx.connect().await?;
    let id = ctx.resolve_session(&client, &a.id).await?;
    let kinds: Option<Vec<String>> = a.kinds.as_ref().map(|k| {
        k.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    if let Some(after) = a.after {
        let r = client
            .read(&id, Some(after), a.limit)
            .await
            .map_err(|e| ctx.fail(e))?;
        let mut messages: Vec<Value> = r
            .messages
            .iter()
            .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
            .collect();
        if let Some(k) = &kinds {
            messages.retain(|m| kind_in(m, k));
        }
        if ctx.json() {
            print_json(
                &json!({"messages": messages, "status": r.status, "cursor": r.cursor, "hasMore": r.has_more}),
            )?;
        } else {
            for m in &messages {
                println!("{}", render_entry(m, &ctx.out));
            }
            println!(
                "Next cursor: {} (ag read {} --after {})",
                r.cursor.next, &a.id, r.cursor.next
            );
        }
        return Ok(exit::OK);
    }
    let kind = kinds.as_ref().map(|k| k.join(","));
    let mut messages: Vec<Value> = Vec::new();
    if a.all {
        let mut after = 0;
        loop {
            let page = client
                .transcript_cursor(&id, None, Some(after), Some(200), kind.as_deref())
                .await
                .map_err(|e| ctx.fail(e))?;
            let batch = page
                .get("messages")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let newest = batch
                .iter()
                .filter_map(|m| {
                    m.get("_cursor_id")
                        .or_else(|| m.get("entryId"))
                        .and_then(Value::as_u64)
                })
                .max();
            messages.extend(batch);
            let more = page
                .get("has_more")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match newest {
                Some(n) if more && n > after => after = n,
                _ => break,
            }
        }
    } else {
        let page = client
            .transcript_cursor(
                &id,
                None,
                None,
                Some(a.limit.unwrap_or(50).min(200)),
                kind.as_deref(),
            )
            .await
            .map_err(|e| ctx.fail(e))?;
        messages = page
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
    }
    if ctx.json() {
        print_json(&json!({ "messages": messages }))?;
    } else if messages.is_empty() {
        eprintln!("(no transcript entries yet)");
    } else {
        for m in &messages {
            println!("{}", render_entry(m, &ctx.out));
        }
    }
    Ok(exit::OK)
}

fn kind_in(m: &Value, kinds: &[String]) -> bool {
    m.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| kinds.iter().any(|x| x == k))
}

/// One transcript entry as text.
pub fn render_entry(m: &Value, s: &Style) -> String {
    let g = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    let text = g("text");
    match g("kind") {
        "user_message" => format!("{} {text}", s.bold(&s.cyan("›"))),
        "agent_message" => text.to_owned(),
        "agent_thought" => s.dim(&format!("(thinking) {text}")),
        "tool_call" => tool_line(g("title"), g("status"), s),
        "plan" => plan_text(m, s),
        "permission" => {
            let decision = m
                .pointer("/decision/outcome")
                .and_then(Value::as_str)
                .unwrap_or(g("status"));
            s.yellow(&format!("? permission: {} — {decision}", g("title")))
        }
        "question" => s.yellow(&format!("? question: {} — {}", g("message"), g("status"))),
        "usage" => s.dim(&usage_line(m)),
        "system" => s.dim(&format!(
            "· {}",
            if text.is_empty() { g("subtype") } else { text }
        )),
        other => format!("[{other}] {text}"),
    }
}

/// `⚙ <title> — <status>`.
pub fn tool_line(title: &str, status: &str, s: &Style) -> String {
    let st = match status {
        "completed" => s.green(status),
        "failed" => s.red(status),
        other => s.dim(other),
    };
    format!("⚙ {title} — {st}")
}

/// A plan entry as a checklist.
pub fn plan_text(m: &Value, s: &Style) -> String {
    let mut out = String::from("Plan:");
    for e in m
        .get("entries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mark = match e.get("status").and_then(Value::as_str) {
            Some("completed") => "[x]",
            Some("in_progress") => "[~]",
            _ => "[ ]",
        };
        out.push_str(&format!(
            "\n  {mark} {}",
            e.get("content").and_then(Value::as_str).unwrap_or("")
        ));
    }
    s.cyan(&out)
}

/// Token usage and cost, from a usage object (transcript entry or turn event).
pub fn usage_line(u: &Value) -> String {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut line = format!(
        "Usage: {} input / {} output tokens",
        n("inputTokens"),
        n("outputTokens")
    );
    let cache = n("cacheCreationTokens") + n("cacheReadTokens");
    if cache > 0 {
        line.push_str(&format!(" (+{cache} cache)"));
    }
    if let Some(c) = u.get("costUsd").and_then(Value::as_f64) {
        line.push_str(&format!(", cost {}", crate::ui::usd(c)));
        if u.get("costSource").and_then(Value::as_str) == Some("estimated") {
            line.push_str(" (estimated)");
        }
    }
    line
}

/// Live agent text from `message_delta` chunks and `message` revisions, printed once: keeps
/// per entry the text shown and the text accumulated from deltas, and yields only the part
/// not shown yet (replayed revisions and live deltas may overlap).
#[derive(Debug, Default)]
pub struct TextTracker {
    shown: std::collections::HashMap<u64, String>,
    deltas: std::collections::HashMap<u64, String>,
}

impl TextTracker {
    /// A live chunk of entry `entry`; returns the text to print.
    pub fn delta(&mut self, entry: u64, chunk: &str) -> Option<String> {
        let acc = self.deltas.entry(entry).or_default();
        acc.push_str(chunk);
        let acc = acc.clone();
        self.full(entry, &acc)
    }

    /// The entry's text so far (a `message` revision); returns the text to print.
    pub fn full(&mut self, entry: u64, text: &str) -> Option<String> {
        let shown = self.shown.entry(entry).or_default();
        if text.len() > shown.len() && text.starts_with(shown.as_str()) {
            let extra = text[shown.len()..].to_owned();
            *shown = text.to_owned();
            Some(extra)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_printed_once() {
        let mut t = TextTracker::default();
        // revision 1 (first chunk) arrives before the delta of the same chunk
        assert_eq!(t.full(1, "Hel").as_deref(), Some("Hel"));
        assert_eq!(t.delta(1, "Hel"), None);
        assert_eq!(t.delta(1, "lo").as_deref(), Some("lo"));
        assert_eq!(t.full(1, "Hello"), None);
        // deltas first, then the final revision
        assert_eq!(t.delta(2, "a").as_deref(), Some("a"));
        assert_eq!(t.full(2, "ab").as_deref(), Some("b"));
        // missed deltas: the final revision fills the gap
        assert_eq!(t.full(3, "x").as_deref(), Some("x"));
        assert_eq!(t.delta(3, "z"), None);
        assert_eq!(t.full(3, "xyz").as_deref(), Some("yz"));
    }
}
