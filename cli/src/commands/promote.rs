//! `shipline promote`: a person's go for a target's pending promotion, through the deploy
//! queue (in the target's group, so it waits for that target's deploys); and `shipline
//! status`: what is live on each target and what waits to be promoted.

use serde::Serialize;
use shared::config::{Config, Gate};
use shared::messages::{self, DeployQueueMessage, PromoteRequest};
use shared::records::{LiveRecord, PendingPromotions, StateKey};

use crate::commands::rollback::send;
use crate::stack::{Aws, Stack};
use crate::ui::Ui;

fn now_rfc3339() -> anyhow::Result<String> {
    Ok(time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?)
}

pub async fn promote(
    target: &str,
    sha: Option<String>,
    queue: &str,
    json: bool,
    ui: &Ui,
) -> anyhow::Result<()> {
    let request = PromoteRequest {
        v: messages::VERSION,
        target: target.into(),
        sha: sha.map(Into::into),
        requested_by: std::env::var("USER").unwrap_or_else(|_| "shipline CLI".into()),
        requested_at: now_rfc3339()?,
    };
    let dedup = format!("promote-{}", request.requested_at);
    send(queue, &DeployQueueMessage::Promote(request.clone()), &dedup).await?;
    if json {
        println!("{}", messages::encode(&request));
    } else {
        ui.done(&format!(
            "promotion to {target} queued; the chat will say when it is live"
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct LiveLine {
    target: String,
    environment: String,
    repo: String,
    sha: String,
    release: Option<String>,
    since: String,
    restored: bool,
}

#[derive(Serialize)]
struct PendingLine {
    target: String,
    environment: String,
    from: String,
    sha: String,
    release: Option<String>,
    /// Unix seconds.
    due: i64,
    gate: &'static str,
}

#[derive(Serialize)]
struct Status {
    live: Vec<LiveLine>,
    pending: Vec<PendingLine>,
}

fn gate_name(gate: Gate) -> &'static str {
    match gate {
        Gate::None => "none",
        Gate::Sentry => "sentry",
        Gate::Approval => "approval",
    }
}

async fn read_status(aws: &Aws, table: &str, config: &Config) -> anyhow::Result<Status> {
    let state = shared::adapters::dynamodb::DynamoStateStore::new(
        aws_sdk_dynamodb::Client::new(&aws.sdk),
        table,
    );
    let state: &dyn shared::ports::StateStore = &state;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut live = Vec::new();
    let mut gates = std::collections::BTreeMap::new();
    for (repo_name, repo) in &config.repos {
        for rule in &repo.deploy {
            let target = rule.target_key(repo_name);
            gates.insert(target.to_string(), rule.gate());
            if let Some(record) = state
                .read_value::<LiveRecord>(StateKey::Live(&target), now)
                .await?
            {
                live.push(LiveLine {
                    target: target.to_string(),
                    environment: rule.environment.clone(),
                    repo: record.repo,
                    sha: record.sha.to_string(),
                    release: record.version,
                    since: record.at,
                    restored: record.restored,
                });
            }
        }
    }
    let pending: PendingPromotions = state
        .read_value(StateKey::Promotions, now)
        .await?
        .unwrap_or_default();
    let pending = pending
        .into_iter()
        .map(|(target, p)| {
            let from = p.request.promotion.clone();
            PendingLine {
                gate: gate_name(gates.get(&target).copied().unwrap_or_default()),
                target,
                environment: p.request.environment.clone(),
                from: from
                    .as_ref()
                    .map(|f| f.environment.clone())
                    .unwrap_or_default(),
                sha: p.request.sha.to_string(),
                release: from.and_then(|f| f.release),
                due: p.due,
            }
        })
        .collect();
    Ok(Status { live, pending })
}

pub async fn status(stack_name: &str, json: bool, ui: &Ui) -> anyhow::Result<()> {
    let aws = Aws::load().await?;
    let stack = Stack::read(&aws, stack_name).await?;
    let table = stack.output("StateTableName")?;
    let source = crate::commands::setup::ConfigSource::load(&aws, &stack, None).await?;
    let status = read_status(&aws, table, &source.config).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    ui.title(&format!("Live ({})", stack.name));
    if status.live.is_empty() {
        println!("  nothing recorded yet");
    }
    for l in &status.live {
        println!(
            "  {:<28} {:<12} {} {}{}  since {}",
            l.target,
            l.environment,
            messages::short_sha(&l.sha),
            l.release.as_deref().unwrap_or(""),
            if l.restored { " (rolled back to)" } else { "" },
            l.since
        );
    }
    ui.title("Pending promotions");
    if status.pending.is_empty() {
        println!("  none");
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for p in &status.pending {
        let when = match (p.gate, p.due - now) {
            ("approval", _) => format!("waits for approval: shipline promote {}", p.target),
            (_, left) if left > 0 => format!("due in {}s, gate {}", left, p.gate),
            _ => format!("due now, gate {}", p.gate),
        };
        println!(
            "  {} ← {} {}{}: {when}",
            p.target,
            p.from,
            messages::short_sha(&p.sha),
            p.release
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
