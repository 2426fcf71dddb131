//! `ag keys list|create|revoke|rotate` and `ag audit verify` (cli-mcp-config §1.4).
//!
//! Online (default) they call `/v1/auth/keys…` and `/v1/audit/verify`. `--offline` works on
//! the local state directory without a server: keys in `<stateDir>/store/keys.json` (the file
//! store; a running server picks changes up within 2 s), audited with actor `cli:<os user>`;
//! `ag audit verify --offline` verifies the local audit files with the local audit key.

use std::process::ExitCode;
use std::sync::Arc;

use aegis_api_types::auth::{ApiKey, CreateKeyRequest, CreatedKey, RotateKeyRequest};
use aegis_core::audit::{AuditEntry, AuditLog, KEY_FILE, load_or_create_key, verify_lines};
use aegis_core::keys::{ApiKeyView, FileKeys, KeyRegistry, NewKey};
use aegis_core::{Principal, SYSTEM_TENANT, Via};
use aegis_domain::audit::{ChainReport, Outcome};
use aegis_domain::auth::{Permission, Role};
use aegis_domain::time::iso8601_ms;
use clap::{Parser, Subcommand};

use crate::cmd::{Ctx, Failure, Global, block_on, exit, finish, print_json};
use crate::config::{self, Config};

/// The global options, also accepted after the command word (`ag keys list --json`).
#[derive(clap::Args, Debug, Default, Clone)]
struct GlobalArgs {
    /// Config file.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<std::path::PathBuf>,
    /// Server base URL.
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// The server at http://127.0.0.1:N.
    #[arg(long, global = true, value_name = "N")]
    port: Option<u16>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// No colours.
    #[arg(long, global = true)]
    no_color: bool,
}

impl GlobalArgs {
    fn merge(self, g: &Global) -> Global {
        Global {
            config: self.config.or_else(|| g.config.clone()),
            url: self.url.or_else(|| g.url.clone()),
            port: self.port.or(g.port),
            json: self.json || g.json,
            no_color: self.no_color || g.no_color,
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "ag keys", no_binary_name = true, about = "Manage API keys")]
struct KeysCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// List API keys (never their secrets).
    List {
        /// Read the local store instead of asking the server.
        #[arg(long)]
        offline: bool,
    },
    /// Create an API key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// viewer (default), operator or admin.
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: Option<String>,
        /// Comma list of create, send, approve, reject, kill, audit (replaces the role's).
        #[arg(long, value_delimiter = ',')]
        permissions: Option<Vec<String>>,
        #[arg(long, value_name = "N")]
        ttl_days: Option<u64>,
        #[arg(long, value_name = "T")]
        tenant: Option<String>,
        /// Requests per minute (1-100000, default 300).
        #[arg(long, value_name = "N")]
        rate_limit: Option<u32>,
        /// Write the local store directly (bootstrap without a server).
        #[arg(long)]
        offline: bool,
    },
    /// Revoke (delete) an API key.
    Revoke {
        key_id: String,
        #[arg(long)]
        offline: bool,
    },
    /// Issue a new secret for a key (printed once).
    Rotate {
        key_id: String,
        /// Seconds the old secret stays valid (0-86400, default 0).
        #[arg(long, value_name = "SECONDS")]
        grace: Option<u64>,
        #[arg(long, value_name = "N")]
        ttl_days: Option<u64>,
    },
}

#[derive(Parser, Debug)]
#[command(name = "ag audit", no_binary_name = true, about = "The audit log")]
struct AuditCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Verify the audit hash chain (exit 0 valid, 1 broken).
    Verify {
        /// Verify the local audit files with the local audit key (no server).
        #[arg(long)]
        offline: bool,
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
    },
}

/// Parse the words after `ag keys` / `ag audit`; help → exit 0, errors → exit 2.
fn parse<P: Parser>(args: &[String]) -> Result<P, ExitCode> {
    P::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::SUCCESS,
            _ => ExitCode::from(exit::USAGE),
        }
    })
}

/// `ag keys …`.
pub fn keys(global: &Global, args: &[String]) -> ExitCode {
    let cli = match parse::<KeysCli>(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let global = &cli.global.merge(global);
    finish(block_on(async {
        match cli.command {
            KeysCommand::List { offline } => list(global, offline).await,
            KeysCommand::Create {
                name,
                role,
                permissions,
                ttl_days,
                tenant,
                rate_limit,
                offline,
            } => {
                let req = CreateKeyRequest {
                    name,
                    role,
                    permissions,
                    rate_limit,
                    ttl_days,
                    tenant_id: tenant,
                    quotas: None,
                };
                create(global, req, global.json, offline).await
            }
            KeysCommand::Revoke { key_id, offline } => revoke(global, &key_id, offline).await,
            KeysCommand::Rotate {
                key_id,
                grace,
                ttl_days,
            } => {
                let req = RotateKeyRequest {
                    ttl_days,
                    grace_period_seconds: grace,
                };
                rotate(global, &key_id, req, global.json).await
            }
        }
    }))
}

/// `ag audit …`.
pub fn audit(global: &Global, args: &[String]) -> ExitCode {
    let cli = match parse::<AuditCli>(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let global = &cli.global.merge(global);
    finish(block_on(async {
        match cli.command {
            AuditCommand::Verify { offline, from, to } => {
                verify(global, offline, from, to, global.json).await
            }
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// Offline access
// ---------------------------------------------------------------------------------------------

fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// The CLI acting locally: an admin of `_system`, actor `cli:<os user>`.
fn cli_principal() -> Principal {
    let id = format!("cli:{}", os_user());
    Principal {
        display_name: id.clone(),
        id,
        role: Role::Admin,
        tenant_id: SYSTEM_TENANT.into(),
    }
}

fn local_config(global: &Global) -> Config {
    let cfg = config::load_for_client(global.config.as_deref());
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    cfg.config
}

async fn local_registry(c: &Config) -> Result<Arc<KeyRegistry>, Failure> {
    if c.session_store != "file" {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "--offline supports the file store only (sessionStore is {}); use the REST API through a running server",
                c.session_store
            ),
        ));
    }
    KeyRegistry::open(
        Arc::new(FileKeys::in_state_dir(&c.state_dir())),
        &c.security.default_tenant_id,
    )
    .await
    .map_err(|e| Failure::new(exit::FAILURE, e.message))
}

async fn audit_local(c: &Config, action: &str, key_id: &str) -> Result<(), Failure> {
    let log = AuditLog::open(&c.state_dir(), c.security.audit.secret.as_deref())
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot open the audit log: {e}")))?;
    let mut entry =
        AuditEntry::by(&cli_principal(), action, Outcome::Success).target("key", key_id);
    entry.via = Via::Cli;
    log.append(entry).await.map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("cannot write the audit log: {}", e.message),
        )
    })?;
    Ok(())
}

fn view_to_api(v: ApiKeyView) -> ApiKey {
    ApiKey {
        id: v.id,
        name: v.name,
        role: v.role.as_str().to_owned(),
        permissions: v.permissions.into_iter().map(str::to_owned).collect(),
        tenant_id: v.tenant_id,
        rate_limit: v.rate_limit,
        created_at: v.created_at,
        last_used_at: v.last_used_at,
        expires_at: v.expires_at,
        quotas: v.quotas,
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

fn when(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |t| iso8601_ms(t)[..16].replace('T', " "))
}

async fn list(global: &Global, offline: bool) -> Result<u8, Failure> {
    let keys = if offline {
        let c = local_config(global);
        let reg = local_registry(&c).await?;
        reg.list(&cli_principal())
            .into_iter()
            .map(view_to_api)
            .collect()
    } else {
        let ctx = Ctx::new(global);
        let client = ctx.client()?;
        client.keys_list().await.map_err(|e| ctx.fail(e))?
    };
    if global.json {
        print_json(&keys)?;
        return Ok(exit::OK);
    }
    if keys.is_empty() {
        println!("No API keys. Create one: ag keys create --name <name> --role operator");
        return Ok(exit::OK);
    }
    println!(
        "{:<16}  {:<20}  {:<8}  {:<12}  {:<16}  {:<16}  PERMISSIONS",
        "ID", "NAME", "ROLE", "TENANT", "EXPIRES", "LAST USED"
    );
    for k in keys {
        println!(
            "{:<16}  {:<20}  {:<8}  {:<12}  {:<16}  {:<16}  {}",
            k.id,
            k.name.chars().take(20).collect::<String>(),
            k.role,
            k.tenant_id,
            when(k.expires_at),
            when(k.last_used_at),
            k.permissions.join(",")
        );
    }
    Ok(exit::OK)
}

fn print_secret(id: &str, name: &str, role: &str, tenant: &str, secret: &str) {
    println!("API key {id} ({name}, {role}, tenant {tenant})");
    println!("  {secret}");
    eprintln!("Store this key now: it is shown only once.");
}

async fn create(
    global: &Global,
    req: CreateKeyRequest,
    json: bool,
    offline: bool,
) -> Result<u8, Failure> {
    let created: CreatedKey = if offline {
        let c = local_config(global);
        let reg = local_registry(&c).await?;
        let role = req.role.as_deref().and_then(Role::parse);
        let permissions = match &req.permissions {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|p| {
                        Permission::parse(p.trim()).ok_or_else(|| {
                            Failure::new(
                                exit::USAGE,
                                format!(
                                    "--permissions: unknown permission '{p}' (create, send, approve, reject, kill, audit)"
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let issued = reg
            .create(
                &cli_principal(),
                NewKey {
                    name: req.name,
                    role,
                    permissions,
                    rate_limit: req.rate_limit,
                    ttl_days: req.ttl_days,
                    tenant_id: req.tenant_id,
                    quotas: None,
                },
            )
            .await
            .map_err(|e| Failure::new(exit::USAGE, e.message))?;
        audit_local(&c, "key.create", &issued.view.id).await?;
        let v = issued.view;
        CreatedKey {
            id: v.id,
            key: issued.secret,
            name: v.name,
            role: v.role.as_str().to_owned(),
            permissions: v.permissions.into_iter().map(str::to_owned).collect(),
            tenant_id: v.tenant_id,
            rate_limit: v.rate_limit,
            expires_at: v.expires_at,
            created_at: v.created_at,
        }
    } else {
        let ctx = Ctx::new(global);
        let client = ctx.client()?;
        client.keys_create(&req).await.map_err(|e| ctx.fail(e))?
    };
    if json {
        print_json(&created)?;
    } else {
        print_secret(
            &created.id,
            &created.name,
            &created.role,
            &created.tenant_id,
            &created.key,
        );
    }
    Ok(exit::OK)
}

async fn revoke(global: &Global, key_id: &str, offline: bool) -> Result<u8, Failure> {
    if offline {
        let c = local_config(global);
        let reg = local_registry(&c).await?;
        reg.revoke(&cli_principal(), key_id)
            .await
            .map_err(|e| Failure::new(exit::NOT_FOUND, format!("{} ({key_id})", e.message)))?;
        audit_local(&c, "key.revoke", key_id).await?;
    } else {
        let ctx = Ctx::new(global);
        let client = ctx.client()?;
        client.keys_revoke(key_id).await.map_err(|e| ctx.fail(e))?;
    }
    println!("Revoked API key {key_id}");
    Ok(exit::OK)
}

async fn rotate(
    global: &Global,
    key_id: &str,
    req: RotateKeyRequest,
    json: bool,
) -> Result<u8, Failure> {
    let ctx = Ctx::new(global);
    let client = ctx.client()?;
    let r = client
        .keys_rotate(key_id, &req)
        .await
        .map_err(|e| ctx.fail(e))?;
    if json {
        print_json(&r)?;
        return Ok(exit::OK);
    }
    println!("API key {} ({}, {}) rotated", r.id, r.name, r.role);
    println!("  {}", r.key);
    if let Some(g) = r.grace_expires_at {
        println!("The previous secret stays valid until {}", iso8601_ms(g));
    }
    eprintln!("Store this key now: it is shown only once.");
    Ok(exit::OK)
}

fn print_report(r: &ChainReport) -> u8 {
    match &r.broken_at {
        None => {
            println!(
                "Audit chain valid: {} records, last seq {}, hash {}",
                r.checked,
                r.last_seq.unwrap_or(0),
                r.last_hash.as_deref().unwrap_or("-")
            );
            exit::OK
        }
        Some(b) => {
            println!(
                "Audit chain BROKEN at seq {} ({})",
                b.seq,
                b.reason.as_str()
            );
            exit::FAILURE
        }
    }
}

async fn verify(
    global: &Global,
    offline: bool,
    from: Option<u64>,
    to: Option<u64>,
    json: bool,
) -> Result<u8, Failure> {
    let report: ChainReport = if offline {
        let c = local_config(global);
        let state = c.state_dir();
        let secret = c.security.audit.secret.clone();
        if secret.is_none() && !state.join(KEY_FILE).exists() {
            return Err(Failure::new(
                exit::FAILURE,
                format!(
                    "no audit key in {} (and AEGIS_AUDIT_SECRET is not set): nothing to verify",
                    state.display()
                ),
            ));
        }
        let key = load_or_create_key(&state, secret.as_deref())
            .map_err(|e| Failure::new(exit::FAILURE, e))?;
        let log = AuditLog::new(&state, key.clone());
        let lines = log
            .lines()
            .await
            .map_err(|e| Failure::new(exit::FAILURE, e.message))?;
        verify_lines(&key, &lines, from, to)
    } else {
        let ctx = Ctx::new(global);
        let client = ctx.client()?;
        let r = client
            .audit_verify(from, to)
            .await
            .map_err(|e| ctx.fail(e))?;
        ChainReport {
            valid: r.valid,
            checked: r.checked,
            first_seq: r.first_seq,
            last_seq: r.last_seq,
            last_hash: r.last_hash,
            kid: r.kid,
            broken_at: r.broken_at.map(|b| {
                let reason = match b.reason.as_str() {
                    "hash_mismatch" => aegis_domain::audit::BreakReason::HashMismatch,
                    "prev_mismatch" => aegis_domain::audit::BreakReason::PrevMismatch,
                    "gap" => aegis_domain::audit::BreakReason::Gap,
                    "unknown_key" => aegis_domain::audit::BreakReason::UnknownKey,
                    _ => aegis_domain::audit::BreakReason::ParseError,
                };
                aegis_domain::audit::Broken { seq: b.seq, reason }
            }),
        }
    };
    if json {
        print_json(&report)?;
        return Ok(if report.valid {
            exit::OK
        } else {
            exit::FAILURE
        });
    }
    Ok(print_report(&report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn parsers_are_consistent_and_take_global_options_after_the_word() {
        KeysCli::command().debug_assert();
        AuditCli::command().debug_assert();
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let cli = KeysCli::try_parse_from(words("create --name ci --role operator --permissions send,approve --offline --config /x.yaml"))
            .expect("parses");
        assert_eq!(
            cli.global.config.as_deref(),
            Some(std::path::Path::new("/x.yaml"))
        );
        assert!(matches!(
            cli.command,
            KeysCommand::Create { offline: true, .. }
        ));
        let cli = AuditCli::try_parse_from(words("verify --json --from 3")).expect("parses");
        assert!(cli.global.json);
    }
}
