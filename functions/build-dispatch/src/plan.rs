//! The decisions of build-dispatch, without I/O: which project and source version to build,
//! the variables that tie a build back to its request, what a result means for GitHub, the
//! chat and production.

use std::collections::BTreeMap;

use crate::codebuild::{BuildInfo, BuildStatus};
use crate::run::Run;
use shared::config::{Config, DeployRule, Repo};
use shared::messages::{self, BuildRequest, Trigger, short_sha};
use shared::ports::CommitState;

pub const VAR_REPO: &str = "SHIPLINE_REPO";
pub const VAR_SHA: &str = "SHIPLINE_SHA";
pub const VAR_BRANCH: &str = "SHIPLINE_BRANCH";
pub const VAR_PR: &str = "SHIPLINE_PR";
pub const VAR_DELIVERY: &str = "SHIPLINE_DELIVERY_ID";

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

/// The source version to build: always the requested commit, so the status posted on it
/// describes the code that was built. A fork's commit is not in the base repository's branches;
/// it is reached through the pull request's ref and pinned there: `refs/pull/<n>/head^{<sha>}`
/// (CodeBuild user guide, *Source version sample with AWS CodeBuild*). `pr/<n>` alone would
/// build whatever the head is when CodeBuild clones.
pub fn source_version(request: &BuildRequest) -> String {
    match &request.trigger {
        Trigger::PullRequest(pr) if pr.fork => {
            format!("refs/pull/{}/head^{{{}}}", pr.number, request.sha)
        }
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

/// How a build ended, in GitHub's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: CommitState,
    pub description: String,
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
        succeeded: build.status == BuildStatus::Succeeded,
    }
}

/// What a green build deploys: only a branch push with a deploy rule, never a pull request or
/// a fork.
pub fn deploy_for<'a>(config: &'a Config, run: &Run) -> Option<(&'a DeployRule, &'a str)> {
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
    rule: &DeployRule,
    repo_name: &str,
    build: &BuildInfo,
    artifacts: BTreeMap<String, String>,
    now: String,
) -> messages::DeployRequest {
    messages::DeployRequest {
        v: messages::VERSION,
        repo: run.repo.clone(),
        branch: rule.branch.clone(),
        sha: run.sha.clone(),
        build_id: build.id.clone().into(),
        log_url: build.log_url.clone().or_else(|| run.log_url.clone()),
        target: rule.target_key(repo_name),
        environment: rule.environment.clone(),
        artifacts,
        delivery_id: run.delivery_id.clone(),
        commit_message: run.commit_message.clone(),
        author: run.author.clone(),
        installation_id: run.installation_id,
        requested_at: now,
        promotion: None,
        requested_by: None,
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
