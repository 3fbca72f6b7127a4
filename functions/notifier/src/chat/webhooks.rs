//! Slack and Discord incoming webhooks: the URL is the credential.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use shared::secrets::SecretString;

use super::{ChatChannel, ChatError, ChatKind, classify, read, unavailable};

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

    /// A success's body as `T`, or the error the answer describes.
    async fn answer<T: DeserializeOwned + Default>(
        response: reqwest::Response,
    ) -> Result<T, ChatError> {
        let (status, header_retry, text) = read(response).await?;
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or_default());
        }
        // An answer that is not Discord's JSON (a proxy's error page) says nothing more than
        // its status.
        let error: DiscordError = serde_json::from_str(&text).unwrap_or_default();
        if status == StatusCode::NOT_FOUND && error.code == Some(UNKNOWN_MESSAGE) {
            return Err(ChatError::MessageGone);
        }
        let retry_after = error
            .retry_after
            .map(|s| Duration::from_secs_f64(s.max(0.0).ceil().max(1.0)))
            .or(header_retry);
        let reason = error.message.unwrap_or_else(|| "no message".to_string());
        Err(classify(status, retry_after, reason))
    }
}

/// Discord's JSON error code for a message that does not exist (any more).
const UNKNOWN_MESSAGE: u64 = 10008;

/// An error answer (<https://discord.com/developers/docs/topics/opcodes-and-status-codes>);
/// a 429 adds `retry_after` in seconds, with fractions.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DiscordError {
    message: Option<String>,
    code: Option<u64>,
    retry_after: Option<f64>,
}

/// The message a webhook posted with `?wait=true`; only its id is kept, to edit it later.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PostedMessage {
    id: Option<String>,
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
        let message: PostedMessage = Self::answer(response).await?;
        Ok(message.id)
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
        Self::answer::<IgnoredAny>(response).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

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
