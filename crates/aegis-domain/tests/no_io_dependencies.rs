//! Architecture invariant: the domain crate depends on no runtime, web, database or protocol
//! crate. Reads this crate's own manifest and checks every non-dev dependency table.

const FORBIDDEN: &[&str] = &[
    "tokio",
    "tokio-util",
    "tokio-postgres",
    "axum",
    "hyper",
    "reqwest",
    "sqlx",
    "redis",
    "agent-client-protocol",
    "deadpool-postgres",
    "postgres",
    "tower",
    "rmcp",
    "futures",
    "async-std",
    "mio",
];

/// Whether a dependency name is forbidden: an exact match or a `name-…` / `name_…` family
/// member (`tokio-stream`, `axum-core`, `hyper-util`, ...).
fn forbidden(name: &str) -> bool {
    let name = name.trim().trim_matches('"').replace('_', "-");
    FORBIDDEN
        .iter()
        .any(|f| name == *f || name.starts_with(&format!("{f}-")))
}

/// (table header, dependency name, full line) of every entry in a non-dev dependency table:
/// `[dependencies]`, `[build-dependencies]`, `[target.'…'.dependencies]` and dotted
/// `[dependencies.name]` tables.
fn dependencies(manifest: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut table: Option<String> = None;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let header = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            let is_dep_table = (header == "dependencies"
                || header == "build-dependencies"
                || header.ends_with(".dependencies")
                || header.ends_with(".build-dependencies")
                || header.starts_with("dependencies.")
                || header.starts_with("build-dependencies."))
                && !header.contains("dev-dependencies");
            let dotted = header
                .strip_prefix("dependencies.")
                .or_else(|| header.strip_prefix("build-dependencies."));
            // A dotted table is one dependency; its keys are fields, not names.
            table = None;
            if let Some(name) = dotted {
                out.push((header.clone(), name.to_string(), line.to_string()));
            } else if is_dep_table {
                table = Some(header);
            }
            continue;
        }
        if let Some(header) = &table {
            let key = line.split(['=', '.']).next().unwrap_or("").trim();
            out.push((header.clone(), key.to_string(), line.to_string()));
        }
    }
    out
}

#[test]
fn domain_crate_has_no_io_dependencies() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let manifest = std::fs::read_to_string(path).expect("read Cargo.toml");
    let deps = dependencies(&manifest);
    assert!(
        deps.iter().any(|(_, name, _)| name == "serde"),
        "parser found no dependencies in {path}: {deps:?}"
    );
    let bad: Vec<_> = deps
        .iter()
        .filter(|(_, name, line)| {
            forbidden(name)
                || line
                    .split("package")
                    .nth(1)
                    .and_then(|rest| rest.split('"').nth(1))
                    .is_some_and(forbidden)
        })
        .collect();
    assert!(
        bad.is_empty(),
        "aegis-domain must stay pure; forbidden dependencies: {bad:?}"
    );
}

#[test]
fn the_checker_catches_forbidden_dependencies() {
    let manifest = r#"
[package]
name = "x"
tokio = "not a dependency"

[dependencies]
serde.workspace = true
tokio = { workspace = true }
my-rt = { package = "reqwest", version = "0.13" }

[dev-dependencies]
axum = "0.8"

[target.'cfg(unix)'.dependencies]
hyper-util = "0.1"

[dependencies.sqlx]
version = "0.8"
"#;
    let deps = dependencies(manifest);
    let names: Vec<_> = deps.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names, ["serde", "tokio", "my-rt", "hyper-util", "sqlx"]);
    assert!(forbidden("tokio") && forbidden("hyper-util") && forbidden("sqlx"));
    assert!(forbidden("agent_client_protocol"));
    assert!(!forbidden("serde") && !forbidden("tokionic") && !forbidden("uuid"));
}
