//! The one error of build-dispatch, and the one place it becomes a message's batch `Outcome`.

use shared::batch::Outcome;
use shared::ids::BuildId;
use shared::ports::{GitHubError, QueueError, Retryable, StateError};

use crate::codebuild::BuildsError;

/// Why a message could not be handled now. Whether a retry can help is the failing service's
/// call; a message that cannot be read never gets better.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("state store: {0}")]
    State(#[from] StateError),
    #[error("GitHub: {0}")]
    GitHub(#[from] GitHubError),
    #[error("CodeBuild: {0}")]
    Builds(#[from] BuildsError),
    #[error("deploy queue: {0}")]
    DeployQueue(#[from] QueueError),
    /// The request says it started this build, but the run record is not (yet) readable.
    #[error("run record of {0} missing")]
    RunMissing(BuildId),
    /// Neither a `BuildRequest` this version reads nor a CodeBuild event.
    #[error("{0}")]
    Unreadable(String),
}

impl Retryable for DispatchError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::State(e) => e.is_retryable(),
            Self::GitHub(e) => e.is_retryable(),
            Self::Builds(e) => e.is_retryable(),
            Self::DeployQueue(e) => e.is_retryable(),
            Self::RunMissing(_) => true,
            Self::Unreadable(_) => false,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::GitHub(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl From<DispatchError> for Outcome {
    fn from(e: DispatchError) -> Self {
        Outcome::failed(&e)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_rate_limit_waits_as_long_as_github_asked_and_garbage_is_dead_lettered() {
        let limited = DispatchError::from(GitHubError::RateLimited {
            retry_after: Duration::from_secs(30),
        });
        assert_eq!(
            Outcome::from(limited),
            Outcome::Wait {
                reason: "GitHub: GitHub rate limit; retry after 30s".into(),
                after: Duration::from_secs(30),
            }
        );
        let busy = DispatchError::from(StateError::Unavailable("throttled".into()));
        assert!(matches!(Outcome::from(busy), Outcome::Retry { .. }));
        let corrupt = DispatchError::from(StateError::Corrupt("builds:running: x".into()));
        assert!(matches!(Outcome::from(corrupt), Outcome::DeadLetter(_)));
        assert_eq!(
            Outcome::from(DispatchError::Unreadable("message is not JSON: x".into())),
            Outcome::DeadLetter("message is not JSON: x".into())
        );
    }
}
