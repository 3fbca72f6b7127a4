//! The `ChatChannel` port: Telegram (Bot API), Slack and Discord incoming webhooks, and the
//! console (the local demo's chat). Each takes text already rendered for its kind.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::ports::{ChatChannel, ChatError, ChatKind};
use crate::secrets::SecretString;

pub const TELEGRAM_PUBLIC_API: &str = "https://api.telegram.org";

fn unavailable(e: reqwest::Error) -> ChatError {
    ChatError::Unavailable(e.without_url().to_string())
}

fn header_secs(headers: &reqwest::header::HeaderMap, name: &str) -> Option<Duration> {
    let value = headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some(Duration::from_secs_f64(value.max(0.0).ceil().max(1.0)))
}

/// The status and body of an answer, and the `Retry-After` it carried.
async fn read(
    response: reqwest::Response,
) -> Result<(StatusCode, Option<Duration>, String), ChatError> {
    let status = response.status();
    let retry_after = header_secs(response.headers(), "retry-after");
    let body = response.text().await.map_err(unavailable)?;
    Ok((status, retry_after, body))
}

/// 429 → wait; 5xx → later; any other failure is the request's fault and is never retried.
fn classify(status: StatusCode, retry_after: Option<Duration>, reason: String) -> ChatError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        ChatError::RateLimited {
            retry_after: retry_after.unwrap_or(Duration::from_secs(5)),
        }
    } else if status.is_server_error() {
        ChatError::Unavailable(format!("{status}: {reason}"))
    } else {
        ChatError::Rejected(format!("{status}: {reason}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Telegram

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

    async fn call(&self, method: &str, mut body: Value) -> Result<Value, ChatError> {
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
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() && answer["ok"] == json!(true) {
            return Ok(answer["result"].clone());
        }
        let description = answer["description"]
            .as_str()
            .unwrap_or("no description")
            .to_string();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = answer["parameters"]["retry_after"]
                .as_u64()
                .or_else(|| retry_after_in(&description))
                .map(Duration::from_secs)
                .or(header_retry);
            return Err(classify(status, retry_after, description));
        }
        Err(classify(status, None, description))
    }
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
        let message = self.call("sendMessage", body).await?;
        Ok(message["message_id"].as_i64().map(|id| id.to_string()))
    }

    async fn edit(&self, id: &str, text: &str) -> Result<(), ChatError> {
        let message_id: i64 = id.parse().map_err(|_| ChatError::MessageGone)?;
        match self
            .call(
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

// ---------------------------------------------------------------------------------------------
// Slack

/// A Slack incoming webhook. It cannot edit what it posted, so every update is a new message.
pub struct Slack {
    http: reqwest::Client,
    url: SecretString,
}

impl Slack {
    pub fn new(http: reqwest::Client, url: SecretString) -> Self {
        Self { http, url }
    }
}

#[async_trait]
impl ChatChannel for Slack {
    fn kind(&self) -> ChatKind {
        ChatKind::Slack
    }

    async fn post(&self, text: &str) -> Result<Option<String>, ChatError> {
        let body = json!({ "text": text, "unfurl_links": false, "unfurl_media": false });
        let response = self
            .http
            .post(self.url.expose())
            .json(&body)
            .send()
            .await
            .map_err(unavailable)?;
        let (status, retry_after, text) = read(response).await?;
        if status.is_success() {
            return Ok(None);
        }
        Err(classify(
            status,
            retry_after,
            text.chars().take(200).collect(),
        ))
    }

    async fn edit(&self, _id: &str, _text: &str) -> Result<(), ChatError> {
        Err(ChatError::MessageGone)
    }
}

// ---------------------------------------------------------------------------------------------
// Discord

pub struct Discord {
    http: reqwest::Client,
    url: SecretString,
}

impl Discord {
    pub fn new(http: reqwest::Client, url: SecretString) -> Self {
        Self { http, url }
    }

    fn body(text: &str) -> Value {
        // No mentions at all from user text; embeds off (flag 4: SUPPRESS_EMBEDS).
        json!({ "content": text, "allowed_mentions": { "parse": [] }, "flags": 4 })
    }

    async fn answer(response: reqwest::Response) -> Result<Value, ChatError> {
        let (status, header_retry, text) = read(response).await?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        let retry_after = answer["retry_after"]
            .as_f64()
            .map(|s| Duration::from_secs_f64(s.max(0.0).ceil().max(1.0)))
            .or(header_retry);
        let reason = answer["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string();
        if status == StatusCode::NOT_FOUND && answer["code"] == json!(10008) {
            return Err(ChatError::MessageGone);
        }
        Err(classify(status, retry_after, reason))
    }
}

#[async_trait]
impl ChatChannel for Discord {
    fn kind(&self) -> ChatKind {
        ChatKind::Discord
    }

    async fn post(&self, text: &str) -> Result<Option<String>, ChatError> {
        let url = format!("{}?wait=true", self.url.expose());
        let response = self
            .http
            .post(url)
            .json(&Self::body(text))
            .send()
            .await
            .map_err(unavailable)?;
        let message = Self::answer(response).await?;
        Ok(message["id"].as_str().map(str::to_string))
    }

    async fn edit(&self, id: &str, text: &str) -> Result<(), ChatError> {
        let url = format!("{}/messages/{id}", self.url.expose());
        let response = self
            .http
            .patch(url)
            .json(&Self::body(text))
            .send()
            .await
            .map_err(unavailable)?;
        Self::answer(response).await.map(|_| ())
    }
}

// ---------------------------------------------------------------------------------------------
// Console

/// Prints what Telegram would show: the local demo's chat. Edits print again, marked.
pub struct Console {
    out: Mutex<Box<dyn Write + Send>>,
    next_id: Mutex<u64>,
}

impl Console {
    pub fn stdout() -> Self {
        Self::to(Box::new(std::io::stdout()))
    }

    pub fn to(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
            next_id: Mutex::new(0),
        }
    }
}

#[async_trait]
impl ChatChannel for Console {
    fn kind(&self) -> ChatKind {
        ChatKind::Console
    }

    async fn post(&self, text: &str) -> Result<Option<String>, ChatError> {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            *n
        };
        let mut out = self.out.lock().unwrap();
        let _ = writeln!(out, "┌─ chat message #{id}\n{}\n└─", indent(text));
        Ok(Some(id.to_string()))
    }

    async fn edit(&self, id: &str, text: &str) -> Result<(), ChatError> {
        let mut out = self.out.lock().unwrap();
        let _ = writeln!(out, "┌─ chat message #{id} (edited)\n{}\n└─", indent(text));
        Ok(())
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("│ {l}"))
        .collect::<Vec<_>>()
        .join("\n")
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

    #[tokio::test]
    async fn slack_and_discord_answers_are_classified() {
        let server = MockServer::start().await;
        Mock::given(path("/slack/limited"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3"))
            .mount(&server)
            .await;
        Mock::given(path("/slack/bad"))
            .respond_with(ResponseTemplate::new(400).set_body_string("invalid_payload"))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/discord/1/tok"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "99"})))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/discord/1/tok/messages/99"))
            .respond_with(ResponseTemplate::new(429).set_body_json(json!({"message": "You are being rate limited.", "retry_after": 1.2, "global": false})))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/discord/1/tok/messages/98"))
            .respond_with(
                ResponseTemplate::new(404)
                    .set_body_json(json!({"message": "Unknown Message", "code": 10008})),
            )
            .mount(&server)
            .await;
        Mock::given(path("/slack/down"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let http = reqwest::Client::new();
        let slack = |p: &str| {
            Slack::new(
                http.clone(),
                SecretString::new(format!("{}/slack/{p}", server.uri())),
            )
        };
        assert!(
            matches!(slack("limited").post("x").await, Err(ChatError::RateLimited { retry_after }) if retry_after == Duration::from_secs(3))
        );
        assert!(
            matches!(slack("bad").post("x").await, Err(ChatError::Rejected(r)) if r.contains("invalid_payload"))
        );
        assert!(matches!(
            slack("down").post("x").await,
            Err(ChatError::Unavailable(_))
        ));
        let discord = Discord::new(
            http.clone(),
            SecretString::new(format!("{}/discord/1/tok", server.uri())),
        );
        assert_eq!(discord.post("x").await.unwrap(), Some("99".into()));
        assert!(
            matches!(discord.edit("99", "x").await, Err(ChatError::RateLimited { retry_after }) if retry_after == Duration::from_secs(2))
        );
        assert!(matches!(
            discord.edit("98", "x").await,
            Err(ChatError::MessageGone)
        ));
        let sent: Value = serde_json::from_slice(
            &server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .find(|r| r.url.path() == "/discord/1/tok")
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(sent["allowed_mentions"], json!({"parse": []}));
    }

    #[tokio::test]
    async fn a_timeout_is_unavailable() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
            .mount(&server)
            .await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let slack = Slack::new(http, SecretString::new(format!("{}/x", server.uri())));
        assert!(matches!(
            slack.post("x").await,
            Err(ChatError::Unavailable(_))
        ));
    }
}
