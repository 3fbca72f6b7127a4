//! shipline's shared library: the contracts and the plumbing that more than one function uses,
//! and nothing else. The queue messages, the config, the secrets, the state records and their
//! keys, the ports with their AWS adapters and in-memory twins, the GitHub client, the SQS batch
//! runner, HTTP failure classification, signatures, logs. A module that one function alone uses
//! lives in that function's crate. Nothing here reads the environment except `bootstrap`, which
//! each function's `main` calls once (and `tls`, which it asks for the roots: `SSL_CERT_FILE`).

pub mod adapters;
pub mod alerts;
pub mod batch;
pub mod bootstrap;
pub mod config;
pub mod github;
pub mod http;
pub mod ids;
pub mod messages;
pub mod overview;
pub mod ports;
pub mod records;
pub mod secrets;
pub mod signature;
pub mod telemetry;
pub mod tls;
