//! A deploy hook as a deploy target: the release described in a signed JSON POST to a URL kept
//! in the secrets; what the hook accepted is live.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize};
use shared::config::DeployRule;
use shared::http::{self, Failure, USER_AGENT};
use shared::ids::{BuildId, Sha};
use shared::messages::DeployRequest;
use shared::secrets::Secrets;

use crate::deployer::{DeployError, Deployer, Release};

/// A 429 that does not say how long to wait waits half a minute.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// What a hook is sent. Keys in alphabetical order, as hooks have always received them.
#[derive(Debug, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum HookCall<'a> {
    Deploy {
        artifacts: &'a BTreeMap<String, String>,
        branch: &'a str,
        build_id: &'a BuildId,
        environment: &'a str,
        repo: &'a str,
        sha: &'a Sha,
    },
    Rollback {
        release: &'a str,
        sha: &'a str,
    },
}

/// What a hook may answer. A hook's answer is whatever its author wrote: no body, another
/// shape, or a field of another type is ignored, never an error, since the release is live.
#[derive(Debug, Default, Deserialize)]
struct HookAnswer {
    #[serde(default, deserialize_with = "text")]
    id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    version: Option<String>,
    #[serde(default, deserialize_with = "text")]
    url: Option<String>,
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

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

    /// Sends `call`; a release the hook does not name is called by `fallback_id`.
    async fn post(
        &self,
        rule: &DeployRule,
        call: &HookCall<'_>,
        fallback_id: &str,
    ) -> Result<Release, DeployError> {
        let hook = rule
            .hook
            .as_ref()
            .ok_or_else(|| DeployError::Refused("not a hook target".into()))?;
        let url = self
            .secrets
            .require(&hook.url_secret.value)
            .map_err(|e| DeployError::Refused(e.to_string()))?;
        let bytes = serde_json::to_vec(call).expect("JSON serialises");
        let mut request = self
            .http
            .post(url.expose())
            .header("content-type", "application/json")
            .header("user-agent", USER_AGENT);
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
        let response = request
            .body(bytes)
            .send()
            .await
            .map_err(|e| DeployError::Unavailable(http::transport_error(e)))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = http::retry_after(response.headers());
            return Err(match http::classify(status, retry_after, RATE_LIMIT_WAIT) {
                Failure::RateLimited(retry_after) => DeployError::RateLimited { retry_after },
                Failure::Unavailable => {
                    DeployError::Unavailable(format!("deploy hook answered {status}"))
                }
                Failure::Rejected => {
                    DeployError::Refused(format!("deploy hook refused the release ({status})"))
                }
            });
        }
        let answer: HookAnswer = response.json().await.unwrap_or_default();
        Ok(Release::Live {
            id: answer.id.unwrap_or_else(|| fallback_id.to_string()),
            version: answer.version,
            url: answer.url,
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
        let call = HookCall::Deploy {
            artifacts: &request.artifacts,
            branch: &request.branch,
            build_id: &request.build_id,
            environment: &request.environment,
            repo: &request.repo,
            sha: &request.sha,
        };
        self.post(rule, &call, &request.sha).await
    }

    async fn rollback(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        let call = HookCall::Rollback {
            release: id,
            sha: id,
        };
        self.post(rule, &call, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_is_described_with_sorted_keys_and_its_action() {
        let artifacts =
            BTreeMap::from([("SHIPLINE_IMAGE_WEB".to_string(), "sha256:1".to_string())]);
        let call = HookCall::Deploy {
            artifacts: &artifacts,
            branch: "master",
            build_id: &BuildId::new("p:1"),
            environment: "production",
            repo: "o/r",
            sha: &Sha::new("abc"),
        };
        assert_eq!(
            serde_json::to_string(&call).unwrap(),
            r#"{"action":"deploy","artifacts":{"SHIPLINE_IMAGE_WEB":"sha256:1"},"branch":"master","build_id":"p:1","environment":"production","repo":"o/r","sha":"abc"}"#
        );
        let call = HookCall::Rollback {
            release: "r-1",
            sha: "r-1",
        };
        assert_eq!(
            serde_json::to_string(&call).unwrap(),
            r#"{"action":"rollback","release":"r-1","sha":"r-1"}"#
        );
    }

    #[test]
    fn an_answer_of_another_shape_is_ignored_field_by_field() {
        let answer: HookAnswer =
            serde_json::from_str(r#"{"id": "d-7", "version": 42, "url": null}"#).unwrap();
        assert_eq!(
            (answer.id.as_deref(), answer.version, answer.url),
            (Some("d-7"), None, None)
        );
    }
}
