//! Reading a hook's attempts: newest first, page by page, back to `since`; one entry per
//! delivery (GUID), its latest attempt, kept when that attempt failed.

use std::collections::BTreeMap;

use shared::github::deliveries::{DeliveryAttempt, HookScope};
use shared::ports::GitHubError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Deliveries;

/// Pages read at most per hook and sweep: 5,000 attempts, far beyond a few minutes of pushes.
const MAX_PAGES: usize = 50;

/// The events that start builds; a failed delivery of any other is not worth redelivering.
const BUILD_EVENTS: [&str; 2] = ["push", "pull_request"];

/// The push and pull request deliveries since `since` (unix seconds) whose latest attempt
/// failed, oldest first.
pub async fn failed_deliveries(
    github: &dyn Deliveries,
    scope: &HookScope,
    since: i64,
) -> Result<Vec<DeliveryAttempt>, GitHubError> {
    let mut latest: BTreeMap<String, DeliveryAttempt> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = github.page(scope, cursor.as_deref()).await?;
        let mut reached_since = page.attempts.is_empty();
        for attempt in page.attempts {
            if delivered_at(&attempt) < since {
                reached_since = true;
                continue;
            }
            match latest.get(&attempt.guid) {
                Some(seen) if seen.id >= attempt.id => {}
                _ => {
                    latest.insert(attempt.guid.clone(), attempt);
                }
            }
        }
        match page.next {
            Some(next) if !reached_since => cursor = Some(next),
            _ => break,
        }
    }
    let mut failed: Vec<DeliveryAttempt> = latest
        .into_values()
        .filter(|a| !a.succeeded() && BUILD_EVENTS.contains(&a.event.as_str()))
        .collect();
    failed.sort_by_key(|a| a.id);
    Ok(failed)
}

/// When GitHub made the attempt (unix seconds); an unreadable time counts as now-ish, so the
/// attempt is never skipped as old.
pub(crate) fn delivered_at(attempt: &DeliveryAttempt) -> i64 {
    OffsetDateTime::parse(&attempt.delivered_at, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .unwrap_or(i64::MAX)
}
