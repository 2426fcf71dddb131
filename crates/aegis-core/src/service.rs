//! The public API of the session service (bodies in progress).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aegis_api_types::{
    AgentInfoDto, ApproveRequest, CreateSessionRequest, DecisionResponse, EventLogPage, Pagination,
    PatchSessionRequest, PermissionProfile, PermissionRequestDto, PromptDelivery, ReadCursor,
    ReadResponse, RejectRequest, SendResponse, SessionHealth, SessionInfo, SessionList,
    TranscriptEntry,
};
use aegis_domain::time::iso8601_ms;
use aegis_domain::{
    PermissionRequest, PromptSource, RequestId, SessionId, SessionState, SessionStatus,
    StatusFilter,
};
use aegis_runtime::AgentRuntime;
use aegis_runtime::registry::{AgentRegistry, ResolveError};
use aegis_store::{Store, collections};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::actor::{Actor, Cmd, SessionHandle, Snapshot, entry_key};
use crate::bus::{EventBus, bus_event, now_ms};
use crate::policy;
use crate::record::{self, SessionRecord};
use crate::workdir::{self, AllowedRoots};
use crate::{CoreError, CoreResult, ErrorKind, Principal, Via};

/// A published event (durable or not), as delivered to subscribers.
#[derive(Debug, Clone)]
pub struct BusEvent {
    pub session_id: Option<String>,
    pub tenant_id: Option<String>,
    /// Per-session id; `None` for non-durable events.
    pub id: Option<u64>,
    /// Global sequence; `None` for non-durable events.
    pub global_seq: Option<u64>,
    pub event: String,
    /// The full envelope as JSON text.
    pub json: Arc<str>,
}

/// Query of `GET /v1/sessions` (already range-checked by the caller: page ≥ 1, limit 1–100).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub page: u64,
    pub limit: u64,
    /// Raw `status` value (names, comma list, groups, legacy aliases).
    pub status: Option<String>,
    pub project: Option<String>,
    pub work_dir: Option<String>,
    pub agent: Option<String>,
    pub owner: Option<String>,
    pub id_prefix: Option<String>,
}

/// Prompt sources accepted from callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// `/send`, `/input`, `/prompt`.
    Text,
    /// `/command`: `/` is prefixed when missing.
    Command,
}

/// Which events a log read returns.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Event types to include (empty = all).
    pub types: Vec<String>,
    /// `category=timeline`: every type except `message` and `message_delta`.
    pub timeline: bool,
}

/// Service settings (the hot-reloadable part is swapped whole by [`SessionService::reload`]).
#[derive(Clone)]
pub struct ServiceConfig {
    pub state_dir: PathBuf,
    pub home: PathBuf,
    pub server_cwd: PathBuf,
    pub allowed_workdirs: Vec<String>,
    pub default_model: Option<String>,
    pub default_permission_mode: String,
    pub default_session_name: Option<String>,
    pub default_permission_profile: Option<PermissionProfile>,
    pub default_session_env: BTreeMap<String, String>,
    pub stall_threshold_ms: u64,
    pub permission_timeout_ms: u64,
    pub permission_timeout_action: String,
    pub max_sessions: usize,
    pub max_queued_prompts: usize,
    pub request_timeout_ms: u64,
    pub rate_limit_retry_ms: u64,
    pub rate_limit_auto_resume: bool,
    pub auto_reattach: bool,
    pub agents: AgentRegistry,
    /// The server's environment (filtered per agent by the registry).
    pub server_env: Vec<(String, String)>,
    pub base_url: String,
    pub version: String,
    /// `memoryBridge.enabled`: when off every memory route is 404 `FEATURE_DISABLED`.
    pub memory_enabled: bool,
    /// `memoryBridge.maxEntriesPerTenant`.
    pub memory_max_entries_per_tenant: usize,
    /// `pipelineStageTimeoutMs`: default stage timeout (0 = none).
    pub pipeline_stage_timeout_ms: u64,
    /// Stages of one pipeline running at once unless the pipeline says (`concurrency`).
    pub pipeline_concurrency: usize,
}

impl ServiceConfig {
    /// Defaults for a state dir (tests and the composition root override fields).
    pub fn new(state_dir: PathBuf) -> Self {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        ServiceConfig {
            state_dir,
            home,
            server_cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            allowed_workdirs: vec![],
            default_model: None,
            default_permission_mode: "default".into(),
            default_session_name: None,
            default_permission_profile: None,
            default_session_env: BTreeMap::new(),
            stall_threshold_ms: 300_000,
            permission_timeout_ms: 0,
            permission_timeout_action: "reject".into(),
            max_sessions: 20,
            max_queued_prompts: 20,
            request_timeout_ms: 120_000,
            rate_limit_retry_ms: 300_000,
            rate_limit_auto_resume: true,
            auto_reattach: true,
            agents: AgentRegistry::new(BTreeMap::new()),
            server_env: std::env::vars().collect(),
            base_url: "http://127.0.0.1:9100".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            memory_enabled: true,
            memory_max_entries_per_tenant: 10_000,
            pipeline_stage_timeout_ms: 0,
            pipeline_concurrency: 10,
        }
    }
}

/// State shared by the service and every session actor.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub bus: Arc<EventBus>,
    pub runtime: Arc<dyn AgentRuntime>,
    config: RwLock<Arc<ServiceConfig>>,
    roots: RwLock<Arc<AllowedRoots>>,
    /// Every permission request known (pending and decided), by id.
    permissions: RwLock<HashMap<RequestId, PermissionRequest>>,
    agent_cache: RwLock<BTreeMap<String, (AgentInfoDto, u64)>>,
    diagnostics: Mutex<VecDeque<Value>>,
    unknown_updates: Mutex<BTreeMap<String, u64>>,
    ended: Mutex<BTreeMap<String, u64>>,
    started_at: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn config(&self) -> Arc<ServiceConfig> {
        read(&self.config).clone()
    }

    pub fn roots(&self) -> Arc<AllowedRoots> {
        read(&self.roots).clone()
    }

    pub(crate) fn permissions_changed(&self, rec: &SessionRecord) {
        if rec.pending.is_empty() {
            return;
        }
        let mut map = write(&self.permissions);
        for p in &rec.pending {
            map.insert(p.request_id, p.clone());
        }
    }

    /// Index a request that left the pending set (the actor persists it in its commit).
    pub(crate) fn permission_finished(&self, p: PermissionRequest) {
        write(&self.permissions).insert(p.request_id, p);
    }

    pub(crate) fn permission_lookup(&self, id: &RequestId) -> Option<PermissionRequest> {
        read(&self.permissions).get(id).cloned()
    }

    pub(crate) fn remember_agent(&self, name: &str, info: &AgentInfoDto) {
        write(&self.agent_cache).insert(name.to_owned(), (info.clone(), now_ms()));
    }

    pub(crate) fn diagnostic(
        &self,
        level: &str,
        event: &str,
        session_id: Option<&str>,
        attributes: Value,
    ) {
        let mut d = lock(&self.diagnostics);
        if d.len() >= 1000 {
            d.pop_front();
        }
        d.push_back(json!({
            "event": event, "level": level, "component": "session", "operation": event,
            "sessionId": session_id, "timestamp": iso8601_ms(now_ms()), "attributes": attributes,
        }));
    }

    pub(crate) fn count_unknown_update(&self, kind: &str) {
        *lock(&self.unknown_updates)
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn session_ended(&self, rec: &SessionRecord) {
        *lock(&self.ended)
            .entry(rec.state.status.as_str().to_owned())
            .or_default() += 1;
    }
}

/// The session service.
pub struct SessionService {
    shared: Arc<Shared>,
    sessions: RwLock<HashMap<SessionId, Arc<SessionHandle>>>,
    reuse_lock: tokio::sync::Mutex<()>,
    draining: AtomicBool,
    /// Pipelines engine and batch limiter (pipeline.rs).
    pub(crate) orch: crate::pipeline::Orchestration,
}

fn parse_session_id(id: &str) -> CoreResult<SessionId> {
    SessionId::parse(id).map_err(|_| {
        CoreError::new(
            ErrorKind::InvalidSessionId,
            format!("'{id}' is not a valid session id (expected a UUID)"),
        )
    })
}

fn slug(prompt: &str) -> String {
    let s: String = prompt
        .chars()
        .take(20)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s
}

fn env_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

const ENV_ALWAYS_ALLOWED: [&str; 6] = [
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_DEFAULT_MODEL",
    "ANTHROPIC_DEFAULT_FAST_MODEL",
    "API_TIMEOUT_MS",
];

fn env_denied(name: &str) -> bool {
    if ENV_ALWAYS_ALLOWED.contains(&name) {
        return false;
    }
    matches!(
        name,
        "PATH" | "HOME" | "NODE_OPTIONS" | "SHELL" | "USER" | "IFS"
    ) || name.starts_with("LD_")
        || name.starts_with("DYLD_")
        || name.starts_with("AEGIS_")
        || name.starts_with("ANTHROPIC_")
        || name.ends_with("_API_KEY")
        || name.starts_with("AWS_")
        || name.starts_with("OPENAI_")
}

impl SessionService {
    /// Open the service: start the event writer, reload every stored session and recover
    /// live ones (api §7.3: agents without a supervisor are gone → `interrupted`, then
    /// reattached with `session/resume`/`session/load` when the agent advertises it).
    pub async fn start(
        config: ServiceConfig,
        store: Arc<dyn Store>,
        runtime: Arc<dyn AgentRuntime>,
    ) -> CoreResult<Arc<SessionService>> {
        let bus = EventBus::start(store.clone()).await?;
        let roots =
            AllowedRoots::resolve(&config.allowed_workdirs, &config.home, &config.server_cwd);
        let shared = Arc::new(Shared {
            store: store.clone(),
            bus,
            runtime,
            config: RwLock::new(Arc::new(config)),
            roots: RwLock::new(Arc::new(roots)),
            permissions: RwLock::new(HashMap::new()),
            agent_cache: RwLock::new(BTreeMap::new()),
            diagnostics: Mutex::new(VecDeque::new()),
            unknown_updates: Mutex::new(BTreeMap::new()),
            ended: Mutex::new(BTreeMap::new()),
            started_at: now_ms(),
        });
        let svc = Arc::new(SessionService {
            shared: shared.clone(),
            sessions: RwLock::new(HashMap::new()),
            reuse_lock: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
            orch: Default::default(),
        });
        // Decided permission requests (inbox history).
        for scope in store.list_scopes(collections::PERMISSIONS).await? {
            let page = store
                .list_docs(collections::PERMISSIONS, &scope, None, usize::MAX)
                .await?;
            let mut map = write(&shared.permissions);
            for (_, v) in page.items {
                if let Ok(p) = serde_json::from_value::<PermissionRequest>(v.doc) {
                    map.insert(p.request_id, p);
                }
            }
        }
        let page = store
            .list_docs(collections::SESSIONS, "", None, usize::MAX)
            .await?;
        for (_, v) in page.items {
            let mut rec: SessionRecord = match serde_json::from_value(v.doc) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "skipping an unreadable session record");
                    continue;
                }
            };
            let sid = rec.id.to_string();
            // The log is authoritative: a record can be persisted ahead of an event append that
            // never committed (crash in between); those events were never published.
            rec.last_event_id = store.last_event_id(&sid).await?;
            svc.recover(rec).await?;
        }
        crate::pipeline::Orchestration::start(&svc).await?;
        Ok(svc)
    }

    async fn recover(&self, rec: SessionRecord) -> CoreResult<()> {
        let live = rec.state.status.is_live();
        let (handle, mut actor, rx) = self.make_actor(rec);
        if live {
            actor
                .recover_after_restart(self.shared.config().auto_reattach)
                .await?;
        }
        write(&self.sessions).insert(handle.id, handle);
        tokio::spawn(actor.run(rx));
        Ok(())
    }

    fn make_actor(&self, rec: SessionRecord) -> (Arc<SessionHandle>, Actor, mpsc::Receiver<Cmd>) {
        let (tx, rx) = mpsc::channel(256);
        let handle = Arc::new(SessionHandle {
            id: rec.id,
            tenant_id: rec.tenant_id.clone(),
            owner_key_id: rec.owner_key_id.clone(),
            work_dir: rec.work_dir.clone(),
            agent: rec.agent.clone(),
            created_at: rec.created_at,
            cmd: tx,
            snapshot: RwLock::new(Arc::new(Snapshot {
                info: record::session_info(&rec, now_ms()),
                agent_running: false,
                last_agent_message_at: rec.last_agent_message_at,
                has_transcript: rec.transcript.count > 0,
                available_commands: rec.available_commands.clone(),
                pending: rec.pending.clone(),
                counters: rec.counters.clone(),
                permission_profile: rec.permission_profile.clone(),
            })),
        });
        let actor = Actor::new(self.shared.clone(), rec, handle.clone());
        (handle, actor, rx)
    }

    /// Apply a new configuration (hot reload): later requests see it.
    pub fn reload(&self, config: ServiceConfig) {
        let roots =
            AllowedRoots::resolve(&config.allowed_workdirs, &config.home, &config.server_cwd);
        *write(&self.shared.roots) = Arc::new(roots);
        *write(&self.shared.config) = Arc::new(config);
    }

    pub fn config(&self) -> Arc<ServiceConfig> {
        self.shared.config()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn lookup(&self, p: &Principal, id: &str) -> CoreResult<Arc<SessionHandle>> {
        let sid = parse_session_id(id)?;
        let h = read(&self.sessions)
            .get(&sid)
            .cloned()
            .ok_or_else(|| CoreError::not_found("session"))?;
        if !p.sees_tenant(&h.tenant_id) {
            return Err(CoreError::not_found("session"));
        }
        Ok(h)
    }

    async fn call<T>(
        &self,
        p: &Principal,
        id: &str,
        make: impl FnOnce(oneshot::Sender<CoreResult<T>>) -> Cmd,
    ) -> CoreResult<T> {
        let h = self.lookup(p, id)?;
        let (tx, rx) = oneshot::channel();
        h.cmd
            .send(make(tx))
            .await
            .map_err(|_| CoreError::internal("the session actor stopped"))?;
        rx.await
            .map_err(|_| CoreError::internal("the session actor stopped"))?
    }

    pub(crate) fn visible(&self, p: &Principal) -> Vec<Arc<SessionHandle>> {
        read(&self.sessions)
            .values()
            .filter(|h| p.sees_tenant(&h.tenant_id))
            .cloned()
            .collect()
    }

    fn live_count(&self) -> usize {
        read(&self.sessions)
            .values()
            .filter(|h| {
                h.snapshot()
                    .info
                    .status
                    .parse::<SessionStatus>()
                    .is_ok_and(SessionStatus::is_live)
            })
            .count()
    }

    /// Create a session or reuse an idle one. Returns the session and whether it was reused.
    pub async fn create(
        &self,
        p: &Principal,
        req: CreateSessionRequest,
    ) -> CoreResult<(SessionInfo, bool)> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(CoreError::new(
                ErrorKind::Draining,
                "the server is shutting down; retry against the next instance",
            ));
        }
        let req = self.with_memory_context(p, req).await; // memoryKeys (memory.rs)
        let cfg = self.shared.config();
        // ---- body validation
        let name = req.name.clone().or(req.label.clone());
        if let Some(n) = &name {
            if n.chars().count() > 200 {
                return Err(CoreError::validation("name", "at most 200 characters"));
            }
        }
        if let Some(pr) = &req.prompt {
            if pr.chars().count() > 100_000 {
                return Err(CoreError::new(
                    ErrorKind::PayloadTooLarge,
                    "prompt: at most 100000 characters",
                )
                .with_details(
                    json!([{"path": "prompt", "message": "at most 100000 characters"}]),
                ));
            }
        }
        if let Some(m) = &req.model {
            if m.chars().count() > 200 || m.trim().is_empty() {
                return Err(CoreError::validation("model", "1 to 200 characters"));
            }
        }
        let mode = match (&req.permission_mode, req.auto_approve) {
            (Some(m), _) => m.clone(),
            (None, Some(true)) => "bypassPermissions".into(),
            (None, Some(false)) => "default".into(),
            (None, None) => cfg.default_permission_mode.clone(),
        };
        if !policy::MODES.contains(&mode.as_str()) {
            return Err(CoreError::validation(
                "permissionMode",
                format!("must be one of {}", policy::MODES.join(", ")),
            ));
        }
        let env = req.env.clone().unwrap_or_default();
        for (k, v) in &env {
            if !env_name_ok(k) {
                return Err(CoreError::validation(
                    &format!("env.{k}"),
                    "names must match ^[A-Z_][A-Z0-9_]*$",
                ));
            }
            if env_denied(k) {
                return Err(CoreError::validation(
                    &format!("env.{k}"),
                    "this variable may not be set per session",
                ));
            }
            if v.is_empty() || v.len() > 8192 || v.chars().any(|c| c.is_control() && c != '\t') {
                return Err(CoreError::validation(
                    &format!("env.{k}"),
                    "values are 1-8192 bytes without control characters",
                ));
            }
        }
        let mcp = req.mcp_servers.clone().unwrap_or_default();
        if mcp.len() > 20 {
            return Err(CoreError::validation("mcpServers", "at most 20 entries"));
        }
        if let Some(t) = req.stall_threshold_ms {
            if !(1000..=86_400_000).contains(&t) {
                return Err(CoreError::validation(
                    "stallThresholdMs",
                    "must be 1000-86400000",
                ));
            }
        }
        if let Some(t) = req.permission_timeout_ms {
            if t > 86_400_000 {
                return Err(CoreError::validation(
                    "permissionTimeoutMs",
                    "must be 0-86400000",
                ));
            }
        }
        if let Some(keys) = &req.memory_keys {
            if keys.len() > 50 {
                return Err(CoreError::validation("memoryKeys", "at most 50 keys"));
            }
        }
        let mut meta = req.meta.clone().unwrap_or_default();
        if let Some(prd) = &req.prd {
            meta.insert("prd".into(), prd.clone());
        }
        if meta.len() > 20 || meta.values().any(|v| v.chars().count() > 1000) {
            return Err(CoreError::validation(
                "meta",
                "at most 20 keys with values up to 1000 characters",
            ));
        }
        let parent_id = match &req.parent_id {
            Some(pid) => {
                let h = self.lookup(p, pid).map_err(|e| match e.kind {
                    ErrorKind::InvalidSessionId => {
                        CoreError::validation("parentId", "must be a UUID")
                    }
                    _ => CoreError::validation("parentId", "no such session"),
                })?;
                Some(h.id.to_string())
            }
            None => None,
        };
        // ---- agent
        let agent = req
            .agent
            .clone()
            .unwrap_or_else(|| cfg.agents.default_agent.clone());
        match cfg.agents.resolve(&agent) {
            Ok(_) => {}
            Err(ResolveError::Unknown { .. }) => {
                return Err(CoreError::new(
                    ErrorKind::UnknownAgent,
                    format!(
                        "unknown agent `{agent}`; configured agents: {}",
                        cfg.agents.names().join(", ")
                    ),
                ));
            }
            Err(ResolveError::Unavailable(msg)) => {
                return Err(CoreError::new(ErrorKind::AgentUnavailable, msg));
            }
        }
        // ---- workDir
        let work_dir = workdir::validate(&req.work_dir, &self.shared.roots(), &cfg.home)?;
        let work_dir_s = work_dir.display().to_string();
        // ---- mode known to be unsupported?
        if let Some((info, _)) = read(&self.shared.agent_cache).get(&agent) {
            if !info.modes.is_empty() && !info.modes.contains(&mode) && !policy::emulable(&mode) {
                return Err(CoreError::new(
                    ErrorKind::ModeUnsupported,
                    format!(
                        "agent `{agent}` has no `{mode}` mode and it cannot be emulated; its modes: {}",
                        info.modes.join(", ")
                    ),
                )
                .with_details(json!({"modes": info.modes})));
            }
        }
        // ---- capacity
        if self.live_count() >= cfg.max_sessions {
            return Err(CoreError::new(
                ErrorKind::SessionLimit,
                format!("the server runs its maximum of {} live sessions; kill or close one, or raise maxSessions", cfg.max_sessions),
            )
            .with_details(json!({"maxSessions": cfg.max_sessions})));
        }
        // ---- reuse
        let reuse = req.reuse != Some(false)
            && req.env.is_none()
            && req.mcp_servers.is_none()
            && req.resume_session_id.is_none();
        let _guard = self.reuse_lock.lock().await;
        if reuse {
            let mut candidates: Vec<Arc<SessionHandle>> = self
                .visible(p)
                .into_iter()
                .filter(|h| {
                    let s = h.snapshot();
                    s.info.status == "idle"
                        && !s.info.paused
                        && h.work_dir == work_dir_s
                        && h.tenant_id == p.tenant_id
                        && h.owner_key_id == p.id
                        && h.agent == agent
                        && s.info
                            .driver
                            .as_ref()
                            .is_none_or(|d| d.principal_id == p.id || d.expires_at <= now_ms())
                })
                .collect();
            candidates.sort_by_key(|h| std::cmp::Reverse(h.snapshot().info.last_activity));
            for h in candidates {
                let (tx, rx) = oneshot::channel();
                let cmd = Cmd::Claim {
                    prompt: req.prompt.clone(),
                    mode: req
                        .permission_mode
                        .clone()
                        .or_else(|| req.auto_approve.map(|_| mode.clone())),
                    model: req.model.clone(),
                    reply: tx,
                };
                if h.cmd.send(cmd).await.is_err() {
                    continue;
                }
                if let Ok(Ok(Some(delivery))) = rx.await {
                    let mut info = h.snapshot().info.clone();
                    info.reused = Some(true);
                    info.prompt_delivery = Some(PromptDelivery {
                        delivered: delivery.delivered,
                        queued: delivery.queued,
                        attempts: delivery.attempts,
                        prompt_id: (!delivery.prompt_id.is_empty()).then_some(delivery.prompt_id),
                    });
                    return Ok((info, true));
                }
            }
        }
        // ---- new session
        let now = now_ms();
        let id = SessionId::new();
        let id8: String = id.to_string().chars().take(8).collect();
        let name = match name {
            Some(n) => n.chars().filter(|c| !c.is_control()).collect(),
            None => match (&cfg.default_session_name, &req.prompt) {
                (Some(d), _) if !d.is_empty() => format!("{d}-{id8}"),
                (_, Some(pr)) if !pr.trim().is_empty() => format!("cc-{}", slug(pr)),
                _ => format!("cc-{id8}"),
            },
        };
        let rec = SessionRecord {
            id,
            name,
            work_dir: work_dir_s,
            agent,
            owner_key_id: p.id.clone(),
            tenant_id: p.tenant_id.clone(),
            created_at: now,
            last_activity: now,
            ended_at: None,
            permission_mode: mode,
            mode_emulated: false,
            model: req.model.clone().or(cfg.default_model.clone()),
            title: None,
            state: SessionState::new(now, cfg.max_queued_prompts),
            last_error: None,
            exit: None,
            usage: Default::default(),
            stall_threshold_ms: req.stall_threshold_ms.unwrap_or(cfg.stall_threshold_ms),
            permission_timeout_ms: req
                .permission_timeout_ms
                .unwrap_or(cfg.permission_timeout_ms),
            parent_id,
            children: vec![],
            agent_info: None,
            acp_session_id: None,
            pid: None,
            last_event_id: 0,
            env,
            mcp_servers: mcp,
            meta,
            available_commands: vec![],
            permission_profile: req.permission_profile.clone(),
            transcript: Default::default(),
            pending: vec![],
            last_agent_message_at: None,
            counters: Default::default(),
            resumable: false,
            paused_reason: None,
            driver: None,
        };
        let (handle, mut actor, rx) = self.make_actor(rec);
        let delivery = actor
            .init_new(req.prompt.clone(), req.resume_session_id.clone())
            .await?;
        write(&self.sessions).insert(handle.id, handle.clone());
        tokio::spawn(actor.run(rx));
        let mut info = handle.snapshot().info.clone();
        info.reused = Some(false);
        info.prompt_delivery = Some(delivery);
        Ok((info, false))
    }

    /// List sessions visible to the principal.
    pub fn list(&self, p: &Principal, q: &ListQuery) -> CoreResult<SessionList> {
        let filter = match &q.status {
            Some(s) => Some(StatusFilter::parse(s).map_err(|e| {
                CoreError::validation("status", format!("unknown status or group '{}'", e.token))
            })?),
            None => None,
        };
        if let Some(prefix) = &q.id_prefix {
            if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return Err(CoreError::validation(
                    "idPrefix",
                    "at least 4 hex characters",
                ));
            }
        }
        let project = q.project.as_ref().map(|s| s.to_lowercase());
        let mut rows: Vec<(u64, SessionInfo)> = self
            .visible(p)
            .into_iter()
            .filter_map(|h| {
                let s = h.snapshot();
                let info = &s.info;
                let status: SessionStatus = info.status.parse().ok()?;
                if let Some(f) = &filter {
                    if !f.matches(status) {
                        return None;
                    }
                }
                if let Some(pr) = &project {
                    if !info.work_dir.to_lowercase().contains(pr.as_str()) {
                        return None;
                    }
                }
                if let Some(w) = &q.work_dir {
                    let w = w.trim_end_matches('/');
                    if !(info.work_dir == w || info.work_dir.starts_with(&format!("{w}/"))) {
                        return None;
                    }
                }
                if let Some(a) = &q.agent {
                    if &info.agent != a {
                        return None;
                    }
                }
                if let Some(o) = &q.owner {
                    let o = if o == "me" { p.id.as_str() } else { o.as_str() };
                    if info.owner_key_id != o {
                        return None;
                    }
                }
                if let Some(prefix) = &q.id_prefix {
                    if !info.id.starts_with(&prefix.to_lowercase()) {
                        return None;
                    }
                }
                Some((h.created_at, info.clone()))
            })
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
        let total = rows.len() as u64;
        let limit = q.limit.max(1);
        let page = q.page.max(1);
        let skip = usize::try_from((page - 1).saturating_mul(limit)).unwrap_or(usize::MAX);
        let sessions = rows
            .into_iter()
            .skip(skip)
            .take(usize::try_from(limit).unwrap_or(100))
            .map(|(_, i)| i)
            .collect();
        Ok(SessionList {
            sessions,
            pagination: Pagination {
                page,
                limit,
                total,
                total_pages: total.div_ceil(limit),
            },
        })
    }

    /// One session with `actionHints` and `availableCommands`.
    pub fn get(&self, p: &Principal, id: &str) -> CoreResult<SessionInfo> {
        let h = self.lookup(p, id)?;
        let s = h.snapshot();
        let mut info = s.info.clone();
        info.action_hints = record::action_hints(&self.shared.config().base_url, &info);
        info.available_commands = Some(s.available_commands.clone());
        Ok(info)
    }

    pub fn health(&self, p: &Principal, id: &str) -> CoreResult<SessionHealth> {
        let h = self.lookup(p, id)?;
        let s = h.snapshot();
        let mut health = record::health(
            &s.info,
            s.agent_running,
            s.last_agent_message_at,
            now_ms(),
            s.has_transcript,
        );
        health.action_hints = record::action_hints(&self.shared.config().base_url, &s.info);
        Ok(health)
    }

    /// `GET /v1/sessions/health`: live sessions only.
    pub fn all_health(&self, p: &Principal) -> BTreeMap<String, SessionHealth> {
        let now = now_ms();
        self.visible(p)
            .into_iter()
            .filter_map(|h| {
                let s = h.snapshot();
                let live = s
                    .info
                    .status
                    .parse::<SessionStatus>()
                    .is_ok_and(SessionStatus::is_live);
                live.then(|| {
                    (
                        s.info.id.clone(),
                        record::health(
                            &s.info,
                            s.agent_running,
                            s.last_agent_message_at,
                            now,
                            s.has_transcript,
                        ),
                    )
                })
            })
            .collect()
    }

    /// `GET /v1/sessions/stats`.
    pub fn stats(&self, p: &Principal) -> Value {
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        let mut active = 0;
        let all = self.visible(p);
        for h in &all {
            let s = h.snapshot();
            if s.info
                .status
                .parse::<SessionStatus>()
                .is_ok_and(SessionStatus::is_live)
            {
                active += 1;
            }
            *by.entry(s.info.status.clone()).or_default() += 1;
        }
        json!({
            "active": active,
            "byStatus": by,
            "totalCreated": all.len(),
            "totalCompleted": by.get("completed").copied().unwrap_or(0),
            "totalFailed": by.get("crashed").copied().unwrap_or(0),
            "totalKilled": by.get("killed").copied().unwrap_or(0),
        })
    }

    pub async fn patch(
        &self,
        p: &Principal,
        id: &str,
        req: PatchSessionRequest,
    ) -> CoreResult<SessionInfo> {
        if let Some(n) = &req.name {
            if n.chars().count() > 200 {
                return Err(CoreError::validation("name", "at most 200 characters"));
            }
        }
        if let Some(m) = &req.permission_mode {
            if !policy::MODES.contains(&m.as_str()) {
                return Err(CoreError::validation(
                    "permissionMode",
                    format!("must be one of {}", policy::MODES.join(", ")),
                ));
            }
        }
        if let Some(t) = req.stall_threshold_ms {
            if !(1000..=86_400_000).contains(&t) {
                return Err(CoreError::validation(
                    "stallThresholdMs",
                    "must be 1000-86400000",
                ));
            }
        }
        if let Some(t) = req.permission_timeout_ms {
            if t > 86_400_000 {
                return Err(CoreError::validation(
                    "permissionTimeoutMs",
                    "must be 0-86400000",
                ));
            }
        }
        self.gated(p, id, |reply| Cmd::Patch { req, reply }).await
    }

    /// `{ok:true, status}`.
    pub async fn kill(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        self.call(p, id, |reply| Cmd::Kill {
            reason: "killed_by_api".into(),
            reply,
        })
        .await
    }

    /// `{ok:true, status:"completed"}`.
    pub async fn close(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        self.call(p, id, |reply| Cmd::Close { reply }).await
    }

    pub async fn send(
        &self,
        p: &Principal,
        id: &str,
        text: String,
        kind: SendKind,
    ) -> CoreResult<SendResponse> {
        let (text, source) = match kind {
            SendKind::Text => (text, PromptSource::Api),
            SendKind::Command if text.starts_with('/') => (text, PromptSource::Command),
            SendKind::Command => (format!("/{text}"), PromptSource::Command),
        };
        self.gated(p, id, |reply| Cmd::Send {
            text,
            source,
            reply,
        })
        .await
    }

    pub async fn approve(
        &self,
        p: &Principal,
        id: &str,
        req: ApproveRequest,
        via: Via,
    ) -> CoreResult<DecisionResponse> {
        let by = p.id.clone();
        self.call(p, id, |reply| Cmd::Approve {
            req,
            by,
            via,
            reply,
        })
        .await
    }

    pub async fn reject(
        &self,
        p: &Principal,
        id: &str,
        req: RejectRequest,
        via: Via,
    ) -> CoreResult<DecisionResponse> {
        if req
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > 1000)
        {
            return Err(CoreError::validation("reason", "at most 1000 characters"));
        }
        let by = p.id.clone();
        self.call(p, id, |reply| Cmd::Reject {
            req,
            by,
            via,
            reply,
        })
        .await
    }

    /// `{ok:true, action}`.
    pub async fn escape(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        self.gated(p, id, |reply| Cmd::Escape { reply }).await
    }

    /// `{ok:true, action, turnEnded}` (waits ≤ 5 s for the turn to end).
    pub async fn interrupt(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        let (_, waiter) = self
            .gated(p, id, |reply| Cmd::Interrupt {
                drop_queue: false,
                reply,
            })
            .await?;
        let (action, ended) = match waiter {
            Some(rx) => (
                "cancelled",
                tokio::time::timeout(Duration::from_secs(5), rx)
                    .await
                    .is_ok(),
            ),
            None => ("none", true),
        };
        Ok(json!({"ok": true, "action": action, "turnEnded": ended}))
    }

    /// `{ok:true, droppedPrompts, turnEnded, restarted}`.
    pub async fn cancel(&self, p: &Principal, id: &str, force: bool) -> CoreResult<Value> {
        let (dropped, waiter) = self
            .gated(p, id, |reply| Cmd::Interrupt {
                drop_queue: true,
                reply,
            })
            .await?;
        let ended = match waiter {
            Some(rx) => tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .is_ok(),
            None => true,
        };
        let mut restarted = false;
        if force && !ended {
            // The agent ignored the cancel: kill it and reattach the conversation.
            restarted = self
                .gated(p, id, |reply| Cmd::ForceRestart { reply })
                .await?;
        }
        Ok(
            json!({"ok": true, "droppedPrompts": dropped, "turnEnded": ended, "restarted": restarted}),
        )
    }

    /// `{ok:true, paused:true}`.
    pub async fn pause(
        &self,
        p: &Principal,
        id: &str,
        reason: Option<String>,
    ) -> CoreResult<Value> {
        if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            return Err(CoreError::validation("reason", "at most 500 characters"));
        }
        let by = p.id.clone();
        self.gated(p, id, |reply| Cmd::Pause { reason, by, reply })
            .await
    }

    /// `{ok:true, action}`.
    pub async fn resume(&self, p: &Principal, id: &str, fresh: bool) -> CoreResult<Value> {
        let by = p.id.clone();
        self.gated(p, id, |reply| Cmd::Resume { fresh, by, reply })
            .await
    }
}

fn entry_matches(e: &TranscriptEntry, role: Option<&str>, kinds: &[String]) -> bool {
    if let Some(r) = role {
        if e.role != r {
            return false;
        }
    }
    if kinds.is_empty() {
        return true;
    }
    let kind = serde_json::to_value(&e.body)
        .ok()
        .and_then(|v| v.get("kind").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    kinds.contains(&kind)
}

const ENTRY_KINDS: [&str; 9] = [
    "user_message",
    "agent_message",
    "agent_thought",
    "tool_call",
    "plan",
    "permission",
    "question",
    "usage",
    "system",
];

fn check_role_kinds(role: &Option<String>, kinds: &[String]) -> CoreResult<()> {
    if let Some(r) = role {
        if !["user", "assistant", "system"].contains(&r.as_str()) {
            return Err(CoreError::validation(
                "role",
                "must be user, assistant or system",
            ));
        }
    }
    for k in kinds {
        if !ENTRY_KINDS.contains(&k.as_str()) {
            return Err(CoreError::validation(
                "kind",
                format!("unknown kind '{k}'; kinds: {}", ENTRY_KINDS.join(", ")),
            ));
        }
    }
    Ok(())
}

impl SessionService {
    async fn entries_range(
        &self,
        sid: &str,
        after_id: u64,
        limit: usize,
    ) -> CoreResult<Vec<TranscriptEntry>> {
        let after = (after_id > 0).then(|| entry_key(after_id));
        let page = self
            .shared
            .store
            .list_docs(collections::TRANSCRIPT, sid, after.as_deref(), limit)
            .await?;
        Ok(page
            .items
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_value(v.doc).ok())
            .collect())
    }

    /// `GET …/read`: `after` = event id cursor (stateless) or `None` (per-principal cursor).
    pub async fn read(
        &self,
        p: &Principal,
        id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> CoreResult<ReadResponse> {
        let h = self.lookup(p, id)?;
        let sid = h.id.to_string();
        let store = &self.shared.store;
        let stateful = after.is_none();
        let cursor = match after {
            Some(a) => a,
            None => store
                .get_doc(collections::READ_CURSORS, &sid, &p.id)
                .await?
                .and_then(|v| v.doc.get("after").and_then(Value::as_u64))
                .unwrap_or(0),
        };
        // Latest revision of each entry changed after the cursor, in event order.
        let mut latest: BTreeMap<u64, (u64, TranscriptEntry)> = BTreeMap::new();
        let mut next = cursor;
        let mut has_more = false;
        let mut scanned = cursor;
        loop {
            let batch = store.read_events(&sid, scanned, 1000).await?;
            if batch.is_empty() {
                break;
            }
            for ev in &batch {
                scanned = ev.id;
                if ev.event != "message" {
                    if latest.len() < limit {
                        next = ev.id;
                    }
                    continue;
                }
                let Ok(env) = serde_json::from_str::<Value>(&ev.json) else {
                    continue;
                };
                let Ok(entry) = serde_json::from_value::<TranscriptEntry>(env["data"].clone())
                else {
                    continue;
                };
                if !latest.contains_key(&entry.entry_id) && latest.len() >= limit {
                    has_more = true;
                    break;
                }
                next = ev.id;
                latest.insert(entry.entry_id, (ev.id, entry));
            }
            if has_more {
                break;
            }
        }
        let mut messages: Vec<(u64, TranscriptEntry)> = latest.into_values().collect();
        messages.sort_by_key(|(eid, _)| *eid);
        let messages: Vec<TranscriptEntry> = messages.into_iter().map(|(_, e)| e).collect();
        if stateful && next > cursor {
            store
                .put_doc(
                    collections::READ_CURSORS,
                    &sid,
                    &p.id,
                    &json!({"after": next}),
                    None,
                )
                .await?;
        }
        let s = h.snapshot();
        let interactive = s.pending.first().map(|pr| {
            json!({"type": "permission", "requestId": pr.request_id.to_string(),
                   "prompt": record::permission_prompt_text(pr),
                   "options": pr.options})
        });
        Ok(ReadResponse {
            messages,
            status: s.info.status.clone(),
            status_text: s.info.status_text.clone(),
            interactive_content: interactive,
            cursor: ReadCursor {
                after: cursor,
                next,
            },
            has_more,
        })
    }

    /// `GET …/transcript` (page 1-based, limit 1–200; `role`, `kinds` and `turn_id` filters).
    #[allow(clippy::too_many_arguments)]
    pub async fn transcript_page(
        &self,
        p: &Principal,
        id: &str,
        page: u64,
        limit: u64,
        role: Option<String>,
        kinds: Vec<String>,
        turn_id: Option<String>,
    ) -> CoreResult<Value> {
        check_role_kinds(&role, &kinds)?;
        let h = self.lookup(p, id)?;
        let sid = h.id.to_string();
        let mut matching = Vec::new();
        let mut after = 0;
        loop {
            let batch = self.entries_range(&sid, after, 1000).await?;
            let Some(last) = batch.last() else { break };
            after = last.entry_id;
            matching.extend(batch.into_iter().filter(|e| {
                entry_matches(e, role.as_deref(), &kinds)
                    && turn_id
                        .as_ref()
                        .is_none_or(|t| e.turn_id.as_ref() == Some(t))
            }));
        }
        let total = matching.len() as u64;
        let skip = usize::try_from((page.max(1) - 1).saturating_mul(limit)).unwrap_or(usize::MAX);
        let messages: Vec<TranscriptEntry> = matching
            .into_iter()
            .skip(skip)
            .take(usize::try_from(limit).unwrap_or(50))
            .collect();
        let has_more = page.max(1).saturating_mul(limit) < total;
        Ok(
            json!({"messages": messages, "total": total, "page": page, "limit": limit, "hasMore": has_more}),
        )
    }

    /// `GET …/transcript/cursor` (`before_id` / `after_id` exclusive).
    #[allow(clippy::too_many_arguments)]
    pub async fn transcript_cursor(
        &self,
        p: &Principal,
        id: &str,
        before_id: Option<u64>,
        after_id: Option<u64>,
        limit: u64,
        role: Option<String>,
        kinds: Vec<String>,
    ) -> CoreResult<Value> {
        check_role_kinds(&role, &kinds)?;
        let h = self.lookup(p, id)?;
        let sid = h.id.to_string();
        let limit = usize::try_from(limit).unwrap_or(50);
        let filtered = |v: Vec<TranscriptEntry>| -> Vec<TranscriptEntry> {
            v.into_iter()
                .filter(|e| entry_matches(e, role.as_deref(), &kinds))
                .collect()
        };
        let (messages, has_more) = if let Some(after) = after_id {
            let mut out = Vec::new();
            let mut cur = after;
            let mut more = false;
            loop {
                let batch = self.entries_range(&sid, cur, 500).await?;
                let Some(last) = batch.last() else { break };
                cur = last.entry_id;
                for e in filtered(batch) {
                    if out.len() == limit {
                        more = true;
                        break;
                    }
                    out.push(e);
                }
                if more {
                    break;
                }
            }
            (out, more)
        } else {
            // Newest `limit` entries before `before_id` (or the end): walk back in windows.
            let end = match before_id {
                Some(b) => b.saturating_sub(1),
                None => {
                    self.shared
                        .store
                        .list_docs(collections::TRANSCRIPT, &sid, None, 0)
                        .await?
                        .total
                }
            };
            let mut out: Vec<TranscriptEntry> = Vec::new();
            let mut hi = end;
            let mut more = false;
            while hi > 0 && out.len() <= limit {
                let lo = hi.saturating_sub(500);
                let batch = self
                    .entries_range(&sid, lo, usize::try_from(hi - lo).unwrap_or(500))
                    .await?;
                let mut f = filtered(batch);
                f.append(&mut out);
                out = f;
                hi = lo;
            }
            if out.len() > limit {
                more = true;
                out = out.split_off(out.len() - limit);
            } else if hi > 0 {
                more = false;
            }
            (out, more)
        };
        let rows: Vec<Value> = messages
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
                v["_cursor_id"] = json!(e.entry_id);
                v
            })
            .collect();
        Ok(json!({
            "messages": rows,
            "has_more": has_more,
            "oldest_id": messages.first().map(|e| e.entry_id),
            "newest_id": messages.last().map(|e| e.entry_id),
        }))
    }

    pub async fn summary(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        let s = h.snapshot();
        let last = self
            .transcript_cursor(p, id, None, None, 20, None, vec![])
            .await?;
        let total = self
            .shared
            .store
            .list_docs(collections::TRANSCRIPT, &h.id.to_string(), None, 0)
            .await?
            .total;
        let messages: Vec<Value> = last["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        let text: String =
                            m["text"].as_str().unwrap_or("").chars().take(500).collect();
                        json!({"role": m["role"], "contentType": m["contentType"], "text": text})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let info = &s.info;
        Ok(json!({
            "sessionId": info.id, "name": info.name, "windowName": info.name, "status": info.status,
            "title": info.title, "agent": info.agent, "model": info.model, "totalMessages": total,
            "messages": messages, "createdAt": info.created_at, "lastActivity": info.last_activity,
            "permissionMode": info.permission_mode, "usage": info.usage, "prd": info.meta.get("prd"),
        }))
    }

    /// `GET …/metrics` of one session.
    pub fn session_metrics(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        let s = h.snapshot();
        let info = &s.info;
        let end = info.ended_at.unwrap_or_else(now_ms);
        Ok(json!({
            "durationSec": end.saturating_sub(info.created_at) / 1000,
            "turns": s.counters.turns, "messages": s.counters.messages, "toolCalls": s.counters.tool_calls,
            "approvals": s.counters.approvals, "autoApprovals": s.counters.auto_approvals,
            "rejections": s.counters.rejections, "statusChanges": s.counters.status_changes,
            "tokenUsage": {"inputTokens": info.usage.input_tokens, "outputTokens": info.usage.output_tokens,
                "cacheCreationTokens": info.usage.cache_creation_tokens, "cacheReadTokens": info.usage.cache_read_tokens,
                "estimatedCostUsd": info.usage.cost_usd.unwrap_or(0.0)},
        }))
    }

    fn type_ok(filter: &EventFilter, event: &str) -> bool {
        if filter.timeline && (event == "message" || event == "message_delta") {
            return false;
        }
        filter.types.is_empty() || filter.types.iter().any(|t| t == event)
    }

    /// `GET …/events/log`.
    pub async fn events_log(
        &self,
        p: &Principal,
        id: &str,
        after: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> CoreResult<EventLogPage> {
        let h = self.lookup(p, id)?;
        let sid = h.id.to_string();
        let store = &self.shared.store;
        let mut events = Vec::new();
        let mut cursor = after;
        let mut has_more = false;
        'outer: loop {
            let batch = store.read_events(&sid, cursor, 1000).await?;
            if batch.is_empty() {
                break;
            }
            for ev in batch {
                if Self::type_ok(filter, &ev.event) {
                    if events.len() == limit {
                        has_more = true;
                        break 'outer;
                    }
                    events.push(serde_json::from_str(&ev.json).unwrap_or(Value::Null));
                }
                cursor = ev.id;
            }
        }
        let oldest = store.oldest_event_id(&sid).await?;
        Ok(EventLogPage {
            events,
            next_after: cursor,
            has_more,
            oldest_available_id: Some(oldest),
        })
    }

    /// `GET /v1/events/log` (global sequence cursor).
    pub async fn global_events_log(
        &self,
        p: &Principal,
        after: u64,
        limit: usize,
        filter: &EventFilter,
        session_id: Option<&str>,
    ) -> CoreResult<EventLogPage> {
        if let Some(s) = session_id {
            parse_session_id(s)?;
        }
        let store = &self.shared.store;
        let mut events = Vec::new();
        let mut cursor = after;
        let mut has_more = false;
        'outer: loop {
            let batch = store.read_global(cursor, 1000).await?;
            if batch.is_empty() {
                break;
            }
            for ev in batch {
                let visible = ev.tenant_id.as_deref().is_none_or(|t| p.sees_tenant(t));
                let session_ok = session_id.is_none_or(|s| ev.session_id.as_deref() == Some(s));
                if visible && session_ok && Self::type_ok(filter, &ev.event) {
                    if events.len() == limit {
                        has_more = true;
                        break 'outer;
                    }
                    events.push(serde_json::from_str(&ev.json).unwrap_or(Value::Null));
                }
                cursor = ev.global_seq;
            }
        }
        Ok(EventLogPage {
            events,
            next_after: cursor,
            has_more,
            oldest_available_id: None,
        })
    }

    /// `GET /v1/permissions`: `status` pending (default) | resolved | all.
    pub fn permissions(
        &self,
        p: &Principal,
        status: Option<&str>,
        session_id: Option<&str>,
        page: u64,
        limit: u64,
    ) -> CoreResult<Value> {
        let status = status.unwrap_or("pending");
        if !["pending", "resolved", "all"].contains(&status) {
            return Err(CoreError::validation(
                "status",
                "must be pending, resolved or all",
            ));
        }
        let sid = match session_id {
            Some(s) => Some(self.lookup(p, s)?.id),
            None => None,
        };
        let names: HashMap<SessionId, (String, String)> = self
            .visible(p)
            .into_iter()
            .map(|h| (h.id, (h.snapshot().info.name.clone(), h.tenant_id.clone())))
            .collect();
        let now = now_ms();
        let mut rows: Vec<PermissionRequest> = read(&self.shared.permissions)
            .values()
            .filter(|r| names.contains_key(&r.session_id))
            .filter(|r| sid.is_none_or(|s| s == r.session_id))
            .filter(|r| match status {
                "pending" => r.is_pending(),
                "resolved" => !r.is_pending(),
                _ => true,
            })
            .cloned()
            .collect();
        // Pending ones from live snapshots are authoritative (a request may have been decided
        // after the index was updated).
        if status == "pending" {
            rows.retain(|r| {
                read(&self.sessions).get(&r.session_id).is_some_and(|h| {
                    h.snapshot()
                        .pending
                        .iter()
                        .any(|x| x.request_id == r.request_id)
                })
            });
        }
        rows.sort_by_key(|r| r.created_at);
        let total = rows.len() as u64;
        let skip = usize::try_from((page.max(1) - 1).saturating_mul(limit)).unwrap_or(usize::MAX);
        let items: Vec<Value> = rows
            .iter()
            .skip(skip)
            .take(usize::try_from(limit).unwrap_or(20))
            .map(|r| {
                let mut dto = record::permission_dto(r, now, 0);
                dto.session_name = names.get(&r.session_id).map(|(n, _)| n.clone());
                serde_json::to_value(dto).unwrap_or(Value::Null)
            })
            .collect();
        Ok(json!({"permissions": items, "pagination": Pagination {
            page, limit, total, total_pages: total.div_ceil(limit.max(1)) }}))
    }

    pub fn permission(&self, p: &Principal, request_id: &str) -> CoreResult<PermissionRequestDto> {
        let rid =
            RequestId::parse(request_id).map_err(|_| CoreError::not_found("permission request"))?;
        let r = read(&self.shared.permissions)
            .get(&rid)
            .cloned()
            .ok_or_else(|| CoreError::not_found("permission request"))?;
        let h = read(&self.sessions)
            .get(&r.session_id)
            .cloned()
            .ok_or_else(|| CoreError::not_found("permission request"))?;
        if !p.sees_tenant(&h.tenant_id) {
            return Err(CoreError::not_found("permission request"));
        }
        let mut dto = record::permission_dto(&r, now_ms(), h.snapshot().info.permission_timeout_ms);
        dto.session_name = Some(h.snapshot().info.name.clone());
        Ok(dto)
    }

    /// Subscribe to every published event (filter by session/tenant on the receiving side).
    /// Subscribe *before* replaying from the store, then skip live events already replayed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.shared.bus.subscribe()
    }

    /// Durable events of one session with id > `after` (for SSE replay), at most `limit`.
    pub async fn replay_session(
        &self,
        p: &Principal,
        id: &str,
        after: u64,
        limit: usize,
    ) -> CoreResult<Vec<BusEvent>> {
        let h = self.lookup(p, id)?;
        let events = self
            .shared
            .store
            .read_events(&h.id.to_string(), after, limit)
            .await?;
        Ok(events.iter().map(bus_event).collect())
    }

    /// Durable events of all visible sessions with globalSeq > `after`, at most `limit`.
    /// Reads on past other tenants' events, so an empty result means the log is exhausted.
    pub async fn replay_global(
        &self,
        p: &Principal,
        after: u64,
        limit: usize,
    ) -> CoreResult<Vec<BusEvent>> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            let events = self
                .shared
                .store
                .read_global(cursor, limit.max(100))
                .await?;
            let Some(last) = events.last() else { break };
            cursor = last.global_seq;
            for e in &events {
                if out.len() == limit {
                    break;
                }
                if e.tenant_id.as_deref().is_none_or(|t| p.sees_tenant(t)) {
                    out.push(bus_event(e));
                }
            }
        }
        Ok(out)
    }

    /// `{sessionId, lastEventId, status, ended}` for SSE streams.
    pub fn stream_info(&self, p: &Principal, id: &str) -> CoreResult<Value> {
        let h = self.lookup(p, id)?;
        let s = h.snapshot();
        let ended = s
            .info
            .status
            .parse::<SessionStatus>()
            .is_ok_and(SessionStatus::is_terminal);
        Ok(
            json!({"sessionId": s.info.id, "lastEventId": s.info.last_event_id,
                  "status": s.info.status, "ended": ended, "oldestAvailableId": 1}),
        )
    }

    /// `{activeSessions, lastGlobalSeq}` for the global stream's `connected` frame.
    pub fn global_stream_info(&self, p: &Principal) -> Value {
        let active = self
            .visible(p)
            .iter()
            .filter(|h| {
                h.snapshot()
                    .info
                    .status
                    .parse::<SessionStatus>()
                    .is_ok_and(SessionStatus::is_live)
            })
            .count();
        json!({"activeSessions": active, "lastGlobalSeq": self.shared.bus.last_global_seq()})
    }

    /// `GET /v1/health` body for an authenticated caller.
    pub async fn health_report(&self) -> Value {
        let cfg = self.shared.config();
        let store_health = self.shared.store.health().await;
        let all: Vec<Arc<SessionHandle>> = read(&self.sessions).values().cloned().collect();
        let active = all
            .iter()
            .filter(|h| {
                h.snapshot()
                    .info
                    .status
                    .parse::<SessionStatus>()
                    .is_ok_and(SessionStatus::is_live)
            })
            .count();
        let agents = self.agents_map(&cfg);
        let default_ok = agents
            .get(&cfg.agents.default_agent)
            .and_then(|a| a.get("available"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let status = if self.draining.load(Ordering::SeqCst) {
            "draining"
        } else if store_health.is_err() || !default_ok {
            "degraded"
        } else {
            "ok"
        };
        json!({
            "status": status,
            "version": cfg.version,
            "uptime": now_ms().saturating_sub(self.shared.started_at) / 1000,
            "timestamp": iso8601_ms(now_ms()),
            "platform": std::env::consts::OS,
            "sessions": {"active": active, "total": all.len()},
            "agents": agents,
            "store": {"type": self.shared.store.kind(), "healthy": store_health.is_ok(),
                      "error": store_health.err().map(|e| e.to_string())},
        })
    }

    /// Server status only (for callers without a credential while auth is on).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn agents_map(&self, cfg: &ServiceConfig) -> serde_json::Map<String, Value> {
        let cache = read(&self.shared.agent_cache);
        cfg.agents
            .names()
            .into_iter()
            .map(|name| {
                let v = match cfg.agents.resolve(&name) {
                    Ok(r) => json!({"available": true, "source": r.source.as_str(),
                        "command": r.command.display().to_string(),
                        "version": cache.get(&name).and_then(|(i, _)| i.version.clone()),
                        "authenticated": Value::Null}),
                    Err(e) => {
                        json!({"available": false, "source": Value::Null, "command": Value::Null,
                        "authenticated": Value::Null, "error": e.to_string()})
                    }
                };
                (name, v)
            })
            .collect()
    }

    /// `GET /v1/agents`.
    pub fn agents(&self) -> Value {
        let cfg = self.shared.config();
        let cache = read(&self.shared.agent_cache);
        let agents: Vec<Value> = cfg
            .agents
            .names()
            .into_iter()
            .map(|name| {
                let cached = cache.get(&name);
                let mut v = match cfg.agents.resolve(&name) {
                    Ok(r) => json!({"name": name, "default": name == cfg.agents.default_agent, "available": true,
                        "source": r.source.as_str(), "command": r.command.display().to_string(), "args": r.args}),
                    Err(e) => json!({"name": name, "default": name == cfg.agents.default_agent, "available": false,
                        "source": Value::Null, "command": Value::Null, "args": [], "error": e.to_string()}),
                };
                if let Some((info, at)) = cached {
                    v["version"] = json!(info.version);
                    v["agentInfo"] = json!(info);
                    v["modes"] = json!(info.modes);
                    v["capabilities"] = json!(info.capabilities);
                    v["checkedAt"] = json!(at);
                }
                v
            })
            .collect();
        json!({"agents": agents})
    }

    /// `GET /v1/diagnostics`.
    pub fn diagnostics(
        &self,
        p: &Principal,
        limit: usize,
        session_id: Option<&str>,
        level: Option<&str>,
    ) -> Value {
        let visible: std::collections::HashSet<String> =
            self.visible(p).iter().map(|h| h.id.to_string()).collect();
        let d = lock(&self.shared.diagnostics);
        let events: Vec<Value> = d
            .iter()
            .rev()
            .filter(|e| {
                e["sessionId"].as_str().is_none_or(|s| visible.contains(s))
                    && session_id.is_none_or(|s| e["sessionId"].as_str() == Some(s))
                    && level.is_none_or(|l| e["level"].as_str() == Some(l))
            })
            .take(limit)
            .cloned()
            .collect();
        json!({"count": events.len(), "events": events,
               "unknownUpdates": *lock(&self.shared.unknown_updates)})
    }

    /// Graceful shutdown. Without detached supervisors an agent cannot outlive the server, so
    /// every live session is marked `interrupted` (resumable) and its agent stopped.
    pub async fn shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let all: Vec<Arc<SessionHandle>> = read(&self.sessions).values().cloned().collect();
        let mut waits = Vec::new();
        for h in all {
            let (tx, rx) = oneshot::channel();
            if h.cmd
                .send(Cmd::Shutdown {
                    mark_interrupted: true,
                    reply: tx,
                })
                .await
                .is_ok()
            {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
        }
    }
}

/// One env variable of a create body or template against the session env policy (api §2.9).
pub(crate) fn check_env_var(k: &str, v: &str) -> CoreResult<()> {
    if !env_name_ok(k) {
        return Err(CoreError::validation(
            &format!("env.{k}"),
            "names must match ^[A-Z_][A-Z0-9_]*$",
        ));
    }
    if env_denied(k) {
        return Err(CoreError::validation(
            &format!("env.{k}"),
            "this variable may not be set per session",
        ));
    }
    if v.is_empty() || v.len() > 8192 || v.chars().any(|c| c.is_control() && c != '\t') {
        return Err(CoreError::validation(
            &format!("env.{k}"),
            "values are 1-8192 bytes without control characters",
        ));
    }
    Ok(())
}
