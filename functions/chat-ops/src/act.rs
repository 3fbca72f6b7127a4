//! Deciding what an update asks, whether its sender may, and queueing it: every action is a
//! message on `deploys.fifo` in its target's group (the same contracts as `shipline rollback`
//! and `shipline promote`), attributed to the person who asked.

use shared::config::{ChatPower, Config, DeployRule, Repo};
use shared::ids::{Sha, TargetKey};
use shared::messages::{
    self, ACTION_PREFIX, DeployQueueMessage, DeployRequest, Facts, Notification, NotificationKind,
    PromoteRequest, RollbackRequest,
};
use shared::ports::{OutgoingMessage, Precondition, QueueError, StateError};
use shared::records::{
    ActionKind, BuiltCommit, ChatAction, LiveRecord, PendingPromotions, RecentBuilds, StateKey,
    Taken,
};
use tracing::{info, warn};

use crate::Deps;
use crate::command::{self, Command};
use crate::telegram::{Call, CallbackQuery, Message, User, escape, plain};

/// A failure a retry of the update can get past.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl shared::ports::Retryable for ActError {
    fn is_retryable(&self) -> bool {
        match self {
            ActError::State(e) => e.is_retryable(),
            ActError::Queue(e) => e.is_retryable(),
        }
    }
}

/// One update as it came: which bot it came to (the webhook URL's `?bot=`, when set) and its id,
/// which together name it (update ids count per bot).
pub struct Received<'a> {
    pub update: &'a crate::telegram::Update,
    pub bot: Option<&'a str>,
}

impl Received<'_> {
    /// `<bot>:<update_id>`: the update's name in records and deduplication ids.
    pub fn id(&self) -> String {
        format!("{}:{}", self.bot.unwrap_or("-"), self.update.update_id)
    }
}

/// Refuses a chat that is not one of the config's, saying how to fix a group that became a
/// supergroup (its id changes, and Telegram says so only to the notifier).
fn not_ours(chat: i64) -> String {
    format!(
        "This chat ({chat}) is not one of shipline's chats: nothing is shown or done here. \
         If this group became a supergroup, set its channel's chat_id to {chat} in shipline's config."
    )
}

/// What to answer an update, after doing what it asks.
pub async fn decide(deps: &Deps, received: &Received<'_>) -> Result<Call, ActError> {
    let update = received.update;
    if let Some(query) = &update.callback_query {
        return press(deps, query, &received.id()).await;
    }
    let Some(message) = &update.message else {
        return Ok(Call::nothing());
    };
    let Some(parsed) = message
        .text
        .as_deref()
        .and_then(|text| command::parse(text, received.bot))
    else {
        return Ok(Call::nothing());
    };
    if !deps.config.telegram_chats().contains(&message.chat.id) {
        info!(
            chat = message.chat.id,
            "a command from a chat shipline does not post to"
        );
        return Ok(Call::reply(message, &not_ours(message.chat.id)));
    }
    let command = match parsed {
        Ok(command) => command,
        Err(usage) => return Ok(Call::reply(message, &escape(&usage))),
    };
    info!(?command, "command");
    let text = match command {
        Command::Status => crate::status::text(deps).await?,
        Command::Help => escape(command::USAGE),
        Command::Deploy { repo, args } => {
            let ask = Ask::of(deps, message, &received.id(), ChatPower::Deploy);
            match ask {
                Err(refusal) => refusal,
                Ok(ask) => deploy(deps, &ask, &repo, &args).await?,
            }
        }
        Command::Rollback { target, release } => {
            match Ask::of(deps, message, &received.id(), ChatPower::Rollback) {
                Err(refusal) => refusal,
                Ok(ask) => rollback(deps, &ask, &target, release).await?,
            }
        }
        Command::Promote { target } => {
            match Ask::of(deps, message, &received.id(), ChatPower::Promote) {
                Err(refusal) => refusal,
                Ok(ask) => promote(deps, &ask, &target).await?,
            }
        }
    };
    Ok(Call::reply(message, &text))
}

/// An action asked for by someone allowed to.
struct Ask {
    by: String,
    /// What deduplicates it on `deploys.fifo`: the update it came in.
    dedup: String,
    at: String,
}

impl Ask {
    /// The person who sent `message`, if they may take `power`; else the polite refusal.
    fn of(deps: &Deps, message: &Message, update: &str, power: ChatPower) -> Result<Self, String> {
        let person = sender(message)?;
        allowed(&deps.config, person, power)?;
        Ok(Self {
            by: person.attribution(),
            dedup: format!("chatops:{update}"),
            at: deps.clock.rfc3339(),
        })
    }
}

/// Who sent a message, when a person can be told apart.
fn sender(message: &Message) -> Result<&User, String> {
    let anonymous = message
        .sender_chat
        .as_ref()
        .is_some_and(|c| c.id == message.chat.id);
    match &message.from {
        Some(user) if !anonymous && !user.is_bot => Ok(user),
        _ => Err(
            "Sorry, I cannot tell who is asking (an anonymous admin or a bot): post as yourself to act."
                .into(),
        ),
    }
}

/// Whether `person` may take `power`, or why not.
fn allowed(config: &Config, person: &User, power: ChatPower) -> Result<(), String> {
    if config.chatops.may(power, person.id) {
        return Ok(());
    }
    Err(format!(
        "Sorry {}, you may not {} from the chat: your Telegram id {} is not under \
         <code>chatops.allow.{}</code> in shipline's config. Nothing was done.",
        escape(person.username.as_deref().unwrap_or(&person.first_name)),
        power.verb(),
        person.id,
        power.key()
    ))
}

/// Puts a message on `deploys.fifo` in `target`'s group.
async fn enqueue(
    deps: &Deps,
    message: &DeployQueueMessage,
    target: &TargetKey,
    dedup: &str,
) -> Result<(), QueueError> {
    deps.deploys
        .send(OutgoingMessage::fifo(
            messages::encode(message),
            messages::fifo_id(target),
            messages::fifo_id(dedup),
        ))
        .await
}

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

async fn live(deps: &Deps, target: &TargetKey) -> Result<Option<LiveRecord>, StateError> {
    deps.state
        .read_value::<LiveRecord>(StateKey::Live(target), deps.clock.unix())
        .await
}

fn release_name(live: &LiveRecord) -> String {
    live.version
        .clone()
        .unwrap_or_else(|| live.release_id.clone())
}

/// `/rollback TARGET [version]`: the same request as `shipline rollback`, pinned to what is
/// live now (a release that goes live meanwhile is not rolled back by a request made before).
async fn rollback(
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
async fn promote(deps: &Deps, ask: &Ask, target: &str) -> Result<String, ActError> {
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
async fn deploy(deps: &Deps, ask: &Ask, repo: &str, args: &[String]) -> Result<String, ActError> {
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

/// A button pressed: answered at once (`answerCallbackQuery`); its action taken once, queued,
/// and its message edited to say so.
async fn press(deps: &Deps, query: &CallbackQuery, update: &str) -> Result<Call, ActError> {
    let refuse = |text: &str| Ok(Call::answer(query, text, true));
    let Some(on) = &query.message else {
        return refuse("This button is not shipline's.");
    };
    if !deps.config.telegram_chats().contains(&on.chat.id) {
        return refuse(&not_ours(on.chat.id));
    }
    let Some(id) = query
        .data
        .as_deref()
        .and_then(|d| d.strip_prefix(ACTION_PREFIX))
    else {
        return refuse("This button is not shipline's.");
    };
    let now = deps.clock.unix();
    let key = StateKey::Action(id);
    let Some(stored) = deps.state.read::<ChatAction>(key, now).await? else {
        return refuse("This button has expired: use the command instead (/help).");
    };
    if let Some(why) = refusal(deps, query, &stored.value, update).await? {
        return refuse(&why);
    }
    let action = stored.value.clone();
    let by = query.from.attribution();
    let at = deps.clock.rfc3339();
    if action.taken.is_none() {
        let mut taken = action.clone();
        taken.taken = Some(Taken {
            by: by.clone(),
            at: at.clone(),
            update: update.to_string(),
        });
        // Only the first press writes over the untaken action; a press at the same moment
        // finds it taken. The record keeps its month.
        let version = Precondition::Version(stored.version);
        let expires = Some(now + ChatAction::TTL_SECS);
        match deps.state.write(key, &taken, version, expires, now).await {
            Ok(_) => {}
            Err(StateError::ConditionFailed) => {
                // The same update delivered twice at once took it: this one goes on too (its
                // queue message is one by its deduplication id). Anyone else's did not.
                let now_taken = deps.state.read_value::<ChatAction>(key, now).await?;
                let ours = now_taken
                    .and_then(|a| a.taken)
                    .is_some_and(|t| t.update == update);
                if !ours {
                    return refuse("Someone pressed it a moment ago: nothing more done.");
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (message, what) = request_of(&action, &by, &at);
    let dedup = format!("chatops-action:{id}");
    enqueue(deps, &message, &action.target, &dedup).await?;
    edit(deps, &action, &by, &at).await;
    Ok(Call::answer(query, &what, false))
}

/// Why a press does nothing: its presser may not, someone else pressed it first, or what it
/// would roll back is no longer live.
async fn refusal(
    deps: &Deps,
    query: &CallbackQuery,
    action: &ChatAction,
    update: &str,
) -> Result<Option<String>, ActError> {
    let power = match action.kind {
        ActionKind::Rollback => ChatPower::Rollback,
        ActionKind::Promote => ChatPower::Promote,
    };
    if query.from.is_bot {
        return Ok(Some("Bots cannot act.".into()));
    }
    if let Err(why) = allowed(&deps.config, &query.from, power) {
        return Ok(Some(plain(&why)));
    }
    if let Some(taken) = &action.taken
        && taken.update != update
    {
        return Ok(Some(format!(
            "Already asked for by {} at {}: nothing more done.",
            taken.by, taken.at
        )));
    }
    match action.kind {
        ActionKind::Rollback => {
            let current = live(deps, &action.target).await?;
            if current
                .as_ref()
                .is_none_or(|l| Some(&l.release_id) != action.release.as_ref())
            {
                return Ok(Some(format!(
                    "This release is no longer live on {}: nothing to roll back.",
                    action.target
                )));
            }
        }
        ActionKind::Promote => {
            let pending: PendingPromotions = deps
                .state
                .read_value(StateKey::Promotions, deps.clock.unix())
                .await?
                .unwrap_or_default();
            if pending
                .get(action.target.as_str())
                .is_none_or(|p| p.request.sha != action.sha)
            {
                return Ok(Some(format!(
                    "This release no longer waits to be promoted to {}: nothing done.",
                    action.target
                )));
            }
        }
    }
    Ok(None)
}

/// The queue message a pressed button sends, and the notice that says so.
fn request_of(action: &ChatAction, by: &str, at: &str) -> (DeployQueueMessage, String) {
    match action.kind {
        ActionKind::Rollback => (
            DeployQueueMessage::Rollback(RollbackRequest {
                v: messages::VERSION,
                target: action.target.clone(),
                release: None,
                requested_by: by.to_string(),
                requested_at: at.to_string(),
                from_release: action.release.clone(),
                reason: None,
            }),
            format!("Rollback of {} queued", action.target),
        ),
        ActionKind::Promote => (
            DeployQueueMessage::Promote(PromoteRequest {
                v: messages::VERSION,
                target: action.target.clone(),
                sha: Some(Sha::new(action.sha.to_string())),
                requested_by: by.to_string(),
                requested_at: at.to_string(),
            }),
            format!("Promotion to {} queued", action.target),
        ),
    }
}

/// The pressed button's message says the action is queued, and loses its buttons. Best
/// effort: the action is queued, and its story follows in the same message.
async fn edit(deps: &Deps, action: &ChatAction, by: &str, at: &str) {
    let what = match action.kind {
        ActionKind::Rollback => "roll back",
        ActionKind::Promote => "promotion",
    };
    let facts = Facts {
        reason: Some(format!("{what} of {} asked for by {by}", action.target)),
        actions: Vec::new(),
        ..action.facts.clone()
    };
    let notification = Notification {
        v: messages::VERSION,
        kind: NotificationKind::ActionRequested,
        thread_key: action.thread_key.clone(),
        channels: action.channels.clone(),
        facts,
        at: at.to_string(),
    };
    if let Err(e) = deps
        .notify
        .send(OutgoingMessage::new(messages::encode(&notification)))
        .await
    {
        warn!(error = %e, "the pressed message is not edited");
    }
}
