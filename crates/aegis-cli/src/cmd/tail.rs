//! `ag tail <id>`: the last 20 transcript entries, then the session's events live. Resumes a
//! dropped stream with `Last-Event-ID` (no duplicates). Exits 0 when the session ends
//! `completed` or the `--until` condition is met, 5 when it ends `crashed`/`killed`, 8 on
//! `--timeout`; `--json` emits NDJSON envelopes.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

use aegis_client::StreamOptions;
use serde_json::Value;

use super::read::{TextTracker, plan_text, render_entry, tool_line};
use super::{CmdResult, Ctx, Failure, exit};
use crate::TailArgs;

const TERMINAL: [&str; 3] = ["completed", "killed", "crashed"];

fn ended_code(status: &str) -> u8 {
    if status == "completed" {
        exit::OK
    } else {
        exit::SESSION_FAILED
    }
}

pub async fn run(ctx: &Ctx, a: &TailArgs) -> CmdResult {
    let deadline = a
        .timeout
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let client = ctx.connect().await?;
    let id = ctx.resolve_session(&client, &a.id).await?;
    let info = client.get_session(&id).await.map_err(|e| ctx.fail(e))?;
    let json = ctx.json();
    let s = ctx.out;
    let cursor = if a.from_start {
        0
    } else if let Some(since) = a.since {
        since
    } else {
        if !json {
            let page = client
                .transcript_cursor(&id, None, None, Some(20), None)
                .await
                .map_err(|e| ctx.fail(e))?;
            for m in page
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!("{}", render_entry(m, &s));
            }
            let _ = std::io::stdout().flush();
        }
        info.last_event_id
    };
    if a.until.is_some()
        && TERMINAL.contains(&info.status.as_str())
        && a.since.is_none()
        && !a.from_start
    {
        return Ok(ended_code(&info.status));
    }
    // `--until idle` holds once the replay is done (the `connected` frame names the last
    // stored id) and the session is idle.
    let mut last_id = cursor;
    let mut replay_end: Option<u64> = None;
    let opts = StreamOptions {
        after: Some(cursor),
        types: a.types.clone(),
        ..StreamOptions::default()
    };
    let mut stream = client.session_events(&id, opts);
    let mut text = TextTracker::default();
    let mut tools: HashSet<String> = HashSet::new();
    let mut at_line_start = true;
    let mut status = info.status.clone();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let print = |t: &str, at_line_start: &mut bool| {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(t.as_bytes());
        let _ = o.flush();
        if !t.is_empty() {
            *at_line_start = t.ends_with('\n');
        }
    };
    loop {
        let until = deadline.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(86_400 * 365),
            tokio::time::Instant::from_std,
        );
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = tokio::time::sleep_until(until) => {
                if !at_line_start { print("\n", &mut at_line_start); }
                return Err(Failure::new(exit::TIMEOUT, "--timeout elapsed; the session keeps running"));
            }
            _ = &mut ctrl_c => {
                if !at_line_start { print("\n", &mut at_line_start); }
                return Ok(exit::INTERRUPTED);
            }
        };
        let ev = match ev {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                if !at_line_start {
                    print("\n", &mut at_line_start);
                }
                return Ok(ended_code(&status));
            }
            Err(e) => return Err(ctx.fail(e)),
        };
        if json {
            if ev.event != "heartbeat" {
                let line = serde_json::to_string(&ev.envelope).unwrap_or_default();
                print(&format!("{line}\n"), &mut at_line_start);
            }
        } else {
            let data = ev.data();
            let line_out = |l: String, at: &mut bool| {
                if !*at {
                    print("\n", at);
                }
                print(&format!("{l}\n"), at);
            };
            match ev.event.as_str() {
                "message_delta"
                    if data.get("kind").and_then(Value::as_str) == Some("agent_message") =>
                {
                    let entry = data.get("entryId").and_then(Value::as_u64).unwrap_or(0);
                    if let Some(t) = text.delta(
                        entry,
                        data.get("text").and_then(Value::as_str).unwrap_or(""),
                    ) {
                        print(&t, &mut at_line_start);
                    }
                }
                "message" => {
                    let entry = data.get("entryId").and_then(Value::as_u64).unwrap_or(0);
                    match data.get("kind").and_then(Value::as_str).unwrap_or("") {
                        "agent_message" => {
                            if let Some(t) = text.full(
                                entry,
                                data.get("text").and_then(Value::as_str).unwrap_or(""),
                            ) {
                                print(&t, &mut at_line_start);
                            }
                        }
                        "agent_thought" => {}
                        "tool_call" => {
                            let st = data.get("status").and_then(Value::as_str).unwrap_or("");
                            let tid = data
                                .get("toolCallId")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned();
                            if matches!(st, "completed" | "failed") && tools.insert(tid) {
                                line_out(
                                    tool_line(
                                        data.get("title").and_then(Value::as_str).unwrap_or("tool"),
                                        st,
                                        &s,
                                    ),
                                    &mut at_line_start,
                                );
                            }
                        }
                        "plan" => line_out(plan_text(data, &s), &mut at_line_start),
                        _ => line_out(render_entry(data, &s), &mut at_line_start),
                    }
                }
                "status" => {
                    let st = data.get("status").and_then(Value::as_str).unwrap_or("");
                    let reason = data
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    line_out(
                        s.dim(&format!("· status: {st}{reason}")),
                        &mut at_line_start,
                    );
                }
                "approval" => {
                    let title = data
                        .pointer("/permission/toolCall/title")
                        .and_then(Value::as_str)
                        .unwrap_or("a tool call");
                    line_out(
                        s.yellow(&format!(
                            "? approval needed: {title} — ag approve {0} / ag reject {0}",
                            crate::ui::id8(&id)
                        )),
                        &mut at_line_start,
                    );
                }
                "ended" => {
                    let st = data.get("status").and_then(Value::as_str).unwrap_or("");
                    line_out(s.dim(&format!("· session ended: {st}")), &mut at_line_start);
                }
                _ => {}
            }
        }
        if let Some(i) = ev.id {
            last_id = last_id.max(i);
        }
        if ev.event == "connected" {
            replay_end = Some(
                ev.data()
                    .get("lastEventId")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            );
        }
        if ev.event == "status"
            && let Some(st) = ev.data().get("status").and_then(Value::as_str)
        {
            status = st.to_owned();
        }
        if a.until.as_deref() == Some("idle")
            && status == "idle"
            && replay_end.is_some_and(|e| last_id >= e)
        {
            if !at_line_start {
                print("\n", &mut at_line_start);
            }
            return Ok(exit::OK);
        }
        if ev.event == "ended" {
            let st = ev
                .data()
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if !at_line_start {
                print("\n", &mut at_line_start);
            }
            return Ok(ended_code(&st));
        }
    }
}
