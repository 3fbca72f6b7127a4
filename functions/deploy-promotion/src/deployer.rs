//! The deploy port: release an artifact to a target, follow the release to its end, roll back.
//! Adapters: the Heroku Platform API and a signed deploy hook (`targets`); the local command
//! of the demo lives in the `shipline` command.

use std::time::Duration;

use async_trait::async_trait;

use shared::config::DeployRule;
use shared::messages::DeployRequest;
use shared::ports::Retryable;

/// Where a release stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Live. `id` names the release for a rollback; `version` is what people call it (`v42`).
    Live {
        id: String,
        version: Option<String>,
        url: Option<String>,
    },
    /// Still going (a Heroku release phase running).
    Pending { id: String, version: Option<String> },
    /// Did not go live; the previous release is still serving.
    Failed { id: Option<String>, reason: String },
}

/// A release as a target names it: the id its API takes, and what people call it (`v41`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub id: String,
    pub version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("deploy target rate limit; retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("deploy target unavailable: {0}")]
    Unavailable(String),
    /// The target refused (bad credentials, unknown app, missing image): trying again cannot help.
    #[error("{0}")]
    Refused(String),
    /// The release was asked for and may have been made, but the target did not confirm it (its
    /// answer was lost, or reading the release back failed): a retry must look for it
    /// (`Deployer::released_since`) rather than release a second time, which would run a
    /// release phase's migrations twice. `since` marks the target's newest release before.
    #[error("release requested but not confirmed: {reason}")]
    Unconfirmed {
        reason: String,
        since: Option<String>,
    },
}

impl Retryable for DeployError {
    fn is_retryable(&self) -> bool {
        !matches!(self, DeployError::Refused(_))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            DeployError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

#[async_trait]
pub trait Deployer: Send + Sync {
    /// Starts releasing `request` to the rule's target.
    async fn release(
        &self,
        rule: &DeployRule,
        request: &DeployRequest,
    ) -> Result<Release, DeployError>;
    /// Where release `id` stands now. By default, that of a target that answers a release
    /// when it is done (a deploy hook, a command): what it accepted is live.
    async fn status(&self, _rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        Ok(Release::Live {
            id: id.to_string(),
            version: None,
            url: None,
        })
    }
    /// After `release` answered `Unconfirmed`: the release it made, the first after `since`, or
    /// `None` when there is none, so that releasing again is safe.
    async fn released_since(
        &self,
        _rule: &DeployRule,
        _since: Option<&str>,
    ) -> Result<Option<Release>, DeployError> {
        Err(DeployError::Refused(
            "this target cannot list its releases".into(),
        ))
    }
    /// The release `asked` names (an id, or a version such as `v41`) as the target knows it,
    /// checked that it can still be rolled back to. By default, as asked.
    async fn rollback_candidate(
        &self,
        _rule: &DeployRule,
        asked: &str,
    ) -> Result<Named, DeployError> {
        Ok(Named {
            id: asked.to_string(),
            version: None,
        })
    }
    /// Releases the code of an earlier release again.
    async fn rollback(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError>;
}
