//! `ag init`: write a config file (default `./.aegis/config.yaml`). An existing file is never
//! touched without `--overwrite` (which first copies it to `<path>.bak`); a master token is
//! created only with `--force` or on a non-loopback host, printed once; the file is 0600.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use serde_json::json;

use super::{CmdResult, Ctx, Failure, Global, exit, print_json};
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
    if a.list_templates {
        return list_templates(global);
    }
    if let Some(name) = &a.from_template {
        return from_template(global, a, name);
    }
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

// ---------------------------------------------------------------------------------------------
// Starter templates (cli-mcp-config §4.3)
// ---------------------------------------------------------------------------------------------

fn template_list_text() -> String {
    let ts = aegis_core::starter_templates();
    let w = ts.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for t in ts {
        let vars = if t.variables.is_empty() {
            String::new()
        } else {
            format!(" (variables: {})", t.variables.join(", "))
        };
        out.push_str(&format!(
            "  {:w$}  {}{vars}\n",
            t.name,
            t.description,
            w = w
        ));
    }
    out
}

/// `ag init --list-templates`: the starter templates, name and description.
fn list_templates(global: &Global) -> CmdResult {
    if global.json {
        print_json(&json!({ "templates": aegis_core::starter_templates() }))?;
        return Ok(exit::OK);
    }
    println!("Starter templates:");
    print!("{}", template_list_text());
    println!("Scaffold one: ag init --from-template NAME [--cwd DIR] [--register]");
    Ok(exit::OK)
}

/// `ag init --from-template NAME [--cwd DIR] [--overwrite] [--register]`: write
/// `<DIR>/.aegis/templates/NAME.yaml` (the `POST /v1/templates` body for DIR); with
/// `--register` also create it on the running server from the file on disk.
fn from_template(global: &Global, a: &InitArgs, name: &str) -> CmdResult {
    let dir = super::work_dir(a.cwd.as_deref())?;
    let Some(req) = aegis_core::templates::starter_template_request(name, &dir) else {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "unknown template '{name}'. Starter templates:\n{}",
                template_list_text().trim_end()
            ),
        ));
    };
    let vars = aegis_core::templates::template_variables(req.prompt.as_deref().unwrap_or(""));
    let path = PathBuf::from(&dir)
        .join(".aegis")
        .join("templates")
        .join(format!("{name}.yaml"));
    let out = Style::new(ui::stdout_tty(), global.no_color);
    let existed = path.exists();
    let written = if existed && !a.overwrite {
        false
    } else {
        let yaml = yaml_serde::to_string(&req)
            .map_err(|e| Failure::new(exit::FAILURE, format!("cannot render the template: {e}")))?;
        let vars_line = if vars.is_empty() {
            String::new()
        } else {
            format!(
                "# Variables ({{{{name}}}} in the prompt, given when a session is started): {}\n",
                vars.join(", ")
            )
        };
        let text = format!(
            "# Aegis session template, from the starter template '{name}' (ag init --from-template).\n\
             # The body of POST /v1/templates (JSON or this YAML converted); edit freely.\n\
             # Register it on a running server: ag init --from-template {name} --register\n\
             {vars_line}{yaml}"
        );
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Failure::new(
                    exit::FAILURE,
                    format!("cannot create {}: {e}", parent.display()),
                )
            })?;
        }
        std::fs::write(&path, text).map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
        true
    };
    let registered = if a.register {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let body: aegis_api_types::orchestration::CreateTemplateRequest =
            yaml_serde::from_str(&text).map_err(|e| {
                Failure::new(
                    exit::USAGE,
                    format!("{} is not a valid template: {e}", path.display()),
                )
            })?;
        let body = serde_json::to_value(&body)
            .map_err(|e| Failure::new(exit::FAILURE, format!("cannot encode: {e}")))?;
        let ctx = Ctx::new(global);
        let mut created = serde_json::Value::Null;
        super::block_on(async {
            let client = ctx.connect().await?;
            created = client
                .call_json(
                    reqwest::Method::POST,
                    "/v1/templates",
                    &[],
                    Some(&body),
                    &[],
                )
                .await
                .map_err(|e| ctx.fail(e))?;
            Ok(exit::OK)
        })?;
        Some(created)
    } else {
        None
    };
    if global.json {
        print_json(&json!({
            "path": path,
            "name": name,
            "created": written,
            "overwritten": written && existed,
            "variables": vars,
            "template": registered,
        }))?;
        return Ok(exit::OK);
    }
    if written {
        println!("{} {}", out.green("Wrote"), path.display());
    } else {
        println!(
            "Template exists at {}; left unchanged (use --overwrite to replace)",
            path.display()
        );
    }
    if !vars.is_empty() {
        println!("Variables: {}", vars.join(", "));
    }
    match &registered {
        Some(t) => println!(
            "Registered on the server as template {} ({})",
            t["name"].as_str().unwrap_or(name),
            t["id"].as_str().unwrap_or("")
        ),
        None => println!(
            "Register it on a running server: ag init --from-template {name} --register{}",
            a.cwd
                .as_ref()
                .map(|_| format!(" --cwd {dir}"))
                .unwrap_or_default()
        ),
    }
    Ok(exit::OK)
}
