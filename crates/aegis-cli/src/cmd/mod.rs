//! The client commands (cli-mcp-config §1.4), one module each, and what they share: the
//! resolved server URL and credential, exit codes (§1.3), session id resolution.

pub mod create;
pub mod doctor;
pub mod init;
pub mod list;
pub mod pipeline;
pub mod read;
pub mod run;
pub mod send;
pub mod session;
pub mod status;
pub mod stop;
pub mod tail;

use std::path::PathBuf;
use std::process::ExitCode;

use aegis_client::{Client, ClientError, ListQuery};

use crate::config::{self, ClientConfig, TokenSource};
use crate::ui::{self, Style};

/// Exit codes (cli-mcp-config §1.3).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const AUTH: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
    pub const SESSION_FAILED: u8 = 5;
    pub const NOT_FOUND: u8 = 6;
    pub const CONFLICT: u8 = 7;
    pub const TIMEOUT: u8 = 8;
    pub const INTERRUPTED: u8 = 130;
}

/// Global flags (§1.1).
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub config: Option<PathBuf>,
    pub url: Option<String>,
    pub port: Option<u16>,
    pub json: bool,
    pub no_color: bool,
}

/// A command's failure: the exit code and the message for stderr (may be empty).
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Exit with `code` without printing anything more.
    pub fn silent(code: u8) -> Self {
        Failure::new(code, "")
    }
}

/// What a command returns: its exit code, or a failure.
pub type CmdResult = Result<u8, Failure>;

/// Print the failure (if any) and turn the result into the process exit code.
pub fn finish(r: CmdResult) -> ExitCode {
    match r {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if !f.message.is_empty() {
                let style = Style::new(ui::stderr_tty(), false);
                let mut lines = f.message.lines();
                if let Some(first) = lines.next() {
                    eprintln!("{} {first}", style.red("error:"));
                }
                for l in lines {
                    eprintln!("{l}");
                }
            }
            ExitCode::from(f.code)
        }
    }
}

/// Everything a client command needs.
pub struct Ctx {
    pub global: Global,
    pub cfg: ClientConfig,
    pub base_url: String,
    pub token: Option<(String, TokenSource)>,
    /// Styling of stdout.
    pub out: Style,
    /// Styling of stderr.
    pub err: Style,
}

impl Ctx {
    /// Resolve config, URL and credential; print config warnings on stderr.
    pub fn new(global: &Global) -> Ctx {
        let cfg = config::load_for_client(global.config.as_deref());
        for w in &cfg.warnings {
            eprintln!("warning: {w}");
        }
        let base_url = config::client_url(&cfg.config, global.url.as_deref(), global.port);
        let token = config::client_token(&cfg.config);
        Ctx {
            out: Style::new(ui::stdout_tty(), global.no_color),
            err: Style::new(ui::stderr_tty(), global.no_color),
            global: global.clone(),
            cfg,
            base_url,
            token,
        }
    }

    pub fn json(&self) -> bool {
        self.global.json
    }

    /// A client for the resolved URL (no request made).
    pub fn client(&self) -> Result<Client, Failure> {
        Client::new(&self.base_url, self.token.as_ref().map(|(t, _)| t.clone()))
            .map_err(|e| Failure::new(exit::USAGE, e.to_string()))
    }

    /// A client after a successful health check (unreachable → exit 4).
    pub async fn connect(&self) -> Result<Client, Failure> {
        let c = self.client()?;
        c.health().await.map_err(|e| self.fail(e))?;
        Ok(c)
    }

    /// Where a token can be configured, for messages.
    fn token_hint(&self) -> String {
        let file = self.cfg.file.as_ref().map_or_else(
            || "~/.aegis/config.yaml".to_owned(),
            |f| f.display().to_string(),
        );
        match &self.token {
            Some((_, src)) => format!(
                "The server refused the token from {}. Set AEGIS_AUTH_TOKEN or run ag login (or fix clientAuthToken in {file}).",
                src.describe()
            ),
            None => format!(
                "No token was sent. Set AEGIS_AUTH_TOKEN or run ag login (or put clientAuthToken in {file})."
            ),
        }
    }

    /// Map a client error to its exit code and message (§1.2, §1.3).
    pub fn fail(&self, e: ClientError) -> Failure {
        match &e {
            ClientError::Unreachable { .. }
            | ClientError::NotAegis { .. }
            | ClientError::Timeout { .. }
            | ClientError::StreamLost { .. } => Failure::new(
                exit::UNREACHABLE,
                format!(
                    "{e}\nIs the server running? Start it with `ag` (foreground) or use `ag run \"…\"`, which starts it for you."
                ),
            ),
            ClientError::Api {
                status,
                body,
                retry_after,
            } => {
                let with_id = |m: String| {
                    if body.request_id.is_empty() {
                        m
                    } else {
                        format!("{m} (request id {})", body.request_id)
                    }
                };
                match status {
                    401 | 403 => Failure::new(
                        exit::AUTH,
                        format!(
                            "{} ({status} {})\n{}",
                            body.message,
                            body.code,
                            self.token_hint()
                        ),
                    ),
                    404 => {
                        Failure::new(exit::NOT_FOUND, format!("{} ({})", body.message, body.code))
                    }
                    409 => {
                        Failure::new(exit::CONFLICT, format!("{} ({})", body.message, body.code))
                    }
                    400 | 413 | 415 | 422 => {
                        let mut m = format!("{} ({})", body.message, body.code);
                        if let Some(d) = body.details.as_ref().and_then(|d| d.as_array()) {
                            for issue in d {
                                let path = issue.get("path").and_then(|v| v.as_str()).unwrap_or("");
                                let msg =
                                    issue.get("message").and_then(|v| v.as_str()).unwrap_or("");
                                if !msg.is_empty() {
                                    m.push_str(&format!("\n  {path}: {msg}"));
                                }
                            }
                        }
                        if *status == 400 && body.code == "INVALID_SESSION_ID" {
                            return Failure::new(exit::NOT_FOUND, m);
                        }
                        Failure::new(exit::USAGE, m)
                    }
                    429 => Failure::new(
                        exit::FAILURE,
                        format!(
                            "{} ({}){}",
                            body.message,
                            body.code,
                            retry_after
                                .map(|s| format!("; retry in {s} s"))
                                .unwrap_or_default()
                        ),
                    ),
                    _ => Failure::new(
                        exit::FAILURE,
                        with_id(format!("{} ({status} {})", body.message, body.code)),
                    ),
                }
            }
            ClientError::InvalidUrl { .. } => Failure::new(exit::USAGE, e.to_string()),
            ClientError::Decode { .. } => Failure::new(exit::FAILURE, e.to_string()),
        }
    }

    /// Resolve a session argument: a full UUID, or a unique prefix of ≥ 4 hex characters
    /// (`GET /v1/sessions?idPrefix=`). No match / several → exit 6 with the candidates.
    pub async fn resolve_session(&self, client: &Client, arg: &str) -> Result<String, Failure> {
        let a = arg.trim().to_lowercase();
        if is_uuid(&a) {
            return Ok(a);
        }
        let hexish = a.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        let hex_count = a.chars().filter(char::is_ascii_hexdigit).count();
        if !hexish || hex_count < 4 {
            return Err(Failure::new(
                exit::NOT_FOUND,
                format!(
                    "'{arg}' is not a session id: give a full id or at least 4 hex characters of one (see `ag list --all`)"
                ),
            ));
        }
        let q = ListQuery {
            id_prefix: Some(a.clone()),
            limit: Some(100),
            ..ListQuery::default()
        };
        let list = match client.list_sessions(&q).await {
            Ok(l) => l.sessions,
            Err(ClientError::Api {
                status: 400, body, ..
            }) => {
                return Err(Failure::new(
                    exit::NOT_FOUND,
                    format!("'{arg}' is not a valid session id prefix: {}", body.message),
                ));
            }
            Err(e) => return Err(self.fail(e)),
        };
        match list.as_slice() {
            [] => Err(Failure::new(
                exit::NOT_FOUND,
                format!("no session id starts with '{arg}' (see `ag list --all`)"),
            )),
            [one] => Ok(one.id.clone()),
            many => {
                let mut m = format!(
                    "'{arg}' matches {} sessions; give more characters:",
                    many.len()
                );
                for s in many.iter().take(20) {
                    m.push_str(&format!("\n  {}  {}  {}", s.id, s.name, s.status));
                }
                Err(Failure::new(exit::NOT_FOUND, m))
            }
        }
    }
}

/// True for a canonical UUID (8-4-4-4-12 hex).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// A single-threaded async runtime for a client command.
pub fn block_on<F: std::future::Future<Output = CmdResult>>(f: F) -> CmdResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    let r = rt.block_on(f);
    // A blocking stdin read (an approval prompt abandoned by Ctrl-C) must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    r
}

/// Run a client command.
pub fn dispatch(global: Global, command: crate::Command) -> ExitCode {
    use crate::Command as C;
    let ctx = Ctx::new(&global);
    let r = block_on(async {
        match command {
            C::Run(a) => run::run(&ctx, a).await,
            C::Create(a) => create::run(&ctx, &a).await,
            C::List(a) => list::run(&ctx, &a).await,
            C::Status(a) => status::run(&ctx, &a).await,
            C::Read(a) => read::run(&ctx, &a).await,
            C::Tail(a) => tail::run(&ctx, &a).await,
            C::Send(a) => send::run(&ctx, &a).await,
            C::Approve(a) => session::approve(&ctx, &a).await,
            C::Reject(a) => session::reject(&ctx, &a).await,
            C::Interrupt(a) => session::interrupt(&ctx, &a).await,
            C::Kill(a) => session::kill(&ctx, &a).await,
            C::Stop(a) => stop::run(&ctx, &a).await,
            C::Doctor(a) => doctor::run(&ctx, &a).await,
            C::Pipeline(a) => pipeline::run(&ctx, &a).await,
            _ => Err(Failure::new(exit::USAGE, "unexpected command")),
        }
    });
    finish(r)
}

/// The real path of `--cwd` (default: the current directory) as a UTF-8 string.
pub fn work_dir(cwd: Option<&std::path::Path>) -> Result<String, Failure> {
    let p = match cwd {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir().map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot read the current directory: {e}"),
            )
        })?,
    };
    let real = std::fs::canonicalize(&p)
        .map_err(|e| Failure::new(exit::USAGE, format!("--cwd {}: {e}", p.display())))?;
    if !real.is_dir() {
        return Err(Failure::new(
            exit::USAGE,
            format!("--cwd {} is not a directory", real.display()),
        ));
    }
    real.to_str().map(str::to_owned).ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            format!("{} is not valid UTF-8", real.display()),
        )
    })
}

/// Print a JSON document on stdout (pretty).
pub fn print_json(v: &impl serde::Serialize) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot render JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(is_uuid("3f1c2b9e-5d4a-4c1e-9a7b-2e8f6d0c1a2b"));
        assert!(!is_uuid("3f1c2b9e"));
        assert!(!is_uuid("3f1c2b9e-5d4a-4c1e-9a7b-2e8f6d0c1a2g"));
    }
}
