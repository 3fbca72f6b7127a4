//! Ports: one small trait per capability the functions need, each with a real adapter (AWS,
//! HTTP) and an embedded one (memory, local process) in `adapters`.

use std::time::Duration;

use async_trait::async_trait;

/// Whether trying the same thing again later can help. SQS handlers use it to decide between a
/// retry (the message becomes visible again) and a dead letter.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}

// ---------------------------------------------------------------------------------------------
// Queue

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
}

// ---------------------------------------------------------------------------------------------
// State store

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

// ---------------------------------------------------------------------------------------------
// Clock

/// Time, so that tests can hold it still.
pub trait Clock: Send + Sync {
    fn now(&self) -> time::OffsetDateTime;

    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    fn rfc3339(&self) -> String {
        self.now()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a current time formats as RFC 3339")
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

// ---------------------------------------------------------------------------------------------
// GitHub

/// What shipline asks of GitHub: the REST client in production, a console printer in the
/// local demo.
#[async_trait]
pub trait GitHub: Send + Sync {
    /// Sets a commit status. `installation` is the GitHub App installation that sent the
    /// webhook, when known.
    async fn set_status(
        &self,
        repo: &str,
        sha: &str,
        status: &crate::github::client::CommitStatus,
        installation: Option<u64>,
    ) -> Result<(), crate::github::client::GitHubError>;

    /// The commit a branch points at now.
    async fn branch_head(
        &self,
        repo: &str,
        branch: &str,
        installation: Option<u64>,
    ) -> Result<String, crate::github::client::GitHubError>;

    /// How `head` relates to `base`: `ahead`, `behind`, `identical` or `diverged`.
    async fn compare(
        &self,
        repo: &str,
        base: &str,
        head: &str,
        installation: Option<u64>,
    ) -> Result<String, crate::github::client::GitHubError>;

    /// Creates a deployment of `sha` to `environment`; returns its id.
    async fn create_deployment(
        &self,
        repo: &str,
        deployment: &crate::github::client::NewDeployment,
        installation: Option<u64>,
    ) -> Result<u64, crate::github::client::GitHubError>;

    async fn set_deployment_status(
        &self,
        repo: &str,
        deployment_id: u64,
        status: &crate::github::client::DeploymentStatus,
        installation: Option<u64>,
    ) -> Result<(), crate::github::client::GitHubError>;
}

// ---------------------------------------------------------------------------------------------
// Redelivery

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

// ---------------------------------------------------------------------------------------------
// Chat

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatKind {
    Telegram,
    Slack,
    Discord,
    Console,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat rate limit; retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("chat unavailable: {0}")]
    Unavailable(String),
    /// The chat refused the message itself (a 4xx other than 429): never retried.
    #[error("chat refused the message: {0}")]
    Rejected(String),
    /// The message to edit no longer exists (or cannot be edited): post a new one.
    #[error("the message to edit is gone")]
    MessageGone,
}

/// One chat destination. Text comes rendered for its kind.
#[async_trait]
pub trait ChatChannel: Send + Sync {
    fn kind(&self) -> ChatKind;
    /// Posts a message; returns its id when the channel can edit it later.
    async fn post(&self, text: &str) -> Result<Option<String>, ChatError>;
    /// Replaces the text of a message posted earlier.
    async fn edit(&self, id: &str, text: &str) -> Result<(), ChatError>;
}
