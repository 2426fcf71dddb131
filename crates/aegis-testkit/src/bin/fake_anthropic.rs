//! Run the fake Anthropic Messages API by hand: `aegis-fake-anthropic [--port N] [--quiet]`.
//!
//! Prints `listening on http://127.0.0.1:PORT` on stdout, logs each request to stderr (unless
//! `--quiet`), and runs until interrupted.

use std::io::Write as _;
use std::process::ExitCode;

use aegis_testkit::fake_anthropic::{FakeAnthropic, FakeAnthropicOptions};

const USAGE: &str = "usage: aegis-fake-anthropic [--port N] [--quiet]   (port 0 = any free port)";

fn parse_args() -> Result<FakeAnthropicOptions, String> {
    let mut options = FakeAnthropicOptions {
        port: 0,
        log_to_stderr: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" | "-p" => {
                let value = args.next().ok_or("--port needs a value")?;
                options.port = value
                    .parse()
                    .map_err(|_| format!("invalid port: {value}"))?;
            }
            _ if arg.starts_with("--port=") => {
                let value = &arg["--port=".len()..];
                options.port = value
                    .parse()
                    .map_err(|_| format!("invalid port: {value}"))?;
            }
            "--quiet" | "-q" => options.log_to_stderr = false,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(options)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("aegis-fake-anthropic: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeAnthropic::start_with(options).await {
        Ok(fake) => fake,
        Err(error) => {
            eprintln!("aegis-fake-anthropic: cannot listen: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", fake.base_url());
    let _ = std::io::stdout().flush();
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("aegis-fake-anthropic: cannot wait for Ctrl-C: {error}");
        return ExitCode::FAILURE;
    }
    drop(fake);
    ExitCode::SUCCESS
}
