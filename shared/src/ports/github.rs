//! The `GitHub` port and the plain types it speaks in; `crate::github` is its REST adapter.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Retryable;

/// GitHub refuses a status or deployment status description over 140 characters with a 422.
pub const MAX_DESCRIPTION: usize = 140;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CommitState {
    /// GitHub's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
        }
    }
}

impl std::fmt::Display for CommitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A commit status as GitHub shows it beside a commit or pull request; serialized, the body of
/// "Create a commit status".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitStatus {
    pub state: CommitState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    pub description: String,
    pub context: String,
}

/// A deployment to create (`POST /repos/{repo}/deployments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    pub sha: String,
    pub environment: String,
    pub description: String,
    /// Carried in the deployment's `payload`, for whoever reads it.
    pub payload: serde_json::Value,
}

/// The states of a deployment status that shipline sets (GitHub's REST reference, "Create a
/// deployment status": `error`, `failure`, `inactive`, `in_progress`, `queued`, `pending`,
/// `success`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    InProgress,
    Success,
    Failure,
    Error,
    Inactive,
}

impl DeploymentState {
    /// GitHub's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Error => "error",
            DeploymentState::Inactive => "inactive",
        }
    }
}

impl std::fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployment status; serialized, the body of "Create a deployment status".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentStatus {
    pub state: DeploymentState,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
}

/// How a head commit relates to a base (`GET /repos/{repo}/compare/{base}...{head}`, field
/// `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Ahead,
    Behind,
    Identical,
    Diverged,
}

impl Comparison {
    /// The head is the base or an ancestor of it: releasing it would go back in time.
    pub fn is_not_newer(self) -> bool {
        matches!(self, Comparison::Behind | Comparison::Identical)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 429, or 403 with the rate limit exhausted or a secondary-limit message: wait this long.
    #[error("GitHub rate limit; retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// 5xx, a timeout, a network failure.
    #[error("GitHub unavailable: {0}")]
    Unavailable(String),
    /// Any other 4xx: the request itself is wrong (422 validation, 404 repo, 401 bad token).
    #[error("GitHub refused ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("GitHub credentials: {0}")]
    Credentials(String),
}

impl Retryable for GitHubError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            GitHubError::RateLimited { .. } | GitHubError::Unavailable(_)
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            GitHubError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

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
        status: &CommitStatus,
        installation: Option<u64>,
    ) -> Result<(), GitHubError>;

    /// The commit a branch points at now.
    async fn branch_head(
        &self,
        repo: &str,
        branch: &str,
        installation: Option<u64>,
    ) -> Result<String, GitHubError>;

    /// How `head` relates to `base`.
    async fn compare(
        &self,
        repo: &str,
        base: &str,
        head: &str,
        installation: Option<u64>,
    ) -> Result<Comparison, GitHubError>;

    /// Creates a deployment of `sha` to `environment`; returns its id.
    async fn create_deployment(
        &self,
        repo: &str,
        deployment: &NewDeployment,
        installation: Option<u64>,
    ) -> Result<u64, GitHubError>;

    async fn set_deployment_status(
        &self,
        repo: &str,
        deployment_id: u64,
        status: &DeploymentStatus,
        installation: Option<u64>,
    ) -> Result<(), GitHubError>;
}
