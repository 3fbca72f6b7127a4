//! chat-ops: `POST /telegram`. The team's Telegram group as the control room: everyone in a
//! configured chat may ask `/status`; the people the config allows may `/deploy`, `/rollback`
//! and `/promote`, and press the buttons on deploy messages. Like the other HTTP functions it
//! only verifies, decides and enqueues: every action travels `deploys.fifo` in its target's
//! group, with the same order guards as any deploy. Its answer is one Bot API call in the
//! webhook's response, so it holds no bot token and calls nobody.

pub mod act;
pub mod command;
mod status;
pub mod telegram;

use std::sync::Arc;

use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use shared::config::Config;
use shared::ports::{Clock, Precondition, Queue, Retryable, StateError, StateStore};
use shared::records::StateKey;
use shared::secrets::SecretString;
use tracing::{Instrument, error, info, warn};

use crate::telegram::{Call, SECRET_HEADER, Update};

/// Telegram keeps an undelivered update for 24 hours: two days of memory covers its retries.
const UPDATE_TTL_SECS: i64 = 2 * 24 * 3600;

/// An update is a few kilobytes; anything far larger is not Telegram.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What chat-ops needs, built once per cold start.
pub struct Deps {
    pub config: Arc<Config>,
    /// `telegram_webhook_secret`: the `secret_token` given to `setWebhook`.
    pub webhook_secret: SecretString,
    pub deploys: Arc<dyn Queue>,
    pub notify: Arc<dyn Queue>,
    /// The stack's dead-letter queues, by name, for `/status`.
    pub dead_letters: shared::ports::NamedQueues,
    pub state: Arc<dyn StateStore>,
    pub clock: Arc<dyn Clock>,
}

/// The answer to one webhook request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl Answer {
    fn refuse(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: serde_json::json!({ "message": message }),
        }
    }

    fn call(call: &Call) -> Self {
        Self {
            status: StatusCode::OK,
            body: call.body(),
        }
    }

    /// The response; `Content-Type: application/json` is what makes Telegram read a method
    /// call in it.
    pub fn into_response(self) -> Response<Body> {
        Response::builder()
            .status(self.status)
            .header("content-type", "application/json")
            .body(Body::Text(self.body.to_string()))
            .expect("a status and a JSON body always build a response")
    }
}

/// The Lambda entry point (API Gateway HTTP API v2).
pub async fn handle(
    deps: &Deps,
    request: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let answer = if request.method() != Method::POST {
        Answer::refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "Telegram POSTs updates here",
        )
    } else {
        let params = request.query_string_parameters();
        let bot = params.first("bot");
        handle_update(deps, request.headers(), request.body().as_ref(), bot).await
    };
    Ok(answer.into_response())
}

/// What the update record (`StateKey::TelegramUpdate`) keeps: the answer given, so that
/// Telegram's retry of an update whose answer it lost gets the same one, and nothing is done
/// twice.
#[derive(Debug, Serialize, Deserialize)]
struct Answered {
    call: Option<serde_json::Value>,
}

/// One webhook request, from raw headers and body to the answer. Shared by the Lambda handler
/// and the local server. `bot` is the webhook URL's `?bot=` (this bot's username, which
/// `shipline setup` puts there): it names the updates, and tells this bot's commands from
/// another's.
pub async fn handle_update(
    deps: &Deps,
    headers: &HeaderMap,
    body: &[u8],
    bot: Option<&str>,
) -> Answer {
    // Nothing is parsed before the caller is known.
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = deps.webhook_secret.expose();
    if given.is_empty() || expected.is_empty() || !shared::signature::token_matches(given, expected)
    {
        warn!("update refused: missing or wrong secret token");
        return Answer::refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-Telegram-Bot-Api-Secret-Token",
        );
    }
    if body.len() > MAX_BODY_BYTES {
        return Answer::refuse(StatusCode::PAYLOAD_TOO_LARGE, "an update is far smaller");
    }
    // Telegram sends a chat's next update only once this one is answered with a 2xx: an update
    // no retry can make readable is answered 200 and logged, so that it never blocks the chat.
    let update: Update = match serde_json::from_slice(body) {
        Ok(update) => update,
        Err(e) => {
            warn!(error = %e, "not a Telegram update; ignored");
            return Answer::call(&Call::nothing());
        }
    };
    let span = tracing::info_span!("update", update_id = update.update_id);
    let bot = bot.filter(|b| is_username(b));
    once(
        deps,
        &act::Received {
            update: &update,
            bot,
        },
    )
    .instrument(span)
    .await
}

/// A Telegram username: 5-32 of `a-z`, `0-9` and `_` (anything else in `?bot=` is ignored).
fn is_username(name: &str) -> bool {
    (5..=32).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Answers an update once: a retried update gets the answer recorded the first time. Telegram
/// holds a chat's later updates while one fails, so only what a retry can help is a `503`;
/// anything else is answered (and said) at once.
async fn once(deps: &Deps, received: &act::Received<'_>) -> Answer {
    let now = deps.clock.unix();
    let id = received.id();
    let key = StateKey::TelegramUpdate(&id);
    match deps.state.read_value::<Answered>(key, now).await {
        Ok(Some(answered)) => {
            info!("answered before; the same answer again");
            return Answer::call(&Call(answered.call));
        }
        Ok(None) => {}
        Err(e) if e.is_retryable() => {
            warn!(error = %e, "cannot read the update record; Telegram will retry");
            return Answer::refuse(StatusCode::SERVICE_UNAVAILABLE, "state unavailable; retry");
        }
        // An unreadable record of this update: answer it anew rather than block the chat.
        Err(e) => error!(error = %e, "the update record is unreadable; answering anew"),
    }
    let call = match act::decide(deps, received).await {
        Ok(call) => call,
        Err(e) if e.is_retryable() => {
            // Nothing was recorded as done: Telegram's retry of this update tries again, and
            // what was already queued is absorbed by its FIFO deduplication id.
            warn!(error = %e, "update not handled; Telegram will retry");
            return Answer::refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
        Err(e) => {
            error!(error = %e, "update cannot be handled");
            Call::failure(received.update)
        }
    };
    let record = Answered {
        call: call.0.clone(),
    };
    match deps
        .state
        .write(
            key,
            &record,
            Precondition::Absent,
            Some(now + UPDATE_TTL_SECS),
            now,
        )
        .await
    {
        Ok(_) | Err(StateError::ConditionFailed) => {}
        Err(e) => warn!(error = %e, "answered, but the update record was not written"),
    }
    Answer::call(&call)
}
