//! deploy-promotion: a green build of a stable branch goes live on its target, one at a time
//! (one FIFO message group per target), never an older commit over a newer one, with a GitHub
//! Deployment that shows it. Rollbacks travel the same queue, so they are serialised with
//! deploys.

pub mod deployer;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::batch::{self, BatchContext, Outcome};
use shared::config::{Config, DeployRule};
use shared::records::{LiveRecord, PastRelease, StateKey};

use crate::deployer::{DeployError, Deployer, Release};
use shared::messages::{
    self, DeployQueueMessage, DeployRequest, Facts, Notification, NotificationKind,
    RollbackRequest, short_sha,
};
use shared::ports::{
    Clock, GitHub, OutgoingMessage, Precondition, Queue, Redelivery, Retryable, StateError,
    StateStore,
};
use shared::ports::{DeploymentState, DeploymentStatus, GitHubError, NewDeployment};
use tracing::{Instrument, info, warn};

/// How long one invocation follows a release before handing the rest to a later retry.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    pub interval: Duration,
    pub budget: Duration,
}

impl Default for Follow {
    fn default() -> Self {
        // Within the function's 150 s timeout, with room for the calls around it.
        Self {
            interval: Duration::from_secs(3),
            budget: Duration::from_secs(100),
        }
    }
}

pub struct Deps {
    pub config: Arc<Config>,
    pub github: Arc<dyn GitHub>,
    pub deployer: Arc<dyn Deployer>,
    pub state: Arc<dyn StateStore>,
    pub notify: Arc<dyn Queue>,
    pub redelivery: Arc<dyn Redelivery>,
    pub clock: Arc<dyn Clock>,
    pub follow: Follow,
}

/// A deploy under way (state key `deploying:<target>`), so that a retry resumes it instead of
/// releasing twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    sha: String,
    deployment_id: Option<u64>,
    release_id: Option<String>,
    /// GitHub heard `in_progress` and the chat heard the deploy start.
    #[serde(default)]
    announced: bool,
    /// The target accepted the release but did not confirm it: look it up, do not release again.
    #[serde(default)]
    requested: bool,
}

fn progress_key(target: &str) -> String {
    StateKey::Deploying(target).to_string()
}

fn live_key(target: &str) -> String {
    StateKey::Live(target).to_string()
}

pub async fn handle_batch(deps: &Deps, event: &SqsEvent) -> SqsBatchResponse {
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
    match DeployQueueMessage::decode(body) {
        Ok(DeployQueueMessage::Rollback(request)) => {
            let span = tracing::info_span!("rollback", target = %request.target);
            rollback(deps, &request).instrument(span).await
        }
        Ok(DeployQueueMessage::Deploy(request)) => {
            let span = tracing::info_span!("deploy", delivery_id = %request.delivery_id, target = %request.target, sha = %short_sha(&request.sha));
            deploy(deps, &request).instrument(span).await
        }
        Err(e) => Outcome::DeadLetter(e.to_string()),
    }
}

/// The deploy rule whose target is `target`, with the repo it belongs to.
fn rule_for<'a>(config: &'a Config, target: &str) -> Option<(&'a str, &'a DeployRule)> {
    config.repos.iter().find_map(|(name, repo)| {
        repo.deploy
            .iter()
            .find(|rule| rule.target_key(name) == target)
            .map(|rule| (name.as_str(), rule))
    })
}

fn retry(what: &str, e: &(impl Retryable + std::fmt::Display), after: Option<Duration>) -> Outcome {
    Outcome::Retry {
        reason: format!("{what}: {e}"),
        after,
    }
}

fn github_retry(e: &GitHubError) -> Outcome {
    retry("GitHub", e, Retryable::retry_after(e))
}

async fn get_json<T: for<'de> Deserialize<'de>>(
    deps: &Deps,
    key: &str,
) -> Result<Option<(T, u64)>, StateError> {
    let now = deps.clock.unix();
    match deps.state.get(key, now).await? {
        None => Ok(None),
        Some(record) => serde_json::from_value(record.value)
            .map(|v| Some((v, record.version)))
            .map_err(|e| StateError::Corrupt(format!("{key}: {e}"))),
    }
}

async fn put_json<T: Serialize>(deps: &Deps, key: &str, value: &T) -> Result<(), StateError> {
    let now = deps.clock.unix();
    let value = serde_json::to_value(value).expect("records serialise");
    deps.state
        .put(key, value, Precondition::None, None, now)
        .await
        .map(|_| ())
}

async fn deploy(deps: &Deps, request: &DeployRequest) -> Outcome {
    let Some((repo_name, rule)) = rule_for(&deps.config, &request.target) else {
        return Outcome::Skipped(format!(
            "no deploy rule names target {} any more",
            request.target
        ));
    };
    let channels = deps
        .config
        .repo(repo_name)
        .map(|r| deps.config.notify_channels(r))
        .unwrap_or_default();
    let facts = Facts {
        repo: Some(request.repo.clone()),
        sha: Some(request.sha.clone()),
        branch: Some(request.branch.clone()),
        commit_message: request
            .commit_message
            .as_deref()
            .map(|m| m.lines().next().unwrap_or("").to_string()),
        author: request.author.clone(),
        target: Some(request.target.clone()),
        environment: Some(request.environment.clone()),
        ..Facts::default()
    };
    let live = match get_json::<LiveRecord>(deps, &live_key(&request.target)).await {
        Ok(live) => live.map(|(l, _)| l),
        Err(e) => return retry("state store", &e, None),
    };
    let progress = match get_json::<Progress>(deps, &progress_key(&request.target)).await {
        Ok(p) => p.map(|(p, _)| p).filter(|p| p.sha == request.sha),
        Err(e) => return retry("state store", &e, None),
    };

    let mut progress = match progress {
        Some(p) => p,
        None => {
            if let Err(skip) = order_guard(deps, request, live.as_ref()).await {
                return match skip {
                    Guard::Retry(outcome) => outcome,
                    Guard::Skip(reason) => {
                        notify(
                            deps,
                            NotificationKind::DeploySkipped,
                            request,
                            &channels,
                            Facts {
                                reason: Some(reason.clone()),
                                ..facts
                            },
                        )
                        .await;
                        Outcome::Skipped(reason)
                    }
                };
            }
            let deployment_id = match deps
                .github
                .create_deployment(
                    &request.repo,
                    &NewDeployment {
                        sha: request.sha.to_string(),
                        environment: request.environment.clone(),
                        description: format!(
                            "shipline: {} to {}",
                            short_sha(&request.sha),
                            request.target
                        ),
                        payload: json!({ "target": request.target, "build_id": request.build_id }),
                    },
                    request.installation_id,
                )
                .await
            {
                Ok(id) => Some(id),
                Err(e) if e.is_retryable() => return github_retry(&e),
                Err(e) => {
                    // GitHub's record of the deploy is a courtesy; the deploy goes on without it.
                    warn!(error = %e, "GitHub refused the deployment; deploying without it");
                    None
                }
            };
            let progress = Progress {
                sha: request.sha.to_string(),
                deployment_id,
                release_id: None,
                announced: false,
                requested: false,
            };
            if let Err(e) = put_json(deps, &progress_key(&request.target), &progress).await {
                return retry("state store", &e, None);
            }
            progress
        }
    };
    if !progress.announced {
        // A retry resumes here with the deployment already created: one deployment, one
        // `in_progress`, one chat update, however often GitHub fails in between.
        if let Some(retry) = deployment_status(
            deps,
            request,
            progress.deployment_id,
            DeploymentState::InProgress,
            &format!("Releasing to {}", request.target),
            None,
        )
        .await
        {
            return retry;
        }
        notify(
            deps,
            NotificationKind::DeployStarted,
            request,
            &channels,
            Facts {
                url: request.log_url.clone(),
                ..facts.clone()
            },
        )
        .await;
        progress.announced = true;
        if let Err(e) = put_json(deps, &progress_key(&request.target), &progress).await {
            warn!(error = %e, "announcement not recorded");
        }
    }

    // Release (once), then follow it to its end within this invocation's budget.
    let mut release = match (&progress.release_id, progress.requested) {
        (Some(id), _) => deps.deployer.status(rule, id).await,
        (None, true) => deps.deployer.newest(rule).await,
        (None, false) => deps.deployer.release(rule, request).await,
    };
    if let Err(e @ DeployError::Unconfirmed(_)) = &release {
        progress.requested = true;
        if let Err(state) = put_json(deps, &progress_key(&request.target), &progress).await {
            warn!(error = %state, "unconfirmed release not recorded; a retry may release again");
        }
        return retry("deploy target", e, None);
    }
    let started = tokio::time::Instant::now();
    loop {
        // Whatever comes next may fail and retry the message: the retry must follow this
        // release, not make another.
        if let Ok(Release::Pending { id, .. } | Release::Live { id, .. }) = &release
            && progress.release_id.as_deref() != Some(id)
        {
            progress.release_id = Some(id.clone());
            if let Err(e) = put_json(deps, &progress_key(&request.target), &progress).await {
                warn!(error = %e, "release id not recorded; a retry may release again");
            }
        }
        let Ok(Release::Pending { id, .. }) = &release else {
            break;
        };
        if started.elapsed() >= deps.follow.budget {
            return Outcome::Retry {
                reason: format!("release {id} still pending"),
                after: Some(Duration::from_secs(15)),
            };
        }
        tokio::time::sleep(deps.follow.interval).await;
        release = deps.deployer.status(rule, id).await;
    }

    match release {
        Ok(Release::Live { id, version, url }) => {
            // A retry that only has the final status left finds this release already live.
            let recorded = live
                .as_ref()
                .is_some_and(|l| l.sha == request.sha && l.release_id == id);
            if !recorded {
                let record = LiveRecord {
                    repo: request.repo.clone(),
                    branch: request.branch.clone(),
                    sha: request.sha.clone(),
                    release_id: id,
                    version: version.clone(),
                    at: deps.clock.rfc3339(),
                    build_id: request.build_id.clone(),
                    history: history_after(live.as_ref()),
                };
                if let Err(e) = put_json(deps, &live_key(&request.target), &record).await {
                    return retry("state store", &e, None);
                }
            }
            let environment_url = rule.environment_url.clone().or(url.clone());
            let description = format!(
                "Live on {}{}",
                request.target,
                version
                    .as_deref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default()
            );
            // The deploy is kept in progress until GitHub has its final status, so that a
            // deployment never stays `in_progress`.
            if let Some(retry) = deployment_status(
                deps,
                request,
                progress.deployment_id,
                DeploymentState::Success,
                &description,
                environment_url,
            )
            .await
            {
                return retry;
            }
            let _ = deps.state.delete(&progress_key(&request.target)).await;
            notify(
                deps,
                NotificationKind::DeploySucceeded,
                request,
                &channels,
                Facts {
                    release: version,
                    url: url.or(request.log_url.clone()),
                    ..facts
                },
            )
            .await;
            info!("live");
            Outcome::Done
        }
        Ok(Release::Failed { reason, .. }) => {
            fail(
                deps,
                request,
                &progress,
                &channels,
                facts,
                format!("deploy failed, production unchanged: {reason}"),
            )
            .await
        }
        Ok(Release::Pending { .. }) => unreachable!("the loop above follows pending releases"),
        Err(e @ DeployError::Refused(_)) => {
            fail(
                deps,
                request,
                &progress,
                &channels,
                facts,
                format!("deploy failed, production unchanged: {e}"),
            )
            .await
        }
        Err(e) => retry("deploy target", &e, Retryable::retry_after(&e)),
    }
}

async fn fail(
    deps: &Deps,
    request: &DeployRequest,
    progress: &Progress,
    channels: &[String],
    facts: Facts,
    reason: String,
) -> Outcome {
    if let Some(retry) = deployment_status(
        deps,
        request,
        progress.deployment_id,
        DeploymentState::Failure,
        &reason,
        None,
    )
    .await
    {
        return retry;
    }
    let _ = deps.state.delete(&progress_key(&request.target)).await;
    notify(
        deps,
        NotificationKind::DeployFailed,
        request,
        channels,
        Facts {
            reason: Some(reason.clone()),
            url: request.log_url.clone(),
            ..facts
        },
    )
    .await;
    warn!(%reason, "deploy failed");
    Outcome::Skipped(reason)
}

fn history_after(live: Option<&LiveRecord>) -> Vec<PastRelease> {
    let Some(live) = live else {
        return Vec::new();
    };
    let mut history = live.history.clone();
    history.push(PastRelease {
        sha: live.sha.clone(),
        release_id: live.release_id.clone(),
        version: live.version.clone(),
    });
    let excess = history.len().saturating_sub(10);
    history.drain(..excess);
    history
}

enum Guard {
    Skip(String),
    Retry(Outcome),
}

/// Deploy only the head of the branch, and never a commit behind what is live.
async fn order_guard(
    deps: &Deps,
    request: &DeployRequest,
    live: Option<&LiveRecord>,
) -> Result<(), Guard> {
    if let Some(live) = live
        && live.sha == request.sha
    {
        return Err(Guard::Skip(format!(
            "{} is already live",
            short_sha(&request.sha)
        )));
    }
    let head = deps
        .github
        .branch_head(&request.repo, &request.branch, request.installation_id)
        .await
        .map_err(|e| Guard::Retry(github_retry(&e)))?;
    if head != request.sha {
        return Err(Guard::Skip(format!("superseded by {}", short_sha(&head))));
    }
    if let Some(live) = live {
        let status = deps
            .github
            .compare(
                &request.repo,
                &live.sha,
                &request.sha,
                request.installation_id,
            )
            .await
            .map_err(|e| Guard::Retry(github_retry(&e)))?;
        if status.is_not_newer() {
            return Err(Guard::Skip(format!(
                "{} is behind the live {}",
                short_sha(&request.sha),
                short_sha(&live.sha)
            )));
        }
    }
    Ok(())
}

/// Posts a deployment status. A failure that a later try can fix is the message's retry
/// (the caller keeps its progress so that the retry resumes here); a refusal is logged, since
/// a deploy is not undone because GitHub would not hear about it.
async fn deployment_status(
    deps: &Deps,
    request: &DeployRequest,
    id: Option<u64>,
    state: DeploymentState,
    description: &str,
    environment_url: Option<String>,
) -> Option<Outcome> {
    let id = id?;
    let status = DeploymentStatus {
        state,
        description: description.to_string(),
        log_url: request.log_url.clone(),
        environment_url,
    };
    match deps
        .github
        .set_deployment_status(&request.repo, id, &status, request.installation_id)
        .await
    {
        Ok(()) => None,
        Err(e) if e.is_retryable() => Some(github_retry(&e)),
        Err(e) => {
            warn!(error = %e, ?state, "GitHub refused the deployment status");
            None
        }
    }
}

async fn notify(
    deps: &Deps,
    kind: NotificationKind,
    request: &DeployRequest,
    channels: &[String],
    facts: Facts,
) {
    if channels.is_empty() {
        return;
    }
    let notification = Notification {
        v: messages::VERSION,
        kind,
        thread_key: messages::build_thread_key(&request.repo, &request.sha),
        channels: channels.to_vec(),
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

async fn rollback(deps: &Deps, request: &RollbackRequest) -> Outcome {
    let Some((repo_name, rule)) = rule_for(&deps.config, &request.target) else {
        return Outcome::Skipped(format!("no deploy rule names target {}", request.target));
    };
    let live = match get_json::<LiveRecord>(deps, &live_key(&request.target)).await {
        Ok(Some((live, _))) => live,
        Ok(None) => {
            return Outcome::Skipped(format!("nothing is recorded as live on {}", request.target));
        }
        Err(e) => return retry("state store", &e, None),
    };
    let wanted = match &request.release {
        Some(r) => live
            .history
            .iter()
            .rev()
            .find(|p| &p.release_id == r || p.version.as_deref() == Some(r.as_str()))
            .cloned()
            .unwrap_or(PastRelease {
                sha: String::new().into(),
                release_id: r.clone(),
                version: None,
            }),
        None => match live.history.last() {
            Some(p) => p.clone(),
            None => {
                return Outcome::Skipped(format!(
                    "no earlier release of {} is recorded",
                    request.target
                ));
            }
        },
    };
    let channels = deps
        .config
        .repo(repo_name)
        .map(|r| deps.config.notify_channels(r))
        .unwrap_or_default();
    let mut release = deps.deployer.rollback(rule, &wanted.release_id).await;
    let started = tokio::time::Instant::now();
    while let Ok(Release::Pending { id, .. }) = &release {
        if started.elapsed() >= deps.follow.budget {
            break;
        }
        tokio::time::sleep(deps.follow.interval).await;
        release = deps.deployer.status(rule, id).await;
    }
    let as_request = DeployRequest {
        v: messages::VERSION,
        repo: live.repo.clone(),
        branch: live.branch.clone(),
        sha: if wanted.sha.is_empty() {
            live.sha.clone()
        } else {
            wanted.sha.clone()
        },
        build_id: String::new().into(),
        log_url: None,
        target: request.target.clone(),
        environment: rule.environment.clone(),
        artifacts: Default::default(),
        delivery_id: String::new().into(),
        commit_message: None,
        author: Some(request.requested_by.clone()),
        installation_id: None,
        requested_at: request.requested_at.clone(),
    };
    let facts = Facts {
        repo: Some(as_request.repo.clone()),
        sha: Some(as_request.sha.clone()),
        branch: Some(as_request.branch.clone()),
        author: Some(request.requested_by.clone()),
        target: Some(request.target.clone()),
        environment: Some(rule.environment.clone()),
        ..Facts::default()
    };
    let what = wanted
        .version
        .clone()
        .unwrap_or_else(|| wanted.release_id.clone());
    match release {
        Ok(Release::Live { id, version, url }) => {
            let mut history = live.history.clone();
            history.retain(|p| p.release_id != wanted.release_id);
            history.push(PastRelease {
                sha: live.sha.clone(),
                release_id: live.release_id.clone(),
                version: live.version.clone(),
            });
            let record = LiveRecord {
                sha: as_request.sha.clone(),
                release_id: id,
                version: version.clone(),
                at: deps.clock.rfc3339(),
                build_id: String::new().into(),
                history,
                ..live
            };
            if let Err(e) = put_json(deps, &live_key(&request.target), &record).await {
                return retry("state store", &e, None);
            }
            notify(
                deps,
                NotificationKind::DeploySucceeded,
                &as_request,
                &channels,
                Facts {
                    release: version,
                    url,
                    reason: Some(format!("rolled back to {what} by {}", request.requested_by)),
                    ..facts
                },
            )
            .await;
            Outcome::Done
        }
        Ok(Release::Pending { id, .. }) => Outcome::Skipped(format!(
            "rollback release {id} still pending; check the target"
        )),
        Ok(Release::Failed { reason, .. }) => {
            notify(
                deps,
                NotificationKind::DeployFailed,
                &as_request,
                &channels,
                Facts {
                    reason: Some(format!("rollback to {what} failed: {reason}")),
                    ..facts
                },
            )
            .await;
            Outcome::Skipped(reason)
        }
        Err(e @ DeployError::Refused(_)) => {
            notify(
                deps,
                NotificationKind::DeployFailed,
                &as_request,
                &channels,
                Facts {
                    reason: Some(format!("rollback to {what} failed: {e}")),
                    ..facts
                },
            )
            .await;
            Outcome::Skipped(e.to_string())
        }
        Err(e) => retry("deploy target", &e, Retryable::retry_after(&e)),
    }
}
