//! The GitHub REST client: commit statuses (deployments come with deploy-promotion), with a
//! token or as a GitHub App (RS256 JWT → installation token, cached until shortly before it
//! expires). `GITHUB_API_URL` points it at GitHub Enterprise Server or a local fake.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::messages::truncate_chars;
use crate::ports::{
    CommitStatus, Comparison, DeploymentStatus, GitHub, GitHubError, MAX_DESCRIPTION, NewDeployment,
};
use crate::secrets::{SecretString, Secrets, SecretsError};

pub const PUBLIC_API: &str = "https://api.github.com";
const API_VERSION: &str = "2022-11-28";
const USER_AGENT: &str = concat!("shipline/", env!("CARGO_PKG_VERSION"));
/// How shipline authenticates.
pub enum Auth {
    /// A personal access token or fine-grained token.
    Token(SecretString),
    /// A GitHub App: id (or client id) and private key; installation tokens are minted and
    /// cached per installation.
    App {
        app_id: String,
        key: jsonwebtoken::EncodingKey,
        tokens: Mutex<HashMap<u64, (SecretString, i64)>>,
        /// Installation ids looked up by repo, when the webhook did not carry one.
        installations: Mutex<HashMap<String, u64>>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Auth::Token([redacted])"),
            Auth::App { app_id, .. } => {
                write!(f, "Auth::App {{ app_id: {app_id}, key: [redacted] }}")
            }
        }
    }
}

impl Auth {
    /// `github_token`, else `github_app_id` + `github_app_private_key` (PEM).
    pub fn from_secrets(secrets: &Secrets) -> Result<Self, SecretsError> {
        if let Some(token) = secrets.get("github_token") {
            return Ok(Auth::Token(token.clone()));
        }
        let app_id = secrets.require("github_app_id")?.expose().to_string();
        let pem = secrets.require("github_app_private_key")?;
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose().as_bytes()).map_err(|_| {
                SecretsError::Malformed(
                    "`github_app_private_key` is not an RSA private key in PEM".into(),
                )
            })?;
        Ok(Auth::App {
            app_id,
            key,
            tokens: Mutex::new(HashMap::new()),
            installations: Mutex::new(HashMap::new()),
        })
    }
}

#[derive(Debug)]
pub struct GitHubClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl GitHubClient {
    pub fn new(http: reqwest::Client, base: impl Into<String>, auth: Auth) -> Self {
        Self {
            http,
            base: base.into().trim_end_matches('/').to_string(),
            auth,
        }
    }

    /// A GitHub App JWT: issued a minute in the past (clock drift), valid nine minutes.
    fn app_jwt(app_id: &str, key: &jsonwebtoken::EncodingKey) -> Result<String, GitHubError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iat: i64,
            exp: i64,
            iss: &'a str,
        }
        let now = now();
        let claims = Claims {
            iat: now - 60,
            exp: now + 540,
            iss: app_id,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            key,
        )
        .map_err(|e| GitHubError::Credentials(format!("cannot sign the App JWT: {e}")))
    }

    /// The bearer token for a call about `repo`.
    async fn token(
        &self,
        repo: &str,
        installation: Option<u64>,
    ) -> Result<SecretString, GitHubError> {
        let (app_id, key, tokens, installations) = match &self.auth {
            Auth::Token(t) => return Ok(t.clone()),
            Auth::App {
                app_id,
                key,
                tokens,
                installations,
            } => (app_id, key, tokens, installations),
        };
        let cached = |id: u64| {
            tokens
                .lock()
                .unwrap()
                .get(&id)
                .filter(|(_, expires)| *expires - 300 > now())
                .map(|(token, _)| token.clone())
        };
        let known = installation.or_else(|| installations.lock().unwrap().get(repo).copied());
        // A cached installation token needs no JWT: signing one is an RSA operation per call.
        if let Some(token) = known.and_then(cached) {
            return Ok(token);
        }
        let jwt = SecretString::new(Self::app_jwt(app_id, key)?);
        let installation = match known {
            Some(id) => id,
            None => {
                #[derive(Deserialize)]
                struct Installation {
                    id: u64,
                }
                let found: Installation = self
                    .send(
                        Method::GET,
                        &format!("/repos/{repo}/installation"),
                        &jwt,
                        None,
                    )
                    .await?;
                installations
                    .lock()
                    .unwrap()
                    .insert(repo.to_string(), found.id);
                found.id
            }
        };
        if let Some(token) = cached(installation) {
            return Ok(token);
        }
        #[derive(Deserialize)]
        struct AccessToken {
            token: String,
            expires_at: String,
        }
        let minted: AccessToken = self
            .send(
                Method::POST,
                &format!("/app/installations/{installation}/access_tokens"),
                &jwt,
                Some(json!({})),
            )
            .await?;
        let expires = time::OffsetDateTime::parse(
            &minted.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.unix_timestamp())
        .unwrap_or_else(|_| now() + 3600);
        let token = SecretString::new(minted.token);
        tokens
            .lock()
            .unwrap()
            .insert(installation, (token.clone(), expires));
        Ok(token)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &SecretString,
        body: Option<serde_json::Value>,
    ) -> Result<T, GitHubError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header("user-agent", USER_AGENT)
            .bearer_auth(token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| GitHubError::Unavailable(without_url(e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| GitHubError::Unavailable(without_url(e)))?;
        if status.is_success() {
            let text = if text.is_empty() { "null" } else { &text };
            return serde_json::from_str(text).map_err(|e| {
                GitHubError::Unavailable(format!("unexpected answer from GitHub: {e}"))
            });
        }
        Err(classify(status, &headers, &text))
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

/// reqwest's errors carry the URL; ours never do (a GHES URL can hold a token).
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

/// Maps a failed answer to what shipline should do about it.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> GitHubError {
    let header_num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let mut m = v.get("message")?.as_str()?.to_string();
            if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
                for e in errors {
                    if let Some(em) = e.get("message").and_then(|x| x.as_str()) {
                        m.push_str(": ");
                        m.push_str(em);
                    }
                }
            }
            Some(m)
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (header_num("x-ratelimit-remaining") == Some(0)
                || message.to_ascii_lowercase().contains("rate limit")));
    if limited {
        let retry_after = header_num("retry-after")
            .or_else(|| header_num("x-ratelimit-reset").map(|reset| reset - now()))
            .unwrap_or(60)
            .clamp(1, 3600);
        return GitHubError::RateLimited {
            retry_after: Duration::from_secs(retry_after as u64),
        };
    }
    if status.is_server_error() {
        return GitHubError::Unavailable(format!("{status}: {message}"));
    }
    GitHubError::Rejected {
        status: status.as_u16(),
        message,
    }
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
        let token = self.token(repo, installation).await?;
        let mut body = json!({
            "state": status.state,
            "description": truncate_chars(&status.description, MAX_DESCRIPTION),
            "context": status.context,
        });
        if let Some(url) = &status.target_url {
            body["target_url"] = json!(url);
        }
        let _: serde_json::Value = self
            .send(
                Method::POST,
                &format!("/repos/{repo}/statuses/{sha}"),
                &token,
                Some(body),
            )
            .await?;
        Ok(())
    }

    async fn branch_head(
        &self,
        repo: &str,
        branch: &str,
        installation: Option<u64>,
    ) -> Result<String, GitHubError> {
        let token = self.token(repo, installation).await?;
        let path = format!("/repos/{repo}/branches/{branch}");
        let answer: BranchAnswer = self.send(Method::GET, &path, &token, None).await?;
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
        let answer: CompareAnswer = self.send(Method::GET, &path, &token, None).await?;
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
        let created: CreatedDeployment = self.send(Method::POST, &path, &token, Some(body)).await?;
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
        let token = self.token(repo, installation).await?;
        let mut body = json!({
            "state": status.state,
            "description": truncate_chars(&status.description, MAX_DESCRIPTION),
        });
        if let Some(url) = &status.log_url {
            body["log_url"] = json!(url);
        }
        if let Some(url) = &status.environment_url {
            body["environment_url"] = json!(url);
        }
        let path = format!("/repos/{repo}/deployments/{id}/statuses");
        let _: serde_json::Value = self.send(Method::POST, &path, &token, Some(body)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{CommitState, Retryable};
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn status(description: &str) -> CommitStatus {
        CommitStatus {
            state: CommitState::Pending,
            target_url: Some("https://console.aws.amazon.com/build".into()),
            description: description.into(),
            context: "shipline/build".into(),
        }
    }

    fn client(server: &MockServer) -> GitHubClient {
        GitHubClient::new(
            reqwest::Client::new(),
            server.uri(),
            Auth::Token(SecretString::new("ghp_test")),
        )
    }

    #[tokio::test]
    async fn a_status_is_posted_with_the_api_headers_and_a_cut_description() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/repos/octo/app/statuses/abc123"))
            .and(header("authorization", "Bearer ghp_test"))
            .and(header("x-github-api-version", API_VERSION))
            .and(body_partial_json(
                json!({"state": "pending", "context": "shipline/build"}),
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
            .expect(1)
            .mount(&server)
            .await;
        client(&server)
            .set_status("octo/app", "abc123", &status(&"é".repeat(500)), None)
            .await
            .unwrap();
        let sent: serde_json::Value =
            serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
        assert_eq!(
            sent["description"].as_str().unwrap().chars().count(),
            MAX_DESCRIPTION
        );
    }

    #[tokio::test]
    async fn answers_are_classified_for_retry() {
        let server = MockServer::start().await;
        Mock::given(path("/repos/octo/app/statuses/s500"))
            .respond_with(ResponseTemplate::new(502))
            .mount(&server)
            .await;
        Mock::given(path("/repos/octo/app/statuses/s429"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
            .mount(&server)
            .await;
        Mock::given(path("/repos/octo/app/statuses/s403"))
            .respond_with(
                ResponseTemplate::new(403)
                    .set_body_json(json!({"message": "You have exceeded a secondary rate limit"})),
            )
            .mount(&server)
            .await;
        Mock::given(path("/repos/octo/app/statuses/s422"))
            .respond_with(ResponseTemplate::new(422).set_body_json(json!({
                "message": "Validation Failed",
                "errors": [{"resource": "Status", "code": "custom", "field": "description",
                            "message": "description is too long (maximum is 140 characters)"}]
            })))
            .mount(&server)
            .await;
        let c = client(&server);
        let err = |sha: &'static str| {
            let c = &c;
            async move {
                c.set_status("octo/app", sha, &status("x"), None)
                    .await
                    .unwrap_err()
            }
        };
        assert!(matches!(err("s500").await, GitHubError::Unavailable(_)));
        let limited = err("s429").await;
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        assert!(limited.is_retryable());
        assert_eq!(
            err("s403").await.retry_after(),
            Some(Duration::from_secs(60))
        );
        let rejected = err("s422").await;
        assert!(!rejected.is_retryable());
        assert!(
            rejected.to_string().contains("description is too long"),
            "{rejected}"
        );
    }

    #[tokio::test]
    async fn a_timeout_is_unavailable() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(5)))
            .mount(&server)
            .await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let c = GitHubClient::new(http, server.uri(), Auth::Token(SecretString::new("t")));
        let e = c
            .set_status("octo/app", "s", &status("x"), None)
            .await
            .unwrap_err();
        assert!(matches!(e, GitHubError::Unavailable(_)), "{e}");
        assert!(
            !e.to_string().contains(&server.uri()),
            "no URL in errors: {e}"
        );
    }

    #[tokio::test]
    async fn a_github_app_mints_and_caches_an_installation_token() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/repos/octo/app/installation"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 42})))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/app/installations/42/access_tokens"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "token": "ghs_installation", "expires_at": "2999-01-01T00:00:00Z"
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/repos/octo/app/statuses/abc"))
            .and(header("authorization", "Bearer ghs_installation"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({})))
            .expect(2)
            .mount(&server)
            .await;
        let secrets = Secrets::default().with("github_app_id", "12345").with(
            "github_app_private_key",
            include_str!("../../testdata/test-app-key.pem"),
        );
        let auth = Auth::from_secrets(&secrets).unwrap();
        assert!(!format!("{auth:?}").contains("PRIVATE"));
        let c = GitHubClient::new(reqwest::Client::new(), server.uri(), auth);
        c.set_status("octo/app", "abc", &status("x"), None)
            .await
            .unwrap();
        c.set_status("octo/app", "abc", &status("y"), None)
            .await
            .unwrap();
        // The JWT went to the App endpoints, signed RS256, issued by the app id.
        let requests = server.received_requests().await.unwrap();
        let jwt = requests[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        let payload = jwt.trim_start_matches("Bearer ").split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], "12345");
        assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 600);
    }
}
