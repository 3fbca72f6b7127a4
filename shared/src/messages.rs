//! Queue contracts: small, versioned JSON messages between the functions.
//!
//! Every message carries `"v": 1`. Unknown fields are ignored, so a newer producer can add
//! fields without breaking an older consumer; an unknown `v` is refused with a clear error so
//! that the message lands in the dead-letter queue instead of being half understood.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::ids::{BuildId, DeliveryId, Sha, TargetKey};

pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("message is not valid JSON: {0}")]
    Malformed(String),
    #[error("message has no `v` field")]
    MissingVersion,
    #[error("message version {found} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion { found: u64 },
    #[error("message does not match the version {VERSION} contract: {0}")]
    Invalid(String),
}

/// Decodes a queue message body, checking the version before the shape.
pub fn decode<T: DeserializeOwned>(body: &str) -> Result<T, MessageError> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        None => return Err(MessageError::MissingVersion),
        Some(v) if v != u64::from(VERSION) => {
            return Err(MessageError::UnsupportedVersion { found: v });
        }
        Some(_) => {}
    }
    serde_json::from_value(value).map_err(|e| MessageError::Invalid(e.to_string()))
}

/// Encodes a message; the types here always serialise.
pub fn encode<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("queue messages serialise to JSON")
}

fn version() -> u32 {
    VERSION
}

/// A request to build one commit, made from one GitHub delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRequest {
    #[serde(default = "version")]
    pub v: u32,
    /// `X-GitHub-Delivery`: the correlation id from webhook to chat message.
    pub delivery_id: DeliveryId,
    /// `owner/name` as GitHub spells it.
    pub repo: String,
    /// The commit to build.
    pub sha: Sha,
    pub trigger: Trigger,
    /// RFC 3339, when intake accepted the delivery.
    pub received_at: String,
    /// The GitHub App installation that sent it, for App authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    Push(PushTrigger),
    PullRequest(PullRequestTrigger),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTrigger {
    pub branch: String,
    pub before: String,
    pub after: String,
    pub forced: bool,
    pub pusher: String,
    /// The head commit's message, cut to [`MAX_COMMIT_MESSAGE`] characters.
    pub head_commit_message: String,
    #[serde(default)]
    pub head_commit_url: Option<String>,
    #[serde(default)]
    pub head_commit_author: Option<String>,
    pub compare_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestTrigger {
    pub number: u64,
    pub action: String,
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
    /// The head branch lives in another repository (or its repository is gone).
    pub fork: bool,
    pub title: String,
    pub author: String,
    pub url: String,
}

/// A request to release one green build to one deploy target. Sent by build-dispatch to
/// `deploys.fifo` with the target as message group (deploys of one target never overlap) and
/// the build id as deduplication id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    #[serde(default = "version")]
    pub v: u32,
    pub repo: String,
    pub branch: String,
    pub sha: Sha,
    pub build_id: BuildId,
    #[serde(default)]
    pub log_url: Option<String>,
    /// The target's key, as `DeployRule::target_key` names it (`heroku:pax-user`).
    pub target: TargetKey,
    pub environment: String,
    /// The build's exported variables: `SHIPLINE_IMAGE_<PROCESS>` holds the image id to
    /// release for that process type; the others travel along unchanged.
    #[serde(default)]
    pub artifacts: std::collections::BTreeMap<String, String>,
    pub delivery_id: DeliveryId,
    #[serde(default)]
    pub commit_message: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub installation_id: Option<u64>,
    pub requested_at: String,
    /// Set on a promotion: the release already ran on this environment (and target). A
    /// promotion is released even when the branch has moved on since; it is never released
    /// behind what is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionOf>,
    /// Set when a person asked for this release (`/deploy` in the chat): said in the GitHub
    /// Deployment and the story. Like a promotion, it is released even when the branch has
    /// moved on since, and never behind what is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Where a promoted release comes from, and who let it through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionOf {
    pub environment: String,
    pub target: TargetKey,
    /// The source's release (`v12`), for the story.
    #[serde(default)]
    pub release: Option<String>,
    /// The person who approved it (`shipline promote`), or what passed (`gate: sentry`).
    pub passed: String,
}

/// A person's go for a target's pending promotion (`shipline promote TARGET`); without one
/// pending, what is live on the source environment is promoted. On `deploys.fifo` in the
/// target's group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRequest {
    #[serde(default = "version")]
    pub v: u32,
    pub target: TargetKey,
    /// Only this commit (the pending or live one must be it).
    #[serde(default)]
    pub sha: Option<Sha>,
    pub requested_by: String,
    pub requested_at: String,
}

/// A request to put an earlier release of a target live again. It travels on `deploys.fifo`
/// in the target's message group, so it is serialised with that target's deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    #[serde(default = "version")]
    pub v: u32,
    pub target: TargetKey,
    /// The release to put back (a Heroku release id or version like `v41`); the one before
    /// the live release when not given.
    #[serde(default)]
    pub release: Option<String>,
    pub requested_by: String,
    pub requested_at: String,
    /// Roll back only while this release is live (an automatic rollback names the release
    /// that broke; a later release makes it moot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_release: Option<String>,
    /// Why, for the chat and GitHub (the issues and counts of an automatic rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `deploys.fifo` carries, told apart by `kind`. A message without `kind` is a deploy
/// (the first producers wrote none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeployQueueMessage {
    Deploy(Box<DeployRequest>),
    Rollback(RollbackRequest),
    Promote(PromoteRequest),
}

impl DeployQueueMessage {
    /// Decodes a `deploys.fifo` body: the version first, then the kind, then the shape.
    pub fn decode(body: &str) -> Result<Self, MessageError> {
        let mut value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if let Some(object) = value.as_object_mut() {
            object.entry("kind").or_insert_with(|| "deploy".into());
        }
        decode(&value.to_string())
    }

    /// The target whose FIFO group it travels in.
    pub fn target(&self) -> &TargetKey {
        match self {
            DeployQueueMessage::Deploy(d) => &d.target,
            DeployQueueMessage::Rollback(r) => &r.target,
            DeployQueueMessage::Promote(p) => &p.target,
        }
    }
}

/// Something to tell the team chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    #[serde(default = "version")]
    pub v: u32,
    pub kind: NotificationKind,
    /// Notifications with one thread key edit one chat message (`build:<repo>@<sha>`).
    pub thread_key: String,
    /// Channel names from the config.
    pub channels: Vec<String>,
    pub facts: Facts,
    /// RFC 3339, when it happened.
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    BuildStarted,
    BuildSucceeded,
    BuildFailed,
    BuildSuperseded,
    /// Not built, on purpose (a fork pull request, a refused project), with the reason.
    BuildSkipped,
    DeployStarted,
    DeploySucceeded,
    DeployFailed,
    DeploySkipped,
    /// A pending promotion that will not happen (its gate failed, or a newer release
    /// superseded it), with the reason.
    PromotionBlocked,
    /// A person pressed a button of this message (or asked in the chat): the action is queued.
    ActionRequested,
    /// This release was live and a rollback replaced it, with who or why.
    RolledBack,
    ErrorAlert,
    OpsAlarm,
}

/// The facts a chat message is rendered from. Every field is optional; each kind fills what
/// it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<Sha>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The build log, the deployment or the Sentry issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// The build or deploy status word (`FAILED`, `TIMED_OUT`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why: the failed phase and its message, what superseded it, why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Buttons under the message (Telegram's inline keyboard): what a person may do next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ChatButton>,
}

/// A button under a chat message. Pressing it sends `callback_data` = [`ChatButton::data`]
/// to chat-ops, which finds the action in `StateKey::Action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatButton {
    pub label: String,
    /// The action's id (`StateKey::Action`).
    pub id: String,
}

impl ChatButton {
    /// What the button sends back when pressed: well inside Telegram's 1–64 bytes.
    pub fn data(&self) -> String {
        format!("{ACTION_PREFIX}{}", self.id)
    }
}

/// The `callback_data` of a shipline button starts with this.
pub const ACTION_PREFIX: &str = "a:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestFacts {
    pub number: u64,
    pub title: String,
    pub url: String,
}

/// The thread of a build: every later notification about this commit edits its message.
pub fn build_thread_key(repo: &str, sha: &str) -> String {
    format!("build:{repo}@{sha}")
}

/// Enough of a commit message for a chat line and a status; never the megabytes a push can hold.
pub const MAX_COMMIT_MESSAGE: usize = 1000;

/// Cuts `text` to at most `max` characters, on a character boundary, marking the cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => {
            let mut out = text[..cut].to_string();
            out.pop();
            out.push('…');
            out
        }
    }
}

impl BuildRequest {
    /// What serialises builds of one line of work: the branch or the pull request.
    pub fn line_of_work(&self) -> String {
        match &self.trigger {
            Trigger::Push(p) => format!("{}#{}", self.repo, p.branch),
            Trigger::PullRequest(pr) => format!("{}#pr-{}", self.repo, pr.number),
        }
    }

    /// The FIFO message group: builds of one branch or pull request stay in order, others run
    /// in parallel.
    pub fn message_group_id(&self) -> String {
        fifo_id(&self.line_of_work())
    }

    pub fn short_sha(&self) -> &str {
        short_sha(&self.sha)
    }
}

pub fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// SQS FIFO group and deduplication ids: at most 128 characters of ASCII letters, digits and
/// punctuation. Branch names can hold anything git allows (unicode included), so an id that
/// does not fit keeps a readable prefix and ends in a hash of the whole, which stays unique.
pub fn fifo_id(raw: &str) -> String {
    use sha2::{Digest, Sha256};
    let allowed = |c: char| c.is_ascii_alphanumeric() || c.is_ascii_punctuation();
    if raw.len() <= 128 && !raw.is_empty() && raw.chars().all(allowed) {
        return raw.to_string();
    }
    let digest = hex::encode(Sha256::digest(raw.as_bytes()));
    let prefix: String = raw.chars().filter(|c| allowed(*c)).take(63).collect();
    format!("{prefix}~{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_request() -> BuildRequest {
        BuildRequest {
            v: VERSION,
            delivery_id: "d-1".into(),
            repo: "octo/app".into(),
            sha: "0123456789abcdef".into(),
            trigger: Trigger::Push(PushTrigger {
                branch: "master".into(),
                before: "0".repeat(40),
                after: "0123456789abcdef".into(),
                forced: false,
                pusher: "ana".into(),
                head_commit_message: "fix".into(),
                head_commit_url: None,
                head_commit_author: None,
                compare_url: "https://github.com/octo/app/compare/a...b".into(),
            }),
            received_at: "2026-11-26T00:00:00Z".into(),
            installation_id: None,
        }
    }

    #[test]
    fn a_build_request_round_trips_with_its_version() {
        let request = push_request();
        let body = encode(&request);
        assert!(body.starts_with(r#"{"v":1,"#), "{body}");
        assert!(body.contains(r#""kind":"push""#), "{body}");
        assert_eq!(decode::<BuildRequest>(&body).unwrap(), request);
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_versions_refused() {
        let mut value: serde_json::Value = serde_json::from_str(&encode(&push_request())).unwrap();
        value["added_later"] = serde_json::json!(true);
        assert!(decode::<BuildRequest>(&value.to_string()).is_ok());
        value["v"] = serde_json::json!(2);
        assert_eq!(
            decode::<BuildRequest>(&value.to_string()).unwrap_err(),
            MessageError::UnsupportedVersion { found: 2 }
        );
        assert_eq!(
            decode::<BuildRequest>("{}").unwrap_err(),
            MessageError::MissingVersion
        );
        assert!(matches!(
            decode::<BuildRequest>("not json").unwrap_err(),
            MessageError::Malformed(_)
        ));
        assert!(matches!(
            decode::<BuildRequest>(r#"{"v":1}"#).unwrap_err(),
            MessageError::Invalid(_)
        ));
    }

    #[test]
    fn group_ids_keep_to_the_fifo_alphabet() {
        assert_eq!(push_request().message_group_id(), "octo/app#master");
        let odd = fifo_id("octo/app#feature/ünïcode branch");
        assert!(
            odd.len() <= 128 && odd.is_ascii() && !odd.contains(' '),
            "{odd}"
        );
        assert_ne!(odd, fifo_id("octo/app#feature/unicode branch"));
        let long = fifo_id(&format!("octo/app#{}", "x".repeat(300)));
        assert!(long.len() <= 128, "{}", long.len());
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("héllo", 10), "héllo");
        assert_eq!(truncate_chars("héllo wörld", 5), "héll…");
        assert_eq!(truncate_chars("🚀🚀🚀", 2), "🚀…");
    }
}
