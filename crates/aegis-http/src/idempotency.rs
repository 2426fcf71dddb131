//! `Idempotency-Key` (api §1.6): the first response for (principal, route, key) is stored for
//! 24 h; a repeat with the identical body replays it (`Idempotent-Replayed: true`) with no other
//! effect; a different body is 422 `IDEMPOTENCY_MISMATCH`.

use aegis_core::Principal;
use aegis_store::collections;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Ctx;
use crate::error::ApiError;

const HEADER: &str = "idempotency-key";
const TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Routes that honour the header.
fn applies(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    if matches!(
        path,
        "/v1/sessions" | "/v1/sessions/batch" | "/v1/pipelines"
    ) {
        return true;
    }
    let Some(rest) = path.strip_prefix("/v1/sessions/") else {
        return false;
    };
    matches!(
        rest.split_once('/').map(|(_, action)| action),
        Some("send" | "input" | "prompt" | "command")
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) async fn middleware(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let Some(raw_key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    if !applies(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let key = match raw_key.to_str() {
        Ok(k)
            if (1..=128).contains(&k.len())
                && k.chars().all(|c| c.is_ascii_graphic() || c == ' ') =>
        {
            k.to_owned()
        }
        _ => {
            return ApiError::validation("Idempotency-Key", "1 to 128 printable characters")
                .into_response();
        }
    };
    let principal = req
        .extensions()
        .get::<Principal>()
        .map_or_else(|| "local".to_owned(), |p| p.id.clone());
    let path = req.uri().path().to_owned();
    let (parts, body) = req.into_parts();
    let limit = ctx.app.config.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return ApiError::body_too_large(limit).into_response();
    };
    let body_text = String::from_utf8_lossy(&bytes).into_owned();
    let store = ctx.app.service.shared().store.clone();
    let doc_key = format!("{principal} {path} {key}");
    if let Ok(Some(stored)) = store.get_doc(collections::IDEMPOTENCY, "", &doc_key).await {
        let d = stored.doc;
        let fresh = d["at"].as_u64().is_some_and(|at| at + TTL_MS > now_ms());
        if fresh {
            if d["request"].as_str() != Some(body_text.as_str()) {
                return ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "IDEMPOTENCY_MISMATCH",
                    "this Idempotency-Key was already used with a different body; use a new key",
                )
                .into_response();
            }
            let status = d["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK);
            let mut res =
                Response::new(Body::from(d["response"].as_str().unwrap_or("").to_owned()));
            *res.status_mut() = status;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::error::JSON_CONTENT_TYPE),
            );
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return res;
        }
    }
    let req = Request::from_parts(parts, Body::from(bytes));
    let res = next.run(req).await;
    // Only successful and client-error answers are remembered; a 5xx may succeed on retry.
    if res.status().is_server_error() {
        return res;
    }
    let (parts, body) = res.into_parts();
    let Ok(out) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("response body unreadable").into_response();
    };
    let doc: Value = json!({
        "request": body_text,
        "status": parts.status.as_u16(),
        "response": String::from_utf8_lossy(&out),
        "at": now_ms(),
    });
    if let Err(e) = store
        .put_doc(collections::IDEMPOTENCY, "", &doc_key, &doc, None)
        .await
    {
        tracing::warn!(error = %e, "could not store an idempotent response");
    }
    Response::from_parts(parts, Body::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_routes() {
        let id = "/v1/sessions/3f1c2b9e-5d4a-4c1e-9a7b-2e8f6d0c1a2b";
        assert!(applies(&Method::POST, "/v1/sessions"));
        assert!(applies(&Method::POST, &format!("{id}/prompt")));
        assert!(applies(&Method::POST, &format!("{id}/command")));
        assert!(!applies(&Method::POST, &format!("{id}/approve")));
        assert!(!applies(&Method::GET, "/v1/sessions"));
    }
}
