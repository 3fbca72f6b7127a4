//! The pipeline config (YAML): repos, branches, deploy targets, chat channels and Sentry routing.
//!
//! Loading checks everything that can be checked without calling anyone: unknown keys, a repo
//! without a build project, a channel that is named but not defined, a secret that is named but
//! absent. Each error names the key and the line, so that `shipline config check` and a cold
//! start that refuses a broken config say exactly what to fix.
//!
//! The `chatops` and `sentry` sections' types live in their own modules (re-exported here),
//! durations are read by `humantime_serde_compat`, and the checks beyond serde's are `check`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::ids::TargetKey;

/// Where a named thing is referenced, for messages.
fn at(span: &serde_saphyr::Location) -> String {
    format!("line {}, column {}", span.line(), span.column())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// YAML syntax, a type mismatch, an unknown or missing key: serde-saphyr's message, which
    /// names the key and shows the line.
    #[error("invalid config: {0}")]
    Syntax(String),
    /// A reference that does not resolve (channel, secret, Sentry project) or a value that
    /// cannot work, with where it is.
    #[error("invalid config: {0}")]
    Invalid(String),
    #[error("cannot read the config: {0}")]
    Source(String),
}

impl ConfigError {
    fn invalid(key: &str, span: &serde_saphyr::Location, what: impl fmt::Display) -> Self {
        Self::Invalid(format!("{key} at {}: {what}", at(span)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub repos: BTreeMap<String, Repo>,
    #[serde(default)]
    pub sentry: SentryConfig,
    /// Who may act from the Telegram group (chat-ops).
    #[serde(default)]
    pub chatops: ChatOps,
}

/// A chat destination. Exactly one kind per channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Channel {
    Telegram(TelegramChannel),
    Slack(WebhookChannel),
    Discord(WebhookChannel),
    /// Prints to standard output: the local stack's chat (`shipline demo` / `serve`). Only the
    /// `shipline` command can run it; a Lambda function refuses a config that names it.
    Console(Spanned<LocalChannel>),
}

/// The console channel's one setting: the chat id it stands for, so that the local control
/// room (`POST /telegram` of `shipline serve` / `demo`) answers commands from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalChannel {
    #[serde(default)]
    pub chat_id: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramChannel {
    pub chat_id: i64,
    /// A forum topic (`message_thread_id`) inside the chat.
    #[serde(default)]
    pub topic_id: Option<i64>,
    /// The secret holding the bot token; `telegram_bot_token` when not set.
    #[serde(default)]
    pub bot_token_secret: Option<Spanned<String>>,
}

impl TelegramChannel {
    pub fn bot_token_secret(&self) -> &str {
        self.bot_token_secret
            .as_ref()
            .map_or("telegram_bot_token", |s| s.value.as_str())
    }
}

/// Slack and Discord incoming webhooks: the URL is a credential, so the config names the secret
/// that holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    pub webhook_secret: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default = "default_stable_branches")]
    pub stable_branches: Vec<String>,
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
    /// The GitHub commit status context.
    #[serde(default = "default_status_context")]
    pub status_context: String,
    /// A newer push to a branch or pull request stops the older build still running.
    #[serde(default = "yes")]
    pub supersede: bool,
    /// Build pull requests whose head is in a fork.
    #[serde(default)]
    pub build_forks: bool,
    /// Which pull request actions start a build.
    #[serde(default = "default_pr_actions")]
    pub pull_request_actions: Vec<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            stable_branches: default_stable_branches(),
            notify: Vec::new(),
            status_context: default_status_context(),
            supersede: true,
            build_forks: false,
            pull_request_actions: default_pr_actions(),
        }
    }
}

fn default_stable_branches() -> Vec<String> {
    vec!["master".into(), "main".into()]
}
fn default_status_context() -> String {
    "shipline/build".into()
}
fn default_pr_actions() -> Vec<String> {
    ["opened", "synchronize", "reopened", "ready_for_review"]
        .map(String::from)
        .to_vec()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repo {
    /// The CodeBuild project that builds this repo.
    pub codebuild_project: String,
    /// A separate project, holding no secrets, for pull requests from forks.
    #[serde(default)]
    pub fork_codebuild_project: Option<String>,
    #[serde(default)]
    pub build_forks: Option<bool>,
    #[serde(default)]
    pub supersede: Option<bool>,
    #[serde(default)]
    pub stable_branches: Option<Vec<String>>,
    /// Build only these branches (all when empty).
    #[serde(default)]
    pub branches: Vec<String>,
    #[serde(default)]
    pub notify: Option<Vec<Spanned<String>>>,
    /// The Sentry project slug whose alerts concern this repo's service.
    #[serde(default)]
    pub sentry_project: Option<Spanned<String>>,
    #[serde(default)]
    pub deploy: Vec<DeployRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRule {
    /// The branch whose green builds are released here; empty on a promotion rule.
    #[serde(default)]
    pub branch: String,
    /// A promotion rule: what went live on this environment of the same repo comes here, the
    /// same image ids, after `after` and the `gate`.
    #[serde(default)]
    pub promote_from: Option<Spanned<String>>,
    /// The soak time on the source environment before a promotion.
    #[serde(default, with = "humantime_serde_compat::option")]
    pub after: Option<Duration>,
    /// What a promotion waits for after the soak time.
    #[serde(default)]
    pub gate: Option<Spanned<Gate>>,
    /// Roll back by itself when Sentry reports a spike soon after a release.
    #[serde(default)]
    pub auto_rollback: Option<AutoRollback>,
    /// The GitHub Deployments environment.
    #[serde(default = "default_environment")]
    pub environment: String,
    #[serde(default)]
    pub environment_url: Option<String>,
    #[serde(default)]
    pub heroku: Option<HerokuTarget>,
    #[serde(default)]
    pub hook: Option<HookTarget>,
    /// Runs a local command: the local stack's deploy target. Only the `shipline` command can
    /// run it; a Lambda function refuses a config that names it.
    #[serde(default)]
    pub command: Option<CommandTarget>,
}

fn default_environment() -> String {
    "production".into()
}

/// What a promotion waits for once the soak time is over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Nothing more.
    #[default]
    None,
    /// The source environment's Sentry project saw no issue at or above its `min_level` since
    /// the release went live.
    Sentry,
    /// A person says go: `shipline promote TARGET`.
    Approval,
}

/// `auto_rollback`: within `window` after a release went live, `new_issues` issues Sentry had
/// not seen before it, or `events` events, at or above `min_level`, roll it back (once).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoRollback {
    #[serde(with = "humantime_serde_compat")]
    pub window: Duration,
    #[serde(default = "one")]
    pub new_issues: u64,
    #[serde(default = "fifty")]
    pub events: u64,
    #[serde(default)]
    pub min_level: Level,
}

fn one() -> u64 {
    1
}

fn fifty() -> u64 {
    50
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HerokuTarget {
    pub app: String,
    #[serde(default = "default_process_types")]
    pub process_types: Vec<String>,
}

fn default_process_types() -> Vec<String> {
    vec!["web".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookTarget {
    /// The secret holding the URL to POST to.
    pub url_secret: Spanned<String>,
    /// The secret holding the HMAC key that signs the body, if any.
    #[serde(default)]
    pub signing_secret: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandTarget {
    pub run: Spanned<String>,
}

/// What a deploy rule releases to, named for queues and records: one FIFO group per target.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Heroku(&'a HerokuTarget),
    Hook(&'a HookTarget),
    Command(&'a CommandTarget),
}

impl DeployRule {
    pub fn target(&self) -> Option<Target<'_>> {
        match (&self.heroku, &self.hook, &self.command) {
            (Some(h), None, None) => Some(Target::Heroku(h)),
            (None, Some(h), None) => Some(Target::Hook(h)),
            (None, None, Some(c)) => Some(Target::Command(c)),
            _ => None,
        }
    }

    /// A stable name for the target: `heroku:pax-user`, `hook:<repo>@<branch>` (a promotion
    /// rule's hook: `hook:<repo>@<environment>`).
    pub fn target_key(&self, repo: &str) -> TargetKey {
        let line = if self.branch.is_empty() {
            &self.environment
        } else {
            &self.branch
        };
        TargetKey::new(match self.target() {
            Some(Target::Heroku(h)) => format!("heroku:{}", h.app),
            Some(Target::Hook(_)) => format!("hook:{repo}@{line}"),
            Some(Target::Command(_)) | None => format!("command:{repo}@{line}"),
        })
    }

    /// The environment a promotion rule takes its releases from.
    pub fn promoted_from(&self) -> Option<&str> {
        self.promote_from.as_ref().map(|s| s.value.as_str())
    }

    pub fn gate(&self) -> Gate {
        self.gate.as_ref().map(|g| g.value).unwrap_or_default()
    }
}

impl Config {
    /// Every CodeBuild project the config names (fork projects included), sorted and once each:
    /// the stack's `CodeBuildProjects` parameter.
    pub fn codebuild_projects(&self) -> Vec<&str> {
        let mut projects: Vec<&str> = self
            .repos
            .values()
            .flat_map(|r| {
                std::iter::once(r.codebuild_project.as_str())
                    .chain(r.fork_codebuild_project.as_deref())
            })
            .collect();
        projects.sort_unstable();
        projects.dedup();
        projects
    }

    pub fn repo(&self, full_name: &str) -> Option<&Repo> {
        self.repos.get(full_name).or_else(|| {
            // GitHub treats owner and name case-insensitively.
            self.repos
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(full_name))
                .map(|(_, v)| v)
        })
    }

    pub fn stable_branches<'a>(&'a self, repo: &'a Repo) -> &'a [String] {
        repo.stable_branches
            .as_deref()
            .unwrap_or(&self.defaults.stable_branches)
    }

    pub fn is_stable_branch(&self, repo: &Repo, branch: &str) -> bool {
        self.stable_branches(repo).iter().any(|b| b == branch)
    }

    /// Whether a push to this branch is built at all.
    pub fn builds_branch(&self, repo: &Repo, branch: &str) -> bool {
        repo.branches.is_empty() || repo.branches.iter().any(|b| b == branch)
    }

    pub fn builds_pull_request_action(&self, action: &str) -> bool {
        self.defaults
            .pull_request_actions
            .iter()
            .any(|a| a == action)
    }

    pub fn build_forks(&self, repo: &Repo) -> bool {
        repo.build_forks.unwrap_or(self.defaults.build_forks)
    }

    pub fn supersede(&self, repo: &Repo) -> bool {
        repo.supersede.unwrap_or(self.defaults.supersede)
    }

    /// The channels that hear about this repo's builds and deploys.
    pub fn notify_channels(&self, repo: &Repo) -> Vec<String> {
        repo.notify
            .as_ref()
            .unwrap_or(&self.defaults.notify)
            .iter()
            .map(|s| s.value.clone())
            .collect()
    }

    pub fn deploy_rule<'a>(&self, repo: &'a Repo, branch: &str) -> Option<&'a DeployRule> {
        repo.deploy
            .iter()
            .find(|r| r.promote_from.is_none() && r.branch == branch)
    }

    /// The promotion rules that take their releases from `environment` of `repo`.
    pub fn promotions_from<'a>(
        &self,
        repo: &'a Repo,
        environment: &'a str,
    ) -> impl Iterator<Item = &'a DeployRule> + 'a {
        repo.deploy
            .iter()
            .filter(move |r| r.promoted_from() == Some(environment))
    }

    /// The Telegram chats shipline posts to (and a console channel's stand-in id): the only
    /// chats chat-ops listens to.
    pub fn telegram_chats(&self) -> Vec<i64> {
        let mut chats: Vec<i64> = self
            .channels
            .values()
            .filter_map(|c| match c {
                Channel::Telegram(t) => Some(t.chat_id),
                Channel::Console(c) => c.value.chat_id,
                _ => None,
            })
            .collect();
        chats.sort_unstable();
        chats.dedup();
        chats
    }

    /// Every deploy target of the config: its key, the repo's name and its rule.
    pub fn targets(&self) -> impl Iterator<Item = (TargetKey, &str, &DeployRule)> + '_ {
        self.repos.iter().flat_map(|(name, repo)| {
            repo.deploy
                .iter()
                .map(move |rule| (rule.target_key(name), name.as_str(), rule))
        })
    }

    /// The level from which a Sentry project's alerts count (its `min_level`, else error).
    pub fn sentry_min_level(&self, project: &str) -> Level {
        self.sentry
            .projects
            .get(project)
            .map_or(Level::Error, |p| p.min_level)
    }
}

mod chatops;
mod check;
mod humantime_serde_compat;
mod sentry;

pub use chatops::{ChatOps, ChatOpsAllow, ChatPower};
pub use check::NamedSecret;
pub use sentry::{Level, SentryConfig, SentryProject, UnknownProjects};

#[cfg(test)]
mod tests;
