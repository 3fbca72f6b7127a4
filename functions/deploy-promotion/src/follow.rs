//! Following a release to its end within one invocation, for deploys and rollbacks alike.

use std::time::Duration;

use shared::config::DeployRule;

use crate::Deps;
use crate::deployer::{DeployError, Release};
use crate::error::PromotionError;

/// How long one invocation follows a release before handing the rest to a later retry.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    pub interval: Duration,
    pub budget: Duration,
}

impl Default for Follow {
    fn default() -> Self {
        // Within the function's 150 s timeout, with room for the calls around it.
        Self {
            interval: Duration::from_secs(3),
            budget: Duration::from_secs(100),
        }
    }
}

/// Asks the target about `first` while it is pending, until it is not or the budget is spent
/// (then it is still `Pending`). A refusal is a release that failed: the target said no, and
/// the previous release is still serving.
pub(crate) async fn follow(
    deps: &Deps,
    rule: &DeployRule,
    first: Result<Release, DeployError>,
) -> Result<Release, PromotionError> {
    let started = tokio::time::Instant::now();
    let mut release = first;
    while let Ok(Release::Pending { id, .. }) = &release {
        if started.elapsed() >= deps.follow.budget {
            break;
        }
        tokio::time::sleep(deps.follow.interval).await;
        release = deps.deployer.status(rule, id).await;
    }
    match release {
        Err(e @ DeployError::Refused(_)) => Ok(Release::Failed {
            id: None,
            reason: e.to_string(),
        }),
        other => Ok(other?),
    }
}
