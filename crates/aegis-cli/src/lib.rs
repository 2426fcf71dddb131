//! The `ag` command line (alias `aegis`): the server (`ag` / `ag serve`) and the clients of its
//! REST API (cli-mcp-config §1). The clap definitions live here; each command is a module of
//! [`cmd`].

pub mod auth_config;
pub mod cmd;
pub mod cmd_keys;
pub mod config;
pub mod daemon;
pub mod mcp;
pub mod serve;
pub mod ui;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, CommandFactory as _, Parser, Subcommand};

/// `ag --version`: `ag <version> (<git sha>, ACP protocol 1)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("AEGIS_GIT_SHA"),
    ", ACP protocol 1)"
);

/// Permission modes accepted by `--permission-mode` (api §2.5).
pub const PERMISSION_MODES: [&str; 6] = [
    "default",
    "bypassPermissions",
    "plan",
    "acceptEdits",
    "dontAsk",
    "auto",
];

/// Every command word (cli-mcp-config §1.1), for dispatch and "did you mean".
pub const COMMANDS: &[&str] = &[
    "serve",
    "run",
    "init",
    "create",
    "list",
    "status",
    "read",
    "tail",
    "send",
    "approve",
    "reject",
    "interrupt",
    "kill",
    "stop",
    "doctor",
    "login",
    "logout",
    "whoami",
    "mcp",
    "keys",
    "audit",
    "pipeline",
    "help",
    "completions",
];

/// Aegis: a self-hosted control plane for coding-agent sessions.
///
/// `ag` with no command runs the server in the foreground (= `ag serve`).
/// `ag "<brief>"` (quoted text) is `ag create "<brief>"`.
#[derive(Parser, Debug)]
#[command(
    name = "ag",
    version = VERSION,
    disable_version_flag = true,
    after_help = "Start here: ag run \"Analyze this project and list the main technologies.\" --cwd /path/to/project"
)]
pub struct Cli {
    /// Print the version.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
    /// Config file (default: ./.aegis/config.yaml, then ~/.aegis/config.yaml, ...; AEGIS_CONFIG).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// Server base URL for client commands (default from AEGIS_BASE_URL / the config).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "URL"
    )]
    pub url: Option<String>,
    /// Client commands: the server at http://127.0.0.1:N; `serve`: the listen port.
    #[arg(long, global = true, help_heading = "Global options", value_name = "N")]
    pub port: Option<u16>,
    /// Machine-readable output (one JSON document; streams: NDJSON).
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// JSON log lines on stderr (server).
    #[arg(long, global = true, help_heading = "Global options")]
    pub json_logs: bool,
    /// No colours (also: NO_COLOR).
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_color: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server in the foreground (the default when no command is given).
    Serve {
        /// Bind address (default 127.0.0.1; AEGIS_HOST).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
    /// One shot: ensure a server runs, create a session with the brief, stream it to the end.
    Run(RunArgs),
    /// Write a config file, or scaffold a starter session template (--list-templates,
    /// --from-template NAME); never overwrites a file without --overwrite.
    Init(InitArgs),
    /// Create a session and print its id and the next steps.
    Create(CreateArgs),
    /// List sessions (default: live ones).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Server status, or one session's status.
    Status(StatusArgs),
    /// Print a session's transcript.
    Read(ReadArgs),
    /// Follow a session's events live.
    Tail(TailArgs),
    /// Send a prompt to a session (`-` reads it from stdin).
    Send(SendArgs),
    /// Approve a session's pending permission request.
    Approve(ApproveArgs),
    /// Reject a session's pending permission request.
    Reject(RejectArgs),
    /// Cancel a session's running turn.
    Interrupt(IdArg),
    /// Kill a session.
    Kill(IdArg),
    /// Stop a running server.
    Stop(StopArgs),
    /// Check the environment: config, state dir, port, server, agents, Claude auth, Node.js.
    Doctor(DoctorArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// OIDC device-flow login (not available in this build yet).
    #[command(hide = true)]
    Login(Rest),
    #[command(hide = true)]
    Logout(Rest),
    #[command(hide = true)]
    Whoami(Rest),
    /// MCP server over stdio (register: claude mcp add aegis -- ag mcp).
    Mcp(mcp::McpArgs),
    /// API keys: list, create, revoke, rotate (`ag keys --help`).
    #[command(disable_help_flag = true)]
    Keys(Rest),
    /// The audit log: verify its hash chain (`ag audit verify`).
    #[command(disable_help_flag = true)]
    Audit(Rest),
    /// Pipelines: create (from a YAML/JSON file), list, show, cancel, resume, approve.
    Pipeline(cmd::pipeline::PipelineArgs),
}

/// Arguments of commands this build does not have yet.
#[derive(Args, Debug)]
pub struct Rest {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The brief (words are joined).
    #[arg(value_name = "BRIEF")]
    pub brief: Vec<String>,
    /// Working directory (default: the current directory); sent as its real path.
    #[arg(long, value_name = "PATH")]
    pub cwd: Option<PathBuf>,
    /// Create the session, print its id and curl next steps, and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// Model for this session ([provider/]model).
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,
    /// Display name of the session.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Quiet and non-interactive: no status lines, never prompts.
    #[arg(long)]
    pub yes: bool,
    /// Auto-approve every permission request (permissionMode: bypassPermissions).
    #[arg(
        short = 'y',
        long = "accept-permissions",
        conflicts_with = "permission_mode"
    )]
    pub accept_permissions: bool,
    /// Explicit permission mode.
    #[arg(long, value_name = "MODE", value_parser = PERMISSION_MODES)]
    pub permission_mode: Option<String>,
    /// Configured agent (default: the config's defaultAgent).
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// Stop waiting after this many seconds (exit 8; the session keeps running).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// Default model ([provider/]model) → defaultModel.
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,
    /// Default session name → defaultSessionName.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Bind address (default 127.0.0.1).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Create a master token even on a loopback host.
    #[arg(long)]
    pub force: bool,
    /// Replace an existing file (it is first copied to <path>.bak).
    #[arg(long)]
    pub overwrite: bool,
    /// Non-interactive: defaults for everything not given.
    #[arg(long)]
    pub yes: bool,
    /// Print the starter session templates (name and description) and exit.
    #[arg(long, conflicts_with = "from_template")]
    pub list_templates: bool,
    /// Scaffold a starter template instead of a config: writes
    /// <DIR>/.aegis/templates/NAME.yaml (a POST /v1/templates body, workDir = DIR; never
    /// overwritten without --overwrite). With --register it is also created on the running
    /// server (POST /v1/templates).
    #[arg(long, value_name = "NAME")]
    pub from_template: Option<String>,
    /// With --from-template: the target directory (default: the current directory).
    #[arg(long, value_name = "DIR", requires = "from_template")]
    pub cwd: Option<PathBuf>,
    /// With --from-template: also create the template on the running server (exit 4 if none).
    #[arg(long, requires = "from_template")]
    pub register: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// The brief (words are joined).
    #[arg(value_name = "BRIEF")]
    pub brief: Vec<String>,
    /// Working directory (default: the current directory).
    #[arg(long, value_name = "PATH")]
    pub cwd: Option<PathBuf>,
    /// Display name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Model ([provider/]model).
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,
    /// Configured agent.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// Explicit permission mode.
    #[arg(long, value_name = "MODE", value_parser = PERMISSION_MODES)]
    pub permission_mode: Option<String>,
    /// Auto-approve every permission request (permissionMode: bypassPermissions).
    #[arg(
        short = 'y',
        long = "accept-permissions",
        conflicts_with = "permission_mode"
    )]
    pub accept_permissions: bool,
    /// Always create a new session (no reuse of an idle one).
    #[arg(long)]
    pub no_reuse: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Status filter: names, comma lists, groups active/waiting/ended (default active).
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// Every status.
    #[arg(long, conflicts_with = "status")]
    pub all: bool,
    /// Only sessions in this directory or below.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Only sessions of this agent.
    #[arg(long, value_name = "A")]
    pub agent: Option<String>,
    /// At most this many sessions (default 100, max 1000).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    /// Show full session ids.
    #[arg(long)]
    pub full_ids: bool,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// Session id or unique prefix (≥ 4 hex chars); without it, the server status.
    #[arg(value_name = "ID")]
    pub id: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Session id or unique prefix.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Every entry.
    #[arg(long, conflicts_with = "after")]
    pub all: bool,
    /// Entries changed after this event id (prints the next cursor).
    #[arg(long, value_name = "EVENTID")]
    pub after: Option<u64>,
    /// Number of entries (default 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: Option<u64>,
    /// Only these kinds (comma list: agent_message, tool_call, ...).
    #[arg(long, value_name = "K,…")]
    pub kinds: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TailArgs {
    /// Session id or unique prefix.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Replay events after this event id, then follow.
    #[arg(long, value_name = "EVENTID", conflicts_with = "from_start")]
    pub since: Option<u64>,
    /// Replay every event from the start, then follow.
    #[arg(long)]
    pub from_start: bool,
    /// Only these event types (comma list).
    #[arg(long, value_name = "T,…")]
    pub types: Option<String>,
    /// Stop when the session becomes idle or ends.
    #[arg(long, value_name = "COND", value_parser = ["idle", "ended"])]
    pub until: Option<String>,
    /// Stop after this many seconds (exit 8).
    #[arg(long, value_name = "S")]
    pub timeout: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// Session id or unique prefix.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The text (words are joined); `-` reads it from stdin.
    #[arg(value_name = "TEXT", required = true)]
    pub text: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ApproveArgs {
    /// Session id or unique prefix.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The request to answer (default: the oldest pending).
    #[arg(long = "request", value_name = "RID")]
    pub request: Option<String>,
    /// The option to choose (default: allow once).
    #[arg(long = "option", value_name = "OPTIONID")]
    pub option: Option<String>,
    /// Choose "allow always".
    #[arg(long)]
    pub always: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RejectArgs {
    /// Session id or unique prefix.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The request to answer (default: the oldest pending).
    #[arg(long = "request", value_name = "RID")]
    pub request: Option<String>,
    /// Choose "reject always".
    #[arg(long)]
    pub always: bool,
    /// Reason, stored with the decision.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct IdArg {
    /// Session id or unique prefix (≥ 4 hex chars).
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct StopArgs {
    /// Also stop every live session (shutdown policy `stop`; default `detach`).
    #[arg(long)]
    pub stop_sessions: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Also probe the agents over ACP (through the server when it runs).
    #[arg(long)]
    pub deep: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// bash, zsh or fish (also elvish, powershell).
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// The first argument that is not a flag (or a global flag's value), with its index.
fn first_word(args: &[OsString]) -> Option<(usize, String)> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--" {
            return None;
        }
        if a.starts_with('-') && a.len() > 1 {
            if matches!(a.as_ref(), "--config" | "--url" | "--port") {
                i += 1;
            }
            i += 1;
            continue;
        }
        return Some((i, a.into_owned()));
    }
    None
}

/// Rewrite the argument list per §1.1: a first word with whitespace is a brief for `create`;
/// any other unknown first word is an error (`Err` holds the message for stderr).
pub fn preprocess(mut args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some((i, word)) = first_word(&args) else {
        return Ok(args);
    };
    if COMMANDS.contains(&word.as_str()) || word == "ls" {
        return Ok(args);
    }
    if word.chars().any(char::is_whitespace) {
        args.insert(i, OsString::from("create"));
        return Ok(args);
    }
    let words: Vec<String> = args[i..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .take_while(|a| !a.starts_with('-'))
        .collect();
    let mut msg = format!("error: unknown command '{word}'.");
    if let Some(s) = config::suggest(&word, COMMANDS) {
        msg.push_str(&format!(" Did you mean '{s}'?"));
    }
    msg.push_str(&format!(
        "\nTo start a session, quote the brief: ag \"{}\"  — or use: ag run \"…\" / ag create \"…\"",
        words.join(" ")
    ));
    Err(msg)
}

/// Entry point shared by the `ag` and `aegis` binaries.
pub fn main_entry() -> ExitCode {
    let args = match preprocess(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 2,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let global = cmd::Global {
        config: cli.config.clone(),
        url: cli.url.clone(),
        port: cli.port,
        json: cli.json,
        no_color: cli.no_color,
    };
    let Some(command) = cli.command else {
        return serve::run(serve::ServeArgs {
            config: cli.config,
            port: cli.port,
            host: None,
            json_logs: cli.json_logs,
        });
    };
    match command {
        Command::Serve { host } => serve::run(serve::ServeArgs {
            config: cli.config,
            port: cli.port,
            host,
            json_logs: cli.json_logs,
        }),
        Command::Init(a) => cmd::finish(cmd::init::run(&global, &a)),
        Command::Completions(a) => {
            let mut command = Cli::command();
            clap_complete::generate(a.shell, &mut command, "ag", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Mcp(a) => mcp::run(&global, &a),
        Command::Keys(r) => cmd_keys::keys(&global, &r.rest),
        Command::Audit(r) => cmd_keys::audit(&global, &r.rest),
        Command::Login(_) | Command::Logout(_) | Command::Whoami(_) => {
            eprintln!("error: this command is not available in this build of ag yet");
            ExitCode::from(2)
        }
        other => cmd::dispatch(global, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("ag")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn dispatch_rules() {
        assert_eq!(preprocess(args(&["list"])).unwrap(), args(&["list"]));
        assert_eq!(preprocess(args(&[])).unwrap(), args(&[]));
        assert_eq!(
            preprocess(args(&["--port", "9200", "Fix the tests", "--cwd", "."])).unwrap(),
            args(&["--port", "9200", "create", "Fix the tests", "--cwd", "."])
        );
        let e = preprocess(args(&["lsit"])).unwrap_err();
        assert!(
            e.starts_with("error: unknown command 'lsit'. Did you mean 'list'?"),
            "{e}"
        );
        let e = preprocess(args(&["fix", "the", "tests", "--cwd", "."])).unwrap_err();
        assert!(e.contains("quote the brief: ag \"fix the tests\""), "{e}");
    }

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
