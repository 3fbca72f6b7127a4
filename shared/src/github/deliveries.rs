//! A webhook's recent deliveries, and asking GitHub to deliver one again: GitHub never
//! redelivers a failed delivery by itself (docs.github.com, "Handling failed webhook
//! deliveries"), so the recovery sweep does. Repository hooks are read with the repo's token
//! (admin rights: "Webhooks" read and write on a fine-grained token); a GitHub App's own hook
//! under `/app/hook` with the App's JWT.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use serde_json::json;

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
    pub events: Vec<String>,
    #[serde(default)]
    pub config: HookConfig,
}

/// A webhook's `config` (`webhook-config` in GitHub's OpenAPI description). GitHub answers
/// with `secret: "********"` when one is set, never the secret itself.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HookConfig {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// `"0"` verifies the receiver's certificate; GitHub also accepts a number.
    #[serde(default, deserialize_with = "string_or_number")]
    pub insecure_ssl: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
}

impl HookConfig {
    pub fn has_secret(&self) -> bool {
        self.secret.as_deref().is_some_and(|s| !s.is_empty())
    }
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// What a repository webhook should be: `POST /repos/{repo}/hooks` and
/// `PATCH /repos/{repo}/hooks/{id}` bodies. The PATCH sends the secret every time: GitHub
/// removes a hook's secret when an update's `config` leaves it out ("Update a repository
/// webhook", docs.github.com).
#[derive(Debug, Clone, Serialize)]
pub struct HookSpec {
    pub active: bool,
    pub events: Vec<String>,
    pub config: HookSpecConfig,
}

/// `Debug` shows `secret: [redacted]` (`SecretString`).
#[derive(Debug, Clone, Serialize)]
pub struct HookSpecConfig {
    pub url: String,
    pub content_type: String,
    pub insecure_ssl: String,
    #[serde(serialize_with = "expose")]
    pub secret: SecretString,
}

fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
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
        self.rest
            .send(
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
            .rest
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
        self.rest.send(Method::GET, &path, &token, None).await
    }

    /// Asks GitHub to deliver an attempt's event again (202 Accepted).
    pub async fn redeliver(&self, scope: &HookScope, id: u64) -> Result<(), GitHubError> {
        let token = self.scope_token(scope).await?;
        let path = format!("{}/deliveries/{id}/attempts", scope.path());
        let _: serde_json::Value = self.rest.send(Method::POST, &path, &token, None).await?;
        Ok(())
    }

    /// Creates a repository webhook (`name: web`); GitHub answers 201 with it.
    pub async fn create_hook(&self, repo: &str, spec: &HookSpec) -> Result<Hook, GitHubError> {
        let token = self.token(repo, None).await?;
        let mut body = json!(spec);
        body["name"] = json!("web");
        self.rest
            .send(
                Method::POST,
                &format!("/repos/{repo}/hooks"),
                &token,
                Some(body),
            )
            .await
    }

    /// Brings a repository webhook in line with `spec`.
    pub async fn update_hook(
        &self,
        repo: &str,
        id: u64,
        spec: &HookSpec,
    ) -> Result<Hook, GitHubError> {
        let token = self.token(repo, None).await?;
        let path = format!("/repos/{repo}/hooks/{id}");
        self.rest
            .send(Method::PATCH, &path, &token, Some(json!(spec)))
            .await
    }

    /// Asks GitHub to send the hook a `ping` event now (204).
    pub async fn ping_hook(&self, repo: &str, id: u64) -> Result<(), GitHubError> {
        let token = self.token(repo, None).await?;
        let path = format!("/repos/{repo}/hooks/{id}/pings");
        let _: serde_json::Value = self.rest.send(Method::POST, &path, &token, None).await?;
        Ok(())
    }

    /// The GitHub App's own webhook configuration, read with the App's JWT.
    pub async fn app_hook_config(&self) -> Result<HookConfig, GitHubError> {
        let token = self.app_token()?;
        self.rest
            .send(Method::GET, "/app/hook/config", &token, None)
            .await
    }
}
