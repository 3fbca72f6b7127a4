//! The status page: every service of the team on one page. What is live on each target (and
//! what waits to be promoted), the recent builds with a chart of their durations and outcomes,
//! the Sentry alerts since each target's release, and the dead-letter queues. The data is read
//! from the state table without a scan (one record per target, per repo and per Sentry
//! project); the page is plain server-rendered HTML with an inline SVG chart and no script.
//!
//! `shipline serve` and `shipline demo` serve it on loopback.

pub mod render;

use serde::Serialize;
use shared::alerts;
use shared::config::Config;
use shared::overview::{self, BuildLine, Overview};
use shared::ports::{NamedQueues, StateError, StateStore};
use shared::records::{LiveRecord, StateKey};

/// How many builds the page shows.
pub const BUILDS_SHOWN: usize = 40;

/// The Sentry alerts of one target's project since its release went live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertsSince {
    pub target: String,
    pub project: String,
    /// RFC 3339: when the release went live.
    pub since: String,
    pub events: u64,
    pub new_issues: u64,
    /// Each issue's title and count.
    pub issues: Vec<(String, u64)>,
}

/// Everything the page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Page {
    #[serde(flatten)]
    pub overview: Overview,
    pub builds: Vec<BuildLine>,
    pub alerts: Vec<AlertsSince>,
    pub dead_letters: Vec<(String, Option<u64>)>,
    /// Unix seconds.
    pub generated_at: i64,
}

/// Reads the page's data: the overview, the builds, each live target's alerts since its
/// release, the dead-letter queues' depths.
pub async fn gather(
    state: &(dyn StateStore + 'static),
    config: &Config,
    dead_letters: &NamedQueues,
    now: i64,
) -> Result<Page, StateError> {
    let overview = overview::read(state, config, now).await?;
    let builds = overview::builds(state, config, now, BUILDS_SHOWN).await?;
    let mut alerts = Vec::new();
    for (target, repo_name, rule) in config.targets() {
        let Some(project) = config
            .repo(repo_name)
            .and_then(|r| r.sentry_project.as_ref())
            .map(|p| p.value.clone())
        else {
            continue;
        };
        let Some(live) = state
            .read_value::<LiveRecord>(StateKey::Live(&target), now)
            .await?
        else {
            continue;
        };
        let since =
            time::OffsetDateTime::parse(&live.at, &time::format_description::well_known::Rfc3339)
                .map_or(now, |t| t.unix_timestamp());
        let log = alerts::read(state, &project, now).await?;
        let spike = log.since(
            since,
            &rule.environment,
            config.sentry_min_level(&project),
            true,
        );
        alerts.push(AlertsSince {
            target: target.to_string(),
            project,
            since: live.at,
            events: spike.events,
            new_issues: spike.new_issues,
            issues: spike.issues,
        });
    }
    Ok(Page {
        overview,
        builds,
        alerts,
        dead_letters: overview::dead_letters(dead_letters).await,
        generated_at: now,
    })
}
