//! The pure session domain of Aegis.
//!
//! Architecture invariant: this crate does no I/O, reads no clock (time is passed in as epoch
//! milliseconds) and depends on no runtime, web, database or protocol crate (checked by
//! `tests/no_io_dependencies.rs`).
//!
//! * [`ids`]: UUID newtypes for sessions, prompts, turns, permission requests, questions.
//! * [`status`]: [`SessionStatus`] and [`StatusFilter`].
//! * [`machine`]: the state machine, [`transition`]`(state, input, now) -> (state, events)`.
//! * [`permission`]: [`PermissionRequest`] and the option-choice rules.
//! * [`time`]: ISO-8601 rendering and parsing.
//! * [`values`]: tool calls, permission options, usage, stop reasons.
//! * [`auth`]: roles, permissions, `authorize`, the `own` rule, credential formats.
//! * [`audit`]: audit records, RFC 8785 canonical JSON, the HMAC chain and its verifier.

pub mod audit;
pub mod auth;
pub mod ids;
pub mod machine;
pub mod permission;
pub mod status;
pub mod time;
pub mod values;

pub use ids::*;
pub use machine::*;
pub use permission::*;
pub use status::*;
pub use time::*;
pub use values::*;
