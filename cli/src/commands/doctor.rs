//! `shipline doctor --stack NAME`: read-only checks of everything a deployed pipeline needs,
//! one line each, ✔ or ✖ with the fix; exits non-zero when any fails.
//!
//! Besides reading: it asks GitHub to ping each repo's webhook (GitHub's `pings` endpoint) and
//! reads that delivery's answer, so the check goes through the real route and the real
//! signature check; it sends no chat message (Telegram's `getChat` / `getChatMember` tell
//! whether the bot may post).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::config::{Channel, Config};
use shared::github::client::GitHubClient;
use shared::github::deliveries::HookScope;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::setup::telegram::{BotApi, WebhookInfo, webhook_url};
use super::setup::{self, Change, ConfigSource, codebuild, hooks};
use crate::stack::{Aws, Stack, StackSecret};
use crate::ui::Ui;

pub struct Options {
    pub stack: String,
    pub config: Option<PathBuf>,
    pub json: bool,
    /// How long to wait for each ping's delivery.
    pub ping_wait: Duration,
}

/// One check's outcome.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: problem.into(),
            fix: Some(fix.into()),
        }
    }

    fn line(&self) -> String {
        match &self.fix {
            None => format!("✔ {}: {}", self.name, self.detail),
            Some(fix) => format!("✖ {}: {}\n    fix: {fix}", self.name, self.detail),
        }
    }
}

fn setup_fix(stack: &Stack) -> String {
    format!("shipline setup --stack {}", stack.name)
}

pub async fn run(options: &Options, ui: &Ui) -> anyhow::Result<bool> {
    let aws = Aws::load().await?;
    let mut checks = Vec::new();
    let stack = match Stack::read(&aws, &options.stack).await {
        Ok(stack) => stack,
        Err(e) => {
            checks.push(Check::fail(
                format!("stack {}", options.stack),
                format!("{e:#}"),
                "sam build && sam deploy --guided",
            ));
            return Ok(report(&checks, options.json, ui));
        }
    };
    let missing = stack.missing_outputs();
    checks.push(if missing.is_empty() {
        Check::pass(
            format!("stack {}", stack.name),
            format!("{} outputs in {}", stack.outputs.len(), stack.region),
        )
    } else {
        Check::fail(
            format!("stack {}", stack.name),
            format!("no output {}", missing.join(", ")),
            "deploy this version's template: sam build && sam deploy",
        )
    });
    if !options.json {
        ui.title(&format!(
            "shipline doctor: stack {} in {}",
            stack.name, stack.region
        ));
    }
    let secret = match StackSecret::read(&aws, &stack).await {
        Ok(secret) => secret,
        Err(e) => {
            checks.push(Check::fail(
                "secret",
                format!("{e:#}"),
                "give the stack the ARN of a secret holding a JSON object (SecretArn)",
            ));
            return Ok(report(&checks, options.json, ui));
        }
    };
    let source = match ConfigSource::load(&aws, &stack, options.config.as_deref()).await {
        Ok(source) => source,
        Err(e) => {
            checks.push(Check::fail("config", format!("{e:#}"), setup_fix(&stack)));
            return Ok(report(&checks, options.json, ui));
        }
    };
    checks.extend(secret_checks(&source.config, &secret));
    checks.push(config_check(&stack, &source));
    let projects = setup::projects_step(&stack, &source.config);
    checks.push(from_step(projects.resource, projects.change, &stack));
    checks.extend(project_checks(&aws, &stack, &source.config).await);
    checks.extend(webhook_checks(&stack, &secret, &source.config, options.ping_wait).await);
    let http = reqwest::Client::builder()
        .timeout(shared::http::CALL_TIMEOUT)
        .user_agent(shared::http::USER_AGENT)
        .build()?;
    checks.extend(heroku_checks(&http, &stack, &secret, &source.config).await);
    checks.extend(telegram_checks(&stack, &secret, &source.config).await);
    checks.extend(dead_letter_checks(&aws, &stack).await);
    Ok(report(&checks, options.json, ui))
}

fn report(checks: &[Check], json: bool, ui: &Ui) -> bool {
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        println!("{}", json!({"ok": failed == 0, "checks": checks}));
        return failed == 0;
    }
    for check in checks {
        println!("{}", check.line());
    }
    if failed == 0 {
        ui.done(&format!("{} checks passed", checks.len()));
    } else {
        ui.error(&format!("{failed} of {} checks failed", checks.len()));
    }
    failed == 0
}

fn from_step(resource: String, change: Change, stack: &Stack) -> Check {
    match change {
        Change::Unchanged => Check::pass(resource, "as the config says"),
        Change::Blocked { problem, fix } => Check::fail(resource, problem, fix),
        Change::Create(_) => Check::fail(resource, "missing", setup_fix(stack)),
        Change::Update(differences) => {
            Check::fail(resource, differences.join("; "), setup_fix(stack))
        }
    }
}

fn secret_checks(config: &Config, secret: &StackSecret) -> Vec<Check> {
    let mut needed = setup::needed_keys(config, secret);
    needed.insert(0, ("github_webhook_secret".into(), "webhook-intake".into()));
    let missing: Vec<Check> = needed
        .iter()
        .filter(|(key, _)| !secret.has(key))
        .map(|(key, by)| {
            Check::fail(
                format!("secret key {key}"),
                format!("missing (needed by {by})"),
                format!(
                    "add \"{key}\" to the secret's JSON (Secrets Manager console → {} → \
                     Retrieve secret value → Edit)",
                    secret.arn
                ),
            )
        })
        .collect();
    let mut checks = if missing.is_empty() {
        vec![Check::pass(
            "secret",
            format!("the {} keys the config needs are set", needed.len()),
        )]
    } else {
        missing
    };
    if config.sentry.projects.is_empty() {
        checks.push(if secret.has("sentry_client_secret") {
            Check::pass("sentry", "sentry_client_secret is set (SentryWebhookUrl)")
        } else {
            Check::pass(
                "sentry",
                "not set up: no sentry_client_secret, no sentry.projects in the config",
            )
        });
    }
    checks.push(status_page_check(secret));
    checks
}

/// The status page signs people in with GitHub: both OAuth keys, or neither (then it answers
/// 404).
fn status_page_check(secret: &StackSecret) -> Check {
    const KEYS: [&str; 2] = ["github_oauth_client_id", "github_oauth_client_secret"];
    match KEYS.map(|k| secret.has(k)) {
        [true, true] => Check::pass(
            "status page",
            "sign-in with GitHub is set up (StatusPageUrl; the GitHub App's callback URL is GitHubOAuthCallbackUrl)",
        ),
        [false, false] => Check::pass(
            "status page",
            "not set up (GET / answers 404): add github_oauth_client_id and github_oauth_client_secret to show it",
        ),
        [has_id, _] => {
            let missing = if has_id { KEYS[1] } else { KEYS[0] };
            Check::fail(
                "status page",
                format!("{missing} is missing, so the page answers 404"),
                format!(
                    "add \"{missing}\" to the secret's JSON (Secrets Manager console → {} → \
                     Retrieve secret value → Edit): the GitHub App's client id \
                     and a client secret generated on its settings page",
                    secret.arn
                ),
            )
        }
    }
}

fn config_check(stack: &Stack, source: &ConfigSource) -> Check {
    let param = stack
        .parameters
        .get("ConfigParameterName")
        .cloned()
        .unwrap_or_default();
    let name = format!("config {param}");
    match &source.stored {
        None => Check::fail(
            name,
            "not in SSM",
            format!("{} --config FILE", setup_fix(stack)),
        ),
        Some(stored) if stored != &source.text => Check::fail(
            name,
            format!("differs from {}", source.origin),
            format!("{} --config {}", setup_fix(stack), source.origin),
        ),
        Some(stored) => match Config::from_yaml(stored).and_then(|c| c.refuse_local_only()) {
            Ok(()) => Check::pass(
                name,
                format!(
                    "valid (repos: {}, channels: {})",
                    source.config.repos.len(),
                    source.config.channels.len()
                ),
            ),
            Err(e) => Check::fail(name, e.to_string(), "fix the config, then setup again"),
        },
    }
}

async fn project_checks(aws: &Aws, stack: &Stack, config: &Config) -> Vec<Check> {
    let desired = match codebuild::desired(config, stack) {
        Ok(desired) => desired,
        Err(e) => {
            return vec![Check::fail(
                "codebuild projects",
                e.to_string(),
                "edit the config",
            )];
        }
    };
    codebuild::plan(aws, desired)
        .await
        .into_iter()
        .map(|step| from_step(step.resource, step.change, stack))
        .collect()
}

async fn webhook_checks(
    stack: &Stack,
    secret: &StackSecret,
    config: &Config,
    wait: Duration,
) -> Vec<Check> {
    let url = match stack.output("GitHubWebhookUrl") {
        Ok(url) => url.trim_end_matches('/').to_string(),
        Err(_) => return Vec::new(),
    };
    let github = match setup::github_client(stack, secret) {
        Ok(github) => github,
        Err(e) => {
            return vec![Check::fail(
                "github",
                e.to_string(),
                "fix the secret's GitHub keys",
            )];
        }
    };
    if !secret.has("github_token") {
        let step = hooks::check_app(&github, &url).await;
        return vec![from_step(step.resource, step.change, stack)];
    }
    let mut checks = Vec::new();
    for repo in config.repos.keys() {
        checks.push(webhook_check(&github, stack, repo, &url, wait).await);
    }
    checks
}

async fn webhook_check(
    github: &GitHubClient,
    stack: &Stack,
    repo: &str,
    url: &str,
    wait: Duration,
) -> Check {
    let name = format!("webhook {repo}");
    let hooks_list = match github.hooks(repo).await {
        Ok(list) => list,
        Err(e) => return Check::fail(name, e.to_string(), hooks::refusal_fix(&e)),
    };
    let Some(hook) = hooks::pointing_at(&hooks_list, url) else {
        let elsewhere: Vec<&str> = hooks_list
            .iter()
            .filter_map(|h| h.config.url.as_deref())
            .collect();
        let problem = if elsewhere.is_empty() {
            "the repo has no webhook".to_string()
        } else {
            format!(
                "no webhook points at the stack (they point at {})",
                elsewhere.join(", ")
            )
        };
        return Check::fail(name, problem, setup_fix(stack));
    };
    match ping(github, repo, hook.id, wait).await {
        Ok(attempt) if attempt.succeeded() => Check::pass(
            name,
            format!(
                "hook {} answered the ping with {}",
                hook.id, attempt.status_code
            ),
        ),
        Ok(attempt) => Check::fail(
            name,
            format!("the ping got {} ({})", attempt.status_code, attempt.status),
            if attempt.status_code == 401 {
                format!(
                    "the hook's secret is not the secret's github_webhook_secret: GitHub → \
                     {repo} → Settings → Webhooks → Edit → Secret, or delete the hook and run {}",
                    setup_fix(stack)
                )
            } else {
                "look at the webhook-intake function's log for that delivery".into()
            },
        ),
        Err(e) => Check::fail(
            name,
            e.to_string(),
            "try again; see GitHub → Settings → Webhooks → Recent Deliveries",
        ),
    }
}

/// Pings the hook and waits for that delivery's attempt.
async fn ping(
    github: &GitHubClient,
    repo: &str,
    hook_id: u64,
    wait: Duration,
) -> anyhow::Result<shared::github::deliveries::DeliveryAttempt> {
    // GitHub's clock and this machine's may differ a little.
    let since = OffsetDateTime::now_utc() - Duration::from_secs(60);
    github
        .ping_hook(repo, hook_id)
        .await
        .map_err(|e| anyhow!("cannot ping it: {e}"))?;
    let scope = HookScope::Repo {
        repo: repo.to_string(),
        hook_id,
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let page = github
            .deliveries(&scope, None)
            .await
            .map_err(|e| anyhow!("cannot read its deliveries: {e}"))?;
        let found = page.attempts.into_iter().find(|a| {
            a.event == "ping"
                && OffsetDateTime::parse(&a.delivered_at, &Rfc3339).is_ok_and(|t| t >= since)
        });
        if let Some(attempt) = found {
            return Ok(attempt);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("GitHub did not deliver the ping within {}s", wait.as_secs());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn heroku_checks(
    http: &reqwest::Client,
    stack: &Stack,
    secret: &StackSecret,
    config: &Config,
) -> Vec<Check> {
    let base = stack.api_url("HerokuApiUrl", "https://api.heroku.com");
    let apps: std::collections::BTreeSet<&str> = config
        .repos
        .values()
        .flat_map(|r| r.deploy.iter().filter_map(|d| d.heroku.as_ref()))
        .map(|h| h.app.as_str())
        .collect();
    let Some(key) = secret.secrets.get("heroku_api_key") else {
        return Vec::new(); // the secret check names it
    };
    let mut checks = Vec::new();
    for app in apps {
        let name = format!("heroku app {app}");
        // Platform API v3 (devcenter.heroku.com/articles/platform-api-reference#app-info).
        let answer = http
            .get(format!("{base}/apps/{app}"))
            .header("accept", "application/vnd.heroku+json; version=3")
            .bearer_auth(key.expose())
            .send()
            .await;
        checks.push(match answer.map(|r| r.status().as_u16()) {
            Ok(200) => Check::pass(name, "the key can read it"),
            Ok(401) => Check::fail(
                name,
                "Heroku refused heroku_api_key (401)",
                "make a key (heroku authorizations:create) and put it in the secret",
            ),
            Ok(403 | 404) => Check::fail(
                name,
                "no such app that the key's account can see",
                "check the app's name in the config, or use the key of an account that has \
                 access to the app (heroku access:add)",
            ),
            Ok(status) => Check::fail(name, format!("Heroku answered {status}"), "try again"),
            Err(e) => Check::fail(name, e.without_url().to_string(), "try again"),
        });
    }
    checks
}

#[derive(Deserialize)]
struct BotUser {
    id: i64,
    username: Option<String>,
}

#[derive(Deserialize)]
struct ChatInfo {
    #[serde(default)]
    is_forum: bool,
}

#[derive(Deserialize)]
struct Member {
    status: String,
    #[serde(default)]
    can_send_messages: Option<bool>,
}

async fn telegram_checks(stack: &Stack, secret: &StackSecret, config: &Config) -> Vec<Check> {
    let base = stack.api_url("TelegramApiUrl", "https://api.telegram.org");
    let mut checks = Vec::new();
    let mut bots = std::collections::BTreeSet::new();
    for (channel_name, channel) in &config.channels {
        let Channel::Telegram(telegram) = channel else {
            continue;
        };
        let name = format!("telegram channel {channel_name}");
        let Some(token) = secret.secrets.get(telegram.bot_token_secret()) else {
            continue; // the secret check names it
        };
        let api = BotApi::new(&base, token.expose().to_string());
        let bot: BotUser = match api.call("getMe", json!({})).await {
            Ok(bot) => bot,
            Err(e) => {
                checks.push(Check::fail(
                    name,
                    format!("the bot token is refused: {e}"),
                    "put the token @BotFather gave in the secret",
                ));
                continue;
            }
        };
        let handle = bot
            .username
            .map_or_else(|| "the bot".into(), |u| format!("@{u}"));
        if bots.insert(telegram.bot_token_secret()) {
            let username = handle.trim_start_matches('@');
            checks.push(bot_webhook_check(stack, &api, &handle, username).await);
        }
        let chat = json!({"chat_id": telegram.chat_id});
        let info: ChatInfo = match api.call("getChat", chat).await {
            Ok(info) => info,
            Err(e) => {
                checks.push(Check::fail(
                    name,
                    format!("{handle} cannot see chat {}: {e}", telegram.chat_id),
                    format!("add {handle} to the group, or fix chat_id (shipline setup telegram finds it)"),
                ));
                continue;
            }
        };
        let member = json!({"chat_id": telegram.chat_id, "user_id": bot.id});
        let check = match api.call::<Member>("getChatMember", member).await {
            Ok(m) if m.status == "left" || m.status == "kicked" => Check::fail(
                name,
                format!(
                    "{handle} is not in chat {} ({})",
                    telegram.chat_id, m.status
                ),
                format!("add {handle} to the group again"),
            ),
            Ok(m) if m.status == "restricted" && m.can_send_messages == Some(false) => Check::fail(
                name,
                format!("{handle} may not post in chat {}", telegram.chat_id),
                format!("let {handle} send messages (group settings → Permissions)"),
            ),
            Ok(_) if telegram.topic_id.is_some() && !info.is_forum => Check::fail(
                name,
                format!(
                    "chat {} has no topics, but topic_id is set",
                    telegram.chat_id
                ),
                "remove topic_id, or turn topics on in the group",
            ),
            Ok(m) => Check::pass(
                name,
                format!(
                    "{handle} can post in chat {} ({})",
                    telegram.chat_id, m.status
                ),
            ),
            Err(e) => Check::fail(name, e.to_string(), format!("add {handle} to the group")),
        };
        checks.push(check);
    }
    checks
}

/// The bot's webhook (`getWebhookInfo`): chat-ops' URL, the updates it answers, and no recent
/// delivery error.
async fn bot_webhook_check(stack: &Stack, api: &BotApi, handle: &str, username: &str) -> Check {
    let name = format!("telegram webhook of {handle}");
    let fix = format!("shipline setup --stack {}", stack.name);
    let Ok(want) = stack.output("TelegramWebhookUrl") else {
        return Check::fail(
            name,
            "the stack has no /telegram route (it predates chat-ops)",
            format!("sam deploy --stack-name {}, then {fix}", stack.name),
        );
    };
    let want = webhook_url(want, username);
    let info: WebhookInfo = match api.call("getWebhookInfo", json!({})).await {
        Ok(info) => info,
        Err(e) => return Check::fail(name, e.to_string(), fix),
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    match info {
        WebhookInfo { ref url, .. } if url.is_empty() => Check::fail(
            name,
            "no webhook is set: the chat's commands and buttons reach nobody",
            fix,
        ),
        WebhookInfo { ref url, .. } if *url != want => Check::fail(
            name,
            format!("updates go to {url}, not to the stack ({want})"),
            fix,
        ),
        ref info if !info.delivers_what_chatops_needs() => Check::fail(
            name,
            "allowed_updates leaves out messages or button presses",
            fix,
        ),
        WebhookInfo {
            last_error_date: Some(at),
            last_error_message: Some(ref message),
            pending_update_count,
            ..
        } if now - at < 3600 => Check::fail(
            name,
            format!(
                "Telegram's last delivery failed {} min ago: {message} ({pending_update_count} update(s) waiting)",
                (now - at) / 60
            ),
            format!(
                "a 401 means the secret token differs from the secret's telegram_webhook_secret: {fix} sets it again; otherwise read the ChatOpsFunction's logs"
            ),
        ),
        WebhookInfo {
            pending_update_count,
            ..
        } => Check::pass(
            name,
            format!("updates go to the stack ({pending_update_count} waiting)"),
        ),
    }
}

async fn dead_letter_checks(aws: &Aws, stack: &Stack) -> Vec<Check> {
    let mut checks = Vec::new();
    for (output, url) in stack.dead_letter_queues() {
        let name = output.trim_end_matches("Url").to_string();
        let depth = aws
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await;
        checks.push(match depth {
            Ok(answer) => {
                let count: u64 = answer
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if count == 0 {
                    Check::pass(name, "empty")
                } else {
                    Check::fail(
                        name,
                        format!("{count} messages wait"),
                        format!(
                            "shipline dlq list {url}; once the cause is fixed, shipline dlq redrive"
                        ),
                    )
                }
            }
            Err(e) => Check::fail(
                name,
                aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
                "the credentials need sqs:GetQueueAttributes",
            ),
        });
    }
    checks
}
