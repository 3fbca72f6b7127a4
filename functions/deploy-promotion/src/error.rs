//! The one error of deploy-promotion, and the one place it becomes a message's batch `Outcome`.

use std::time::Duration;

use shared::batch::Outcome;
use shared::messages::MessageError;
use shared::ports::{GitHubError, Retryable, StateError};

use crate::deployer::DeployError;

/// How long to wait before looking again at a release the budget did not see to its end: a
/// Heroku release phase usually takes tens of seconds.
const PENDING_RELEASE_WAIT: Duration = Duration::from_secs(15);

/// Why a message could not be handled now. Whether a retry can help is the failing service's
/// call; a message that cannot be read never gets better. Deliberate decisions (skip: older
/// than live; deploy failed, production unchanged) are not errors: they are `Ok` outcomes.
#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    #[error("state store: {0}")]
    State(#[from] StateError),
    #[error("GitHub: {0}")]
    GitHub(#[from] GitHubError),
    #[error("deploy target: {0}")]
    Deploy(#[from] DeployError),
    /// Still releasing when this invocation's follow budget ran out: a retry follows it on.
    #[error("release {0} still pending")]
    StillPending(String),
    /// Neither a deploy nor a rollback this version reads.
    #[error("{0}")]
    Unreadable(#[from] MessageError),
}

impl Retryable for PromotionError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::State(e) => e.is_retryable(),
            Self::GitHub(e) => e.is_retryable(),
            Self::Deploy(e) => e.is_retryable(),
            Self::StillPending(_) => true,
            Self::Unreadable(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::GitHub(e) => e.retry_after(),
            Self::Deploy(e) => e.retry_after(),
            Self::StillPending(_) => Some(PENDING_RELEASE_WAIT),
            Self::State(_) | Self::Unreadable(_) => None,
        }
    }
}

impl From<PromotionError> for Outcome {
    fn from(e: PromotionError) -> Self {
        Outcome::failed(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_target_waits_as_long_as_it_asked() {
        let limited = PromotionError::from(DeployError::RateLimited {
            retry_after: Duration::from_secs(60),
        });
        assert_eq!(
            Outcome::from(limited),
            Outcome::Wait {
                reason: "deploy target: deploy target rate limit; retry after 60s".into(),
                after: Duration::from_secs(60),
            }
        );
    }

    #[test]
    fn a_release_still_pending_is_looked_at_again_later() {
        assert_eq!(
            Outcome::from(PromotionError::StillPending("rel-43".into())),
            Outcome::Wait {
                reason: "release rel-43 still pending".into(),
                after: PENDING_RELEASE_WAIT,
            }
        );
    }

    #[test]
    fn an_unreadable_message_and_a_corrupt_record_are_dead_lettered() {
        let unreadable = PromotionError::from(MessageError::MissingVersion);
        assert_eq!(
            Outcome::from(unreadable),
            Outcome::DeadLetter("message has no `v` field".into())
        );
        let corrupt = PromotionError::from(StateError::Corrupt("live:t: x".into()));
        assert!(matches!(Outcome::from(corrupt), Outcome::DeadLetter(_)));
        let busy = PromotionError::from(StateError::Unavailable("throttled".into()));
        assert!(matches!(Outcome::from(busy), Outcome::Retry { .. }));
    }
}
