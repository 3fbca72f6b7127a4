//! What can keep a notification from its chats, and the one place where that becomes the
//! batch `Outcome`: per channel while the message is told, then for the message as a whole.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shared::batch::Outcome;
use shared::ports::{Retryable, StateError};
use tracing::warn;

use crate::chat::ChatError;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Neither a `Notification` nor a CloudWatch alarm: no later try can read it.
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    State(#[from] StateError),
    /// Channels that can never take this message, each as `channel: reason`: the chats'
    /// refusals, and anything else a retry cannot fix (a corrupt thread record).
    #[error("{}", undeliverable(.refused, .broken))]
    Undeliverable {
        refused: Vec<String>,
        broken: Vec<String>,
    },
    /// Channels still owed the message; retried after the longest wait a chat asked for.
    #[error("not delivered to every channel yet")]
    Pending { after: Option<Duration> },
}

fn undeliverable(refused: &[String], broken: &[String]) -> String {
    let mut reasons = Vec::new();
    if !refused.is_empty() {
        reasons.push(format!("chat refused the message: {}", refused.join("; ")));
    }
    reasons.extend(broken.iter().cloned());
    reasons.join("; ")
}

impl Retryable for NotifyError {
    fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Unreadable(_) | NotifyError::Undeliverable { .. } => false,
            NotifyError::Chat(e) => e.is_retryable(),
            NotifyError::State(e) => e.is_retryable(),
            NotifyError::Pending { .. } => true,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Chat(e) => e.retry_after(),
            NotifyError::Pending { after } => *after,
            _ => None,
        }
    }
}

impl From<NotifyError> for Outcome {
    fn from(e: NotifyError) -> Self {
        Outcome::failed(&e)
    }
}

/// How one message fares on each of its channels. Within one batch, a chat that asked to wait
/// gets nothing more until then (`blocked`), so that the messages to one chat keep their order.
pub(crate) struct Tally<'a> {
    blocked: &'a Mutex<HashMap<String, Duration>>,
    pending: bool,
    after: Option<Duration>,
    refused: Vec<String>,
    broken: Vec<String>,
}

impl<'a> Tally<'a> {
    pub(crate) fn new(blocked: &'a Mutex<HashMap<String, Duration>>) -> Self {
        Self {
            blocked,
            pending: false,
            after: None,
            refused: Vec::new(),
            broken: Vec::new(),
        }
    }

    /// True when `channel` asked this batch to wait: the message waits too.
    pub(crate) fn waits_for(&mut self, channel: &str) -> bool {
        let wait = self.blocked.lock().unwrap().get(channel).copied();
        if let Some(wait) = wait {
            self.wait(wait);
        }
        wait.is_some()
    }

    fn wait(&mut self, wait: Duration) {
        self.pending = true;
        self.after = Some(self.after.map_or(wait, |w| w.max(wait)));
    }

    /// What `channel` failed with: a wait, a later try, or never.
    pub(crate) fn failed(&mut self, channel: &str, e: NotifyError) {
        if let Some(wait) = e.retry_after() {
            warn!(channel = %channel, wait_secs = wait.as_secs(), "rate limited; the message waits");
            self.blocked
                .lock()
                .unwrap()
                .insert(channel.to_string(), wait);
            self.wait(wait);
        } else if e.is_retryable() {
            warn!(channel = %channel, error = %e, "not delivered; retry later");
            self.pending = true;
        } else if let NotifyError::Chat(ChatError::Rejected(reason)) = e {
            self.refused.push(format!("{channel}: {reason}"));
        } else {
            self.broken.push(format!("{channel}: {e}"));
        }
    }

    /// Done when every channel has the message.
    pub(crate) fn settle(self) -> Result<(), NotifyError> {
        if !self.refused.is_empty() || !self.broken.is_empty() {
            return Err(NotifyError::Undeliverable {
                refused: self.refused,
                broken: self.broken,
            });
        }
        if self.pending {
            return Err(NotifyError::Pending { after: self.after });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_dead_lettered_with_each_channels_reason() {
        let blocked = Mutex::default();
        let mut tally = Tally::new(&blocked);
        tally.failed(
            "team",
            ChatError::Rejected("400 Bad Request: chat not found".into()).into(),
        );
        tally.failed(
            "ops",
            StateError::Corrupt("chat:ops:t: expected a map".into()).into(),
        );
        let outcome = Outcome::from(tally.settle().unwrap_err());
        assert_eq!(
            outcome,
            Outcome::DeadLetter(
                "chat refused the message: team: 400 Bad Request: chat not found; ops: stored record is corrupt: chat:ops:t: expected a map".into()
            )
        );
    }

    #[test]
    fn a_rate_limit_blocks_its_chat_and_the_longest_wait_wins() {
        let blocked = Mutex::default();
        let mut tally = Tally::new(&blocked);
        tally.failed("slack", ChatError::Unavailable("503".into()).into());
        tally.failed(
            "team",
            ChatError::RateLimited {
                retry_after: Duration::from_secs(3),
            }
            .into(),
        );
        let mut next = Tally::new(&blocked);
        assert!(next.waits_for("team"));
        assert!(!next.waits_for("slack"));
        assert_eq!(
            Outcome::from(tally.settle().unwrap_err()),
            Outcome::Wait {
                reason: "not delivered to every channel yet".into(),
                after: Duration::from_secs(3),
            }
        );
    }
}
