//! Buttons under a deploy's chat message, for the people chat-ops lets act: "Roll back" on a
//! release that went live, "Promote to …" on one waiting for a person's approval. Each button
//! is an action record (`StateKey::Action`) that chat-ops takes once when it is pressed.

use shared::ids::{Sha, TargetKey};
use shared::messages::{ChatButton, Facts, NotificationKind};
use shared::records::{ActionKind, ChatAction, StateKey};
use tracing::warn;

use crate::Deps;
use crate::report::Chat;

/// One button to offer.
pub(crate) struct Offer {
    pub kind: ActionKind,
    pub target: TargetKey,
    pub sha: Sha,
    pub release: Option<String>,
    pub label: String,
}

/// Whether anyone could press a button: ChatOps allows someone, and a chat it listens to
/// shows it.
pub(crate) fn wanted(deps: &Deps) -> bool {
    deps.config.chatops.enabled() && !deps.config.telegram_chats().is_empty()
}

/// Records each offer's action and answers the buttons to show with `facts`. An action that
/// cannot be recorded is left out (best effort: the command works without its button).
pub(crate) async fn offer(
    deps: &Deps,
    chat: &Chat<'_>,
    kind: NotificationKind,
    facts: &Facts,
    offers: Vec<Offer>,
) -> Vec<ChatButton> {
    if !wanted(deps) || offers.is_empty() {
        return Vec::new();
    }
    let now = deps.clock.unix();
    let mut buttons = Vec::new();
    for offer in offers {
        let id = ChatAction::id_of(
            offer.kind,
            offer.target.as_str(),
            &offer.sha,
            offer.release.as_deref(),
        );
        let action = ChatAction {
            kind: offer.kind,
            target: offer.target,
            sha: offer.sha,
            release: offer.release,
            thread_key: chat.thread_key().to_string(),
            channels: chat.channels().to_vec(),
            facts: facts.clone(),
            shown_as: kind,
            taken: None,
        };
        // A retry of the same deploy writes the same action again; one already taken stays
        // taken.
        match deps
            .state
            .write(
                StateKey::Action(&id),
                &action,
                shared::ports::Precondition::Absent,
                Some(now + ChatAction::TTL_SECS),
                now,
            )
            .await
        {
            Ok(_) | Err(shared::ports::StateError::ConditionFailed) => buttons.push(ChatButton {
                label: offer.label,
                id,
            }),
            Err(e) => warn!(error = %e, "button not offered: its action was not recorded"),
        }
    }
    buttons
}
