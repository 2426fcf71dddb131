//! `ag send <id> <text | ->`: enqueue a prompt; prints `Delivered` or `Queued (position N)`.

use std::io::Read as _;

use super::{CmdResult, Ctx, Failure, exit, print_json};
use crate::SendArgs;

pub async fn run(ctx: &Ctx, a: &SendArgs) -> CmdResult {
    let text = if a.text.len() == 1 && a.text[0] == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::new(exit::FAILURE, format!("cannot read stdin: {e}")))?;
        s
    } else {
        a.text.join(" ")
    };
    if text.trim().is_empty() {
        return Err(Failure::new(exit::USAGE, "the text is empty"));
    }
    let client = ctx.connect().await?;
    let id = ctx.resolve_session(&client, &a.id).await?;
    let r = client.send(&id, &text).await.map_err(|e| ctx.fail(e))?;
    if ctx.json() {
        print_json(&r)?;
    } else if r.delivered {
        println!("Delivered");
    } else {
        println!("Queued (position {})", r.position);
    }
    Ok(exit::OK)
}
