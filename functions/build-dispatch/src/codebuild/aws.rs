//! The `Builds` port on AWS CodeBuild.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_codebuild::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_codebuild::types::{Build, EnvironmentVariable, EnvironmentVariableType};

use crate::codebuild::{BuildInfo, BuildStatus, Builds, BuildsError, Phase, StartBuild};

pub struct CodeBuild {
    client: aws_sdk_codebuild::Client,
}

impl CodeBuild {
    pub fn new(client: aws_sdk_codebuild::Client) -> Self {
        Self { client }
    }
}

fn builds_error<E, R>(e: SdkError<E, R>) -> BuildsError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let refused = match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            // ResourceNotFound, InvalidInput, AccessDenied, OAuthProviderException: the call
            // cannot succeed as it is. AccountLimitExceeded ("Cannot have more than X active
            // builds") and throttling pass with time.
            !(code.contains("Throttl")
                || code.contains("LimitExceeded")
                || code.contains("InternalFailure")
                || code.contains("ServiceUnavailable"))
        }
        _ => false,
    };
    let text = DisplayErrorContext(e).to_string();
    if refused {
        BuildsError::Refused(text)
    } else {
        BuildsError::Unavailable(text)
    }
}

/// The plain facts of an SDK `Build`.
pub fn build_info(build: &Build) -> BuildInfo {
    let status = build
        .build_status()
        .and_then(|s| BuildStatus::parse(s.as_str()))
        .unwrap_or(BuildStatus::InProgress);
    BuildInfo {
        id: build.id().unwrap_or_default().to_string(),
        project: build.project_name().unwrap_or_default().to_string(),
        status,
        current_phase: build.current_phase().map(str::to_string),
        phases: build
            .phases()
            .iter()
            .map(|p| Phase {
                kind: p
                    .phase_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                status: p.phase_status().map(|s| s.as_str().to_string()),
                context: p
                    .contexts()
                    .iter()
                    .filter_map(|c| match (c.status_code(), c.message()) {
                        (Some(code), Some(message)) if !message.is_empty() => {
                            Some(format!("{code}: {message}"))
                        }
                        (Some(code), _) => Some(code.to_string()),
                        (None, Some(message)) if !message.is_empty() => Some(message.to_string()),
                        _ => None,
                    })
                    .collect(),
            })
            .collect(),
        log_url: build.logs().and_then(|l| l.deep_link()).map(str::to_string),
        environment: build
            .environment()
            .map(|e| {
                e.environment_variables()
                    .iter()
                    .filter(|v| {
                        v.r#type()
                            .is_none_or(|t| *t == EnvironmentVariableType::Plaintext)
                    })
                    .map(|v| (v.name().to_string(), v.value().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        exported: build
            .exported_environment_variables()
            .iter()
            .filter_map(|v| {
                Some((
                    v.name()?.to_string(),
                    v.value().unwrap_or_default().to_string(),
                ))
            })
            .collect::<BTreeMap<_, _>>(),
        timeout_minutes: build
            .timeout_in_minutes()
            .and_then(|m| u32::try_from(m).ok()),
    }
}

#[async_trait]
impl Builds for CodeBuild {
    async fn start(&self, request: StartBuild) -> Result<BuildInfo, BuildsError> {
        let variables = request
            .environment
            .into_iter()
            .map(|(name, value)| {
                EnvironmentVariable::builder()
                    .name(name)
                    .value(value)
                    .r#type(EnvironmentVariableType::Plaintext)
                    .build()
                    .expect("name and value are set")
            })
            .collect();
        let out = self
            .client
            .start_build()
            .project_name(&request.project)
            .source_version(&request.source_version)
            .idempotency_token(&request.idempotency_token)
            .set_environment_variables_override(Some(variables))
            .send()
            .await
            .map_err(builds_error)?;
        let build = out
            .build_value
            .as_ref()
            .ok_or_else(|| BuildsError::Unavailable("StartBuild returned no build".into()))?;
        Ok(build_info(build))
    }

    async fn stop(&self, build_id: &str) -> Result<(), BuildsError> {
        self.client
            .stop_build()
            .id(build_id)
            .send()
            .await
            .map(|_| ())
            .map_err(builds_error)
    }

    async fn get(&self, build_ids: &[String]) -> Result<Vec<BuildInfo>, BuildsError> {
        let mut found = Vec::with_capacity(build_ids.len());
        for chunk in build_ids.chunks(100) {
            let out = self
                .client
                .batch_get_builds()
                .set_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(builds_error)?;
            found.extend(out.builds().iter().map(build_info));
        }
        Ok(found)
    }
}
