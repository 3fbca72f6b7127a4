//! The state table's records: one `StateKey` names every kind of record, and typed reads fail
//! loudly on a record that does not parse (a corrupt index read as empty would be overwritten).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ids::{BuildId, Sha};
use crate::ports::{Precondition, StateError, StateStore};

/// Every key shipline writes, in one place, so that two functions never spell one differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKey<'a> {
    /// `delivery:<X-GitHub-Delivery>`: intake accepted this delivery.
    Delivery(&'a str),
    /// `request:<delivery id>`: how far build-dispatch got with a `BuildRequest`.
    Request(&'a str),
    /// `run:<build id>`: one CodeBuild build and what was reported about it.
    Run(&'a str),
    /// `line:<repo#branch or repo#pr-N>`: the newest build of a line of work.
    Line(&'a str),
    /// `builds:running`: the index the sweep walks.
    RunningBuilds,
    /// `live:<target>`: what is live on a deploy target.
    Live(&'a str),
    /// `deploying:<target>`: the release under way on a target.
    Deploying(&'a str),
    /// `chat:<channel>:<thread key>`: the id of a thread's living message in a channel.
    Chat { channel: &'a str, thread: &'a str },
    /// `throttle:<project>:<issue>`: the window in which a Sentry issue was last forwarded.
    Throttle { project: &'a str, issue: &'a str },
    /// `sentry-request:<Request-ID>`: alert-forwarder answered this Sentry delivery.
    SentryRequest(&'a str),
    /// `redelivery:<X-GitHub-Delivery>`: what the recovery sweep did about a failed delivery.
    Redelivery(&'a str),
    /// `recovery:<hook>`: when the recovery sweep last read a hook's deliveries.
    RecoveryRun(&'a str),
    /// `failures:<message id>:<body digest>`: real failures of a queue message so far.
    Failures(&'a str),
    /// `notice:<topic>`: a one-time notice (a missing permission) was given.
    Notice(&'a str),
    /// `warm-up`: read (never written) during init to open the table's connection.
    WarmUp,
    /// `promotions:pending`: the promotions waiting for their soak time or gate, by target.
    Promotions,
    /// `alerts:<sentry project>`: the recent alerts of a project, for gates and rollbacks.
    Alerts(&'a str),
    /// `auto-rollback:<target>:<release id>`: this release was rolled back automatically.
    AutoRollback { target: &'a str, release: &'a str },
}

impl fmt::Display for StateKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateKey::Delivery(id) => write!(f, "delivery:{id}"),
            StateKey::Request(id) => write!(f, "request:{id}"),
            StateKey::Run(id) => write!(f, "run:{id}"),
            StateKey::SentryRequest(id) => write!(f, "sentry-request:{id}"),
            StateKey::Line(line) => write!(f, "line:{line}"),
            StateKey::RunningBuilds => f.write_str("builds:running"),
            StateKey::Live(target) => write!(f, "live:{target}"),
            StateKey::Deploying(target) => write!(f, "deploying:{target}"),
            StateKey::Chat { channel, thread } => write!(f, "chat:{channel}:{thread}"),
            StateKey::Throttle { project, issue } => write!(f, "throttle:{project}:{issue}"),
            StateKey::Redelivery(guid) => write!(f, "redelivery:{guid}"),
            StateKey::RecoveryRun(hook) => write!(f, "recovery:{hook}"),
            StateKey::Failures(message) => write!(f, "failures:{message}"),
            StateKey::Notice(topic) => write!(f, "notice:{topic}"),
            StateKey::WarmUp => f.write_str("warm-up"),
            StateKey::Promotions => f.write_str("promotions:pending"),
            StateKey::Alerts(project) => write!(f, "alerts:{project}"),
            StateKey::AutoRollback { target, release } => {
                write!(f, "auto-rollback:{target}:{release}")
            }
        }
    }
}

/// A typed record with the version it was read at, for a conditional write back.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    pub value: T,
    pub version: u64,
}

impl dyn StateStore + '_ {
    /// Reads a record as `T`; a record that does not parse is `StateError::Corrupt`.
    pub async fn read<T: DeserializeOwned>(
        &self,
        key: StateKey<'_>,
        now: i64,
    ) -> Result<Option<Stored<T>>, StateError> {
        let key = key.to_string();
        let Some(record) = self.get(&key, now).await? else {
            return Ok(None);
        };
        let value = serde_json::from_value(record.value)
            .map_err(|e| StateError::Corrupt(format!("{key}: {e}")))?;
        Ok(Some(Stored {
            value,
            version: record.version,
        }))
    }

    /// Reads only the value of a record.
    pub async fn read_value<T: DeserializeOwned>(
        &self,
        key: StateKey<'_>,
        now: i64,
    ) -> Result<Option<T>, StateError> {
        Ok(self.read(key, now).await?.map(|s| s.value))
    }

    /// Writes a record as JSON if `precondition` holds; returns the new version.
    pub async fn write<T: Serialize + ?Sized>(
        &self,
        key: StateKey<'_>,
        value: &T,
        precondition: Precondition,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<u64, StateError> {
        let value = serde_json::to_value(value).expect("records serialise to JSON");
        self.put(&key.to_string(), value, precondition, expires_at, now)
            .await
    }

    pub async fn remove(&self, key: StateKey<'_>) -> Result<(), StateError> {
        self.delete(&key.to_string()).await
    }
}

/// What is live on a target (`StateKey::Live`): read by the order guard, rollbacks and the
/// Sentry forwarder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LiveRecord {
    pub repo: String,
    pub branch: String,
    pub sha: Sha,
    pub release_id: String,
    #[serde(default)]
    pub version: Option<String>,
    /// RFC 3339.
    pub at: String,
    pub build_id: BuildId,
    /// Earlier releases, newest last (at most ten), for rollbacks.
    #[serde(default)]
    pub history: Vec<PastRelease>,
    /// The build's exported variables (the image ids), for a promotion of this release.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, String>,
    /// The GitHub Deployment of this release, marked `failure` if it is rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<u64>,
    /// Put back by a rollback: never rolled back automatically itself, so that the alerts
    /// that caused the rollback cannot cause another.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
}

/// A promotion waiting for its soak time and gate (`StateKey::Promotions`, by target key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PendingPromotion {
    /// What to release: the source's deploy, retargeted.
    pub request: crate::messages::DeployRequest,
    /// Unix seconds: when the release went live on the source, and when the soak ends.
    pub live_since: i64,
    pub due: i64,
}

/// Every pending promotion, by destination target.
pub type PendingPromotions = BTreeMap<String, PendingPromotion>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PastRelease {
    pub sha: Sha,
    pub release_id: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryStateStore;

    #[test]
    fn keys_keep_the_spelling_records_were_written_with() {
        assert_eq!(StateKey::Live("heroku:app").to_string(), "live:heroku:app");
        assert_eq!(
            StateKey::Chat {
                channel: "team",
                thread: "build:o/r@abc"
            }
            .to_string(),
            "chat:team:build:o/r@abc"
        );
        assert_eq!(StateKey::RunningBuilds.to_string(), "builds:running");
    }

    #[tokio::test]
    async fn a_record_that_does_not_parse_is_an_error_not_an_empty_value() {
        let store = MemoryStateStore::new();
        let store: &dyn StateStore = &store;
        store
            .put(
                "live:t",
                serde_json::json!({"nonsense": true}),
                Precondition::None,
                None,
                0,
            )
            .await
            .unwrap();
        let read = store.read::<LiveRecord>(StateKey::Live("t"), 0).await;
        assert!(
            matches!(read, Err(StateError::Corrupt(ref m)) if m.starts_with("live:t")),
            "{read:?}"
        );
    }
}
