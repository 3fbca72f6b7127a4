//! `shipline setup telegram`: finds the chat (and forum topic) a Telegram channel of the config
//! should name, by a one-time code someone sends there, instead of reading ids out of
//! `getUpdates` by hand.
//!
//! Bot API facts this relies on (core.telegram.org/bots/api): `getMe` names the bot; while a
//! webhook is set, `getUpdates` answers 409, so `getWebhookInfo` is asked first; `getUpdates`
//! long-polls with `timeout` and confirms what it returned when called with a higher `offset`.
//! With privacy mode on (the default in groups), a bot only sees commands addressed to it, so
//! the code is sent as `/shipline@<bot> <code>`.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use std::collections::BTreeSet;

use shared::config::{Channel, Config};
use shared::secrets::SecretString;

use super::{Action, Change, Step, WebhookSecret};
use crate::stack::{Stack, StackSecret};
use crate::ui::Ui;

/// Where the code was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub chat_id: i64,
    pub topic_id: Option<i64>,
    pub title: Option<String>,
}

#[derive(Deserialize)]
struct Answer<T> {
    ok: bool,
    result: Option<T>,
    description: Option<String>,
}

#[derive(Deserialize)]
struct Bot {
    username: String,
}

/// Bot API *WebhookInfo*: where updates go, how many wait, and the last delivery error.
#[derive(Debug, Deserialize)]
pub struct WebhookInfo {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub pending_update_count: u64,
    /// Unix time of the most recent delivery error.
    #[serde(default)]
    pub last_error_date: Option<i64>,
    #[serde(default)]
    pub last_error_message: Option<String>,
    /// Absent: Telegram's default, every update type but chat_member and reactions.
    #[serde(default)]
    pub allowed_updates: Option<Vec<String>>,
}

impl WebhookInfo {
    /// Whether chat-ops gets the updates it answers (messages and button presses).
    pub fn delivers_what_chatops_needs(&self) -> bool {
        self.allowed_updates.as_ref().is_none_or(|allowed| {
            chat_ops::telegram::ALLOWED_UPDATES
                .iter()
                .all(|u| allowed.iter().any(|a| a == u))
        })
    }
}

/// `setWebhook` for one bot: chat-ops' URL, the secret token it checks, the updates it answers.
#[derive(Debug)]
pub struct WebhookChange {
    api: BotApi,
    url: String,
    secret_token: SecretString,
}

impl WebhookChange {
    pub async fn apply(&self) -> anyhow::Result<()> {
        let _: bool = self
            .api
            .call(
                "setWebhook",
                json!({
                    "url": self.url,
                    "secret_token": self.secret_token.expose(),
                    "allowed_updates": chat_ops::telegram::ALLOWED_UPDATES,
                }),
            )
            .await?;
        Ok(())
    }
}

/// One step per bot of the config's Telegram channels: its webhook points at the stack's
/// `/telegram` with the stored secret token, or is set to. Telegram never shows the secret
/// token back, so a newly generated one is always set.
pub async fn webhook_steps(
    stack: &Stack,
    secret: &StackSecret,
    config: &Config,
    token: &WebhookSecret,
) -> Vec<Step> {
    let base = stack.api_url("TelegramApiUrl", "https://api.telegram.org");
    let Ok(url) = stack.output("TelegramWebhookUrl") else {
        return vec![Step::blocked(
            "telegram webhook",
            "the stack has no TelegramWebhookUrl output (it predates chat-ops)",
            format!("redeploy the stack: sam deploy --stack-name {}", stack.name),
        )];
    };
    let mut bots = BTreeSet::new();
    let mut steps = Vec::new();
    for channel in config.channels.values() {
        let Channel::Telegram(telegram) = channel else {
            continue;
        };
        let key = telegram.bot_token_secret();
        // A key the secret lacks is named by the secret's own step.
        let Some(bot_token) = secret.secrets.get(key).filter(|_| bots.insert(key)) else {
            continue;
        };
        let api = BotApi::new(&base, bot_token.expose().to_string());
        steps.push(webhook_step(api, key, url, token).await);
    }
    steps
}

/// The webhook URL of one bot: the stack's `/telegram`, with the bot's username, which names
/// its updates and tells its commands from another bot's.
pub fn webhook_url(stack_url: &str, username: &str) -> String {
    format!("{stack_url}?bot={username}")
}

async fn webhook_step(api: BotApi, key: &str, url: &str, token: &WebhookSecret) -> Step {
    let bot: Bot = match api.call("getMe", json!({})).await {
        Ok(bot) => bot,
        Err(e) => {
            return Step::blocked(
                format!("telegram webhook of the bot in {key}"),
                e.to_string(),
                format!("put the token @BotFather gave in the secret's {key}"),
            );
        }
    };
    let resource = format!("telegram webhook of @{}", bot.username);
    let url = &webhook_url(url, &bot.username);
    let info: WebhookInfo = match api.call("getWebhookInfo", json!({})).await {
        Ok(info) => info,
        Err(e) => {
            return Step::blocked(
                resource,
                e.to_string(),
                format!("put the token @BotFather gave in the secret's {key}"),
            );
        }
    };
    let mut differs = Vec::new();
    if info.url != *url {
        differs.push(if info.url.is_empty() {
            format!("url {url}")
        } else {
            format!("url {} → {url}", info.url)
        });
    }
    if token.generated {
        differs.push("secret token (new)".into());
    }
    if !info.delivers_what_chatops_needs() {
        differs.push("allowed_updates message, callback_query".into());
    }
    if differs.is_empty() {
        return Step::unchanged(resource);
    }
    let change = WebhookChange {
        api,
        url: url.to_string(),
        secret_token: token.value.clone(),
    };
    let change_kind = if info.url.is_empty() {
        Change::Create(differs)
    } else {
        Change::Update(differs)
    };
    Step::new(resource, change_kind, Action::TelegramWebhook(change))
}

#[derive(Deserialize)]
struct Update {
    update_id: i64,
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    chat: Chat,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    message_thread_id: Option<i64>,
    #[serde(default)]
    is_topic_message: bool,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
    #[serde(default)]
    title: Option<String>,
}

/// The Bot API of one bot. Its token never shows in a `Debug` print.
pub struct BotApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl BotApi {
    pub fn new(base: &str, token: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// One Bot API method; the error is Telegram's description.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        let url = format!("{}/bot{}/{method}", self.base, self.token);
        // The token is in the URL: an error names the method, never the URL.
        let response = self
            .http
            .post(url)
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("Telegram {method}: {}", e.without_url()))?;
        let answer: Answer<T> = response.json().await.map_err(|e| {
            anyhow::anyhow!("Telegram {method}: unreadable answer: {}", e.without_url())
        })?;
        match answer {
            Answer {
                ok: true,
                result: Some(result),
                ..
            } => Ok(result),
            Answer { description, .. } => bail!(
                "Telegram {method}: {}",
                description.unwrap_or_else(|| "refused".into())
            ),
        }
    }

    /// Waits up to `wait` for `/shipline@<bot> <code>` in a chat of the bot's.
    pub async fn find_chat(&self, code: &str, wait: Duration, ui: &Ui) -> anyhow::Result<Found> {
        let bot: Bot = self.call("getMe", json!({})).await?;
        let hook: WebhookInfo = self.call("getWebhookInfo", json!({})).await?;
        if !hook.url.is_empty() {
            bail!(
                "the bot has a webhook set, and Telegram gives no updates to getUpdates while it is: find the chat before setting the webhook, or remove it (deleteWebhook) and set it again after"
            );
        }
        ui.step(&format!(
            "send this in the group (or forum topic) where @{} is: /shipline@{} {code}",
            bot.username, bot.username
        ));
        let deadline = tokio::time::Instant::now() + wait;
        let mut offset = 0;
        while tokio::time::Instant::now() < deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let poll = left.as_secs().clamp(1, 25);
            let updates: Vec<Update> = self
                .call(
                    "getUpdates",
                    json!({ "offset": offset, "timeout": poll, "allowed_updates": ["message"] }),
                )
                .await?;
            for update in updates {
                offset = offset.max(update.update_id + 1);
                if let Some(found) = update.message.and_then(|m| matches(m, &bot.username, code)) {
                    // Confirm what was read, so the next getUpdates does not return it again.
                    let _: Vec<Update> = self
                        .call("getUpdates", json!({ "offset": offset, "timeout": 0 }))
                        .await?;
                    return Ok(found);
                }
            }
        }
        bail!(
            "no one sent the code within {}s; is the bot in the group?",
            wait.as_secs()
        )
    }
}

/// The chat of `message`, when it is the code addressed to this bot.
fn matches(message: Message, bot: &str, code: &str) -> Option<Found> {
    let text = message.text?;
    let mut words = text.split_whitespace();
    let command = words.next()?;
    let addressed =
        command == "/shipline" || command.eq_ignore_ascii_case(&format!("/shipline@{bot}"));
    (addressed && words.next() == Some(code)).then(|| Found {
        chat_id: message.chat.id,
        topic_id: message
            .is_topic_message
            .then_some(message.message_thread_id)
            .flatten(),
        title: message.chat.title,
    })
}

/// A six-digit code, different on each run: it only tells one chat's message from another's.
pub fn one_time_code() -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{:06}", random % 1_000_000)
}

/// The config line of a Telegram channel named `name` for `found`.
pub fn channel_line(name: &str, found: &Found) -> String {
    let topic = found
        .topic_id
        .map(|t| format!(", topic_id: {t}"))
        .unwrap_or_default();
    format!(
        "  {name}: {{ telegram: {{ chat_id: {}{topic} }} }}",
        found.chat_id
    )
}

/// Adds the channel to the config file's `channels:` (or a new `channels:` at its end). A
/// channel of that name already there is left as it is, and said.
pub fn add_channel(text: &str, name: &str, found: &Found) -> anyhow::Result<String> {
    let line = channel_line(name, found);
    let lines: Vec<&str> = text.lines().collect();
    let Some(at) = lines.iter().position(|l| l.trim_end() == "channels:") else {
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        return Ok(format!("{text}{sep}channels:\n{line}\n"));
    };
    let block_end = lines[at + 1..]
        .iter()
        .position(|l| !l.is_empty() && !l.starts_with(' ') && !l.starts_with('#'))
        .map_or(lines.len(), |i| at + 1 + i);
    let prefix = format!("  {name}:");
    if lines[at + 1..block_end]
        .iter()
        .any(|l| l.starts_with(&prefix))
    {
        bail!(
            "the config already has a channel `{name}`: set its chat_id to {} by hand, or name another with --channel",
            found.chat_id
        );
    }
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_string()).collect();
    out.insert(at + 1, line);
    Ok(out.join("\n") + "\n")
}

/// `shipline setup telegram`.
pub async fn telegram(
    api: &BotApi,
    wait: Duration,
    channel: &str,
    write: Option<&Path>,
    ui: &Ui,
) -> anyhow::Result<()> {
    let found = api.find_chat(&one_time_code(), wait, ui).await?;
    ui.done(&format!(
        "found {}: chat_id {}{}",
        found.title.as_deref().unwrap_or("the chat"),
        found.chat_id,
        found
            .topic_id
            .map(|t| format!(", topic_id {t}"))
            .unwrap_or_default()
    ));
    let Some(file) = write else {
        println!("channels:\n{}", channel_line(channel, &found));
        return Ok(());
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let updated = add_channel(&text, channel, &found)?;
    serde_saphyr::from_str::<serde_json::Value>(&updated).map_err(|e| {
        anyhow::anyhow!(
            "{} would not stay valid YAML; not written: {e}",
            file.display()
        )
    })?;
    std::fs::write(file, updated).with_context(|| format!("cannot write {}", file.display()))?;
    ui.done(&format!(
        "added channel `{channel}` to {}; push it with `shipline config push`",
        file.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn found() -> Found {
        Found {
            chat_id: -1_001_234_567_890,
            topic_id: Some(7),
            title: Some("Pax team".into()),
        }
    }

    fn ok(result: serde_json::Value) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": result}))
    }

    /// A supergroup's forum topic, as `getUpdates` returns a message in it (Bot API, *Message*).
    fn update(id: i64, text: &str) -> serde_json::Value {
        json!({"update_id": id, "message": {"message_id": id, "date": 1_764_480_000,
            "chat": {"id": -1_001_234_567_890_i64, "type": "supergroup", "title": "Pax team", "is_forum": true},
            "message_thread_id": 7, "is_topic_message": true, "text": text}})
    }

    #[tokio::test]
    async fn the_chat_and_topic_the_code_was_sent_in_are_found() {
        let server = MockServer::start().await;
        Mock::given(path("/bot42:tok/getMe"))
            .respond_with(ok(
                json!({"id": 42, "is_bot": true, "username": "pax_ship_bot"}),
            ))
            .mount(&server)
            .await;
        Mock::given(path("/bot42:tok/getWebhookInfo"))
            .respond_with(ok(json!({"url": "", "pending_update_count": 0})))
            .mount(&server)
            .await;
        Mock::given(path("/bot42:tok/getUpdates"))
            .respond_with(ok(json!([
                update(10, "hello"),
                update(11, "/shipline@pax_ship_bot 000000"),
                update(12, "/shipline@pax_ship_bot 482913"),
            ])))
            .mount(&server)
            .await;
        let api = BotApi::new(&server.uri(), "42:tok".into());
        let got = api
            .find_chat("482913", Duration::from_secs(5), &Ui::new())
            .await
            .unwrap();
        assert_eq!(got, found());
        let confirmed: serde_json::Value = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path().ends_with("/getUpdates"))
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .next_back()
            .unwrap();
        assert_eq!(confirmed["offset"], 13, "what was read is confirmed");
    }

    #[tokio::test]
    async fn a_bot_with_a_webhook_is_told_why_no_update_comes() {
        let server = MockServer::start().await;
        Mock::given(path("/bot42:tok/getMe"))
            .respond_with(ok(json!({"id": 42, "is_bot": true, "username": "b"})))
            .mount(&server)
            .await;
        Mock::given(path("/bot42:tok/getWebhookInfo"))
            .respond_with(ok(
                json!({"url": "https://x.example/telegram", "pending_update_count": 0}),
            ))
            .mount(&server)
            .await;
        let api = BotApi::new(&server.uri(), "42:tok".into());
        let err = api
            .find_chat("1", Duration::from_secs(1), &Ui::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("webhook set"), "{err}");
        assert!(!err.to_string().contains("42:tok"), "no token in errors");
    }

    #[test]
    fn the_channel_goes_into_the_configs_channels_and_a_taken_name_is_refused() {
        let config = "# the team\nchannels:\n  ops: { slack: { webhook_secret: s } }\n\ndefaults:\n  notify: [ops]\n";
        let updated = add_channel(config, "team", &found()).unwrap();
        assert_eq!(
            updated,
            "# the team\nchannels:\n  team: { telegram: { chat_id: -1001234567890, topic_id: 7 } }\n  ops: { slack: { webhook_secret: s } }\n\ndefaults:\n  notify: [ops]\n"
        );
        assert!(add_channel(&updated, "team", &found()).is_err());
        assert_eq!(
            add_channel("repos: {}", "team", &found()).unwrap(),
            "repos: {}\nchannels:\n  team: { telegram: { chat_id: -1001234567890, topic_id: 7 } }\n"
        );
    }

    #[test]
    fn codes_are_six_digits() {
        let code = one_time_code();
        assert_eq!(code.len(), 6);
        assert!(code.chars().all(|c| c.is_ascii_digit()));
    }
}
