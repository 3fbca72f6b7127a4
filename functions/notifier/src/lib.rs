//! notifier: every `Notification` (and every CloudWatch alarm that SNS drops on the queue)
//! becomes a chat message on each of its channels. The first notification of a thread posts a
//! message and remembers its id; later ones edit it in place where the channel can. Rate
//! limits delay the message, never drop it; a chat's refusal sends it to the dead-letter queue
//! instead of looping.

pub mod alarm;
pub mod chat;
pub mod render;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::batch::{self, BatchContext, Outcome};
use shared::config::Config;
use shared::messages::{self, MessageError, Notification, NotificationKind};
use shared::ports::{Clock, Precondition, Queue, Redelivery, StateError, StateStore};

use crate::chat::{ChatChannel, ChatError, ChatKind};
use tracing::{info, warn};

/// A thread's message lives as long as anyone would scroll back to it.
const THREAD_TTL_SECS: i64 = 30 * 24 * 3600;

pub struct Deps {
    pub config: Arc<Config>,
    /// Channel name (from the config) → its adapter.
    pub channels: HashMap<String, Arc<dyn ChatChannel>>,
    pub state: Arc<dyn StateStore>,
    pub redelivery: Arc<dyn Redelivery>,
    /// The notification queue's dead-letter queue: where refused messages go, with the reason.
    pub dead_letters: Option<Arc<dyn Queue>>,
    pub clock: Arc<dyn Clock>,
}

/// The Lambda entry point: a batch from the notifications queue.
pub async fn handle_batch(deps: &Deps, event: &SqsEvent) -> SqsBatchResponse {
    let ctx = BatchContext {
        redelivery: deps.redelivery.as_ref(),
        dead_letters: deps.dead_letters.as_deref(),
    };
    // Within one batch, a chat that asked us to wait gets nothing more until then, so the
    // messages to one chat keep their order.
    let blocked: Arc<Mutex<HashMap<String, Duration>>> = Arc::default();
    batch::process(event, &ctx, |message| {
        let blocked = blocked.clone();
        async move { handle_message(deps, &message, &blocked).await }
    })
    .await
}

/// What a queue message holds.
pub fn parse(body: &str, config: &Config, now_rfc3339: &str) -> Result<Notification, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("message is not JSON: {e}"))?;
    if value.get("v").is_some() {
        return messages::decode::<Notification>(body).map_err(|e| match e {
            MessageError::UnsupportedVersion { .. } => e.to_string(),
            e => format!("not a Notification: {e}"),
        });
    }
    // SNS without raw delivery wraps the alarm in an envelope.
    let alarm_value = match value.get("Type").and_then(|t| t.as_str()) {
        Some("Notification") => {
            let inner = value["Message"].as_str().unwrap_or("");
            serde_json::from_str(inner).map_err(|e| format!("SNS message is not JSON: {e}"))?
        }
        _ => value,
    };
    let alarm: alarm::CloudWatchAlarm = serde_json::from_value(alarm_value)
        .map_err(|e| format!("neither a Notification nor a CloudWatch alarm: {e}"))?;
    Ok(alarm.notification(config, now_rfc3339))
}

async fn handle_message(
    deps: &Deps,
    message: &SqsMessage,
    blocked: &Mutex<HashMap<String, Duration>>,
) -> Outcome {
    let body = message.body.as_deref().unwrap_or("");
    let notification = match parse(body, &deps.config, &deps.clock.rfc3339()) {
        Ok(n) => n,
        Err(reason) => return Outcome::DeadLetter(reason),
    };
    if notification.channels.is_empty() {
        return Outcome::Skipped("no channels".into());
    }
    let mut retry_after: Option<Option<Duration>> = None;
    let mut refused: Vec<String> = Vec::new();
    for name in &notification.channels {
        if let Some(wait) = blocked.lock().unwrap().get(name).copied() {
            retry_after = Some(Some(retry_after.flatten().map_or(wait, |w| w.max(wait))));
            continue;
        }
        let Some(channel) = deps.channels.get(name) else {
            warn!(channel = %name, "channel is not in the config; skipped");
            continue;
        };
        match deliver(deps, name, channel.as_ref(), &notification).await {
            Ok(()) => {}
            Err(Failure::Chat(ChatError::RateLimited { retry_after: wait })) => {
                warn!(channel = %name, wait_secs = wait.as_secs(), "rate limited; the message waits");
                blocked.lock().unwrap().insert(name.clone(), wait);
                retry_after = Some(Some(retry_after.flatten().map_or(wait, |w| w.max(wait))));
            }
            Err(Failure::Chat(ChatError::Rejected(reason))) => {
                refused.push(format!("{name}: {reason}"));
            }
            Err(Failure::Chat(e)) => {
                warn!(channel = %name, error = %e, "chat unavailable; retry later");
                retry_after.get_or_insert(None);
            }
            Err(Failure::State(e)) => {
                warn!(channel = %name, error = %e, "state store; retry later");
                retry_after.get_or_insert(None);
            }
        }
    }
    if !refused.is_empty() {
        return Outcome::DeadLetter(format!("chat refused the message: {}", refused.join("; ")));
    }
    match retry_after {
        Some(after) => Outcome::Retry {
            reason: "not delivered to every channel yet".into(),
            after,
        },
        None => Outcome::Done,
    }
}

enum Failure {
    Chat(ChatError),
    State(StateError),
}

/// Where a thread stands on one channel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ThreadRecord {
    message_id: Option<String>,
    /// The newest notification applied: when it happened, its rank in the story, its digest.
    at: String,
    rank: u8,
    digest: String,
}

/// The order of a thread's story, for notifications that happen in the same second.
fn rank(kind: NotificationKind) -> u8 {
    match kind {
        NotificationKind::BuildStarted => 1,
        NotificationKind::BuildSkipped | NotificationKind::BuildSuperseded => 2,
        NotificationKind::BuildSucceeded | NotificationKind::BuildFailed => 3,
        NotificationKind::DeployStarted => 4,
        NotificationKind::DeploySkipped => 5,
        NotificationKind::DeploySucceeded | NotificationKind::DeployFailed => 6,
        NotificationKind::ErrorAlert | NotificationKind::OpsAlarm => 7,
    }
}

fn digest(n: &Notification) -> String {
    hex::encode(&Sha256::digest(messages::encode(n).as_bytes())[..12])
}

/// Posts or edits the thread's message on one channel, exactly once per notification: a
/// notification already applied (a retry after another channel failed, a duplicate delivery)
/// or older than what the message already shows (queues do not keep order) is skipped.
async fn deliver(
    deps: &Deps,
    name: &str,
    channel: &dyn ChatChannel,
    n: &Notification,
) -> Result<(), Failure> {
    let now = deps.clock.unix();
    let key = format!("chat:{name}:{}", n.thread_key);
    let current = deps.state.get(&key, now).await.map_err(Failure::State)?;
    let (record, version): (ThreadRecord, Option<u64>) = match &current {
        Some(r) => (
            serde_json::from_value(r.value.clone()).unwrap_or_default(),
            Some(r.version),
        ),
        None => (ThreadRecord::default(), None),
    };
    let this = digest(n);
    if record.digest == this {
        info!(channel = %name, "already delivered");
        return Ok(());
    }
    if (n.at.as_str(), rank(n.kind)) < (record.at.as_str(), record.rank) {
        info!(channel = %name, "older than what the message shows; skipped");
        return Ok(());
    }
    let text = render::render(channel.kind(), n);
    let message_id = match (&record.message_id, channel.kind()) {
        (Some(id), kind) if kind != ChatKind::Slack => match channel.edit(id, &text).await {
            Ok(()) => Some(id.clone()),
            Err(ChatError::MessageGone) => channel.post(&text).await.map_err(Failure::Chat)?,
            Err(e) => return Err(Failure::Chat(e)),
        },
        _ => channel.post(&text).await.map_err(Failure::Chat)?,
    };
    let updated = ThreadRecord {
        message_id: message_id.or(record.message_id),
        at: n.at.clone(),
        rank: rank(n.kind),
        digest: this,
    };
    let precondition = version.map_or(Precondition::Absent, Precondition::Version);
    let value = serde_json::to_value(&updated).expect("records serialise");
    match deps
        .state
        .put(&key, value, precondition, Some(now + THREAD_TTL_SECS), now)
        .await
    {
        Ok(_) => Ok(()),
        // Another invocation wrote this thread meanwhile; the message is out, and the next
        // notification reads the newer record.
        Err(StateError::ConditionFailed) => Ok(()),
        Err(e) => {
            warn!(error = %e, "delivered, but the thread record was not written");
            Ok(())
        }
    }
}

/// Builds the channel adapters the config names, with the secrets they need.
pub fn channels_from_config(
    config: &Config,
    secrets: &shared::secrets::Secrets,
    http: &reqwest::Client,
    telegram_api: &str,
) -> Result<HashMap<String, Arc<dyn ChatChannel>>, shared::secrets::SecretsError> {
    use crate::chat::{Discord, Slack, Telegram};
    use shared::config::Channel;
    let mut channels: HashMap<String, Arc<dyn ChatChannel>> = HashMap::new();
    for (name, channel) in &config.channels {
        let adapter: Arc<dyn ChatChannel> = match channel {
            Channel::Telegram(t) => Arc::new(Telegram::new(
                http.clone(),
                telegram_api,
                secrets.require(t.bot_token_secret())?.clone(),
                t.chat_id,
                t.topic_id,
            )),
            Channel::Slack(w) => Arc::new(Slack::new(
                http.clone(),
                secrets.require(&w.webhook_secret.value)?.clone(),
            )),
            Channel::Discord(w) => Arc::new(Discord::new(
                http.clone(),
                secrets.require(&w.webhook_secret.value)?.clone(),
            )),
            // Only the local stack prints to a console (it adds its own adapter); a deployed
            // function refused such a config at cold start.
            Channel::Console(_) => continue,
        };
        channels.insert(name.clone(), adapter);
    }
    Ok(channels)
}
