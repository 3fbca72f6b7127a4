//! A webhook's recent deliveries, and asking GitHub to deliver one again: GitHub never
//! redelivers a failed delivery by itself (docs.github.com, "Handling failed webhook
//! deliveries"), so the recovery sweep does. Repository hooks are read with the repo's token
//! (admin rights: "Webhooks" read and write on a fine-grained token); a GitHub App's own hook
//! under `/app/hook` with the App's JWT.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;

use super::client::GitHubClient;
use super::transport::next_cursor;
use crate::ports::GitHubError;
use crate::secrets::SecretString;

/// Whose deliveries: one repository's hook, or the GitHub App's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookScope {
    Repo { repo: String, hook_id: u64 },
    App,
}

impl HookScope {
    fn path(&self) -> String {
        match self {
            HookScope::Repo { repo, hook_id } => format!("/repos/{repo}/hooks/{hook_id}"),
            HookScope::App => "/app/hook".into(),
        }
    }

    /// A stable name for the state table.
    pub fn key(&self) -> String {
        match self {
            HookScope::Repo { repo, hook_id } => format!("{repo}#{hook_id}"),
            HookScope::App => "app".into(),
        }
    }
}

/// `GET /repos/{repo}/hooks`: the fields read.
#[derive(Debug, Clone, Deserialize)]
pub struct Hook {
    pub id: u64,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub config: HookConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HookConfig {
    #[serde(default)]
    pub url: Option<String>,
}

/// One attempt to deliver an event (`hook-delivery-item` in GitHub's OpenAPI description). A
/// redelivery keeps the `guid` and gets a new `id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeliveryAttempt {
    pub id: u64,
    pub guid: String,
    /// RFC 3339.
    pub delivered_at: String,
    #[serde(default)]
    pub redelivery: bool,
    /// `OK`, or what went wrong (`failed to connect`, `Invalid HTTP Response: 500`).
    pub status: String,
    /// The receiver's answer; 0 when there was none.
    #[serde(default)]
    pub status_code: u16,
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
}

impl DeliveryAttempt {
    /// GitHub counts a delivery as failed on any answer other than 2xx, or none in 10 s.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// `GET …/deliveries/{id}` (`hook-delivery`): the request as GitHub sent it.
#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryDetail {
    pub id: u64,
    pub guid: String,
    pub event: String,
    pub request: DeliveredRequest,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeliveredRequest {
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// The payload as JSON (GitHub returns it parsed, not as the signed bytes).
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
}

/// One page of attempts, newest first, and the cursor of the next (older) page.
#[derive(Debug, Clone)]
pub struct DeliveryPage {
    pub attempts: Vec<DeliveryAttempt>,
    pub next: Option<String>,
}

impl GitHubClient {
    /// The token for a scope: the repo's (installation or personal) token, or the App's JWT.
    async fn scope_token(&self, scope: &HookScope) -> Result<SecretString, GitHubError> {
        match scope {
            HookScope::Repo { repo, .. } => self.token(repo, None).await,
            HookScope::App => self.app_token(),
        }
    }

    /// The repository's webhooks.
    pub async fn hooks(&self, repo: &str) -> Result<Vec<Hook>, GitHubError> {
        let token = self.token(repo, None).await?;
        self.send(
            Method::GET,
            &format!("/repos/{repo}/hooks?per_page=100"),
            &token,
            None,
        )
        .await
    }

    /// One page of delivery attempts (at most 100), from `cursor` on.
    pub async fn deliveries(
        &self,
        scope: &HookScope,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, GitHubError> {
        let token = self.scope_token(scope).await?;
        let mut path = format!("{}/deliveries?per_page=100", scope.path());
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.push_str(&form_urlencoded::byte_serialize(cursor.as_bytes()).collect::<String>());
        }
        let (attempts, headers) = self
            .send_with_headers(Method::GET, &path, &token, None)
            .await?;
        Ok(DeliveryPage {
            attempts,
            next: next_cursor(&headers),
        })
    }

    /// One attempt with the request GitHub sent.
    pub async fn delivery(
        &self,
        scope: &HookScope,
        id: u64,
    ) -> Result<DeliveryDetail, GitHubError> {
        let token = self.scope_token(scope).await?;
        let path = format!("{}/deliveries/{id}", scope.path());
        self.send(Method::GET, &path, &token, None).await
    }

    /// Asks GitHub to deliver an attempt's event again (202 Accepted).
    pub async fn redeliver(&self, scope: &HookScope, id: u64) -> Result<(), GitHubError> {
        let token = self.scope_token(scope).await?;
        let path = format!("{}/deliveries/{id}/attempts", scope.path());
        let _: serde_json::Value = self.send(Method::POST, &path, &token, None).await?;
        Ok(())
    }
}
