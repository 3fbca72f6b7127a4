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
    /// `builds:<owner/name, lower case>`: the repo's recent finished builds, newest last
    /// (`RecentBuilds`).
    Builds(&'a str),
    /// `action:<id>`: what a chat button does, and who pressed it first (`ChatAction`).
    Action(&'a str),
    /// `telegram-update:<bot>:<update_id>`: chat-ops answered this Telegram update (update ids
    /// count per bot).
    TelegramUpdate(&'a str),
    /// `alarm:last`: the newest change of one of the stack's CloudWatch alarms (`LastAlarm`),
    /// for the status page.
    LastAlarm,
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
            // GitHub treats owner and name case-insensitively; so does the key.
            StateKey::Builds(repo) => write!(f, "builds:{}", repo.to_ascii_lowercase()),
            StateKey::Action(id) => write!(f, "action:{id}"),
            StateKey::TelegramUpdate(id) => write!(f, "telegram-update:{id}"),
            StateKey::LastAlarm => f.write_str("alarm:last"),
        }
    }
}

/// How often `modify` reads again after another writer got there first.
const MODIFY_ATTEMPTS: usize = 8;

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

    /// Reads several records as `T`, in the order of `keys`, in as few round trips as the
    /// store allows; a record that does not parse is `StateError::Corrupt`.
    pub async fn read_many<T: DeserializeOwned>(
        &self,
        keys: &[StateKey<'_>],
        now: i64,
    ) -> Result<Vec<Option<T>>, StateError> {
        let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
        let records = self.get_many(&keys, now).await?;
        keys.iter()
            .zip(records)
            .map(|(key, record)| {
                record
                    .map(|r| {
                        serde_json::from_value(r.value)
                            .map_err(|e| StateError::Corrupt(format!("{key}: {e}")))
                    })
                    .transpose()
            })
            .collect()
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

    /// Reads a record (its default when absent), changes it and writes it back only if nobody
    /// wrote it in between, reading again when someone did. Answers what `change` answered.
    /// A record that does not parse stops here, to be looked at rather than overwritten.
    pub async fn modify<T, R>(
        &self,
        key: StateKey<'_>,
        expires_at: Option<i64>,
        now: i64,
        mut change: impl FnMut(&mut T) -> R,
    ) -> Result<R, StateError>
    where
        T: Default + Serialize + DeserializeOwned,
    {
        for _ in 0..MODIFY_ATTEMPTS {
            let (mut value, precondition) = match self.read::<T>(key, now).await? {
                Some(stored) => (stored.value, Precondition::Version(stored.version)),
                None => (T::default(), Precondition::Absent),
            };
            let answer = change(&mut value);
            match self.write(key, &value, precondition, expires_at, now).await {
                Ok(_) => return Ok(answer),
                Err(StateError::ConditionFailed) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StateError::ConditionFailed)
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
    /// Who it is live for: the commit's author, or the person who asked (`/deploy`,
    /// `/rollback`, a button).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
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

/// One finished build of a repo, as `/deploy` and the status page need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BuiltCommit {
    pub sha: Sha,
    /// The branch of a push build; `None` for a pull request's.
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub pull_request: Option<u64>,
    pub build_id: BuildId,
    pub passed: bool,
    /// CodeBuild's final status (`SUCCEEDED`, `FAILED`, ...) and what the commit status said.
    pub status: String,
    pub description: String,
    #[serde(default)]
    pub log_url: Option<String>,
    /// Unix seconds.
    pub started_at: i64,
    pub finished_at: i64,
    /// The image ids a green push build exported, to release it later (`/deploy`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, String>,
    #[serde(default)]
    pub commit_message: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub installation_id: Option<u64>,
    pub delivery_id: crate::ids::DeliveryId,
}

/// A repo's recent finished builds (`StateKey::Builds`), newest last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecentBuilds {
    pub builds: Vec<BuiltCommit>,
}

impl RecentBuilds {
    /// How many builds a repo keeps: a month of a busy repo's pushes is not needed to
    /// deploy one, and the record stays far below DynamoDB's 400 KB item.
    pub const KEPT: usize = 50;

    /// Adds (or replaces) a build, keeping the newest [`Self::KEPT`].
    pub fn add(&mut self, build: BuiltCommit) {
        self.builds.retain(|b| b.build_id != build.build_id);
        self.builds.push(build);
        let excess = self.builds.len().saturating_sub(Self::KEPT);
        self.builds.drain(..excess);
    }

    /// The newest build of `sha`, or of a commit whose id starts with it (at least seven
    /// characters, as git abbreviates).
    pub fn of_commit(&self, sha: &str) -> Option<&BuiltCommit> {
        if sha.len() < 7 {
            return None;
        }
        let sha = sha.to_ascii_lowercase();
        self.builds.iter().rev().find(|b| b.sha.starts_with(&sha))
    }

    /// The newest build of a push to `branch`.
    pub fn of_branch(&self, branch: &str) -> Option<&BuiltCommit> {
        self.builds
            .iter()
            .rev()
            .find(|b| b.branch.as_deref() == Some(branch))
    }
}

/// The newest change of one of the stack's alarms (`StateKey::LastAlarm`), as the notifier
/// told it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LastAlarm {
    /// What it says to a person ("3 messages in the dead-letter queue …", "Resolved: …").
    pub title: String,
    /// `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// Unix seconds: when the alarm changed (CloudWatch's `StateChangeTime`).
    pub at: i64,
}

impl LastAlarm {
    /// Kept for 90 days: an alarm older than that is not "the last alarm" anyone asks about.
    pub const TTL_SECS: i64 = 90 * 24 * 3600;
}

/// What a chat button does (`StateKey::Action`), written when the message that carries it is
/// told, and taken once: a second press finds it taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatAction {
    pub kind: ActionKind,
    pub target: crate::ids::TargetKey,
    /// The commit it is about: the live one (rollback), the one to promote.
    pub sha: Sha,
    /// Rollback: the release it rolls back from; pressed once another is live, it does nothing.
    #[serde(default)]
    pub release: Option<String>,
    /// The message the button sits on, to edit it when pressed.
    pub thread_key: String,
    pub channels: Vec<String>,
    pub facts: crate::messages::Facts,
    pub shown_as: crate::messages::NotificationKind,
    /// Who pressed it first (`requested_by`), and when (RFC 3339).
    #[serde(default)]
    pub taken: Option<Taken>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Rollback,
    Promote,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Taken {
    pub by: String,
    pub at: String,
    /// The Telegram update that took it (`<bot>:<update_id>`): its retry goes on, anyone
    /// else's press does not.
    pub update: String,
}

impl ChatAction {
    /// A button's action lives as long as its message is edited (the notifier's thread).
    pub const TTL_SECS: i64 = 30 * 24 * 3600;

    /// The action's id: the same action (a retried deploy message) gets the same id.
    pub fn id_of(kind: ActionKind, target: &str, sha: &str, release: Option<&str>) -> String {
        use sha2::{Digest, Sha256};
        let text = format!("{kind:?}|{target}|{sha}|{}", release.unwrap_or(""));
        hex::encode(&Sha256::digest(text.as_bytes())[..9])
    }
}

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
        assert_eq!(
            StateKey::Builds("Pax-App/User").to_string(),
            "builds:pax-app/user"
        );
    }

    fn built(n: u32, branch: Option<&str>, passed: bool) -> BuiltCommit {
        BuiltCommit {
            sha: format!("{n:x}{}", "0".repeat(39)).into(),
            branch: branch.map(Into::into),
            pull_request: branch.is_none().then_some(7),
            build_id: format!("p:{n}").into(),
            passed,
            status: "SUCCEEDED".into(),
            description: String::new(),
            log_url: None,
            started_at: 0,
            finished_at: 0,
            artifacts: BTreeMap::new(),
            commit_message: None,
            author: None,
            installation_id: None,
            delivery_id: "d".into(),
        }
    }

    #[test]
    fn recent_builds_keep_the_newest_and_find_a_commit_by_prefix_or_a_branch() {
        let mut recent = RecentBuilds::default();
        for n in 1..=(RecentBuilds::KEPT as u32 + 5) {
            recent.add(built(n, Some("master"), n % 2 == 0));
        }
        recent.add(built(9, None, true));
        assert_eq!(recent.builds.len(), RecentBuilds::KEPT);
        assert_eq!(recent.builds.first().unwrap().build_id, "p:6");
        // A build added again replaces its older entry.
        assert_eq!(
            recent.builds.iter().filter(|b| b.build_id == "p:9").count(),
            1
        );
        assert_eq!(recent.of_branch("master").unwrap().build_id, "p:55");
        assert_eq!(recent.of_commit("a000000").unwrap().build_id, "p:10");
        assert_eq!(recent.of_commit("A000000").unwrap().build_id, "p:10");
        assert!(
            recent.of_commit("a0000").is_none(),
            "too short to mean one commit"
        );
        assert!(recent.of_branch("devel").is_none());
    }

    #[test]
    fn an_action_id_is_the_same_for_the_same_action_and_fits_a_button() {
        let id = ChatAction::id_of(ActionKind::Rollback, "heroku:app", "abc", Some("rel-1"));
        assert_eq!(
            id,
            ChatAction::id_of(ActionKind::Rollback, "heroku:app", "abc", Some("rel-1"))
        );
        assert_ne!(
            id,
            ChatAction::id_of(ActionKind::Rollback, "heroku:app", "abc", Some("rel-2"))
        );
        assert_ne!(
            id,
            ChatAction::id_of(ActionKind::Promote, "heroku:app", "abc", Some("rel-1"))
        );
        let button = crate::messages::ChatButton {
            label: "Roll back".into(),
            id,
        };
        assert!((1..=64).contains(&button.data().len()), "{}", button.data());
    }

    #[tokio::test]
    async fn modify_reads_changes_and_writes_back_from_the_default() {
        let store = MemoryStateStore::new();
        let store: &dyn StateStore = &store;
        for n in 1..=3 {
            let len = store
                .modify(
                    StateKey::Builds("o/r"),
                    None,
                    0,
                    |recent: &mut RecentBuilds| {
                        recent.add(built(n, Some("master"), true));
                        recent.builds.len()
                    },
                )
                .await
                .unwrap();
            assert_eq!(len, n as usize);
        }
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
