//! How shipline authenticates to GitHub: a token, or a GitHub App (RS256 JWT → installation
//! token, cached per installation until shortly before it expires).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::GitHubClient;
use crate::ports::GitHubError;
use crate::secrets::{SecretString, Secrets, SecretsError};

pub(super) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

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

impl GitHubClient {
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

    /// The App's own JWT, for the App's endpoints (`/app/...`); a token-authenticated client
    /// has none.
    pub(super) fn app_token(&self) -> Result<SecretString, GitHubError> {
        match &self.auth {
            Auth::App { app_id, key, .. } => Ok(SecretString::new(Self::app_jwt(app_id, key)?)),
            Auth::Token(_) => Err(GitHubError::Credentials(
                "the App's endpoints need github_app_id and github_app_private_key".into(),
            )),
        }
    }

    /// Whether shipline authenticates as a GitHub App.
    pub fn is_app(&self) -> bool {
        matches!(self.auth, Auth::App { .. })
    }

    /// A token for `repo` to use outside this client, as `shipline serve` does to `git fetch`
    /// over HTTPS: the configured token, or an installation token of the App (cached).
    pub async fn token_for(&self, repo: &str) -> Result<SecretString, GitHubError> {
        self.token(repo, None).await
    }

    /// The bearer token for a call about `repo`.
    pub(super) async fn token(
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
                    .rest
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
            .rest
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
}
