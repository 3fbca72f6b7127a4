//! The Lambda binary: wire the adapters once, then dispatch builds, results and sweeps.

use std::sync::Arc;

use build_dispatch::codebuild::aws::CodeBuild;
use build_dispatch::{Deps, handle};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::batch::deadline_from_epoch_ms;
use shared::bootstrap::{Bootstrap, DEAD_LETTER_QUEUE_URL, DEPLOY_QUEUE_URL, NOTIFY_QUEUE_URL};
use shared::ports::SystemClock;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env().await?;
    let http = boot.http_client()?;
    let github = boot.github(http)?;
    let deps = Deps {
        builds: Arc::new(CodeBuild::new(aws_sdk_codebuild::Client::new(&boot.aws))),
        github: Arc::new(github),
        state: boot.state_store()?,
        deploys: boot.queue(DEPLOY_QUEUE_URL)?,
        notify: boot.queue(NOTIFY_QUEUE_URL)?,
        redelivery: boot.redelivery(),
        dead_letters: boot.optional_queue(DEAD_LETTER_QUEUE_URL),
        event_dead_letters: boot.optional_queue("EVENTS_DEAD_LETTER_QUEUE_URL"),
        clock: Arc::new(SystemClock),
        region: boot.region(),
        config: boot.config.clone(),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deadline = deadline_from_epoch_ms(event.context.deadline);
        handle(&deps, event.payload, Some(deadline))
    }))
    .await
}
