//! What a person signed in with GitHub may see, asked with their user access token: who they
//! are (`GET /user`) and whether they can read a repository (`GET /repos/{owner}/{repo}`). The
//! sign-in (`signin`) asks once per sign-in and keeps only the answers, never the token. The
//! requests go through shared's GitHub transport (`Rest::get`), so a failed answer means what it
//! means for every other GitHub call.

use serde::Deserialize;
use shared::github::client::Rest;
use shared::ports::GitHubError;
use shared::secrets::SecretString;

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

/// A signed-in person's own GitHub calls, asked with their user access token.
pub(crate) trait PersonCalls {
    /// `GET /user`.
    async fn person(&self, token: &SecretString) -> Result<Person, GitHubError>;

    /// Whether the token's person can read `repo` (`owner/name`).
    async fn can_read(&self, token: &SecretString, repo: &str) -> Result<bool, GitHubError>;
}

impl PersonCalls for Rest {
    async fn person(&self, token: &SecretString) -> Result<Person, GitHubError> {
        self.get("/user", token).await
    }

    /// GitHub answers a repository someone may not see with 404 rather than 403, "to avoid
    /// confirming the existence of private repositories" (docs:
    /// rest/using-the-rest-api/troubleshooting-the-rest-api); 404 and 403 both mean no. A rate
    /// limit or an outage is an error, not a no.
    async fn can_read(&self, token: &SecretString, repo: &str) -> Result<bool, GitHubError> {
        let path = format!("/repos/{repo}");
        match self.get::<RepoAnswer>(&path, token).await {
            Ok(answer) => Ok(answer.permissions.is_none_or(|p| p.pull)),
            Err(GitHubError::Rejected {
                status: 403 | 404, ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
