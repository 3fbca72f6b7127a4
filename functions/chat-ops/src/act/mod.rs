//! Deciding what an update asks, whether its sender may, and queueing it: every action is a
//! message on `deploys.fifo` in its target's group (the same contracts as `shipline rollback`
//! and `shipline promote`), attributed to the person who asked. A command is read here and
//! done in `commands`, a pressed button in `buttons`; who may do what is `allow`'s.

mod allow;
mod buttons;
mod commands;

use shared::config::ChatPower;
use shared::ids::TargetKey;
use shared::messages::{self, DeployQueueMessage};
use shared::ports::{OutgoingMessage, QueueError, StateError};
use shared::records::{LiveRecord, StateKey};
use tracing::info;

use self::allow::Ask;
use crate::Deps;
use crate::command::{self, Command};
use crate::telegram::{Call, escape};

/// A failure a retry of the update can get past.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl shared::ports::Retryable for ActError {
    fn is_retryable(&self) -> bool {
        match self {
            ActError::State(e) => e.is_retryable(),
            ActError::Queue(e) => e.is_retryable(),
        }
    }
}

/// One update as it came: which bot it came to (the webhook URL's `?bot=`, when set) and its id,
/// which together name it (update ids count per bot).
pub struct Received<'a> {
    pub update: &'a crate::telegram::Update,
    pub bot: Option<&'a str>,
}

impl Received<'_> {
    /// `<bot>:<update_id>`: the update's name in records and deduplication ids.
    pub fn id(&self) -> String {
        format!("{}:{}", self.bot.unwrap_or("-"), self.update.update_id)
    }
}

/// Refuses a chat that is not one of the config's, saying how to fix a group that became a
/// supergroup (its id changes, and Telegram says so only to the notifier).
fn not_ours(chat: i64) -> String {
    format!(
        "This chat ({chat}) is not one of shipline's chats: nothing is shown or done here. \
         If this group became a supergroup, set its channel's chat_id to {chat} in shipline's config."
    )
}

/// What to answer an update, after doing what it asks.
pub async fn decide(deps: &Deps, received: &Received<'_>) -> Result<Call, ActError> {
    let update = received.update;
    if let Some(query) = &update.callback_query {
        return buttons::press(deps, query, &received.id()).await;
    }
    let Some(message) = &update.message else {
        return Ok(Call::nothing());
    };
    let Some(parsed) = message
        .text
        .as_deref()
        .and_then(|text| command::parse(text, received.bot))
    else {
        return Ok(Call::nothing());
    };
    if !deps.config.telegram_chats().contains(&message.chat.id) {
        info!(
            chat = message.chat.id,
            "a command from a chat shipline does not post to"
        );
        return Ok(Call::reply(message, &not_ours(message.chat.id)));
    }
    let command = match parsed {
        Ok(command) => command,
        Err(usage) => return Ok(Call::reply(message, &escape(&usage))),
    };
    info!(?command, "command");
    let text = match command {
        Command::Status => crate::status::text(deps).await?,
        Command::Help => escape(command::USAGE),
        Command::Deploy { repo, args } => {
            let ask = Ask::of(deps, message, &received.id(), ChatPower::Deploy);
            match ask {
                Err(refusal) => refusal,
                Ok(ask) => commands::deploy(deps, &ask, &repo, &args).await?,
            }
        }
        Command::Rollback { target, release } => {
            match Ask::of(deps, message, &received.id(), ChatPower::Rollback) {
                Err(refusal) => refusal,
                Ok(ask) => commands::rollback(deps, &ask, &target, release).await?,
            }
        }
        Command::Promote { target } => {
            match Ask::of(deps, message, &received.id(), ChatPower::Promote) {
                Err(refusal) => refusal,
                Ok(ask) => commands::promote(deps, &ask, &target).await?,
            }
        }
    };
    Ok(Call::reply(message, &text))
}

/// Puts a message on `deploys.fifo` in `target`'s group.
async fn enqueue(
    deps: &Deps,
    message: &DeployQueueMessage,
    target: &TargetKey,
    dedup: &str,
) -> Result<(), QueueError> {
    deps.deploys
        .send(OutgoingMessage::fifo(
            messages::encode(message),
            messages::fifo_id(target),
            messages::fifo_id(dedup),
        ))
        .await
}

async fn live(deps: &Deps, target: &TargetKey) -> Result<Option<LiveRecord>, StateError> {
    deps.state
        .read_value::<LiveRecord>(StateKey::Live(target), deps.clock.unix())
        .await
}

fn release_name(live: &LiveRecord) -> String {
    live.version
        .clone()
        .unwrap_or_else(|| live.release_id.clone())
}
