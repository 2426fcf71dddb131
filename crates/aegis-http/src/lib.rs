//! The HTTP surface of Aegis: REST + Server-Sent Events under `/v1` (spec `api.md`).
//!
//! * [`router`] / [`serve`]: the axum application over a [`SessionService`].
//! * [`routes`]: the route table (registration and OpenAPI coverage share it).
//! * [`extract`]: extractors whose rejections are the error envelope; [`extract::Caller`] is
//!   the one place authentication plugs in.
//! * [`error`]: the envelope and the service-error → status mapping.
//! * [`sse`]: the event streams. [`openapi`]: the generated OpenAPI 3.1 document.
//!
//! Architecture invariant: this is the only crate that knows HTTP. Handlers parse and validate,
//! call the service, and shape the answer; no session logic lives here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use aegis_core::SessionService;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use tokio::sync::watch;

pub mod auth;
pub mod auth_matrix;
mod auth_routes;
pub mod dashboard;
pub mod error;
pub mod extract;
mod handlers;
pub mod handshake;
mod idempotency;
mod middleware;
pub mod openapi;
mod orchestration;
pub mod routes;
mod schemas;
mod session_extra;
mod sse;

pub use auth::{AuthConfig, AuthSettings};
pub use error::{ApiError, ApiResult};
pub use routes::{HttpMethod, RouteInfo, route_table};

/// Default maximum request body: 1 MiB (api §1.1).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Settings of the HTTP surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest request body (1 MiB) → 413 `PAYLOAD_TOO_LARGE`.
    pub max_body_bytes: usize,
    /// Open SSE connections in total (`sse.maxConnections`, 100) → 503 `SSE_LIMIT`.
    pub sse_max_connections: usize,
    /// Open SSE connections per client IP (`sse.maxPerIp`, 10) → 429 `SSE_LIMIT`.
    pub sse_max_per_ip: usize,
    /// A heartbeat frame after this long without frames (`sse.heartbeatMs`, 15 000).
    pub sse_heartbeat_ms: u64,
    /// Serve `/dashboard/*`; when off those paths answer 404 `FEATURE_DISABLED`.
    pub dashboard_enabled: bool,
    /// Server version (reported by health when the service does not say).
    pub version: String,
    /// Authentication, RBAC, rate limits, CORS (api §5; [`auth`]).
    pub auth: AuthConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            sse_max_connections: 100,
            sse_max_per_ip: 10,
            sse_heartbeat_ms: 15_000,
            dashboard_enabled: true,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            auth: AuthConfig::default(),
        }
    }
}

/// What the application serves.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<SessionService>,
    pub config: HttpConfig,
}

/// Handler state: the application plus what the HTTP layer owns.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub app: AppState,
    pub sse: Arc<sse::SseLimiter>,
    /// Set to `true` when the server shuts down: SSE streams end (the global one after a
    /// `shutdown` frame) so that graceful shutdown does not wait for them.
    pub shutdown: Arc<watch::Sender<bool>>,
    /// Keys, SSE tokens, rate limits, the audit log (the auth middleware's state).
    pub auth: Arc<auth::AuthRuntime>,
}

/// The application router (without connect info, SSE per-IP limits do not apply; [`serve`]
/// provides it).
pub fn router(state: AppState) -> Router {
    let (tx, _rx) = watch::channel(false);
    build(state, Arc::new(tx))
}

fn build(state: AppState, shutdown: Arc<watch::Sender<bool>>) -> Router {
    let config = state.config.clone();
    let ctx = Ctx {
        sse: sse::SseLimiter::new(config.sse_max_connections, config.sse_max_per_ip),
        auth: auth::AuthRuntime::new(&state),
        app: state,
        shutdown,
    };
    let mut router: Router<Ctx> = Router::new();
    for def in routes::definitions() {
        router = router.route(def.info.path, def.router);
    }
    // Idempotency-Key replay runs inside authorization (it needs the principal).
    let router = router.route_layer(axum::middleware::from_fn_with_state(
        ctx.clone(),
        idempotency::middleware,
    ));
    // The one authorization check, around every matched route (api §5).
    let router = router.route_layer(axum::middleware::from_fn_with_state(
        ctx.clone(),
        auth::middleware,
    ));
    finish_router(router, &config)
        .layer(axum::middleware::from_fn_with_state(
            config.auth.clone(),
            auth::cors,
        ))
        .with_state(ctx)
}

/// Apply the conventions to a router whose routes are all added: 404/405 envelopes, the body
/// limit, request ids, version and security headers, the error envelope, panics → 500.
/// Public so that other surfaces (and tests) mounting their own routes get the same behaviour.
pub fn finish_router<S>(router: Router<S>, config: &HttpConfig) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let dashboard_enabled = config.dashboard_enabled;
    router
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::method_not_allowed(method.as_str(), uri.path())
        })
        .fallback(move |method: Method, uri: Uri| async move {
            middleware::not_found(dashboard_enabled, &method, &uri)
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            middleware::ConventionsConfig {
                max_body_bytes: config.max_body_bytes,
            },
            middleware::conventions,
        ))
}

/// Serve until `shutdown` resolves, then shut down gracefully: SSE streams are ended (the
/// global stream sends `shutdown` first), in-flight requests complete.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, _rx) = watch::channel(false);
    let tx = Arc::new(tx);
    let app = build(state, tx.clone());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(true);
    })
    .await
}
