//! Implementations of the ports: AWS and HTTP adapters for production, embedded ones for the
//! local stack and tests.

pub mod chat;
pub mod codebuild;
pub mod deploy;
pub mod dynamodb;
pub mod local;
pub mod memory;
pub mod sqs;
