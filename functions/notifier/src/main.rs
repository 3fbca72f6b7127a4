//! The Lambda binary: wire the chat adapters once, then deliver notifications.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::Error;
use notifier::{Deps, channels_from_config, handle_batch};
use shared::bootstrap::{Bootstrap, serve};
use shared::ports::SystemClock;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env().await?;
    let http = boot.http_client()?;
    let deps = Deps {
        channels: channels_from_config(
            &boot.config,
            &boot.secrets,
            &http,
            &boot.api_url(
                shared::bootstrap::TELEGRAM_API_URL,
                notifier::chat::TELEGRAM_PUBLIC_API,
            ),
        )?,
        state: boot.state_store()?,
        handoff: boot.handoff(),
        clock: Arc::new(SystemClock),
        config: boot.config.clone(),
    };
    let deps = &deps;
    serve(|event: SqsEvent, deadline| async move {
        Ok::<_, Error>(handle_batch(deps, &event, Some(deadline)).await)
    })
    .await
}
