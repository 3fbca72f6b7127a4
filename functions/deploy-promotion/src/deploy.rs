//! A deploy, step by step: the order guard, the GitHub Deployment, the release (made once and
//! followed to its end), the live record and the report. Each step leaves a progress record
//! behind, so that a retry resumes where the last try stopped.

use shared::batch::Outcome;
use shared::config::DeployRule;
use shared::messages::{DeployRequest, Facts, NotificationKind, short_sha};
use shared::ports::DeploymentState;
use shared::records::LiveRecord;
use tracing::{info, warn};

use crate::deployer::{DeployError, Release};
use crate::error::PromotionError;
use crate::follow::follow;
use crate::progress::{Progress, Records, Released, after_deploy};
use crate::report::{Chat, create_deployment, deployment_status};
use crate::{Deps, buttons, promotions, rule_for};
use shared::config::Gate;
use shared::records::ActionKind;

pub(crate) async fn deploy(
    deps: &Deps,
    request: &DeployRequest,
) -> Result<Outcome, PromotionError> {
    let Some((config_repo, rule)) = rule_for(&deps.config, &request.target) else {
        return Ok(Outcome::Skipped(format!(
            "no deploy rule names target {} any more",
            request.target
        )));
    };
    let deploy = Deploy {
        deps,
        config_repo,
        request,
        rule,
        records: Records::new(deps, &request.target),
        chat: Chat::new(
            deps,
            config_repo,
            &request.repo,
            &request.sha,
            facts_of(request),
        ),
    };
    let live = deploy.records.live().await?;
    let resumed = deploy
        .records
        .progress()
        .await?
        .filter(|p| p.sha == request.sha);
    let mut progress = match resumed {
        Some(progress) => progress,
        None => match order_guard(deps, request, live.as_ref()).await? {
            Verdict::Release => deploy.begin().await?,
            Verdict::Skip(reason) => return Ok(deploy.skip(reason).await),
            // A second request for what is live (build-dispatch's finalize retried after
            // SQS's five-minute deduplication window): the chat's story already says Live,
            // and "skipped" after it would be wrong.
            Verdict::AlreadyLive(reason) => return Ok(Outcome::Skipped(reason)),
        },
    };
    if !progress.announced {
        deploy.announce(&mut progress).await?;
    }
    match deploy.release(&mut progress).await? {
        Release::Live { id, version, url } => {
            let released = Released { id, version };
            deploy.went_live(live, &progress, released, url).await
        }
        Release::Pending { id, .. } => Err(PromotionError::StillPending(id)),
        Release::Failed { reason, .. } => {
            let reason = format!("deploy failed, production unchanged: {reason}");
            deploy.fail(&progress, reason).await
        }
    }
}

/// What the order guard decided about a request.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Release,
    /// Not released, on purpose, and the reason.
    Skip(String),
    /// This very commit is live already: nothing to do and nothing to tell.
    AlreadyLive(String),
}

/// Deploy only the head of the branch, and never a commit behind what is live.
async fn order_guard(
    deps: &Deps,
    request: &DeployRequest,
    live: Option<&LiveRecord>,
) -> Result<Verdict, PromotionError> {
    if let Some(live) = live
        && live.sha == request.sha
    {
        return Ok(Verdict::AlreadyLive(format!(
            "{} is already live",
            request.sha.short()
        )));
    }
    // A promotion ran on its source environment: it goes on even when the branch has moved
    // since (the newer commit gets its own promotion), but never behind what is live. So does
    // a release a person asked for (`/deploy`).
    let head = if request.promotion.is_some() || request.requested_by.is_some() {
        request.sha.to_string()
    } else {
        deps.github
            .branch_head(&request.repo, &request.branch, request.installation_id)
            .await?
    };
    if head != request.sha {
        return Ok(Verdict::Skip(format!("superseded by {}", short_sha(&head))));
    }
    let Some(live) = live else {
        return Ok(Verdict::Release);
    };
    let comparison = deps
        .github
        .compare(
            &request.repo,
            &live.sha,
            &request.sha,
            request.installation_id,
        )
        .await?;
    // A person's release may be of any branch: it goes only if it holds everything live, never
    // a commit that forked before it (which would drop what is live).
    if request.requested_by.is_some()
        && request.promotion.is_none()
        && comparison == shared::ports::Comparison::Diverged
    {
        return Ok(Verdict::Skip(format!(
            "{} has diverged from the live {}: it lacks commits that are live",
            request.sha.short(),
            live.sha.short()
        )));
    }
    if comparison.is_not_newer() {
        return Ok(Verdict::Skip(format!(
            "{} is behind the live {}",
            request.sha.short(),
            live.sha.short()
        )));
    }
    Ok(Verdict::Release)
}

/// The facts every chat message about this deploy carries.
fn facts_of(request: &DeployRequest) -> Facts {
    Facts {
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
    }
}

/// One deploy request and what it touches.
struct Deploy<'a> {
    deps: &'a Deps,
    config_repo: &'a str,
    request: &'a DeployRequest,
    rule: &'a DeployRule,
    records: Records<'a>,
    chat: Chat<'a>,
}

impl Deploy<'_> {
    async fn skip(&self, reason: String) -> Outcome {
        let facts = Facts {
            reason: Some(reason.clone()),
            ..self.chat.facts()
        };
        self.chat.tell(NotificationKind::DeploySkipped, facts).await;
        Outcome::Skipped(reason)
    }

    /// Creates the GitHub Deployment and records that the deploy is under way.
    async fn begin(&self) -> Result<Progress, PromotionError> {
        let deployment_id = create_deployment(self.deps, self.request).await?;
        let progress = Progress::new(self.request.sha.clone(), deployment_id);
        self.records.save(&progress).await?;
        Ok(progress)
    }

    /// Tells GitHub (`in_progress`) and the chat that the release starts.
    async fn announce(&self, progress: &mut Progress) -> Result<(), PromotionError> {
        // A retry resumes here with the deployment already created: one deployment, one
        // `in_progress`, one chat update, however often GitHub fails in between.
        let description = format!("Releasing to {}", self.request.target);
        self.deployment_status(progress, DeploymentState::InProgress, &description, None)
            .await?;
        let facts = Facts {
            url: self.request.log_url.clone(),
            ..self.chat.facts()
        };
        self.chat.tell(NotificationKind::DeployStarted, facts).await;
        progress.announced = true;
        if let Err(e) = self.records.save(progress).await {
            warn!(error = %e, "announcement not recorded");
        }
        Ok(())
    }

    /// Releases once, then follows the release to its end within this invocation's budget. A
    /// retry follows the release an earlier try made, or looks for it if that try could not
    /// read it back.
    async fn release(&self, progress: &mut Progress) -> Result<Release, PromotionError> {
        let (deployer, rule) = (&self.deps.deployer, self.rule);
        let first = match (&progress.release_id, progress.requested) {
            (Some(id), _) => deployer.status(rule, id).await,
            (None, true) => match deployer
                .released_since(rule, progress.since.as_deref())
                .await
            {
                Ok(Some(release)) => Ok(release),
                // The request never landed: this is the first release.
                Ok(None) => deployer.release(rule, self.request).await,
                Err(e) => Err(e),
            },
            (None, false) => deployer.release(rule, self.request).await,
        };
        let first = match first {
            Err(DeployError::Unconfirmed { reason, since }) => {
                progress.requested = true;
                progress.since.clone_from(&since);
                if let Err(state) = self.records.save(progress).await {
                    warn!(error = %state, "unconfirmed release not recorded; a retry may release again");
                }
                return Err(DeployError::Unconfirmed { reason, since }.into());
            }
            first => first,
        };
        // Whatever comes next may fail and retry the message: the retry must follow this
        // release, not make another.
        if let Ok(release) = &first {
            self.note(progress, release).await;
        }
        let end = follow(self.deps, rule, first).await?;
        self.note(progress, &end).await;
        Ok(end)
    }

    async fn note(&self, progress: &mut Progress, release: &Release) {
        if progress.note(release)
            && let Err(e) = self.records.save(progress).await
        {
            warn!(error = %e, "release id not recorded; a retry may release again");
        }
    }

    async fn went_live(
        &self,
        live: Option<LiveRecord>,
        progress: &Progress,
        released: Released,
        url: Option<String>,
    ) -> Result<Outcome, PromotionError> {
        let request = self.request;
        let release_id = released.id.clone();
        // A retry that only has the final status left finds this release already live.
        let recorded = live
            .as_ref()
            .is_some_and(|l| l.sha == request.sha && l.release_id == released.id);
        let version = released.version.clone();
        if !recorded {
            let now = self.deps.clock.rfc3339();
            let mut record = after_deploy(live.as_ref(), request, released, now);
            record.deployment_id = progress.deployment_id;
            self.records.set_live(&record).await?;
        }
        let environment_url = self.rule.environment_url.clone().or(url.clone());
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
        self.deployment_status(
            progress,
            DeploymentState::Success,
            &description,
            environment_url,
        )
        .await?;
        // Before the progress record goes: a retry comes back through here.
        let next = promotions::schedule(
            self.deps,
            self.config_repo,
            self.rule,
            request,
            version.as_deref(),
        )
        .await?;
        self.records.finish().await;
        let asked = request
            .requested_by
            .as_ref()
            .map(|by| format!("asked for by {by}"));
        let came = request.promotion.as_ref().map(|p| {
            format!(
                "promoted from {}{}: {}",
                p.environment,
                p.release
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                p.passed
            )
        });
        let reason = [asked, came, next]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        let mut facts = Facts {
            release: version,
            url: url.or(request.log_url.clone()),
            reason: (!reason.is_empty()).then(|| reason.join("; ")),
            ..self.chat.facts()
        };
        // Something to roll back to: a release before this one (a retry finds this one live).
        let has_history = live
            .as_ref()
            .is_some_and(|l| l.sha != request.sha || !l.history.is_empty());
        facts.actions = self.buttons(&facts, release_id, has_history).await;
        self.chat
            .tell(NotificationKind::DeploySucceeded, facts)
            .await;
        info!("live");
        Ok(Outcome::Done)
    }

    /// The buttons of a release that went live: "Roll back" when there is a release before it,
    /// and "Promote to …" for each promotion from here that waits for a person.
    async fn buttons(
        &self,
        facts: &Facts,
        release_id: String,
        has_history: bool,
    ) -> Vec<shared::messages::ChatButton> {
        let request = self.request;
        let mut offers = Vec::new();
        if has_history {
            offers.push(buttons::Offer {
                kind: ActionKind::Rollback,
                target: request.target.clone(),
                sha: request.sha.clone(),
                release: Some(release_id.clone()),
                label: format!("Roll back {}", self.rule.environment),
            });
        }
        if let Some(repo) = self.deps.config.repo(self.config_repo) {
            for promotion in self
                .deps
                .config
                .promotions_from(repo, &self.rule.environment)
            {
                if promotion.gate() == Gate::Approval {
                    offers.push(buttons::Offer {
                        kind: ActionKind::Promote,
                        target: promotion.target_key(self.config_repo),
                        sha: request.sha.clone(),
                        // This release of the source: pressed after a newer one, it does
                        // nothing.
                        release: Some(release_id.clone()),
                        label: format!("Promote to {}", promotion.environment),
                    });
                }
            }
        }
        buttons::offer(
            self.deps,
            &self.chat,
            NotificationKind::DeploySucceeded,
            facts,
            offers,
        )
        .await
    }

    /// The release did not go live: said to GitHub and the chat, and not retried.
    async fn fail(&self, progress: &Progress, reason: String) -> Result<Outcome, PromotionError> {
        self.deployment_status(progress, DeploymentState::Failure, &reason, None)
            .await?;
        self.records.finish().await;
        let facts = Facts {
            reason: Some(reason.clone()),
            url: self.request.log_url.clone(),
            ..self.chat.facts()
        };
        self.chat.tell(NotificationKind::DeployFailed, facts).await;
        warn!(%reason, "deploy failed");
        Ok(Outcome::Skipped(reason))
    }

    async fn deployment_status(
        &self,
        progress: &Progress,
        state: DeploymentState,
        description: &str,
        environment_url: Option<String>,
    ) -> Result<(), PromotionError> {
        deployment_status(
            self.deps,
            self.request,
            progress.deployment_id,
            state,
            description,
            environment_url,
        )
        .await
    }
}
