//! `shipline setup`: brings an account in line with a deployed stack and its config.
//!
//! `setup --stack NAME` reads the stack's outputs and parameters, the config (a file, or the
//! one stored in SSM) and the secret, and plans one step per resource: the secret's keys (the
//! webhook secrets generated when absent), the config in SSM, the stack's `CodeBuildProjects`,
//! CodeBuild's GitHub credential, each repo's CodeBuild project(s) and GitHub webhook, and each
//! Telegram bot's webhook (chat-ops). Each
//! step is create / update (what differs) / unchanged, or blocked with the fix a person must
//! make. `--dry-run` prints the plan; otherwise it is applied in that order and a second run
//! finds everything unchanged. `setup telegram` is in [`telegram`].

pub mod codebuild;
pub mod hooks;
pub mod telegram;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde::Serialize;
use shared::config::Config;
use shared::github::client::{Auth, GitHubClient, PUBLIC_API};
use shared::secrets::SecretString;

use crate::stack::{Aws, Stack, StackSecret};
use crate::ui::Ui;

/// What a step does to its resource.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "change", content = "detail", rename_all = "lowercase")]
pub enum Change {
    Create(Vec<String>),
    Update(Vec<String>),
    Unchanged,
    /// What setup cannot do: the problem and the fix a person makes.
    Blocked {
        problem: String,
        fix: String,
    },
}

/// The concrete change a step makes when applied.
#[derive(Debug)]
pub enum Action {
    PutSecret { arn: String, text: SecretString },
    PutConfig { name: String, text: String },
    ImportCredential(SecretString),
    Project(codebuild::ProjectChange),
    Hook(hooks::HookChange),
    TelegramWebhook(telegram::WebhookChange),
}

/// One resource's line of the plan.
#[derive(Debug, Serialize)]
pub struct Step {
    pub resource: String,
    #[serde(flatten)]
    pub change: Change,
    #[serde(skip)]
    action: Option<Action>,
}

impl Step {
    pub fn new(resource: impl Into<String>, change: Change, action: Action) -> Self {
        Self {
            resource: resource.into(),
            change,
            action: Some(action),
        }
    }

    pub fn unchanged(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            change: Change::Unchanged,
            action: None,
        }
    }

    pub fn blocked(
        resource: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            resource: resource.into(),
            change: Change::Blocked {
                problem: problem.into(),
                fix: fix.into(),
            },
            action: None,
        }
    }

    /// The plan's line (`create     codebuild project pax-user: ...`); `done` in the past tense.
    fn line(&self, done: bool) -> String {
        let (verb, detail) = match &self.change {
            Change::Create(d) => (if done { "created" } else { "create" }, d.join("; ")),
            Change::Update(d) => (if done { "updated" } else { "update" }, d.join("; ")),
            Change::Unchanged => ("unchanged", String::new()),
            Change::Blocked { problem, fix } => {
                return format!("✖ {}: {problem}\n    fix: {fix}", self.resource);
            }
        };
        if detail.is_empty() {
            format!("{verb:<10} {}", self.resource)
        } else {
            format!("{verb:<10} {}: {detail}", self.resource)
        }
    }
}

/// Options of `shipline setup --stack`.
pub struct Options {
    pub stack: String,
    pub config: Option<PathBuf>,
    pub dry_run: bool,
    pub json: bool,
}

/// The config to set up with: the file's text, else the one in SSM.
pub struct ConfigSource {
    pub text: String,
    pub config: Config,
    /// Where it came from, for messages.
    pub origin: String,
    /// The text stored in SSM, if any.
    pub stored: Option<String>,
}

impl ConfigSource {
    pub async fn load(aws: &Aws, stack: &Stack, file: Option<&Path>) -> anyhow::Result<Self> {
        let param = stack.parameter("ConfigParameterName")?;
        let stored = shared::bootstrap::read_parameter(&aws.ssm, param)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let (text, origin) = match file {
            Some(file) => (
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?,
                file.display().to_string(),
            ),
            None => (
                stored.clone().ok_or_else(|| {
                    anyhow!(
                        "no config in SSM {param} ({}) and no --config: give the file, \
                         --config shipline.yaml",
                        stack.region
                    )
                })?,
                format!("SSM {param}"),
            ),
        };
        let config = Config::from_yaml(&text)
            .and_then(|c| c.refuse_local_only().map(|()| c))
            .map_err(|e| anyhow!("{origin}: {e}"))?;
        Ok(Self {
            text,
            config,
            origin,
            stored,
        })
    }
}

/// 32 random bytes as hex, for `github_webhook_secret`.
fn generate_secret() -> anyhow::Result<SecretString> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a secret: {e}"))?;
    Ok(SecretString::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// The secret keys the stack needs for this config, beyond `github_webhook_secret`: each with
/// what needs it.
pub fn needed_keys(config: &Config, secret: &StackSecret) -> Vec<(String, String)> {
    let mut needed: Vec<(String, String)> = config
        .named_secrets()
        .into_iter()
        .map(|n| (n.name, n.key))
        .collect();
    let app = secret.has("github_app_id") || secret.has("github_app_private_key");
    if app {
        needed.push(("github_app_id".into(), "GitHub App auth".into()));
        needed.push(("github_app_private_key".into(), "GitHub App auth".into()));
    } else {
        needed.push((
            "github_token".into(),
            "commit statuses and deployments (or a GitHub App's github_app_id and github_app_private_key)"
                .into(),
        ));
    }
    for (repo_name, repo) in &config.repos {
        if let Some(i) = repo.deploy.iter().position(|r| r.heroku.is_some()) {
            needed.push((
                "heroku_api_key".into(),
                format!("repos.{repo_name}.deploy[{i}].heroku"),
            ));
        }
    }
    if !config.sentry.projects.is_empty() {
        needed.push(("sentry_client_secret".into(), "sentry.projects".into()));
    }
    if !config.telegram_chats().is_empty() {
        needed.push((
            "telegram_webhook_secret".into(),
            "chat-ops, which checks Telegram's webhook with it (setup generates it)".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    needed.retain(|(key, _)| seen.insert(key.clone()));
    needed
}

/// A webhook secret shipline checks its callers with: the stored one, or one generated now.
pub struct WebhookSecret {
    pub value: SecretString,
    pub generated: bool,
}

/// The webhook secrets of the stack: GitHub's, and Telegram's when the config has a Telegram
/// chat (chat-ops checks `X-Telegram-Bot-Api-Secret-Token` against it).
pub struct WebhookSecrets {
    pub github: WebhookSecret,
    pub telegram: Option<WebhookSecret>,
}

/// The secret's steps, and the webhook secrets to give GitHub and Telegram.
fn secret_steps(
    secret: &StackSecret,
    config: &Config,
) -> anyhow::Result<(Vec<Step>, WebhookSecrets)> {
    let mut steps = Vec::new();
    let stored_or_new = |key: &str| -> anyhow::Result<WebhookSecret> {
        Ok(match secret.secrets.get(key) {
            Some(value) if !value.expose().is_empty() => WebhookSecret {
                value: value.clone(),
                generated: false,
            },
            // 64 hex characters: also within Telegram's secret_token alphabet and length.
            _ => WebhookSecret {
                value: generate_secret()?,
                generated: true,
            },
        })
    };
    let secrets = WebhookSecrets {
        github: stored_or_new("github_webhook_secret")?,
        telegram: if config.telegram_chats().is_empty() {
            None
        } else {
            Some(stored_or_new("telegram_webhook_secret")?)
        },
    };
    let new: Vec<(&str, &WebhookSecret)> = [
        ("github_webhook_secret", Some(&secrets.github)),
        ("telegram_webhook_secret", secrets.telegram.as_ref()),
    ]
    .into_iter()
    .filter_map(|(key, s)| s.filter(|s| s.generated).map(|s| (key, s)))
    .collect();
    if !new.is_empty() {
        let mut object = secret.object.clone();
        for (key, value) in &new {
            object.insert(
                (*key).into(),
                serde_json::Value::String(value.value.expose().to_string()),
            );
        }
        let text = serde_json::Value::Object(object).to_string();
        let keys: Vec<&str> = new.iter().map(|(k, _)| *k).collect();
        steps.push(Step::new(
            format!("secret key {}", keys.join(", ")),
            Change::Create(vec!["generated, 64 hex characters".into()]),
            Action::PutSecret {
                arn: secret.arn.clone(),
                text: SecretString::new(text),
            },
        ));
    }
    for (key, by) in needed_keys(config, secret) {
        if !secret.has(&key) && !new.iter().any(|(generated, _)| *generated == key) {
            steps.push(Step::blocked(
                format!("secret key {key}"),
                format!("missing (needed by {by})"),
                format!(
                    "add \"{key}\" to the secret's JSON: Secrets Manager console → {} → \
                     Retrieve secret value → Edit",
                    secret.arn
                ),
            ));
        }
    }
    Ok((steps, secrets))
}

fn config_step(stack: &Stack, source: &ConfigSource) -> anyhow::Result<Step> {
    let name = stack.parameter("ConfigParameterName")?.to_string();
    let resource = format!("ssm parameter {name}");
    let action = Action::PutConfig {
        name,
        text: source.text.clone(),
    };
    Ok(match &source.stored {
        None => Step::new(
            resource,
            Change::Create(vec![source.origin.clone()]),
            action,
        ),
        Some(stored) if stored == &source.text => Step::unchanged(resource),
        Some(_) => Step::new(
            resource,
            Change::Update(vec![format!("the text of {}", source.origin)]),
            action,
        ),
    })
}

/// The stack's `CodeBuildProjects` against the config's: only a deploy changes it.
pub fn projects_step(stack: &Stack, config: &Config) -> Step {
    const RESOURCE: &str = "stack parameter CodeBuildProjects";
    let have: BTreeSet<&str> = stack
        .parameters
        .get("CodeBuildProjects")
        .map(|v| {
            // CloudFormation answers `a,b`; moto answers `['a', 'b']`. Project names hold
            // neither brackets nor quotes, so both read the same.
            v.split(',')
                .map(|s| s.trim_matches(|c: char| c.is_whitespace() || "[]'\"".contains(c)))
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let want: BTreeSet<&str> = config.codebuild_projects().into_iter().collect();
    if have == want {
        return Step::unchanged(RESOURCE);
    }
    let list = want.iter().copied().collect::<Vec<_>>().join(",");
    Step::blocked(
        RESOURCE,
        format!(
            "the functions may start {}; the config names {list}",
            have.iter().copied().collect::<Vec<_>>().join(",")
        ),
        format!(
            "redeploy with the config's list: sam deploy --stack-name {} \
             --parameter-overrides CodeBuildProjects={list} (the other parameters as saved \
             in samconfig.toml)",
            stack.name
        ),
    )
}

/// The GitHub client of the stack: its API URL, the secret's credentials.
pub fn github_client(stack: &Stack, secret: &StackSecret) -> anyhow::Result<GitHubClient> {
    let auth = Auth::from_secrets(&secret.secrets).map_err(|e| anyhow!("{e}"))?;
    let http = reqwest::Client::builder()
        .timeout(shared::http::CALL_TIMEOUT)
        .build()
        .context("an HTTP client")?;
    Ok(GitHubClient::new(
        http,
        stack.api_url("GitHubApiUrl", PUBLIC_API),
        auth,
    ))
}

/// Every step, in the order they are applied.
async fn plan(
    aws: &Aws,
    stack: &Stack,
    source: &ConfigSource,
    secret: &StackSecret,
) -> anyhow::Result<Vec<Step>> {
    let config = &source.config;
    let (mut steps, secrets) = secret_steps(secret, config)?;
    let (webhook_secret, generated) = (&secrets.github.value, secrets.github.generated);
    steps.push(config_step(stack, source)?);
    steps.push(projects_step(stack, config));
    steps.push(codebuild::credential(aws, secret.secrets.get("github_token")).await);
    match codebuild::desired(config, stack) {
        Ok(desired) => steps.extend(codebuild::plan(aws, desired).await),
        Err(e) => steps.push(Step::blocked(
            "codebuild projects",
            e.to_string(),
            "edit the config",
        )),
    }
    let url = stack.output("GitHubWebhookUrl")?.trim_end_matches('/');
    match github_client(stack, secret) {
        Ok(github) if secret.has("github_token") => {
            for repo in config.repos.keys() {
                steps.push(hooks::plan(&github, repo, url, webhook_secret, generated).await);
            }
        }
        Ok(github) => steps.push(hooks::check_app(&github, url).await),
        Err(e) => steps.push(Step::blocked(
            "github webhooks",
            e.to_string(),
            "add github_token (or github_app_id and github_app_private_key) to the secret",
        )),
    }
    if let Some(telegram_secret) = &secrets.telegram {
        steps.extend(telegram::webhook_steps(stack, secret, config, telegram_secret).await);
    }
    Ok(steps)
}

async fn apply(aws: &Aws, github: Option<&GitHubClient>, action: &Action) -> anyhow::Result<()> {
    match action {
        Action::PutSecret { arn, text } => {
            aws.secrets
                .put_secret_value()
                .secret_id(arn)
                .secret_string(text.expose())
                .send()
                .await
                .map_err(|e| {
                    anyhow!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e))
                })?;
        }
        Action::PutConfig { name, text } => {
            crate::commands::config::put(&aws.ssm, name, text).await?;
        }
        Action::ImportCredential(token) => codebuild::import_credential(aws, token).await?,
        Action::Project(change) => change.apply(aws).await?,
        Action::Hook(change) => {
            let github = github.ok_or_else(|| anyhow!("no GitHub credentials"))?;
            change.apply(github).await.map_err(|e| anyhow!("{e}"))?;
        }
        Action::TelegramWebhook(change) => change.apply().await?,
    }
    Ok(())
}

#[derive(Serialize)]
struct Report<'a> {
    stack: &'a str,
    region: &'a str,
    dry_run: bool,
    ok: bool,
    steps: &'a [Step],
}

pub async fn run(options: &Options, ui: &Ui) -> anyhow::Result<bool> {
    let aws = Aws::load().await?;
    let stack = Stack::read(&aws, &options.stack).await?;
    let source = ConfigSource::load(&aws, &stack, options.config.as_deref()).await?;
    let secret = StackSecret::read(&aws, &stack).await?;
    let mut steps = plan(&aws, &stack, &source, &secret).await?;
    if !options.json {
        ui.title(&format!(
            "shipline setup: stack {} in {}{}",
            stack.name,
            stack.region,
            if options.dry_run {
                " (dry run: nothing changes)"
            } else {
                ""
            }
        ));
    }
    if !options.dry_run {
        // In plan order: the secret (a new webhook secret) before the hooks given it.
        let github = github_client(&stack, &secret).ok();
        for step in &mut steps {
            let Some(action) = step.action.take() else {
                continue;
            };
            if let Err(e) = apply(&aws, github.as_ref(), &action).await {
                step.change = Change::Blocked {
                    problem: format!("{e:#}"),
                    fix: "see the error; run setup again once it is fixed".into(),
                };
            }
        }
    }
    let ok = !steps
        .iter()
        .any(|s| matches!(s.change, Change::Blocked { .. }));
    if options.json {
        let report = Report {
            stack: &stack.name,
            region: &stack.region,
            dry_run: options.dry_run,
            ok,
            steps: &steps,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ok);
    }
    for step in &steps {
        println!("  {}", step.line(!options.dry_run));
    }
    summary(&steps, options.dry_run, ui);
    Ok(ok)
}

fn summary(steps: &[Step], dry_run: bool, ui: &Ui) {
    let count = |f: fn(&Change) -> bool| steps.iter().filter(|s| f(&s.change)).count();
    let created = count(|c| matches!(c, Change::Create(_)));
    let updated = count(|c| matches!(c, Change::Update(_)));
    let unchanged = count(|c| matches!(c, Change::Unchanged));
    let blocked = count(|c| matches!(c, Change::Blocked { .. }));
    let (create, update) = if dry_run {
        ("to create", "to update")
    } else {
        ("created", "updated")
    };
    let text = format!(
        "{created} {create}, {updated} {update}, {unchanged} unchanged, {blocked} need you"
    );
    if blocked > 0 {
        ui.error(&text);
    } else {
        ui.done(&text);
    }
}
