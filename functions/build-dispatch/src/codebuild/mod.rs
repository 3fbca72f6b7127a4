//! CodeBuild: the build port (start, stop, look up), the typed EventBridge "CodeBuild Build
//! State Change" event, and the plain facts about a build that the rest of shipline reads.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;

use shared::ports::Retryable;

pub mod aws;

/// A build's status, as CodeBuild names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuildStatus {
    InProgress,
    Succeeded,
    Failed,
    Fault,
    TimedOut,
    Stopped,
}

impl BuildStatus {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "IN_PROGRESS" => Self::InProgress,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "FAULT" => Self::Fault,
            "TIMED_OUT" => Self::TimedOut,
            "STOPPED" => Self::Stopped,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Fault => "FAULT",
            Self::TimedOut => "TIMED_OUT",
            Self::Stopped => "STOPPED",
        }
    }

    pub fn is_final(self) -> bool {
        self != Self::InProgress
    }
}

/// One phase of a build, with the reason CodeBuild gives when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub kind: String,
    pub status: Option<String>,
    /// `status-code: message` pairs, e.g. `COMMAND_EXECUTION_ERROR: Error while executing command: make. Reason: exit status 2`.
    pub context: Vec<String>,
}

/// What shipline knows about a build, from an event or from `BatchGetBuilds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `project:uuid` (CodeBuild's build id; the ARN ends in it).
    pub id: String,
    pub project: String,
    pub status: BuildStatus,
    pub current_phase: Option<String>,
    pub phases: Vec<Phase>,
    /// CloudWatch Logs console link, once the build has logs.
    pub log_url: Option<String>,
    /// Environment variables the build ran with (shipline's tie-back variables among them).
    pub environment: BTreeMap<String, String>,
    /// The buildspec's `exported-variables`, known once the build ended.
    pub exported: BTreeMap<String, String>,
    pub timeout_minutes: Option<u32>,
}

impl BuildInfo {
    /// A build known only by its id, project and status (no phases, logs or variables yet):
    /// what shipline reasons about when CodeBuild has not told it more.
    pub fn new(id: impl Into<String>, project: impl Into<String>, status: BuildStatus) -> Self {
        Self {
            id: id.into(),
            project: project.into(),
            status,
            current_phase: None,
            phases: vec![],
            log_url: None,
            environment: BTreeMap::new(),
            exported: BTreeMap::new(),
            timeout_minutes: None,
        }
    }

    /// The first phase that did not succeed, with its reason: what a status description and a
    /// chat message should say.
    pub fn failed_phase(&self) -> Option<&Phase> {
        self.phases.iter().find(|p| {
            p.status
                .as_deref()
                .is_some_and(|s| s != "SUCCEEDED" && s != "IN_PROGRESS")
        })
    }

    /// The console page of the build, which shows its phases and log.
    pub fn console_url(&self, region: &str) -> String {
        console_url(region, &self.project, &self.id)
    }
}

/// The console page of a build, by project and build id.
pub fn console_url(region: &str, project: &str, build_id: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/codesuite/codebuild/projects/{project}/build/{}/?region={region}",
        build_id.replace(':', "%3A")
    )
}

/// `arn:aws:codebuild:<region>:<account>:build/<project>:<uuid>` → `<project>:<uuid>`.
pub fn build_id_from_arn(arn: &str) -> &str {
    arn.rsplit_once(":build/").map_or(arn, |(_, id)| id)
}

/// The region inside a build ARN.
pub fn region_from_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartBuild {
    pub project: String,
    /// A commit id: the build checks out exactly this commit.
    pub source_version: String,
    /// Plain, non-secret variables only: they show in the console and in events.
    pub environment: Vec<(String, String)>,
    /// At most 64 characters; CodeBuild keeps it for five minutes.
    pub idempotency_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildsError {
    /// Throttled, a 5xx, a network failure: try again later.
    #[error("CodeBuild unavailable: {0}")]
    Unavailable(String),
    /// The request cannot succeed as it is (unknown project, access denied, bad parameter).
    #[error("CodeBuild refused: {0}")]
    Refused(String),
}

impl Retryable for BuildsError {
    fn is_retryable(&self) -> bool {
        matches!(self, BuildsError::Unavailable(_))
    }
}

/// The build service: CodeBuild in production, a local runner in the demo.
#[async_trait]
pub trait Builds: Send + Sync {
    async fn start(&self, request: StartBuild) -> Result<BuildInfo, BuildsError>;
    async fn stop(&self, build_id: &str) -> Result<(), BuildsError>;
    /// Up to 100 ids per call; unknown ids are left out.
    async fn get(&self, build_ids: &[String]) -> Result<Vec<BuildInfo>, BuildsError>;
}

// ---------------------------------------------------------------------------------------------
// EventBridge "CodeBuild Build State Change"

#[derive(Debug, Clone, Deserialize)]
pub struct StateChangeEvent {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    /// ISO 8601; the only reliable time in the event.
    pub time: String,
    #[serde(default)]
    pub region: Option<String>,
    pub detail: StateChangeDetail,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StateChangeDetail {
    #[serde(rename = "build-status")]
    pub build_status: String,
    #[serde(rename = "project-name")]
    pub project_name: String,
    #[serde(rename = "build-id")]
    pub build_id: String,
    #[serde(rename = "current-phase", default)]
    pub current_phase: Option<String>,
    #[serde(rename = "additional-information", default)]
    pub additional: AdditionalInformation,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AdditionalInformation {
    #[serde(default)]
    pub environment: Option<EventEnvironment>,
    #[serde(rename = "timeout-in-minutes", default)]
    pub timeout_in_minutes: Option<f64>,
    #[serde(default)]
    pub logs: Option<EventLogs>,
    #[serde(default)]
    pub phases: Vec<EventPhase>,
    #[serde(rename = "source-version", default)]
    pub source_version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventEnvironment {
    #[serde(rename = "environment-variables", default)]
    pub variables: Vec<EventVariable>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventVariable {
    pub name: String,
    #[serde(default)]
    pub value: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventLogs {
    #[serde(rename = "deep-link", default)]
    pub deep_link: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventPhase {
    #[serde(rename = "phase-type")]
    pub phase_type: String,
    #[serde(rename = "phase-status", default)]
    pub phase_status: Option<String>,
    #[serde(rename = "phase-context", default)]
    pub phase_context: Vec<String>,
}

pub const STATE_CHANGE: &str = "CodeBuild Build State Change";

impl StateChangeEvent {
    /// The build as the event describes it; `None` for a status shipline does not know.
    pub fn build_info(&self) -> Option<BuildInfo> {
        let d = &self.detail;
        let status = BuildStatus::parse(&d.build_status)?;
        let environment = d
            .additional
            .environment
            .iter()
            .flat_map(|e| &e.variables)
            // Only plain variables carry their value; the others hold a parameter name.
            .filter(|v| v.kind.as_deref().is_none_or(|k| k == "PLAINTEXT"))
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        Some(BuildInfo {
            id: build_id_from_arn(&d.build_id).to_string(),
            project: d.project_name.clone(),
            status,
            current_phase: d.current_phase.clone(),
            phases: d
                .additional
                .phases
                .iter()
                .map(|p| Phase {
                    kind: p.phase_type.clone(),
                    status: p.phase_status.clone(),
                    context: p
                        .phase_context
                        .iter()
                        .filter(|c| !c.is_empty())
                        .cloned()
                        .collect(),
                })
                .collect(),
            log_url: d.additional.logs.as_ref().and_then(|l| l.deep_link.clone()),
            environment,
            exported: BTreeMap::new(),
            timeout_minutes: d
                .additional
                .timeout_in_minutes
                .map(|m| m.max(0.0).round() as u32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(file: &str) -> StateChangeEvent {
        serde_json::from_str(file).unwrap()
    }

    #[test]
    fn a_succeeded_event_reads_its_variables_phases_and_log() {
        let e = event(include_str!(
            "../../testdata/codebuild-state-change-succeeded-with-envvars.json"
        ));
        assert_eq!(e.detail_type, STATE_CHANGE);
        let build = e.build_info().unwrap();
        assert_eq!(
            build.id,
            "my-sample-project:8745a7a9-c340-456a-9166-edf953571bEX"
        );
        assert_eq!(build.status, BuildStatus::Succeeded);
        assert_eq!(
            build.environment.get("TEST").map(String::as_str),
            Some("TEST")
        );
        assert_eq!(build.timeout_minutes, Some(60));
        assert!(
            build
                .log_url
                .as_deref()
                .unwrap()
                .starts_with("https://console.aws.amazon.com/cloudwatch")
        );
        assert!(build.failed_phase().is_none());
    }

    #[test]
    fn an_early_in_progress_event_has_no_logs_yet() {
        let e = event(include_str!(
            "../../testdata/codebuild-state-change-in_progress.json"
        ));
        let build = e.build_info().unwrap();
        assert_eq!(build.status, BuildStatus::InProgress);
        assert!(build.log_url.is_none());
        assert_eq!(region_from_arn(&e.detail.build_id), Some("us-east-1"));
    }

    #[test]
    fn a_failed_phase_carries_its_reason() {
        let mut e = event(include_str!(
            "../../testdata/codebuild-state-change-succeeded-with-envvars.json"
        ));
        e.detail.build_status = "FAILED".into();
        let build_phase = e
            .detail
            .additional
            .phases
            .iter_mut()
            .find(|p| p.phase_type == "BUILD")
            .unwrap();
        build_phase.phase_status = Some("FAILED".into());
        build_phase.phase_context =
            vec!["COMMAND_EXECUTION_ERROR: Error while executing command: make test. Reason: exit status 2".into()];
        let build = e.build_info().unwrap();
        let failed = build.failed_phase().unwrap();
        assert_eq!(failed.kind, "BUILD");
        assert!(failed.context[0].starts_with("COMMAND_EXECUTION_ERROR"));
    }

    #[test]
    fn unknown_statuses_are_not_guessed() {
        let mut e = event(include_str!(
            "../../testdata/codebuild-state-change-in_progress.json"
        ));
        e.detail.build_status = "SOMETHING_NEW".into();
        assert!(e.build_info().is_none());
    }
}
