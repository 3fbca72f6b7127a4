//! The Lambda binary: wire the adapters once, then serve deliveries.

use std::sync::Arc;

use lambda_http::{Error, service_fn};
use shared::bootstrap::{BUILD_QUEUE_URL, Bootstrap};
use shared::ports::SystemClock;
use webhook_intake::{Deps, handle};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env_warm(BUILD_QUEUE_URL).await?;
    let deps = Deps {
        webhook_secret: boot.secrets.require("github_webhook_secret")?.clone(),
        builds: boot.queue(BUILD_QUEUE_URL)?,
        state: boot.state_store()?,
        config: boot.config.clone(),
        clock: Arc::new(SystemClock),
    };
    lambda_http::run(service_fn(|request| handle(&deps, request))).await
}
