//! What is live where, what waits to be promoted and what was built, read from the state
//! table: one reading for `shipline status` and the chat's `/status`.

use serde::Serialize;

use crate::config::{Config, Gate};
use crate::ports::{NamedQueues, StateError, StateStore};
use crate::records::{LiveRecord, PendingPromotions, RecentBuilds, StateKey};

/// What is live on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveLine {
    pub target: String,
    pub environment: String,
    pub repo: String,
    pub sha: String,
    pub release: Option<String>,
    /// RFC 3339.
    pub since: String,
    /// The commit's author, or the person who asked for the release.
    pub by: Option<String>,
    /// Put back by a rollback.
    pub restored: bool,
}

/// A promotion waiting for its soak time, its gate or a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingLine {
    pub target: String,
    pub environment: String,
    pub from: String,
    pub sha: String,
    pub release: Option<String>,
    /// Unix seconds.
    pub due: i64,
    pub gate: &'static str,
}

/// One finished build, newest first in [`builds`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildLine {
    pub repo: String,
    pub sha: String,
    /// `push` or `pull_request`.
    pub trigger: &'static str,
    /// The branch of a push.
    pub branch: Option<String>,
    pub pull_request: Option<u64>,
    pub passed: bool,
    /// CodeBuild's final status, and what the commit status said.
    pub status: String,
    pub description: String,
    pub duration_secs: u64,
    /// Unix seconds.
    pub finished_at: i64,
    pub log_url: Option<String>,
    pub commit_message: Option<String>,
}

/// The whole picture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Overview {
    pub live: Vec<LiveLine>,
    pub pending: Vec<PendingLine>,
}

pub fn gate_name(gate: Gate) -> &'static str {
    match gate {
        Gate::None => "none",
        Gate::Sentry => "sentry",
        Gate::Approval => "approval",
    }
}

/// Reads the live record of every target the config names (in the config's order) and the
/// pending promotions: one batch of reads for the targets, and one more.
pub async fn read(
    state: &(dyn StateStore + 'static),
    config: &Config,
    now: i64,
) -> Result<Overview, StateError> {
    let mut live = Vec::new();
    let mut gates = std::collections::BTreeMap::new();
    let targets: Vec<_> = config.targets().collect();
    let keys: Vec<StateKey<'_>> = targets.iter().map(|(t, _, _)| StateKey::Live(t)).collect();
    let records = state.read_many::<LiveRecord>(&keys, now).await?;
    for ((target, _, rule), record) in targets.iter().zip(records) {
        gates.insert(target.to_string(), rule.gate());
        if let Some(record) = record {
            live.push(LiveLine {
                target: target.to_string(),
                environment: rule.environment.clone(),
                repo: record.repo,
                sha: record.sha.to_string(),
                release: record.version,
                since: record.at,
                by: record.by,
                restored: record.restored,
            });
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
    Ok(Overview { live, pending })
}

/// The recent finished builds of every repo of the config, newest first, at most `most`: one
/// batch of reads (`builds:<repo>`, which build-dispatch keeps to its 50 newest).
pub async fn builds(
    state: &(dyn StateStore + 'static),
    config: &Config,
    now: i64,
    most: usize,
) -> Result<Vec<BuildLine>, StateError> {
    let mut lines = Vec::new();
    let keys: Vec<StateKey<'_>> = config.repos.keys().map(|n| StateKey::Builds(n)).collect();
    let all = state.read_many::<RecentBuilds>(&keys, now).await?;
    for (name, recent) in config.repos.keys().zip(all) {
        let recent = recent.unwrap_or_default();
        lines.extend(recent.builds.into_iter().map(|b| BuildLine {
            repo: name.clone(),
            sha: b.sha.to_string(),
            trigger: if b.pull_request.is_some() {
                "pull_request"
            } else {
                "push"
            },
            branch: b.branch,
            pull_request: b.pull_request,
            passed: b.passed,
            status: b.status,
            description: b.description,
            duration_secs: u64::try_from(b.finished_at - b.started_at).unwrap_or(0),
            finished_at: b.finished_at,
            log_url: b.log_url,
            commit_message: b.commit_message,
        }));
    }
    lines.sort_by_key(|b| std::cmp::Reverse(b.finished_at));
    lines.truncate(most);
    Ok(lines)
}

/// How many messages wait in each dead-letter queue, by name; `None` where the queue could not
/// be read.
pub async fn dead_letters(queues: &NamedQueues) -> Vec<(String, Option<u64>)> {
    let mut depths = Vec::with_capacity(queues.len());
    for (name, queue) in queues {
        let depth = match queue.depth().await {
            Ok(depth) => depth,
            Err(e) => {
                tracing::warn!(queue = %name, error = %e, "cannot read the dead-letter queue's depth");
                None
            }
        };
        depths.push((name.clone(), depth));
    }
    depths
}

/// "3m", "2h", "5d": how long ago `since` (RFC 3339) was, for a chat line.
pub fn age(since: &str, now: i64) -> String {
    let Ok(at) = time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
    else {
        return since.to_string();
    };
    age_secs(now - at.unix_timestamp())
}

/// "45s", "3m", "2h", "5d": a span of seconds as a person says it.
pub fn age_secs(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_a_person_says_them() {
        let now = 1_780_000_000;
        let at = |secs_ago: i64| {
            time::OffsetDateTime::from_unix_timestamp(now - secs_ago)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        assert_eq!(age(&at(5), now), "5s");
        assert_eq!(age(&at(300), now), "5m");
        assert_eq!(age(&at(7300), now), "2h");
        assert_eq!(age(&at(3 * 86_400), now), "3d");
        assert_eq!(age("not a time", now), "not a time");
    }
}
