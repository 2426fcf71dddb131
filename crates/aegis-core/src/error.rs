//! Errors of the session service, each carrying its stable API code (api §1.3).
//!
//! The HTTP layer maps [`ErrorKind`] to a status code; nothing here knows HTTP.

use serde_json::Value;

/// Stable error codes of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    ValidationError,
    InvalidSessionId,
    InvalidWorkdir,
    UnknownAgent,
    ModeUnsupported,
    InvalidOption,
    Unauthorized,
    Forbidden,
    SessionForbidden,
    NotFound,
    FeatureDisabled,
    SessionEnded,
    SessionBusy,
    QueueFull,
    DriverHeld,
    NotDriver,
    NoPendingPermission,
    AlreadyResolved,
    RequestExpired,
    NoPendingQuestion,
    ResumeUnsupported,
    HandshakeIncompatible,
    PipelineFinished,
    MemoryFull,
    PayloadTooLarge,
    SessionLimit,
    RateLimited,
    InternalError,
    NotImplemented,
    AgentError,
    AgentUnavailable,
    StoreUnavailable,
    Draining,
    AgentTimeout,
}

impl ErrorKind {
    /// The machine code (`VALIDATION_ERROR`, ...).
    pub fn code(self) -> &'static str {
        use ErrorKind::*;
        match self {
            ValidationError => "VALIDATION_ERROR",
            InvalidSessionId => "INVALID_SESSION_ID",
            InvalidWorkdir => "INVALID_WORKDIR",
            UnknownAgent => "UNKNOWN_AGENT",
            ModeUnsupported => "MODE_UNSUPPORTED",
            InvalidOption => "INVALID_OPTION",
            Unauthorized => "UNAUTHORIZED",
            Forbidden => "FORBIDDEN",
            SessionForbidden => "SESSION_FORBIDDEN",
            NotFound => "NOT_FOUND",
            FeatureDisabled => "FEATURE_DISABLED",
            SessionEnded => "SESSION_ENDED",
            SessionBusy => "SESSION_BUSY",
            QueueFull => "QUEUE_FULL",
            DriverHeld => "DRIVER_HELD",
            NotDriver => "NOT_DRIVER",
            NoPendingPermission => "NO_PENDING_PERMISSION",
            AlreadyResolved => "ALREADY_RESOLVED",
            RequestExpired => "REQUEST_EXPIRED",
            NoPendingQuestion => "NO_PENDING_QUESTION",
            ResumeUnsupported => "RESUME_UNSUPPORTED",
            HandshakeIncompatible => "HANDSHAKE_INCOMPATIBLE",
            PipelineFinished => "PIPELINE_FINISHED",
            MemoryFull => "MEMORY_FULL",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            SessionLimit => "SESSION_LIMIT",
            RateLimited => "RATE_LIMITED",
            InternalError => "INTERNAL_ERROR",
            NotImplemented => "NOT_IMPLEMENTED",
            AgentError => "AGENT_ERROR",
            AgentUnavailable => "AGENT_UNAVAILABLE",
            StoreUnavailable => "STORE_UNAVAILABLE",
            Draining => "DRAINING",
            AgentTimeout => "AGENT_TIMEOUT",
        }
    }
}

/// An error of a service operation: a kind, a human message saying what to do, details.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CoreError {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Option<Value>,
}

impl CoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CoreError {
            kind,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn validation(path: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        CoreError::new(ErrorKind::ValidationError, format!("{path}: {message}"))
            .with_details(serde_json::json!([{ "path": path, "message": message }]))
    }

    pub fn not_found(what: &str) -> Self {
        CoreError::new(ErrorKind::NotFound, format!("{what} not found"))
    }

    pub fn store(e: aegis_store::StoreError) -> Self {
        CoreError::new(
            ErrorKind::StoreUnavailable,
            format!("the state store failed: {e}; retry shortly"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        CoreError::new(ErrorKind::InternalError, message)
    }
}

impl From<aegis_store::StoreError> for CoreError {
    fn from(e: aegis_store::StoreError) -> Self {
        CoreError::store(e)
    }
}

pub type CoreResult<T> = Result<T, CoreError>;
