//! The Lambda binary: wire the queues and state once, then answer Telegram.

use std::sync::Arc;

use chat_ops::{Deps, handle};
use lambda_http::{Error, service_fn};
use shared::bootstrap::{Bootstrap, DEAD_LETTER_QUEUES, DEPLOY_QUEUE_URL, NOTIFY_QUEUE_URL};
use shared::ports::SystemClock;
use shared::secrets::SecretString;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env_warm(DEPLOY_QUEUE_URL).await?;
    let deps = Deps {
        // Without it (no Telegram chat in the config, setup not run) every update is refused:
        // nobody can prove to be Telegram.
        webhook_secret: boot
            .secrets
            .get("telegram_webhook_secret")
            .cloned()
            .unwrap_or_else(|| SecretString::new("")),
        deploys: boot.queue(DEPLOY_QUEUE_URL)?,
        notify: boot.queue(NOTIFY_QUEUE_URL)?,
        dead_letters: boot.named_queues(DEAD_LETTER_QUEUES)?,
        state: boot.state_store()?,
        clock: Arc::new(SystemClock),
        config: boot.config.clone(),
    };
    lambda_http::run(service_fn(|request| handle(&deps, request))).await
}
