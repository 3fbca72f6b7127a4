//! One module per subcommand of `shipline`.

pub mod config;
pub mod demo;
pub mod dlq;
pub mod doctor;
pub mod promote;
pub mod rollback;
pub mod serve;
pub mod setup;
pub mod sign;
pub mod status;
