//! The Lambda binary: the config, the state table and the sign-in once, then the page.

use std::sync::Arc;

use lambda_http::{Error, service_fn};
use shared::bootstrap::{Bootstrap, DEAD_LETTER_QUEUES, GITHUB_API_URL, GITHUB_WEB_URL};
use shared::github::client::PUBLIC_API;
use shared::ports::SystemClock;
use status_page::signin::{PUBLIC_WEB, SignIn};
use status_page::web::{Deps, handle};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let boot = Bootstrap::from_env().await?;
    // Without the OAuth keys every route answers 404: there is no page nobody could sign in to.
    let signin = SignIn::from_secrets(
        &boot.secrets,
        boot.http_client()?,
        &boot.api_url(GITHUB_WEB_URL, PUBLIC_WEB),
        &boot.api_url(GITHUB_API_URL, PUBLIC_API),
    );
    if signin.is_none() {
        tracing::warn!(
            "no github_oauth_client_id / github_oauth_client_secret: every route answers 404"
        );
    }
    let deps = Deps {
        state: boot.state_store()?,
        dead_letters: boot.named_queues(DEAD_LETTER_QUEUES)?,
        clock: Arc::new(SystemClock),
        config: boot.config.clone(),
        signin,
    };
    lambda_http::run(service_fn(|request| handle(&deps, request))).await
}
