//! A `BuildRequest` becomes one CodeBuild build of that commit and a pending status; the older
//! build of the same line of work is stopped and reported superseded.

use shared::batch::Outcome;
use shared::config::Repo;
use shared::ids::BuildId;
use shared::messages::{BuildRequest, NotificationKind};
use shared::ports::{CommitState, CommitStatus};
use tracing::{info, warn};

use crate::Deps;
use crate::codebuild::{BuildInfo, BuildStatus, BuildsError, StartBuild};
use crate::error::DispatchError;
use crate::finalize::finalize;
use crate::plan::{self, Project};
use crate::records::{self, LineRecord, RequestRecord};
use crate::report::{link, notify, post_status};
use crate::run::{Run, RunStatus};

/// What became of asking for a build.
enum Started {
    Build(Box<Run>),
    /// CodeBuild will never build this request as it is; the reason says why.
    Refused(String),
}

pub async fn handle_build_request(
    deps: &Deps,
    request: &BuildRequest,
) -> Result<Outcome, DispatchError> {
    let now = deps.clock.unix();
    let Some(repo) = deps.config.repo(&request.repo) else {
        return Ok(Outcome::Skipped(format!(
            "repo {} is no longer in the config",
            request.repo
        )));
    };
    let state = deps.state.as_ref();
    let mut record = records::load_request(state, &request.delivery_id, now).await?;
    if record.settled || record.not_built.is_some() {
        return Ok(Outcome::Skipped(
            "this delivery was already dispatched".into(),
        ));
    }
    let project = match plan::project_for(&deps.config, repo, request) {
        Project::Build(p) => p.to_string(),
        Project::NotBuilt(reason) => return not_built(deps, request, reason).await,
    };

    // Start once: the state record survives retries; CodeBuild's idempotency token covers a
    // crash between the start and the record, for five minutes.
    let run = match &record.build_id {
        Some(id) => records::load_run(state, id, now)
            .await?
            .ok_or_else(|| DispatchError::RunMissing(id.clone()))?,
        None => match start_build(deps, request, &project, &mut record, now).await? {
            Started::Build(run) => *run,
            Started::Refused(reason) => return not_built(deps, request, reason).await,
        },
    };

    if !record.pending_posted {
        if run.final_status.is_some() {
            // The build finished while this request waited for a retry: a pending status
            // now would land after the final one.
            settle(deps, request, &mut record, now).await;
            return Ok(Outcome::Skipped(
                "the build finished before its pending status".into(),
            ));
        }
        post_pending(deps, repo, &run, now).await?;
        record.pending_posted = true;
        if let Err(e) = records::save_request(state, &request.delivery_id, &record, now).await {
            warn!(error = %e, "pending posted, but not recorded");
        }
        let channels = deps.config.notify_channels(repo);
        notify(
            deps,
            NotificationKind::BuildStarted,
            &run,
            &channels,
            |_| {},
        )
        .await;
    }

    repost_final_status(deps, &run.build_id, now).await?;
    settle(deps, request, &mut record, now).await;
    Ok(Outcome::Done)
}

/// Starts the build and records it: the run, the request's build id, the running index.
async fn start_build(
    deps: &Deps,
    request: &BuildRequest,
    project: &str,
    record: &mut RequestRecord,
    now: i64,
) -> Result<Started, DispatchError> {
    let start = StartBuild {
        project: project.to_string(),
        source_version: plan::source_version(request),
        environment: plan::build_variables(request),
        idempotency_token: plan::idempotency_token(&request.delivery_id),
    };
    let build = match deps.builds.start(start).await {
        Ok(build) => build,
        Err(e @ BuildsError::Refused(_)) => {
            return Ok(Started::Refused(format!(
                "CodeBuild refused to build {project}: {e}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    info!(build_id = %build.id, %project, "build started");
    let run = Run::from_request(request, &build, now);
    let state = deps.state.as_ref();
    records::save_run(state, &run, now).await?;
    record.build_id = Some(run.build_id.clone());
    records::save_request(state, &request.delivery_id, record, now).await?;
    records::add_running(state, &run.build_id, now).await?;
    Ok(Started::Build(Box::new(run)))
}

/// Supersedes the line's older build (when the repo wants that), then posts pending.
async fn post_pending(deps: &Deps, repo: &Repo, run: &Run, now: i64) -> Result<(), DispatchError> {
    if deps.config.supersede(repo) {
        supersede_previous(deps, repo, run, now).await?;
    }
    let status = CommitStatus {
        state: CommitState::Pending,
        target_url: Some(link(deps, run)),
        description: format!("Building on CodeBuild ({})", run.project),
        context: deps.config.defaults.status_context.clone(),
    };
    post_status(deps, &run.repo, &run.sha, &status, run.installation_id).await
}

/// The build may have finished while the pending status was on its way (a retry, or the two
/// queues' consumers racing): the final status must be GitHub's last word.
async fn repost_final_status(
    deps: &Deps,
    build_id: &BuildId,
    now: i64,
) -> Result<(), DispatchError> {
    let Some(latest) = records::load_run(deps.state.as_ref(), build_id, now).await? else {
        return Ok(());
    };
    let Some(done) = &latest.final_status else {
        return Ok(());
    };
    let status = CommitStatus {
        state: done.state,
        target_url: Some(link(deps, &latest)),
        description: done.description.clone(),
        context: deps.config.defaults.status_context.clone(),
    };
    post_status(
        deps,
        &latest.repo,
        &latest.sha,
        &status,
        latest.installation_id,
    )
    .await?;
    info!("final status posted again after a late pending");
    Ok(())
}

/// Nothing is left to do for the request. Best effort: a copy of it that finds it unsettled
/// only posts again what GitHub already shows.
async fn settle(deps: &Deps, request: &BuildRequest, record: &mut RequestRecord, now: i64) {
    record.settled = true;
    if let Err(e) =
        records::save_request(deps.state.as_ref(), &request.delivery_id, record, now).await
    {
        warn!(error = %e, "settled, but not recorded");
    }
}

/// A request that is deliberately not built: its status says why, and the chat hears it.
async fn not_built(
    deps: &Deps,
    request: &BuildRequest,
    reason: String,
) -> Result<Outcome, DispatchError> {
    let now = deps.clock.unix();
    let status = CommitStatus {
        state: CommitState::Error,
        target_url: None,
        description: reason.clone(),
        context: deps.config.defaults.status_context.clone(),
    };
    post_status(
        deps,
        &request.repo,
        &request.sha,
        &status,
        request.installation_id,
    )
    .await?;
    let record = RequestRecord {
        not_built: Some(reason.clone()),
        ..RequestRecord::default()
    };
    if let Err(e) =
        records::save_request(deps.state.as_ref(), &request.delivery_id, &record, now).await
    {
        warn!(error = %e, "not-built decision not recorded");
    }
    if let Some(repo) = deps.config.repo(&request.repo) {
        let placeholder = BuildInfo::new("", &repo.codebuild_project, BuildStatus::Stopped);
        let run = Run::from_request(request, &placeholder, now);
        let channels = deps.config.notify_channels(repo);
        notify(deps, NotificationKind::BuildSkipped, &run, &channels, |f| {
            f.reason = Some(reason.clone());
        })
        .await;
    }
    Ok(Outcome::Skipped(reason))
}

/// Stops the previous build of `run`'s line of work if it is still running, and makes this
/// build the line's current one.
async fn supersede_previous(
    deps: &Deps,
    repo: &Repo,
    run: &Run,
    now: i64,
) -> Result<(), DispatchError> {
    let state = deps.state.as_ref();
    let previous = records::load_line(state, &run.line, now).await?;
    if let Some(previous) = previous.filter(|p| p.build_id != run.build_id)
        && let Some(old) = records::load_run(state, &previous.build_id, now).await?
        && !old.is_final()
    {
        match deps.builds.stop(&old.build_id).await {
            Ok(()) => info!(old_build = %old.build_id, "superseded build stopped"),
            // Already finished or gone: nothing left to stop.
            Err(e @ BuildsError::Refused(_)) => {
                info!(error = %e, "superseded build could not be stopped");
            }
            Err(e) => return Err(e.into()),
        }
        let mut stopped = BuildInfo::new(old.build_id.as_str(), &old.project, BuildStatus::Stopped);
        stopped.log_url = old.log_url.clone();
        stopped.timeout_minutes = Some(old.timeout_minutes);
        let mut old = old;
        old.superseded_by = Some(run.sha.clone());
        let channels = deps.config.notify_channels(repo);
        finalize(deps, old, &stopped, &channels, RunStatus::Superseded).await?;
    }
    let line = LineRecord {
        build_id: run.build_id.clone(),
        sha: run.sha.clone(),
    };
    records::save_line(state, &run.line, &line, now).await?;
    Ok(())
}
