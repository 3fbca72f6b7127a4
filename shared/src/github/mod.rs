//! GitHub: webhook verification and typed payloads (pure), and the REST client.

pub mod client;
pub mod webhook;
