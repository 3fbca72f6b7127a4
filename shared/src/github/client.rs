//! The GitHub REST client: the adapter of the `GitHub` port (commit statuses, branch heads,
//! compares, deployments), with a token or as a GitHub App (see `auth`); requests and answer
//! classification in `transport`, and `Rest::get` for a caller asking with its own token (the
//! status page's sign-in). `GITHUB_API_URL` points it at GitHub Enterprise Server or a local
//! fake.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::messages::truncate_chars;
use crate::ports::{
    CommitStatus, Comparison, DeploymentStatus, GitHub, GitHubError, MAX_DESCRIPTION, NewDeployment,
};
use crate::secrets::SecretString;

pub use super::auth::Auth;
pub use super::transport::{PUBLIC_API, Rest, classify};

#[derive(Debug)]
pub struct GitHubClient {
    pub(super) rest: Rest,
    pub(super) auth: Auth,
}

impl GitHubClient {
    /// POSTs `body` where GitHub answers with what it created, which shipline does not read.
    async fn post<B: serde::Serialize>(
        &self,
        repo: &str,
        installation: Option<u64>,
        path: &str,
        body: &B,
    ) -> Result<(), GitHubError> {
        let token = self.token(repo, installation).await?;
        // Strings, numbers and enums only: serializing cannot fail.
        let body = json!(body);
        let _: serde_json::Value = self
            .rest
            .send(Method::POST, path, &token, Some(body))
            .await?;
        Ok(())
    }

    pub fn new(http: reqwest::Client, base: impl Into<String>, auth: Auth) -> Self {
        Self {
            rest: Rest::new(http, base),
            auth,
        }
    }
}

impl Rest {
    /// `GET path` with `token`, the answer read as `T`: for callers outside this crate, such as
    /// the status page's sign-in, which asks as the signed-in person.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: &SecretString,
    ) -> Result<T, GitHubError> {
        self.send(Method::GET, path, token, None).await
    }
}

/// `GET /repos/{repo}/branches/{branch}`: the fields read.
#[derive(Deserialize)]
struct BranchAnswer {
    commit: CommitRef,
}

#[derive(Deserialize)]
struct CommitRef {
    sha: String,
}

/// `GET /repos/{repo}/compare/{base}...{head}`: the field read.
#[derive(Deserialize)]
struct CompareAnswer {
    status: Comparison,
}

/// `POST /repos/{repo}/deployments`: 201 with the deployment, or 202 with a message.
#[derive(Deserialize)]
struct CreatedDeployment {
    id: Option<u64>,
    message: Option<String>,
}

#[async_trait]
impl GitHub for GitHubClient {
    async fn set_status(
        &self,
        repo: &str,
        sha: &str,
        status: &CommitStatus,
        installation: Option<u64>,
    ) -> Result<(), GitHubError> {
        let status = CommitStatus {
            description: truncate_chars(&status.description, MAX_DESCRIPTION),
            ..status.clone()
        };
        let path = format!("/repos/{repo}/statuses/{sha}");
        self.post(repo, installation, &path, &status).await
    }

    async fn branch_head(
        &self,
        repo: &str,
        branch: &str,
        installation: Option<u64>,
    ) -> Result<String, GitHubError> {
        let token = self.token(repo, installation).await?;
        let path = format!("/repos/{repo}/branches/{branch}");
        let answer: BranchAnswer = self.rest.send(Method::GET, &path, &token, None).await?;
        Ok(answer.commit.sha)
    }

    async fn compare(
        &self,
        repo: &str,
        base: &str,
        head: &str,
        installation: Option<u64>,
    ) -> Result<Comparison, GitHubError> {
        let token = self.token(repo, installation).await?;
        // per_page=1: only the status is read, not the commit list.
        let path = format!("/repos/{repo}/compare/{base}...{head}?per_page=1");
        let answer: CompareAnswer = self.rest.send(Method::GET, &path, &token, None).await?;
        Ok(answer.status)
    }

    async fn create_deployment(
        &self,
        repo: &str,
        d: &NewDeployment,
        installation: Option<u64>,
    ) -> Result<u64, GitHubError> {
        let token = self.token(repo, installation).await?;
        let body = json!({
            "ref": d.sha,
            "environment": d.environment,
            "description": truncate_chars(&d.description, MAX_DESCRIPTION),
            // The build already passed shipline's own status; never merge the default branch in.
            "auto_merge": false,
            "required_contexts": [],
            "payload": d.payload,
            "production_environment": d.environment == "production",
        });
        let path = format!("/repos/{repo}/deployments");
        let created: CreatedDeployment = self
            .rest
            .send(Method::POST, &path, &token, Some(body))
            .await?;
        // 202 with only a message: GitHub merged nothing and created no deployment.
        created.id.ok_or_else(|| GitHubError::Rejected {
            status: 202,
            message: created
                .message
                .unwrap_or_else(|| "no deployment was created".into()),
        })
    }

    async fn set_deployment_status(
        &self,
        repo: &str,
        id: u64,
        status: &DeploymentStatus,
        installation: Option<u64>,
    ) -> Result<(), GitHubError> {
        let status = DeploymentStatus {
            description: truncate_chars(&status.description, MAX_DESCRIPTION),
            ..status.clone()
        };
        let path = format!("/repos/{repo}/deployments/{id}/statuses");
        self.post(repo, installation, &path, &status).await
    }
}
