//! `aegis-scripted-agent`: a fast, deterministic ACP v1 agent for tests and benchmarks.
//! See `src/scripted/mod.rs` for the behaviour and keyword table.

#[path = "../scripted/mod.rs"]
mod scripted;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let code = match scripted::run().await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "{}: {} ({})",
                scripted::AGENT_NAME,
                e.message,
                e.code.value()
            );
            1
        }
    };
    std::process::exit(code);
}
