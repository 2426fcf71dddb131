//! Pipelines (cli-mcp-config §4.1): durable, resumable DAGs of agent sessions.
//!
//! A pipeline is a set of named stages with `dependsOn` edges. Every stage runs its prompt in a
//! **new** session; the stage's output (the text of the agent messages of that prompt's turn)
//! replaces `{{stages.NAME.output}}` in the prompts of its dependants.
//!
//! The engine is one task per service (an actor): it owns every pipeline, receives commands
//! (create, cancel, resume, approve) over a channel and session events from the event bus
//! (`turn` / `ended` of the stage sessions), so it reacts to a turn's end at once — no polling.
//! Stage timeouts and the capacity retry (every 5 s while `maxSessions` is reached) are timers
//! of the same loop. Every change is persisted (`pipelines` collection) *before* its global
//! `pipeline` event is published, and readers use the snapshot the engine publishes.
//!
//! Restart: the service starts the engine after every session was recovered. Running stages
//! are reconciled from their session's durable event log: a turn that ended while the server
//! was down is applied; a turn lost to the restart (`reason: interrupted`) is queued again once
//! (`attempts` = 2); a prompt still queued or running keeps waiting for its turn.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use aegis_api_types::orchestration::{
    PipelineConfig, PipelineStageConfig, PipelineStageState, PipelineState,
};
use aegis_api_types::{CreateSessionRequest, EntryBody, TranscriptEntry};
use aegis_domain::SessionStatus;
use aegis_runtime::registry::ResolveError;
use aegis_store::collections;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::bus::{NewEvent, now_ms};
use crate::templates::placeholders;
use crate::{
    BusEvent, CoreError, CoreResult, ErrorKind, Principal, Role, SendKind, SessionService, policy,
    workdir,
};

/// Longest stage output kept (characters); longer outputs are cut (`outputTruncated`).
pub const MAX_OUTPUT_CHARS: usize = 100_000;
/// Most stages of a pipeline.
pub const MAX_STAGES: usize = 50;
/// Delay before a stage blocked by `maxSessions` is tried again.
pub const CAPACITY_RETRY_MS: u64 = 5_000;
/// Most extra attempts of a stage (`retries`).
pub const MAX_RETRIES: u32 = 5;
/// Minimum interval between two batches of one principal.
pub const BATCH_INTERVAL_MS: u64 = 5_000;

// ---------------------------------------------------------------------------------------------
// Stored state
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PipelineStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl PipelineStatus {
    fn as_str(self) -> &'static str {
        match self {
            PipelineStatus::Running => "running",
            PipelineStatus::Completed => "completed",
            PipelineStatus::Failed => "failed",
            PipelineStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StageStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Cancelled,
}

impl StageStatus {
    fn as_str(self) -> &'static str {
        match self {
            StageStatus::Pending => "pending",
            StageStatus::Running => "running",
            StageStatus::Completed => "completed",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
            StageStatus::Cancelled => "cancelled",
        }
    }

    fn is_terminal(self) -> bool {
        !matches!(self, StageStatus::Pending | StageStatus::Running)
    }
}

/// A stage as stored: its (resolved) configuration and its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StageDoc {
    name: String,
    prompt: String,
    depends_on: Vec<String>,
    /// Canonical work dir.
    work_dir: String,
    agent: Option<String>,
    model: Option<String>,
    permission_mode: Option<String>,
    timeout_ms: Option<u64>,
    retries: u32,
    gate: bool,

    status: StageStatus,
    session_id: Option<String>,
    started_at: Option<u64>,
    completed_at: Option<u64>,
    attempts: u32,
    output: Option<String>,
    output_truncated: bool,
    error: Option<String>,
    approved: bool,
    awaiting_approval: bool,
    /// The prompt of this attempt (its turn decides the stage).
    prompt_id: Option<String>,
    /// The prompt was queued again after a turn lost to a restart.
    requeued: bool,
    retries_used: u32,
    previous_session_ids: Vec<String>,
}

/// A pipeline as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PipelineDoc {
    id: String,
    name: String,
    status: PipelineStatus,
    work_dir: Option<String>,
    /// The creator: stage sessions are created for it (owner and tenant).
    owner: Principal,
    on_failure: String,
    close_sessions: bool,
    concurrency: u32,
    stage_timeout_ms: Option<u64>,
    created_at: u64,
    finished_at: Option<u64>,
    stages: Vec<StageDoc>,
}

impl PipelineDoc {
    fn index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    fn stop_on_failure(&self) -> bool {
        self.on_failure != "continue"
    }

    /// The wire form.
    pub(crate) fn dto(&self) -> PipelineState {
        let current = if self.status != PipelineStatus::Running {
            "done"
        } else if self.stages.iter().any(|s| s.started_at.is_some()) {
            "execute"
        } else {
            "plan"
        };
        PipelineState {
            id: self.id.clone(),
            name: self.name.clone(),
            status: self.status.as_str().into(),
            work_dir: self.work_dir.clone(),
            owner_key_id: self.owner.id.clone(),
            tenant_id: self.owner.tenant_id.clone(),
            on_failure: self.on_failure.clone(),
            close_sessions: self.close_sessions,
            concurrency: self.concurrency,
            created_at: self.created_at,
            finished_at: self.finished_at,
            stages: self
                .stages
                .iter()
                .map(|s| PipelineStageState {
                    name: s.name.clone(),
                    status: s.status.as_str().into(),
                    session_id: s.session_id.clone(),
                    depends_on: s.depends_on.clone(),
                    started_at: s.started_at,
                    completed_at: s.completed_at,
                    attempts: s.attempts,
                    output: s.output.clone(),
                    output_truncated: s.output_truncated,
                    error: s.error.clone(),
                    gate: s.gate,
                    approved: s.approved,
                    awaiting_approval: s.awaiting_approval,
                    previous_session_ids: s.previous_session_ids.clone(),
                })
                .collect(),
            current_stage: current.into(),
            retry_count: 0,
            max_retries: 0,
            stage_history: vec![],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn stage_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The stage named by a `{{stages.NAME.output}}` placeholder's content, if it is one.
fn stage_ref(inner: &str) -> Option<&str> {
    inner.strip_prefix("stages.")?.strip_suffix(".output")
}

fn issue(path: String, message: String) -> Value {
    json!({"path": path, "message": message})
}

fn validation_error(issues: Vec<Value>) -> CoreError {
    let first = issues
        .first()
        .map(|i| {
            format!(
                "{}: {}",
                i["path"].as_str().unwrap_or(""),
                i["message"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_else(|| "invalid pipeline".into());
    let more = if issues.len() > 1 {
        format!(" (and {} more)", issues.len() - 1)
    } else {
        String::new()
    };
    CoreError::new(ErrorKind::ValidationError, format!("{first}{more}"))
        .with_details(Value::Array(issues))
}

/// Check a pipeline's structure: names, limits, dependencies (unknown, duplicate, cycles) and
/// `{{stages.NAME.output}}` references (NAME must be a transitive dependency). Every issue names
/// the stage. Work dirs and agents are checked by the service (they need its configuration).
pub fn check_pipeline_config(cfg: &PipelineConfig) -> CoreResult<()> {
    let mut issues = Vec::new();
    let n = cfg.name.chars().count();
    if n == 0 || n > 100 {
        issues.push(issue("name".into(), "must be 1 to 100 characters".into()));
    }
    if cfg.stages.is_empty() || cfg.stages.len() > MAX_STAGES {
        issues.push(issue(
            "stages".into(),
            format!("must hold 1 to {MAX_STAGES} stages"),
        ));
    }
    if let Some(f) = &cfg.on_failure {
        if f != "stop" && f != "continue" {
            issues.push(issue(
                "onFailure".into(),
                "must be `stop` or `continue`".into(),
            ));
        }
    }
    if cfg.concurrency.is_some_and(|c| !(1..=50).contains(&c)) {
        issues.push(issue("concurrency".into(), "must be 1 to 50".into()));
    }
    if let Some(m) = &cfg.permission_mode {
        if !policy::MODES.contains(&m.as_str()) {
            issues.push(issue(
                "permissionMode".into(),
                format!("must be one of {}", policy::MODES.join(", ")),
            ));
        }
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in cfg.stages.iter().enumerate() {
        let at = |f: &str| format!("stages[{i}].{f}");
        if !stage_name_ok(&s.name) {
            issues.push(issue(
                at("name"),
                format!("stage name '{}' must match ^[A-Za-z0-9_-]{{1,64}}$", s.name),
            ));
        } else if index.insert(s.name.as_str(), i).is_some() {
            issues.push(issue(
                at("name"),
                format!("duplicate stage name '{}'", s.name),
            ));
        }
        let len = s.prompt.chars().count();
        if len == 0 || len > 100_000 {
            issues.push(issue(
                at("prompt"),
                format!(
                    "stage '{}': the prompt must be 1 to 100000 characters",
                    s.name
                ),
            ));
        }
        if let Some(m) = &s.permission_mode {
            if !policy::MODES.contains(&m.as_str()) {
                issues.push(issue(
                    at("permissionMode"),
                    format!(
                        "stage '{}': must be one of {}",
                        s.name,
                        policy::MODES.join(", ")
                    ),
                ));
            }
        }
        if let Some(m) = &s.model {
            if m.trim().is_empty() || m.chars().count() > 200 {
                issues.push(issue(
                    at("model"),
                    format!("stage '{}': 1 to 200 characters", s.name),
                ));
            }
        }
        if s.retries.is_some_and(|r| r > MAX_RETRIES) {
            issues.push(issue(
                at("retries"),
                format!("stage '{}': at most {MAX_RETRIES}", s.name),
            ));
        }
    }
    if !issues.is_empty() {
        return Err(validation_error(issues));
    }
    // Dependencies.
    for (i, s) in cfg.stages.iter().enumerate() {
        let deps = s.depends_on.as_deref().unwrap_or(&[]);
        let mut seen = BTreeSet::new();
        for d in deps {
            if !index.contains_key(d.as_str()) {
                issues.push(issue(
                    format!("stages[{i}].dependsOn"),
                    format!("stage '{}' depends on unknown stage '{d}'", s.name),
                ));
            } else if !seen.insert(d.as_str()) {
                issues.push(issue(
                    format!("stages[{i}].dependsOn"),
                    format!("stage '{}' lists dependency '{d}' twice", s.name),
                ));
            }
        }
    }
    if !issues.is_empty() {
        return Err(validation_error(issues));
    }
    if let Some(cycle) = find_cycle(cfg, &index) {
        let first = cycle.first().cloned().unwrap_or_default();
        let i = index.get(first.as_str()).copied().unwrap_or(0);
        let mut shown = cycle.clone();
        shown.push(first.clone());
        return Err(validation_error(vec![issue(
            format!("stages[{i}].dependsOn"),
            format!(
                "dependency cycle through stage '{first}': {}",
                shown.join(" → ")
            ),
        )]));
    }
    // Output references.
    let ancestors = ancestors(cfg, &index);
    for (i, s) in cfg.stages.iter().enumerate() {
        for p in placeholders(&s.prompt) {
            if let Some(name) = stage_ref(&p.inner) {
                if !ancestors[i].contains(name) {
                    let why = if index.contains_key(name) {
                        "which is not among its dependencies (add it to dependsOn)"
                    } else {
                        "which is not a stage of this pipeline"
                    };
                    issues.push(issue(
                        format!("stages[{i}].prompt"),
                        format!(
                            "stage '{}' uses {{{{stages.{name}.output}}}}, {why}",
                            s.name
                        ),
                    ));
                }
            }
        }
    }
    if !issues.is_empty() {
        return Err(validation_error(issues));
    }
    Ok(())
}

/// A dependency cycle (stage names in order), if any; a self-dependency is a cycle of one.
fn find_cycle(cfg: &PipelineConfig, index: &HashMap<&str, usize>) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let n = cfg.stages.len();
    let mut mark = vec![0u8; n];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        u: usize,
        cfg: &PipelineConfig,
        index: &HashMap<&str, usize>,
        mark: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        mark[u] = 1;
        stack.push(u);
        for d in cfg.stages[u].depends_on.as_deref().unwrap_or(&[]) {
            let Some(&v) = index.get(d.as_str()) else {
                continue;
            };
            if mark[v] == 1 {
                let pos = stack.iter().position(|&x| x == v).unwrap_or(0);
                // The stack runs dependant → dependency; show dependency order reversed so the
                // arrows read "depends on".
                return Some(
                    stack[pos..]
                        .iter()
                        .map(|&x| cfg.stages[x].name.clone())
                        .collect(),
                );
            }
            if mark[v] == 0 {
                if let Some(c) = visit(v, cfg, index, mark, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        mark[u] = 2;
        None
    }
    for u in 0..n {
        if mark[u] == 0 {
            if let Some(c) = visit(u, cfg, index, &mut mark, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// For each stage, the names of its transitive dependencies (the graph is acyclic).
fn ancestors(cfg: &PipelineConfig, index: &HashMap<&str, usize>) -> Vec<BTreeSet<String>> {
    let n = cfg.stages.len();
    let mut memo: Vec<Option<BTreeSet<String>>> = vec![None; n];
    fn go(
        u: usize,
        cfg: &PipelineConfig,
        index: &HashMap<&str, usize>,
        memo: &mut Vec<Option<BTreeSet<String>>>,
    ) -> BTreeSet<String> {
        if let Some(s) = &memo[u] {
            return s.clone();
        }
        let mut out = BTreeSet::new();
        for d in cfg.stages[u].depends_on.as_deref().unwrap_or(&[]) {
            if let Some(&v) = index.get(d.as_str()) {
                out.insert(d.clone());
                out.extend(go(v, cfg, index, memo));
            }
        }
        memo[u] = Some(out.clone());
        out
    }
    (0..n).map(|u| go(u, cfg, index, &mut memo)).collect()
}

/// Replace `{{stages.NAME.output}}` by the outputs of completed stages.
fn render_prompt(prompt: &str, outputs: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(prompt.len());
    let mut last = 0;
    for p in placeholders(prompt) {
        let Some(name) = stage_ref(&p.inner) else {
            continue;
        };
        let Some(text) = outputs.get(name) else {
            continue;
        };
        out.push_str(&prompt[last..p.start]);
        out.push_str(text);
        last = p.end;
    }
    out.push_str(&prompt[last..]);
    out
}

// ---------------------------------------------------------------------------------------------
// The orchestration state held by the service
// ---------------------------------------------------------------------------------------------

enum Cmd {
    Create {
        doc: Box<PipelineDoc>,
        reply: oneshot::Sender<CoreResult<PipelineState>>,
    },
    Cancel {
        p: Principal,
        id: String,
        kill: bool,
        reply: oneshot::Sender<CoreResult<PipelineState>>,
    },
    Resume {
        p: Principal,
        id: String,
        reply: oneshot::Sender<CoreResult<PipelineState>>,
    },
    Approve {
        p: Principal,
        id: String,
        stage: String,
        reply: oneshot::Sender<CoreResult<PipelineState>>,
    },
}

/// Pipelines engine handle, batch limiter; one per service.
#[derive(Default)]
pub struct Orchestration {
    tx: OnceLock<mpsc::Sender<Cmd>>,
    snapshot: RwLock<BTreeMap<String, Arc<PipelineDoc>>>,
    batches: Mutex<HashMap<String, u64>>,
}

impl Orchestration {
    /// Load the stored pipelines, then start the engine (which reconciles running stages with
    /// their sessions) and the memory reaper. Called once, after every session was recovered.
    pub(crate) async fn start(svc: &Arc<SessionService>) -> CoreResult<()> {
        let store = svc.shared().store.clone();
        let page = store
            .list_docs(collections::PIPELINES, "", None, usize::MAX)
            .await?;
        let mut docs = BTreeMap::new();
        for (key, v) in page.items {
            match serde_json::from_value::<PipelineDoc>(v.doc) {
                Ok(d) => {
                    docs.insert(d.id.clone(), d);
                }
                Err(e) => {
                    tracing::error!(pipeline = %key, error = %e, "skipping an unreadable pipeline")
                }
            }
        }
        {
            let mut snap = svc.orch.snapshot.write().unwrap_or_else(|p| p.into_inner());
            for d in docs.values() {
                snap.insert(d.id.clone(), Arc::new(d.clone()));
            }
        }
        let (tx, rx) = mpsc::channel(256);
        if svc.orch.tx.set(tx).is_err() {
            return Ok(()); // already started
        }
        // Subscribe before reconciling so that nothing published meanwhile is missed.
        let bus = svc.subscribe();
        let engine = Engine {
            svc: Arc::downgrade(svc),
            docs,
            watch: HashMap::new(),
            capacity_retry_at: None,
            dirty: BTreeSet::new(),
            events: Vec::new(),
        };
        tokio::spawn(engine.run(rx, bus));
        tokio::spawn(memory_reaper(Arc::downgrade(svc)));
        Ok(())
    }

    /// One batch per [`BATCH_INTERVAL_MS`] per principal: `Ok` records this one.
    pub(crate) fn batch_allowed(&self, principal: &str) -> Result<(), u64> {
        let now = now_ms();
        let mut m = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&last) = m.get(principal) {
            let next = last + BATCH_INTERVAL_MS;
            if now < next {
                return Err(next - now);
            }
        }
        m.retain(|_, t| now < *t + BATCH_INTERVAL_MS);
        m.insert(principal.to_owned(), now);
        Ok(())
    }

    fn publish(&self, d: &PipelineDoc) {
        self.snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d.id.clone(), Arc::new(d.clone()));
    }

    fn get(&self, id: &str) -> Option<Arc<PipelineDoc>> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id.to_ascii_lowercase())
            .cloned()
    }

    fn all(&self) -> Vec<Arc<PipelineDoc>> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

async fn memory_reaper(svc: Weak<SessionService>) {
    let mut tick = tokio::time::interval(crate::memory::REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(s) = svc.upgrade() else { return };
        match s.reap_memory().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "memory reaper"),
            Err(e) => tracing::warn!(error = %e, "memory reaper failed"),
        }
    }
}

fn pipeline_not_found() -> CoreError {
    CoreError::not_found("pipeline")
}

fn check_owner(p: &Principal, d: &PipelineDoc) -> CoreResult<()> {
    if p.role == Role::Admin || p.id == d.owner.id {
        Ok(())
    } else {
        Err(CoreError::new(
            ErrorKind::Forbidden,
            "only the pipeline's creator or an admin may do this",
        )
        .with_details(json!({"required": "owner"})))
    }
}

fn finished_error(d: &PipelineDoc, what: &str) -> CoreError {
    CoreError::new(
        ErrorKind::PipelineFinished,
        format!(
            "pipeline '{}' is already {}; cannot {what}",
            d.name,
            d.status.as_str()
        ),
    )
    .with_details(json!({"status": d.status.as_str()}))
}

// ---------------------------------------------------------------------------------------------
// Service API
// ---------------------------------------------------------------------------------------------

impl SessionService {
    async fn pipeline_call(
        &self,
        make: impl FnOnce(oneshot::Sender<CoreResult<PipelineState>>) -> Cmd,
    ) -> CoreResult<PipelineState> {
        let tx = self
            .orch
            .tx
            .get()
            .ok_or_else(|| CoreError::internal("the pipeline engine is not running"))?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply))
            .await
            .map_err(|_| CoreError::internal("the pipeline engine stopped"))?;
        rx.await
            .map_err(|_| CoreError::internal("the pipeline engine stopped"))?
    }

    /// Validate a pipeline against the configuration and resolve its stages.
    fn build_pipeline(&self, p: &Principal, cfg: PipelineConfig) -> CoreResult<PipelineDoc> {
        check_pipeline_config(&cfg)?;
        let conf = self.config();
        let roots = self.shared().roots();
        let mut work_dirs: HashMap<String, String> = HashMap::new();
        let mut resolve_dir = |raw: &str, path: &str, stage: Option<&str>| -> CoreResult<String> {
            if let Some(d) = work_dirs.get(raw) {
                return Ok(d.clone());
            }
            let real = workdir::validate(raw, &roots, &conf.home).map_err(|e| {
                let message = match stage {
                    Some(s) => format!("stage '{s}': {}", e.message),
                    None => e.message.clone(),
                };
                CoreError::new(e.kind, message.clone())
                    .with_details(json!([{"path": path, "message": message}]))
            })?;
            let real = real.display().to_string();
            work_dirs.insert(raw.to_owned(), real.clone());
            Ok(real)
        };
        let pipeline_dir = match &cfg.work_dir {
            Some(w) => Some(resolve_dir(w, "workDir", None)?),
            None => None,
        };
        let mut stages = Vec::with_capacity(cfg.stages.len());
        for (i, s) in cfg.stages.into_iter().enumerate() {
            let PipelineStageConfig {
                name,
                prompt,
                depends_on,
                work_dir,
                agent,
                model,
                permission_mode,
                timeout_ms,
                retries,
                gate,
            } = s;
            let work_dir = match (&work_dir, &pipeline_dir) {
                (Some(w), _) => resolve_dir(w, &format!("stages[{i}].workDir"), Some(&name))?,
                (None, Some(d)) => d.clone(),
                (None, None) => {
                    return Err(validation_error(vec![issue(
                        format!("stages[{i}].workDir"),
                        format!(
                            "stage '{name}' has no workDir: set workDir on the pipeline or the stage"
                        ),
                    )]));
                }
            };
            let agent = agent.or(cfg.agent.clone());
            if let Some(a) = &agent {
                if let Err(ResolveError::Unknown { .. }) = conf.agents.resolve(a) {
                    return Err(CoreError::new(
                        ErrorKind::UnknownAgent,
                        format!(
                            "stage '{name}': unknown agent `{a}`; configured agents: {}",
                            conf.agents.names().join(", ")
                        ),
                    )
                    .with_details(json!([{"path": format!("stages[{i}].agent"),
                        "message": format!("unknown agent `{a}`")}])));
                }
            }
            stages.push(StageDoc {
                name,
                prompt,
                depends_on: depends_on.unwrap_or_default(),
                work_dir,
                agent,
                model: model.or(cfg.model.clone()),
                permission_mode: permission_mode.or(cfg.permission_mode.clone()),
                timeout_ms,
                retries: retries.unwrap_or(0),
                gate: gate.unwrap_or(false),
                status: StageStatus::Pending,
                session_id: None,
                started_at: None,
                completed_at: None,
                attempts: 0,
                output: None,
                output_truncated: false,
                error: None,
                approved: false,
                awaiting_approval: false,
                prompt_id: None,
                requeued: false,
                retries_used: 0,
                previous_session_ids: vec![],
            });
        }
        let concurrency = cfg
            .concurrency
            .unwrap_or_else(|| u32::try_from(conf.pipeline_concurrency).unwrap_or(50))
            .clamp(1, 50);
        Ok(PipelineDoc {
            id: uuid::Uuid::new_v4().to_string(),
            name: cfg.name,
            status: PipelineStatus::Running,
            work_dir: pipeline_dir,
            owner: p.clone(),
            on_failure: cfg.on_failure.unwrap_or_else(|| "stop".into()),
            close_sessions: cfg.close_sessions.unwrap_or(false),
            concurrency,
            stage_timeout_ms: cfg.stage_timeout_ms,
            created_at: now_ms(),
            finished_at: None,
            stages,
        })
    }

    /// `POST /v1/pipelines`: validate, persist and start (stages without dependencies start at
    /// once). 400 naming the stage for an unknown dependency, a duplicate name, a cycle or a
    /// `{{stages.NAME.output}}` that is not a dependency.
    pub async fn create_pipeline(
        &self,
        p: &Principal,
        cfg: PipelineConfig,
    ) -> CoreResult<PipelineState> {
        if self.is_draining() {
            return Err(CoreError::new(
                ErrorKind::Draining,
                "the server is shutting down; retry against the next instance",
            ));
        }
        let doc = Box::new(self.build_pipeline(p, cfg)?);
        self.pipeline_call(|reply| Cmd::Create { doc, reply }).await
    }

    /// `GET /v1/pipelines[?status=]`: visible pipelines, newest first.
    pub fn list_pipelines(
        &self,
        p: &Principal,
        status: Option<&str>,
    ) -> CoreResult<Vec<PipelineState>> {
        const STATUSES: [&str; 4] = ["running", "completed", "failed", "cancelled"];
        if let Some(s) = status {
            if !STATUSES.contains(&s) {
                return Err(CoreError::validation(
                    "status",
                    format!("must be one of {}", STATUSES.join(", ")),
                ));
            }
        }
        let mut all: Vec<Arc<PipelineDoc>> = self
            .orch
            .all()
            .into_iter()
            .filter(|d| p.sees_tenant(&d.owner.tenant_id))
            .filter(|d| status.is_none_or(|s| d.status.as_str() == s))
            .collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all.iter().map(|d| d.dto()).collect())
    }

    /// `GET /v1/pipelines/:id`.
    pub fn get_pipeline(&self, p: &Principal, id: &str) -> CoreResult<PipelineState> {
        self.orch
            .get(id)
            .filter(|d| p.sees_tenant(&d.owner.tenant_id))
            .map(|d| d.dto())
            .ok_or_else(pipeline_not_found)
    }

    /// `POST /v1/pipelines/:id/cancel`: pending stages skipped, running turns interrupted and
    /// their stages cancelled; `kill_sessions` also kills the stage sessions. 409
    /// `PIPELINE_FINISHED` when it already ended.
    pub async fn cancel_pipeline(
        &self,
        p: &Principal,
        id: &str,
        kill_sessions: bool,
    ) -> CoreResult<PipelineState> {
        let (p, id) = (p.clone(), id.to_ascii_lowercase());
        self.pipeline_call(|reply| Cmd::Cancel {
            p,
            id,
            kill: kill_sessions,
            reply,
        })
        .await
    }

    /// `POST /v1/pipelines/:id/resume`: failed and cancelled stages (and the stages skipped
    /// because of them) run again; completed stages keep their outputs.
    pub async fn resume_pipeline(&self, p: &Principal, id: &str) -> CoreResult<PipelineState> {
        let (p, id) = (p.clone(), id.to_ascii_lowercase());
        self.pipeline_call(|reply| Cmd::Resume { p, id, reply })
            .await
    }

    /// `POST /v1/pipelines/:id/stages/:name/approve`: release a stage's approval gate.
    pub async fn approve_pipeline_stage(
        &self,
        p: &Principal,
        id: &str,
        stage: &str,
    ) -> CoreResult<PipelineState> {
        let (p, id, stage) = (p.clone(), id.to_ascii_lowercase(), stage.to_owned());
        self.pipeline_call(|reply| Cmd::Approve {
            p,
            id,
            stage,
            reply,
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

enum StartOutcome {
    Started,
    /// `maxSessions` reached (or draining): stays pending, retried later.
    NoCapacity,
    Failed,
}

struct Engine {
    svc: Weak<SessionService>,
    docs: BTreeMap<String, PipelineDoc>,
    /// Stage sessions being waited for: session id → (pipeline id, stage index).
    watch: HashMap<String, (String, usize)>,
    capacity_retry_at: Option<u64>,
    dirty: BTreeSet<String>,
    events: Vec<NewEvent>,
}

fn system() -> Principal {
    Principal::system()
}

fn terminal_status(status: &str) -> bool {
    status
        .parse::<SessionStatus>()
        .is_ok_and(SessionStatus::is_terminal)
}

impl Engine {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut bus: broadcast::Receiver<Arc<BusEvent>>,
    ) {
        self.reconcile().await;
        self.schedule_all().await;
        self.flush().await;
        loop {
            let sleep = match self.next_deadline() {
                Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd).await,
                    None => return,
                },
                ev = bus.recv() => match ev {
                    Ok(ev) => self.on_bus(&ev).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "pipeline engine lagged; reconciling from the store");
                        self.reconcile().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep(sleep) => self.on_timers().await,
            }
            if self.svc.strong_count() == 0 {
                return;
            }
            self.schedule_all().await;
            self.flush().await;
        }
    }

    // ------------------------------------------------------------------ bookkeeping

    fn emit(&mut self, pid: &str, stage: Option<usize>) {
        let Some(d) = self.docs.get(pid) else { return };
        let mut data = json!({"pipelineId": d.id, "name": d.name, "status": d.status.as_str()});
        if let Some(s) = stage.and_then(|i| d.stages.get(i)) {
            data["stage"] = json!({
                "name": s.name, "status": s.status.as_str(), "sessionId": s.session_id,
                "attempts": s.attempts, "error": s.error, "awaitingApproval": s.awaiting_approval,
            });
        }
        self.events.push(NewEvent {
            session_id: None,
            tenant_id: Some(d.owner.tenant_id.clone()),
            id: 0,
            event: "pipeline".into(),
            data,
        });
        self.dirty.insert(pid.to_owned());
    }

    /// Persist changed pipelines, publish their snapshots, then append their events.
    async fn flush(&mut self) {
        let Some(svc) = self.svc.upgrade() else {
            return;
        };
        for pid in std::mem::take(&mut self.dirty) {
            let Some(d) = self.docs.get(&pid) else {
                continue;
            };
            match serde_json::to_value(d) {
                Ok(doc) => {
                    if let Err(e) = svc
                        .shared()
                        .store
                        .put_doc(collections::PIPELINES, "", &pid, &doc, None)
                        .await
                    {
                        tracing::error!(pipeline = %pid, error = %e, "cannot persist a pipeline");
                    }
                }
                Err(e) => tracing::error!(pipeline = %pid, error = %e, "cannot encode a pipeline"),
            }
            svc.orch.publish(d);
        }
        let events = std::mem::take(&mut self.events);
        if !events.is_empty() {
            if let Err(e) = svc.shared().bus.append(events).await {
                tracing::error!(error = %e, "cannot append pipeline events");
            }
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        let default_timeout = self
            .svc
            .upgrade()
            .map_or(0, |s| s.config().pipeline_stage_timeout_ms);
        let mut next = self.capacity_retry_at;
        for d in self.docs.values() {
            if d.status != PipelineStatus::Running {
                continue;
            }
            for s in &d.stages {
                if s.status != StageStatus::Running {
                    continue;
                }
                let t = s
                    .timeout_ms
                    .or(d.stage_timeout_ms)
                    .unwrap_or(default_timeout);
                if t == 0 {
                    continue;
                }
                if let Some(start) = s.started_at {
                    let at = start + t;
                    next = Some(next.map_or(at, |n: u64| n.min(at)));
                }
            }
        }
        next
    }

    // ------------------------------------------------------------------ commands

    async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Create { doc, reply } => {
                let pid = doc.id.clone();
                self.docs.insert(pid.clone(), *doc);
                self.emit(&pid, None);
                self.schedule(&pid).await;
                self.flush().await;
                let _ = reply.send(Ok(self.docs[&pid].dto()));
            }
            Cmd::Cancel { p, id, kill, reply } => {
                let r = self.cancel(&p, &id, kill).await;
                self.flush().await;
                let _ = reply.send(r);
            }
            Cmd::Resume { p, id, reply } => {
                let r = self.resume(&p, &id).await;
                self.flush().await;
                let _ = reply.send(r);
            }
            Cmd::Approve {
                p,
                id,
                stage,
                reply,
            } => {
                let r = self.approve(&p, &id, &stage).await;
                self.flush().await;
                let _ = reply.send(r);
            }
        }
    }

    fn visible(&self, p: &Principal, id: &str) -> CoreResult<&PipelineDoc> {
        self.docs
            .get(id)
            .filter(|d| p.sees_tenant(&d.owner.tenant_id))
            .ok_or_else(pipeline_not_found)
    }

    async fn cancel(&mut self, p: &Principal, id: &str, kill: bool) -> CoreResult<PipelineState> {
        let d = self.visible(p, id)?;
        check_owner(p, d)?;
        if d.status != PipelineStatus::Running {
            return Err(finished_error(d, "cancel it"));
        }
        let svc = self.svc.upgrade();
        let now = now_ms();
        let mut changed = Vec::new();
        let mut sessions = Vec::new();
        let d = self.docs.get_mut(id).ok_or_else(pipeline_not_found)?;
        d.status = PipelineStatus::Cancelled;
        d.finished_at = Some(now);
        for (i, s) in d.stages.iter_mut().enumerate() {
            match s.status {
                StageStatus::Pending => {
                    s.status = StageStatus::Skipped;
                    s.awaiting_approval = false;
                    s.error = Some("pipeline cancelled".into());
                    changed.push(i);
                }
                StageStatus::Running => {
                    s.status = StageStatus::Cancelled;
                    s.completed_at = Some(now);
                    s.error = Some("pipeline cancelled".into());
                    if let Some(sid) = &s.session_id {
                        self.watch.remove(sid);
                        if let Some(svc) = &svc {
                            interrupt(svc, sid);
                        }
                    }
                    changed.push(i);
                }
                _ => {}
            }
            if kill {
                sessions.extend(s.session_id.clone());
            }
        }
        if let Some(svc) = &svc {
            for sid in sessions {
                let svc = svc.clone();
                tokio::spawn(async move {
                    let _ = svc.kill(&system(), &sid).await;
                });
            }
        }
        for i in changed {
            self.emit(id, Some(i));
        }
        self.emit(id, None);
        Ok(self.docs[id].dto())
    }

    async fn resume(&mut self, p: &Principal, id: &str) -> CoreResult<PipelineState> {
        let d = self.visible(p, id)?;
        check_owner(p, d)?;
        let rerun = |s: &StageDoc| {
            matches!(
                s.status,
                StageStatus::Failed | StageStatus::Cancelled | StageStatus::Skipped
            )
        };
        if d.status == PipelineStatus::Completed || !d.stages.iter().any(rerun) {
            return Err(finished_error(
                d,
                "resume it (no failed or cancelled stage)",
            ));
        }
        let d = self.docs.get_mut(id).ok_or_else(pipeline_not_found)?;
        let mut changed = Vec::new();
        for (i, s) in d.stages.iter_mut().enumerate() {
            if !rerun(s) {
                continue;
            }
            if let Some(sid) = s.session_id.take() {
                s.previous_session_ids.push(sid);
            }
            s.status = StageStatus::Pending;
            s.started_at = None;
            s.completed_at = None;
            s.output = None;
            s.output_truncated = false;
            s.error = None;
            s.prompt_id = None;
            s.requeued = false;
            s.retries_used = 0;
            changed.push(i);
        }
        d.status = PipelineStatus::Running;
        d.finished_at = None;
        self.emit(id, None);
        for i in changed {
            self.emit(id, Some(i));
        }
        self.schedule(id).await;
        Ok(self.docs[id].dto())
    }

    async fn approve(&mut self, p: &Principal, id: &str, stage: &str) -> CoreResult<PipelineState> {
        let d = self.visible(p, id)?;
        let Some(i) = d.index(stage) else {
            return Err(CoreError::new(
                ErrorKind::NotFound,
                format!("pipeline '{}' has no stage '{stage}'", d.name),
            ));
        };
        if !d.stages[i].gate {
            return Err(CoreError::validation(
                "stage",
                format!("stage '{stage}' has no approval gate (set `gate: true` on it)"),
            ));
        }
        if d.stages[i].approved {
            return Ok(d.dto());
        }
        if d.status != PipelineStatus::Running {
            return Err(finished_error(d, "approve a stage"));
        }
        let d = self.docs.get_mut(id).ok_or_else(pipeline_not_found)?;
        d.stages[i].approved = true;
        d.stages[i].awaiting_approval = false;
        self.emit(id, Some(i));
        self.schedule(id).await;
        Ok(self.docs[id].dto())
    }

    // ------------------------------------------------------------------ session events

    async fn on_bus(&mut self, ev: &BusEvent) {
        if ev.event != "turn" && ev.event != "ended" {
            return;
        }
        let Some(sid) = ev.session_id.as_deref() else {
            return;
        };
        let Some((pid, idx)) = self.watch.get(sid).cloned() else {
            return;
        };
        let Ok(env) = serde_json::from_str::<Value>(&ev.json) else {
            return;
        };
        let data = &env["data"];
        if ev.event == "turn" {
            if data["phase"] == "ended" {
                self.on_turn_ended(&pid, idx, data).await;
            }
        } else {
            let status = data["status"].as_str().unwrap_or("ended");
            let reason = data["reason"].as_str().unwrap_or("");
            self.fail_stage(
                &pid,
                idx,
                format!("the stage session ended: {status} ({reason})"),
            );
        }
    }

    async fn on_turn_ended(&mut self, pid: &str, idx: usize, data: &Value) {
        let Some(st) = self.docs.get(pid).and_then(|d| d.stages.get(idx)) else {
            return;
        };
        if st.status != StageStatus::Running
            || st.prompt_id.is_none()
            || data["promptId"].as_str() != st.prompt_id.as_deref()
        {
            return;
        }
        let stop = data["stopReason"].as_str();
        let reason = data["reason"].as_str();
        match (stop, reason) {
            (Some("end_turn"), _) => {
                let turn = data["turnId"].as_str().unwrap_or("").to_owned();
                self.complete_stage(pid, idx, &turn).await;
            }
            // The prompt went back to the head of the queue; its retry decides.
            (None, Some("rate_limited")) => {}
            (None, Some("interrupted")) => self.turn_lost(pid, idx).await,
            (Some(other), _) => {
                let why = match reason {
                    Some(r) => format!("the turn ended with stopReason {other} ({r})"),
                    None => format!("the turn ended with stopReason {other}"),
                };
                self.fail_stage(pid, idx, why);
            }
            (None, r) => {
                let why = match (data["error"].as_str(), r) {
                    (Some(e), _) => format!("the turn failed: {e}"),
                    (None, Some(r)) => format!("the turn ended without a result: {r}"),
                    (None, None) => "the turn ended without a result".into(),
                };
                self.fail_stage(pid, idx, why);
            }
        }
    }

    async fn complete_stage(&mut self, pid: &str, idx: usize, turn_id: &str) {
        let Some(svc) = self.svc.upgrade() else {
            return;
        };
        let Some(sid) = self.docs[pid].stages[idx].session_id.clone() else {
            return;
        };
        let (output, truncated) = stage_output(&svc, &sid, turn_id).await;
        let close = self.docs[pid].close_sessions;
        let st = &mut self.docs.get_mut(pid).expect("pipeline exists").stages[idx];
        st.status = StageStatus::Completed;
        st.completed_at = Some(now_ms());
        st.output = Some(output);
        st.output_truncated = truncated;
        st.error = None;
        self.watch.remove(&sid);
        if close {
            tokio::spawn(async move {
                let _ = svc.close(&system(), &sid).await;
            });
        }
        self.emit(pid, Some(idx));
    }

    /// The stage's turn was lost to a restart: queue its prompt again once.
    async fn turn_lost(&mut self, pid: &str, idx: usize) {
        let Some(svc) = self.svc.upgrade() else {
            return;
        };
        let st = &self.docs[pid].stages[idx];
        let Some(sid) = st.session_id.clone() else {
            return;
        };
        if st.requeued {
            self.fail_stage(
                pid,
                idx,
                "the stage's turn was lost twice (server restarts)".into(),
            );
            return;
        }
        let text = self.rendered_prompt(pid, idx);
        match svc.send(&system(), &sid, text, SendKind::Text).await {
            Ok(resp) => {
                let st = &mut self.docs.get_mut(pid).expect("pipeline exists").stages[idx];
                st.prompt_id = Some(resp.prompt_id);
                st.requeued = true;
                st.attempts += 1;
                tracing::info!(pipeline = %pid, stage = %st.name, session = %sid, "stage prompt queued again after a restart");
                self.emit(pid, Some(idx));
                revive(&svc, &sid);
            }
            Err(e) => self.fail_stage(
                pid,
                idx,
                format!("the turn was lost and the prompt could not be queued again: {e}"),
            ),
        }
    }

    fn rendered_prompt(&self, pid: &str, idx: usize) -> String {
        let d = &self.docs[pid];
        let outputs: HashMap<String, String> = d
            .stages
            .iter()
            .filter(|s| s.status == StageStatus::Completed)
            .map(|s| (s.name.clone(), s.output.clone().unwrap_or_default()))
            .collect();
        render_prompt(&d.stages[idx].prompt, &outputs)
    }

    /// A stage failed: retry it when it has retries left, else apply `onFailure`.
    fn fail_stage(&mut self, pid: &str, idx: usize, error: String) {
        let svc = self.svc.upgrade();
        let now = now_ms();
        let Some(d) = self.docs.get_mut(pid) else {
            return;
        };
        let running = d.status == PipelineStatus::Running;
        let st = &mut d.stages[idx];
        if st.status != StageStatus::Running && st.status != StageStatus::Pending {
            return;
        }
        if let Some(sid) = &st.session_id {
            self.watch.remove(sid);
        }
        tracing::info!(pipeline = %pid, stage = %st.name, %error, "pipeline stage failed");
        if running && st.retries_used < st.retries {
            st.retries_used += 1;
            if let Some(sid) = st.session_id.take() {
                st.previous_session_ids.push(sid);
            }
            st.status = StageStatus::Pending;
            st.started_at = None;
            st.prompt_id = None;
            st.requeued = false;
            st.error = Some(format!("attempt failed, retrying: {error}"));
            self.emit(pid, Some(idx));
            return;
        }
        st.status = StageStatus::Failed;
        st.completed_at = Some(now);
        st.awaiting_approval = false;
        st.error = Some(error);
        let failed_name = st.name.clone();
        let mut changed = vec![idx];
        let mut finished = false;
        if running && d.stop_on_failure() {
            d.status = PipelineStatus::Failed;
            d.finished_at = Some(now);
            finished = true;
            for (i, s) in d.stages.iter_mut().enumerate() {
                match s.status {
                    StageStatus::Pending => {
                        s.status = StageStatus::Skipped;
                        s.awaiting_approval = false;
                        s.error = Some(format!("skipped: stage '{failed_name}' failed"));
                        changed.push(i);
                    }
                    StageStatus::Running => {
                        s.status = StageStatus::Cancelled;
                        s.completed_at = Some(now);
                        s.error = Some(format!("cancelled: stage '{failed_name}' failed"));
                        if let Some(sid) = &s.session_id {
                            self.watch.remove(sid);
                            if let Some(svc) = &svc {
                                interrupt(svc, sid);
                            }
                        }
                        changed.push(i);
                    }
                    _ => {}
                }
            }
        }
        for i in changed {
            self.emit(pid, Some(i));
        }
        if finished {
            self.emit(pid, None);
        }
    }

    // ------------------------------------------------------------------ timers

    async fn on_timers(&mut self) {
        let now = now_ms();
        if self.capacity_retry_at.is_some_and(|t| t <= now) {
            self.capacity_retry_at = None;
        }
        let Some(svc) = self.svc.upgrade() else {
            return;
        };
        let default_timeout = svc.config().pipeline_stage_timeout_ms;
        let mut expired = Vec::new();
        for d in self.docs.values() {
            if d.status != PipelineStatus::Running {
                continue;
            }
            for (i, s) in d.stages.iter().enumerate() {
                if s.status != StageStatus::Running {
                    continue;
                }
                let t = s
                    .timeout_ms
                    .or(d.stage_timeout_ms)
                    .unwrap_or(default_timeout);
                if t > 0 && s.started_at.is_some_and(|st| st + t <= now) {
                    expired.push((d.id.clone(), i, s.session_id.clone()));
                }
            }
        }
        for (pid, i, sid) in expired {
            if let Some(sid) = &sid {
                interrupt(&svc, sid);
            }
            self.fail_stage(&pid, i, "stage_timeout".into());
        }
    }

    // ------------------------------------------------------------------ scheduling

    async fn schedule_all(&mut self) {
        let running: Vec<String> = self
            .docs
            .values()
            .filter(|d| d.status == PipelineStatus::Running)
            .map(|d| d.id.clone())
            .collect();
        for pid in running {
            self.schedule(&pid).await;
        }
    }

    /// Skip what can no longer run, finish the pipeline when nothing is left, start ready
    /// stages up to the concurrency.
    async fn schedule(&mut self, pid: &str) {
        loop {
            let Some(d) = self.docs.get_mut(pid) else {
                return;
            };
            if d.status != PipelineStatus::Running {
                return;
            }
            // `continue`: stages downstream of a failure are skipped.
            let mut changed = Vec::new();
            loop {
                let status: HashMap<String, StageStatus> = d
                    .stages
                    .iter()
                    .map(|s| (s.name.clone(), s.status))
                    .collect();
                let mut any = false;
                for (i, s) in d.stages.iter_mut().enumerate() {
                    if s.status != StageStatus::Pending {
                        continue;
                    }
                    let blocked = s.depends_on.iter().find(|dep| {
                        matches!(
                            status.get(dep.as_str()),
                            Some(
                                StageStatus::Failed | StageStatus::Skipped | StageStatus::Cancelled
                            )
                        )
                    });
                    if let Some(dep) = blocked {
                        s.status = StageStatus::Skipped;
                        s.awaiting_approval = false;
                        s.error = Some(format!("skipped: dependency '{dep}' did not complete"));
                        changed.push(i);
                        any = true;
                    }
                }
                if !any {
                    break;
                }
            }
            let all_done = d.stages.iter().all(|s| s.status.is_terminal());
            if all_done {
                let ok = d.stages.iter().all(|s| s.status == StageStatus::Completed);
                d.status = if ok {
                    PipelineStatus::Completed
                } else {
                    PipelineStatus::Failed
                };
                d.finished_at = Some(now_ms());
            }
            let completed: BTreeSet<String> = d
                .stages
                .iter()
                .filter(|s| s.status == StageStatus::Completed)
                .map(|s| s.name.clone())
                .collect();
            let mut running = d
                .stages
                .iter()
                .filter(|s| s.status == StageStatus::Running)
                .count();
            let limit = d.concurrency as usize;
            let mut ready = Vec::new();
            for (i, s) in d.stages.iter_mut().enumerate() {
                if s.status != StageStatus::Pending
                    || !s.depends_on.iter().all(|x| completed.contains(x))
                {
                    continue;
                }
                if s.gate && !s.approved {
                    if !s.awaiting_approval {
                        s.awaiting_approval = true;
                        changed.push(i);
                    }
                    continue;
                }
                ready.push(i);
            }
            for i in changed {
                self.emit(pid, Some(i));
            }
            if all_done {
                self.emit(pid, None);
                return;
            }
            let mut progressed = false;
            for i in ready {
                if running >= limit || self.capacity_retry_at.is_some() {
                    break;
                }
                match self.start_stage(pid, i).await {
                    StartOutcome::Started => running += 1,
                    StartOutcome::NoCapacity => break,
                    StartOutcome::Failed => {
                        progressed = true;
                        break;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    async fn start_stage(&mut self, pid: &str, idx: usize) -> StartOutcome {
        let Some(svc) = self.svc.upgrade() else {
            return StartOutcome::NoCapacity;
        };
        let prompt = self.rendered_prompt(pid, idx);
        let d = &self.docs[pid];
        let s = &d.stages[idx];
        let req = CreateSessionRequest {
            work_dir: s.work_dir.clone(),
            name: Some(format!("pipeline-{}-{}", d.name, s.name)),
            prompt: Some(prompt),
            agent: s.agent.clone(),
            model: s.model.clone(),
            permission_mode: s.permission_mode.clone(),
            reuse: Some(false),
            ..Default::default()
        };
        let owner = d.owner.clone();
        match svc.create(&owner, req).await {
            Ok((info, _)) => {
                let st = &mut self.docs.get_mut(pid).expect("pipeline exists").stages[idx];
                st.status = StageStatus::Running;
                st.session_id = Some(info.id.clone());
                st.started_at = Some(now_ms());
                st.completed_at = None;
                st.attempts += 1;
                st.awaiting_approval = false;
                st.prompt_id = info.prompt_delivery.and_then(|p| p.prompt_id);
                if st.retries_used == 0 {
                    st.error = None;
                }
                self.watch.insert(info.id, (pid.to_owned(), idx));
                self.emit(pid, Some(idx));
                StartOutcome::Started
            }
            Err(e) if matches!(e.kind, ErrorKind::SessionLimit | ErrorKind::Draining) => {
                tracing::debug!(pipeline = %pid, "no capacity for a pipeline stage; retrying in 5 s");
                self.capacity_retry_at = Some(now_ms() + CAPACITY_RETRY_MS);
                StartOutcome::NoCapacity
            }
            Err(e) => {
                self.fail_stage(
                    pid,
                    idx,
                    format!(
                        "the stage session could not be created: {} ({})",
                        e.message,
                        e.kind.code()
                    ),
                );
                StartOutcome::Failed
            }
        }
    }

    // ------------------------------------------------------------------ reconciliation

    /// Bring running stages up to date from their sessions' durable logs (at start and after
    /// the bus subscription lagged).
    async fn reconcile(&mut self) {
        let Some(svc) = self.svc.upgrade() else {
            return;
        };
        let mut running = Vec::new();
        for d in self.docs.values() {
            if d.status != PipelineStatus::Running {
                continue;
            }
            for (i, s) in d.stages.iter().enumerate() {
                if s.status == StageStatus::Running {
                    running.push((d.id.clone(), i, s.session_id.clone(), s.prompt_id.clone()));
                }
            }
        }
        for (pid, idx, sid, prompt_id) in running {
            let Some(sid) = sid else {
                let st = &mut self.docs.get_mut(&pid).expect("pipeline exists").stages[idx];
                st.status = StageStatus::Pending;
                self.emit(&pid, Some(idx));
                continue;
            };
            self.watch.insert(sid.clone(), (pid.clone(), idx));
            let info = match svc.get(&system(), &sid) {
                Ok(info) => info,
                Err(_) => {
                    self.fail_stage(&pid, idx, "the stage session no longer exists".into());
                    continue;
                }
            };
            let result = match &prompt_id {
                Some(p) => last_turn_result(&svc, &sid, p).await,
                None => None,
            };
            if let Some(data) = result {
                self.on_turn_ended(&pid, idx, &data).await;
                let still = self.docs[&pid].stages[idx].status == StageStatus::Running;
                if !still || data["reason"] != "rate_limited" {
                    continue;
                }
            }
            if terminal_status(&info.status) {
                self.fail_stage(
                    &pid,
                    idx,
                    format!("the stage session ended: {}", info.status),
                );
                continue;
            }
            let ours_running = info
                .turn
                .as_ref()
                .is_some_and(|t| Some(&t.prompt_id) == prompt_id.as_ref());
            if !ours_running && info.status == "idle" && info.queue.length == 0 {
                // Idle, nothing queued, and the prompt's turn never ended: it is gone.
                self.turn_lost(&pid, idx).await;
                continue;
            }
            revive(&svc, &sid);
        }
    }
}

/// Interrupt a stage session's running turn (in the background: it waits for the turn end).
fn interrupt(svc: &Arc<SessionService>, sid: &str) {
    let (svc, sid) = (svc.clone(), sid.to_owned());
    tokio::spawn(async move {
        let _ = svc.interrupt(&system(), &sid).await;
    });
}

/// An interrupted session that cannot be reattached is resumed fresh so its queue runs.
fn revive(svc: &Arc<SessionService>, sid: &str) {
    let Ok(info) = svc.get(&system(), sid) else {
        return;
    };
    if info.status == "interrupted" && !info.resumable {
        let (svc, sid) = (svc.clone(), sid.to_owned());
        tokio::spawn(async move {
            if let Err(e) = svc.resume(&system(), &sid, true).await {
                tracing::warn!(session = %sid, error = %e, "cannot resume a pipeline stage session");
            }
        });
    }
}

/// The data of the last `turn` event of `prompt_id` in a session's log when that turn ended
/// (`None` when it never started or still runs).
async fn last_turn_result(svc: &SessionService, sid: &str, prompt_id: &str) -> Option<Value> {
    let store = &svc.shared().store;
    let mut after = 0;
    let mut result: Option<Value> = None;
    loop {
        let batch = store.read_events(sid, after, 1000).await.ok()?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        for ev in &batch {
            if ev.event != "turn" {
                continue;
            }
            let Ok(env) = serde_json::from_str::<Value>(&ev.json) else {
                continue;
            };
            let data = &env["data"];
            if data["promptId"].as_str() != Some(prompt_id) {
                continue;
            }
            result = match data["phase"].as_str() {
                Some("ended") => Some(data.clone()),
                _ => None,
            };
        }
    }
    result
}

/// The text of the agent messages of one turn, joined with a blank line, cut at
/// [`MAX_OUTPUT_CHARS`].
async fn stage_output(svc: &SessionService, sid: &str, turn_id: &str) -> (String, bool) {
    let page = match svc
        .shared()
        .store
        .list_docs(collections::TRANSCRIPT, sid, None, usize::MAX)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(session = %sid, error = %e, "cannot read a stage transcript");
            return (String::new(), false);
        }
    };
    let texts: Vec<String> = page
        .items
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_value::<TranscriptEntry>(v.doc).ok())
        .filter(|e| {
            e.turn_id.as_deref() == Some(turn_id)
                && matches!(e.body, EntryBody::AgentMessage { .. })
        })
        .map(|e| e.text)
        .collect();
    let joined = texts.join("\n\n");
    if joined.chars().count() > MAX_OUTPUT_CHARS {
        (joined.chars().take(MAX_OUTPUT_CHARS).collect(), true)
    } else {
        (joined, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, prompt: &str, deps: &[&str]) -> PipelineStageConfig {
        PipelineStageConfig {
            name: name.into(),
            prompt: prompt.into(),
            depends_on: Some(deps.iter().map(|s| (*s).to_owned()).collect()),
            ..Default::default()
        }
    }

    fn cfg(stages: Vec<PipelineStageConfig>) -> PipelineConfig {
        PipelineConfig {
            name: "p".into(),
            work_dir: Some("/w".into()),
            stages,
            ..Default::default()
        }
    }

    fn err(c: &PipelineConfig) -> String {
        check_pipeline_config(c)
            .err()
            .map(|e| e.message)
            .unwrap_or_default()
    }

    #[test]
    fn diamond_is_valid() {
        let c = cfg(vec![
            stage("A", "a", &[]),
            stage("B", "b {{stages.A.output}}", &["A"]),
            stage("C", "c", &["A"]),
            stage(
                "D",
                "{{ stages.A.output }} {{stages.B.output}}",
                &["B", "C"],
            ),
        ]);
        assert!(check_pipeline_config(&c).is_ok());
    }

    #[test]
    fn errors_name_the_stage() {
        let e = err(&cfg(vec![stage("A", "a", &["X"])]));
        assert!(e.contains("'A'") && e.contains("unknown stage 'X'"), "{e}");
        let e = err(&cfg(vec![stage("A", "a", &[]), stage("A", "b", &[])]));
        assert!(e.contains("duplicate stage name 'A'"), "{e}");
        let e = err(&cfg(vec![
            stage("A", "a", &["C"]),
            stage("B", "b", &["A"]),
            stage("C", "c", &["B"]),
        ]));
        assert!(
            e.contains("cycle") && e.contains('A') && e.contains('C'),
            "{e}"
        );
        let e = err(&cfg(vec![stage("S", "s", &["S"])]));
        assert!(e.contains("cycle through stage 'S'"), "{e}");
        let e = err(&cfg(vec![
            stage("A", "a", &[]),
            stage("B", "{{stages.A.output}}", &[]),
        ]));
        assert!(
            e.contains("stage 'B'") && e.contains("stages.A.output"),
            "{e}"
        );
        let e = err(&cfg(vec![stage("B", "{{stages.Z.output}}", &[])]));
        assert!(e.contains("not a stage"), "{e}");
        let e = err(&cfg(vec![stage("bad name", "x", &[])]));
        assert!(e.contains("bad name"), "{e}");
    }

    #[test]
    fn prompts_render_outputs() {
        let outputs = HashMap::from([("A".to_owned(), "alpha".to_owned())]);
        assert_eq!(
            render_prompt(
                "x {{ stages.A.output }} {{other}} {{stages.B.output}}",
                &outputs
            ),
            "x alpha {{other}} {{stages.B.output}}"
        );
    }
}
