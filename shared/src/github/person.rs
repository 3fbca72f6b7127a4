//! What a person signed in with GitHub may see, asked with their user access token: who they
//! are (`GET /user`) and whether they can read a repository (`GET /repos/{owner}/{repo}`). The
//! status page's sign-in asks once per sign-in and keeps only the answers, never the token.

use reqwest::Method;
use serde::Deserialize;

use super::transport::Rest;
use crate::ports::GitHubError;
use crate::secrets::SecretString;

/// The signed-in person (`GET /user`: `id` and `login` need no scope).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Person {
    /// GitHub's durable id: a login can be renamed and reused.
    pub id: u64,
    pub login: String,
}

/// `GET /repos/{owner}/{repo}`: the field read. GitHub's "full repository" schema makes
/// `permissions` optional (present for a user token); `pull` is required inside it.
#[derive(Deserialize)]
struct RepoAnswer {
    #[serde(default)]
    permissions: Option<Permissions>,
}

#[derive(Deserialize)]
struct Permissions {
    pull: bool,
}

impl Rest {
    /// `GET /user`.
    pub async fn person(&self, token: &SecretString) -> Result<Person, GitHubError> {
        self.send(Method::GET, "/user", token, None).await
    }

    /// Whether the token's person can read `repo` (`owner/name`). GitHub answers a repository
    /// someone may not see with 404 rather than 403, "to avoid confirming the existence of
    /// private repositories" (docs: rest/using-the-rest-api/troubleshooting-the-rest-api);
    /// 404 and 403 both mean no. A rate limit or an outage is an error, not a no.
    pub async fn can_read(&self, token: &SecretString, repo: &str) -> Result<bool, GitHubError> {
        let path = format!("/repos/{repo}");
        match self
            .send::<RepoAnswer>(Method::GET, &path, token, None)
            .await
        {
            Ok(answer) => Ok(answer.permissions.is_none_or(|p| p.pull)),
            Err(GitHubError::Rejected {
                status: 403 | 404, ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
