//! `shipline doctor --stack NAME`: read-only checks of everything a deployed pipeline needs,
//! one line each, ✔ or ✖ with the fix; exits non-zero when any fails.
//!
//! Besides reading: it asks GitHub to ping each repo's webhook (GitHub's `pings` endpoint) and
//! reads that delivery's answer, so the check goes through the real route and the real
//! signature check; it sends no chat message (Telegram's `getChat` / `getChatMember` tell
//! whether the bot may post).
//!
//! Here: the stack's own check, the order of the checks and the report. One module per thing
//! checked: the secret's keys (`secrets`), the stored config (`config`), the CodeBuild projects
//! (`projects`), the GitHub webhooks (`webhooks`), the Heroku apps (`heroku`), the Telegram
//! channels and bot webhooks (`telegram`) and the dead-letter queues (`queues`).

mod config;
mod heroku;
mod projects;
mod queues;
mod secrets;
mod telegram;
mod webhooks;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::commands::setup::{self, Change, ConfigSource};
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
    checks.extend(secrets::secret_checks(&source.config, &secret));
    checks.push(config::config_check(&stack, &source));
    let projects = setup::projects_step(&stack, &source.config);
    checks.push(from_step(projects.resource, projects.change, &stack));
    checks.extend(projects::project_checks(&aws, &stack, &source.config).await);
    checks
        .extend(webhooks::webhook_checks(&stack, &secret, &source.config, options.ping_wait).await);
    let http = reqwest::Client::builder()
        .timeout(shared::http::CALL_TIMEOUT)
        .user_agent(shared::http::USER_AGENT)
        .build()?;
    checks.extend(heroku::heroku_checks(&http, &stack, &secret, &source.config).await);
    checks.extend(telegram::telegram_checks(&stack, &secret, &source.config).await);
    checks.extend(queues::dead_letter_checks(&aws, &stack).await);
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
