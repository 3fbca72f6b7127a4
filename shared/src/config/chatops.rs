//! `chatops`: who may act from the Telegram group, by Telegram user id and power.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// ChatOps: everyone in a configured Telegram chat may read `/status`; only the Telegram user
/// ids listed for an action may take it (`/deploy`, `/rollback`, `/promote` and the buttons).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatOps {
    #[serde(default)]
    pub allow: ChatOpsAllow,
}

/// Telegram user ids (numbers, as `from.id` gives them; a username can change hands).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatOpsAllow {
    #[serde(default)]
    pub deploy: Vec<Spanned<i64>>,
    #[serde(default)]
    pub rollback: Vec<Spanned<i64>>,
    #[serde(default)]
    pub promote: Vec<Spanned<i64>>,
}

/// What a person may do from the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatPower {
    Deploy,
    Rollback,
    Promote,
}

impl ChatPower {
    /// What a person does: "roll back".
    pub fn verb(self) -> &'static str {
        match self {
            ChatPower::Deploy => "deploy",
            ChatPower::Rollback => "roll back",
            ChatPower::Promote => "promote",
        }
    }

    /// Its key under `chatops.allow`.
    pub fn key(self) -> &'static str {
        match self {
            ChatPower::Deploy => "deploy",
            ChatPower::Rollback => "rollback",
            ChatPower::Promote => "promote",
        }
    }
}

impl ChatOps {
    fn ids(&self, power: ChatPower) -> &[Spanned<i64>] {
        match power {
            ChatPower::Deploy => &self.allow.deploy,
            ChatPower::Rollback => &self.allow.rollback,
            ChatPower::Promote => &self.allow.promote,
        }
    }

    /// Whether Telegram user `user` may take actions of this kind.
    pub fn may(&self, power: ChatPower, user: i64) -> bool {
        self.ids(power).iter().any(|id| id.value == user)
    }

    /// Whether anyone may act at all.
    pub fn enabled(&self) -> bool {
        [ChatPower::Deploy, ChatPower::Rollback, ChatPower::Promote]
            .into_iter()
            .any(|p| !self.ids(p).is_empty())
    }
}
