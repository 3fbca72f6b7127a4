//! What Sentry said about a service lately: each project's recent alerts, recorded by
//! alert-forwarder as they arrive (throttled or not) and read by a promotion's `gate: sentry`
//! and by the automatic rollback.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::config::Level;
use crate::ports::{Precondition, StateError, StateStore};
use crate::records::StateKey;

/// The newest alerts kept per project, and for how long.
pub const KEEP: usize = 500;
pub const TTL_SECS: i64 = 14 * 24 * 3600;
const TITLE_CHARS: usize = 120;

/// One alert, reduced to what a gate and a rollback weigh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertMark {
    pub issue: String,
    pub title: String,
    pub level: Level,
    /// Unix seconds.
    pub at: i64,
    /// The environment the event came from, when Sentry says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// A project's recent alerts, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertLog {
    pub marks: Vec<AlertMark>,
}

/// What the alerts since a release add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spike {
    pub events: u64,
    /// Issues Sentry had not reported (to shipline) before the release.
    pub new_issues: u64,
    /// Each issue's title and count, in the order they first came.
    pub issues: Vec<(String, u64)>,
}

impl Spike {
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// "3 events, 1 new issue: TypeError: x is undefined (2), KeyError: 'id' (1)".
    pub fn describe(&self) -> String {
        let plural = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
        let issues: Vec<String> = self
            .issues
            .iter()
            .take(5)
            .map(|(title, n)| format!("{title} ({n})"))
            .collect();
        let more = self.issues.len().saturating_sub(5);
        format!(
            "{}, {}: {}{}",
            plural(self.events, "event"),
            plural(self.new_issues, "new issue"),
            issues.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    }
}

impl AlertLog {
    pub fn push(&mut self, mut mark: AlertMark) {
        // Enough of a title to name the issue; the record stays far below DynamoDB's 400 KB.
        if mark.title.chars().count() > TITLE_CHARS {
            mark.title = crate::messages::truncate_chars(&mark.title, TITLE_CHARS);
        }
        self.marks.push(mark);
        let excess = self.marks.len().saturating_sub(KEEP);
        self.marks.drain(..excess);
    }

    /// The alerts at or above `min_level` on `environment` from `since` (Unix seconds) on.
    /// Alerts that name no environment (Sentry's `issue` resource names none) count when
    /// `unattributed` says so: a promotion gate counts them (it errs on the side of not
    /// promoting); an automatic rollback only where the project watches one environment.
    pub fn since(
        &self,
        since: i64,
        environment: &str,
        min_level: Level,
        unattributed: bool,
    ) -> Spike {
        let seen_before: HashSet<&str> = self
            .marks
            .iter()
            .filter(|m| m.at < since)
            .map(|m| m.issue.as_str())
            .collect();
        let mut spike = Spike::default();
        let mut order: Vec<&str> = Vec::new();
        for mark in self.marks.iter().filter(|m| {
            m.at >= since
                && m.level >= min_level
                && m.environment
                    .as_deref()
                    .map_or(unattributed, |e| e == environment)
        }) {
            spike.events += 1;
            match order.iter().position(|issue| *issue == mark.issue) {
                Some(i) => spike.issues[i].1 += 1,
                None => {
                    order.push(&mark.issue);
                    if !seen_before.contains(mark.issue.as_str()) {
                        spike.new_issues += 1;
                    }
                    spike.issues.push((mark.title.clone(), 1));
                }
            }
        }
        spike
    }
}

/// Adds an alert to its project's log (conditional writes: concurrent alerts all land), and
/// answers the log as written.
pub async fn record(
    state: &dyn StateStore,
    project: &str,
    mark: AlertMark,
    now: i64,
) -> Result<AlertLog, StateError> {
    let key = StateKey::Alerts(project);
    for _ in 0..8 {
        let (mut log, precondition) = match state.read::<AlertLog>(key, now).await? {
            Some(stored) => (stored.value, Precondition::Version(stored.version)),
            None => (AlertLog::default(), Precondition::Absent),
        };
        log.push(mark.clone());
        match state
            .write(key, &log, precondition, Some(now + TTL_SECS), now)
            .await
        {
            Ok(_) => return Ok(log),
            Err(StateError::ConditionFailed) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StateError::ConditionFailed)
}

/// A project's log, empty when nothing was recorded.
pub async fn read(state: &dyn StateStore, project: &str, now: i64) -> Result<AlertLog, StateError> {
    Ok(state
        .read_value::<AlertLog>(StateKey::Alerts(project), now)
        .await?
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(issue: &str, at: i64, level: Level, environment: Option<&str>) -> AlertMark {
        AlertMark {
            issue: issue.into(),
            title: format!("Error {issue}"),
            level,
            at,
            environment: environment.map(str::to_string),
        }
    }

    #[test]
    fn a_spike_counts_events_and_the_issues_new_since_the_release() {
        let mut log = AlertLog::default();
        log.push(mark("old", 50, Level::Error, None));
        log.push(mark("old", 150, Level::Error, Some("production")));
        log.push(mark("new", 160, Level::Fatal, Some("production")));
        log.push(mark("new", 170, Level::Error, None));
        log.push(mark("quiet", 180, Level::Warning, Some("production")));
        log.push(mark("staging", 190, Level::Error, Some("staging")));
        let spike = log.since(100, "production", Level::Error, true);
        assert_eq!((spike.events, spike.new_issues), (3, 1));
        assert_eq!(
            spike.describe(),
            "3 events, 1 new issue: Error old (1), Error new (2)"
        );
        // Without the alerts that name no environment.
        let attributed = log.since(100, "production", Level::Error, false);
        assert_eq!((attributed.events, attributed.new_issues), (2, 1));
        assert!(log.since(200, "production", Level::Error, true).is_empty());
    }

    #[test]
    fn the_log_keeps_the_newest() {
        let mut log = AlertLog::default();
        for i in 0..(KEEP as i64 + 3) {
            log.push(mark("i", i, Level::Error, None));
        }
        assert_eq!(log.marks.len(), KEEP);
        assert_eq!(log.marks[0].at, 3);
    }
}
