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
    let (live, mut wanted) = match to_restore(&records, request).await? {
        Ok(found) => found,
        Err(reason) => return Ok(Outcome::Skipped(reason)),
    };
    let end = put_back(deps, rule, &mut wanted).await?;

    // A release the history does not know keeps the live commit in the record.
    let sha = Some(&wanted.sha)
        .filter(|s| !s.is_empty())
        .unwrap_or(&live.sha)
        .clone();
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
            let back = Back {
                records: &records,
                rule,
                request,
                what: &what,
                chat: &chat,
                config_repo,
            };
            let reason = back
                .recorded(
                    live,
                    &wanted,
                    sha,
                    Released {
                        id,
                        version: version.clone(),
                    },
                    url.clone(),
                )
                .await?;
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

/// What is live and the release to put back, or why there is nothing to roll back.
async fn to_restore(
    records: &Records<'_>,
    request: &RollbackRequest,
) -> Result<Result<(LiveRecord, PastRelease), String>, PromotionError> {
    let target = &request.target;
    let Some(live) = records.live().await? else {
        return Ok(Err(format!("nothing is recorded as live on {target}")));
    };
    if let Some(from) = &request.from_release
        && live.release_id != *from
    {
        return Ok(Err(format!(
            "release {from} is no longer live on {target}; nothing to roll back"
        )));
    }
    Ok(match wanted_release(&live, request.release.as_deref()) {
        Some(wanted) => Ok((live, wanted)),
        None => Err(format!("no earlier release of {target} is recorded")),
    })
}

/// A rollback that went live, to be recorded and told.
struct Back<'a> {
    records: &'a Records<'a>,
    rule: &'a DeployRule,
    request: &'a RollbackRequest,
    /// The restored release's name (`v41`).
    what: &'a str,
    /// The restored commit's thread, and the repo's name in the config.
    chat: &'a Chat<'a>,
    config_repo: &'a str,
}

impl Back<'_> {
    /// The live record says what is live now; the bad release's GitHub Deployment fails, the
    /// restored commit gets one. Answers why, for the chat.
    async fn recorded(
        &self,
        live: LiveRecord,
        wanted: &PastRelease,
        sha: Sha,
        released: Released,
        url: Option<String>,
    ) -> Result<String, PromotionError> {
        let (deps, what) = (self.records.deps(), self.what);
        let repo = live.repo.clone();
        let bad = (live.deployment_id, live.version.clone());
        let mut reason = match &self.request.reason {
            Some(why) => format!("rolled back to {what} automatically: {why}"),
            None => format!("rolled back to {what} by {}", self.request.requested_by),
        };
        if wanted.sha.is_empty() {
            // Heroku's release does not say which commit it was built from, and the history
            // keeps the ten releases before the live one: GitHub cannot be told a commit.
            reason.push_str(&format!(
                " ({what} is older than the releases shipline keeps, so its commit is unknown \
                 and GitHub's deployments page is not updated for it)"
            ));
        }
        // The replaced release's message says so (a button pressed on it is answered there);
        // the restored commit's says it is live again.
        let told = Facts {
            sha: Some(live.sha.clone()),
            release: live.version.clone(),
            author: live.by.clone(),
            reason: Some(reason.clone()),
            ..self.chat.facts()
        };
        Chat::new(deps, self.config_repo, &repo, &live.sha, told.clone())
            .tell(NotificationKind::RolledBack, told)
            .await;
        let mut record = after_rollback(live, wanted, sha, released, deps.clock.rfc3339());
        record.by = Some(self.request.requested_by.clone());
        self.records.set_live(&record).await?;
        mark_failed(deps, &repo, bad, &reason).await;
        if !wanted.sha.is_empty() {
            record.deployment_id = tell_github(
                deps,
                self.rule,
                &repo,
                &wanted.sha,
                &reason,
                &self.request.requested_by,
                url,
            )
            .await;
            if record.deployment_id.is_some()
                && let Err(e) = self.records.set_live(&record).await
            {
                warn!(error = %e, "the restored release's deployment not recorded");
            }
        }
        Ok(reason)
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

/// The rolled-back release's GitHub Deployment ends `failure`, saying why. Best effort.
async fn mark_failed(deps: &Deps, repo: &str, bad: (Option<u64>, Option<String>), reason: &str) {
    let (Some(id), version) = bad else {
        return;
    };
    let status = DeploymentStatus {
        state: DeploymentState::Failure,
        description: format!(
            "{}{reason}",
            version.map(|v| format!("{v}: ")).unwrap_or_default()
        ),
        log_url: None,
        environment_url: None,
    };
    if let Err(e) = deps
        .github
        .set_deployment_status(repo, id, &status, None)
        .await
    {
        warn!(error = %e, "GitHub did not hear that the release was rolled back");
    }
}

/// GitHub's record of what is live after a rollback: a deployment of the restored commit with a
/// `success` status, whose id it answers. Best effort, after the fact: the rollback is done,
/// and is not made again because GitHub did not hear of it.
async fn tell_github(
    deps: &Deps,
    rule: &DeployRule,
    repo: &str,
    sha: &Sha,
    reason: &str,
    requested_by: &str,
    url: Option<String>,
) -> Option<u64> {
    let deployment = NewDeployment {
        sha: sha.to_string(),
        environment: rule.environment.clone(),
        description: format!("shipline: {reason}"),
        payload: json!({ "rollback": true, "requested_by": requested_by }),
    };
    let status = DeploymentStatus {
        state: DeploymentState::Success,
        description: reason.to_string(),
        log_url: url.clone(),
        environment_url: rule.environment_url.clone().or(url),
    };
    let told = match deps.github.create_deployment(repo, &deployment, None).await {
        Ok(id) => deps
            .github
            .set_deployment_status(repo, id, &status, None)
            .await
            .map(|()| id),
        Err(e) => Err(e),
    };
    match told {
        Ok(id) => Some(id),
        Err(e) => {
            warn!(error = %e, "GitHub did not hear of the rollback; its deployments page is behind");
            None
        }
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
            artifacts: Default::default(),
            deployment_id: None,
            restored: false,
            by: None,
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
