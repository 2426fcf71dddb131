//! The session service: the use cases behind every surface (REST, SSE, MCP, dashboard, CLI).
//!
//! Data flows one way: runtime event → session actor (domain transition + persist + publish)
//! → event bus → subscribers. Each session is owned by one actor task that serialises every
//! command and every agent event; readers use the snapshot the actor publishes after each
//! change, so reads never wait for an agent.

mod actor;
pub mod audit;
pub mod batch;
pub mod bus;
pub mod driver;
pub mod error;
pub mod extra;
pub mod identity;
pub mod keys;
pub mod memory;
pub mod pipeline;
pub mod policy;
pub mod principal;
pub mod ratelimit;
pub mod record;
pub mod service;
pub mod sse_tokens;
pub mod templates;
pub mod transcript;
pub mod workdir;

pub use error::{CoreError, CoreResult, ErrorKind};
pub use principal::{Principal, Role, SYSTEM_TENANT, Via};
pub use service::*;
pub use templates::{starter_template, starter_templates};
