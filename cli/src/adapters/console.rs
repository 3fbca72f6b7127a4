//! The console channel: prints what Telegram would show, for `shipline demo` and `serve`. It
//! is linked only into the `shipline` command, never into a Lambda function.

use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;
use notifier::chat::{ChatChannel, ChatError, ChatKind};

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
        ChatKind::Plain
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
