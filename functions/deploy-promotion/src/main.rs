//! The Lambda binary: wire GitHub and the deploy targets once, then release.

use std::sync::Arc;

use deploy_promotion::targets::{Heroku, Hook, Targets};
use deploy_promotion::{Deps, Follow, handle_batch};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::batch::deadline_from_epoch_ms;
use shared::bootstrap::{Bootstrap, DEAD_LETTER_QUEUE_URL, NOTIFY_QUEUE_URL};
use shared::ports::SystemClock;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env().await?;
    let http = boot.http_client()?;
    let heroku = boot.secrets.get("heroku_api_key").map(|key| {
        Arc::new(Heroku::new(
            http.clone(),
            &boot.api_url(
                shared::bootstrap::HEROKU_API_URL,
                deploy_promotion::targets::HEROKU_PUBLIC_API,
            ),
            key.clone(),
        )) as _
    });
    let deps = Deps {
        github: Arc::new(boot.github(http.clone())?),
        deployer: Arc::new(Targets {
            heroku,
            hook: Arc::new(Hook::new(http, boot.secrets.clone())),
            command: None,
        }),
        state: boot.state_store()?,
        notify: boot.queue(NOTIFY_QUEUE_URL)?,
        redelivery: boot.redelivery(),
        dead_letters: boot.optional_queue(DEAD_LETTER_QUEUE_URL),
        clock: Arc::new(SystemClock),
        follow: Follow::default(),
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
