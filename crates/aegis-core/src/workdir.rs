//! Working-directory validation (api §2.10).
//!
//! Invariant: the server never uses its own cwd for a session: every workDir is explicit,
//! absolute, free of `..`, under an allowed root, existing, and symlink-resolved (the real path
//! is re-checked against the real-path roots).

use std::path::{Component, Path, PathBuf};

use crate::{CoreError, ErrorKind};

/// The allowed roots, resolved once per configuration (re)load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRoots {
    /// Real-path resolved roots.
    pub roots: Vec<PathBuf>,
    /// True when the roots are the defaults (home + start-up cwd): temp dirs are then refused.
    pub defaults: bool,
    /// Entries that were configured but do not exist (reported as warnings).
    pub missing: Vec<String>,
}

/// Expand a leading `~` / `~/`.
pub fn expand_home(raw: &str, home: &Path) -> PathBuf {
    if raw == "~" {
        home.to_path_buf()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(raw)
    }
}

fn temp_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/tmp"), PathBuf::from("/var/tmp")];
    dirs.push(std::env::temp_dir());
    let resolved: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    dirs.extend(resolved);
    dirs
}

fn is_under(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

fn in_temp(path: &Path) -> bool {
    temp_dirs().iter().any(|t| is_under(path, t))
}

impl AllowedRoots {
    /// Resolve configured entries (or the defaults when the list is empty).
    pub fn resolve(configured: &[String], home: &Path, server_cwd: &Path) -> Self {
        if configured.is_empty() {
            let mut roots = Vec::new();
            if let Ok(h) = std::fs::canonicalize(home) {
                roots.push(h);
            }
            if let Ok(c) = std::fs::canonicalize(server_cwd) {
                if c != Path::new("/") && !in_temp(&c) && !roots.contains(&c) {
                    roots.push(c);
                }
            }
            return AllowedRoots {
                roots,
                defaults: true,
                missing: vec![],
            };
        }
        let mut roots = Vec::new();
        let mut missing = Vec::new();
        for entry in configured {
            let p = expand_home(entry, home);
            let p = if p.is_absolute() {
                p
            } else {
                server_cwd.join(p)
            };
            match std::fs::canonicalize(&p) {
                Ok(real) => roots.push(real),
                Err(_) => missing.push(entry.clone()),
            }
        }
        AllowedRoots {
            roots,
            defaults: false,
            missing,
        }
    }

    fn allows(&self, path: &Path) -> bool {
        if self.defaults && in_temp(path) {
            return false;
        }
        self.roots.iter().any(|r| is_under(path, r))
    }

    fn describe(&self) -> String {
        let list: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    }
}

fn invalid(message: String) -> CoreError {
    CoreError::new(ErrorKind::InvalidWorkdir, message)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = &s[i + 1..i + 3];
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn has_dotdot(s: &str) -> bool {
    let mut candidates = vec![s.to_owned(), s.replace('\\', "/")];
    let mut cur = s.to_owned();
    for _ in 0..4 {
        let next = percent_decode(&cur);
        if next == cur {
            break;
        }
        candidates.push(next.replace('\\', "/"));
        cur = next;
    }
    candidates
        .iter()
        .any(|c| c.split('/').any(|seg| seg == ".."))
}

/// Validate a requested workDir; returns its real path.
pub fn validate(raw: &str, roots: &AllowedRoots, home: &Path) -> Result<PathBuf, CoreError> {
    if raw.contains('\0') {
        return Err(invalid("workDir must not contain NUL characters".into()));
    }
    if raw.trim().is_empty() {
        return Err(invalid(
            "workDir is required: give an absolute directory path".into(),
        ));
    }
    if has_dotdot(raw) {
        return Err(invalid(format!(
            "workDir '{raw}' contains a '..' segment; give the directory's absolute path without '..'"
        )));
    }
    let path = expand_home(raw, home);
    if !path.is_absolute() {
        return Err(invalid(format!(
            "workDir '{raw}' is not absolute; give an absolute path (a leading ~/ is expanded)"
        )));
    }
    // Normalise `.` and duplicate separators without touching the file system.
    let normalised: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let meta = std::fs::metadata(&normalised).map_err(|_| {
        invalid(format!(
            "workDir '{}' does not exist; create it or pick an existing directory",
            normalised.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(invalid(format!(
            "workDir '{}' is not a directory",
            normalised.display()
        )));
    }
    let real = std::fs::canonicalize(&normalised).map_err(|e| {
        invalid(format!(
            "workDir '{}' cannot be resolved: {e}",
            normalised.display()
        ))
    })?;
    if !roots.allows(&real) {
        let temp_note = if roots.defaults && in_temp(&real) {
            " (temporary directories are excluded unless listed in allowedWorkDirs)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "workDir '{}' is outside the allowed directories{temp_note}; allowed: {}. Add it to allowedWorkDirs in the config file",
            real.display(),
            roots.describe()
        )));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotdot_in_any_encoding_is_rejected() {
        assert!(has_dotdot("/a/../b"));
        assert!(has_dotdot("/a/%2e%2e/b"));
        assert!(has_dotdot("/a/%252e%252e/b"));
        assert!(has_dotdot("C:\\a\\..\\b"));
        assert!(!has_dotdot("/a/..b/c"));
    }

    #[test]
    fn roots_compare_by_component() {
        let base = tempfile::tempdir().unwrap();
        let alice = base.path().join("alice");
        let al = base.path().join("al");
        std::fs::create_dir_all(&alice).unwrap();
        std::fs::create_dir_all(al.join("x")).unwrap();
        let roots = AllowedRoots::resolve(&[alice.display().to_string()], base.path(), base.path());
        assert!(validate(&alice.display().to_string(), &roots, base.path()).is_ok());
        let err = validate(&al.join("x").display().to_string(), &roots, base.path()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidWorkdir);
    }

    #[test]
    fn symlink_escape_is_rejected() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let roots = AllowedRoots::resolve(&[root.display().to_string()], base.path(), base.path());
        let err = validate(
            &root.join("link").display().to_string(),
            &roots,
            base.path(),
        )
        .unwrap_err();
        assert!(err.message.contains("outside"), "{}", err.message);
    }

    #[test]
    fn defaults_exclude_temp_dirs() {
        let roots = AllowedRoots {
            roots: vec![PathBuf::from("/")],
            defaults: true,
            missing: vec![],
        };
        let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        let err = validate(&tmp.display().to_string(), &roots, Path::new("/root")).unwrap_err();
        assert!(err.message.contains("temporary"), "{}", err.message);
    }

    #[test]
    fn relative_and_missing_paths_are_explained() {
        let roots = AllowedRoots::resolve(&["/".into()], Path::new("/root"), Path::new("/"));
        assert!(
            validate("relative/dir", &roots, Path::new("/root"))
                .unwrap_err()
                .message
                .contains("absolute")
        );
        assert!(
            validate("/definitely/not/here", &roots, Path::new("/root"))
                .unwrap_err()
                .message
                .contains("does not exist")
        );
    }
}
