//! The conventions every response follows (api §1.1, §1.3): request id, API version header,
//! security headers, the error envelope, JSON charset, panics turned into 500 envelopes.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::FutureExt;

use crate::error::{ApiError, JSON_CONTENT_TYPE, PendingError};
use crate::extract::{BodyLimit, RequestId, valid_request_id};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_AEGIS_API_VERSION: HeaderName = HeaderName::from_static("x-aegis-api-version");

/// What the conventions middleware needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConventionsConfig {
    pub max_body_bytes: usize,
}

pub(crate) async fn conventions(
    State(config): State<ConventionsConfig>,
    mut req: Request,
    next: Next,
) -> Response {
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    req.extensions_mut()
        .insert(BodyLimit(config.max_body_bytes));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();

    let res = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(res) => res,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(request_id = %request_id, %method, %path, panic = %what, "handler panicked");
            ApiError::internal(format!(
                "Internal error; the server log has details under request id {request_id}"
            ))
            .into_response_pending()
        }
    };
    let res = finalize(res, &request_id).await;
    tracing::debug!(
        request_id = %request_id,
        %method,
        %path,
        status = res.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    res
}

impl ApiError {
    fn into_response_pending(self) -> Response {
        axum::response::IntoResponse::into_response(self)
    }
}

fn content_type_of(res: &Response) -> String {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Render pending errors with the request id, wrap foreign errors into the envelope, and add
/// the convention headers.
async fn finalize(mut res: Response, request_id: &str) -> Response {
    if let Some(PendingError(err)) = res.extensions_mut().remove::<PendingError>() {
        log_error(&err, request_id);
        let rendered = err.render(request_id);
        let (parts, _) = res.into_parts();
        let (_, body) = rendered.into_parts();
        res = Response::from_parts(parts, body);
    } else if res.status().as_u16() >= 400 {
        let ct = content_type_of(&res);
        if !ct.starts_with("application/json") && !ct.starts_with("text/event-stream") {
            // An error that did not come from our code (axum default, layer): envelope it.
            let status = res.status();
            let (parts, body) = res.into_parts();
            let text = axum::body::to_bytes(body, 4096)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let err = ApiError::from_status(status, &text);
            log_error(&err, request_id);
            let rendered = err.render(request_id);
            let (rparts, body) = rendered.into_parts();
            let mut parts = parts;
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.extend(rparts.headers);
            res = Response::from_parts(parts, body);
        }
    }

    let ct = content_type_of(&res);
    let headers = res.headers_mut();
    if ct == "application/json" {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    headers.insert(X_AEGIS_API_VERSION, HeaderValue::from_static("1"));
    if !ct.starts_with("text/event-stream") {
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        );
    }
    res
}

fn log_error(err: &ApiError, request_id: &str) {
    if err.status.is_server_error() {
        tracing::error!(request_id = %request_id, code = %err.code, message = %err.message, "request failed");
    } else {
        tracing::debug!(request_id = %request_id, code = %err.code, message = %err.message, "request rejected");
    }
}

/// Fallback for unknown paths: 404 `NOT_FOUND` (or 404 `FEATURE_DISABLED` under `/dashboard`
/// while the dashboard is switched off).
pub(crate) fn not_found(dashboard_enabled: bool, method: &Method, uri: &Uri) -> ApiError {
    let path = uri.path();
    if !dashboard_enabled && (path == "/dashboard" || path.starts_with("/dashboard/")) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "FEATURE_DISABLED",
            "The dashboard is disabled (dashboardEnabled: false)",
        );
    }
    ApiError::not_found(format!("No route for {method} {path}"))
}
