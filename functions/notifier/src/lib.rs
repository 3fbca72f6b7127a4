//! notifier: every `Notification` (and every CloudWatch alarm that SNS drops on the queue)
//! becomes a chat message on each of its channels. The first notification of a thread posts a
//! message and remembers its id; later ones edit it in place where the channel can. Rate
//! limits delay the message, never drop it; a chat's refusal sends it to the dead-letter queue
//! instead of looping.

pub mod alarm;
pub mod chat;
mod outcome;
pub mod render;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::batch::{self, BatchContext, Handoff, Outcome};
use shared::config::Config;
use shared::messages::{self, ChatButton, MessageError, Notification, NotificationKind};
use shared::ports::{Clock, Precondition, StateError, StateStore};
use shared::records::{LastAlarm, StateKey};

use crate::chat::{ChatChannel, ChatError, ChatKind};
pub use crate::outcome::NotifyError;
use crate::outcome::Tally;
use tracing::{info, warn};

/// A thread's message lives as long as anyone would scroll back to it.
const THREAD_TTL_SECS: i64 = 30 * 24 * 3600;

pub struct Deps {
    pub config: Arc<Config>,
    /// Channel name (from the config) → its adapter.
    pub channels: HashMap<String, Arc<dyn ChatChannel>>,
    pub state: Arc<dyn StateStore>,
    /// Where unfinished messages go: back to the queue after a rate limit, or to its DLQ
    /// (refused messages, with the reason).
    pub handoff: Handoff,
    pub clock: Arc<dyn Clock>,
}

/// The Lambda entry point: a batch from the notifications queue.
pub async fn handle_batch(
    deps: &Deps,
    event: &SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let ctx = BatchContext::of(&deps.handoff, &*deps.state, &*deps.clock, deadline);
    // Within one batch, a chat that asked us to wait gets nothing more until then, so the
    // messages to one chat keep their order.
    let blocked: Arc<Mutex<HashMap<String, Duration>>> = Arc::default();
    batch::process(event, &ctx, |message| {
        let blocked = blocked.clone();
        async move { notify(deps, &message, &blocked).await }
    })
    .await
}

/// What tells the kinds of queue message apart: shipline's own carry a version `v`; SNS
/// without raw delivery wraps an alarm in an envelope (`Type` "Notification", the alarm as a
/// JSON string in `Message`); with raw delivery the alarm is the body.
#[derive(Deserialize)]
struct Probe {
    v: Option<serde::de::IgnoredAny>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// What a queue message holds: a notification, or `None` for an alarm change that is not
/// news (`CloudWatchAlarm::is_news`).
pub fn parse(
    body: &str,
    config: &Config,
    now_rfc3339: &str,
) -> Result<Option<Notification>, String> {
    let probe: Probe =
        serde_json::from_str(body).map_err(|e| format!("message is not a JSON object: {e}"))?;
    if probe.v.is_some() {
        return messages::decode::<Notification>(body)
            .map(Some)
            .map_err(|e| match e {
                MessageError::UnsupportedVersion { .. } => e.to_string(),
                e => format!("not a Notification: {e}"),
            });
    }
    let alarm: alarm::CloudWatchAlarm = match (probe.kind.as_deref(), probe.message) {
        (Some("Notification"), Some(inner)) => serde_json::from_str(&inner)
            .map_err(|e| format!("SNS message is not a CloudWatch alarm: {e}"))?,
        _ => serde_json::from_str(body)
            .map_err(|e| format!("neither a Notification nor a CloudWatch alarm: {e}"))?,
    };
    Ok(alarm
        .is_news()
        .then(|| alarm.notification(config, now_rfc3339)))
}

/// Tells each channel of one queue message; done when every channel has it.
async fn notify(
    deps: &Deps,
    message: &SqsMessage,
    blocked: &Mutex<HashMap<String, Duration>>,
) -> Result<Outcome, NotifyError> {
    let body = message.body.as_deref().unwrap_or("");
    let notification =
        parse(body, &deps.config, &deps.clock.rfc3339()).map_err(NotifyError::Unreadable)?;
    let Some(notification) = notification else {
        return Ok(Outcome::Skipped(
            "an alarm's first evaluation (INSUFFICIENT_DATA → OK) is not news".into(),
        ));
    };
    if notification.kind == NotificationKind::OpsAlarm {
        remember_alarm(deps, &notification).await;
    }
    if notification.channels.is_empty() {
        return Ok(Outcome::Skipped("no channels".into()));
    }
    let mut tally = Tally::new(blocked);
    for name in &notification.channels {
        if tally.waits_for(name) {
            continue;
        }
        let Some(channel) = deps.channels.get(name) else {
            warn!(channel = %name, "channel is not in the config; skipped");
            continue;
        };
        if let Err(e) = deliver(deps, name, channel.as_ref(), &notification).await {
            tally.failed(name, e);
        }
    }
    tally.settle()?;
    Ok(Outcome::Done)
}

/// Keeps the newest alarm change for the status page (`StateKey::LastAlarm`). A record the
/// page shows, not one anything depends on: a failure is logged, and the chat is told anyway.
async fn remember_alarm(deps: &Deps, n: &Notification) {
    let now = deps.clock.unix();
    let last = LastAlarm {
        title: n.facts.title.clone().unwrap_or_default(),
        state: n.facts.status.clone().unwrap_or_default(),
        at: unix_of(&n.at).unwrap_or(now),
    };
    let written = deps
        .state
        .modify(
            StateKey::LastAlarm,
            Some(now + LastAlarm::TTL_SECS),
            now,
            |stored: &mut LastAlarm| {
                // Queues do not keep order: an older change never replaces a newer one.
                if last.at >= stored.at {
                    *stored = last.clone();
                }
            },
        )
        .await;
    if let Err(e) = written {
        warn!(error = %e, "could not record the last alarm for the status page");
    }
}

/// Unix seconds of an RFC 3339 time, or of CloudWatch's `StateChangeTime`, whose offset has
/// no colon (`2026-11-26T10:05:00.000+0000`).
fn unix_of(at: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let parse = |t: &str| time::OffsetDateTime::parse(t, &Rfc3339).ok();
    let colon = || {
        let (head, offset) = at.split_at(at.len().checked_sub(5)?);
        let (sign, digits) = offset.split_at(1);
        ((sign == "+" || sign == "-") && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| format!("{head}{sign}{}:{}", &digits[..2], &digits[2..]))
    };
    parse(at)
        .or_else(|| parse(&colon()?))
        .map(time::OffsetDateTime::unix_timestamp)
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
        NotificationKind::DeploySucceeded
        | NotificationKind::DeployFailed
        | NotificationKind::PromotionBlocked => 6,
        NotificationKind::ErrorAlert | NotificationKind::OpsAlarm => 7,
        NotificationKind::ActionRequested => 8,
        NotificationKind::RolledBack => 9,
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
) -> Result<(), NotifyError> {
    let now = deps.clock.unix();
    let key = StateKey::Chat {
        channel: name,
        thread: &n.thread_key,
    };
    let stored = deps.state.read::<ThreadRecord>(key, now).await?;
    let version = stored.as_ref().map(|s| s.version);
    let record = stored.map(|s| s.value).unwrap_or_default();
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
    let message_id = post_or_edit(
        channel,
        record.message_id.as_deref(),
        &text,
        &n.facts.actions,
    )
    .await?;
    let updated = ThreadRecord {
        message_id: message_id.or(record.message_id),
        at: n.at.clone(),
        rank: rank(n.kind),
        digest: this,
    };
    let precondition = version.map_or(Precondition::Absent, Precondition::Version);
    match deps
        .state
        .write(
            key,
            &updated,
            precondition,
            Some(now + THREAD_TTL_SECS),
            now,
        )
        .await
    {
        // Another invocation wrote this thread meanwhile; the message is out, and the next
        // notification reads the newer record.
        Ok(_) | Err(StateError::ConditionFailed) => {}
        Err(e) => warn!(error = %e, "delivered, but the thread record was not written"),
    }
    Ok(())
}

/// Edits the thread's message where the channel can (a Slack webhook cannot), else posts one;
/// a message that is gone is posted anew. The id of a new message, when the channel gives one.
async fn post_or_edit(
    channel: &dyn ChatChannel,
    id: Option<&str>,
    text: &str,
    buttons: &[ChatButton],
) -> Result<Option<String>, ChatError> {
    match id {
        Some(id) if channel.kind() != ChatKind::Slack => {
            match channel.edit_with(id, text, buttons).await {
                Ok(()) => Ok(Some(id.to_string())),
                Err(ChatError::MessageGone) => channel.post_with(text, buttons).await,
                Err(e) => Err(e),
            }
        }
        _ => channel.post_with(text, buttons).await,
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
