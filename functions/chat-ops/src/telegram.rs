//! What Telegram sends (an *Update*, <https://core.telegram.org/bots/api#update>) and what
//! chat-ops answers: one Bot API method in the webhook's response body ("Making requests when
//! getting updates"), so chat-ops holds no bot token and calls nobody.

use serde::Deserialize;
use serde_json::{Value, json};

/// The header Telegram sends the webhook's `secret_token` in (`setWebhook`).
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The update types chat-ops asks for (`setWebhook`'s `allowed_updates`).
pub const ALLOWED_UPDATES: [&str; 2] = ["message", "callback_query"];

/// Telegram's limit on a message's text (`sendMessage`: 1–4096 characters), counted as its
/// entity offsets are, in UTF-16 code units (Bot API, *MessageEntity*): an emoji outside the
/// Basic Multilingual Plane counts two.
pub const MAX_TEXT: usize = 4096;

/// A text's length as Telegram counts it against [`MAX_TEXT`].
fn length(text: &str) -> usize {
    text.encode_utf16().count()
}

/// An incoming update. At most one of its optional parts is present; those chat-ops does not
/// handle are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub callback_query: Option<CallbackQuery>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub message_id: i64,
    pub chat: Chat,
    /// Empty for messages to channels; a placeholder for an anonymous admin's.
    #[serde(default)]
    pub from: Option<User>,
    /// The group itself when an anonymous admin sent it.
    #[serde(default)]
    pub sender_chat: Option<Chat>,
    #[serde(default)]
    pub text: Option<String>,
    /// The forum topic, to answer inside it.
    #[serde(default)]
    pub message_thread_id: Option<i64>,
    #[serde(default)]
    pub is_topic_message: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    pub id: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub username: Option<String>,
}

impl User {
    /// How the person is named in the story and in GitHub: their @username (or first name),
    /// and the id that stays theirs when a username changes hands.
    pub fn attribution(&self) -> String {
        let name = match &self.username {
            Some(u) if !u.is_empty() => format!("@{u}"),
            _ if !self.first_name.is_empty() => self.first_name.clone(),
            _ => "someone".to_string(),
        };
        format!("{name} (Telegram {})", self.id)
    }
}

/// A button press. `message` is the message the button sits on (only `chat` and `message_id`
/// are read: a message too old to be shown whole still has them).
#[derive(Debug, Clone, Deserialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    #[serde(default)]
    pub message: Option<PressedOn>,
    /// Client input: only an id to look up, never trusted for more.
    #[serde(default)]
    pub data: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PressedOn {
    pub message_id: i64,
    pub chat: Chat,
}

/// The Bot API call to make with the webhook's answer (or none).
#[derive(Debug, Clone, PartialEq)]
pub struct Call(pub Option<Value>);

impl Call {
    pub fn nothing() -> Self {
        Self(None)
    }

    /// `sendMessage` in the chat (and topic) of `to`, replying to it, as HTML.
    pub fn reply(to: &Message, text: &str) -> Self {
        let mut body = json!({
            "method": "sendMessage",
            "chat_id": to.chat.id,
            "text": cut(text),
            "parse_mode": "HTML",
            "link_preview_options": { "is_disabled": true },
            "reply_parameters": { "message_id": to.message_id, "allow_sending_without_reply": true },
        });
        if to.is_topic_message == Some(true)
            && let Some(topic) = to.message_thread_id
        {
            body["message_thread_id"] = json!(topic);
        }
        Self(Some(body))
    }

    /// `answerCallbackQuery`: ends the button's progress bar, with a short notice (an alert
    /// box when `alert`). Telegram shows at most 200 characters.
    pub fn answer(query: &CallbackQuery, text: &str, alert: bool) -> Self {
        let text: String = text.chars().take(200).collect();
        Self(Some(json!({
            "method": "answerCallbackQuery",
            "callback_query_id": query.id,
            "text": text,
            "show_alert": alert,
        })))
    }

    /// What an update that cannot be handled is answered: said in the chat (or on the button),
    /// with the detail left to the logs.
    pub fn failure(update: &Update) -> Self {
        const TEXT: &str = "Sorry, shipline cannot do this now: a record it needs is unreadable \
                            or a request was refused. The ChatOps function's logs have the detail.";
        if let Some(query) = &update.callback_query {
            return Self::answer(query, TEXT, true);
        }
        match &update.message {
            Some(message) => Self::reply(message, TEXT),
            None => Self::nothing(),
        }
    }

    /// The response body: the call, or an empty object when there is none.
    pub fn body(&self) -> Value {
        self.0.clone().unwrap_or_else(|| json!({}))
    }
}

/// Keeps a reply within Telegram's 4096 (UTF-16 units), cut at a line break (each line closes
/// its own tags); a text with none is cut at its last tag or entity boundary.
fn cut(text: &str) -> String {
    if length(text) <= MAX_TEXT {
        return text.to_string();
    }
    // Room for the closing `…` (one unit).
    let mut room = MAX_TEXT - 1;
    let mut out: String = text
        .chars()
        .take_while(|c| {
            let fits = c.len_utf16() <= room;
            room = room.saturating_sub(c.len_utf16());
            fits
        })
        .collect();
    match out.rfind('\n') {
        Some(end) => out.truncate(end),
        None => {
            // Never end inside a tag or an entity: back to before the last `<` or `&` that is
            // not closed.
            let open = out
                .rfind(['<', '&'])
                .filter(|&at| !out[at..].contains(['>', ';']));
            if let Some(at) = open {
                out.truncate(at);
            }
        }
    }
    out.push('…');
    out
}

/// Telegram's HTML as plain text (a button's notice, a terminal): the tags dropped, the
/// entities read.
pub fn plain(html: &str) -> String {
    ["<b>", "</b>", "<code>", "</code>"]
        .iter()
        .fold(html.to_string(), |text, tag| text.replace(tag, ""))
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Text from people and configs, safe inside Telegram's HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_is_named_with_the_id_that_stays_theirs() {
        let user = |username: Option<&str>, first: &str| User {
            id: 42,
            is_bot: false,
            first_name: first.into(),
            username: username.map(Into::into),
        };
        assert_eq!(user(Some("ana"), "Ana").attribution(), "@ana (Telegram 42)");
        assert_eq!(user(None, "Ana").attribution(), "Ana (Telegram 42)");
        assert_eq!(user(None, "").attribution(), "someone (Telegram 42)");
    }

    #[test]
    fn a_long_reply_is_cut_at_a_line_within_the_limit() {
        let text = "line\n".repeat(2000);
        let out = cut(&text);
        assert!(length(&out) <= MAX_TEXT);
        assert!(
            out.ends_with("line\n…") || out.ends_with("line…"),
            "{}",
            &out[out.len() - 10..]
        );
    }

    #[test]
    fn a_reply_of_emoji_is_cut_as_telegram_counts_it() {
        // 3,000 emoji are 3,000 characters but 6,000 UTF-16 units: Telegram refuses them.
        let text = format!("{}\n{}", "🚀".repeat(1500), "🔥".repeat(1500));
        let out = cut(&text);
        assert!(length(&out) <= MAX_TEXT, "{} units", length(&out));
        assert!(out.starts_with("🚀") && out.ends_with('…'));
        let unbroken = "🚀".repeat(3000);
        let out = cut(&unbroken);
        assert!(length(&out) <= MAX_TEXT, "{} units", length(&out));
        assert_eq!(out.chars().count(), 2048, "2,047 emoji and the ellipsis");
    }
}
