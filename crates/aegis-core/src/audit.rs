//! The audit log (api §6): append-only NDJSON files `<stateDir>/audit/audit-YYYY-MM-DD.ndjson`
//! (UTC day of the record), each record HMAC-chained to the one before with the
//! per-installation key (`AEGIS_AUDIT_SECRET`, else `<stateDir>/audit.key`, 32 random bytes
//! generated at first start, mode 0600).
//!
//! Appends are serialised across processes (an exclusive lock on `<stateDir>/audit/.lock`; the
//! chain head is read back from the newest file under the lock, so `ag keys --offline` and the
//! server extend one chain) and fsynced before [`AuditLog::append`] resolves. Hashing, sealing
//! and verification are the domain's ([`aegis_domain::audit`]).

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aegis_domain::audit::{
    AuditKey, AuditRecord, AuditTarget, ChainReport, ChainVerifier, Outcome, ZERO_HASH,
    clip_detail, seal,
};
use aegis_domain::auth::{SYSTEM_TENANT, to_hex};
use aegis_domain::time::{iso8601_ms, parse_iso8601_ms};
use serde_json::{Map, Value};

use crate::bus::now_ms;
use crate::identity::random_bytes;
use crate::{CoreError, CoreResult, ErrorKind, Principal, Via};

/// Name of the generated key file in the state directory.
pub const KEY_FILE: &str = "audit.key";
/// Folder of the audit files in the state directory.
pub const AUDIT_DIR: &str = "audit";

/// Load the audit key: `secret` (the text of `AEGIS_AUDIT_SECRET`) when given, else
/// `<state_dir>/audit.key`, created with 32 random bytes (hex, mode 0600) when missing.
pub fn load_or_create_key(state_dir: &Path, secret: Option<&str>) -> Result<AuditKey, String> {
    if let Some(s) = secret.filter(|s| !s.trim().is_empty()) {
        return AuditKey::parse(s).map_err(|e| format!("AEGIS_AUDIT_SECRET: {e}"));
    }
    let path = state_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return AuditKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot read {}: {e}", path.display()));
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(state_dir)
        .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    let bytes = random_bytes::<32>().map_err(|e| format!("no randomness: {e}"))?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    match o.open(&path) {
        Ok(mut f) => {
            f.write_all(format!("{}\n", to_hex(&bytes)).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            AuditKey::from_bytes(&bytes).map_err(|e| e.to_string())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            AuditKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

/// What an audited action was, before it is sealed into the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub actor: String,
    pub actor_name: String,
    pub role: String,
    pub tenant_id: String,
    pub action: String,
    pub target: Option<AuditTarget>,
    pub session_id: Option<String>,
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub via: Via,
}

impl AuditEntry {
    /// An entry acting as `p`.
    pub fn by(p: &Principal, action: &str, outcome: Outcome) -> AuditEntry {
        AuditEntry {
            actor: p.id.clone(),
            actor_name: p.display_name.clone(),
            role: p.role.as_str().to_owned(),
            tenant_id: p.tenant_id.clone(),
            action: action.to_owned(),
            target: None,
            session_id: None,
            outcome,
            detail: None,
            request_id: None,
            ip: None,
            via: Via::Rest,
        }
    }

    /// An entry of an unauthenticated caller (`auth.failure`).
    pub fn anonymous(action: &str, outcome: Outcome) -> AuditEntry {
        AuditEntry {
            actor: "anonymous".into(),
            actor_name: "anonymous".into(),
            role: "none".into(),
            tenant_id: SYSTEM_TENANT.into(),
            ..AuditEntry::by(&Principal::system(), action, outcome)
        }
    }

    #[must_use]
    pub fn target(mut self, kind: &str, id: &str) -> Self {
        self.target = Some(AuditTarget {
            kind: kind.to_owned(),
            id: id.to_owned(),
        });
        self
    }

    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(clip_detail(&detail.into()));
        self
    }

    fn into_record(self, now: u64) -> AuditRecord {
        AuditRecord {
            seq: 0,
            ts: iso8601_ms(now),
            actor: self.actor,
            actor_name: self.actor_name,
            role: self.role,
            tenant_id: self.tenant_id,
            action: self.action,
            target: self.target,
            session_id: self.session_id,
            outcome: self.outcome,
            detail: self.detail.map(|d| clip_detail(&d)),
            request_id: self.request_id,
            ip: self.ip,
            via: self.via.as_str().to_owned(),
            kid: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// A query of `GET /v1/audit` (already validated).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// Exact, or a prefix with a trailing `*`.
    pub action: Option<String>,
    pub session_id: Option<String>,
    /// Only records of this tenant (forced to the caller's for non-`_system` callers).
    pub tenant_id: Option<String>,
    pub outcome: Option<Outcome>,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
}

impl AuditQuery {
    fn matches(&self, r: &Map<String, Value>) -> bool {
        let s = |k: &str| r.get(k).and_then(Value::as_str);
        if let Some(a) = &self.actor
            && s("actor") != Some(a.as_str())
        {
            return false;
        }
        if let Some(a) = &self.action {
            let action = s("action").unwrap_or("");
            let ok = match a.strip_suffix('*') {
                Some(prefix) => action.starts_with(prefix),
                None => action == a,
            };
            if !ok {
                return false;
            }
        }
        if let Some(id) = &self.session_id
            && s("sessionId") != Some(id.as_str())
        {
            return false;
        }
        if let Some(t) = &self.tenant_id
            && s("tenantId") != Some(t.as_str())
        {
            return false;
        }
        if let Some(o) = self.outcome
            && s("outcome") != Some(o.as_str())
        {
            return false;
        }
        if self.from_ms.is_some() || self.to_ms.is_some() {
            let Some(ts) = s("ts").and_then(parse_iso8601_ms) else {
                return false;
            };
            if self.from_ms.is_some_and(|f| ts < f) || self.to_ms.is_some_and(|t| ts > t) {
                return false;
            }
        }
        true
    }
}

/// First and last record of the whole chain (the external anchor of api §6.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainEnds {
    pub first_seq: Option<u64>,
    pub first_hash: Option<String>,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
}

/// The log.
pub struct AuditLog {
    dir: PathBuf,
    key: AuditKey,
    /// Serialises this process's appends (the file lock serialises processes).
    appends: tokio::sync::Mutex<()>,
    /// Minute of the last `auth.failure` record per client IP.
    failures: Mutex<HashMap<Option<IpAddr>, u64>>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> CoreError {
    CoreError::new(
        ErrorKind::StoreUnavailable,
        format!("audit log: cannot {what} {}: {e}", path.display()),
    )
}

impl AuditLog {
    /// The log of a state directory with its key.
    pub fn new(state_dir: &Path, key: AuditKey) -> Arc<AuditLog> {
        Arc::new(AuditLog {
            dir: state_dir.join(AUDIT_DIR),
            key,
            appends: tokio::sync::Mutex::new(()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Open the log of a state directory, loading or creating its key.
    pub fn open(state_dir: &Path, secret: Option<&str>) -> Result<Arc<AuditLog>, String> {
        Ok(AuditLog::new(
            state_dir,
            load_or_create_key(state_dir, secret)?,
        ))
    }

    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The audit files in chain order.
    pub fn files(&self) -> Vec<PathBuf> {
        list_files(&self.dir)
    }

    /// Append one record; durable (fsynced) when this resolves. Returns the sealed record.
    pub async fn append(&self, entry: AuditEntry) -> CoreResult<AuditRecord> {
        let _guard = self.appends.lock().await;
        let dir = self.dir.clone();
        let key = self.key.clone();
        let record = entry.into_record(now_ms());
        tokio::task::spawn_blocking(move || append_blocking(&dir, &key, record))
            .await
            .map_err(|e| CoreError::internal(format!("audit append task failed: {e}")))?
    }

    /// Append an `auth.failure`-like record at most once per client IP per minute; returns
    /// whether it was written.
    pub async fn append_rate_limited(
        &self,
        ip: Option<IpAddr>,
        entry: AuditEntry,
    ) -> CoreResult<bool> {
        let minute = now_ms() / 60_000;
        {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if f.get(&ip) == Some(&minute) {
                return Ok(false);
            }
            if f.len() > 10_000 {
                f.retain(|_, m| *m == minute);
            }
            f.insert(ip, minute);
        }
        self.append(entry).await.map(|_| true)
    }

    /// Every stored line, in chain order (blocking I/O on the blocking pool).
    pub async fn lines(&self) -> CoreResult<Vec<String>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || read_lines(&dir))
            .await
            .map_err(|e| CoreError::internal(format!("audit read task failed: {e}")))?
    }

    /// Records matching `q`, in chain order, with the ends of the whole chain.
    pub async fn select(&self, q: &AuditQuery) -> CoreResult<(Vec<Map<String, Value>>, ChainEnds)> {
        let lines = self.lines().await?;
        let mut ends = ChainEnds::default();
        let mut out = Vec::new();
        for line in &lines {
            let Ok(Value::Object(r)) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let seq = r.get("seq").and_then(Value::as_u64);
            let hash = r.get("hash").and_then(Value::as_str).map(str::to_owned);
            if ends.first_seq.is_none() {
                ends.first_seq = seq;
                ends.first_hash = hash.clone();
            }
            ends.last_seq = seq;
            ends.last_hash = hash;
            if q.matches(&r) {
                out.push(r);
            }
        }
        Ok((out, ends))
    }

    /// Verify the chain (optionally seq `from..=to`).
    pub async fn verify(&self, from: Option<u64>, to: Option<u64>) -> CoreResult<ChainReport> {
        let lines = self.lines().await?;
        Ok(verify_lines(&self.key, &lines, from, to))
    }
}

/// Verify stored lines with `key`.
pub fn verify_lines(
    key: &AuditKey,
    lines: &[String],
    from: Option<u64>,
    to: Option<u64>,
) -> ChainReport {
    let mut v = ChainVerifier::new(key, from, to);
    for l in lines {
        if v.is_done() {
            break;
        }
        v.push_line(l);
    }
    v.finish()
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".ndjson"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn read_lines(dir: &Path) -> CoreResult<Vec<String>> {
    let mut out = Vec::new();
    for f in list_files(dir) {
        let text = std::fs::read(&f).map_err(|e| io_err("read", &f, &e))?;
        let text = String::from_utf8_lossy(&text);
        out.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    Ok(out)
}

/// The (seq, hash) of the newest parseable record of the newest file (0 / zeros when none).
fn chain_head(dir: &Path) -> CoreResult<(u64, String)> {
    for f in list_files(dir).iter().rev() {
        let mut file = std::fs::File::open(f).map_err(|e| io_err("open", f, &e))?;
        let len = file.metadata().map_err(|e| io_err("stat", f, &e))?.len();
        // Read a tail large enough for the last records (records are ≪ 64 KiB); fall back
        // to the whole file when the tail holds no complete parseable record.
        for window in [65_536u64, u64::MAX] {
            let start = len.saturating_sub(window);
            file.seek(SeekFrom::Start(start))
                .map_err(|e| io_err("seek", f, &e))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)
                .map_err(|e| io_err("read", f, &e))?;
            let text = String::from_utf8_lossy(&buf);
            for line in text.lines().rev() {
                if let Ok(Value::Object(r)) = serde_json::from_str::<Value>(line)
                    && let Some(seq) = r.get("seq").and_then(Value::as_u64)
                {
                    let hash = r
                        .get("hash")
                        .and_then(Value::as_str)
                        .unwrap_or(ZERO_HASH)
                        .to_owned();
                    return Ok((seq, hash));
                }
            }
            if start == 0 {
                break;
            }
        }
    }
    Ok((0, ZERO_HASH.to_owned()))
}

fn append_blocking(dir: &Path, key: &AuditKey, record: AuditRecord) -> CoreResult<AuditRecord> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, &e))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| io_err("open", &lock_path, &e))?;
    lock.lock().map_err(|e| io_err("lock", &lock_path, &e))?;
    let (last_seq, last_hash) = chain_head(dir)?;
    let day = record.ts.get(..10).unwrap_or("1970-01-01").to_owned();
    let sealed = seal(record, key, last_seq + 1, &last_hash);
    let mut line =
        serde_json::to_string(&sealed).map_err(|e| CoreError::internal(e.to_string()))?;
    line.push('\n');
    let path = dir.join(format!("audit-{day}.ndjson"));
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(&path).map_err(|e| io_err("open", &path, &e))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| io_err("append to", &path, &e))?;
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_domain::audit::BreakReason;

    #[tokio::test]
    async fn appends_chain_and_verify_detects_tampering() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = AuditLog::open(dir.path(), None).expect("log");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for i in 0..4 {
            let r = log
                .append(
                    AuditEntry::by(&Principal::local(), "session.create", Outcome::Success)
                        .target("session", &format!("s{i}")),
                )
                .await
                .expect("append");
            assert_eq!(r.seq, i + 1);
        }
        // A second log on the same directory (another process) continues the chain.
        let other = AuditLog::open(dir.path(), None).expect("log");
        assert_eq!(other.kid(), log.kid());
        let r = other
            .append(AuditEntry::anonymous("auth.failure", Outcome::Denied))
            .await
            .expect("append");
        assert_eq!(r.seq, 5);
        let report = log.verify(None, None).await.expect("verify");
        assert!(report.valid, "{report:?}");
        assert_eq!(report.checked, 5);
        assert_eq!(report.last_hash.as_deref(), Some(r.hash.as_str()));

        let (sel, ends) = log
            .select(&AuditQuery {
                action: Some("session.*".into()),
                ..AuditQuery::default()
            })
            .await
            .expect("select");
        assert_eq!(sel.len(), 4);
        assert_eq!(ends.last_seq, Some(5));

        let file = &log.files()[0];
        let text = std::fs::read_to_string(file).expect("read");
        std::fs::write(file, text.replacen("\"s2\"", "\"sX\"", 1)).expect("write");
        let report = log.verify(None, None).await.expect("verify");
        assert_eq!(
            report.broken_at.map(|b| (b.seq, b.reason)),
            Some((3, BreakReason::HashMismatch))
        );
    }

    #[test]
    fn an_audit_secret_wins_and_must_be_long_enough() {
        let dir = tempfile::tempdir().expect("tmp");
        let k = load_or_create_key(dir.path(), Some(&"11".repeat(32))).expect("secret");
        assert!(!dir.path().join(KEY_FILE).exists());
        assert_eq!(k.kid().len(), 8);
        assert!(load_or_create_key(dir.path(), Some("short")).is_err());
    }
}
