//! A rollback: an earlier release of a target goes live again, and the live record and the
//! chat say so. It travels the deploy queue, so it never races a deploy of the same target.

use serde_json::json;
use shared::batch::Outcome;
use shared::config::DeployRule;
use shared::ids::Sha;
use shared::messages::{Facts, NotificationKind, RollbackRequest};
use shared::ports::{DeploymentState, DeploymentStatus, NewDeployment};
use shared::records::{LiveRecord, PastRelease};
use tracing::warn;

use crate::deployer::Release;
use crate::error::PromotionError;
use crate::follow::follow;
use crate::progress::{Records, Released, after_rollback};
use crate::report::Chat;
use crate::{Deps, rule_for};

pub(crate) async fn rollback(
    deps: &Deps,
    request: &RollbackRequest,
) -> Result<Outcome, PromotionError> {
    let target = &request.target;
    let Some((config_repo, rule)) = rule_for(&deps.config, target) else {
        return Ok(Outcome::Skipped(format!(
            "no deploy rule names target {target}"
        )));
    };
    let records = Records::new(deps, target);
    let Some(live) = records.live().await? else {
        return Ok(Outcome::Skipped(format!(
            "nothing is recorded as live on {target}"
        )));
    };
    let Some(mut wanted) = wanted_release(&live, request.release.as_deref()) else {
        return Ok(Outcome::Skipped(format!(
            "no earlier release of {target} is recorded"
        )));
    };
    let end = put_back(deps, rule, &mut wanted).await?;

    // A release the history does not know keeps the live commit in the record.
    let sha = if wanted.sha.is_empty() {
        live.sha.clone()
    } else {
        wanted.sha.clone()
    };
    let facts = Facts {
        repo: Some(live.repo.clone()),
        sha: Some(sha.clone()),
        branch: Some(live.branch.clone()),
        author: Some(request.requested_by.clone()),
        target: Some(target.clone()),
        environment: Some(rule.environment.clone()),
        ..Facts::default()
    };
    let chat = Chat::new(deps, config_repo, &live.repo, &sha, facts);
    let what = wanted
        .version
        .clone()
        .unwrap_or_else(|| wanted.release_id.clone());
    match end {
        Release::Live { id, version, url } => {
            let released = Released {
                id,
                version: version.clone(),
            };
            let repo = live.repo.clone();
            let record = after_rollback(live, &wanted, sha, released, deps.clock.rfc3339());
            records.set_live(&record).await?;
            let reason = format!("rolled back to {what} by {}", request.requested_by);
            if !wanted.sha.is_empty() {
                tell_github(deps, rule, &repo, &wanted.sha, &reason, url.clone()).await;
            }
            let facts = Facts {
                release: version,
                url,
                reason: Some(reason),
                ..chat.facts()
            };
            chat.tell(NotificationKind::DeploySucceeded, facts).await;
            Ok(Outcome::Done)
        }
        Release::Pending { id, .. } => Ok(Outcome::Skipped(format!(
            "rollback release {id} still pending; check the target"
        ))),
        Release::Failed { reason, .. } => {
            let facts = Facts {
                reason: Some(format!("rollback to {what} failed: {reason}")),
                ..chat.facts()
            };
            chat.tell(NotificationKind::DeployFailed, facts).await;
            Ok(Outcome::Skipped(reason))
        }
    }
}

/// Releases `wanted` again, followed to its end. `v41` becomes the id the target's API takes
/// first, and an expired release is refused (a failed release: production unchanged).
async fn put_back(
    deps: &Deps,
    rule: &DeployRule,
    wanted: &mut PastRelease,
) -> Result<Release, PromotionError> {
    let first = match deps
        .deployer
        .rollback_candidate(rule, &wanted.release_id)
        .await
    {
        Ok(named) => {
            wanted.version = wanted.version.take().or(named.version);
            wanted.release_id = named.id;
            deps.deployer.rollback(rule, &wanted.release_id).await
        }
        Err(e) => Err(e),
    };
    follow(deps, rule, first).await
}

/// GitHub's record of what is live after a rollback: a deployment of the restored commit with a
/// `success` status. Best effort, after the fact: the rollback is done, and is not made again
/// because GitHub did not hear of it.
async fn tell_github(
    deps: &Deps,
    rule: &DeployRule,
    repo: &str,
    sha: &Sha,
    reason: &str,
    url: Option<String>,
) {
    let deployment = NewDeployment {
        sha: sha.to_string(),
        environment: rule.environment.clone(),
        description: format!("shipline: {reason}"),
        payload: json!({ "rollback": true }),
    };
    let status = DeploymentStatus {
        state: DeploymentState::Success,
        description: reason.to_string(),
        log_url: url.clone(),
        environment_url: rule.environment_url.clone().or(url),
    };
    let told = match deps.github.create_deployment(repo, &deployment, None).await {
        Ok(id) => {
            deps.github
                .set_deployment_status(repo, id, &status, None)
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = told {
        warn!(error = %e, "GitHub did not hear of the rollback; its deployments page is behind");
    }
}

/// The release to put back: the one asked for (by id or version), else the one before the live
/// release. One the history does not know is still tried by its id, with its commit unknown.
fn wanted_release(live: &LiveRecord, asked: Option<&str>) -> Option<PastRelease> {
    let Some(asked) = asked else {
        return live.history.last().cloned();
    };
    let known = live
        .history
        .iter()
        .rev()
        .find(|p| p.release_id == asked || p.version.as_deref() == Some(asked))
        .cloned();
    Some(known.unwrap_or(PastRelease {
        sha: Default::default(),
        release_id: asked.to_string(),
        version: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> LiveRecord {
        LiveRecord {
            repo: "o/r".into(),
            branch: "master".into(),
            sha: "c".into(),
            release_id: "rel-42".into(),
            version: Some("v42".into()),
            at: "2026-11-26T09:00:00Z".into(),
            build_id: "p:0".into(),
            history: vec![
                PastRelease {
                    sha: "a".into(),
                    release_id: "rel-40".into(),
                    version: Some("v40".into()),
                },
                PastRelease {
                    sha: "b".into(),
                    release_id: "rel-41".into(),
                    version: Some("v41".into()),
                },
            ],
        }
    }

    #[test]
    fn without_a_release_named_the_one_before_the_live_one_goes_back() {
        assert_eq!(wanted_release(&live(), None).unwrap().release_id, "rel-41");
    }

    #[test]
    fn a_release_is_found_by_id_or_version_and_an_unknown_one_is_tried_by_id() {
        assert_eq!(wanted_release(&live(), Some("v40")).unwrap().sha, "a");
        assert_eq!(wanted_release(&live(), Some("rel-40")).unwrap().sha, "a");
        let unknown = wanted_release(&live(), Some("rel-7")).unwrap();
        assert_eq!(
            (unknown.release_id.as_str(), unknown.sha.as_str()),
            ("rel-7", "")
        );
    }

    #[test]
    fn with_no_history_there_is_nothing_to_go_back_to() {
        let mut live = live();
        live.history.clear();
        assert_eq!(wanted_release(&live, None), None);
    }
}
