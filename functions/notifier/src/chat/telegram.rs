//! Telegram's Bot API: `sendMessage` into a chat (and forum topic), `editMessageText` for the
//! living message.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use shared::messages::ChatButton;
use shared::secrets::SecretString;
use tracing::warn;

use super::{ChatChannel, ChatError, ChatKind, classify, read, unavailable};

pub const TELEGRAM_PUBLIC_API: &str = "https://api.telegram.org";

pub struct Telegram {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    /// The configured chat id.
    configured: i64,
    /// Where messages go: the configured id, or the supergroup it became.
    chat_id: AtomicI64,
    topic_id: Option<i64>,
}

/// How one Bot API call ended.
enum Called<T> {
    Answered(Option<T>),
    /// The group became a supergroup with this id (400 with `parameters.migrate_to_chat_id`,
    /// Bot API *ResponseParameters*; python-telegram-bot raises `ChatMigrated` for it).
    Migrated(i64),
}

impl Telegram {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        token: SecretString,
        chat_id: i64,
        topic_id: Option<i64>,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
            configured: chat_id,
            chat_id: AtomicI64::new(chat_id),
            topic_id,
        }
    }

    /// Calls a Bot API method; its `result` as `T` when Telegram says `ok`. A group that became
    /// a supergroup is followed to its new id (the call is made again there), and the team is
    /// told there, once per cold start, to update `chat_id`: its messages are never refused
    /// for it.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: Value,
    ) -> Result<Option<T>, ChatError> {
        match self.send(method, body.clone()).await? {
            Called::Answered(result) => Ok(result),
            Called::Migrated(new_id) => {
                let first = self.chat_id.swap(new_id, Ordering::Relaxed) != new_id;
                warn!(
                    configured = self.configured,
                    new_id, "the Telegram group became a supergroup; update chat_id"
                );
                let result = match self.send(method, body).await? {
                    Called::Answered(result) => Ok(result),
                    Called::Migrated(_) => Err(ChatError::Unavailable(
                        "Telegram moved the chat twice in one call".into(),
                    )),
                };
                if first {
                    self.tell_migrated(new_id).await;
                }
                result
            }
        }
    }

    async fn tell_migrated(&self, new_id: i64) {
        let text = format!(
            "⚠️ <b>shipline</b>: this group became a supergroup, and its chat id changed from \
             <code>{}</code> to <code>{new_id}</code>. Messages reach it; update \
             <code>chat_id</code> in shipline's config (then <code>shipline config push</code>) \
             so that each cold start need not ask Telegram again.",
            self.configured
        );
        if let Err(e) = self
            .send::<IgnoredAny>("sendMessage", json!({ "text": text }))
            .await
        {
            warn!(error = %e, "could not tell the chat about its new id");
        }
    }

    /// One Bot API call to the current chat id.
    async fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        mut body: Value,
    ) -> Result<Called<T>, ChatError> {
        body["chat_id"] = json!(self.chat_id.load(Ordering::Relaxed));
        body["parse_mode"] = json!("HTML");
        body["link_preview_options"] = json!({ "is_disabled": true });
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose());
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(unavailable)?;
        let (status, header_retry, text) = read(response).await?;
        // An answer that is not the Bot API's JSON (a proxy's error page) says nothing more
        // than its status.
        let answer: Answer<T> = serde_json::from_str(&text).unwrap_or_default();
        if status.is_success() && answer.ok == Some(true) {
            return Ok(Called::Answered(answer.result));
        }
        if let Some(new_id) = answer
            .parameters
            .as_ref()
            .and_then(|p| p.migrate_to_chat_id)
        {
            return Ok(Called::Migrated(new_id));
        }
        let description = answer
            .description
            .unwrap_or_else(|| "no description".to_string());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = answer
                .parameters
                .and_then(|p| p.retry_after)
                .or_else(|| retry_after_in(&description))
                .map(Duration::from_secs)
                .or(header_retry);
            return Err(classify(status, retry_after, description));
        }
        Err(classify(status, None, description))
    }
}

/// A Bot API answer (<https://core.telegram.org/bots/api#making-requests>): `ok`, then the
/// method's `result`, or a `description` of the error with `parameters` such as `retry_after`.
#[derive(Debug, Deserialize)]
#[serde(default, bound = "T: DeserializeOwned")]
struct Answer<T> {
    ok: Option<bool>,
    result: Option<T>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

impl<T> Default for Answer<T> {
    fn default() -> Self {
        Self {
            ok: None,
            result: None,
            description: None,
            parameters: None,
        }
    }
}

/// Bot API *ResponseParameters*: why a request failed, and what to do about it.
#[derive(Debug, Deserialize)]
struct ResponseParameters {
    /// Seconds to wait before the request can be repeated.
    retry_after: Option<u64>,
    /// The group became a supergroup with this id.
    migrate_to_chat_id: Option<i64>,
}

/// The `Message` that `sendMessage` answers with; only its id is kept, to edit it later.
#[derive(Debug, Deserialize)]
struct SentMessage {
    message_id: Option<i64>,
}

/// An *InlineKeyboardMarkup* with one row of *InlineKeyboardButton*s, each sending its
/// `callback_data` (1–64 bytes, Bot API) when pressed.
fn keyboard(buttons: &[ChatButton]) -> Value {
    let row: Vec<Value> = buttons
        .iter()
        .map(|b| json!({ "text": b.label, "callback_data": b.data() }))
        .collect();
    json!({ "inline_keyboard": [row] })
}

/// "Too Many Requests: retry after 35" → 35: older Bot API answers had no `parameters`.
fn retry_after_in(description: &str) -> Option<u64> {
    let lower = description.to_ascii_lowercase();
    let tail = &lower[lower.find("retry after")? + "retry after".len()..];
    tail.split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

#[async_trait]
impl ChatChannel for Telegram {
    fn kind(&self) -> ChatKind {
        ChatKind::Telegram
    }

    async fn post_with(
        &self,
        text: &str,
        buttons: &[ChatButton],
    ) -> Result<Option<String>, ChatError> {
        let mut body = json!({ "text": text });
        if let Some(topic) = self.topic_id {
            body["message_thread_id"] = json!(topic);
        }
        if !buttons.is_empty() {
            body["reply_markup"] = keyboard(buttons);
        }
        let message = self.call::<SentMessage>("sendMessage", body).await?;
        Ok(message.and_then(|m| m.message_id).map(|id| id.to_string()))
    }

    async fn edit_with(
        &self,
        id: &str,
        text: &str,
        buttons: &[ChatButton],
    ) -> Result<(), ChatError> {
        let message_id: i64 = id.parse().map_err(|_| ChatError::MessageGone)?;
        // Without `reply_markup` an edit leaves no keyboard: a button pressed (or moot) goes.
        let mut body = json!({ "message_id": message_id, "text": text });
        if !buttons.is_empty() {
            body["reply_markup"] = keyboard(buttons);
        }
        // `editMessageText` answers with the edited message, or `true` for inline messages.
        match self.call::<IgnoredAny>("editMessageText", body).await {
            Ok(_) => Ok(()),
            Err(ChatError::Rejected(reason)) if reason.contains("message is not modified") => {
                Ok(())
            }
            Err(ChatError::Rejected(reason))
                if reason.contains("message to edit not found")
                    || reason.contains("MESSAGE_ID_INVALID") =>
            {
                Err(ChatError::MessageGone)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn telegram(server: &MockServer) -> Telegram {
        Telegram::new(
            reqwest::Client::new(),
            &server.uri(),
            SecretString::new("123:abc"),
            -100,
            Some(7),
        )
    }

    #[tokio::test]
    async fn telegram_posts_html_into_the_topic_and_returns_the_message_id() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/bot123:abc/sendMessage"))
            .and(body_partial_json(json!({
                "chat_id": -100, "message_thread_id": 7, "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": true}, "text": "<b>hi</b>"
            })))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": true, "result": {"message_id": 42}})),
            )
            .mount(&server)
            .await;
        assert_eq!(
            telegram(&server).post("<b>hi</b>").await.unwrap(),
            Some("42".into())
        );
    }

    #[tokio::test]
    async fn buttons_ride_as_an_inline_keyboard_and_an_edit_without_them_drops_it() {
        let server = MockServer::start().await;
        Mock::given(path("/bot123:abc/sendMessage"))
            .and(body_partial_json(json!({
                "reply_markup": {"inline_keyboard": [[
                    {"text": "Roll back production", "callback_data": "a:0123abcd"}
                ]]}
            })))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": true, "result": {"message_id": 8}})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/bot123:abc/editMessageText"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": true, "result": {"message_id": 8}})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let t = telegram(&server);
        let button = ChatButton {
            label: "Roll back production".into(),
            id: "0123abcd".into(),
        };
        assert_eq!(
            t.post_with("Live", std::slice::from_ref(&button))
                .await
                .unwrap(),
            Some("8".into())
        );
        t.edit_with("8", "Queued", &[]).await.unwrap();
        let requests = server.received_requests().await.unwrap();
        let edit: Value = serde_json::from_slice(&requests[1].body).unwrap();
        assert_eq!(edit["text"], "Queued");
        assert!(edit.get("reply_markup").is_none(), "{edit}");
    }

    #[tokio::test]
    async fn a_group_that_became_a_supergroup_gets_its_messages_and_is_told_once() {
        // Telegram answers a call to the old id of an upgraded group with 400 and
        // `parameters.migrate_to_chat_id` (Bot API, *ResponseParameters*).
        let server = MockServer::start().await;
        Mock::given(path("/bot123:abc/sendMessage"))
            .and(body_partial_json(json!({"chat_id": -100})))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "ok": false, "error_code": 400,
                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                "parameters": {"migrate_to_chat_id": -1_009_876_543_210_i64}
            })))
            .mount(&server)
            .await;
        Mock::given(path("/bot123:abc/sendMessage"))
            .and(body_partial_json(
                json!({"chat_id": -1_009_876_543_210_i64}),
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": true, "result": {"message_id": 5}})),
            )
            .mount(&server)
            .await;
        let t = telegram(&server);
        assert_eq!(t.post("first").await.unwrap(), Some("5".into()));
        assert_eq!(t.post("second").await.unwrap(), Some("5".into()));
        let sent: Vec<(i64, String)> = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                (
                    body["chat_id"].as_i64().unwrap(),
                    body["text"].as_str().unwrap().chars().take(20).collect(),
                )
            })
            .collect();
        let new = -1_009_876_543_210_i64;
        assert_eq!(
            sent,
            vec![
                (-100, "first".into()),
                (new, "first".into()),
                (new, "⚠️ <b>shipline</b>: ".into()),
                (new, "second".into()),
            ],
            "delivered to the new id, told once, then straight there"
        );
    }

    #[tokio::test]
    async fn telegram_429_reads_retry_after_from_parameters_or_the_description() {
        let server = MockServer::start().await;
        Mock::given(path("/bot123:abc/sendMessage"))
            .respond_with(
                ResponseTemplate::new(429)
                    .set_body_string(include_str!("../../testdata/telegram-429.json")),
            )
            .mount(&server)
            .await;
        Mock::given(path("/bot123:abc/editMessageText"))
            .respond_with(ResponseTemplate::new(429).set_body_json(json!({
                "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 35"
            })))
            .mount(&server)
            .await;
        let t = telegram(&server);
        assert!(
            matches!(t.post("x").await, Err(ChatError::RateLimited { retry_after }) if retry_after == Duration::from_secs(2282))
        );
        assert!(
            matches!(t.edit("1", "x").await, Err(ChatError::RateLimited { retry_after }) if retry_after == Duration::from_secs(35))
        );
    }

    #[tokio::test]
    async fn telegram_edit_treats_not_modified_as_done_and_reports_a_gone_message() {
        let server = MockServer::start().await;
        Mock::given(path("/bot123:abc/editMessageText"))
            .and(body_partial_json(json!({"message_id": 1})))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "ok": false, "error_code": 400,
                "description": "Bad Request: message is not modified: specified new message content and reply markup are exactly the same"
            })))
            .mount(&server)
            .await;
        Mock::given(path("/bot123:abc/editMessageText"))
            .and(body_partial_json(json!({"message_id": 2})))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "ok": false, "error_code": 400, "description": "Bad Request: message to edit not found"
            })))
            .mount(&server)
            .await;
        Mock::given(path("/bot123:abc/sendMessage"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "ok": false, "error_code": 400, "description": "Bad Request: can't parse entities"
            })))
            .mount(&server)
            .await;
        let t = telegram(&server);
        assert!(t.edit("1", "same").await.is_ok());
        assert!(matches!(
            t.edit("2", "x").await,
            Err(ChatError::MessageGone)
        ));
        let err = t.post("<b").await.unwrap_err();
        assert!(
            matches!(&err, ChatError::Rejected(r) if r.contains("can't parse entities")),
            "{err:?}"
        );
        assert!(
            !format!("{err:?}").contains("123:abc"),
            "no token in errors"
        );
    }
}
