//! The `StateStore` port: a small key-value store with versions, conditional writes and expiry.

use async_trait::async_trait;

use super::Retryable;

/// A stored value with its version, for optimistic concurrency.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub value: serde_json::Value,
    /// Starts at 1 and grows by one on every write.
    pub version: u64,
    /// Unix seconds after which the record no longer exists.
    pub expires_at: Option<i64>,
}

/// What must hold for a write to happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever is there.
    None,
    /// Only if there is no record (or only an expired one).
    Absent,
    /// Only if the record is at this version.
    Version(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The precondition did not hold: someone else wrote first.
    #[error("the record changed concurrently")]
    ConditionFailed,
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

impl Retryable for StateError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            StateError::Unavailable(_) | StateError::ConditionFailed
        )
    }
}

/// A small key-value store with conditional writes and expiry: delivery dedup, running builds,
/// live releases, chat message ids, alert throttles. Expired records read as absent even
/// before the backing store deletes them (DynamoDB's TTL sweep can take days).
#[async_trait]
pub trait StateStore: Send + Sync {
    async fn get(&self, key: &str, now: i64) -> Result<Option<Record>, StateError>;

    /// Reads several records, answered in the order of `keys` (a page of them in one round trip
    /// where the store can).
    async fn get_many(&self, keys: &[String], now: i64) -> Result<Vec<Option<Record>>, StateError> {
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            records.push(self.get(key, now).await?);
        }
        Ok(records)
    }

    /// Writes `value` if `precondition` holds at `now`, and returns the new version.
    async fn put(
        &self,
        key: &str,
        value: serde_json::Value,
        precondition: Precondition,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<u64, StateError>;

    async fn delete(&self, key: &str) -> Result<(), StateError>;
}
