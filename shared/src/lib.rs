//! shipline's shared library: what two or more functions need. Pure logic (verification,
//! config, contracts) sits beside the ports and their adapters; nothing here reads the
//! environment except `bootstrap`, which each function's `main` calls once.

pub mod adapters;
pub mod batch;
pub mod bootstrap;
pub mod codebuild;
pub mod config;
pub mod deploy;
pub mod github;
pub mod messages;
pub mod ports;
pub mod secrets;
pub mod sentry;
pub mod telemetry;
