//! The web dashboard at `/dashboard/` (api §1.1): the static files of `web/` at the repository
//! root, embedded into the binary at compile time (no CDN, no build step), served with a strict
//! Content-Security-Policy.
//!
//! * `/dashboard` → 308 to `/dashboard/`; `/dashboard/` → `index.html`.
//! * `/dashboard/<asset>` → the embedded file; an unknown path whose last segment has no file
//!   extension (`/dashboard/sessions/<id>`) → `index.html` (the client-side router takes over);
//!   an unknown asset (`/dashboard/js/nope.js`) → 404 `NOT_FOUND`.
//! * `dashboardEnabled: false` → 404 `FEATURE_DISABLED` on all of them.
//!
//! These routes are public (the page itself holds no data; the API it calls is authenticated)
//! and are not part of the OpenAPI document (they serve HTML, not the API).
//!
//! A file added under `web/` must be listed in [`ASSETS`]; a unit test fails otherwise.

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Ctx;
use crate::error::ApiError;

/// The policy of every dashboard response: scripts, styles and connections only from this
/// origin, no inline script or style, no framing, and Trusted Types with no policy (the pages
/// never assign HTML strings, so an injected one cannot execute).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
     require-trusted-types-for 'script'; trusted-types 'none'";

struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/", $path)),
        }),*]
    };
}

/// Every file of `web/`, embedded.
static ASSETS: &[Asset] = assets![
    "index.html",
    "favicon.svg",
    "css/app.css",
    "js/api.js",
    "js/app.js",
    "js/dialogs.js",
    "js/dom.js",
    "js/stream.js",
    "js/transcript.js",
    "js/vlist.js",
    "js/pages/audit.js",
    "js/pages/common.js",
    "js/pages/login.js",
    "js/pages/overview.js",
    "js/pages/pipelines.js",
    "js/pages/session.js",
    "js/pages/sessions.js",
    "js/pages/users.js",
];

/// The embedded paths (relative to `/dashboard/`).
pub fn asset_paths() -> Vec<&'static str> {
    ASSETS.iter().map(|a| a.path).collect()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Strong ETags (FNV-1a 64 of the content), computed once.
fn etag(index: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
                for b in a.bytes {
                    hash ^= u64::from(*b);
                    hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
                }
                format!("\"{hash:016x}-{}\"", a.bytes.len())
            })
            .collect()
    });
    tags.get(index).map(String::as_str).unwrap_or("\"0\"")
}

fn disabled() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "FEATURE_DISABLED",
        "The dashboard is disabled (dashboardEnabled: false)",
    )
    .into_response()
}

fn serve(index: usize, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.get(index) else {
        return ApiError::internal("dashboard asset missing").into_response();
    };
    let tag = etag(index);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.bytes).into_response()
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(asset.path)),
    );
    // Not fingerprinted: revalidate every time (cheap with the ETag).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    res
}

fn index_of(path: &str) -> Option<usize> {
    ASSETS.iter().position(|a| a.path == path)
}

fn index_html(headers: &HeaderMap) -> Response {
    match index_of("index.html") {
        Some(i) => serve(i, headers),
        None => ApiError::internal("dashboard index missing").into_response(),
    }
}

/// `GET /dashboard` → `/dashboard/`.
pub(crate) async fn redirect(State(ctx): State<Ctx>) -> Response {
    if !ctx.app.config.dashboard_enabled {
        return disabled();
    }
    let mut res = StatusCode::PERMANENT_REDIRECT.into_response();
    res.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/dashboard/"));
    res
}

/// `GET /dashboard/`.
pub(crate) async fn index(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if !ctx.app.config.dashboard_enabled {
        return disabled();
    }
    index_html(&headers)
}

/// `GET /dashboard/{*path}`: an asset, or `index.html` for a client-side route.
pub(crate) async fn file(
    State(ctx): State<Ctx>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !ctx.app.config.dashboard_enabled {
        return disabled();
    }
    let path = path.trim_start_matches('/');
    if let Some(i) = index_of(path) {
        return serve(i, &headers);
    }
    let last = path.rsplit('/').next().unwrap_or("");
    if last.contains('.') {
        return ApiError::not_found(format!("No dashboard file {path}")).into_response();
    }
    index_html(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path as FsPath, PathBuf};

    fn files(dir: &FsPath, base: &FsPath, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read web dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                files(&p, base, out);
            } else {
                let rel = p.strip_prefix(base).expect("under web");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_of_web_is_embedded_and_nothing_else() {
        let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web");
        let mut on_disk = Vec::new();
        files(&web, &web, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = asset_paths().into_iter().map(str::to_owned).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "web/ and the ASSETS list of dashboard.rs differ"
        );
    }

    #[test]
    fn content_types_and_etags() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("css/app.css"), "text/css; charset=utf-8");
        let a = etag(0);
        assert!(a.starts_with('"') && a.ends_with('"'));
        assert_ne!(etag(0), etag(1));
    }

    #[test]
    fn the_pages_use_no_inline_script_or_html_sinks() {
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.bytes);
            if a.path.ends_with(".html") {
                // Only external module scripts: no inline <script> body, no on* attributes.
                assert!(!text.contains("<script>"), "{}: inline script", a.path);
                assert!(!text.contains(" onclick="), "{}: inline handler", a.path);
                assert!(!text.contains(" style=\""), "{}: inline style", a.path);
            }
            if a.path.ends_with(".js") {
                for sink in [
                    "innerHTML",
                    "outerHTML",
                    "insertAdjacentHTML",
                    "document.write",
                    "eval(",
                ] {
                    assert!(!text.contains(sink), "{}: uses {sink}", a.path);
                }
            }
        }
    }
}
