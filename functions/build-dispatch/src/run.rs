//! A run: what shipline remembers about one build it started, and how far that build got.

use serde::{Deserialize, Serialize};
use shared::ids::{BuildId, DeliveryId, Sha};
use shared::messages::{BuildRequest, Facts, PullRequestFacts, Trigger};
use shared::ports::CommitState;

use crate::codebuild::{BuildInfo, BuildStatus};
use crate::plan::{VAR_BRANCH, VAR_DELIVERY, VAR_PR, VAR_REPO, VAR_SHA};

/// How far a run got: CodeBuild's own status, or one of the two ends only shipline knows of.
/// Stored as CodeBuild spells its statuses (`IN_PROGRESS`, `TIMED_OUT`, ...), so records written
/// when this was a string still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RunStatus {
    Build(BuildStatus),
    /// Stopped by shipline because a newer commit of its line of work arrived.
    Superseded,
    /// CodeBuild never told the end of it; the sweep gave up waiting.
    Lost,
}

impl RunStatus {
    pub const IN_PROGRESS: Self = Self::Build(BuildStatus::InProgress);

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Build(status) => status.as_str(),
            Self::Superseded => "SUPERSEDED",
            Self::Lost => "LOST",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "SUPERSEDED" => Some(Self::Superseded),
            "LOST" => Some(Self::Lost),
            other => BuildStatus::parse(other).map(Self::Build),
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<BuildStatus> for RunStatus {
    fn from(status: BuildStatus) -> Self {
        Self::Build(status)
    }
}

impl From<RunStatus> for String {
    fn from(status: RunStatus) -> String {
        status.as_str().to_string()
    }
}

impl TryFrom<String> for RunStatus {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| format!("not a run status: {text}"))
    }
}

/// What shipline remembers about a build it started (`StateKey::Run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub build_id: BuildId,
    pub project: String,
    pub repo: String,
    pub sha: Sha,
    pub delivery_id: DeliveryId,
    #[serde(default)]
    pub installation_id: Option<u64>,
    /// `repo#branch` or `repo#pr-N`: the builds that supersede one another.
    pub line: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub pr: Option<PullRequestFacts>,
    #[serde(default)]
    pub fork: bool,
    #[serde(default)]
    pub commit_message: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    /// Unix seconds.
    pub started_at: i64,
    pub timeout_minutes: u32,
    #[serde(default)]
    pub log_url: Option<String>,
    /// `InProgress` until the result is reported.
    pub status: RunStatus,
    #[serde(default)]
    pub superseded_by: Option<Sha>,
    /// The final commit status, recorded before it is posted: a pending status that a retry
    /// posts later must be followed by this again.
    #[serde(default)]
    pub final_status: Option<FinalStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalStatus {
    pub state: CommitState,
    pub description: String,
    /// When the result was recorded (RFC 3339): the time of its chat notification, however
    /// late a retry sends it, so that it never overtakes the deploy's story in the thread.
    #[serde(default)]
    pub at: Option<String>,
}

impl Run {
    pub fn is_final(&self) -> bool {
        self.status != RunStatus::IN_PROGRESS
    }

    pub fn from_request(request: &BuildRequest, build: &BuildInfo, now: i64) -> Self {
        let (branch, pr, fork, message, author) = match &request.trigger {
            Trigger::Push(p) => (
                Some(p.branch.clone()),
                None,
                false,
                Some(first_line(&p.head_commit_message)),
                Some(
                    p.head_commit_author
                        .clone()
                        .unwrap_or_else(|| p.pusher.clone()),
                ),
            ),
            Trigger::PullRequest(pr) => (
                None,
                Some(PullRequestFacts {
                    number: pr.number,
                    title: pr.title.clone(),
                    url: pr.url.clone(),
                }),
                pr.fork,
                None,
                Some(pr.author.clone()),
            ),
        };
        Run {
            build_id: BuildId::new(build.id.clone()),
            project: build.project.clone(),
            repo: request.repo.clone(),
            sha: request.sha.clone(),
            delivery_id: request.delivery_id.clone(),
            installation_id: request.installation_id,
            line: request.line_of_work(),
            branch,
            pr,
            fork,
            commit_message: message,
            author,
            started_at: now,
            timeout_minutes: build.timeout_minutes.unwrap_or(60),
            log_url: build.log_url.clone(),
            status: RunStatus::IN_PROGRESS,
            superseded_by: None,
            final_status: None,
        }
    }

    /// A run rebuilt from the variables a build carries, for an event about a build whose
    /// record is gone (or was never written because the function died right after starting).
    pub fn from_build_variables(build: &BuildInfo, now: i64) -> Option<Self> {
        let env = &build.environment;
        let repo = env.get(VAR_REPO)?.clone();
        let sha = Sha::new(env.get(VAR_SHA)?.clone());
        let branch = env.get(VAR_BRANCH).cloned();
        let pr = env.get(VAR_PR).and_then(|n| n.parse::<u64>().ok());
        let line = match (&branch, pr) {
            (Some(b), _) => format!("{repo}#{b}"),
            (None, Some(n)) => format!("{repo}#pr-{n}"),
            (None, None) => return None,
        };
        Some(Run {
            build_id: BuildId::new(build.id.clone()),
            project: build.project.clone(),
            repo,
            sha,
            delivery_id: env
                .get(VAR_DELIVERY)
                .cloned()
                .map(DeliveryId::new)
                .unwrap_or_default(),
            installation_id: None,
            line,
            branch,
            pr: pr.map(|number| PullRequestFacts {
                number,
                title: String::new(),
                url: String::new(),
            }),
            fork: false,
            commit_message: None,
            author: None,
            started_at: now,
            timeout_minutes: build.timeout_minutes.unwrap_or(60),
            log_url: build.log_url.clone(),
            status: RunStatus::IN_PROGRESS,
            superseded_by: None,
            final_status: None,
        })
    }

    /// The facts every notification about this build carries.
    pub fn facts(&self) -> Facts {
        Facts {
            repo: Some(self.repo.clone()),
            sha: Some(self.sha.clone()),
            branch: self.branch.clone(),
            pull_request: self.pr.clone().filter(|p| !p.url.is_empty()),
            commit_message: self.commit_message.clone().filter(|m| !m.is_empty()),
            author: self.author.clone(),
            url: self.log_url.clone(),
            ..Facts::default()
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_statuses_keep_the_spelling_stored_records_have() {
        let spelled = [
            (RunStatus::Build(BuildStatus::InProgress), "IN_PROGRESS"),
            (RunStatus::Build(BuildStatus::Succeeded), "SUCCEEDED"),
            (RunStatus::Build(BuildStatus::Failed), "FAILED"),
            (RunStatus::Build(BuildStatus::Fault), "FAULT"),
            (RunStatus::Build(BuildStatus::TimedOut), "TIMED_OUT"),
            (RunStatus::Build(BuildStatus::Stopped), "STOPPED"),
            (RunStatus::Superseded, "SUPERSEDED"),
            (RunStatus::Lost, "LOST"),
        ];
        for (status, text) in spelled {
            assert_eq!(serde_json::to_value(status).unwrap(), text);
            assert_eq!(
                serde_json::from_value::<RunStatus>(text.into()).unwrap(),
                status
            );
            assert_eq!(status.to_string(), text);
        }
        for status in [
            BuildStatus::InProgress,
            BuildStatus::Succeeded,
            BuildStatus::Failed,
            BuildStatus::Fault,
            BuildStatus::TimedOut,
            BuildStatus::Stopped,
        ] {
            assert_eq!(RunStatus::from(status).as_str(), status.as_str());
        }
    }

    #[test]
    fn a_run_record_written_with_plain_strings_still_reads() {
        let stored = serde_json::json!({
            "build_id": "pax-user:1", "project": "pax-user", "repo": "pax-app/User",
            "sha": "abc", "delivery_id": "d-1", "line": "pax-app/User#master",
            "started_at": 0, "timeout_minutes": 60, "status": "SUPERSEDED",
            "superseded_by": "def"
        });
        let run: Run = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(run.status, RunStatus::Superseded);
        assert_eq!(run.build_id, "pax-user:1");
        assert_eq!(run.superseded_by.as_deref(), Some("def"));
        let written = serde_json::to_value(&run).unwrap();
        for field in ["build_id", "sha", "delivery_id", "status", "superseded_by"] {
            assert_eq!(written[field], stored[field], "{field}");
        }
    }
}
