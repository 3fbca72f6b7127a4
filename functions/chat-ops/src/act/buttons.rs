//! The buttons under deploy messages: a press is answered at once, its action taken once (the
//! first press wins), queued, and its message edited to say so.

use shared::config::ChatPower;
use shared::ids::Sha;
use shared::messages::{
    self, ACTION_PREFIX, DeployQueueMessage, Facts, Notification, NotificationKind, PromoteRequest,
    RollbackRequest,
};
use shared::ports::{OutgoingMessage, Precondition, StateError};
use shared::records::{ActionKind, ChatAction, PendingPromotions, StateKey, Taken};
use tracing::warn;

use super::allow::allowed;
use super::{ActError, enqueue, live, not_ours};
use crate::Deps;
use crate::telegram::{Call, CallbackQuery, plain};

/// A button pressed: answered at once (`answerCallbackQuery`); its action taken once, queued,
/// and its message edited to say so.
pub(super) async fn press(
    deps: &Deps,
    query: &CallbackQuery,
    update: &str,
) -> Result<Call, ActError> {
    let refuse = |text: &str| Ok(Call::answer(query, text, true));
    let Some(on) = &query.message else {
        return refuse("This button is not shipline's.");
    };
    if !deps.config.telegram_chats().contains(&on.chat.id) {
        return refuse(&not_ours(on.chat.id));
    }
    let Some(id) = query
        .data
        .as_deref()
        .and_then(|d| d.strip_prefix(ACTION_PREFIX))
    else {
        return refuse("This button is not shipline's.");
    };
    let now = deps.clock.unix();
    let key = StateKey::Action(id);
    let Some(stored) = deps.state.read::<ChatAction>(key, now).await? else {
        return refuse("This button has expired: use the command instead (/help).");
    };
    if let Some(why) = refusal(deps, query, &stored.value, update).await? {
        return refuse(&why);
    }
    let action = stored.value.clone();
    let by = query.from.attribution();
    let at = deps.clock.rfc3339();
    if action.taken.is_none() {
        let mut taken = action.clone();
        taken.taken = Some(Taken {
            by: by.clone(),
            at: at.clone(),
            update: update.to_string(),
        });
        // Only the first press writes over the untaken action; a press at the same moment
        // finds it taken. The record keeps its month.
        let version = Precondition::Version(stored.version);
        let expires = Some(now + ChatAction::TTL_SECS);
        match deps.state.write(key, &taken, version, expires, now).await {
            Ok(_) => {}
            Err(StateError::ConditionFailed) => {
                // The same update delivered twice at once took it: this one goes on too (its
                // queue message is one by its deduplication id). Anyone else's did not.
                let now_taken = deps.state.read_value::<ChatAction>(key, now).await?;
                let ours = now_taken
                    .and_then(|a| a.taken)
                    .is_some_and(|t| t.update == update);
                if !ours {
                    return refuse("Someone pressed it a moment ago: nothing more done.");
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (message, what) = request_of(&action, &by, &at);
    let dedup = format!("chatops-action:{id}");
    enqueue(deps, &message, &action.target, &dedup).await?;
    edit(deps, &action, &by, &at).await;
    Ok(Call::answer(query, &what, false))
}

/// Why a press does nothing: its presser may not, someone else pressed it first, or what it
/// would roll back is no longer live.
async fn refusal(
    deps: &Deps,
    query: &CallbackQuery,
    action: &ChatAction,
    update: &str,
) -> Result<Option<String>, ActError> {
    let power = match action.kind {
        ActionKind::Rollback => ChatPower::Rollback,
        ActionKind::Promote => ChatPower::Promote,
    };
    if query.from.is_bot {
        return Ok(Some("Bots cannot act.".into()));
    }
    if let Err(why) = allowed(&deps.config, &query.from, power) {
        return Ok(Some(plain(&why)));
    }
    if let Some(taken) = &action.taken
        && taken.update != update
    {
        return Ok(Some(format!(
            "Already asked for by {} at {}: nothing more done.",
            taken.by, taken.at
        )));
    }
    match action.kind {
        ActionKind::Rollback => {
            let current = live(deps, &action.target).await?;
            if current
                .as_ref()
                .is_none_or(|l| Some(&l.release_id) != action.release.as_ref())
            {
                return Ok(Some(format!(
                    "This release is no longer live on {}: nothing to roll back.",
                    action.target
                )));
            }
        }
        ActionKind::Promote => {
            let pending: PendingPromotions = deps
                .state
                .read_value(StateKey::Promotions, deps.clock.unix())
                .await?
                .unwrap_or_default();
            if pending
                .get(action.target.as_str())
                .is_none_or(|p| p.request.sha != action.sha)
            {
                return Ok(Some(format!(
                    "This release no longer waits to be promoted to {}: nothing done.",
                    action.target
                )));
            }
        }
    }
    Ok(None)
}

/// The queue message a pressed button sends, and the notice that says so.
fn request_of(action: &ChatAction, by: &str, at: &str) -> (DeployQueueMessage, String) {
    match action.kind {
        ActionKind::Rollback => (
            DeployQueueMessage::Rollback(RollbackRequest {
                v: messages::VERSION,
                target: action.target.clone(),
                release: None,
                requested_by: by.to_string(),
                requested_at: at.to_string(),
                from_release: action.release.clone(),
                reason: None,
            }),
            format!("Rollback of {} queued", action.target),
        ),
        ActionKind::Promote => (
            DeployQueueMessage::Promote(PromoteRequest {
                v: messages::VERSION,
                target: action.target.clone(),
                sha: Some(Sha::new(action.sha.to_string())),
                requested_by: by.to_string(),
                requested_at: at.to_string(),
            }),
            format!("Promotion to {} queued", action.target),
        ),
    }
}

/// The pressed button's message says the action is queued, and loses its buttons. Best
/// effort: the action is queued, and its story follows in the same message.
async fn edit(deps: &Deps, action: &ChatAction, by: &str, at: &str) {
    let what = match action.kind {
        ActionKind::Rollback => "roll back",
        ActionKind::Promote => "promotion",
    };
    let facts = Facts {
        reason: Some(format!("{what} of {} asked for by {by}", action.target)),
        actions: Vec::new(),
        ..action.facts.clone()
    };
    let notification = Notification {
        v: messages::VERSION,
        kind: NotificationKind::ActionRequested,
        thread_key: action.thread_key.clone(),
        channels: action.channels.clone(),
        facts,
        at: at.to_string(),
    };
    if let Err(e) = deps
        .notify
        .send(OutgoingMessage::new(messages::encode(&notification)))
        .await
    {
        warn!(error = %e, "the pressed message is not edited");
    }
}
