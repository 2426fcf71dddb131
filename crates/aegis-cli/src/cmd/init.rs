//! `ag init`: write a config file (default `./.aegis/config.yaml`). An existing file is never
//! touched without `--overwrite` (which first copies it to `<path>.bak`); a master token is
//! created only with `--force` or on a non-loopback host, printed once; the file is 0600.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use serde_json::json;

use super::{CmdResult, Failure, Global, exit, print_json};
use crate::InitArgs;
use crate::config::{self, InitValues};
use crate::ui::{self, Style};

fn loopback(host: &str) -> bool {
    matches!(host, "localhost" | "::1" | "[::1]") || host.starts_with("127.")
}

fn ask(question: &str, default: &str) -> String {
    eprint!("{question} [{default}]: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return default.to_owned();
    }
    let t = line.trim();
    if t.is_empty() {
        default.to_owned()
    } else {
        t.to_owned()
    }
}

fn ask_yes(question: &str, default: bool) -> bool {
    let d = if default { "Y/n" } else { "y/N" };
    match ask(question, d).to_lowercase().as_str() {
        "y" | "yes" => true,
        "n" | "no" => false,
        _ => default,
    }
}

fn non_empty(flag: &str, v: Option<&String>) -> Result<Option<String>, Failure> {
    match v {
        Some(s) if s.trim().is_empty() => Err(Failure::new(
            exit::USAGE,
            format!("--{flag} must not be empty"),
        )),
        Some(s) => Ok(Some(s.trim().to_owned())),
        None => Ok(None),
    }
}

pub fn run(global: &Global, a: &InitArgs) -> CmdResult {
    let model = non_empty("model", a.model.as_ref())?;
    let name = non_empty("name", a.name.as_ref())?;
    let host = non_empty("host", a.host.as_ref())?;
    let path = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(".aegis").join("config.yaml"));
    let out = Style::new(ui::stdout_tty(), global.no_color);
    if path.exists() && !a.overwrite {
        let msg = format!(
            "Config exists at {}; left unchanged (use --overwrite to replace)",
            path.display()
        );
        if global.json {
            print_json(&json!({"path": path, "created": false, "message": msg}))?;
        } else {
            println!("{msg}");
        }
        return Ok(exit::OK);
    }
    let mut v = InitValues {
        port: global.port.unwrap_or(9100),
        host: host.unwrap_or_else(|| "127.0.0.1".to_owned()),
        dashboard: true,
        model,
        name,
        token: None,
    };
    let mut want_token = a.force || !loopback(&v.host);
    if ui::stdin_tty() && !a.yes && !global.json {
        let m = ask(
            "Default model (provider/model, empty = agent default)",
            v.model.as_deref().unwrap_or(""),
        );
        v.model = (!m.is_empty()).then_some(m);
        let n = ask(
            "Default session name (empty = derived from the brief)",
            v.name.as_deref().unwrap_or(""),
        );
        v.name = (!n.is_empty()).then_some(n);
        v.host = ask("Bind address", &v.host);
        want_token = if loopback(&v.host) {
            ask_yes("Create an API token (not needed on localhost)?", want_token)
        } else {
            eprintln!("A non-loopback address needs a token: one will be created.");
            true
        };
        v.dashboard = ask_yes("Serve the dashboard?", true);
    }
    if want_token {
        v.token =
            Some(config::random_token().map_err(|e| {
                Failure::new(exit::FAILURE, format!("cannot generate a token: {e}"))
            })?);
    }
    if path.exists() {
        let mut bak = path.clone().into_os_string();
        bak.push(".bak");
        std::fs::copy(&path, &bak).map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot back up {}: {e}", path.display()),
            )
        })?;
    }
    config::write_private(&path, &config::render_config(&v), a.overwrite).map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("cannot write {}: {e}", path.display()),
        )
    })?;
    // The state dir the server will use (AEGIS_STATE_DIR, else ~/.aegis).
    let state_dir = std::env::var("AEGIS_STATE_DIR")
        .ok()
        .filter(|s| !s.is_empty())
        .map_or_else(|| config::home().join(".aegis"), |s| config::expand(&s));
    {
        use std::os::unix::fs::DirBuilderExt as _;
        if !state_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&state_dir)
                .map_err(|e| {
                    Failure::new(
                        exit::FAILURE,
                        format!("cannot create the state dir {}: {e}", state_dir.display()),
                    )
                })?;
        }
    }
    let host_for_url = match v.host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    let dashboard = format!("http://{host_for_url}:{}/dashboard/", v.port);
    if global.json {
        print_json(&json!({
            "path": path,
            "created": true,
            "backup": a.overwrite,
            "token": v.token,
            "stateDir": state_dir,
        }))?;
        return Ok(exit::OK);
    }
    println!("{} {}", out.green("Wrote"), path.display());
    if let Some(t) = &v.token {
        println!("A master token was created (shown only now; it is also in the file):");
        println!("  export AEGIS_AUTH_TOKEN={t}");
    } else {
        println!(
            "No token: the server accepts local requests without one (zero-config on loopback)."
        );
    }
    println!("Next steps:");
    println!("  ag                      start the server (foreground)");
    println!("  ag run \"<brief>\"        start it in the background and run a session");
    if v.dashboard {
        println!("  {dashboard}");
    }
    Ok(exit::OK)
}
