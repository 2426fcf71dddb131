//! Test support for Aegis.
//!
//! - [`scripted`]: the scripted ACP agent (`aegis-scripted-agent`).
//! - [`fake_anthropic`]: an in-process fake of the Anthropic Messages API (loopback, SSE).
//! - [`claude`]: helpers to run the real Claude ACP adapter (`agents/`) against that fake.

pub mod bins;
pub mod claude;
pub mod fake_anthropic;
pub mod fault_proxy;
pub mod scripted;

pub use fake_anthropic::FakeAnthropic;
