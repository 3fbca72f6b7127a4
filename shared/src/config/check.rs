//! Checking a config: the structure and references at load, the secrets it names, and the
//! parts only the local stack can run. Each error names the key and the line.

use serde_saphyr::Spanned;

use super::{Channel, Config, ConfigError, DeployRule, Gate, Repo, UnknownProjects, at};
use crate::secrets::Secrets;

impl Config {
    /// Parses and checks the structure (references between parts included). Secrets are
    /// checked separately by [`Config::check_secrets`], since `config check` may run where the
    /// secrets are not.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let check_channels = |key: &str, names: &[Spanned<String>]| {
            for name in names {
                if !self.channels.contains_key(&name.value) {
                    return Err(ConfigError::invalid(
                        key,
                        &name.referenced,
                        format_args!(
                            "channel `{}` is not defined under `channels` (defined: {})",
                            name.value,
                            self.channel_names()
                        ),
                    ));
                }
            }
            Ok(())
        };
        check_channels("defaults.notify", &self.defaults.notify)?;
        for (name, repo) in &self.repos {
            if name.split('/').count() != 2 || name.split('/').any(str::is_empty) {
                return Err(ConfigError::Invalid(format!(
                    "repos.{name}: a repo is named `owner/name`"
                )));
            }
            if repo.codebuild_project.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "repos.{name}.codebuild_project: must name a CodeBuild project"
                )));
            }
            if let Some(notify) = &repo.notify {
                check_channels(&format!("repos.{name}.notify"), notify)?;
            }
            for (i, rule) in repo.deploy.iter().enumerate() {
                if rule.target().is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "repos.{name}.deploy[{i}]: give exactly one target: `heroku`, `hook` or `command`"
                    )));
                }
                if let Some(h) = &rule.heroku
                    && h.process_types.is_empty()
                {
                    return Err(ConfigError::Invalid(format!(
                        "repos.{name}.deploy[{i}].heroku.process_types: name at least one (e.g. web)"
                    )));
                }
            }
            check_promotions(name, repo)?;
            if let Some(project) = &repo.sentry_project
                && !self.sentry.projects.contains_key(&project.value)
                && self.sentry.unknown_projects == UnknownProjects::Ignore
            {
                return Err(ConfigError::invalid(
                    &format!("repos.{name}.sentry_project"),
                    &project.referenced,
                    format_args!(
                        "Sentry project `{}` is not under `sentry.projects`, and unknown projects are ignored",
                        project.value
                    ),
                ));
            }
        }
        for (slug, project) in &self.sentry.projects {
            if let Some(notify) = &project.notify {
                check_channels(&format!("sentry.projects.{slug}.notify"), notify)?;
            }
        }
        self.check_chatops()
    }

    /// Allowed people act from a Telegram chat: without one, nobody could.
    fn check_chatops(&self) -> Result<(), ConfigError> {
        let allow = &self.chatops.allow;
        let first = [&allow.deploy, &allow.rollback, &allow.promote]
            .into_iter()
            .flatten()
            .next();
        if let Some(id) = first
            && self.telegram_chats().is_empty()
        {
            return Err(ConfigError::invalid(
                "chatops.allow",
                &id.referenced,
                "ChatOps listens to the Telegram chats under `channels`, and none is defined",
            ));
        }
        for (key, ids) in [
            ("deploy", &allow.deploy),
            ("rollback", &allow.rollback),
            ("promote", &allow.promote),
        ] {
            if let Some(id) = ids.iter().find(|id| id.value <= 0) {
                return Err(ConfigError::invalid(
                    &format!("chatops.allow.{key}"),
                    &id.referenced,
                    format_args!(
                        "{} is not a Telegram user id (a person's id is a positive number; \
                         ask @userinfobot, or read `from.id` of their message)",
                        id.value
                    ),
                ));
            }
        }
        Ok(())
    }

    fn channel_names(&self) -> String {
        if self.channels.is_empty() {
            "none".into()
        } else {
            self.channels
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// Refuses the parts that only the local stack can run: the `console` channel and the
    /// `command` deploy target (`sh -c` on the machine that runs it). A Lambda function calls
    /// this at cold start, so a config written for `shipline demo` never reaches production.
    pub fn refuse_local_only(&self) -> Result<(), ConfigError> {
        for (name, channel) in &self.channels {
            if let Channel::Console(c) = channel {
                return Err(ConfigError::invalid(
                    &format!("channels.{name}.console"),
                    &c.referenced,
                    "the console channel prints on the machine running `shipline demo` or `shipline serve`; a deployed function cannot use it (use telegram, slack or discord)",
                ));
            }
        }
        for (repo_name, repo) in &self.repos {
            for (i, rule) in repo.deploy.iter().enumerate() {
                if let Some(command) = &rule.command {
                    return Err(ConfigError::invalid(
                        &format!("repos.{repo_name}.deploy[{i}].command"),
                        &command.run.referenced,
                        "a command target runs on the machine running `shipline demo` or `shipline serve`; a deployed function cannot use it (use heroku or hook)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every secret the config names: the key that names it, the secret's name, and where.
    /// A Telegram channel without `bot_token_secret` names `telegram_bot_token`.
    pub fn named_secrets(&self) -> Vec<NamedSecret> {
        let mut named = Vec::new();
        let push = |key: String, secret: &Spanned<String>| NamedSecret {
            key,
            name: secret.value.clone(),
            at: Some(at(&secret.referenced)),
        };
        for (name, channel) in &self.channels {
            match channel {
                Channel::Slack(w) | Channel::Discord(w) => named.push(push(
                    format!("channels.{name}.webhook_secret"),
                    &w.webhook_secret,
                )),
                Channel::Telegram(t) => named.push(match &t.bot_token_secret {
                    Some(s) => push(format!("channels.{name}.bot_token_secret"), s),
                    None => NamedSecret {
                        key: format!("channels.{name}"),
                        name: "telegram_bot_token".into(),
                        at: None,
                    },
                }),
                Channel::Console(_) => {}
            }
        }
        for (repo_name, repo) in &self.repos {
            for (i, rule) in repo.deploy.iter().enumerate() {
                if let Some(hook) = &rule.hook {
                    let key = format!("repos.{repo_name}.deploy[{i}].hook");
                    named.push(push(format!("{key}.url_secret"), &hook.url_secret));
                    if let Some(s) = &hook.signing_secret {
                        named.push(push(format!("{key}.signing_secret"), s));
                    }
                }
            }
        }
        named
    }

    /// Every secret the config names must be present.
    pub fn check_secrets(&self, secrets: &Secrets) -> Result<(), ConfigError> {
        match self
            .named_secrets()
            .into_iter()
            .find(|n| !secrets.contains(&n.name))
        {
            None => Ok(()),
            Some(n) => Err(ConfigError::Invalid(match n.at {
                Some(at) => format!("{} at {at}: secret `{}` is not set", n.key, n.name),
                None => format!(
                    "{}: a Telegram channel needs the secret `{}`, which is not set",
                    n.key, n.name
                ),
            })),
        }
    }
}

/// A secret the config names (see [`Config::named_secrets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSecret {
    /// The config key that names it (`channels.team.webhook_secret`).
    pub key: String,
    /// The secret's name in the secret store.
    pub name: String,
    /// `line L, column C`, when the config spells the name out.
    pub at: Option<String>,
}

/// A repo's promotion rules: each takes its releases from an environment exactly one other rule
/// of the repo deploys, no chain comes back to where it started, and what a gate or an
/// automatic rollback reads (the repo's Sentry project) is there.
fn check_promotions(name: &str, repo: &Repo) -> Result<(), ConfigError> {
    let deploys = |environment: &str| -> Vec<&DeployRule> {
        repo.deploy
            .iter()
            .filter(|r| r.environment == environment)
            .collect()
    };
    for (i, rule) in repo.deploy.iter().enumerate() {
        let key = format!("repos.{name}.deploy[{i}]");
        let no_sentry = repo.sentry_project.is_none();
        if rule.auto_rollback.is_some() && no_sentry {
            return Err(ConfigError::Invalid(format!(
                "{key}.auto_rollback: reads the repo's Sentry alerts; set `sentry_project` on repos.{name}"
            )));
        }
        let Some(from) = &rule.promote_from else {
            if rule.branch.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{key}: give `branch` (whose green builds are released here) or `promote_from` (the environment whose releases are promoted here)"
                )));
            }
            if rule.after.is_some() || rule.gate.is_some() {
                return Err(ConfigError::Invalid(format!(
                    "{key}: `after` and `gate` belong to a promotion rule (`promote_from`)"
                )));
            }
            continue;
        };
        if !rule.branch.is_empty() {
            return Err(ConfigError::invalid(
                &format!("{key}.promote_from"),
                &from.referenced,
                "a rule releases a branch or promotes an environment, not both: remove `branch`",
            ));
        }
        if let Some(gate) = &rule.gate
            && gate.value == Gate::Sentry
            && no_sentry
        {
            return Err(ConfigError::invalid(
                &format!("{key}.gate"),
                &gate.referenced,
                format_args!(
                    "`gate: sentry` reads the repo's Sentry alerts, and repos.{name} has no `sentry_project`"
                ),
            ));
        }
        let sources = deploys(&from.value);
        if sources.len() != 1 {
            let known: Vec<&str> = repo.deploy.iter().map(|r| r.environment.as_str()).collect();
            return Err(ConfigError::invalid(
                &format!("{key}.promote_from"),
                &from.referenced,
                if sources.is_empty() {
                    format!(
                        "no rule of repos.{name} deploys environment `{}` (deployed: {})",
                        from.value,
                        known.join(", ")
                    )
                } else {
                    format!(
                        "{} rules of repos.{name} deploy environment `{}`: a promotion needs one",
                        sources.len(),
                        from.value
                    )
                },
            ));
        }
        if let Some(chain) = cycle(repo, rule, sources[0]) {
            return Err(ConfigError::invalid(
                &format!("{key}.promote_from"),
                &from.referenced,
                format_args!("promotions go round in a cycle: {chain}"),
            ));
        }
    }
    Ok(())
}

/// Walks back along `promote_from` from `rule`'s source: reaching `rule`'s environment again is
/// a cycle, answered as `a ← b ← a`.
fn cycle(repo: &Repo, rule: &DeployRule, source: &DeployRule) -> Option<String> {
    let mut chain = vec![rule.environment.as_str()];
    let mut at_rule = source;
    loop {
        chain.push(at_rule.environment.as_str());
        if at_rule.environment == rule.environment {
            return Some(chain.join(" ← "));
        }
        let next: Vec<&DeployRule> = match at_rule.promoted_from() {
            Some(from) => repo
                .deploy
                .iter()
                .filter(|r| r.environment == from)
                .collect(),
            None => return None,
        };
        match next.as_slice() {
            [next] if chain.len() <= repo.deploy.len() + 1 => at_rule = next,
            _ => return None,
        }
    }
}
