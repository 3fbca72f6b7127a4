//! What people see of a deploy: its GitHub Deployment and statuses, and the chat's messages.

use serde_json::json;
use shared::ids::Sha;
use shared::messages::{self, DeployRequest, Facts, Notification, NotificationKind};
use shared::ports::{DeploymentState, DeploymentStatus, NewDeployment, OutgoingMessage, Retryable};
use tracing::warn;

use crate::Deps;
use crate::error::PromotionError;

/// Creates the GitHub Deployment of `request`. A refusal is logged and the deploy goes on
/// without one: GitHub's record of a deploy is a courtesy.
pub(crate) async fn create_deployment(
    deps: &Deps,
    request: &DeployRequest,
) -> Result<Option<u64>, PromotionError> {
    let deployment = NewDeployment {
        sha: request.sha.to_string(),
        environment: request.environment.clone(),
        description: match &request.requested_by {
            Some(by) => format!(
                "shipline: {} to {}, asked for by {by}",
                request.sha.short(),
                request.target
            ),
            None => format!("shipline: {} to {}", request.sha.short(), request.target),
        },
        payload: match &request.requested_by {
            Some(by) => {
                json!({ "target": request.target, "build_id": request.build_id, "requested_by": by })
            }
            None => json!({ "target": request.target, "build_id": request.build_id }),
        },
    };
    match deps
        .github
        .create_deployment(&request.repo, &deployment, request.installation_id)
        .await
    {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.is_retryable() => Err(e.into()),
        Err(e) => {
            warn!(error = %e, "GitHub refused the deployment; deploying without it");
            Ok(None)
        }
    }
}

/// Posts a status of deployment `id`, if GitHub made one. A failure that a later try can fix
/// is the message's retry (the caller keeps its progress so that the retry resumes here); a
/// refusal is logged, since a deploy is not undone because GitHub would not hear about it.
pub(crate) async fn deployment_status(
    deps: &Deps,
    request: &DeployRequest,
    id: Option<u64>,
    state: DeploymentState,
    description: &str,
    environment_url: Option<String>,
) -> Result<(), PromotionError> {
    let Some(id) = id else {
        return Ok(());
    };
    let status = DeploymentStatus {
        state,
        description: description.to_string(),
        log_url: request.log_url.clone(),
        environment_url,
    };
    match deps
        .github
        .set_deployment_status(&request.repo, id, &status, request.installation_id)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.is_retryable() => Err(e.into()),
        Err(e) => {
            warn!(error = %e, ?state, "GitHub refused the deployment status");
            Ok(())
        }
    }
}

/// The chat thread of one commit: the channels its repo notifies and the facts every message
/// about it carries.
pub(crate) struct Chat<'a> {
    deps: &'a Deps,
    thread_key: String,
    channels: Vec<String>,
    facts: Facts,
}

impl<'a> Chat<'a> {
    /// `config_repo` is the repo's name in the config, `repo` and `sha` the commit's.
    pub fn new(deps: &'a Deps, config_repo: &str, repo: &str, sha: &Sha, facts: Facts) -> Self {
        let channels = deps
            .config
            .repo(config_repo)
            .map(|r| deps.config.notify_channels(r))
            .unwrap_or_default();
        Self {
            deps,
            thread_key: messages::build_thread_key(repo, sha),
            channels,
            facts,
        }
    }

    pub fn thread_key(&self) -> &str {
        &self.thread_key
    }

    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The facts every message of this thread carries, to add to.
    pub fn facts(&self) -> Facts {
        self.facts.clone()
    }

    /// Queues a notification. Best effort: a deploy is not retried because the chat did not
    /// hear about it.
    pub async fn tell(&self, kind: NotificationKind, facts: Facts) {
        if self.channels.is_empty() {
            return;
        }
        let notification = Notification {
            v: messages::VERSION,
            kind,
            thread_key: self.thread_key.clone(),
            channels: self.channels.clone(),
            facts,
            at: self.deps.clock.rfc3339(),
        };
        if let Err(e) = self
            .deps
            .notify
            .send(OutgoingMessage::new(messages::encode(&notification)))
            .await
        {
            warn!(error = %e, ?kind, "notification not queued");
        }
    }
}
