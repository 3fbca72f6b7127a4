//! The decisions of build-dispatch, without I/O: which project and source version to build,
//! the variables that tie a build back to its request, what a result means for GitHub, the
//! chat and production.

use std::collections::BTreeMap;

use crate::codebuild::{BuildInfo, BuildStatus};
use serde::{Deserialize, Serialize};
use shared::config::{Config, Repo};
use shared::messages::{self, BuildRequest, Facts, PullRequestFacts, Trigger, short_sha};
use shared::ports::CommitState;

pub const VAR_REPO: &str = "SHIPLINE_REPO";
pub const VAR_SHA: &str = "SHIPLINE_SHA";
pub const VAR_BRANCH: &str = "SHIPLINE_BRANCH";
pub const VAR_PR: &str = "SHIPLINE_PR";
pub const VAR_DELIVERY: &str = "SHIPLINE_DELIVERY_ID";

/// What shipline remembers about a build it started (state key `run:<build id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub build_id: String,
    pub project: String,
    pub repo: String,
    pub sha: String,
    pub delivery_id: String,
    #[serde(default)]
    pub installation_id: Option<u64>,
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
    /// `IN_PROGRESS` until the result is reported; then the final status (or `SUPERSEDED`,
    /// `LOST`).
    pub status: String,
    #[serde(default)]
    pub superseded_by: Option<String>,
    /// The final commit status, recorded before it is posted: a pending status that a retry
    /// posts later must be followed by this again.
    #[serde(default)]
    pub final_status: Option<FinalStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalStatus {
    pub state: shared::ports::CommitState,
    pub description: String,
}

impl Run {
    pub fn is_final(&self) -> bool {
        self.status != BuildStatus::InProgress.as_str()
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
            build_id: build.id.clone(),
            project: build.project.clone(),
            repo: request.repo.clone(),
            sha: request.sha.to_string(),
            delivery_id: request.delivery_id.to_string(),
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
            status: BuildStatus::InProgress.as_str().into(),
            superseded_by: None,
            final_status: None,
        }
    }

    /// A run rebuilt from the variables a build carries, for an event about a build whose
    /// record is gone (or was never written because the function died right after starting).
    pub fn from_build_variables(build: &BuildInfo, now: i64) -> Option<Self> {
        let env = &build.environment;
        let repo = env.get(VAR_REPO)?.clone();
        let sha = env.get(VAR_SHA)?.clone();
        let branch = env.get(VAR_BRANCH).cloned();
        let pr = env.get(VAR_PR).and_then(|n| n.parse::<u64>().ok());
        let line = match (&branch, pr) {
            (Some(b), _) => format!("{repo}#{b}"),
            (None, Some(n)) => format!("{repo}#pr-{n}"),
            (None, None) => return None,
        };
        Some(Run {
            build_id: build.id.clone(),
            project: build.project.clone(),
            repo,
            sha,
            delivery_id: env.get(VAR_DELIVERY).cloned().unwrap_or_default(),
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
            status: BuildStatus::InProgress.as_str().into(),
            superseded_by: None,
            final_status: None,
        })
    }

    /// The facts every notification about this build carries.
    pub fn facts(&self) -> Facts {
        Facts {
            repo: Some(self.repo.clone()),
            sha: Some(self.sha.clone().into()),
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

/// Which project builds a request, or why it is not built.
pub enum Project<'a> {
    Build(&'a str),
    NotBuilt(String),
}

pub fn project_for<'a>(config: &Config, repo: &'a Repo, request: &BuildRequest) -> Project<'a> {
    match &request.trigger {
        Trigger::PullRequest(pr) if pr.fork => {
            if !config.build_forks(repo) {
                Project::NotBuilt(
                    "Not built: pull requests from forks are not built (build_forks is off)".into(),
                )
            } else {
                Project::Build(
                    repo.fork_codebuild_project
                        .as_deref()
                        .unwrap_or(&repo.codebuild_project),
                )
            }
        }
        _ => Project::Build(&repo.codebuild_project),
    }
}

/// The source version to build. A commit id builds exactly that commit; a fork's commit is not
/// in the base repository's branches, so CodeBuild is asked for `pr/<n>` (the pull request's
/// head), which a newer `synchronize` supersedes if it moves.
pub fn source_version(request: &BuildRequest) -> String {
    match &request.trigger {
        Trigger::PullRequest(pr) if pr.fork => format!("pr/{}", pr.number),
        _ => request.sha.to_string(),
    }
}

/// Plain variables that tie a build's events back to its request. Nothing secret.
pub fn build_variables(request: &BuildRequest) -> Vec<(String, String)> {
    let mut vars = vec![
        (VAR_REPO.to_string(), request.repo.clone()),
        (VAR_SHA.to_string(), request.sha.to_string()),
        (VAR_DELIVERY.to_string(), request.delivery_id.to_string()),
    ];
    match &request.trigger {
        Trigger::Push(p) => vars.push((VAR_BRANCH.to_string(), p.branch.clone())),
        Trigger::PullRequest(pr) => vars.push((VAR_PR.to_string(), pr.number.to_string())),
    }
    vars
}

/// CodeBuild keeps an idempotency token (at most 64 characters) for five minutes.
pub fn idempotency_token(delivery_id: &str) -> String {
    let id = messages::fifo_id(delivery_id);
    if id.len() <= 64 {
        id
    } else {
        id[id.len() - 64..].to_string()
    }
}

/// "3m 12s", "45s", "1h 02m".
pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// How a build ended, in GitHub's words, and what shipline calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: CommitState,
    pub description: String,
    /// `SUCCEEDED`, `FAILED`, ..., `SUPERSEDED`, `LOST`.
    pub status: String,
    pub succeeded: bool,
}

/// The result of a finished build, for a status description (GitHub allows 140 characters;
/// the client cuts longer ones) and the chat.
pub fn verdict(build: &BuildInfo, duration_secs: u64, superseded_by: Option<&str>) -> Verdict {
    let took = human_duration(duration_secs);
    let reason = build.failed_phase().map(|p| {
        let context = p
            .context
            .first()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        format!("in {}{context}", p.kind)
    });
    let (state, description) = match build.status {
        BuildStatus::Succeeded => (CommitState::Success, format!("Build succeeded in {took}")),
        BuildStatus::Failed => (
            CommitState::Failure,
            format!(
                "Build failed {}",
                reason.unwrap_or_else(|| format!("after {took}"))
            ),
        ),
        BuildStatus::Fault => (
            CommitState::Error,
            format!(
                "CodeBuild fault {}",
                reason.unwrap_or_else(|| format!("after {took}"))
            ),
        ),
        BuildStatus::TimedOut => (
            CommitState::Failure,
            format!(
                "Build timed out after {} min{}",
                build.timeout_minutes.unwrap_or(0),
                build
                    .failed_phase()
                    .map(|p| p.kind.as_str())
                    .or(build.current_phase.as_deref())
                    .filter(|p| !matches!(*p, "COMPLETED" | "FINALIZING"))
                    .map(|p| format!(" in {p}"))
                    .unwrap_or_default()
            ),
        ),
        BuildStatus::Stopped => match superseded_by {
            Some(sha) => (
                CommitState::Error,
                format!("Superseded by {}", short_sha(sha)),
            ),
            None => (CommitState::Error, format!("Build stopped after {took}")),
        },
        BuildStatus::InProgress => (
            CommitState::Pending,
            format!("Building on CodeBuild ({})", build.project),
        ),
    };
    Verdict {
        state,
        description,
        status: build.status.as_str().to_string(),
        succeeded: build.status == BuildStatus::Succeeded,
    }
}

/// What a green build deploys: only a branch push with a deploy rule, never a pull request or
/// a fork.
pub fn deploy_for<'a>(
    config: &'a Config,
    run: &Run,
) -> Option<(&'a shared::config::DeployRule, &'a str)> {
    let branch = run.branch.as_deref()?;
    if run.pr.is_some() || run.fork {
        return None;
    }
    let (name, repo) = config
        .repos
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&run.repo))?;
    config
        .deploy_rule(repo, branch)
        .map(|rule| (rule, name.as_str()))
}

pub fn deploy_request(
    run: &Run,
    rule: &shared::config::DeployRule,
    repo_name: &str,
    build: &BuildInfo,
    artifacts: BTreeMap<String, String>,
    now: String,
) -> messages::DeployRequest {
    messages::DeployRequest {
        v: messages::VERSION,
        repo: run.repo.clone(),
        branch: rule.branch.clone(),
        sha: run.sha.clone().into(),
        build_id: build.id.clone().into(),
        log_url: build.log_url.clone().or_else(|| run.log_url.clone()),
        target: rule.target_key(repo_name),
        environment: rule.environment.clone(),
        artifacts,
        delivery_id: run.delivery_id.clone().into(),
        commit_message: run.commit_message.clone(),
        author: run.author.clone(),
        installation_id: run.installation_id,
        requested_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codebuild::Phase;

    fn build(status: BuildStatus) -> BuildInfo {
        BuildInfo {
            id: "pax-user:1234".into(),
            project: "pax-user".into(),
            status,
            current_phase: Some("BUILD".into()),
            phases: vec![],
            log_url: None,
            environment: BTreeMap::new(),
            exported: BTreeMap::new(),
            timeout_minutes: Some(60),
        }
    }

    #[test]
    fn each_result_gets_its_own_honest_status() {
        let ok = verdict(&build(BuildStatus::Succeeded), 192, None);
        assert_eq!(
            (ok.state, ok.description.as_str()),
            (CommitState::Success, "Build succeeded in 3m 12s")
        );

        let mut failed = build(BuildStatus::Failed);
        failed.phases = vec![
            Phase { kind: "INSTALL".into(), status: Some("SUCCEEDED".into()), context: vec![] },
            Phase {
                kind: "BUILD".into(),
                status: Some("FAILED".into()),
                context: vec!["COMMAND_EXECUTION_ERROR: Error while executing command: make test. Reason: exit status 2".into()],
            },
        ];
        let v = verdict(&failed, 50, None);
        assert_eq!(v.state, CommitState::Failure);
        assert_eq!(
            v.description,
            "Build failed in BUILD: COMMAND_EXECUTION_ERROR: Error while executing command: make test. Reason: exit status 2"
        );
        assert_eq!(
            verdict(&build(BuildStatus::Fault), 5, None).state,
            CommitState::Error
        );
        assert_eq!(
            verdict(&build(BuildStatus::TimedOut), 3600, None).description,
            "Build timed out after 60 min in BUILD"
        );
        let stopped = verdict(&build(BuildStatus::Stopped), 5, Some("abcdef0123456"));
        assert_eq!(
            (stopped.state, stopped.description.as_str()),
            (CommitState::Error, "Superseded by abcdef0")
        );
        assert_eq!(
            verdict(&build(BuildStatus::Stopped), 5, None).description,
            "Build stopped after 5s"
        );
    }

    #[test]
    fn tokens_and_durations_fit_their_limits() {
        assert_eq!(
            idempotency_token("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        assert!(idempotency_token(&"x".repeat(200)).len() <= 64);
        assert_eq!(human_duration(3725), "1h 02m");
    }
}
