//! GitHub: webhook verification and typed payloads (pure). The REST client comes with
//! build-dispatch.

pub mod webhook;
