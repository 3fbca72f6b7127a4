//! delivery-recovery: GitHub never redelivers a failed webhook delivery by itself, so every few
//! minutes this sweep reads the recent deliveries of each configured repo's webhook that points
//! at this stack (or the GitHub App's), and for each push or pull request whose latest attempt
//! failed and which intake never accepted, asks GitHub to deliver it again (a few times at most,
//! claimed in the state table so that two sweeps never redeliver one twice). A delivery too
//! large for Lambda is read through the deliveries API and planned and queued by intake's own
//! code, so a 2,048-commit push still builds.

mod scan;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use shared::config::Config;
use shared::github::client::GitHubClient;
use shared::github::deliveries::{DeliveryAttempt, DeliveryDetail, DeliveryPage, Hook, HookScope};
use shared::messages::{self, Facts, Notification, NotificationKind};
use shared::ports::{
    Clock, GitHubError, OutgoingMessage, Precondition, Queue, StateError, StateStore,
};
use shared::records::StateKey;
use tracing::{info, warn};

pub use scan::failed_deliveries;

/// GitHub keeps deliveries for three days (docs.github.com, "Redelivering webhooks"); older
/// ones cannot be redelivered.
pub const WINDOW_SECS: i64 = 3 * 24 * 3600;
/// Redeliveries of one delivery before its payload is read and queued directly.
pub const MAX_REDELIVERIES: u32 = 3;
/// What the state table remembers of a delivery the sweep acted on, as long as GitHub does.
const RECORD_TTL_SECS: i64 = WINDOW_SECS + 24 * 3600;
/// A permission notice is repeated at most daily.
const NOTICE_TTL_SECS: i64 = 24 * 3600;

/// The part of GitHub the sweep uses.
#[async_trait]
pub trait Deliveries: Send + Sync {
    fn is_app(&self) -> bool;
    async fn hooks(&self, repo: &str) -> Result<Vec<Hook>, GitHubError>;
    async fn page(
        &self,
        scope: &HookScope,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, GitHubError>;
    async fn detail(&self, scope: &HookScope, id: u64) -> Result<DeliveryDetail, GitHubError>;
    async fn redeliver(&self, scope: &HookScope, id: u64) -> Result<(), GitHubError>;
}

#[async_trait]
impl Deliveries for GitHubClient {
    fn is_app(&self) -> bool {
        GitHubClient::is_app(self)
    }
    async fn hooks(&self, repo: &str) -> Result<Vec<Hook>, GitHubError> {
        GitHubClient::hooks(self, repo).await
    }
    async fn page(
        &self,
        scope: &HookScope,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, GitHubError> {
        self.deliveries(scope, cursor).await
    }
    async fn detail(&self, scope: &HookScope, id: u64) -> Result<DeliveryDetail, GitHubError> {
        self.delivery(scope, id).await
    }
    async fn redeliver(&self, scope: &HookScope, id: u64) -> Result<(), GitHubError> {
        GitHubClient::redeliver(self, scope, id).await
    }
}

pub struct Deps {
    pub config: Arc<Config>,
    pub github: Arc<dyn Deliveries>,
    pub state: Arc<dyn StateStore>,
    /// `builds.fifo`, for deliveries queued from their payload.
    pub builds: Arc<dyn Queue>,
    pub notify: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    /// The URL GitHub delivers to (the stack's `POST /github`): the hooks to recover.
    pub webhook_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What one sweep did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub hooks: usize,
    pub failed: usize,
    pub redelivered: usize,
    pub queued_from_payload: usize,
    pub errors: Vec<String>,
}

/// What the sweep did about one delivery (`StateKey::Redelivery`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    redeliveries: u32,
    /// The newest attempt acted on: a later failed attempt is a new failure.
    last_attempt: u64,
    /// Queued from its payload: nothing more to do.
    #[serde(default)]
    queued: bool,
}

/// The Lambda entry point: one sweep.
pub async fn sweep(deps: &Deps) -> Report {
    let mut report = Report::default();
    let scopes = scopes(deps, &mut report).await;
    report.hooks = scopes.len();
    for scope in scopes {
        if let Err(e) = recover(deps, &scope, &mut report).await {
            report.errors.push(format!("{}: {e}", scope.key()));
        }
    }
    info!(?report, "delivery recovery done");
    report
}

/// The hooks to read: the App's, or each configured repo's hook that points at this stack.
async fn scopes(deps: &Deps, report: &mut Report) -> Vec<HookScope> {
    if deps.github.is_app() {
        return vec![HookScope::App];
    }
    let wanted = deps.webhook_url.trim_end_matches('/');
    let mut scopes = Vec::new();
    for repo in deps.config.repos.keys() {
        match deps.github.hooks(repo).await {
            Ok(hooks) => scopes.extend(
                hooks
                    .iter()
                    .filter(|h| {
                        h.config.url.as_deref().map(|u| u.trim_end_matches('/')) == Some(wanted)
                    })
                    .map(|h| HookScope::Repo {
                        repo: repo.clone(),
                        hook_id: h.id,
                    }),
            ),
            Err(e @ (GitHubError::Rejected { .. } | GitHubError::Credentials(_))) => {
                notice_once(deps, repo, &e).await;
                report.errors.push(format!("{repo}: {e}"));
            }
            // A moment's failure (5xx, a rate limit) for one repo: its hook waits for the
            // next sweep, the other repos' do not.
            Err(e) => report.errors.push(format!("{repo}: {e}")),
        }
    }
    scopes
}

/// Says once (a day) in the logs and the chat that a repo's hooks cannot be read: the rest of
/// the pipeline works as before, only lost deliveries stay lost.
async fn notice_once(deps: &Deps, repo: &str, e: &GitHubError) {
    let now = deps.clock.unix();
    let topic = format!("recovery-permission:{repo}");
    let first = deps
        .state
        .write(
            StateKey::Notice(&topic),
            &true,
            Precondition::Absent,
            Some(now + NOTICE_TTL_SECS),
            now,
        )
        .await;
    if first.is_err() {
        return;
    }
    let reason = format!(
        "cannot read or redeliver the webhook deliveries of {repo} ({e}): failed deliveries \
         are not recovered. Give the token admin:repo_hook (classic) or Webhooks read and write (fine-grained)."
    );
    warn!(%repo, %reason, "delivery recovery lacks a permission");
    let channels = deps
        .config
        .repo(repo)
        .map(|r| deps.config.notify_channels(r))
        .unwrap_or_default();
    if channels.is_empty() {
        return;
    }
    let notification = Notification {
        v: messages::VERSION,
        kind: NotificationKind::OpsAlarm,
        thread_key: format!("notice:{topic}"),
        channels,
        facts: Facts {
            repo: Some(repo.to_string()),
            title: Some("Webhook delivery recovery is off".into()),
            reason: Some(reason),
            ..Facts::default()
        },
        at: deps.clock.rfc3339(),
    };
    if let Err(e) = deps
        .notify
        .send(OutgoingMessage::new(messages::encode(&notification)))
        .await
    {
        warn!(error = %e, "permission notice not queued");
    }
}

/// One hook: every failed push or pull request delivery since the last sweep (within GitHub's
/// window) is redelivered or queued from its payload, once.
async fn recover(deps: &Deps, scope: &HookScope, report: &mut Report) -> Result<(), RecoveryError> {
    let now = deps.clock.unix();
    let key = scope.key();
    let resume: Option<i64> = deps
        .state
        .read_value(StateKey::RecoveryRun(&key), now)
        .await?;
    // An hour of overlap: an attempt GitHub lists late is still seen.
    let since = resume.map_or(now - WINDOW_SECS, |t| (t - 3600).max(now - WINDOW_SECS));
    let failed = failed_deliveries(deps.github.as_ref(), scope, since).await?;
    report.failed += failed.len();
    // The next sweep reads back to here: never past a delivery this one failed to act on, so
    // that hours of failing redeliver calls do not push it out of sight.
    let mut read_from = now;
    for attempt in failed {
        if let Err(e) = act_on(deps, scope, &attempt, report).await {
            report.errors.push(format!("{}: {e}", attempt.guid));
            read_from = read_from.min(scan::delivered_at(&attempt));
        }
    }
    deps.state
        .write(
            StateKey::RecoveryRun(&key),
            &read_from,
            Precondition::None,
            Some(now + RECORD_TTL_SECS),
            now,
        )
        .await?;
    Ok(())
}

/// One failed delivery (its latest attempt).
async fn act_on(
    deps: &Deps,
    scope: &HookScope,
    attempt: &DeliveryAttempt,
    report: &mut Report,
) -> Result<(), RecoveryError> {
    let now = deps.clock.unix();
    if deps
        .state
        .get(&StateKey::Delivery(&attempt.guid).to_string(), now)
        .await?
        .is_some()
    {
        return Ok(()); // intake accepted it after all (a redelivery, by hand or by us)
    }
    let stored = deps
        .state
        .read::<Claim>(StateKey::Redelivery(&attempt.guid), now)
        .await?;
    let (claim, version) = stored.map_or((Claim::default(), None), |s| (s.value, Some(s.version)));
    if claim.queued || claim.last_attempt >= attempt.id {
        return Ok(()); // done, or this failure was acted on and its redelivery is pending
    }
    if too_large(attempt) || claim.redeliveries >= MAX_REDELIVERIES {
        return queue_instead(deps, scope, attempt, claim, report).await;
    }
    // The claim first, conditionally: of two sweeps racing, one redelivers.
    let next = Claim {
        redeliveries: claim.redeliveries + 1,
        last_attempt: attempt.id,
        queued: false,
    };
    let precondition = version.map_or(Precondition::Absent, Precondition::Version);
    let claimed = match deps
        .state
        .write(
            StateKey::Redelivery(&attempt.guid),
            &next,
            precondition,
            Some(now + RECORD_TTL_SECS),
            now,
        )
        .await
    {
        Ok(v) => v,
        Err(StateError::ConditionFailed) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = deps.github.redeliver(scope, attempt.id).await {
        // Not asked after all: give the claim back so that the next sweep tries again.
        let _ = deps
            .state
            .write(
                StateKey::Redelivery(&attempt.guid),
                &claim,
                Precondition::Version(claimed),
                Some(now + RECORD_TTL_SECS),
                now,
            )
            .await;
        if let (HookScope::Repo { repo, .. }, GitHubError::Rejected { status: 403, .. }) =
            (scope, &e)
        {
            // Hooks readable but redelivery refused: a token with "Webhooks" read only.
            notice_once(deps, repo, &e).await;
        }
        return Err(e.into());
    }
    info!(guid = %attempt.guid, attempt = attempt.id, "redelivery requested");
    report.redelivered += 1;
    Ok(())
}

/// Queues a delivery from its payload, by intake's code, which is idempotent on the delivery
/// id: a racing sweep's copy is absorbed by the FIFO deduplication id and the delivery record.
async fn queue_instead(
    deps: &Deps,
    scope: &HookScope,
    attempt: &DeliveryAttempt,
    claim: Claim,
    report: &mut Report,
) -> Result<(), RecoveryError> {
    let now = deps.clock.unix();
    let queued = queue_from_payload(deps, scope, attempt).await?;
    let done = Claim {
        queued: true,
        last_attempt: attempt.id,
        ..claim
    };
    deps.state
        .write(
            StateKey::Redelivery(&attempt.guid),
            &done,
            Precondition::None,
            Some(now + RECORD_TTL_SECS),
            now,
        )
        .await?;
    match queued {
        FromPayload::Queued => report.queued_from_payload += 1,
        FromPayload::NothingToQueue => {}
        // Asking again would get the same answer, but someone should know.
        FromPayload::Refused(reason) => {
            report.errors.push(format!("{}: {reason}", attempt.guid));
        }
    }
    Ok(())
}

/// Refused before the function ran: API Gateway and Lambda answer 413 to a body over their
/// limits (10 MB for an HTTP API, 6 MB for a synchronous invocation); redelivering it would
/// fail the same way.
fn too_large(attempt: &DeliveryAttempt) -> bool {
    attempt.status_code == 413
}

/// What intake's code made of a payload read through the deliveries API.
enum FromPayload {
    Queued,
    /// Ignored (a branch that is not built) or queued before.
    NothingToQueue,
    /// Refused (a payload that does not parse, or that GitHub no longer has).
    Refused(String),
}

/// Reads the delivery's payload from GitHub and hands it to intake's own planning and queueing.
async fn queue_from_payload(
    deps: &Deps,
    scope: &HookScope,
    attempt: &DeliveryAttempt,
) -> Result<FromPayload, RecoveryError> {
    let detail = deps.github.detail(scope, attempt.id).await?;
    let payload = serde_json::to_vec(&detail.request.payload.unwrap_or_default())
        .expect("a JSON value serialises");
    let reply = webhook_intake::queue_payload(
        &webhook_intake::Enqueue {
            config: &deps.config,
            builds: deps.builds.as_ref(),
            state: deps.state.as_ref(),
            clock: deps.clock.as_ref(),
        },
        &detail.guid,
        &detail.event,
        &payload,
    )
    .await;
    info!(guid = %detail.guid, status = reply.status.as_u16(), outcome = %reply.message, "queued from the deliveries API");
    if reply.status.is_server_error() {
        return Err(RecoveryError::GitHub(GitHubError::Unavailable(
            reply.message,
        )));
    }
    Ok(if reply.status == StatusCode::ACCEPTED {
        FromPayload::Queued
    } else if reply.status.is_success() {
        FromPayload::NothingToQueue
    } else {
        FromPayload::Refused(format!("not queued: {}", reply.message))
    })
}
