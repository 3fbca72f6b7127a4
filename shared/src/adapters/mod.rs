//! The shared ports' adapters: SQS and DynamoDB for production, in-memory twins for the local
//! stack and tests.

pub mod dynamodb;
pub mod memory;
pub mod sqs;
