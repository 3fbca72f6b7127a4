//! Telegram's Bot API: `sendMessage` into a chat (and forum topic), `editMessageText` for the
//! living message.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use shared::secrets::SecretString;

use super::{ChatChannel, ChatError, ChatKind, classify, read, unavailable};

pub const TELEGRAM_PUBLIC_API: &str = "https://api.telegram.org";

pub struct Telegram {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    chat_id: i64,
    topic_id: Option<i64>,
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
            chat_id,
            topic_id,
        }
    }

    /// Calls a Bot API method; its `result` as `T` when Telegram says `ok`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        mut body: Value,
    ) -> Result<Option<T>, ChatError> {
        body["chat_id"] = json!(self.chat_id);
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
            return Ok(answer.result);
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

#[derive(Debug, Deserialize)]
struct ResponseParameters {
    /// Seconds to wait before the request can be repeated.
    retry_after: Option<u64>,
}

/// The `Message` that `sendMessage` answers with; only its id is kept, to edit it later.
#[derive(Debug, Deserialize)]
struct SentMessage {
    message_id: Option<i64>,
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

    async fn post(&self, text: &str) -> Result<Option<String>, ChatError> {
        let mut body = json!({ "text": text });
        if let Some(topic) = self.topic_id {
            body["message_thread_id"] = json!(topic);
        }
        let message = self.call::<SentMessage>("sendMessage", body).await?;
        Ok(message.and_then(|m| m.message_id).map(|id| id.to_string()))
    }

    async fn edit(&self, id: &str, text: &str) -> Result<(), ChatError> {
        let message_id: i64 = id.parse().map_err(|_| ChatError::MessageGone)?;
        // `editMessageText` answers with the edited message, or `true` for inline messages.
        match self
            .call::<IgnoredAny>(
                "editMessageText",
                json!({ "message_id": message_id, "text": text }),
            )
            .await
        {
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
