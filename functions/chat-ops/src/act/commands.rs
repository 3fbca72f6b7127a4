//! The commands that act: `/rollback`, `/promote` and `/deploy`, each queued as the same
//! request as its `shipline` subcommand, or answered with why nothing was done.

use shared::config::{Config, DeployRule, Repo};
use shared::ids::TargetKey;
use shared::messages::{self, DeployQueueMessage, DeployRequest, PromoteRequest, RollbackRequest};
use shared::records::{BuiltCommit, RecentBuilds, StateKey};

use super::allow::Ask;
use super::{ActError, enqueue, live, release_name};
use crate::Deps;
use crate::telegram::escape;

fn targets_list(config: &Config) -> String {
    let names: Vec<String> = config
        .targets()
        .map(|(t, _, _)| format!("<code>{}</code>", escape(&t)))
        .collect();
    if names.is_empty() {
        "none is configured".into()
    } else {
        names.join(", ")
    }
}

/// The configured target `name` names, with its repo's name and rule.
fn find_target<'a>(config: &'a Config, name: &str) -> Option<(TargetKey, &'a str, &'a DeployRule)> {
    config.targets().find(|(t, _, _)| t.as_str() == name)
}

/// `/rollback TARGET [version]`: the same request as `shipline rollback`, pinned to what is
/// live now (a release that goes live meanwhile is not rolled back by a request made before).
pub(super) async fn rollback(
    deps: &Deps,
    ask: &Ask,
    target: &str,
    release: Option<String>,
) -> Result<String, ActError> {
    let Some((target, _, _)) = find_target(&deps.config, target) else {
        return Ok(format!(
            "There is no target <code>{}</code>. Targets: {}.",
            escape(target),
            targets_list(&deps.config)
        ));
    };
    let Some(live) = live(deps, &target).await? else {
        return Ok(format!(
            "Nothing is recorded as live on <code>{}</code>: nothing to roll back.",
            escape(&target)
        ));
    };
    if release.is_none() && live.history.is_empty() {
        return Ok(format!(
            "No release of <code>{}</code> before {} is recorded: nothing to roll back to.",
            escape(&target),
            escape(&release_name(&live))
        ));
    }
    let request = RollbackRequest {
        v: messages::VERSION,
        target: target.clone(),
        release: release.clone(),
        requested_by: ask.by.clone(),
        requested_at: ask.at.clone(),
        from_release: Some(live.release_id.clone()),
        reason: None,
    };
    enqueue(
        deps,
        &DeployQueueMessage::Rollback(request),
        &target,
        &ask.dedup,
    )
    .await?;
    let to = release.map_or_else(|| "the release before".to_string(), |r| escape(&r));
    Ok(format!(
        "⏪ Rollback of <code>{}</code> from {} to {to} queued, asked for by {}. \
                  The deploy's message will say when it is done.",
        escape(&target),
        escape(&release_name(&live)),
        escape(&ask.by)
    ))
}

/// `/promote TARGET`: the same request as `shipline promote`.
pub(super) async fn promote(deps: &Deps, ask: &Ask, target: &str) -> Result<String, ActError> {
    let Some((target, _, rule)) = find_target(&deps.config, target) else {
        return Ok(format!(
            "There is no target <code>{}</code>. Targets: {}.",
            escape(target),
            targets_list(&deps.config)
        ));
    };
    let Some(from) = rule.promoted_from() else {
        return Ok(format!(
            "<code>{}</code> is not promoted to: it releases branch <code>{}</code> as it goes green.",
            escape(&target),
            escape(&rule.branch)
        ));
    };
    let request = PromoteRequest {
        v: messages::VERSION,
        target: target.clone(),
        sha: None,
        requested_by: ask.by.clone(),
        requested_at: ask.at.clone(),
    };
    enqueue(
        deps,
        &DeployQueueMessage::Promote(request),
        &target,
        &ask.dedup,
    )
    .await?;
    Ok(format!(
        "⏫ Promotion of what waits on {} to {} (<code>{}</code>) queued, asked for by {}.",
        escape(from),
        escape(&rule.environment),
        escape(&target),
        escape(&ask.by)
    ))
}

/// The branch whose builds a rule releases: its own, or, for a promotion, its source's.
fn branch_of<'a>(repo: &'a Repo, rule: &'a DeployRule) -> &'a str {
    let mut rule = rule;
    for _ in 0..repo.deploy.len() {
        let Some(from) = rule.promoted_from() else {
            break;
        };
        match repo.deploy.iter().find(|r| r.environment == from) {
            Some(source) => rule = source,
            None => break,
        }
    }
    &rule.branch
}

/// Which of the repo's rules a `/deploy` means, and which build: `[sha|branch] [environment]`.
fn deploy_rule<'a>(
    repo_name: &str,
    repo: &'a Repo,
    args: &[String],
) -> Result<(&'a DeployRule, Option<String>), String> {
    let environments: Vec<String> = repo.deploy.iter().map(|r| escape(&r.environment)).collect();
    let by_env = |env: &str| repo.deploy.iter().find(|r| r.environment == env);
    let (rev, env) = match args {
        [] => (None, None),
        [one] if by_env(one).is_some() => (None, Some(one.as_str())),
        [one] => (Some(one.clone()), None),
        [rev, env, ..] => (Some(rev.clone()), Some(env.as_str())),
    };
    let rule = match env {
        Some(env) => by_env(env).ok_or_else(|| {
            format!(
                "No target of this repo is for environment {}: {}.",
                escape(env),
                environments.join(", ")
            )
        })?,
        None => {
            let branch_rule = rev.as_deref().and_then(|b| {
                repo.deploy
                    .iter()
                    .find(|r| r.promoted_from().is_none() && r.branch == b)
            });
            match (branch_rule, repo.deploy.as_slice()) {
                (Some(rule), _) => rule,
                (None, [only]) => only,
                _ => {
                    return Err(format!(
                        "Say which environment: {} (e.g. /deploy owner/repo master {}).",
                        environments.join(", "),
                        environments.first().map_or("production", String::as_str)
                    ));
                }
            }
        }
    };
    // An environment promoted to takes what proved itself on its source, through its gate:
    // `/promote` (with its own right), never a `/deploy` past it.
    if let Some(from) = rule.promoted_from() {
        return Err(format!(
            "{} takes its releases from {} (gate: {}): use /promote {}.",
            escape(&rule.environment),
            escape(from),
            shared::overview::gate_name(rule.gate()),
            escape(&rule.target_key(repo_name))
        ));
    }
    Ok((rule, rev))
}

/// `/deploy owner/repo [sha|branch] [environment]`: a release of a commit whose build passed,
/// with the image ids that build exported, through the target's queue group. Like a promotion
/// it is released even when the branch has moved on, and never behind what is live.
pub(super) async fn deploy(
    deps: &Deps,
    ask: &Ask,
    repo: &str,
    args: &[String],
) -> Result<String, ActError> {
    let (repo_name, rule, built) = match green_build(deps, repo, args).await? {
        Ok(found) => found,
        Err(why) => return Ok(why),
    };
    let short = messages::short_sha(&built.sha).to_string();
    let Some(branch) = built.branch.clone() else {
        return Ok(format!(
            "<code>{short}</code> was built for pull request #{}, not pushed to a branch. Nothing deployed.",
            built.pull_request.unwrap_or_default()
        ));
    };
    // A Heroku release is of images; a build keeps their ids only where a deploy rule
    // released it (build-dispatch reads the exported variables then).
    let images = built
        .artifacts
        .keys()
        .any(|k| k.starts_with("SHIPLINE_IMAGE_"));
    if rule.heroku.is_some() && !images {
        return Ok(format!(
            "The build of <code>{short}</code> ({}) kept no image ids to release (a build keeps \
             them when a deploy rule released its branch). Nothing deployed.",
            escape(&branch)
        ));
    }
    let target = rule.target_key(repo_name);
    if let Some(live) = live(deps, &target).await?
        && live.sha == built.sha
    {
        return Ok(format!(
            "<code>{short}</code> is already live on {} (<code>{}</code>, {}).",
            escape(&rule.environment),
            escape(&target),
            escape(&release_name(&live))
        ));
    }
    let request = DeployRequest {
        v: messages::VERSION,
        repo: repo_name.to_string(),
        branch: branch.clone(),
        sha: built.sha.clone(),
        build_id: built.build_id.clone(),
        log_url: built.log_url.clone(),
        target: target.clone(),
        environment: rule.environment.clone(),
        artifacts: built.artifacts.clone(),
        delivery_id: ask.dedup.clone().into(),
        commit_message: built.commit_message.clone(),
        author: built.author.clone(),
        installation_id: built.installation_id,
        requested_at: ask.at.clone(),
        promotion: None,
        requested_by: Some(ask.by.clone()),
    };
    let message = DeployQueueMessage::Deploy(Box::new(request));
    enqueue(deps, &message, &target, &ask.dedup).await?;
    Ok(format!(
        "🚀 Deploy of <code>{short}</code> ({}) to {} (<code>{}</code>) queued, asked for by {}. \
                  Its message follows here.",
        escape(&branch),
        escape(&rule.environment),
        escape(&target),
        escape(&ask.by)
    ))
}

/// The repo, rule and passed build a `/deploy` names, or why there is none.
async fn green_build<'a>(
    deps: &'a Deps,
    repo: &str,
    args: &[String],
) -> Result<Result<(&'a str, &'a DeployRule, BuiltCommit), String>, ActError> {
    let config = &deps.config;
    let Some((repo_name, repo_config)) = config
        .repos
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(repo))
    else {
        let names: Vec<String> = config.repos.keys().map(|r| escape(r)).collect();
        return Ok(Err(format!(
            "{} is not in shipline's config. Repos: {}.",
            escape(repo),
            names.join(", ")
        )));
    };
    if repo_config.deploy.is_empty() {
        return Ok(Err(format!("{} has no deploy target.", escape(repo_name))));
    }
    let (rule, rev) = match deploy_rule(repo_name, repo_config, args) {
        Ok(found) => found,
        Err(why) => return Ok(Err(why)),
    };
    let rev = rev.unwrap_or_else(|| branch_of(repo_config, rule).to_string());
    let recent: RecentBuilds = deps
        .state
        .read_value(StateKey::Builds(repo_name), deps.clock.unix())
        .await?
        .unwrap_or_default();
    let looks_like_sha = rev.len() >= 7 && rev.chars().all(|c| c.is_ascii_hexdigit());
    let built = if looks_like_sha {
        recent.of_commit(&rev).or_else(|| recent.of_branch(&rev))
    } else {
        recent.of_branch(&rev)
    };
    let Some(built) = built else {
        return Ok(Err(format!(
            "No finished build of {} in {} is recorded (shipline keeps a repo's {} newest): \
             push it, or wait for its build. Nothing deployed.",
            escape(&rev),
            escape(repo_name),
            RecentBuilds::KEPT
        )));
    };
    if !built.passed {
        return Ok(Err(format!(
            "The build of <code>{}</code> did not pass ({}: {}). Nothing deployed.",
            messages::short_sha(&built.sha),
            escape(&built.status),
            escape(&built.description)
        )));
    }
    Ok(Ok((repo_name.as_str(), rule, built.clone())))
}
