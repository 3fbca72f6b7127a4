//! `shipline status --stack NAME`: what is live on each target, what waits to be promoted and
//! the recent builds, read from the stack's state table (as the status page reads them).

use shared::messages;
use shared::overview::{self, BuildLine, LiveLine, Overview, PendingLine};

use crate::stack::{Aws, Stack};
use crate::ui::Ui;

/// How many builds `shipline status` lists.
const BUILDS_SHOWN: usize = 20;

/// What `shipline status --json` prints.
#[derive(serde::Serialize)]
struct Status {
    #[serde(flatten)]
    overview: Overview,
    builds: Vec<BuildLine>,
}

pub async fn run(stack_name: &str, json: bool, ui: &Ui) -> anyhow::Result<()> {
    let aws = Aws::load().await?;
    let stack = Stack::read(&aws, stack_name).await?;
    let table = stack.output("StateTableName")?;
    let source = crate::commands::setup::ConfigSource::load(&aws, &stack, None).await?;
    let state = shared::adapters::dynamodb::DynamoStateStore::new(
        aws_sdk_dynamodb::Client::new(&aws.sdk),
        table,
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let status = Status {
        overview: overview::read(&state, &source.config, now).await?,
        builds: overview::builds(&state, &source.config, now, BUILDS_SHOWN).await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    ui.title(&format!("Live ({})", stack.name));
    print_live(&status.overview.live, now);
    ui.title("Pending promotions");
    print_pending(&status.overview.pending, now);
    ui.title("Recent builds");
    print_builds(&status.builds, now);
    Ok(())
}

fn print_live(live: &[LiveLine], now: i64) {
    if live.is_empty() {
        println!("  nothing recorded yet");
    }
    for l in live {
        println!(
            "  {:<28} {:<12} {} {}{}  since {} ({} ago){}",
            l.target,
            l.environment,
            messages::short_sha(&l.sha),
            l.release.as_deref().unwrap_or(""),
            if l.restored { " (rolled back to)" } else { "" },
            l.since,
            overview::age(&l.since, now),
            l.by.as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default()
        );
    }
}

fn print_pending(pending: &[PendingLine], now: i64) {
    if pending.is_empty() {
        println!("  none");
    }
    for p in pending {
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
}

/// Newest first: repo, branch or pull request, sha, outcome, duration, when, and why a failed
/// one failed, with its log.
fn print_builds(builds: &[BuildLine], now: i64) {
    if builds.is_empty() {
        println!("  none recorded yet");
    }
    for b in builds {
        let what = match (&b.branch, b.pull_request) {
            (Some(branch), _) => branch.clone(),
            (None, Some(n)) => format!("PR #{n}"),
            (None, None) => String::new(),
        };
        let (mark, outcome) = if b.passed {
            ("✔", "passed".to_string())
        } else {
            ("✖", b.status.to_ascii_lowercase().replace('_', " "))
        };
        let ago = overview::age_secs(now - b.finished_at);
        println!(
            "  {mark} {:<28} {:<16} {} {outcome:<10} {:>6}  {ago} ago",
            b.repo,
            what,
            messages::short_sha(&b.sha),
            overview::age_secs(i64::try_from(b.duration_secs).unwrap_or(0)),
        );
        if !b.passed {
            println!("      {}", b.description);
            if let Some(url) = &b.log_url {
                println!("      log: {url}");
            }
        }
    }
}
