//! The chat port, one adapter a chat service: Telegram (Bot API), Slack and Discord incoming
//! webhooks. Each takes text already rendered for its kind (see `render`).

pub mod telegram;
pub mod webhooks;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use shared::http::{self, Failure};
use shared::messages::ChatButton;
use shared::ports::Retryable;

pub use telegram::{TELEGRAM_PUBLIC_API, Telegram};
pub use webhooks::{Discord, Slack};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatKind {
    Telegram,
    Slack,
    Discord,
    /// Plain text, for a terminal (the local stack's console channel).
    Plain,
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

impl Retryable for ChatError {
    /// Only a refusal is final; a message that is gone is posted anew on the next try.
    fn is_retryable(&self) -> bool {
        !matches!(self, ChatError::Rejected(_))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ChatError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// One chat destination. Text comes rendered for its kind.
#[async_trait]
pub trait ChatChannel: Send + Sync {
    fn kind(&self) -> ChatKind;
    /// Posts a message, with buttons under it where the channel has them (Telegram's inline
    /// keyboard; elsewhere the text alone); returns its id when the channel can edit it later.
    async fn post_with(
        &self,
        text: &str,
        buttons: &[ChatButton],
    ) -> Result<Option<String>, ChatError>;

    /// Replaces the text of a message posted earlier, and its buttons (none removes them)
    /// where the channel has them.
    async fn edit_with(
        &self,
        id: &str,
        text: &str,
        buttons: &[ChatButton],
    ) -> Result<(), ChatError>;

    /// Posts a message without buttons.
    async fn post(&self, text: &str) -> Result<Option<String>, ChatError> {
        self.post_with(text, &[]).await
    }

    /// Edits a message, leaving it no buttons.
    async fn edit(&self, id: &str, text: &str) -> Result<(), ChatError> {
        self.edit_with(id, text, &[]).await
    }
}

fn unavailable(e: reqwest::Error) -> ChatError {
    ChatError::Unavailable(http::transport_error(e))
}

/// The status and body of an answer, and the `Retry-After` it carried.
async fn read(
    response: reqwest::Response,
) -> Result<(StatusCode, Option<Duration>, String), ChatError> {
    let status = response.status();
    let retry_after = http::retry_after(response.headers());
    let body = response.text().await.map_err(unavailable)?;
    Ok((status, retry_after, body))
}

/// 429 → wait; 5xx → later; any other failure is the request's fault and is never retried.
fn classify(status: StatusCode, retry_after: Option<Duration>, reason: String) -> ChatError {
    match http::classify(status, retry_after, Duration::from_secs(5)) {
        Failure::RateLimited(retry_after) => ChatError::RateLimited { retry_after },
        Failure::Unavailable => ChatError::Unavailable(format!("{status}: {reason}")),
        Failure::Rejected => ChatError::Rejected(format!("{status}: {reason}")),
    }
}
