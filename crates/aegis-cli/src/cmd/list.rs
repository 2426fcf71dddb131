//! `ag list`: the sessions as a table `ID NAME STATUS AGENT AGE PENDING WORKDIR`.

use aegis_client::ListQuery;

use super::{CmdResult, Ctx, Failure, exit, print_json};
use crate::ListArgs;
use crate::ui::{age, id8, table, truncate};

pub async fn run(ctx: &Ctx, a: &ListArgs) -> CmdResult {
    let client = ctx.connect().await?;
    let work_dir = match &a.cwd {
        Some(p) => Some(
            std::fs::canonicalize(p)
                .map_err(|e| Failure::new(exit::USAGE, format!("--cwd {}: {e}", p.display())))?
                .to_string_lossy()
                .into_owned(),
        ),
        None => None,
    };
    let q = ListQuery {
        status: if a.all {
            None
        } else {
            Some(a.status.clone().unwrap_or_else(|| "active".to_owned()))
        },
        work_dir,
        agent: a.agent.clone(),
        ..ListQuery::default()
    };
    let max = usize::try_from(a.limit).unwrap_or(1000);
    let sessions = client
        .list_sessions_up_to(&q, max)
        .await
        .map_err(|e| ctx.fail(e))?;
    if ctx.json() {
        print_json(&serde_json::json!({ "sessions": sessions }))?;
        return Ok(exit::OK);
    }
    if sessions.is_empty() {
        let what = if a.all { "" } else { " matching" };
        eprintln!(
            "No{what} sessions{}. Start one with: ag run \"<brief>\"",
            if a.all {
                ""
            } else {
                " (use --all for ended ones)"
            }
        );
        return Ok(exit::OK);
    }
    let s = &ctx.out;
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|x| {
            let pending = x.pending_permissions.len() + usize::from(x.pending_question.is_some());
            vec![
                if a.full_ids {
                    x.id.clone()
                } else {
                    id8(&x.id).to_owned()
                },
                truncate(&x.name, 32),
                x.status.clone(),
                x.agent.clone(),
                age(x.created_at),
                if pending > 0 {
                    pending.to_string()
                } else {
                    "-".to_owned()
                },
                x.work_dir.clone(),
            ]
        })
        .collect();
    let text = table(
        &["ID", "NAME", "STATUS", "AGENT", "AGE", "PENDING", "WORKDIR"],
        &rows,
    );
    if s.enabled {
        // Colour the status column after alignment (escape codes have no width).
        for (line, x) in text
            .lines()
            .zip(std::iter::once(None).chain(sessions.iter().map(Some)))
        {
            match x {
                Some(x) => println!(
                    "{}",
                    line.replacen(
                        &format!("  {}  ", x.status),
                        &format!("  {}  ", s.status(&x.status)),
                        1
                    )
                ),
                None => println!("{}", s.bold(line)),
            }
        }
    } else {
        print!("{text}");
    }
    Ok(exit::OK)
}
