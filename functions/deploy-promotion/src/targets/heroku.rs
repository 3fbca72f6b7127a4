//! The Heroku Platform API as a deploy target: container releases by formation update,
//! followed through the app's releases, and rollbacks.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use shared::config::{DeployRule, HerokuTarget};
use shared::http::{self, Failure, USER_AGENT};
use shared::messages::DeployRequest;
use shared::secrets::SecretString;

use crate::deployer::{DeployError, Deployer, Named, Release};

pub const HEROKU_PUBLIC_API: &str = "https://api.heroku.com";

/// The Platform API's version 3; formation updates with Docker images need its variant.
const API_V3: &str = "application/vnd.heroku+json; version=3";
const API_V3_DOCKER: &str = "application/vnd.heroku+json; version=3.docker-releases";

/// Heroku refills about 75 requests a minute; a 429 that does not say how long to wait waits
/// a minute.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The image id a build exported for a process type: `SHIPLINE_IMAGE_<PROCESS>`.
pub fn image_variable(process: &str) -> String {
    format!(
        "SHIPLINE_IMAGE_{}",
        process
            .to_ascii_uppercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// A release as the Platform API describes it (`Release Info`); only the fields read here.
#[derive(Debug, Deserialize)]
struct HerokuRelease {
    #[serde(default)]
    id: String,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    status: Option<ReleaseStatus>,
    #[serde(default)]
    description: Option<String>,
    /// False once Heroku expired the release's slug (older than its retention).
    #[serde(default)]
    eligible_for_rollback: Option<bool>,
}

/// `failed`, `pending` or `succeeded`, per the Platform API reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReleaseStatus {
    Succeeded,
    Pending,
    Failed,
    /// Older than Heroku's release retention: it cannot be rolled back to.
    Expired,
    /// A status this code does not know: not live, so treated as failed.
    #[serde(other)]
    Other,
}

/// The body of a refusal: `{"id": "not_found", "message": "Couldn't find that app."}`.
#[derive(Debug, Default, Deserialize)]
struct HerokuError {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message: Option<String>,
}

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

    /// Sends `request` about `app`; a refusal becomes its `DeployError`, a success is handed
    /// back unread.
    async fn send(
        &self,
        app: &str,
        request: reqwest::RequestBuilder,
        accept: &str,
    ) -> Result<reqwest::Response, DeployError> {
        let response = request
            .header("accept", accept)
            .header("user-agent", USER_AGENT)
            .bearer_auth(self.key.expose())
            .send()
            .await
            .map_err(|e| DeployError::Unavailable(http::transport_error(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = http::retry_after(response.headers());
        let refusal: HerokuError = response.json().await.unwrap_or_default();
        Err(refused(app, status, retry_after, &refusal))
    }

    /// Sends `request` about `app` and reads the answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        app: &str,
        request: reqwest::RequestBuilder,
        accept: &str,
    ) -> Result<T, DeployError> {
        let response = self.send(app, request, accept).await?;
        response.json().await.map_err(|e| {
            DeployError::Unavailable(format!(
                "Heroku's answer is unreadable: {}",
                http::transport_error(e)
            ))
        })
    }

    /// The first release of `app` in `range` (the Platform API's `Range` header, *Ranges* in
    /// its reference: `version ]42..; max=1, order=asc` is the first after v42).
    async fn first_release(
        &self,
        app: &str,
        range: &str,
    ) -> Result<Option<HerokuRelease>, DeployError> {
        let request = self
            .http
            .get(format!("{}/apps/{app}/releases", self.base))
            .header("range", range);
        let releases: Vec<HerokuRelease> = self.call(app, request, API_V3).await?;
        Ok(releases.into_iter().next())
    }

    /// The version of the app's newest release.
    async fn newest_version(&self, app: &str) -> Result<Option<u64>, DeployError> {
        let newest = self
            .first_release(app, "version ..; max=1, order=desc")
            .await?;
        Ok(newest.and_then(|r| r.version))
    }

    /// The first release after version `since` (the newest, without one).
    async fn release_after(
        &self,
        app: &str,
        since: Option<u64>,
    ) -> Result<Option<Release>, DeployError> {
        let range = match since {
            Some(v) => format!("version ]{v}..; max=1, order=asc"),
            None => "version ..; max=1, order=desc".to_string(),
        };
        let release = self.first_release(app, &range).await?;
        Ok(release.map(|r| release_from(app, r)))
    }

    fn app(rule: &DeployRule) -> Result<&HerokuTarget, DeployError> {
        rule.heroku
            .as_ref()
            .ok_or_else(|| DeployError::Refused("not a Heroku target".into()))
    }
}

/// What a refusal means, in words that say what to fix.
fn refused(
    app: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    refusal: &HerokuError,
) -> DeployError {
    let id = &refusal.id;
    let message = refusal.message.as_deref().unwrap_or("no message");
    match http::classify(status, retry_after, RATE_LIMIT_WAIT) {
        Failure::RateLimited(retry_after) => DeployError::RateLimited { retry_after },
        Failure::Unavailable => DeployError::Unavailable(format!("Heroku {status}: {message}")),
        Failure::Rejected => DeployError::Refused(match status {
            StatusCode::UNAUTHORIZED => {
                format!("Heroku rejected the API key (401 {id}): {message}")
            }
            StatusCode::FORBIDDEN => {
                format!("Heroku API key may not deploy {app} (403 {id}): {message}")
            }
            // Heroku's message says what it could not find: the app, or a release of it.
            StatusCode::NOT_FOUND if message.contains("release") => {
                format!("Heroku app {app} has no such release (404 {id}): {message}")
            }
            StatusCode::NOT_FOUND => format!("Heroku app {app} not found (404 {id}): {message}"),
            s => format!("Heroku refused ({s} {id}): {message}"),
        }),
    }
}

fn release_from(app: &str, release: HerokuRelease) -> Release {
    let id = release.id;
    let version = release.version.map(|v| format!("v{v}"));
    match release.status {
        Some(ReleaseStatus::Succeeded) | None => Release::Live {
            id,
            version,
            url: Some(format!("https://dashboard.heroku.com/apps/{app}/activity")),
        },
        Some(ReleaseStatus::Pending) => Release::Pending { id, version },
        Some(ReleaseStatus::Failed | ReleaseStatus::Expired | ReleaseStatus::Other) => {
            Release::Failed {
                id: Some(id),
                reason: format!(
                    "release {} failed{}",
                    version.as_deref().unwrap_or("?"),
                    release
                        .description
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ),
            }
        }
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
        // As Heroku's CLI does for a container release (`container/release.ts`): note the
        // newest release before the update and follow the first one after it. The update
        // answers with the formation, not the release, and config changes, add-ons and
        // rollbacks make releases of their own, so the newest release may not be ours.
        let since = self.newest_version(app).await?;
        let unconfirmed = |reason: String| DeployError::Unconfirmed {
            reason,
            since: since.map(|v| v.to_string()),
        };
        let patch = self
            .http
            .patch(format!("{}/apps/{app}/formation", self.base))
            .json(&json!({ "updates": updates }));
        match self.send(app, patch, API_V3_DOCKER).await {
            Ok(_) => {}
            // A timeout or a 5xx may come after Heroku made the release: look before updating
            // again, so a release phase never runs twice.
            Err(DeployError::Unavailable(reason)) => return Err(unconfirmed(reason)),
            Err(e) => return Err(e),
        }
        match self.release_after(app, since).await {
            Ok(Some(release)) => Ok(release),
            Ok(None) => Err(unconfirmed(
                "Heroku listed no release after the formation update".into(),
            )),
            Err(e @ DeployError::Refused(_)) => Err(e),
            Err(e) => Err(unconfirmed(e.to_string())),
        }
    }

    async fn released_since(
        &self,
        rule: &DeployRule,
        since: Option<&str>,
    ) -> Result<Option<Release>, DeployError> {
        let since = since.and_then(|v| v.parse().ok());
        self.release_after(&Self::app(rule)?.app, since).await
    }

    async fn status(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        let app = &Self::app(rule)?.app;
        let request = self
            .http
            .get(format!("{}/apps/{app}/releases/{id}", self.base));
        let release = self.call(app, request, API_V3).await?;
        Ok(release_from(app, release))
    }

    /// `v41` is resolved to its release id: the Platform API's rollback takes an id, and Release
    /// Info takes an id or a version number.
    async fn rollback_candidate(
        &self,
        rule: &DeployRule,
        asked: &str,
    ) -> Result<Named, DeployError> {
        let app = &Self::app(rule)?.app;
        let key = asked
            .strip_prefix('v')
            .filter(|n| n.parse::<u64>().is_ok())
            .unwrap_or(asked);
        let request = self
            .http
            .get(format!("{}/apps/{app}/releases/{key}", self.base));
        let release: HerokuRelease = self.call(app, request, API_V3).await?;
        let version = release.version.map(|v| format!("v{v}"));
        let expired = release.status == Some(ReleaseStatus::Expired)
            || release.eligible_for_rollback == Some(false);
        if expired {
            return Err(DeployError::Refused(format!(
                "release {} of {app} has expired (older than Heroku keeps releases for rollback)",
                version.as_deref().unwrap_or(asked)
            )));
        }
        Ok(Named {
            id: release.id,
            version,
        })
    }

    async fn rollback(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        let app = &Self::app(rule)?.app;
        let request = self
            .http
            .post(format!("{}/apps/{app}/releases", self.base))
            .json(&json!({ "release": id }));
        let release = self.call(app, request, API_V3).await?;
        Ok(release_from(app, release))
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

    #[test]
    fn releases_read_as_live_pending_or_failed_with_the_release_description() {
        let read = |body: serde_json::Value| {
            release_from(
                "app",
                serde_json::from_value::<HerokuRelease>(body).unwrap(),
            )
        };
        assert!(matches!(
            read(json!({"id": "r", "version": 3, "status": "succeeded"})),
            Release::Live { ref version, .. } if version.as_deref() == Some("v3")
        ));
        assert!(matches!(
            read(json!({"id": "r", "status": "pending"})),
            Release::Pending { .. }
        ));
        assert_eq!(
            read(json!({"id": "r", "version": 3, "status": "failed", "description": "boom"})),
            Release::Failed {
                id: Some("r".into()),
                reason: "release v3 failed: boom".into()
            }
        );
        assert!(matches!(
            read(json!({"id": "r", "status": "expired"})),
            Release::Failed { .. }
        ));
    }

    #[test]
    fn refusals_say_what_to_fix_and_rate_limits_wait() {
        let refusal = HerokuError {
            id: "forbidden".into(),
            message: Some("no access".into()),
        };
        assert_eq!(
            refused("app", StatusCode::FORBIDDEN, None, &refusal).to_string(),
            "Heroku API key may not deploy app (403 forbidden): no access"
        );
        assert!(matches!(
            refused("app", StatusCode::TOO_MANY_REQUESTS, None, &HerokuError::default()),
            DeployError::RateLimited { retry_after } if retry_after == RATE_LIMIT_WAIT
        ));
        assert_eq!(
            refused(
                "app",
                StatusCode::BAD_GATEWAY,
                None,
                &HerokuError::default()
            )
            .to_string(),
            "deploy target unavailable: Heroku 502 Bad Gateway: no message"
        );
    }
}
