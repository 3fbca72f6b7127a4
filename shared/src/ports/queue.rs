//! The `Queue` port (sending; receiving is Lambda's event source mapping) and `Redelivery`,
//! which puts a received message back for later.

use std::time::Duration;

use async_trait::async_trait;

use super::Retryable;

/// One message to send. FIFO queues need `group_id`; `dedup_id` makes a resend within five
/// minutes a no-op on FIFO queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    /// Standard queues only: deliver no sooner than this.
    pub delay: Option<Duration>,
    /// Why the message is being dead-lettered (a message attribute, `shipline_reason`).
    pub reason: Option<String>,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            group_id: None,
            dedup_id: None,
            delay: None,
            reason: None,
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn fifo(
        body: impl Into<String>,
        group_id: impl Into<String>,
        dedup_id: impl Into<String>,
    ) -> Self {
        Self {
            body: body.into(),
            group_id: Some(group_id.into()),
            dedup_id: Some(dedup_id.into()),
            delay: None,
            reason: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("queue refused the message: {0}")]
    Rejected(String),
}

impl Retryable for QueueError {
    fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

/// Queues by the name a person knows them by (the stack's dead-letter queues).
pub type NamedQueues = Vec<(String, std::sync::Arc<dyn Queue>)>;

/// A queue to send to. Receiving is Lambda's job (event source mappings), or the local
/// runner's.
#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError>;

    /// Opens the connection `send` will use, without sending anything (a cold start's TLS
    /// handshake belongs in the init phase, not in the first request's answer).
    async fn warm(&self) -> Result<(), QueueError> {
        Ok(())
    }

    /// How many messages wait to be received (SQS's approximate count), where the queue can
    /// tell.
    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        Ok(None)
    }
}

/// Puts a received message back for later: on SQS, a new visibility timeout, so that a rate
/// limit's `Retry-After` is honoured instead of retrying at the queue's fixed pace.
#[async_trait]
pub trait Redelivery: Send + Sync {
    /// `source_arn` is the queue's ARN (`eventSourceARN`), `receipt` the receipt handle.
    async fn redeliver_after(
        &self,
        source_arn: &str,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError>;
}
