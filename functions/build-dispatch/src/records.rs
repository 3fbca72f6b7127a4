//! build-dispatch's state records: how far each request got, the newest build of each line of
//! work, each run, and the index of running builds the sweep walks. A record that does not parse
//! is an error, never an empty default.

use serde::{Deserialize, Serialize};
use shared::ids::{BuildId, DeliveryId, Sha};
use shared::ports::{Precondition, StateError, StateStore};
use shared::records::{BuiltCommit, RecentBuilds, StateKey};

use crate::run::Run;

/// The state table. `shared::records`' typed reads are methods of the `'static` trait object,
/// which a bare `&dyn StateStore` parameter is not.
pub type Store = dyn StateStore;

/// Records of runs and lines of work outlive any build and any redelivery window.
const RECORD_TTL_SECS: i64 = 30 * 24 * 3600;
/// Attempts at the running-builds index before a busy index is left to the message's retry.
const INDEX_ATTEMPTS: usize = 8;

/// How far build-dispatch got with one `BuildRequest` (`StateKey::Request`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub build_id: Option<BuildId>,
    /// The pending status reached GitHub.
    pub pending_posted: bool,
    /// Not built, on purpose, with this reason.
    pub not_built: Option<String>,
    /// Nothing is left to do for this delivery.
    #[serde(default)]
    pub settled: bool,
}

/// The newest build of a line of work (`StateKey::Line`): the one a newer push supersedes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRecord {
    pub build_id: BuildId,
    pub sha: Sha,
}

/// The builds the sweep checks on (`StateKey::RunningBuilds`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct RunningBuilds {
    ids: Vec<BuildId>,
}

/// The request's record; a request not seen before has an empty one.
pub async fn load_request(
    state: &Store,
    delivery: &DeliveryId,
    now: i64,
) -> Result<RequestRecord, StateError> {
    Ok(state
        .read_value(StateKey::Request(delivery), now)
        .await?
        .unwrap_or_default())
}

pub async fn save_request(
    state: &Store,
    delivery: &DeliveryId,
    record: &RequestRecord,
    now: i64,
) -> Result<(), StateError> {
    save(state, StateKey::Request(delivery), record, now).await
}

pub async fn load_line(
    state: &Store,
    line: &str,
    now: i64,
) -> Result<Option<LineRecord>, StateError> {
    state.read_value(StateKey::Line(line), now).await
}

pub async fn save_line(
    state: &Store,
    line: &str,
    record: &LineRecord,
    now: i64,
) -> Result<(), StateError> {
    save(state, StateKey::Line(line), record, now).await
}

pub async fn load_run(
    state: &Store,
    build_id: &BuildId,
    now: i64,
) -> Result<Option<Run>, StateError> {
    state.read_value(StateKey::Run(build_id), now).await
}

pub async fn save_run(state: &Store, run: &Run, now: i64) -> Result<(), StateError> {
    save(state, StateKey::Run(&run.build_id), run, now).await
}

async fn save<T: Serialize>(
    state: &Store,
    key: StateKey<'_>,
    record: &T,
    now: i64,
) -> Result<(), StateError> {
    state
        .write(
            key,
            record,
            Precondition::None,
            Some(now + RECORD_TTL_SECS),
            now,
        )
        .await
        .map(|_| ())
}

/// The builds recorded as running, for the sweep.
pub async fn running_builds(state: &Store, now: i64) -> Result<Vec<BuildId>, StateError> {
    Ok(state
        .read_value::<RunningBuilds>(StateKey::RunningBuilds, now)
        .await?
        .unwrap_or_default()
        .ids)
}

pub async fn add_running(state: &Store, build_id: &BuildId, now: i64) -> Result<(), StateError> {
    update_running(state, now, |ids| {
        if !ids.contains(build_id) {
            ids.push(build_id.clone());
        }
    })
    .await
}

pub async fn remove_running(state: &Store, build_id: &BuildId, now: i64) -> Result<(), StateError> {
    update_running(state, now, |ids| ids.retain(|i| i != build_id)).await
}

/// Optimistic concurrency: read, change, write if nobody wrote in between. A corrupt index
/// stops here, so that it is looked at rather than overwritten with one id.
async fn update_running(
    state: &Store,
    now: i64,
    change: impl Fn(&mut Vec<BuildId>),
) -> Result<(), StateError> {
    for _ in 0..INDEX_ATTEMPTS {
        let stored = state
            .read::<RunningBuilds>(StateKey::RunningBuilds, now)
            .await?;
        let precondition = stored
            .as_ref()
            .map_or(Precondition::Absent, |s| Precondition::Version(s.version));
        let mut index = stored.map(|s| s.value).unwrap_or_default();
        change(&mut index.ids);
        match state
            .write(StateKey::RunningBuilds, &index, precondition, None, now)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StateError::ConditionFailed) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StateError::ConditionFailed)
}

/// Adds a finished build to its repo's recent builds (`StateKey::Builds`): what `/deploy` in
/// the chat releases from, and what the status page lists.
pub async fn add_built(
    state: &Store,
    run: &Run,
    build: &crate::codebuild::BuildInfo,
    verdict: &crate::plan::Verdict,
    status: crate::run::RunStatus,
    artifacts: std::collections::BTreeMap<String, String>,
    now: i64,
) -> Result<(), StateError> {
    let built = BuiltCommit {
        sha: run.sha.clone(),
        branch: run.branch.clone(),
        pull_request: run.pr.as_ref().map(|pr| pr.number),
        build_id: run.build_id.clone(),
        passed: verdict.succeeded,
        status: status.to_string(),
        description: verdict.description.clone(),
        log_url: run.log_url.clone().or_else(|| build.log_url.clone()),
        started_at: run.started_at,
        finished_at: now,
        artifacts,
        commit_message: run.commit_message.clone(),
        author: run.author.clone(),
        installation_id: run.installation_id,
        delivery_id: run.delivery_id.clone(),
    };
    state
        .modify(
            StateKey::Builds(&run.repo),
            Some(now + RECORD_TTL_SECS),
            now,
            |recent: &mut RecentBuilds| recent.add(built.clone()),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::adapters::memory::MemoryStateStore;

    #[tokio::test]
    async fn the_running_index_keeps_each_build_once_in_the_shape_stored_today() {
        let store = MemoryStateStore::new();
        let state: &Store = &store;
        let (one, two) = (BuildId::new("p:1"), BuildId::new("p:2"));
        add_running(state, &one, 0).await.unwrap();
        add_running(state, &two, 0).await.unwrap();
        add_running(state, &one, 0).await.unwrap();
        remove_running(state, &two, 0).await.unwrap();
        assert_eq!(running_builds(state, 0).await.unwrap(), vec![one]);
        let raw = state.get("builds:running", 0).await.unwrap().unwrap();
        assert_eq!(raw.value, serde_json::json!({"ids": ["p:1"]}));
    }

    #[tokio::test]
    async fn a_corrupt_running_index_is_an_error_and_is_not_overwritten() {
        let store = MemoryStateStore::new();
        let state: &Store = &store;
        let garbage = serde_json::json!({"ids": "not a list"});
        state
            .put(
                "builds:running",
                garbage.clone(),
                Precondition::None,
                None,
                0,
            )
            .await
            .unwrap();
        let read = running_builds(state, 0).await;
        assert!(
            matches!(read, Err(StateError::Corrupt(ref m)) if m.starts_with("builds:running")),
            "{read:?}"
        );
        let added = add_running(state, &BuildId::new("p:1"), 0).await;
        assert!(matches!(added, Err(StateError::Corrupt(_))), "{added:?}");
        let raw = state.get("builds:running", 0).await.unwrap().unwrap();
        assert_eq!(raw.value, garbage, "the corrupt index is left for a person");
    }
}
