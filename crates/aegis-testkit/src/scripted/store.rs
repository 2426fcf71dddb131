//! Conversation persistence for the scripted agent (one JSON file per session).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One finished turn: the prompt text and the agent's reply text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TurnRecord {
    pub prompt: String,
    pub reply: String,
    pub user_message_id: String,
    pub agent_message_id: String,
    pub stop_reason: String,
}

/// The persisted form of a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoredSession {
    pub session_id: String,
    pub cwd: PathBuf,
    pub mode: String,
    #[serde(default)]
    pub turns: Vec<TurnRecord>,
}

/// A session id is used as a file name, so it must be harmless.
#[must_use]
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Where the session's file lives: `$SCRIPTED_AGENT_STATE_DIR/<id>.json`, else
/// `<cwd>/.scripted-agent/<id>.json`.
#[must_use]
pub fn session_path(state_dir: Option<&Path>, cwd: &Path, session_id: &str) -> PathBuf {
    let dir = state_dir.map_or_else(|| cwd.join(".scripted-agent"), Path::to_path_buf);
    dir.join(format!("{session_id}.json"))
}

/// Write the session atomically (temp file + rename).
pub async fn save(path: &Path, session: &StoredSession) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let json = serde_json::to_vec_pretty(session).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("json.tmp-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&tmp, json).await?;
    tokio::fs::rename(&tmp, path).await
}

/// Read a stored session; `Ok(None)` when there is no file.
pub async fn load(path: &Path) -> std::io::Result<Option<StoredSession>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
