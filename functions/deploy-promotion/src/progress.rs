//! A target's two records: the deploy under way (`deploying:<target>`) and what is live
//! (`live:<target>`), read as types that fail loudly when a record does not parse.

use serde::{Deserialize, Serialize};
use shared::ids::{BuildId, Sha, TargetKey};
use shared::ports::{Clock, Precondition, StateError, StateStore};
use shared::records::{LiveRecord, PastRelease, StateKey};

use crate::Deps;
use crate::deployer::Release;

/// Rollbacks can go this many releases back.
const HISTORY: usize = 10;

/// A deploy under way, so that a retry resumes it instead of releasing twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub sha: Sha,
    pub deployment_id: Option<u64>,
    pub release_id: Option<String>,
    /// GitHub heard `in_progress` and the chat heard the deploy start.
    #[serde(default)]
    pub announced: bool,
    /// The target may have made the release without confirming it: look it up, do not release
    /// again.
    #[serde(default)]
    pub requested: bool,
    /// The target's newest release before the unconfirmed request (`DeployError::Unconfirmed`).
    #[serde(default)]
    pub since: Option<String>,
}

impl Progress {
    pub fn new(sha: Sha, deployment_id: Option<u64>) -> Self {
        Self {
            sha,
            deployment_id,
            release_id: None,
            announced: false,
            requested: false,
            since: None,
        }
    }

    /// Takes the id of `release` if it names one the progress does not hold yet; true when it
    /// changed and must be recorded.
    pub fn note(&mut self, release: &Release) -> bool {
        let (Release::Pending { id, .. } | Release::Live { id, .. }) = release else {
            return false;
        };
        if self.release_id.as_ref() == Some(id) {
            return false;
        }
        self.release_id = Some(id.clone());
        true
    }
}

/// The records of one target.
pub(crate) struct Records<'a> {
    deps: &'a Deps,
    // The typed reads and writes are methods of `dyn StateStore + 'static`.
    state: &'a (dyn StateStore + 'static),
    clock: &'a dyn Clock,
    target: &'a TargetKey,
}

impl<'a> Records<'a> {
    pub fn new(deps: &'a Deps, target: &'a TargetKey) -> Self {
        Self {
            deps,
            state: deps.state.as_ref(),
            clock: deps.clock.as_ref(),
            target,
        }
    }

    pub fn deps(&self) -> &'a Deps {
        self.deps
    }

    pub async fn live(&self) -> Result<Option<LiveRecord>, StateError> {
        self.state
            .read_value(StateKey::Live(self.target), self.clock.unix())
            .await
    }

    pub async fn set_live(&self, record: &LiveRecord) -> Result<(), StateError> {
        self.put(StateKey::Live(self.target), record).await
    }

    pub async fn progress(&self) -> Result<Option<Progress>, StateError> {
        self.state
            .read_value(StateKey::Deploying(self.target), self.clock.unix())
            .await
    }

    pub async fn save(&self, progress: &Progress) -> Result<(), StateError> {
        self.put(StateKey::Deploying(self.target), progress).await
    }

    /// Forgets the deploy under way once GitHub has its final status. Best effort: a leftover
    /// record only names a sha that is live or failed, and the next deploy of another sha
    /// ignores it.
    pub async fn finish(&self) {
        let _ = self.state.remove(StateKey::Deploying(self.target)).await;
    }

    async fn put<T: Serialize>(&self, key: StateKey<'_>, value: &T) -> Result<(), StateError> {
        self.state
            .write(key, value, Precondition::None, None, self.clock.unix())
            .await
            .map(|_| ())
    }
}

/// What is live after a deploy: the release, with the one it replaced at the end of the history.
pub(crate) fn after_deploy(
    before: Option<&LiveRecord>,
    request: &shared::messages::DeployRequest,
    release: Released,
    at: String,
) -> LiveRecord {
    LiveRecord {
        repo: request.repo.clone(),
        branch: request.branch.clone(),
        sha: request.sha.clone(),
        release_id: release.id,
        version: release.version,
        at,
        build_id: request.build_id.clone(),
        history: before.map(history_after).unwrap_or_default(),
        artifacts: request.artifacts.clone(),
        deployment_id: None,
        restored: false,
        by: request
            .requested_by
            .clone()
            .or_else(|| request.author.clone()),
    }
}

/// What is live after a rollback to `wanted`: that release, out of the history, and the one it
/// replaced at the end of it, so that a rollback can itself be rolled back.
pub(crate) fn after_rollback(
    before: LiveRecord,
    wanted: &PastRelease,
    sha: Sha,
    release: Released,
    at: String,
) -> LiveRecord {
    let mut history = before.history.clone();
    history.retain(|p| p.release_id != wanted.release_id);
    history.push(past(&before));
    LiveRecord {
        sha,
        release_id: release.id,
        version: release.version,
        at,
        build_id: BuildId::default(),
        history,
        // The restored release's images are not known here: it is not promoted from.
        artifacts: Default::default(),
        deployment_id: None,
        restored: true,
        ..before
    }
}

/// A release that went live, as the record keeps it.
pub(crate) struct Released {
    pub id: String,
    pub version: Option<String>,
}

fn past(live: &LiveRecord) -> PastRelease {
    PastRelease {
        sha: live.sha.clone(),
        release_id: live.release_id.clone(),
        version: live.version.clone(),
    }
}

fn history_after(live: &LiveRecord) -> Vec<PastRelease> {
    let mut history = live.history.clone();
    history.push(past(live));
    let excess = history.len().saturating_sub(HISTORY);
    history.drain(..excess);
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(n: usize) -> LiveRecord {
        LiveRecord {
            repo: "o/r".into(),
            branch: "master".into(),
            sha: Sha::new(format!("{n:040}")),
            release_id: format!("rel-{n}"),
            version: Some(format!("v{n}")),
            at: "2026-11-26T09:00:00Z".into(),
            build_id: "p:0".into(),
            artifacts: Default::default(),
            deployment_id: None,
            restored: false,
            by: None,
            history: (0..n)
                .map(|i| PastRelease {
                    sha: Sha::new(format!("{i:040}")),
                    release_id: format!("rel-{i}"),
                    version: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_history_keeps_the_ten_newest_releases_with_the_replaced_one_last() {
        let history = history_after(&live(12));
        assert_eq!(history.len(), 10);
        assert_eq!(history.first().unwrap().release_id, "rel-3");
        assert_eq!(history.last().unwrap().release_id, "rel-12");
    }

    #[test]
    fn a_rollback_takes_its_release_out_of_the_history_and_keeps_the_one_it_replaced() {
        let before = live(3);
        let wanted = before.history[1].clone();
        let after = after_rollback(
            before,
            &wanted,
            wanted.sha.clone(),
            Released {
                id: "rel-4".into(),
                version: Some("v4".into()),
            },
            "2026-11-26T10:00:00Z".into(),
        );
        let ids: Vec<_> = after
            .history
            .iter()
            .map(|p| p.release_id.as_str())
            .collect();
        assert_eq!(ids, vec!["rel-0", "rel-2", "rel-3"]);
        assert_eq!(
            (after.sha, after.release_id.as_str()),
            (wanted.sha, "rel-4")
        );
        assert_eq!(after.build_id, "");
    }

    #[test]
    fn progress_records_a_release_id_once() {
        let mut progress = Progress::new(Sha::new("abc"), Some(1));
        let pending = Release::Pending {
            id: "rel-1".into(),
            version: None,
        };
        assert!(progress.note(&pending));
        assert!(!progress.note(&pending), "already recorded");
        assert!(!progress.note(&Release::Failed {
            id: None,
            reason: "x".into()
        }));
        assert_eq!(progress.release_id.as_deref(), Some("rel-1"));
    }
}
