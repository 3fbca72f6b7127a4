//! The status page: every service of the team on one page. What is live on each target (and
//! what waits to be promoted), the recent builds with a chart of their durations and outcomes,
//! the Sentry alerts since each target's release, and the dead-letter queues. The data is read
//! from the state table without a scan (one record per target, per repo and per Sentry
//! project); the page is plain server-rendered HTML with an inline SVG chart and no script.
//!
//! The function serves it behind sign-in with GitHub (`web`, `signin`, and `person`: the
//! signed-in person's own GitHub calls), each person seeing the repos they can read;
//! `shipline serve` and `shipline demo` serve it on loopback.

mod person;
pub mod render;
pub mod signin;
pub mod web;

use serde::Serialize;
use shared::alerts::AlertLog;
use shared::config::Config;
use shared::overview::{self, BuildLine, Overview};
use shared::ports::{NamedQueues, StateError, StateStore};
use shared::records::{LastAlarm, StateKey};

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
#[must_use]
pub struct Page {
    #[serde(flatten)]
    pub overview: Overview,
    pub builds: Vec<BuildLine>,
    pub alerts: Vec<AlertsSince>,
    pub dead_letters: Vec<(String, Option<u64>)>,
    /// The newest change of one of the stack's alarms.
    pub last_alarm: Option<LastAlarm>,
    /// Unix seconds.
    pub generated_at: i64,
    /// Who is signed in (none on loopback, where there is no sign-in).
    pub viewer: Option<String>,
}

impl Page {
    /// The page as someone who can read only some repos sees it: their targets, promotions,
    /// builds and alerts, and nothing of the others (the dead-letter queues say nothing of a
    /// repo and stay).
    pub fn only(mut self, can_read: impl Fn(&str) -> bool, config: &Config) -> Self {
        let repo_of = |target: &str| {
            config
                .targets()
                .find(|(t, _, _)| t.as_str() == target)
                .map(|(_, repo, _)| repo.to_string())
        };
        let readable_target = |target: &str| repo_of(target).is_some_and(|r| can_read(&r));
        self.overview.live.retain(|l| can_read(&l.repo));
        self.overview.pending.retain(|p| readable_target(&p.target));
        self.builds.retain(|b| can_read(&b.repo));
        self.alerts.retain(|a| readable_target(&a.target));
        self
    }
}

/// Each live target's Sentry alerts since its release: one batch of reads of the projects'
/// alert logs.
async fn alerts_since_release(
    state: &(dyn StateStore + 'static),
    config: &Config,
    overview: &Overview,
    now: i64,
) -> Result<Vec<AlertsSince>, StateError> {
    let watched: Vec<(&overview::LiveLine, String)> = overview
        .live
        .iter()
        .filter_map(|l| {
            let project = config.repo(&l.repo)?.sentry_project.as_ref()?.value.clone();
            Some((l, project))
        })
        .collect();
    let keys: Vec<StateKey<'_>> = watched.iter().map(|(_, p)| StateKey::Alerts(p)).collect();
    let logs = state.read_many::<AlertLog>(&keys, now).await?;
    let mut found = Vec::new();
    for ((live, project), log) in watched.iter().zip(logs) {
        let since = time::OffsetDateTime::parse(
            &live.since,
            &time::format_description::well_known::Rfc3339,
        )
        .map_or(now, |t| t.unix_timestamp());
        let min_level = config.sentry_min_level(project);
        let spike = log
            .unwrap_or_default()
            .since(since, &live.environment, min_level, true);
        found.push(AlertsSince {
            target: live.target.clone(),
            project: project.clone(),
            since: live.since.clone(),
            events: spike.events,
            new_issues: spike.new_issues,
            issues: spike.issues,
        });
    }
    Ok(found)
}

/// Reads the page's data: the overview, the builds, each live target's alerts since its
/// release, the last alarm, the dead-letter queues' depths.
pub async fn gather(
    state: &(dyn StateStore + 'static),
    config: &Config,
    dead_letters: &NamedQueues,
    now: i64,
) -> Result<Page, StateError> {
    let overview = overview::read(state, config, now).await?;
    let builds = overview::builds(state, config, now, BUILDS_SHOWN).await?;
    let (alerts, last_alarm, dead_letters) = tokio::join!(
        alerts_since_release(state, config, &overview, now),
        state.read_value::<LastAlarm>(StateKey::LastAlarm, now),
        overview::dead_letters(dead_letters),
    );
    Ok(Page {
        overview,
        builds,
        alerts: alerts?,
        dead_letters,
        last_alarm: last_alarm?,
        generated_at: now,
        viewer: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::overview::{LiveLine, PendingLine};

    #[test]
    fn someone_who_reads_one_repo_sees_nothing_of_the_others() {
        let config = Config::from_yaml(
            "repos:\n  team/a:\n    codebuild_project: a\n    deploy:\n      - branch: master\n        heroku: { app: a }\n  team/b:\n    codebuild_project: b\n    deploy:\n      - branch: master\n        heroku: { app: b }\n",
        )
        .unwrap();
        let live = |repo: &str, target: &str| LiveLine {
            target: target.into(),
            environment: "production".into(),
            repo: repo.into(),
            sha: "0".repeat(40),
            release: None,
            since: String::new(),
            by: None,
            restored: false,
        };
        let mut page = Page::default();
        page.overview.live = vec![live("team/a", "heroku:a"), live("team/b", "heroku:b")];
        page.overview.pending = vec![PendingLine {
            target: "heroku:b".into(),
            environment: "production".into(),
            from: "staging".into(),
            sha: "1".repeat(40),
            release: None,
            due: 0,
            gate: "approval",
        }];
        page.alerts = vec![AlertsSince {
            target: "heroku:b".into(),
            project: "b".into(),
            since: String::new(),
            events: 3,
            new_issues: 1,
            issues: vec![("secret".into(), 3)],
        }];
        page.dead_letters = vec![("deploys".into(), Some(0))];
        let seen = page.only(|repo| repo == "team/a", &config);
        assert_eq!(seen.overview.live.len(), 1);
        assert_eq!(seen.overview.live[0].repo, "team/a");
        assert!(seen.overview.pending.is_empty());
        assert!(seen.alerts.is_empty());
        assert_eq!(seen.dead_letters.len(), 1);
    }
}
