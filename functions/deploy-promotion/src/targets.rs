//! Deploy adapters: Heroku container releases, deploy hooks, local commands; and `Targets`,
//! which picks the adapter a deploy rule names.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Value, json};

use shared::config::{DeployRule, HerokuTarget, Target};
use shared::messages::DeployRequest;
use shared::secrets::{SecretString, Secrets};

use crate::deployer::{DeployError, Deployer, Release};

pub const HEROKU_PUBLIC_API: &str = "https://api.heroku.com";

fn unavailable(e: reqwest::Error) -> DeployError {
    DeployError::Unavailable(e.without_url().to_string())
}

/// The image id a build exported for a process type: `SHIPLINE_IMAGE_<PROCESS>`.
pub fn image_variable(process: &str) -> String {
    format!(
        "SHIPLINE_IMAGE_{}",
        process
            .to_ascii_uppercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

// ---------------------------------------------------------------------------------------------
// Heroku

pub struct Heroku {
    http: reqwest::Client,
    base: String,
    key: SecretString,
}

impl Heroku {
    pub fn new(http: reqwest::Client, base: &str, key: SecretString) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
        }
    }

    async fn call(
        &self,
        app: &str,
        request: reqwest::RequestBuilder,
        accept: &str,
    ) -> Result<Value, DeployError> {
        let response = request
            .header("accept", accept)
            .header(
                "user-agent",
                concat!("shipline/", env!("CARGO_PKG_VERSION")),
            )
            .bearer_auth(self.key.expose())
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let id = body["id"].as_str().unwrap_or("");
        let message = body["message"].as_str().unwrap_or("no message");
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => DeployError::RateLimited {
                // Heroku refills about 75 requests a minute.
                retry_after: Duration::from_secs(retry_after.unwrap_or(60)),
            },
            s if s.is_server_error() => DeployError::Unavailable(format!("Heroku {s}: {message}")),
            StatusCode::UNAUTHORIZED => {
                DeployError::Refused(format!("Heroku rejected the API key (401 {id}): {message}"))
            }
            StatusCode::FORBIDDEN => DeployError::Refused(format!(
                "Heroku API key may not deploy {app} (403 {id}): {message}"
            )),
            StatusCode::NOT_FOUND => {
                DeployError::Refused(format!("Heroku app {app} not found (404 {id}): {message}"))
            }
            s => DeployError::Refused(format!("Heroku refused ({s} {id}): {message}")),
        })
    }

    fn release_from(&self, app: &str, release: &Value) -> Release {
        let id = release["id"].as_str().unwrap_or_default().to_string();
        let version = release["version"].as_u64().map(|v| format!("v{v}"));
        match release["status"].as_str() {
            Some("succeeded") | None => Release::Live {
                id,
                version,
                url: Some(format!("https://dashboard.heroku.com/apps/{app}/activity")),
            },
            Some("pending") => Release::Pending { id, version },
            Some(_) => Release::Failed {
                id: Some(id),
                reason: format!(
                    "release {} failed{}",
                    version.as_deref().unwrap_or("?"),
                    release["description"]
                        .as_str()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ),
            },
        }
    }

    async fn newest_release(&self, app: &str) -> Result<Release, DeployError> {
        let request = self
            .http
            .get(format!("{}/apps/{app}/releases", self.base))
            .header("range", "version ..; max=1, order=desc");
        let releases = self
            .call(app, request, "application/vnd.heroku+json; version=3")
            .await?;
        let newest = releases.as_array().and_then(|r| r.first()).ok_or_else(|| {
            DeployError::Unavailable(format!("Heroku listed no release for {app}"))
        })?;
        Ok(self.release_from(app, newest))
    }

    fn app(rule: &DeployRule) -> Result<&HerokuTarget, DeployError> {
        rule.heroku
            .as_ref()
            .ok_or_else(|| DeployError::Refused("not a Heroku target".into()))
    }
}

#[async_trait]
impl Deployer for Heroku {
    async fn release(
        &self,
        rule: &DeployRule,
        request: &DeployRequest,
    ) -> Result<Release, DeployError> {
        let target = Self::app(rule)?;
        let mut updates = Vec::new();
        for process in &target.process_types {
            let variable = image_variable(process);
            let image = request.artifacts.get(&variable).ok_or_else(|| {
                DeployError::Refused(format!(
                    "the build exported no image for process `{process}` ({variable}); see examples/buildspec.yml"
                ))
            })?;
            updates.push(json!({ "type": process, "docker_image": image }));
        }
        let app = &target.app;
        let patch = self
            .http
            .patch(format!("{}/apps/{app}/formation", self.base))
            .json(&json!({ "updates": updates }));
        self.call(
            app,
            patch,
            "application/vnd.heroku+json; version=3.docker-releases",
        )
        .await?;
        // The formation update creates a release; the newest one is ours. Once the update is
        // accepted, a failure to read it back must not lead to a second release.
        self.newest_release(app).await.map_err(|e| match e {
            DeployError::Refused(_) => e,
            e => DeployError::Unconfirmed(e.to_string()),
        })
    }

    async fn newest(&self, rule: &DeployRule) -> Result<Release, DeployError> {
        self.newest_release(&Self::app(rule)?.app).await
    }

    async fn status(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        let app = &Self::app(rule)?.app;
        let request = self
            .http
            .get(format!("{}/apps/{app}/releases/{id}", self.base));
        let release = self
            .call(app, request, "application/vnd.heroku+json; version=3")
            .await?;
        Ok(self.release_from(app, &release))
    }

    async fn rollback(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        let app = &Self::app(rule)?.app;
        let request = self
            .http
            .post(format!("{}/apps/{app}/releases", self.base))
            .json(&json!({ "release": id }));
        let release = self
            .call(app, request, "application/vnd.heroku+json; version=3")
            .await?;
        Ok(self.release_from(app, &release))
    }
}

// ---------------------------------------------------------------------------------------------
// Deploy hook

/// POSTs a JSON description of the release to a URL kept in the secrets, signed with
/// `X-Shipline-Signature-256: sha256=<hex HMAC of the body>` when a signing secret is named.
pub struct Hook {
    http: reqwest::Client,
    secrets: Arc<Secrets>,
}

impl Hook {
    pub fn new(http: reqwest::Client, secrets: Arc<Secrets>) -> Self {
        Self { http, secrets }
    }

    async fn post(&self, rule: &DeployRule, body: Value) -> Result<Release, DeployError> {
        let hook = rule
            .hook
            .as_ref()
            .ok_or_else(|| DeployError::Refused("not a hook target".into()))?;
        let url = self
            .secrets
            .require(&hook.url_secret.value)
            .map_err(|e| DeployError::Refused(e.to_string()))?;
        let bytes = serde_json::to_vec(&body).expect("JSON serialises");
        let mut request = self
            .http
            .post(url.expose())
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("shipline/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(name) = &hook.signing_secret {
            let key = self
                .secrets
                .require(&name.value)
                .map_err(|e| DeployError::Refused(e.to_string()))?;
            request = request.header(
                "x-shipline-signature-256",
                format!(
                    "sha256={}",
                    shared::signature::sign_hex(key.expose().as_bytes(), &bytes)
                ),
            );
        }
        let response = request.body(bytes).send().await.map_err(unavailable)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            let id = answer["id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| body["sha"].as_str().unwrap_or_default().to_string());
            return Ok(Release::Live {
                id,
                version: answer["version"].as_str().map(str::to_string),
                url: answer["url"].as_str().map(str::to_string),
            });
        }
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => DeployError::RateLimited {
                retry_after: Duration::from_secs(retry_after.unwrap_or(30)),
            },
            s if s.is_server_error() => {
                DeployError::Unavailable(format!("deploy hook answered {s}"))
            }
            s => DeployError::Refused(format!("deploy hook refused the release ({s})")),
        })
    }
}

#[async_trait]
impl Deployer for Hook {
    async fn release(
        &self,
        rule: &DeployRule,
        request: &DeployRequest,
    ) -> Result<Release, DeployError> {
        self.post(
            rule,
            json!({
                "action": "deploy",
                "repo": request.repo, "branch": request.branch, "sha": request.sha,
                "environment": request.environment, "build_id": request.build_id,
                "artifacts": request.artifacts,
            }),
        )
        .await
    }

    async fn status(&self, _rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        // A hook answers when it is done: what it accepted is live.
        Ok(Release::Live {
            id: id.to_string(),
            version: None,
            url: None,
        })
    }

    async fn rollback(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        self.post(
            rule,
            json!({ "action": "rollback", "release": id, "sha": id }),
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Targets

/// The adapter for each kind of target a config can name. A kind whose credentials are not
/// configured refuses with a message that says which secret is missing.
pub struct Targets {
    pub heroku: Option<Arc<dyn Deployer>>,
    pub hook: Arc<dyn Deployer>,
    /// The `command` target's adapter: only the local stack (`shipline demo` / `serve`) has
    /// one; a deployed function refused such a config at cold start.
    pub command: Option<Arc<dyn Deployer>>,
}

impl Targets {
    fn pick(&self, rule: &DeployRule) -> Result<&dyn Deployer, DeployError> {
        match rule.target() {
            Some(Target::Heroku(_)) => self.heroku.as_deref().ok_or_else(|| {
                DeployError::Refused("no Heroku API key: set heroku_api_key in the secrets".into())
            }),
            Some(Target::Hook(_)) => Ok(self.hook.as_ref()),
            Some(Target::Command(_)) => self.command.as_deref().ok_or_else(|| {
                DeployError::Refused(
                    "a command target runs only under `shipline demo` or `serve`".into(),
                )
            }),
            None => Err(DeployError::Refused(
                "the deploy rule names no target".into(),
            )),
        }
    }
}

#[async_trait]
impl Deployer for Targets {
    async fn release(
        &self,
        rule: &DeployRule,
        request: &DeployRequest,
    ) -> Result<Release, DeployError> {
        self.pick(rule)?.release(rule, request).await
    }

    async fn status(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        self.pick(rule)?.status(rule, id).await
    }

    async fn newest(&self, rule: &DeployRule) -> Result<Release, DeployError> {
        self.pick(rule)?.newest(rule).await
    }

    async fn rollback(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        self.pick(rule)?.rollback(rule, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_variables_are_named_per_process_type() {
        assert_eq!(image_variable("web"), "SHIPLINE_IMAGE_WEB");
        assert_eq!(
            image_variable("release-worker"),
            "SHIPLINE_IMAGE_RELEASE_WORKER"
        );
    }
}
