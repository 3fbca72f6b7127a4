//! Each repo's GitHub webhook, pointing at the stack: payload URL = `GitHubWebhookUrl`, JSON,
//! the secret's `github_webhook_secret`, `push` and `pull_request` (events the team added are
//! kept). With GitHub App credentials the App's one webhook serves every repo: its URL is
//! checked, since only the App's settings page sets its events.

use std::collections::BTreeSet;

use shared::github::client::GitHubClient;
use shared::github::deliveries::{Hook, HookSpec, HookSpecConfig};
use shared::ports::GitHubError;
use shared::secrets::SecretString;

use super::{Action, Change, Step};

pub const EVENTS: [&str; 2] = ["push", "pull_request"];

/// A hook to create or update.
#[derive(Debug, Clone)]
pub struct HookChange {
    pub repo: String,
    pub id: Option<u64>,
    pub spec: HookSpec,
}

impl HookChange {
    pub async fn apply(&self, github: &GitHubClient) -> Result<(), GitHubError> {
        match self.id {
            None => github.create_hook(&self.repo, &self.spec).await.map(drop),
            Some(id) => github
                .update_hook(&self.repo, id, &self.spec)
                .await
                .map(drop),
        }
    }
}

/// The hook of `repo` that points at `url`, if any.
pub fn pointing_at<'a>(hooks: &'a [Hook], url: &str) -> Option<&'a Hook> {
    hooks
        .iter()
        .find(|h| h.config.url.as_deref().map(|u| u.trim_end_matches('/')) == Some(url))
}

/// Why GitHub refused to show or change a repo's hooks, and what to do.
pub fn refusal_fix(e: &GitHubError) -> String {
    match e {
        GitHubError::Rejected {
            status: 404 | 403, ..
        } => "the token needs admin rights on the \
            repo: a fine-grained token with Webhooks read and write, or a classic token with \
            admin:repo_hook"
            .into(),
        GitHubError::Rejected { status: 401, .. } => {
            "github_token is not valid: make a new one and put it in the secret".into()
        }
        _ => "try again; GitHub did not answer".into(),
    }
}

/// Plans one repo's hook.
pub async fn plan(
    github: &GitHubClient,
    repo: &str,
    url: &str,
    secret: &SecretString,
    secret_is_new: bool,
) -> Step {
    let resource = format!("github webhook {repo}");
    let hooks = match github.hooks(repo).await {
        Ok(hooks) => hooks,
        Err(e) => {
            return Step::blocked(
                resource,
                format!("cannot read the repo's webhooks: {e}"),
                refusal_fix(&e),
            );
        }
    };
    let Some(hook) = pointing_at(&hooks, url) else {
        let spec = spec(
            url,
            secret,
            EVENTS.iter().map(ToString::to_string).collect(),
        );
        return Step::new(
            resource,
            Change::Create(vec![url.to_string(), "push, pull_request".into()]),
            Action::Hook(HookChange {
                repo: repo.to_string(),
                id: None,
                spec,
            }),
        );
    };
    let mut differences = Vec::new();
    let have: BTreeSet<String> = hook.events.iter().cloned().collect();
    let mut events = have.clone();
    events.extend(EVENTS.iter().map(ToString::to_string));
    let covered = have.contains("*") || EVENTS.iter().all(|e| have.contains(*e));
    if !covered {
        differences.push(format!("events {} → {}", join(&have), join(&events)));
    }
    if !hook.active {
        differences.push("active".into());
    }
    if hook.config.content_type.as_deref() != Some("json") {
        differences.push(format!(
            "content type {} → json",
            hook.config.content_type.as_deref().unwrap_or("none")
        ));
    }
    if hook
        .config
        .insecure_ssl
        .as_deref()
        .is_some_and(|v| v != "0")
    {
        differences.push("TLS verification on".into());
    }
    if !hook.config.has_secret() {
        differences.push("secret set".into());
    } else if secret_is_new {
        differences.push("secret: the new github_webhook_secret".into());
    }
    if differences.is_empty() {
        return Step::unchanged(resource);
    }
    let events = if covered { have } else { events };
    Step::new(
        resource,
        Change::Update(differences),
        Action::Hook(HookChange {
            repo: repo.to_string(),
            id: Some(hook.id),
            spec: spec(url, secret, events.into_iter().collect()),
        }),
    )
}

fn join(events: &BTreeSet<String>) -> String {
    if events.is_empty() {
        return "none".into();
    }
    events.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn spec(url: &str, secret: &SecretString, events: Vec<String>) -> HookSpec {
    HookSpec {
        active: true,
        events,
        config: HookSpecConfig {
            url: url.to_string(),
            content_type: "json".into(),
            insecure_ssl: "0".into(),
            secret: secret.clone(),
        },
    }
}

/// With App credentials: the App's webhook must point at the stack.
pub async fn check_app(github: &GitHubClient, url: &str) -> Step {
    const RESOURCE: &str = "github app webhook";
    let fix = format!(
        "GitHub → Settings → Developer settings → GitHub Apps → the App → Webhook: URL {url}, \
         secret = the secret's github_webhook_secret, events Push and Pull request"
    );
    match github.app_hook_config().await {
        Ok(config) if config.url.as_deref().map(|u| u.trim_end_matches('/')) == Some(url) => {
            if config.content_type.as_deref() == Some("json") {
                Step::unchanged(RESOURCE)
            } else {
                Step::blocked(RESOURCE, "its content type is not json", fix)
            }
        }
        Ok(config) => Step::blocked(
            RESOURCE,
            format!(
                "it points at {}",
                config.url.as_deref().unwrap_or("nothing")
            ),
            fix,
        ),
        Err(e) => Step::blocked(RESOURCE, format!("cannot read it: {e}"), fix),
    }
}
