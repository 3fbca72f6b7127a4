//! The console channel: prints what Telegram would show, for `shipline demo` and `serve`. It
//! is linked only into the `shipline` command, never into a Lambda function.

use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;
use notifier::chat::{ChatChannel, ChatError, ChatKind};
use shared::messages::ChatButton;

/// Prints what Telegram would show: the local demo's chat. Edits print again, marked.
pub struct Console {
    out: Mutex<Box<dyn Write + Send>>,
    next_id: Mutex<u64>,
    /// The buttons each message shows now, by message id: what a person could press.
    buttons: Mutex<Vec<(String, ChatButton)>>,
}

impl Console {
    pub fn stdout() -> Self {
        Self::to(Box::new(std::io::stdout()))
    }

    pub fn to(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
            next_id: Mutex::new(0),
            buttons: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl ChatChannel for Console {
    fn kind(&self) -> ChatKind {
        ChatKind::Plain
    }

    async fn post_with(
        &self,
        text: &str,
        buttons: &[ChatButton],
    ) -> Result<Option<String>, ChatError> {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            n.to_string()
        };
        self.show(&id, "", text, buttons);
        Ok(Some(id))
    }

    async fn edit_with(
        &self,
        id: &str,
        text: &str,
        buttons: &[ChatButton],
    ) -> Result<(), ChatError> {
        self.show(id, " (edited)", text, buttons);
        Ok(())
    }
}

impl Console {
    fn show(&self, id: &str, note: &str, text: &str, buttons: &[ChatButton]) {
        let keys: String = buttons
            .iter()
            .map(|b| format!("│ [ {} ]\n", b.label))
            .collect();
        let mut out = self.out.lock().unwrap();
        let _ = writeln!(
            out,
            "┌─ chat message #{id}{note}\n{}\n{keys}└─",
            indent(text)
        );
        let mut shown = self.buttons.lock().unwrap();
        shown.retain(|(message, _)| message != id);
        shown.extend(buttons.iter().map(|b| (id.to_string(), b.clone())));
    }

    /// The buttons the chat shows now, with the id of the message each sits under.
    pub fn buttons(&self) -> Vec<(String, ChatButton)> {
        self.buttons.lock().unwrap().clone()
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("│ {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
