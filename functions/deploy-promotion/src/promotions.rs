//! Promotion between environments: what went live on a source environment waits (the soak
//! time, then the gate), and the same image ids go to the next environment through
//! `deploys.fifo`, in that target's group, so a promotion never overlaps a deploy of it.
//!
//! The waiting costs nothing: a pending promotion is one entry in `promotions:pending`, and
//! the function's schedule (`sweep`) looks at the due ones. A newer release on the source
//! replaces a pending promotion of an older one.

use serde::Serialize;
use shared::alerts;
use shared::batch::Outcome;
use shared::config::{DeployRule, Gate};
use shared::ids::{Sha, TargetKey};
use shared::messages::{
    self, DeployQueueMessage, DeployRequest, Facts, NotificationKind, PromoteRequest, PromotionOf,
};
use shared::ports::{OutgoingMessage, StateError, StateStore};
use shared::records::{LiveRecord, PendingPromotion, PendingPromotions, StateKey};
use tracing::{info, warn};

use crate::error::PromotionError;
use crate::report::Chat;
use crate::{Deps, rule_for};

/// How long pending promotions are kept at most (an approval nobody gives).
const PENDING_TTL_SECS: i64 = 30 * 24 * 3600;

/// Reads, changes and writes back the pending promotions, retrying when another writer got
/// there first. `change` answers what it did.
async fn update<T>(
    deps: &Deps,
    change: impl FnMut(&mut PendingPromotions) -> T,
) -> Result<T, StateError> {
    let now = deps.clock.unix();
    deps.state
        .modify(
            StateKey::Promotions,
            Some(now + PENDING_TTL_SECS),
            now,
            change,
        )
        .await
}

fn human(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// After a release went live on `rule`'s environment: each promotion rule that takes from it
/// gets this release pending. Answers what the chat should say comes next. A failure is the
/// deploy message's retry (before its progress record is cleared), so no promotion is lost.
pub(crate) async fn schedule(
    deps: &Deps,
    config_repo: &str,
    rule: &DeployRule,
    request: &DeployRequest,
    version: Option<&str>,
) -> Result<Option<String>, StateError> {
    let Some(repo) = deps.config.repo(config_repo) else {
        return Ok(None);
    };
    let now = deps.clock.unix();
    let mut next = Vec::new();
    for promotion in deps.config.promotions_from(repo, &rule.environment) {
        let soak = promotion.after.unwrap_or_default().as_secs();
        let target = promotion.target_key(config_repo);
        // A retried deploy message comes back here after its promotion may have happened.
        if already_live(&*deps.state, now, &target, &request.sha).await? {
            continue;
        }
        let pending = PendingPromotion {
            request: DeployRequest {
                target: target.clone(),
                environment: promotion.environment.clone(),
                delivery_id: format!("promote-{}-{}", request.sha.short(), target).into(),
                promotion: Some(PromotionOf {
                    environment: rule.environment.clone(),
                    target: request.target.clone(),
                    release: version.map(str::to_string),
                    passed: String::new(),
                }),
                // Whoever asked for the source's release did not ask for this one: the gate,
                // or the person who approves it, lets it through.
                requested_by: None,
                ..request.clone()
            },
            live_since: now,
            due: now + soak as i64,
        };
        let replaced = update(deps, |all| all.insert(target.to_string(), pending.clone())).await?;
        if let Some(old) = replaced
            && old.request.sha != request.sha
        {
            superseded(deps, config_repo, &old, request).await;
        }
        let when = if soak == 0 {
            String::new()
        } else {
            format!(" in {}", human(soak))
        };
        next.push(match promotion.gate() {
            Gate::None => format!("{}{when}", promotion.environment),
            Gate::Sentry => format!(
                "{}{when} if Sentry raises no new issue on {}",
                promotion.environment, rule.environment
            ),
            Gate::Approval => format!(
                "{}{when} once approved: shipline promote {target}",
                promotion.environment
            ),
        });
        info!(%target, due = pending.due, "promotion scheduled");
    }
    Ok((!next.is_empty()).then(|| format!("next: {}", next.join("; "))))
}

/// Whether `sha` is what `target` runs already. A live record that does not parse is an
/// error, to be looked at, never "nothing is live".
async fn already_live(
    state: &dyn StateStore,
    now: i64,
    target: &TargetKey,
    sha: &Sha,
) -> Result<bool, StateError> {
    let live = state
        .read_value::<LiveRecord>(StateKey::Live(target), now)
        .await?;
    Ok(live.is_some_and(|live| live.sha == *sha))
}

async fn superseded(deps: &Deps, config_repo: &str, old: &PendingPromotion, by: &DeployRequest) {
    let reason = format!(
        "promotion to {} superseded: {} went live on {} since",
        old.request.environment,
        by.sha.short(),
        old.request
            .promotion
            .as_ref()
            .map_or("the source", |p| p.environment.as_str())
    );
    blocked(deps, config_repo, &old.request, reason).await;
}

/// Tells the promoted commit's thread that its promotion will not happen, and why.
async fn blocked(deps: &Deps, config_repo: &str, request: &DeployRequest, reason: String) {
    let facts = Facts {
        repo: Some(request.repo.clone()),
        sha: Some(request.sha.clone()),
        branch: Some(request.branch.clone()),
        target: Some(request.target.clone()),
        environment: Some(request.environment.clone()),
        reason: Some(reason),
        ..Facts::default()
    };
    let chat = Chat::new(
        deps,
        config_repo,
        &request.repo,
        &request.sha,
        facts.clone(),
    );
    chat.tell(NotificationKind::PromotionBlocked, facts).await;
}

/// Puts a promotion on `deploys.fifo`, in its target's group.
async fn enqueue(
    deps: &Deps,
    mut request: DeployRequest,
    passed: String,
) -> Result<(), PromotionError> {
    if let Some(p) = request.promotion.as_mut() {
        p.passed = passed;
    }
    let dedup = format!("promote:{}:{}", request.target, request.sha);
    let message = OutgoingMessage::fifo(
        messages::encode(&DeployQueueMessage::Deploy(Box::new(request.clone()))),
        messages::fifo_id(&request.target),
        messages::fifo_id(&dedup),
    );
    deps.deploys
        .send(message)
        .await
        .map_err(|e| PromotionError::State(StateError::Unavailable(format!("deploy queue: {e}"))))
}

/// What a sweep did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub promoted: Vec<String>,
    pub blocked: Vec<String>,
    pub waiting: Vec<String>,
}

/// What became of one due promotion.
enum Due {
    Promote(String),
    Block(String),
    Wait,
}

/// The scheduled look at pending promotions: each one whose soak time is over goes through its
/// gate: promoted, blocked (said in the chat), or left waiting for a person.
pub async fn sweep(deps: &Deps) -> Result<SweepReport, StateError> {
    let now = deps.clock.unix();
    let pending: PendingPromotions = deps
        .state
        .read_value(StateKey::Promotions, now)
        .await?
        .unwrap_or_default();
    let mut report = SweepReport::default();
    for (target, promotion) in pending {
        let key = TargetKey::new(target.clone());
        let decision = match rule_for(&deps.config, &key) {
            _ if now < promotion.due => Due::Wait,
            None => Due::Block(format!("no deploy rule names {target} any more")),
            Some((config_repo, rule)) => gate(deps, config_repo, rule, &promotion).await?,
        };
        if matches!(decision, Due::Wait) {
            report.waiting.push(target);
            continue;
        }
        // Taken out first, and only if it is still the same promotion: a newer release that
        // replaced it meanwhile is left for the next sweep, and is the only one told.
        if !take(deps, &target, &promotion.request.sha).await? {
            continue;
        }
        match decision {
            Due::Promote(passed) => {
                if let Err(e) = enqueue(deps, promotion.request.clone(), passed).await {
                    warn!(error = %e, %target, "promotion not queued; put back for the next sweep");
                    let back = promotion.clone();
                    update(deps, |all| {
                        all.entry(target.clone()).or_insert_with(|| back.clone());
                    })
                    .await?;
                    continue;
                }
                report.promoted.push(target);
            }
            Due::Block(reason) => {
                report.blocked.push(target);
                if let Some((config_repo, _)) = rule_for(&deps.config, &key) {
                    blocked(deps, config_repo, &promotion.request, reason).await;
                }
            }
            Due::Wait => {}
        }
    }
    Ok(report)
}

/// Removes `target`'s pending promotion if it is still of `sha`; whether it did.
async fn take(deps: &Deps, target: &str, sha: &Sha) -> Result<bool, StateError> {
    update(deps, |all| {
        if all.get(target).is_some_and(|p| p.request.sha == *sha) {
            all.remove(target);
            true
        } else {
            false
        }
    })
    .await
}

/// Why a promotion's release can no longer go: it is not live on the source any more (a
/// rollback, or a newer release whose own promotion replaces this one).
async fn source_gone(deps: &Deps, request: &DeployRequest) -> Result<Option<String>, StateError> {
    let Some(from) = &request.promotion else {
        return Ok(None);
    };
    let live = deps
        .state
        .read_value::<LiveRecord>(StateKey::Live(&from.target), deps.clock.unix())
        .await?;
    Ok(match live {
        Some(live) if live.sha == request.sha && !live.restored => None,
        Some(live) if live.restored => Some(format!(
            "{} was rolled back on {}",
            request.sha.short(),
            from.environment
        )),
        _ => Some(format!(
            "{} is no longer live on {}",
            request.sha.short(),
            from.environment
        )),
    })
}

/// The gate of a due promotion.
async fn gate(
    deps: &Deps,
    config_repo: &str,
    rule: &DeployRule,
    promotion: &PendingPromotion,
) -> Result<Due, StateError> {
    if let Some(gone) = source_gone(deps, &promotion.request).await? {
        return Ok(Due::Block(format!(
            "not promoted to {}: {gone}",
            rule.environment
        )));
    }
    let source = promotion
        .request
        .promotion
        .as_ref()
        .map_or("the source", |p| p.environment.as_str());
    Ok(match rule.gate() {
        Gate::None => Due::Promote("soak time over".into()),
        Gate::Approval => Due::Wait,
        Gate::Sentry => {
            let project = deps
                .config
                .repo(config_repo)
                .and_then(|r| r.sentry_project.as_ref())
                .map(|p| p.value.clone())
                .unwrap_or_default();
            let log = alerts::read(deps.state.as_ref(), &project, deps.clock.unix()).await?;
            let min_level = deps.config.sentry_min_level(&project);
            // An alert that names no environment counts here: a gate errs on the side of not
            // promoting.
            let spike = log.since(promotion.live_since, source, min_level, true);
            if spike.new_issues == 0 {
                Due::Promote(format!("no new Sentry issue on {source}"))
            } else {
                Due::Block(format!(
                    "not promoted to {}: Sentry saw on {source} since it went live {}",
                    rule.environment,
                    spike.describe()
                ))
            }
        }
    })
}

/// `shipline promote TARGET`: the target's pending promotion goes now, whatever its soak time
/// and gate; without one, what is live on the source environment is promoted. It is queued as
/// a self-contained deploy in the target's group (so a retry of it never picks another
/// commit), then taken out of the pending ones.
pub(crate) async fn promote(
    deps: &Deps,
    request: &PromoteRequest,
) -> Result<Outcome, PromotionError> {
    let target = &request.target;
    let Some((config_repo, rule)) = rule_for(&deps.config, target) else {
        return Ok(Outcome::Skipped(format!("no deploy rule names {target}")));
    };
    let Some(from) = rule.promoted_from() else {
        return Ok(Outcome::Skipped(format!(
            "{target} is not promoted to: its rule releases branch {}",
            rule.branch
        )));
    };
    let wanted = |sha: &Sha| request.sha.as_ref().is_none_or(|s| s == sha);
    let pending: PendingPromotions = deps
        .state
        .read_value(StateKey::Promotions, deps.clock.unix())
        .await?
        .unwrap_or_default();
    let deploy_request = match pending.get(target.as_str()) {
        Some(p) if wanted(&p.request.sha) => p.request.clone(),
        _ => match from_live(deps, config_repo, from, target, rule).await? {
            Ok(live) if wanted(&live.sha) => live,
            Ok(live) => {
                return Ok(Outcome::Skipped(format!(
                    "{} is not live on {from} ({} is)",
                    request.sha.as_ref().map(|s| s.short()).unwrap_or_default(),
                    live.sha.short()
                )));
            }
            Err(reason) => return Ok(Outcome::Skipped(reason)),
        },
    };
    if let Some(gone) = source_gone(deps, &deploy_request).await? {
        return Ok(Outcome::Skipped(format!("not promoted: {gone}")));
    }
    let sha = deploy_request.sha.clone();
    let deploy_request = DeployRequest {
        requested_by: Some(request.requested_by.clone()),
        ..deploy_request
    };
    enqueue(
        deps,
        deploy_request,
        format!("approved by {}", request.requested_by),
    )
    .await?;
    take(deps, target.as_str(), &sha).await?;
    Ok(Outcome::Done)
}

/// A promotion of what is live on `from`, built from its live record.
async fn from_live(
    deps: &Deps,
    config_repo: &str,
    from: &str,
    target: &TargetKey,
    rule: &DeployRule,
) -> Result<Result<DeployRequest, String>, PromotionError> {
    let nothing = || Err(format!("nothing is live on {from} to promote"));
    let Some(repo) = deps.config.repo(config_repo) else {
        return Ok(nothing());
    };
    let Some(source) = repo.deploy.iter().find(|r| r.environment == from) else {
        return Ok(nothing());
    };
    let source_target = source.target_key(config_repo);
    let Some(live) = deps
        .state
        .read_value::<LiveRecord>(StateKey::Live(&source_target), deps.clock.unix())
        .await?
    else {
        return Ok(nothing());
    };
    // A restored release (or one recorded before images were kept) has no images to release.
    if live.artifacts.is_empty() {
        return Ok(Err(format!(
            "what is live on {from} ({}) carries no image ids to promote; promote its next release",
            live.sha.short()
        )));
    }
    Ok(Ok(DeployRequest {
        v: messages::VERSION,
        repo: live.repo.clone(),
        branch: live.branch.clone(),
        sha: live.sha.clone(),
        build_id: live.build_id.clone(),
        log_url: None,
        target: target.clone(),
        environment: rule.environment.clone(),
        artifacts: live.artifacts.clone(),
        delivery_id: format!("promote-{}-{target}", live.sha.short()).into(),
        commit_message: None,
        author: None,
        installation_id: None,
        requested_at: deps.clock.rfc3339(),
        promotion: Some(PromotionOf {
            environment: from.to_string(),
            target: source_target,
            release: live.version.clone(),
            passed: String::new(),
        }),
        requested_by: None,
    }))
}

#[cfg(test)]
mod tests {
    use shared::adapters::memory::MemoryStateStore;
    use shared::ports::Precondition;

    use super::*;

    async fn store_live(state: &MemoryStateStore, target: &TargetKey, value: serde_json::Value) {
        let key = StateKey::Live(target).to_string();
        state
            .put(&key, value, Precondition::None, None, 0)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_live_commit_is_already_live_and_another_or_none_is_not() {
        let state = MemoryStateStore::new();
        let target = TargetKey::new("heroku:app");
        let sha = Sha::new("a".repeat(40));
        let nothing = already_live(&state, 0, &target, &sha).await;
        assert!(matches!(nothing, Ok(false)), "{nothing:?}");
        let live = serde_json::json!({
            "repo": "o/r", "branch": "master", "sha": sha, "release_id": "rel-1",
            "at": "2026-11-26T09:00:00Z", "build_id": "p:1",
        });
        store_live(&state, &target, live).await;
        assert!(already_live(&state, 0, &target, &sha).await.unwrap());
        let other = Sha::new("b".repeat(40));
        assert!(!already_live(&state, 0, &target, &other).await.unwrap());
    }

    #[tokio::test]
    async fn a_corrupt_live_record_is_an_error_not_nothing_live() {
        let state = MemoryStateStore::new();
        let target = TargetKey::new("heroku:app");
        store_live(&state, &target, serde_json::json!({"sha": 42})).await;
        let read = already_live(&state, 0, &target, &Sha::new("a".repeat(40))).await;
        assert!(matches!(read, Err(StateError::Corrupt(_))), "{read:?}");
    }
}
