//! Who may act from the chat: the person behind a message or a press, and whether the config's
//! `chatops.allow` gives them the power asked for.

use shared::config::{ChatPower, Config};

use crate::Deps;
use crate::telegram::{Message, User, escape};

/// An action asked for by someone allowed to.
pub(super) struct Ask {
    pub(super) by: String,
    /// What deduplicates it on `deploys.fifo`: the update it came in.
    pub(super) dedup: String,
    pub(super) at: String,
}

impl Ask {
    /// The person who sent `message`, if they may take `power`; else the polite refusal.
    pub(super) fn of(
        deps: &Deps,
        message: &Message,
        update: &str,
        power: ChatPower,
    ) -> Result<Self, String> {
        let person = sender(message)?;
        allowed(&deps.config, person, power)?;
        Ok(Self {
            by: person.attribution(),
            dedup: format!("chatops:{update}"),
            at: deps.clock.rfc3339(),
        })
    }
}

/// Who sent a message, when a person can be told apart.
fn sender(message: &Message) -> Result<&User, String> {
    let anonymous = message
        .sender_chat
        .as_ref()
        .is_some_and(|c| c.id == message.chat.id);
    match &message.from {
        Some(user) if !anonymous && !user.is_bot => Ok(user),
        _ => Err(
            "Sorry, I cannot tell who is asking (an anonymous admin or a bot): post as yourself to act."
                .into(),
        ),
    }
}

/// Whether `person` may take `power`, or why not.
pub(super) fn allowed(config: &Config, person: &User, power: ChatPower) -> Result<(), String> {
    if config.chatops.may(power, person.id) {
        return Ok(());
    }
    Err(format!(
        "Sorry {}, you may not {} from the chat: your Telegram id {} is not under \
         <code>chatops.allow.{}</code> in shipline's config. Nothing was done.",
        escape(person.username.as_deref().unwrap_or(&person.first_name)),
        power.verb(),
        person.id,
        power.key()
    ))
}
