//! The Lambda binary: wire the chat adapters once, then deliver notifications.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use notifier::{Deps, channels_from_config, handle_batch};
use shared::batch::deadline_from_epoch_ms;
use shared::bootstrap::{Bootstrap, DEAD_LETTER_QUEUE_URL};
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
        redelivery: boot.redelivery(),
        dead_letters: boot.optional_queue(DEAD_LETTER_QUEUE_URL),
        clock: Arc::new(SystemClock),
        config: boot.config.clone(),
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async move {
            let deadline = deadline_from_epoch_ms(event.context.deadline);
            Ok::<_, Error>(handle_batch(deps, &event.payload, Some(deadline)).await)
        },
    ))
    .await
}
