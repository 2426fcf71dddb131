//! The error envelope (api §1.3) and the mapping of service errors to HTTP statuses.
//!
//! Architecture invariant: every error response of the server is rendered by
//! [`ApiError::render`], so every one has the same `{code, message, requestId, error, details?}`
//! shape. Handlers and extractors return an [`ApiError`]; its `IntoResponse` only records the
//! error in the response extensions, and the conventions middleware (which knows the request id)
//! renders the body. Errors produced outside our code (a panic, an axum default) are turned into
//! the envelope there too.

use std::borrow::Cow;

use aegis_api_types::ErrorBody;
use aegis_core::{CoreError, ErrorKind};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `Retry-After` of 429 `SESSION_LIMIT` (api §1.7).
pub const SESSION_LIMIT_RETRY_AFTER_SECS: u64 = 30;
/// `Retry-After` of 503 `STORE_UNAVAILABLE` / `DRAINING`.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;
/// `Retry-After` of `SSE_LIMIT` (api §4.6).
pub const SSE_LIMIT_RETRY_AFTER_SECS: u64 = 5;

/// `application/json; charset=utf-8`, the content type of every JSON response (api §1.1).
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// An error answer of the API: status, stable code, human message, structured details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    /// Structured context (boxed: keeps `Result<_, ApiError>` small).
    pub details: Option<Box<Value>>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// One issue of a `VALIDATION_ERROR`: `{path, message}`.
pub fn issue(path: &str, message: impl Into<String>) -> Value {
    json!({ "path": path, "message": message.into() })
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 400 `VALIDATION_ERROR` with one issue.
    pub fn validation(path: &str, message: impl Into<String>) -> Self {
        Self::validation_issues(vec![issue(path, message)])
    }

    /// 400 `VALIDATION_ERROR` with the given `[{path, message}]` issues; the message names the
    /// first one.
    pub fn validation_issues(issues: Vec<Value>) -> Self {
        let message = match issues.first() {
            Some(first) => {
                let path = first.get("path").and_then(Value::as_str).unwrap_or("");
                let msg = first.get("message").and_then(Value::as_str).unwrap_or("");
                let more = if issues.len() > 1 {
                    format!(" (and {} more)", issues.len() - 1)
                } else {
                    String::new()
                };
                if path.is_empty() {
                    format!("Invalid request: {msg}{more}")
                } else {
                    format!("Invalid request: {path}: {msg}{more}")
                }
            }
            None => "Invalid request".to_owned(),
        };
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
            .with_details(Value::Array(issues))
    }

    /// 413 `PAYLOAD_TOO_LARGE` for one field over its limit.
    pub fn field_too_large(path: &str, limit: usize, actual: usize) -> Self {
        let message = format!("must be at most {limit} characters (got {actual})");
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("{path} is too large: {message}"),
        )
        .with_details(json!([{ "path": path, "message": message, "limit": limit }]))
    }

    /// 413 `PAYLOAD_TOO_LARGE` for the whole body.
    pub fn body_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("Request body is larger than the limit of {limit} bytes"),
        )
        .with_details(json!({ "limitBytes": limit }))
    }

    /// 415 `UNSUPPORTED_MEDIA_TYPE`.
    pub fn unsupported_media_type(found: Option<&str>) -> Self {
        let message = match found {
            Some(ct) => format!(
                "Request body must be JSON (Content-Type: application/json), got Content-Type: {ct}"
            ),
            None => "Request body must be JSON: set Content-Type: application/json".to_owned(),
        };
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            message,
        )
    }

    /// 400 `INVALID_SESSION_ID`.
    pub fn invalid_session_id(raw: &str) -> Self {
        let shown: String = raw.chars().take(64).collect();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_SESSION_ID",
            format!("Session id must be a UUID, got \"{shown}\""),
        )
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 405 `METHOD_NOT_ALLOWED` (the spec's code table has no row for 405; this code is ours).
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("Method {method} is not allowed on {path}"),
        )
    }

    /// 500 `INTERNAL_ERROR`.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }

    /// The envelope body of this error for the given request id.
    pub fn body(&self, request_id: &str) -> ErrorBody {
        ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
            request_id: request_id.to_owned(),
            error: self.message.clone(),
            details: self.details.as_deref().cloned(),
        }
    }

    /// The complete response: status, `Retry-After`, JSON envelope.
    pub fn render(&self, request_id: &str) -> Response {
        let bytes = match serde_json::to_vec(&self.body(request_id)) {
            Ok(bytes) => bytes,
            // Serialising strings and a JSON value cannot fail; keep a valid envelope anyway.
            Err(_) => br#"{"code":"INTERNAL_ERROR","message":"error rendering failed","requestId":"","error":"error rendering failed"}"#.to_vec(),
        };
        let mut res = Response::new(Body::from(bytes));
        *res.status_mut() = self.status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }

    /// The envelope for an error response that did not come from our code (axum defaults,
    /// a panic): the code follows the status.
    pub fn from_status(status: StatusCode, text: &str) -> Self {
        let code = match status.as_u16() {
            400 => "VALIDATION_ERROR",
            401 => "UNAUTHORIZED",
            403 => "FORBIDDEN",
            404 => "NOT_FOUND",
            405 => "METHOD_NOT_ALLOWED",
            409 => "CONFLICT",
            413 => "PAYLOAD_TOO_LARGE",
            415 => "UNSUPPORTED_MEDIA_TYPE",
            429 => "RATE_LIMITED",
            501 => "NOT_IMPLEMENTED",
            503 => "SERVICE_UNAVAILABLE",
            504 => "TIMEOUT",
            _ if status.is_server_error() => "INTERNAL_ERROR",
            _ => "ERROR",
        };
        let message = if text.trim().is_empty() {
            status
                .canonical_reason()
                .unwrap_or("Request failed")
                .to_owned()
        } else {
            text.trim().to_owned()
        };
        ApiError::new(status, code, message)
    }
}

/// The HTTP status of a service error kind (api §1.3).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    use ErrorKind::*;
    match kind {
        ValidationError | InvalidSessionId | InvalidWorkdir | UnknownAgent | ModeUnsupported
        | InvalidOption => StatusCode::BAD_REQUEST,
        Unauthorized => StatusCode::UNAUTHORIZED,
        Forbidden | SessionForbidden => StatusCode::FORBIDDEN,
        NotFound | FeatureDisabled => StatusCode::NOT_FOUND,
        SessionEnded
        | SessionBusy
        | QueueFull
        | DriverHeld
        | NotDriver
        | NoPendingPermission
        | AlreadyResolved
        | RequestExpired
        | NoPendingQuestion
        | ResumeUnsupported
        | HandshakeIncompatible
        | PipelineFinished
        | MemoryFull => StatusCode::CONFLICT,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        SessionLimit | RateLimited => StatusCode::TOO_MANY_REQUESTS,
        InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        NotImplemented => StatusCode::NOT_IMPLEMENTED,
        AgentError => StatusCode::BAD_GATEWAY,
        AgentUnavailable | StoreUnavailable | Draining => StatusCode::SERVICE_UNAVAILABLE,
        AgentTimeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// The `Retry-After` seconds a service error kind carries, if any.
pub fn retry_after_of(kind: ErrorKind) -> Option<u64> {
    match kind {
        ErrorKind::SessionLimit => Some(SESSION_LIMIT_RETRY_AFTER_SECS),
        ErrorKind::StoreUnavailable | ErrorKind::Draining => Some(UNAVAILABLE_RETRY_AFTER_SECS),
        _ => None,
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError {
            status: status_of(e.kind),
            code: Cow::Borrowed(e.kind.code()),
            message: e.message,
            details: e.details.map(Box::new),
            retry_after: retry_after_of(e.kind),
        }
    }
}

impl IntoResponse for ApiError {
    /// An empty response carrying the error; the conventions middleware renders the envelope
    /// with the request id. Without the middleware the envelope is rendered with an empty id.
    fn into_response(self) -> Response {
        let mut res = self.render("");
        res.extensions_mut().insert(PendingError(self));
        res
    }
}

/// Marker left in response extensions for the conventions middleware.
#[derive(Debug, Clone)]
pub(crate) struct PendingError(pub ApiError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_the_documented_status() {
        use ErrorKind::*;
        let cases = [
            (ValidationError, 400),
            (InvalidSessionId, 400),
            (InvalidWorkdir, 400),
            (UnknownAgent, 400),
            (ModeUnsupported, 400),
            (InvalidOption, 400),
            (Unauthorized, 401),
            (Forbidden, 403),
            (SessionForbidden, 403),
            (NotFound, 404),
            (FeatureDisabled, 404),
            (SessionEnded, 409),
            (SessionBusy, 409),
            (QueueFull, 409),
            (DriverHeld, 409),
            (NotDriver, 409),
            (NoPendingPermission, 409),
            (AlreadyResolved, 409),
            (RequestExpired, 409),
            (NoPendingQuestion, 409),
            (ResumeUnsupported, 409),
            (HandshakeIncompatible, 409),
            (PipelineFinished, 409),
            (MemoryFull, 409),
            (PayloadTooLarge, 413),
            (SessionLimit, 429),
            (RateLimited, 429),
            (InternalError, 500),
            (NotImplemented, 501),
            (AgentError, 502),
            (AgentUnavailable, 503),
            (StoreUnavailable, 503),
            (Draining, 503),
            (AgentTimeout, 504),
        ];
        for (kind, status) in cases {
            assert_eq!(status_of(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn core_errors_keep_code_message_details_and_retry_after() {
        let e: ApiError = CoreError::new(ErrorKind::SessionLimit, "too many sessions")
            .with_details(json!({"max": 3}))
            .into();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code, "SESSION_LIMIT");
        assert_eq!(e.retry_after, Some(30));
        let body = e.body("rid");
        assert_eq!(body.request_id, "rid");
        assert_eq!(body.error, "too many sessions");
        assert_eq!(body.details, Some(json!({"max": 3})));
        let res = e.render("rid");
        assert_eq!(res.headers()[header::RETRY_AFTER], "30");

        let e: ApiError = CoreError::new(ErrorKind::Draining, "shutting down").into();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after, Some(5));
        let e: ApiError = CoreError::new(ErrorKind::AgentUnavailable, "no agent").into();
        assert_eq!(e.retry_after, None);
    }

    #[test]
    fn validation_message_names_the_first_issue() {
        let e = ApiError::validation_issues(vec![issue("page", "must be ≥ 1"), issue("x", "y")]);
        assert_eq!(e.message, "Invalid request: page: must be ≥ 1 (and 1 more)");
        assert_eq!(
            e.details.as_ref().map(|d| d[0]["path"].clone()),
            Some(json!("page"))
        );
    }
}
