//! The Lambda binary: wire GitHub and the state table once, then sweep on each schedule tick.

use std::sync::Arc;

use delivery_recovery::{Deps, sweep};
use lambda_runtime::Error;
use shared::bootstrap::{BUILD_QUEUE_URL, Bootstrap, NOTIFY_QUEUE_URL, serve};
use shared::ports::SystemClock;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env().await?;
    let deps = Deps {
        github: Arc::new(boot.github(boot.http_client()?)?),
        state: boot.state_store()?,
        builds: boot.queue(BUILD_QUEUE_URL)?,
        notify: boot.queue(NOTIFY_QUEUE_URL)?,
        clock: Arc::new(SystemClock),
        webhook_url: boot.required("WEBHOOK_URL")?,
        config: boot.config.clone(),
    };
    serve(|_: serde_json::Value, _| async { Ok::<_, Error>(sweep(&deps).await) }).await
}
