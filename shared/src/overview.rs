//! What is live where and what waits to be promoted, read from the state table: one reading
//! for `shipline status` and the chat's `/status`.

use serde::Serialize;

use crate::config::{Config, Gate};
use crate::ports::{NamedQueues, StateError, StateStore};
use crate::records::{LiveRecord, PendingPromotions, StateKey};

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
/// pending promotions: one read per target and one more.
pub async fn read(
    state: &(dyn StateStore + 'static),
    config: &Config,
    now: i64,
) -> Result<Overview, StateError> {
    let mut live = Vec::new();
    let mut gates = std::collections::BTreeMap::new();
    for (target, _, rule) in config.targets() {
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
    let secs = (now - at.unix_timestamp()).max(0);
    match secs {
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
