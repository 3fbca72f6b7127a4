//! The GitHub webhooks: the App's, or each repo's hook pointing at the stack, pinged and its
//! delivery's answer read (the real route and the real signature check).

use std::time::Duration;

use anyhow::anyhow;
use shared::config::Config;
use shared::github::client::GitHubClient;
use shared::github::deliveries::HookScope;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Check, from_step, setup_fix};
use crate::commands::setup::{self, hooks};
use crate::stack::{Stack, StackSecret};

pub(super) async fn webhook_checks(
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
