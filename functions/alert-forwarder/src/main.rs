//! The Lambda binary: wire the queue and state once, then answer Sentry.

use std::sync::Arc;

use alert_forwarder::{Deps, handle};
use lambda_http::{Error, service_fn};
use shared::bootstrap::{Bootstrap, DEPLOY_QUEUE_URL, NOTIFY_QUEUE_URL};
use shared::ports::SystemClock;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env_warm(NOTIFY_QUEUE_URL).await?;
    let deps = Deps {
        client_secret: boot.secrets.get("sentry_client_secret").cloned(),
        legacy_token: boot.secrets.get("sentry_legacy_token").cloned(),
        notify: boot.queue(NOTIFY_QUEUE_URL)?,
        deploys: boot.optional_queue(DEPLOY_QUEUE_URL),
        state: boot.state_store()?,
        clock: Arc::new(SystemClock),
        config: boot.config.clone(),
    };
    lambda_http::run(service_fn(|request| handle(&deps, request))).await
}
