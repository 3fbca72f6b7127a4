//! The Lambda binary: wire GitHub and the deploy targets once, then release (and, on the
//! schedule, look at pending promotions).

use std::sync::Arc;

use deploy_promotion::targets::{Heroku, Hook, Targets};
use deploy_promotion::{Deps, Follow, handle};
use lambda_runtime::Error;
use shared::bootstrap::{Bootstrap, DEPLOY_QUEUE_URL, NOTIFY_QUEUE_URL, serve};
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
        deploys: boot.queue(DEPLOY_QUEUE_URL)?,
        handoff: boot.handoff(),
        clock: Arc::new(SystemClock),
        follow: Follow::default(),
        config: boot.config.clone(),
    };
    serve(|event, deadline| handle(&deps, event, Some(deadline))).await
}
