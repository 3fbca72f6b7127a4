//! Slack and Discord incoming webhooks: the URL is the credential.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use shared::messages::ChatButton;
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

    /// An incoming webhook takes no interactive buttons: the text alone.
    async fn post_with(
        &self,
        text: &str,
        _buttons: &[ChatButton],
    ) -> Result<Option<String>, ChatError> {
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

    async fn edit_with(
        &self,
        _id: &str,
        _text: &str,
        _buttons: &[ChatButton],
    ) -> Result<(), ChatError> {
        Err(ChatError::MessageGone)
    }
}

// ---------------------------------------------------------------------------------------------
// Discord

pub struct Discord {
    http: reqwest::Client,
    url: SecretString,
}

/// The Discord API version shipline speaks. A webhook URL as Discord shows it has no version
/// (`/api/webhooks/{id}/{token}`) and reaches the old default, v6, whose `retry_after` and
/// `Retry-After` are milliseconds; from v8 on they are seconds, with fractions
/// (discord/discord-api-docs #2360 and #4722, and each version's *Rate Limits* page).
pub const DISCORD_API_VERSION: &str = "v10";

impl Discord {
    pub fn new(http: reqwest::Client, url: SecretString) -> Self {
        Self { http, url }
    }

    /// The webhook's URL at [`DISCORD_API_VERSION`], `suffix` appended to its path and `wait`
    /// added to its query; the user's own query (`thread_id` for a forum thread) is kept.
    fn endpoint(&self, suffix: &str, wait: bool) -> Result<reqwest::Url, ChatError> {
        // The URL is the credential: an error says what is wrong with it, never what it is.
        let mut url = reqwest::Url::parse(self.url.expose()).map_err(|e| {
            ChatError::Rejected(format!("the Discord webhook URL is not a URL: {e}"))
        })?;
        let path = url.path().trim_end_matches('/').to_string();
        // `/api/webhooks/…`, or already versioned (`/api/v9/webhooks/…`): pinned to ours.
        let is_version = |v: &str| v.strip_prefix('v').is_some_and(|n| n.parse::<u8>().is_ok());
        let rest = path
            .strip_prefix("/api/")
            .map(|rest| match rest.split_once('/') {
                Some((version, rest)) if is_version(version) => rest,
                _ => rest,
            });
        let path = match rest {
            Some(rest) => format!("/api/{DISCORD_API_VERSION}/{rest}{suffix}"),
            None => format!("{path}{suffix}"),
        };
        url.set_path(&path);
        if wait {
            url.query_pairs_mut().append_pair("wait", "true");
        }
        Ok(url)
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
/// a 429 adds `retry_after`, in seconds with fractions at the version shipline calls.
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

    /// A webhook message's components need an application: the text alone.
    async fn post_with(
        &self,
        text: &str,
        _buttons: &[ChatButton],
    ) -> Result<Option<String>, ChatError> {
        let url = self.endpoint("", true)?;
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

    async fn edit_with(
        &self,
        id: &str,
        text: &str,
        _buttons: &[ChatButton],
    ) -> Result<(), ChatError> {
        let url = self.endpoint(&format!("/messages/{id}"), false)?;
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

    /// Discord's webhook endpoint as its versions differ: an unversioned path gets the old
    /// default (v6), whose 429 `retry_after` and `Retry-After` are milliseconds; v10's are
    /// seconds with fractions (discord-api-docs #2360 and #4722; *Rate Limits*, per version).
    async fn discord_fake() -> MockServer {
        let server = MockServer::start().await;
        let limited = |retry_after: f64, header: &str| {
            ResponseTemplate::new(429)
                .insert_header("retry-after", header)
                .set_body_json(json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": false}))
        };
        Mock::given(path("/api/webhooks/1/tok"))
            .respond_with(limited(1500.0, "1500"))
            .mount(&server)
            .await;
        Mock::given(path("/api/v10/webhooks/1/tok"))
            .respond_with(limited(1.5, "2"))
            .mount(&server)
            .await;
        server
    }

    #[tokio::test]
    async fn discord_is_called_at_v10_with_the_users_thread_and_its_wait_read_in_seconds() {
        let server = discord_fake().await;
        for copied in [
            "/api/webhooks/1/tok?thread_id=77",
            "/api/v9/webhooks/1/tok/?thread_id=77",
        ] {
            let discord = Discord::new(
                reqwest::Client::new(),
                SecretString::new(format!("{}{copied}", server.uri())),
            );
            assert!(
                matches!(discord.post("x").await, Err(ChatError::RateLimited { retry_after }) if retry_after == Duration::from_secs(2)),
                "{copied}: a 1.5 s wait, not 25 minutes"
            );
        }
        for request in server.received_requests().await.unwrap() {
            assert_eq!(request.url.path(), "/api/v10/webhooks/1/tok");
            assert_eq!(request.url.query(), Some("thread_id=77&wait=true"));
        }
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
