//! Event logs of the file store: one append-only NDJSON file per session
//! (`<root>/events/<session>.ndjson`; events without a session in `_global.ndjson`), one
//! [`StoredEvent`] per line.
//!
//! In memory the store keeps, per log, the byte offset of every line, and a global index
//! `global_seq -> (file, offset, length)`, so reads seek straight to the lines they return and
//! never hold more than one page in memory. The indexes are rebuilt by scanning the files on
//! open; a torn last line (crash in the middle of an append) is truncated away.
//!
//! Appends are serialised; a batch is validated completely before anything is written, every
//! touched file is written and then fsynced once (group commit), and a failed write is rolled
//! back (files truncated to their previous length), so a rejected or failed batch leaves
//! nothing behind. The index is updated only after the fsyncs.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::fsio::{
    blocking, io_err, is_temp_name, read, remove_if_exists, sync_dir, write, write_atomic,
};
use super::{detached, names};
use crate::{StoreError, StoreResult, StoredEvent};

/// Log of events without a session.
const GLOBAL_STEM: &str = "_global";
const EXT: &str = ".ndjson";
/// High-water mark of global sequences, kept when logs are deleted.
const HWM_FILE: &str = ".global_seq";
/// Dead global index entries tolerated before compaction.
const COMPACT_MIN: usize = 4096;

pub(super) struct EventStore {
    dir: PathBuf,
    append_lock: tokio::sync::Mutex<()>,
    index: RwLock<EventIndex>,
}

#[derive(Default)]
struct EventIndex {
    /// Logs by session id (`None` = global events).
    logs: HashMap<Option<String>, LogIndex>,
    /// File stems in use.
    stems: HashSet<String>,
    /// Live files by id (global entries of deleted files are skipped, then compacted).
    files: HashMap<u32, Arc<PathBuf>>,
    next_file: u32,
    global: Vec<GlobalEntry>,
    dead: usize,
    last_global: u64,
    persisted_hwm: u64,
}

struct LogIndex {
    file: u32,
    path: Arc<PathBuf>,
    stem: String,
    first_id: u64,
    last_id: u64,
    /// Byte offset of every line.
    offsets: Vec<u64>,
    /// Length of the indexed part of the file.
    end: u64,
}

#[derive(Clone, Copy)]
struct GlobalEntry {
    seq: u64,
    offset: u64,
    len: u32,
    file: u32,
}

/// One serialised event waiting to be appended.
pub(super) struct Line {
    key: Option<String>,
    id: u64,
    seq: u64,
    bytes: Vec<u8>,
}

/// Encode events as NDJSON lines (done before taking the append lock).
pub(super) fn encode_lines(events: &[StoredEvent]) -> StoreResult<Vec<Line>> {
    events
        .iter()
        .map(|e| {
            let mut bytes = serde_json::to_vec(e)
                .map_err(|err| StoreError::Unavailable(format!("cannot encode event: {err}")))?;
            bytes.push(b'\n');
            Ok(Line {
                key: e.session_id.clone(),
                id: e.id,
                seq: e.global_seq,
                bytes,
            })
        })
        .collect()
}

/// What one append writes to one file.
struct FilePlan {
    key: Option<String>,
    path: PathBuf,
    stem: String,
    new: bool,
    base_end: u64,
    last_id: u64,
    buf: Vec<u8>,
    /// (id, offset) of every line written.
    lines: Vec<(u64, u64)>,
}

struct Plan {
    files: Vec<FilePlan>,
    /// (file plan index, seq, offset, len) in append order.
    global: Vec<(usize, u64, u64, u32)>,
    last_global: u64,
}

struct ScannedLog {
    key: Option<String>,
    first_id: u64,
    last_id: u64,
    offsets: Vec<u64>,
    end: u64,
    global: Vec<(u64, u64, u32)>,
}

impl EventStore {
    /// Open the event folder and rebuild the indexes (blocking).
    pub(super) fn open(dir: PathBuf) -> StoreResult<EventStore> {
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, &e))?;
        let mut idx = EventIndex::default();
        let mut names_found = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_err("cannot list", &dir, &e))? {
            let entry = entry.map_err(|e| io_err("cannot list", &dir, &e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_temp_name(&name) {
                tracing::warn!(file = %name, "removing a temporary file left by an interrupted write");
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if !name.starts_with('.') && name.ends_with(EXT) {
                names_found.push(name);
            }
        }
        names_found.sort();
        for name in names_found {
            let stem = name.trim_end_matches(EXT).to_owned();
            let path = dir.join(&name);
            let global = stem == GLOBAL_STEM;
            let Some(log) = scan_log(&path, global)? else {
                tracing::warn!(path = %path.display(), "removing an empty event log");
                remove_if_exists(&path)?;
                continue;
            };
            if !global
                && !names::is_hashed(&stem)
                && names::decode(&stem).as_deref() != log.key.as_deref()
            {
                return Err(StoreError::Corrupt(format!(
                    "{} holds events of session {:?}",
                    path.display(),
                    log.key
                )));
            }
            if idx.logs.contains_key(&log.key) {
                return Err(StoreError::Corrupt(format!(
                    "two event logs hold session {:?}",
                    log.key
                )));
            }
            let file = idx.next_file;
            idx.next_file += 1;
            let path = Arc::new(path);
            idx.files.insert(file, path.clone());
            idx.stems.insert(stem.clone());
            idx.global
                .extend(log.global.iter().map(|&(seq, offset, len)| GlobalEntry {
                    seq,
                    offset,
                    len,
                    file,
                }));
            idx.logs.insert(
                log.key,
                LogIndex {
                    file,
                    path,
                    stem,
                    first_id: log.first_id,
                    last_id: log.last_id,
                    offsets: log.offsets,
                    end: log.end,
                },
            );
        }
        idx.global.sort_by_key(|e| e.seq);
        if let Some(w) = idx.global.windows(2).find(|w| w[0].seq == w[1].seq) {
            return Err(StoreError::Corrupt(format!(
                "global sequence {} is stored twice",
                w[0].seq
            )));
        }
        let hwm_path = dir.join(HWM_FILE);
        idx.persisted_hwm = match fs::read_to_string(&hwm_path) {
            Ok(s) => s
                .trim()
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", hwm_path.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err("cannot read", &hwm_path, &e)),
        };
        idx.last_global = idx
            .global
            .last()
            .map_or(0, |e| e.seq)
            .max(idx.persisted_hwm);
        Ok(EventStore {
            dir,
            append_lock: tokio::sync::Mutex::new(()),
            index: RwLock::new(idx),
        })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) async fn append(self: &Arc<Self>, events: &[StoredEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let lines = encode_lines(events)?;
        let this = self.clone();
        detached(async move { this.append_lines(lines).await }).await
    }

    async fn append_lines(&self, lines: Vec<Line>) -> StoreResult<()> {
        let _guard = self.append_lock.lock().await;
        let plan = plan_append(&read(&self.index), &self.dir, lines)?;
        let dir = self.dir.clone();
        let plan = blocking(move || {
            write_plan(&dir, &plan)?;
            Ok(plan)
        })
        .await?;
        let mut idx = write(&self.index);
        let mut file_ids = Vec::with_capacity(plan.files.len());
        for fp in plan.files {
            let idx = &mut *idx;
            let log = match idx.logs.entry(fp.key) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let file = idx.next_file;
                    idx.next_file += 1;
                    let path = Arc::new(fp.path);
                    idx.files.insert(file, path.clone());
                    idx.stems.insert(fp.stem.clone());
                    v.insert(LogIndex {
                        file,
                        path,
                        stem: fp.stem,
                        first_id: fp.lines.first().map_or(0, |l| l.0),
                        last_id: 0,
                        offsets: Vec::new(),
                        end: 0,
                    })
                }
            };
            log.offsets.extend(fp.lines.iter().map(|l| l.1));
            log.last_id = fp.last_id;
            log.end = fp.base_end + fp.buf.len() as u64;
            file_ids.push(log.file);
        }
        for (i, seq, offset, len) in plan.global {
            idx.global.push(GlobalEntry {
                seq,
                offset,
                len,
                file: file_ids[i],
            });
        }
        idx.last_global = plan.last_global;
        Ok(())
    }

    pub(super) async fn read_events(
        &self,
        session_id: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let range = {
            let idx = read(&self.index);
            let Some(log) = idx.logs.get(&Some(session_id.to_owned())) else {
                return Ok(Vec::new());
            };
            let start_id = after.saturating_add(1).max(log.first_id);
            if limit == 0 || log.offsets.is_empty() || start_id > log.last_id {
                return Ok(Vec::new());
            }
            let i = usize::try_from(start_id - log.first_id).unwrap_or(usize::MAX);
            let j = i.saturating_add(limit).min(log.offsets.len());
            let start = log.offsets[i];
            let end = log.offsets.get(j).copied().unwrap_or(log.end);
            (log.path.clone(), start, end, j - i)
        };
        let (path, start, end, count) = range;
        blocking(move || {
            let mut file = match File::open(&*path) {
                Ok(f) => f,
                // Deleted since the index was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_err("cannot open", &path, &e)),
            };
            let len = usize::try_from(end - start)
                .map_err(|_| StoreError::Corrupt("event range too large".into()))?;
            let mut buf = vec![0u8; len];
            file.seek(SeekFrom::Start(start))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|e| io_err("cannot read", &path, &e))?;
            let mut out = Vec::with_capacity(count);
            for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                out.push(parse_line(&path, line)?);
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn read_global(
        &self,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let wanted: Vec<(u32, Arc<PathBuf>, u64, u32)> = {
            let idx = read(&self.index);
            let start = idx.global.partition_point(|e| e.seq <= after);
            idx.global[start..]
                .iter()
                .filter_map(|e| {
                    idx.files
                        .get(&e.file)
                        .map(|p| (e.file, p.clone(), e.offset, e.len))
                })
                .take(limit)
                .collect()
        };
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        blocking(move || {
            let mut open: HashMap<u32, Option<File>> = HashMap::new();
            let mut out = Vec::with_capacity(wanted.len());
            let mut buf = Vec::new();
            for (id, path, offset, len) in wanted {
                let file = match open.entry(id) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => match File::open(&*path) {
                        Ok(f) => v.insert(Some(f)),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => v.insert(None),
                        Err(e) => return Err(io_err("cannot open", &path, &e)),
                    },
                };
                // A log deleted since the index was read is skipped.
                let Some(file) = file else { continue };
                buf.resize(len as usize, 0);
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.read_exact(&mut buf))
                    .map_err(|e| io_err("cannot read", &path, &e))?;
                out.push(parse_line(&path, &buf)?);
            }
            Ok(out)
        })
        .await
    }

    pub(super) fn last_event_id(&self, session_id: &str) -> u64 {
        read(&self.index)
            .logs
            .get(&Some(session_id.to_owned()))
            .map_or(0, |l| l.last_id)
    }

    pub(super) fn oldest_event_id(&self, session_id: &str) -> u64 {
        read(&self.index)
            .logs
            .get(&Some(session_id.to_owned()))
            .map_or(0, |l| l.first_id)
    }

    pub(super) fn last_global_seq(&self) -> u64 {
        read(&self.index).last_global
    }

    pub(super) async fn delete(self: &Arc<Self>, session_id: &str) -> StoreResult<()> {
        let this = self.clone();
        let key = Some(session_id.to_owned());
        detached(async move { this.delete_log(key).await }).await
    }

    async fn delete_log(&self, key: Option<String>) -> StoreResult<()> {
        let _guard = self.append_lock.lock().await;
        let (path, hwm) = {
            let idx = read(&self.index);
            let Some(log) = idx.logs.get(&key) else {
                return Ok(());
            };
            let hwm = (idx.last_global > idx.persisted_hwm).then_some(idx.last_global);
            (log.path.clone(), hwm)
        };
        let dir = self.dir.clone();
        blocking(move || {
            // Keep the highest global sequence even if this log held it, so sequences are
            // never reused after a restart.
            if let Some(hwm) = hwm {
                write_atomic(&dir, HWM_FILE, format!("{hwm}\n").as_bytes())?;
            }
            remove_if_exists(&path)?;
            sync_dir(&dir)
        })
        .await?;
        let mut idx = write(&self.index);
        if let Some(hwm) = hwm {
            idx.persisted_hwm = hwm;
        }
        if let Some(log) = idx.logs.remove(&key) {
            idx.stems.remove(&log.stem);
            idx.files.remove(&log.file);
            idx.dead += log.offsets.len();
        }
        if idx.dead >= COMPACT_MIN && idx.dead * 2 >= idx.global.len() {
            let idx = &mut *idx;
            let files = &idx.files;
            idx.global.retain(|e| files.contains_key(&e.file));
            idx.dead = 0;
        }
        Ok(())
    }
}

fn parse_line(path: &Path, line: &[u8]) -> StoreResult<StoredEvent> {
    serde_json::from_slice(line)
        .map_err(|e| StoreError::Corrupt(format!("{}: bad event line: {e}", path.display())))
}

/// Validate a batch against the index and lay out what to write where.
fn plan_append(idx: &EventIndex, dir: &Path, lines: Vec<Line>) -> StoreResult<Plan> {
    let mut last_global = idx.last_global;
    let mut files: Vec<FilePlan> = Vec::new();
    let mut pos: HashMap<Option<String>, usize> = HashMap::new();
    let mut new_stems: HashSet<String> = HashSet::new();
    let mut global = Vec::with_capacity(lines.len());
    for line in lines {
        if line.seq <= last_global {
            return Err(StoreError::InvalidAppend(format!(
                "global sequence {} does not exceed {last_global}",
                line.seq
            )));
        }
        last_global = line.seq;
        let i = match pos.get(&line.key) {
            Some(&i) => i,
            None => {
                let fp = match idx.logs.get(&line.key) {
                    Some(log) => FilePlan {
                        key: line.key.clone(),
                        path: (*log.path).clone(),
                        stem: log.stem.clone(),
                        new: false,
                        base_end: log.end,
                        last_id: log.last_id,
                        buf: Vec::new(),
                        lines: Vec::new(),
                    },
                    None => {
                        let stem = match &line.key {
                            None => GLOBAL_STEM.to_owned(),
                            Some(s) => {
                                names::allocate(s, |n| {
                                    idx.stems.contains(n) || new_stems.contains(n)
                                })
                                .0
                            }
                        };
                        new_stems.insert(stem.clone());
                        FilePlan {
                            key: line.key.clone(),
                            path: dir.join(format!("{stem}{EXT}")),
                            stem,
                            new: true,
                            base_end: 0,
                            last_id: 0,
                            buf: Vec::new(),
                            lines: Vec::new(),
                        }
                    }
                };
                files.push(fp);
                pos.insert(line.key.clone(), files.len() - 1);
                files.len() - 1
            }
        };
        let fp = &mut files[i];
        if let Some(session) = &line.key
            && line.id != fp.last_id + 1
        {
            return Err(StoreError::InvalidAppend(format!(
                "session {session}: event id {} does not follow {}",
                line.id, fp.last_id
            )));
        }
        fp.last_id = line.id;
        let offset = fp.base_end + fp.buf.len() as u64;
        let len = u32::try_from(line.bytes.len() - 1)
            .map_err(|_| StoreError::InvalidAppend("event larger than 4 GiB".into()))?;
        fp.lines.push((line.id, offset));
        fp.buf.extend_from_slice(&line.bytes);
        global.push((i, line.seq, offset, len));
    }
    Ok(Plan {
        files,
        global,
        last_global,
    })
}

/// Write every file of a plan, then fsync each once; roll everything back on failure.
fn write_plan(dir: &Path, plan: &Plan) -> StoreResult<()> {
    let mut opened = Vec::with_capacity(plan.files.len());
    for fp in &plan.files {
        match write_file(fp) {
            Ok(f) => opened.push(f),
            Err(e) => {
                rollback(&plan.files[..opened.len()]);
                return Err(e);
            }
        }
    }
    for (f, fp) in opened.iter().zip(&plan.files) {
        if let Err(e) = f.sync_data() {
            rollback(&plan.files);
            return Err(io_err("cannot sync", &fp.path, &e));
        }
    }
    drop(opened);
    if plan.files.iter().any(|f| f.new)
        && let Err(e) = sync_dir(dir)
    {
        rollback(&plan.files);
        return Err(e);
    }
    Ok(())
}

fn write_file(fp: &FilePlan) -> StoreResult<File> {
    let mut opts = OpenOptions::new();
    opts.write(true);
    if fp.new {
        opts.create_new(true);
    }
    let mut f = opts
        .open(&fp.path)
        .map_err(|e| io_err("cannot open", &fp.path, &e))?;
    let written = (|| {
        // Drop anything beyond the indexed end (left by an earlier failed append).
        if f.metadata()?.len() != fp.base_end {
            f.set_len(fp.base_end)?;
        }
        f.seek(SeekFrom::Start(fp.base_end))?;
        f.write_all(&fp.buf)
    })();
    if let Err(e) = written {
        drop(f);
        rollback(std::slice::from_ref(fp));
        return Err(io_err("cannot append to", &fp.path, &e));
    }
    Ok(f)
}

fn rollback(files: &[FilePlan]) {
    for fp in files {
        let undone = if fp.new {
            remove_if_exists(&fp.path).map(|_| ())
        } else {
            OpenOptions::new()
                .write(true)
                .open(&fp.path)
                .and_then(|f| {
                    f.set_len(fp.base_end)?;
                    f.sync_data()
                })
                .map_err(|e| io_err("cannot truncate", &fp.path, &e))
        };
        if let Err(e) = undone {
            tracing::error!(error = %e, "cannot roll back a failed event append");
        }
    }
}

/// Scan one log: offsets, ids and sequences; truncates a torn last line. `None` if empty.
fn scan_log(path: &Path, global: bool) -> StoreResult<Option<ScannedLog>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_err("cannot open", path, &e))?;
    let len = file
        .metadata()
        .map_err(|e| io_err("cannot stat", path, &e))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 16, &file);
    let mut buf = Vec::new();
    let mut offset = 0u64;
    let mut log = ScannedLog {
        key: None,
        first_id: 0,
        last_id: 0,
        offsets: Vec::new(),
        end: 0,
        global: Vec::new(),
    };
    let mut last_seq = 0u64;
    let mut torn_at = None;
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_err("cannot read", path, &e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let corrupt = |what: String| {
            StoreError::Corrupt(format!("{} line {line_no}: {what}", path.display()))
        };
        let is_last = offset + n as u64 >= len;
        if buf.last() != Some(&b'\n') {
            torn_at = Some(offset);
            break;
        }
        let ev: StoredEvent = match serde_json::from_slice(&buf[..n - 1]) {
            Ok(ev) => ev,
            Err(_) if is_last => {
                torn_at = Some(offset);
                break;
            }
            Err(e) => return Err(corrupt(format!("invalid event: {e}"))),
        };
        match (&ev.session_id, global) {
            (None, true) => {}
            (Some(s), false) => {
                if log.offsets.is_empty() {
                    log.key = Some(s.clone());
                    log.first_id = ev.id;
                    if ev.id == 0 {
                        return Err(corrupt("event id 0 in a session log".into()));
                    }
                } else if log.key.as_deref() != Some(s.as_str()) {
                    return Err(corrupt(format!("event of another session ({s})")));
                } else if ev.id != log.last_id + 1 {
                    return Err(corrupt(format!(
                        "event id {} does not follow {}",
                        ev.id, log.last_id
                    )));
                }
            }
            (_, true) => return Err(corrupt("session event in the global log".into())),
            (None, false) => return Err(corrupt("global event in a session log".into())),
        }
        if ev.global_seq <= last_seq {
            return Err(corrupt(format!(
                "global sequence {} does not exceed {last_seq}",
                ev.global_seq
            )));
        }
        last_seq = ev.global_seq;
        let line_len = u32::try_from(n - 1).map_err(|_| corrupt("line too long".into()))?;
        log.last_id = ev.id;
        log.offsets.push(offset);
        log.global.push((ev.global_seq, offset, line_len));
        offset += n as u64;
    }
    drop(reader);
    if let Some(at) = torn_at {
        tracing::warn!(
            path = %path.display(),
            offset = at,
            "truncating a torn last line of an event log (interrupted append)"
        );
        file.set_len(at)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err("cannot truncate", path, &e))?;
    }
    log.end = offset;
    if log.offsets.is_empty() {
        return Ok(None);
    }
    Ok(Some(log))
}
