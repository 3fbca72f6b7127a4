//! The Lambda binary: wire the adapters once, then dispatch builds, results and sweeps.

use std::sync::Arc;

use build_dispatch::codebuild::aws::CodeBuild;
use build_dispatch::{Deps, handle};
use lambda_runtime::Error;
use shared::bootstrap::{Bootstrap, DEPLOY_QUEUE_URL, NOTIFY_QUEUE_URL, serve};
use shared::ports::SystemClock;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env().await?;
    let github = boot.github(boot.http_client()?)?;
    let deps = Deps {
        builds: Arc::new(CodeBuild::new(aws_sdk_codebuild::Client::new(&boot.aws))),
        github: Arc::new(github),
        state: boot.state_store()?,
        deploys: boot.queue(DEPLOY_QUEUE_URL)?,
        notify: boot.queue(NOTIFY_QUEUE_URL)?,
        handoff: boot.handoff(),
        event_dead_letters: boot.optional_queue("EVENTS_DEAD_LETTER_QUEUE_URL"),
        clock: Arc::new(SystemClock),
        region: boot.region(),
        config: boot.config.clone(),
    };
    serve(|event, deadline| handle(&deps, event, Some(deadline))).await
}
