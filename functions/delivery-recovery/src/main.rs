//! The Lambda binary: wire GitHub and the state table once, then sweep on each schedule tick.

use std::sync::Arc;

use delivery_recovery::{Deps, sweep};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::bootstrap::{BUILD_QUEUE_URL, Bootstrap, NOTIFY_QUEUE_URL};
use shared::ports::SystemClock;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env().await?;
    let http = boot.http_client()?;
    let github = boot.github(http)?;
    let deps = Deps {
        github: Arc::new(github),
        state: boot.state_store()?,
        builds: boot.queue(BUILD_QUEUE_URL)?,
        notify: boot.queue(NOTIFY_QUEUE_URL)?,
        clock: Arc::new(SystemClock),
        webhook_url: boot.required("WEBHOOK_URL")?,
        config: boot.config.clone(),
    };
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async {
        Ok::<_, Error>(serde_json::to_value(sweep(&deps).await)?)
    }))
    .await
}
