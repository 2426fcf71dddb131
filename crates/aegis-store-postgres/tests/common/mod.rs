//! Helpers shared by the integration tests.

pub use aegis_testkit::fault_proxy as proxy;
