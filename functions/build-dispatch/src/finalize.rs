//! A finished build becomes its final commit status, a `DeployRequest` when a stable branch went
//! green, and a notification; a build still running only leaves its log link behind.

use std::collections::BTreeMap;

use shared::batch::Outcome;
use shared::config::DeployRule;
use shared::ids::BuildId;
use shared::messages::{self, DeployQueueMessage, NotificationKind};
use shared::ports::{CommitStatus, OutgoingMessage, Retryable};
use tracing::{Instrument, info, warn};

use crate::Deps;
use crate::codebuild::{BuildInfo, StateChangeEvent};
use crate::error::DispatchError;
use crate::plan::{self, Verdict};
use crate::records;
use crate::report::{link, notify, post_status};
use crate::run::{FinalStatus, Run, RunStatus};

pub async fn handle_state_change(
    deps: &Deps,
    event: &StateChangeEvent,
) -> Result<Outcome, DispatchError> {
    let Some(build) = event.build_info() else {
        return Ok(Outcome::Skipped(format!(
            "unknown build status {}",
            event.detail.build_status
        )));
    };
    let span =
        tracing::info_span!("build_event", build_id = %build.id, status = build.status.as_str());
    state_change(deps, &build).instrument(span).await
}

async fn state_change(deps: &Deps, build: &BuildInfo) -> Result<Outcome, DispatchError> {
    let now = deps.clock.unix();
    let state = deps.state.as_ref();
    let run = match records::load_run(state, &BuildId::new(build.id.clone()), now).await? {
        Some(run) => run,
        // Started by shipline, but its record is gone: adopt it from its variables.
        None => match Run::from_build_variables(build, now) {
            Some(run) => run,
            None => return Ok(Outcome::Skipped("not a build shipline started".into())),
        },
    };
    if run.is_final() {
        return Ok(Outcome::Skipped(format!(
            "build already reported as {}",
            run.status
        )));
    }
    let Some(repo) = deps.config.repo(&run.repo) else {
        return Ok(Outcome::Skipped(format!(
            "repo {} is no longer in the config",
            run.repo
        )));
    };
    if !build.status.is_final() {
        // Keep the log link for the final status.
        if run.log_url.is_none() && build.log_url.is_some() {
            let mut run = run;
            run.log_url = build.log_url.clone();
            records::save_run(state, &run, now).await?;
        }
        return Ok(Outcome::Done);
    }
    let channels = deps.config.notify_channels(repo);
    finalize(deps, run, build, &channels, build.status.into()).await?;
    Ok(Outcome::Done)
}

/// Reports a finished build: a deploy request when a stable branch went green, the final
/// commit status, the chat; then records it as final. Each step is safe to repeat, so a retry
/// after a failure part-way does no harm (the deploy request is deduplicated by build id).
pub async fn finalize(
    deps: &Deps,
    mut run: Run,
    build: &BuildInfo,
    channels: &[String],
    final_status: RunStatus,
) -> Result<(), DispatchError> {
    let now = deps.clock.unix();
    let state = deps.state.as_ref();
    let duration = u64::try_from(now - run.started_at).unwrap_or(0);
    if run.log_url.is_none() {
        run.log_url = build.log_url.clone();
    }
    let verdict = plan::verdict(build, duration, run.superseded_by.as_deref());

    let deploy = plan::deploy_for(&deps.config, &run).filter(|_| verdict.succeeded);
    let artifacts = match deploy {
        Some(_) => exported_variables(deps, build).await?,
        None => build.exported.clone(),
    };
    if let Some((rule, repo_name)) = deploy {
        request_deploy(deps, &run, build, rule, repo_name, artifacts.clone()).await?;
    }
    // Best effort: the build's status and story never wait on the list `/deploy` reads.
    if run.final_status.is_none()
        && let Err(e) =
            records::add_built(state, &run, build, &verdict, final_status, artifacts, now).await
    {
        warn!(error = %e, "the build is not in its repo's recent builds");
    }

    // Recorded before it is posted, so that a pending status posted after it is followed by
    // it again (see `start`).
    if run.final_status.is_none() {
        run.final_status = Some(FinalStatus {
            state: verdict.state,
            description: verdict.description.clone(),
            at: Some(deps.clock.rfc3339()),
        });
        records::save_run(state, &run, now).await?;
    }
    let status = CommitStatus {
        state: verdict.state,
        target_url: Some(link(deps, &run)),
        description: verdict.description.clone(),
        context: deps.config.defaults.status_context.clone(),
    };
    post_status(deps, &run.repo, &run.sha, &status, run.installation_id).await?;
    tell_the_chat(deps, &run, channels, &verdict, duration, final_status).await;

    run.status = final_status;
    records::save_run(state, &run, now).await?;
    records::remove_running(state, &run.build_id, now).await?;
    info!(status = %run.status, "build reported");
    Ok(())
}

async fn tell_the_chat(
    deps: &Deps,
    run: &Run,
    channels: &[String],
    verdict: &Verdict,
    duration: u64,
    final_status: RunStatus,
) {
    let kind = match (verdict.succeeded, run.superseded_by.is_some()) {
        (true, _) => NotificationKind::BuildSucceeded,
        (false, true) => NotificationKind::BuildSuperseded,
        (false, false) => NotificationKind::BuildFailed,
    };
    notify(deps, kind, run, channels, |f| {
        f.duration_secs = Some(duration);
        f.status = Some(final_status.to_string());
        if !verdict.succeeded {
            f.reason = Some(verdict.description.clone());
        }
    })
    .await;
}

/// Asks for the green build to be released, with the image ids it exported.
async fn request_deploy(
    deps: &Deps,
    run: &Run,
    build: &BuildInfo,
    rule: &DeployRule,
    repo_name: &str,
    artifacts: BTreeMap<String, String>,
) -> Result<(), DispatchError> {
    let request =
        plan::deploy_request(run, rule, repo_name, build, artifacts, deps.clock.rfc3339());
    let message = OutgoingMessage::fifo(
        messages::encode(&DeployQueueMessage::Deploy(Box::new(request.clone()))),
        messages::fifo_id(&request.target),
        messages::fifo_id(&request.build_id),
    );
    deps.deploys.send(message).await?;
    info!(target = %request.target, "deploy requested");
    Ok(())
}

/// State-change events do not carry exported variables; BatchGetBuilds does. A build that
/// cannot be looked up for good deploys without them rather than not at all.
async fn exported_variables(
    deps: &Deps,
    build: &BuildInfo,
) -> Result<BTreeMap<String, String>, DispatchError> {
    if !build.exported.is_empty() {
        return Ok(build.exported.clone());
    }
    match deps.builds.get(std::slice::from_ref(&build.id)).await {
        Ok(found) => Ok(found
            .into_iter()
            .next()
            .map(|b| b.exported)
            .unwrap_or_default()),
        Err(e) if e.is_retryable() => Err(e.into()),
        Err(e) => {
            warn!(error = %e, "cannot read the build's exported variables");
            Ok(BTreeMap::new())
        }
    }
}
