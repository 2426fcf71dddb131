//! `ag serve`: the composition root. The one place where concrete backends are chosen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aegis_core::{ServiceConfig, SessionService};
use aegis_runtime::registry::AgentRegistry;
use aegis_runtime_acp::AcpRuntime;
use aegis_store::Store;
use aegis_store::file::FileStore;

use crate::config::{self, Config, Loaded};

/// Options of `ag serve` given on the command line (they win over env and file).
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub port: Option<u16>,
    pub host: Option<String>,
    pub json_logs: bool,
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// Build the service configuration from the loaded config.
pub fn service_config(c: &Config, server_cwd: &Path) -> ServiceConfig {
    let mut s = ServiceConfig::new(c.state_dir());
    s.server_cwd = server_cwd.to_path_buf();
    s.allowed_workdirs = c.allowed_work_dirs.clone();
    s.default_model = c.default_model.clone();
    s.default_permission_mode = c.default_permission_mode.clone();
    s.default_session_name = c.default_session_name.clone();
    s.default_permission_profile = c.default_permission_profile.clone();
    s.default_session_env = c.default_session_env.clone();
    s.stall_threshold_ms = c.stall_threshold_ms;
    s.permission_timeout_ms = c.permission_timeout_ms;
    s.permission_timeout_action = c.permission_timeout_action.clone();
    s.max_sessions = c.max_sessions;
    s.max_queued_prompts = c.max_queued_prompts;
    s.request_timeout_ms = c.acp.request_timeout_ms.unwrap_or(120_000);
    s.rate_limit_retry_ms = c.rate_limit_retry_ms;
    s.rate_limit_auto_resume = c.rate_limit_auto_resume;
    s.auto_reattach = c.auto_reattach;
    s.memory_enabled = c.memory_bridge.enabled;
    s.memory_max_entries_per_tenant = c.memory_bridge.max_entries_per_tenant;
    s.pipeline_stage_timeout_ms = c.pipeline_stage_timeout_ms;
    let mut reg = AgentRegistry::new(c.agents.clone());
    reg.default_agent = c.default_agent.clone();
    reg.acp_bin = c.acp.bin.as_deref().map(config::expand);
    if let Some(p) = &c.acp.package {
        reg.acp_package = p.clone();
    }
    s.agents = reg;
    s.base_url = c.client_base_url();
    s
}

fn init_logging(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(format!("{level},hyper=warn,h2=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        );
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Run the server in the foreground until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> ExitCode {
    let file = config::find_config_file(args.config.as_deref());
    if let Some(f) = &file {
        if !f.is_file() {
            return fail(2, format!("config file {} does not exist", f.display()));
        }
    }
    let mut loaded = match config::load(file.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(2, format!("{e:#}")),
    };
    if let Some(p) = args.port {
        loaded.config.port = p;
    }
    if let Some(h) = &args.host {
        loaded.config.host = h.clone();
    }
    init_logging(&loaded.config.log_level, args.json_logs);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(1, format!("cannot start the async runtime: {e}")),
    };
    rt.block_on(serve(loaded))
}

async fn serve(loaded: Loaded) -> ExitCode {
    serve_until(loaded, shutdown_signal()).await
}

/// Run the server until `shutdown` resolves: SIGINT/SIGTERM for `ag serve`, the MCP server's
/// end for the server `ag mcp` embeds.
pub async fn serve_until(
    loaded: Loaded,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> ExitCode {
    let c = loaded.config.clone();
    if c.session_store == "postgres" && c.postgres.url.is_none() {
        return fail(
            2,
            "AEGIS_SESSION_STORE=postgres needs AEGIS_POSTGRES_URL (or postgres.url in the config), e.g. postgres://user@127.0.0.1:5432/aegis",
        );
    }
    let state_dir = c.state_dir();
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        return fail(
            1,
            format!("cannot create the state dir {}: {e}", state_dir.display()),
        );
    }
    // The local state dir is always locked (supervisor runtime, audit key, pid file live there).
    let _lock = match FileStore::lock(&state_dir) {
        Ok(l) => l,
        Err(e) => {
            return fail(
                1,
                format!("{e}; another Aegis server uses {}", state_dir.display()),
            );
        }
    };
    let (store, _store_lock) = match open_store(&c, &state_dir).await {
        Ok(s) => s,
        Err(msg) => return fail(1, msg),
    };
    // Keys, the audit log, and the refusal of a non-loopback bind without credentials (§5.2).
    let auth = match crate::auth_config::prepare(&c, &state_dir, &store).await {
        Ok(a) => a,
        Err((code, msg)) => return fail(code, msg),
    };
    let addr: SocketAddr = match format!("{}:{}", bind_host(&c.host), c.port).parse() {
        Ok(a) => a,
        Err(e) => return fail(2, format!("invalid host/port {}:{}: {e}", c.host, c.port)),
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return fail(
                1,
                format!(
                    "port {} is already in use; pick another with AEGIS_PORT=<port> or --port <port>",
                    c.port
                ),
            );
        }
        Err(e) => return fail(1, format!("cannot listen on {addr}: {e}")),
    };
    let server_cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let svc =
        match SessionService::start(service_config(&c, &server_cwd), store, Arc::new(AcpRuntime))
            .await
        {
            Ok(s) => s,
            Err(e) => return fail(1, format!("cannot start the session service: {e}")),
        };
    let pid_file = state_dir.join("aegis.pid");
    let _ = std::fs::write(&pid_file, format!("{}\n", std::process::id()));
    if let Some(file) = loaded.file.clone() {
        tokio::spawn(watch_config(file, svc.clone(), server_cwd.clone()));
    }
    if let Some(file) = loaded.file.clone() {
        tokio::spawn(crate::auth_config::watch(
            file,
            auth.clone(),
            c.is_loopback(),
        ));
    }
    let state = aegis_http::AppState {
        service: svc.clone(),
        config: aegis_http::HttpConfig {
            dashboard_enabled: c.dashboard_enabled,
            sse_max_connections: c.sse.max_connections.unwrap_or(100),
            sse_max_per_ip: c.sse.max_per_ip.unwrap_or(10),
            sse_heartbeat_ms: c.sse.heartbeat_ms.unwrap_or(15_000),
            auth: auth.clone(),
            ..aegis_http::HttpConfig::default()
        },
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        "Aegis {} listening on http://{local} (state {}, store {})",
        env!("CARGO_PKG_VERSION"),
        state_dir.display(),
        c.session_store
    );
    crate::auth_config::audit_server(&auth, "server.start").await;
    let result = aegis_http::serve(listener, state, shutdown).await;
    crate::auth_config::audit_server(&auth, "server.stop").await;
    tracing::info!("shutting down: stopping sessions (they are resumable after restart)");
    svc.shutdown().await;
    let _ = std::fs::remove_file(&pid_file);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, format!("server error: {e}")),
    }
}

/// Keeps the store's single-writer lock alive for the server's lifetime.
pub enum StoreLock {
    None,
    Postgres(aegis_store_postgres::PgLock),
    Redis(aegis_store_redis::RedisLease),
}

/// Open the configured store and take its single-writer lock. A store that cannot be reached
/// is fatal (api §7.1): nothing silently falls back to files.
pub async fn open_store(
    c: &Config,
    state_dir: &Path,
) -> Result<(Arc<dyn Store>, StoreLock), String> {
    match c.session_store.as_str() {
        "postgres" => {
            let url = c.postgres.url.clone().unwrap_or_default();
            let store = aegis_store_postgres::PgStore::connect(
                &url,
                c.postgres
                    .schema
                    .as_deref()
                    .unwrap_or(aegis_store_postgres::DEFAULT_SCHEMA),
                c.postgres
                    .table
                    .as_deref()
                    .unwrap_or(aegis_store_postgres::DEFAULT_TABLE),
                c.postgres
                    .pool_max
                    .unwrap_or(aegis_store_postgres::DEFAULT_POOL_MAX),
            )
            .await
            .map_err(|e| format!("cannot use PostgreSQL (AEGIS_POSTGRES_URL): {e}"))?;
            let lock = store
                .lock()
                .await
                .map_err(|e| format!("{e}; another Aegis server uses this database"))?;
            Ok((Arc::new(store), StoreLock::Postgres(lock)))
        }
        "redis" => {
            let url = c
                .redis
                .url
                .clone()
                .unwrap_or_else(|| "redis://localhost:6379".into());
            let prefix = c.redis.key_prefix.clone().unwrap_or_else(|| "aegis".into());
            let store = aegis_store_redis::RedisStore::connect(&url, &prefix)
                .await
                .map_err(|e| format!("cannot use Redis (AEGIS_REDIS_URL): {e}"))?;
            // After a crash of the previous server on this host its lease (15 s) outlives it:
            // wait for it to expire rather than refusing to start. A live holder is refused.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let lease = loop {
                match store.lock().await {
                    Ok(l) => break l,
                    Err(aegis_store::StoreError::Locked(holder))
                        if holder_is_dead_local(&holder)
                            && std::time::Instant::now() < deadline =>
                    {
                        tracing::warn!(
                            "waiting for the lease of a crashed server to expire ({holder})"
                        );
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        return Err(format!(
                            "{e}; another Aegis server uses the prefix `{prefix}`"
                        ));
                    }
                }
            };
            if let Ok(p) = store.persistence().await {
                if let Some(w) = p.warning() {
                    tracing::warn!("{w}");
                }
            }
            Ok((Arc::new(store), StoreLock::Redis(lease)))
        }
        _ => {
            let store = FileStore::open_async(state_dir.join("store"))
                .await
                .map_err(|e| format!("cannot open the file store: {e}"))?;
            Ok((Arc::new(store), StoreLock::None))
        }
    }
}

/// Whether a lock holder description (`pid=N host=H ...`) names a process of this host that
/// no longer exists.
fn holder_is_dead_local(holder: &str) -> bool {
    let field = |name: &str| {
        holder
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(' || c == ')')
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_owned)
    };
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let (Some(pid), Some(h)) = (field("pid="), field("host=")) else {
        return false;
    };
    h == host
        && pid
            .parse::<u32>()
            .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists())
}

fn bind_host(h: &str) -> String {
    match h {
        "localhost" => "127.0.0.1".into(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.into(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Hot reload: re-read the config file when it changes (polling survives editors that save by
/// rename). Keys that need a restart are ignored until then.
async fn watch_config(file: PathBuf, svc: Arc<SessionService>, server_cwd: PathBuf) {
    let stamp = |p: &Path| std::fs::read(p).ok();
    let mut last = stamp(&file);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = stamp(&file);
        if now == last {
            continue;
        }
        last = now;
        match config::load(Some(&file)) {
            Ok(l) => {
                svc.reload(service_config(&l.config, &server_cwd));
                tracing::info!("configuration reloaded from {}", file.display());
            }
            Err(e) => {
                tracing::error!("configuration reload failed, keeping the previous one: {e:#}")
            }
        }
    }
}
