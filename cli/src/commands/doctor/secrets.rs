//! The stack's secret: the keys the config needs, Sentry's, and the status page's sign-in keys.

use shared::config::Config;

use super::Check;
use crate::commands::setup;
use crate::stack::StackSecret;

pub(super) fn secret_checks(config: &Config, secret: &StackSecret) -> Vec<Check> {
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
