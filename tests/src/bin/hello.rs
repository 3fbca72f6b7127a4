//! The floor for cold-start figures: a `lambda_runtime` function that answers its event, built
//! with the same release profile as shipline's functions (`scripts/coldstart` builds both).

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<serde_json::Value>| async move { Ok::<_, Error>(event.payload) },
    ))
    .await
}
