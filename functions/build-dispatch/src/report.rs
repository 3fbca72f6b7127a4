//! What build-dispatch tells people: commit statuses on GitHub and notifications to the chat.

use shared::messages::{self, Facts, Notification, NotificationKind};
use shared::ports::{CommitStatus, GitHubError, OutgoingMessage};
use tracing::warn;

use crate::Deps;
use crate::codebuild;
use crate::error::DispatchError;
use crate::run::Run;

/// Sets a commit status. A permanent refusal (a 4xx, bad credentials) is logged and told to
/// the chat, then treated as done: retrying would loop on it and hold up the build's story.
pub async fn post_status(
    deps: &Deps,
    repo: &str,
    sha: &str,
    status: &CommitStatus,
    installation: Option<u64>,
) -> Result<(), DispatchError> {
    match deps
        .github
        .set_status(repo, sha, status, installation)
        .await
    {
        Ok(()) => Ok(()),
        Err(e @ (GitHubError::Rejected { .. } | GitHubError::Credentials(_))) => {
            warn!(error = %e, state = ?status.state, "GitHub refused the commit status");
            let facts = Facts {
                repo: Some(repo.to_string()),
                sha: Some(sha.into()),
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
                deps.clock.rfc3339(),
            )
            .await;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Where a status links: the build's log once known, else its console page.
pub fn link(deps: &Deps, run: &Run) -> String {
    run.log_url
        .clone()
        .unwrap_or_else(|| codebuild::console_url(&deps.region, &run.project, &run.build_id))
}

/// Tells the chat about a build, with `extra` facts beyond the run's own.
pub async fn notify(
    deps: &Deps,
    kind: NotificationKind,
    run: &Run,
    channels: &[String],
    extra: impl FnOnce(&mut Facts),
) {
    let mut facts = run.facts();
    extra(&mut facts);
    // A result is dated when it was recorded, not when a retry gets to tell it.
    let at = run
        .final_status
        .as_ref()
        .and_then(|f| f.at.clone())
        .unwrap_or_else(|| deps.clock.rfc3339());
    send_notification(
        deps,
        kind,
        messages::build_thread_key(&run.repo, &run.sha),
        channels.to_vec(),
        facts,
        at,
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
    at: String,
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
        at,
    };
    if let Err(e) = deps
        .notify
        .send(OutgoingMessage::new(messages::encode(&notification)))
        .await
    {
        warn!(error = %e, ?kind, "notification not queued");
    }
}
