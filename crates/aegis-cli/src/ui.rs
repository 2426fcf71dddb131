//! Terminal presentation shared by the client commands: colours (TTY only, never with
//! `NO_COLOR` / `--no-color`), a spinner (TTY only), tables and small formatters.

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// True when stdout is a terminal.
pub fn stdout_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// True when stderr is a terminal.
pub fn stderr_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// True when stdin is a terminal.
pub fn stdin_tty() -> bool {
    std::io::stdin().is_terminal()
}

fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// ANSI styling, enabled only on a terminal without `NO_COLOR` / `--no-color`.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub enabled: bool,
}

impl Style {
    /// Style for a stream: `tty` tells whether that stream is a terminal.
    pub fn new(tty: bool, no_color_flag: bool) -> Self {
        Style {
            enabled: tty && !no_color_flag && !no_color_env(),
        }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn cyan(&self, s: &str) -> String {
        self.paint("36", s)
    }

    /// A status name coloured by its meaning.
    pub fn status(&self, s: &str) -> String {
        match s {
            "idle" | "completed" => self.green(s),
            "working" | "pending" => self.cyan(s),
            "permission_prompt" | "asking" | "stalled" | "rate_limited" | "interrupted" => {
                self.yellow(s)
            }
            "crashed" | "killed" => self.red(s),
            _ => s.to_owned(),
        }
    }
}

/// A one-line spinner on stderr (only when stderr is a terminal and it is enabled).
pub struct Spinner {
    stop: Arc<AtomicBool>,
    message: Arc<Mutex<String>>,
    handle: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Start spinning with `message`; a no-op unless `enabled` and stderr is a terminal.
    pub fn start(message: &str, enabled: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let msg = Arc::new(Mutex::new(message.to_owned()));
        let handle = (enabled && stderr_tty()).then(|| {
            let stop = stop.clone();
            let msg = msg.clone();
            std::thread::spawn(move || {
                const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let text = msg.lock().map(|m| m.clone()).unwrap_or_default();
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{} {text}", FRAMES[i % FRAMES.len()]);
                    let _ = err.flush();
                    drop(err);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(90));
                }
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K");
                let _ = err.flush();
            })
        });
        Spinner {
            stop,
            message: msg,
            handle,
        }
    }

    /// A spinner that never draws.
    pub fn none() -> Self {
        Spinner::start("", false)
    }

    /// Change the message.
    pub fn set(&self, message: &str) {
        if let Ok(mut m) = self.message.lock() {
            *m = message.to_owned();
        }
    }

    /// True while drawing.
    pub fn active(&self) -> bool {
        self.handle.is_some()
    }

    /// Stop and clear the line.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first 8 characters of an id.
pub fn id8(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Human age of an epoch-ms instant relative to now ("5s", "3m", "2h", "4d").
pub fn age(epoch_ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let s = now.saturating_sub(epoch_ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Truncate to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Render rows as left-aligned columns (the last column is not padded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Format a USD cost.
pub fn usd(v: f64) -> String {
    if v >= 0.01 {
        format!("${v:.2}")
    } else {
        format!("${v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["ID", "NAME", "X"],
            &[vec!["1".into(), "long name".into(), "a".into()]],
        );
        assert_eq!(t, "ID  NAME       X\n1   long name  a\n");
    }

    #[test]
    fn formatters() {
        assert_eq!(id8("3f1c2b9e-5d4a"), "3f1c2b9e");
        assert_eq!(id8("abc"), "abc");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(usd(1.234), "$1.23");
        assert_eq!(usd(0.00123), "$0.0012");
        assert!(!Style::new(false, false).enabled);
        assert!(!Style::new(true, true).enabled);
    }
}
