//! The Telegram channels: each bot's token and webhook, and whether it may post in its chat
//! (`getChat` / `getChatMember`: no message is sent).

use serde::Deserialize;
use serde_json::json;
use shared::config::{Channel, Config};
use time::OffsetDateTime;

use super::Check;
use crate::commands::setup::telegram::{BotApi, WebhookInfo, webhook_url};
use crate::stack::{Stack, StackSecret};

#[derive(Deserialize)]
struct BotUser {
    id: i64,
    username: Option<String>,
}

#[derive(Deserialize)]
struct ChatInfo {
    #[serde(default)]
    is_forum: bool,
}

#[derive(Deserialize)]
struct Member {
    status: String,
    #[serde(default)]
    can_send_messages: Option<bool>,
}

pub(super) async fn telegram_checks(
    stack: &Stack,
    secret: &StackSecret,
    config: &Config,
) -> Vec<Check> {
    let base = stack.api_url("TelegramApiUrl", "https://api.telegram.org");
    let mut checks = Vec::new();
    let mut bots = std::collections::BTreeSet::new();
    for (channel_name, channel) in &config.channels {
        let Channel::Telegram(telegram) = channel else {
            continue;
        };
        let name = format!("telegram channel {channel_name}");
        let Some(token) = secret.secrets.get(telegram.bot_token_secret()) else {
            continue; // the secret check names it
        };
        let api = BotApi::new(&base, token.expose().to_string());
        let bot: BotUser = match api.call("getMe", json!({})).await {
            Ok(bot) => bot,
            Err(e) => {
                checks.push(Check::fail(
                    name,
                    format!("the bot token is refused: {e}"),
                    "put the token @BotFather gave in the secret",
                ));
                continue;
            }
        };
        let handle = bot
            .username
            .map_or_else(|| "the bot".into(), |u| format!("@{u}"));
        if bots.insert(telegram.bot_token_secret()) {
            let username = handle.trim_start_matches('@');
            checks.push(bot_webhook_check(stack, &api, &handle, username).await);
        }
        let chat = json!({"chat_id": telegram.chat_id});
        let info: ChatInfo = match api.call("getChat", chat).await {
            Ok(info) => info,
            Err(e) => {
                checks.push(Check::fail(
                    name,
                    format!("{handle} cannot see chat {}: {e}", telegram.chat_id),
                    format!("add {handle} to the group, or fix chat_id (shipline setup telegram finds it)"),
                ));
                continue;
            }
        };
        let member = json!({"chat_id": telegram.chat_id, "user_id": bot.id});
        let check = match api.call::<Member>("getChatMember", member).await {
            Ok(m) if m.status == "left" || m.status == "kicked" => Check::fail(
                name,
                format!(
                    "{handle} is not in chat {} ({})",
                    telegram.chat_id, m.status
                ),
                format!("add {handle} to the group again"),
            ),
            Ok(m) if m.status == "restricted" && m.can_send_messages == Some(false) => Check::fail(
                name,
                format!("{handle} may not post in chat {}", telegram.chat_id),
                format!("let {handle} send messages (group settings → Permissions)"),
            ),
            Ok(_) if telegram.topic_id.is_some() && !info.is_forum => Check::fail(
                name,
                format!(
                    "chat {} has no topics, but topic_id is set",
                    telegram.chat_id
                ),
                "remove topic_id, or turn topics on in the group",
            ),
            Ok(m) => Check::pass(
                name,
                format!(
                    "{handle} can post in chat {} ({})",
                    telegram.chat_id, m.status
                ),
            ),
            Err(e) => Check::fail(name, e.to_string(), format!("add {handle} to the group")),
        };
        checks.push(check);
    }
    checks
}

/// The bot's webhook (`getWebhookInfo`): chat-ops' URL, the updates it answers, and no recent
/// delivery error.
async fn bot_webhook_check(stack: &Stack, api: &BotApi, handle: &str, username: &str) -> Check {
    let name = format!("telegram webhook of {handle}");
    let fix = format!("shipline setup --stack {}", stack.name);
    let Ok(want) = stack.output("TelegramWebhookUrl") else {
        return Check::fail(
            name,
            "the stack has no /telegram route (it predates chat-ops)",
            format!("sam deploy --stack-name {}, then {fix}", stack.name),
        );
    };
    let want = webhook_url(want, username);
    let info: WebhookInfo = match api.call("getWebhookInfo", json!({})).await {
        Ok(info) => info,
        Err(e) => return Check::fail(name, e.to_string(), fix),
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    match info {
        WebhookInfo { ref url, .. } if url.is_empty() => Check::fail(
            name,
            "no webhook is set: the chat's commands and buttons reach nobody",
            fix,
        ),
        WebhookInfo { ref url, .. } if *url != want => Check::fail(
            name,
            format!("updates go to {url}, not to the stack ({want})"),
            fix,
        ),
        ref info if !info.delivers_what_chatops_needs() => Check::fail(
            name,
            "allowed_updates leaves out messages or button presses",
            fix,
        ),
        WebhookInfo {
            last_error_date: Some(at),
            last_error_message: Some(ref message),
            pending_update_count,
            ..
        } if now - at < 3600 => Check::fail(
            name,
            format!(
                "Telegram's last delivery failed {} min ago: {message} ({pending_update_count} update(s) waiting)",
                (now - at) / 60
            ),
            format!(
                "a 401 means the secret token differs from the secret's telegram_webhook_secret: {fix} sets it again; otherwise read the ChatOpsFunction's logs"
            ),
        ),
        WebhookInfo {
            pending_update_count,
            ..
        } => Check::pass(
            name,
            format!("updates go to the stack ({pending_update_count} waiting)"),
        ),
    }
}
