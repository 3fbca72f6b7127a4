//! build-dispatch: every `BuildRequest` becomes a CodeBuild build of that exact commit, with
//! its status on GitHub; every build result becomes a final status, a `DeployRequest` when a
//! stable branch went green, and `Notification`s. A scheduled sweep finalises builds whose
//! events were lost, so no status stays pending.

pub mod codebuild;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use crate::codebuild::{BuildInfo, BuildStatus, Builds, BuildsError, StartBuild};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::batch::{self, BatchContext, Outcome};
use shared::config::Config;
use shared::messages::{
    self, BuildRequest, DeployQueueMessage, Facts, MessageError, Notification, NotificationKind,
    short_sha,
};
use shared::ports::{
    Clock, GitHub, OutgoingMessage, Precondition, Queue, Redelivery, Retryable, StateError,
    StateStore,
};
use shared::ports::{CommitState, CommitStatus, GitHubError};
use tracing::{Instrument, info, warn};

use crate::plan::{Project, Run};

/// Records of runs and lines of work outlive any build and any redelivery window.
const RECORD_TTL_SECS: i64 = 30 * 24 * 3600;
/// How long past its own timeout a build may stay silent before the sweep calls it lost.
const LOST_GRACE_SECS: i64 = 15 * 60;
const RUNNING_INDEX: &str = "builds:running";

pub struct Deps {
    pub config: Arc<Config>,
    pub builds: Arc<dyn Builds>,
    pub github: Arc<dyn GitHub>,
    pub state: Arc<dyn StateStore>,
    pub deploys: Arc<dyn Queue>,
    pub notify: Arc<dyn Queue>,
    pub redelivery: Arc<dyn Redelivery>,
    pub clock: Arc<dyn Clock>,
    /// The AWS region, for console links before CloudWatch's deep link is known.
    pub region: String,
}

/// The Lambda entry point: an SQS batch (from `builds.fifo` or `build-events`), or the
/// scheduled sweep.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value, lambda_runtime::Error> {
    if event.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(event)?;
        let response = handle_batch(deps, &event).await;
        return Ok(serde_json::to_value(response)?);
    }
    let report = sweep(deps).await;
    Ok(serde_json::to_value(report)?)
}

pub async fn handle_batch(
    deps: &Deps,
    event: &SqsEvent,
) -> aws_lambda_events::sqs::SqsBatchResponse {
    let ctx = BatchContext {
        redelivery: deps.redelivery.as_ref(),
        dead_letters: None,
    };
    batch::process(event, &ctx, |message| async move {
        handle_message(deps, &message).await
    })
    .await
}

async fn handle_message(deps: &Deps, message: &SqsMessage) -> Outcome {
    let body = message.body.as_deref().unwrap_or("");
    let value: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Outcome::DeadLetter(format!("message is not JSON: {e}")),
    };
    if value.get("source").and_then(Value::as_str) == Some("aws.codebuild") {
        return match serde_json::from_value::<codebuild::StateChangeEvent>(value) {
            Ok(event) if event.detail_type == codebuild::STATE_CHANGE => {
                handle_state_change(deps, &event).await
            }
            Ok(event) => {
                Outcome::Skipped(format!("not a build state change: {}", event.detail_type))
            }
            Err(e) => Outcome::DeadLetter(format!("malformed CodeBuild event: {e}")),
        };
    }
    match messages::decode::<BuildRequest>(body) {
        Ok(request) => {
            let span = tracing::info_span!("build_request", delivery_id = %request.delivery_id, repo = %request.repo, sha = %short_sha(&request.sha));
            handle_build_request(deps, &request).instrument(span).await
        }
        Err(e @ MessageError::UnsupportedVersion { .. }) => Outcome::DeadLetter(e.to_string()),
        Err(e) => Outcome::DeadLetter(format!("not a BuildRequest: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Failure mapping

fn retry<E: Retryable + std::fmt::Display>(what: &str, e: &E, after: Option<Duration>) -> Outcome {
    Outcome::Retry {
        reason: format!("{what}: {e}"),
        after,
    }
}

fn state_failure(e: &StateError) -> Outcome {
    retry("state store", e, None)
}

// ---------------------------------------------------------------------------------------------
// Start

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RequestRecord {
    build_id: Option<String>,
    /// The pending status reached GitHub.
    pending_posted: bool,
    /// Not built, on purpose, with this reason.
    not_built: Option<String>,
    /// Nothing is left to do for this delivery.
    #[serde(default)]
    settled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LineRecord {
    build_id: String,
    sha: String,
}

async fn handle_build_request(deps: &Deps, request: &BuildRequest) -> Outcome {
    let now = deps.clock.unix();
    let Some(repo) = deps.config.repo(&request.repo) else {
        return Outcome::Skipped(format!("repo {} is no longer in the config", request.repo));
    };
    let request_key = format!("request:{}", request.delivery_id);
    let mut record: RequestRecord = match deps.state.get(&request_key, now).await {
        Ok(Some(r)) => serde_json::from_value(r.value).unwrap_or_default(),
        Ok(None) => RequestRecord::default(),
        Err(e) => return state_failure(&e),
    };
    if record.settled || record.not_built.is_some() {
        return Outcome::Skipped("this delivery was already dispatched".into());
    }
    let context = deps.config.defaults.status_context.clone();
    let channels = deps.config.notify_channels(repo);

    let project = match plan::project_for(&deps.config, repo, request) {
        Project::Build(p) => p.to_string(),
        Project::NotBuilt(reason) => {
            return not_built(deps, request, &request_key, &context, reason).await;
        }
    };

    // Start (once: the state record survives retries; CodeBuild's idempotency token covers a
    // crash between the start and the record, for five minutes).
    let run = match &record.build_id {
        Some(id) => match load_run(deps, id, now).await {
            Ok(Some(run)) => run,
            Ok(None) => {
                return Outcome::Retry {
                    reason: format!("run record of {id} missing"),
                    after: None,
                };
            }
            Err(e) => return state_failure(&e),
        },
        None => {
            let start = StartBuild {
                project: project.clone(),
                source_version: plan::source_version(request),
                environment: plan::build_variables(request),
                idempotency_token: plan::idempotency_token(&request.delivery_id),
            };
            let build = match deps.builds.start(start).await {
                Ok(build) => build,
                Err(e @ BuildsError::Unavailable(_)) => return retry("CodeBuild", &e, None),
                Err(e @ BuildsError::Refused(_)) => {
                    let reason = format!("CodeBuild refused to build {project}: {e}");
                    return not_built(deps, request, &request_key, &context, reason).await;
                }
            };
            info!(build_id = %build.id, %project, "build started");
            let run = Run::from_request(request, &build, now);
            if let Err(e) = save_run(deps, &run, now).await {
                return state_failure(&e);
            }
            record.build_id = Some(build.id.clone());
            if let Err(e) = put_json(deps, &request_key, &record, now + RECORD_TTL_SECS, now).await
            {
                return state_failure(&e);
            }
            if let Err(e) = add_running(deps, &build.id, now).await {
                return state_failure(&e);
            }
            run
        }
    };

    if !record.pending_posted {
        if run.final_status.is_some() {
            // The build finished while this request waited for a retry: a pending status
            // now would land after the final one.
            record.settled = true;
            if let Err(e) = put_json(deps, &request_key, &record, now + RECORD_TTL_SECS, now).await
            {
                warn!(error = %e, "settled, but not recorded");
            }
            return Outcome::Skipped("the build finished before its pending status".into());
        }
        // Supersede the older build of the same branch or pull request.
        if deps.config.supersede(repo)
            && let Err(outcome) = supersede_previous(deps, &run, &context, &channels, now).await
        {
            return outcome;
        }
        let status = CommitStatus {
            state: CommitState::Pending,
            target_url: Some(link(deps, &run)),
            description: format!("Building on CodeBuild ({})", run.project),
            context: context.clone(),
        };
        if let Err(outcome) =
            post_status(deps, &run.repo, &run.sha, &status, run.installation_id).await
        {
            return outcome;
        }
        record.pending_posted = true;
        if let Err(e) = put_json(deps, &request_key, &record, now + RECORD_TTL_SECS, now).await {
            warn!(error = %e, "pending posted, but not recorded");
        }
        notify(
            deps,
            NotificationKind::BuildStarted,
            &run,
            &channels,
            |_| {},
        )
        .await;
    }

    // The build may have finished while the pending status was on its way (a retry, or the
    // two queues' consumers racing): the final status must be GitHub's last word.
    match load_run(deps, &run.build_id, now).await {
        Ok(Some(latest)) => {
            if let Some(done) = &latest.final_status {
                let status = CommitStatus {
                    state: done.state,
                    target_url: Some(link(deps, &latest)),
                    description: done.description.clone(),
                    context,
                };
                if let Err(outcome) = post_status(
                    deps,
                    &latest.repo,
                    &latest.sha,
                    &status,
                    latest.installation_id,
                )
                .await
                {
                    return outcome;
                }
                info!("final status posted again after a late pending");
            }
        }
        Ok(None) => {}
        Err(e) => return state_failure(&e),
    }
    record.settled = true;
    if let Err(e) = put_json(deps, &request_key, &record, now + RECORD_TTL_SECS, now).await {
        warn!(error = %e, "settled, but not recorded");
    }
    Outcome::Done
}

/// A request that is deliberately not built: its status says why, and the chat hears it.
async fn not_built(
    deps: &Deps,
    request: &BuildRequest,
    key: &str,
    context: &str,
    reason: String,
) -> Outcome {
    let now = deps.clock.unix();
    let status = CommitStatus {
        state: CommitState::Error,
        target_url: None,
        description: reason.clone(),
        context: context.to_string(),
    };
    if let Err(outcome) = post_status(
        deps,
        &request.repo,
        &request.sha,
        &status,
        request.installation_id,
    )
    .await
    {
        return outcome;
    }
    let record = RequestRecord {
        not_built: Some(reason.clone()),
        ..RequestRecord::default()
    };
    if let Err(e) = put_json(deps, key, &record, now + RECORD_TTL_SECS, now).await {
        warn!(error = %e, "not-built decision not recorded");
    }
    if let Some(repo) = deps.config.repo(&request.repo) {
        let placeholder = BuildInfo {
            id: String::new(),
            project: repo.codebuild_project.clone(),
            status: BuildStatus::Stopped,
            current_phase: None,
            phases: vec![],
            log_url: None,
            environment: Default::default(),
            exported: Default::default(),
            timeout_minutes: None,
        };
        let run = Run::from_request(request, &placeholder, now);
        let channels = deps.config.notify_channels(repo);
        notify(deps, NotificationKind::BuildSkipped, &run, &channels, |f| {
            f.reason = Some(reason.clone())
        })
        .await;
    }
    Outcome::Skipped(reason)
}

/// Stops the previous build of `run`'s line of work if it is still running, and makes this
/// build the line's current one.
async fn supersede_previous(
    deps: &Deps,
    run: &Run,
    context: &str,
    channels: &[String],
    now: i64,
) -> Result<(), Outcome> {
    let line_key = format!("line:{}", run.line);
    let current = deps
        .state
        .get(&line_key, now)
        .await
        .map_err(|e| state_failure(&e))?;
    let previous: Option<LineRecord> = current
        .as_ref()
        .and_then(|r| serde_json::from_value(r.value.clone()).ok());
    if let Some(previous) = previous.filter(|p| p.build_id != run.build_id)
        && let Some(old) = load_run(deps, &previous.build_id, now)
            .await
            .map_err(|e| state_failure(&e))?
        && !old.is_final()
    {
        match deps.builds.stop(&old.build_id).await {
            Ok(()) => info!(old_build = %old.build_id, "superseded build stopped"),
            // Already finished or gone: nothing left to stop.
            Err(e @ BuildsError::Refused(_)) => {
                info!(error = %e, "superseded build could not be stopped")
            }
            Err(e) => return Err(retry("CodeBuild StopBuild", &e, None)),
        }
        let stopped = BuildInfo {
            id: old.build_id.clone(),
            project: old.project.clone(),
            status: BuildStatus::Stopped,
            current_phase: None,
            phases: vec![],
            log_url: old.log_url.clone(),
            environment: Default::default(),
            exported: Default::default(),
            timeout_minutes: Some(old.timeout_minutes),
        };
        let mut old = old;
        old.superseded_by = Some(run.sha.clone());
        finalize(deps, old, &stopped, context, channels, "SUPERSEDED").await?;
    }
    let line = LineRecord {
        build_id: run.build_id.clone(),
        sha: run.sha.clone(),
    };
    put_json(deps, &line_key, &line, now + RECORD_TTL_SECS, now)
        .await
        .map(|_| ())
        .map_err(|e| state_failure(&e))
}

// ---------------------------------------------------------------------------------------------
// Results

async fn handle_state_change(deps: &Deps, event: &codebuild::StateChangeEvent) -> Outcome {
    let Some(build) = event.build_info() else {
        return Outcome::Skipped(format!(
            "unknown build status {}",
            event.detail.build_status
        ));
    };
    let span =
        tracing::info_span!("build_event", build_id = %build.id, status = build.status.as_str());
    async {
        let now = deps.clock.unix();
        let run = match load_run(deps, &build.id, now).await {
            Ok(Some(run)) => run,
            Ok(None) => match Run::from_build_variables(&build, now) {
                // Started by shipline, but its record is gone: adopt it from its variables.
                Some(run) => run,
                None => return Outcome::Skipped("not a build shipline started".into()),
            },
            Err(e) => return state_failure(&e),
        };
        if run.is_final() {
            return Outcome::Skipped(format!("build already reported as {}", run.status));
        }
        let Some(repo) = deps.config.repo(&run.repo) else {
            return Outcome::Skipped(format!("repo {} is no longer in the config", run.repo));
        };
        let context = deps.config.defaults.status_context.clone();
        let channels = deps.config.notify_channels(repo);
        if !build.status.is_final() {
            // Keep the log link for the final status.
            if run.log_url.is_none() && build.log_url.is_some() {
                let mut run = run;
                run.log_url = build.log_url.clone();
                if let Err(e) = save_run(deps, &run, now).await {
                    return state_failure(&e);
                }
            }
            return Outcome::Done;
        }
        let status = build.status.as_str();
        match finalize(deps, run, &build, &context, &channels, status).await {
            Ok(()) => Outcome::Done,
            Err(outcome) => outcome,
        }
    }
    .instrument(span)
    .await
}

/// Reports a finished build: a deploy request when a stable branch went green, the final
/// commit status, the chat; then records it as final. Each step is safe to repeat, so a retry
/// after a failure part-way does no harm (the deploy request is deduplicated by build id).
async fn finalize(
    deps: &Deps,
    mut run: Run,
    build: &BuildInfo,
    context: &str,
    channels: &[String],
    final_status: &str,
) -> Result<(), Outcome> {
    let now = deps.clock.unix();
    let duration = u64::try_from(now - run.started_at).unwrap_or(0);
    if run.log_url.is_none() {
        run.log_url = build.log_url.clone();
    }
    let verdict = plan::verdict(build, duration, run.superseded_by.as_deref());

    if verdict.succeeded
        && let Some((rule, repo_name)) = plan::deploy_for(&deps.config, &run)
    {
        // State-change events do not carry exported variables; BatchGetBuilds does.
        let artifacts = if build.exported.is_empty() {
            match deps.builds.get(std::slice::from_ref(&build.id)).await {
                Ok(found) => found
                    .into_iter()
                    .next()
                    .map(|b| b.exported)
                    .unwrap_or_default(),
                Err(e) if e.is_retryable() => {
                    return Err(retry("CodeBuild BatchGetBuilds", &e, None));
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the build's exported variables");
                    Default::default()
                }
            }
        } else {
            build.exported.clone()
        };
        let request = plan::deploy_request(
            &run,
            rule,
            repo_name,
            build,
            artifacts,
            deps.clock.rfc3339(),
        );
        let message = OutgoingMessage::fifo(
            messages::encode(&DeployQueueMessage::Deploy(Box::new(request.clone()))),
            messages::fifo_id(&request.target),
            messages::fifo_id(&request.build_id),
        );
        if let Err(e) = deps.deploys.send(message).await {
            return Err(retry("deploy queue", &e, None));
        }
        info!(target = %request.target, "deploy requested");
    }

    // Recorded before it is posted, so that a pending status posted after it is followed by
    // it again (see handle_build_request).
    if run.final_status.is_none() {
        run.final_status = Some(plan::FinalStatus {
            state: verdict.state,
            description: verdict.description.clone(),
        });
        save_run(deps, &run, now)
            .await
            .map_err(|e| state_failure(&e))?;
    }
    let status = CommitStatus {
        state: verdict.state,
        target_url: Some(link(deps, &run)),
        description: verdict.description.clone(),
        context: context.to_string(),
    };
    post_status(deps, &run.repo, &run.sha, &status, run.installation_id).await?;

    let kind = match (verdict.succeeded, run.superseded_by.is_some()) {
        (true, _) => NotificationKind::BuildSucceeded,
        (false, true) => NotificationKind::BuildSuperseded,
        (false, false) => NotificationKind::BuildFailed,
    };
    let description = verdict.description.clone();
    let status_word = final_status.to_string();
    notify(deps, kind, &run, channels, |f| {
        f.duration_secs = Some(duration);
        f.status = Some(status_word.clone());
        if !verdict.succeeded {
            f.reason = Some(description.clone());
        }
    })
    .await;

    run.status = final_status.to_string();
    save_run(deps, &run, now)
        .await
        .map_err(|e| state_failure(&e))?;
    remove_running(deps, &run.build_id, now)
        .await
        .map_err(|e| state_failure(&e))?;
    info!(status = %run.status, "build reported");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sweep

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub checked: usize,
    pub finalised: usize,
    pub lost: usize,
    pub still_running: usize,
    pub errors: Vec<String>,
}

/// Checks every build recorded as running: finalises those that ended without an event
/// reaching shipline, and those silent past their timeout.
pub async fn sweep(deps: &Deps) -> SweepReport {
    let now = deps.clock.unix();
    let mut report = SweepReport::default();
    let ids = match running(deps, now).await {
        Ok((ids, _)) => ids,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    report.checked = ids.len();
    if ids.is_empty() {
        return report;
    }
    let found = match deps.builds.get(&ids).await {
        Ok(found) => found,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    let context = deps.config.defaults.status_context.clone();
    for id in ids {
        let run = match load_run(deps, &id, now).await {
            Ok(Some(run)) if !run.is_final() => run,
            Ok(_) => {
                // Reported already, or its record expired: only the index entry is left.
                let _ = remove_running(deps, &id, now).await;
                continue;
            }
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        };
        let channels = deps
            .config
            .repo(&run.repo)
            .map(|r| deps.config.notify_channels(r))
            .unwrap_or_default();
        let build = found.iter().find(|b| b.id == id);
        let overdue = now > run.started_at + i64::from(run.timeout_minutes) * 60 + LOST_GRACE_SECS;
        let result = match build {
            Some(b) if b.status.is_final() => {
                let status = b.status.as_str();
                report.finalised += 1;
                finalize(deps, run, b, &context, &channels, status).await
            }
            Some(_) if !overdue => {
                report.still_running += 1;
                continue;
            }
            None if !overdue && now - run.started_at < LOST_GRACE_SECS => {
                report.still_running += 1;
                continue;
            }
            _ => {
                report.lost += 1;
                let _ = deps.builds.stop(&id).await;
                let lost = lost_build(&run, now);
                finalize(deps, run, &lost, &context, &channels, "LOST").await
            }
        };
        if let Err(outcome) = result {
            report.errors.push(format!("{id}: {outcome:?}"));
        }
    }
    info!(?report, "sweep done");
    report
}

/// A build CodeBuild never reported on: reported as a fault, with how long it was silent.
fn lost_build(run: &Run, now: i64) -> BuildInfo {
    BuildInfo {
        id: run.build_id.clone(),
        project: run.project.clone(),
        status: BuildStatus::Fault,
        current_phase: None,
        phases: vec![codebuild::Phase {
            kind: "SWEEP".into(),
            status: Some("FAULT".into()),
            context: vec![format!(
                "no result from CodeBuild after {} min",
                (now - run.started_at) / 60
            )],
        }],
        log_url: run.log_url.clone(),
        environment: Default::default(),
        exported: Default::default(),
        timeout_minutes: Some(run.timeout_minutes),
    }
}

// ---------------------------------------------------------------------------------------------
// Ports, small helpers

async fn post_status(
    deps: &Deps,
    repo: &str,
    sha: &str,
    status: &CommitStatus,
    installation: Option<u64>,
) -> Result<(), Outcome> {
    match deps
        .github
        .set_status(repo, sha, status, installation)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.is_retryable() => Err(retry("GitHub", &e, e.retry_after())),
        Err(e @ (GitHubError::Rejected { .. } | GitHubError::Credentials(_))) => {
            // A permanent refusal: log it, tell the chat, and move on rather than loop.
            warn!(error = %e, state = ?status.state, "GitHub refused the commit status");
            let facts = Facts {
                repo: Some(repo.to_string()),
                sha: Some(sha.to_string().into()),
                reason: Some(format!("GitHub refused the commit status: {e}")),
                ..Facts::default()
            };
            let channels = deps
                .config
                .repo(repo)
                .map(|r| deps.config.notify_channels(r))
                .unwrap_or_default();
            send_notification(
                deps,
                NotificationKind::OpsAlarm,
                messages::build_thread_key(repo, sha),
                channels,
                facts,
            )
            .await;
            Ok(())
        }
        Err(e) => Err(retry("GitHub", &e, None)),
    }
}

fn link(deps: &Deps, run: &Run) -> String {
    run.log_url.clone().unwrap_or_else(|| {
        let info = BuildInfo {
            id: run.build_id.clone(),
            project: run.project.clone(),
            status: BuildStatus::InProgress,
            current_phase: None,
            phases: vec![],
            log_url: None,
            environment: Default::default(),
            exported: Default::default(),
            timeout_minutes: None,
        };
        info.console_url(&deps.region)
    })
}

async fn notify(
    deps: &Deps,
    kind: NotificationKind,
    run: &Run,
    channels: &[String],
    extra: impl FnOnce(&mut Facts),
) {
    let mut facts = run.facts();
    extra(&mut facts);
    send_notification(
        deps,
        kind,
        messages::build_thread_key(&run.repo, &run.sha),
        channels.to_vec(),
        facts,
    )
    .await;
}

/// Notifications are best effort from here: a chat must never hold up a build or a status.
async fn send_notification(
    deps: &Deps,
    kind: NotificationKind,
    thread_key: String,
    channels: Vec<String>,
    facts: Facts,
) {
    if channels.is_empty() {
        return;
    }
    let notification = Notification {
        v: messages::VERSION,
        kind,
        thread_key,
        channels,
        facts,
        at: deps.clock.rfc3339(),
    };
    if let Err(e) = deps
        .notify
        .send(OutgoingMessage::new(messages::encode(&notification)))
        .await
    {
        warn!(error = %e, ?kind, "notification not queued");
    }
}

async fn put_json<T: Serialize>(
    deps: &Deps,
    key: &str,
    value: &T,
    expires_at: i64,
    now: i64,
) -> Result<u64, StateError> {
    let value = serde_json::to_value(value).expect("records serialise");
    deps.state
        .put(key, value, Precondition::None, Some(expires_at), now)
        .await
}

async fn load_run(deps: &Deps, build_id: &str, now: i64) -> Result<Option<Run>, StateError> {
    let Some(record) = deps.state.get(&format!("run:{build_id}"), now).await? else {
        return Ok(None);
    };
    serde_json::from_value(record.value)
        .map(Some)
        .map_err(|e| StateError::Corrupt(format!("run:{build_id}: {e}")))
}

async fn save_run(deps: &Deps, run: &Run, now: i64) -> Result<u64, StateError> {
    put_json(
        deps,
        &format!("run:{}", run.build_id),
        run,
        now + RECORD_TTL_SECS,
        now,
    )
    .await
}

/// The index of running builds, for the sweep, with its version.
async fn running(deps: &Deps, now: i64) -> Result<(Vec<String>, Option<u64>), StateError> {
    match deps.state.get(RUNNING_INDEX, now).await? {
        None => Ok((Vec::new(), None)),
        Some(record) => {
            let ids = serde_json::from_value(record.value["ids"].clone()).unwrap_or_default();
            Ok((ids, Some(record.version)))
        }
    }
}

async fn update_running(
    deps: &Deps,
    now: i64,
    change: impl Fn(&mut Vec<String>),
) -> Result<(), StateError> {
    // Optimistic concurrency: read, change, write if nobody wrote in between.
    for _ in 0..8 {
        let (mut ids, version) = running(deps, now).await?;
        change(&mut ids);
        let precondition = version.map_or(Precondition::Absent, Precondition::Version);
        match deps
            .state
            .put(
                RUNNING_INDEX,
                json!({ "ids": ids }),
                precondition,
                None,
                now,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(StateError::ConditionFailed) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StateError::ConditionFailed)
}

async fn add_running(deps: &Deps, build_id: &str, now: i64) -> Result<(), StateError> {
    update_running(deps, now, |ids| {
        if !ids.iter().any(|i| i == build_id) {
            ids.push(build_id.to_string());
        }
    })
    .await
}

async fn remove_running(deps: &Deps, build_id: &str, now: i64) -> Result<(), StateError> {
    update_running(deps, now, |ids| ids.retain(|i| i != build_id)).await
}
