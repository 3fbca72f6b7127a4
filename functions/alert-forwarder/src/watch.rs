//! What an alert means for releases: it is added to its project's alert log (which a
//! promotion's `gate: sentry` reads), and a target with `auto_rollback` whose release went live
//! within the window, and whose alerts since then reach a threshold, is rolled back: one
//! `RollbackRequest` on `deploys.fifo` per release, claimed in the state table.

use shared::alerts::{self, AlertLog, AlertMark};
use shared::config::{AutoRollback, DeployRule};
use shared::messages::{self, DeployQueueMessage, RollbackRequest};
use shared::ports::{OutgoingMessage, Precondition, StateError};
use shared::records::{LiveRecord, StateKey};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{error, info, warn};

use crate::Deps;
use crate::sentry::{Alert, Change};

/// How long a rollback's claim is kept: far beyond any window.
const CLAIM_TTL_SECS: i64 = 30 * 24 * 3600;

/// Records a raised alert and rolls back what it breaks. Never refuses the alert: the chat
/// still hears of it when the log or the queue is unavailable.
pub(crate) async fn watch(deps: &Deps, alert: &Alert) {
    // A new problem, more of it, or one back after it was resolved.
    if !matches!(alert.change, Change::Raised | Change::Regressed) {
        return;
    }
    let watched = deps.config.repos.iter().any(|(_, repo)| {
        repo.sentry_project.as_ref().map(|p| p.value.as_str()) == Some(alert.project.as_str())
    });
    if !watched {
        return;
    }
    let now = deps.clock.unix();
    let mark = AlertMark {
        issue: alert.issue.clone(),
        title: alert.title.clone(),
        level: alert.level,
        at: now,
        environment: alert.environment.clone(),
    };
    let log = match alerts::record(deps.state.as_ref(), &alert.project, mark.clone(), now).await {
        Ok(log) => log,
        // In a storm the log's writes may lose every race: the rollback is still judged, on
        // the log as read with this alert added.
        Err(e) => {
            warn!(error = %e, "alert not recorded; a promotion gate will not see it");
            match alerts::read(deps.state.as_ref(), &alert.project, now).await {
                Ok(mut log) => {
                    log.push(mark);
                    log
                }
                Err(_) => return,
            }
        }
    };
    for (repo_name, repo) in &deps.config.repos {
        if repo.sentry_project.as_ref().map(|p| p.value.as_str()) != Some(alert.project.as_str()) {
            continue;
        }
        // Alerts that name no environment belong to a target only when the repo deploys one.
        let single = repo
            .deploy
            .iter()
            .map(|r| r.environment.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 1;
        for rule in &repo.deploy {
            if let Some(policy) = &rule.auto_rollback
                && let Err(e) = judge(deps, repo_name, rule, policy, (&log, single), now).await
            {
                error!(error = %e, target = %rule.target_key(repo_name), "automatic rollback not judged");
            }
        }
    }
}

fn unix(rfc3339: &str) -> Option<i64> {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Rolls `rule`'s target back when its live release broke: within the window, never a
/// restored release, once per release.
async fn judge(
    deps: &Deps,
    repo_name: &str,
    rule: &DeployRule,
    policy: &AutoRollback,
    (log, unattributed): (&AlertLog, bool),
    now: i64,
) -> Result<(), StateError> {
    let Some(queue) = &deps.deploys else {
        return Ok(());
    };
    let target = rule.target_key(repo_name);
    let Some(live) = deps
        .state
        .read_value::<LiveRecord>(StateKey::Live(&target), now)
        .await?
    else {
        return Ok(());
    };
    let Some(live_since) = unix(&live.at) else {
        return Ok(());
    };
    // A restored release is not rolled back by the storm that restored it.
    if live.restored || now - live_since > policy.window.as_secs() as i64 {
        return Ok(());
    }
    let spike = log.since(
        live_since,
        &rule.environment,
        policy.min_level,
        unattributed,
    );
    if spike.new_issues < policy.new_issues && spike.events < policy.events {
        return Ok(());
    }
    let claim = StateKey::AutoRollback {
        target: &target,
        release: &live.release_id,
    };
    match deps
        .state
        .write(
            claim,
            &now,
            Precondition::Absent,
            Some(now + CLAIM_TTL_SECS),
            now,
        )
        .await
    {
        Ok(_) => {}
        Err(StateError::ConditionFailed) => return Ok(()),
        Err(e) => return Err(e),
    }
    let release = live
        .version
        .clone()
        .unwrap_or_else(|| live.release_id.clone());
    let request = RollbackRequest {
        v: messages::VERSION,
        target: target.clone(),
        release: None,
        requested_by: "shipline".into(),
        requested_at: deps.clock.rfc3339(),
        from_release: Some(live.release_id.clone()),
        reason: Some(format!(
            "{} within {} of {release} going live",
            spike.describe(),
            humantime::format_duration(std::time::Duration::from_secs(
                (now - live_since).max(0) as u64
            ))
        )),
    };
    let message = OutgoingMessage::fifo(
        messages::encode(&DeployQueueMessage::Rollback(request)),
        messages::fifo_id(&target),
        messages::fifo_id(&format!("auto-rollback:{target}:{}", live.release_id)),
    );
    if let Err(e) = queue.send(message).await {
        // Unclaimed again, so that the next alert tries.
        let _ = deps.state.remove(claim).await;
        return Err(StateError::Unavailable(format!("deploy queue: {e}")));
    }
    info!(%target, %release, "automatic rollback queued");
    Ok(())
}
