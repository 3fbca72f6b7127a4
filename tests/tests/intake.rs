//! webhook-intake end to end: signed deliveries in, `BuildRequest`s on a real FIFO queue
//! (moto), dedup records in a real DynamoDB table.

use std::sync::Arc;
use std::time::Duration;

use e2e::aws;
use e2e::runtime_api::{Outcome, RuntimeApi, http_api_event};
use serde_json::{Value, json};
use shared::adapters::dynamodb::DynamoStateStore;
use shared::adapters::sqs::SqsQueue;
use shared::config::Config;
use shared::messages::{self, BuildRequest, Trigger};
use shared::ports::SystemClock;
use shared::secrets::SecretString;
use webhook_intake::webhook::sign;

const SECRET: &str = "e2e webhook secret";
const PUSH: &[u8] = include_bytes!("../../functions/webhook-intake/testdata/github-push.json");
const PR_OPENED: &[u8] =
    include_bytes!("../../functions/webhook-intake/testdata/github-pull_request-opened.json");
const PR_SYNC: &[u8] =
    include_bytes!("../../functions/webhook-intake/testdata/github-pull_request-synchronize.json");
const PING: &[u8] = include_bytes!("../../functions/webhook-intake/testdata/github-ping.json");
const CONFIG: &str = "repos:\n  Codertocat/Hello-World:\n    codebuild_project: hello-world\n";

fn headers(event: &str, delivery: &str, body: &[u8]) -> Value {
    json!({
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": sign(SECRET.as_bytes(), body),
    })
}

async fn build_requests(config: &aws_config::SdkConfig, url: &str) -> Vec<BuildRequest> {
    aws::drain_queue(config, url)
        .await
        .iter()
        .map(|m| {
            let request: BuildRequest = messages::decode(m.body().unwrap()).unwrap();
            let attrs = m.attributes().unwrap();
            let group = attrs
                .get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                .unwrap();
            assert_eq!(group, &request.message_group_id());
            request
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn the_handler_on_a_real_fifo_queue_and_table_queues_each_delivery_once() {
    let sdk = aws::sdk_config().await;
    let queue_url = aws::create_fifo_queue(&sdk, &e2e::unique("builds")).await;
    let table = e2e::unique("state");
    aws::create_state_table(&sdk, &table).await;
    let deps = webhook_intake::Deps {
        config: Arc::new(Config::from_yaml(CONFIG).unwrap()),
        webhook_secret: SecretString::new(SECRET),
        builds: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), &queue_url)),
        state: Arc::new(DynamoStateStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &table,
        )),
        clock: Arc::new(SystemClock),
    };
    let send = |event: &str, delivery: &str, body: &'static [u8]| {
        let headers: lambda_http::http::HeaderMap = headers(event, delivery, body)
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.as_str().unwrap().parse().unwrap()))
            .collect();
        let deps = &deps;
        async move {
            webhook_intake::handle_delivery(deps, &headers, body)
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(send("push", "e2e-push-1", PUSH).await, 202);
    assert_eq!(send("pull_request", "e2e-pr-1", PR_OPENED).await, 202);
    assert_eq!(send("push", "e2e-push-1", PUSH).await, 200, "redelivery");
    assert_eq!(send("ping", "e2e-ping", PING).await, 200);

    let requests = build_requests(&sdk, &queue_url).await;
    let shas: Vec<_> = requests
        .iter()
        .map(|r| (r.delivery_id.as_str(), r.sha.as_str()))
        .collect();
    assert_eq!(
        shas,
        vec![
            ("e2e-push-1", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
            ("e2e-pr-1", "ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
        ]
    );
    assert_eq!(
        aws::table_keys(&sdk, &table).await,
        vec![
            "delivery:e2e-pr-1".to_string(),
            "delivery:e2e-push-1".to_string()
        ]
    );
}

/// The release binary, as Lambda runs it: config from SSM, secrets from Secrets Manager, the
/// queue and table on moto, events through the Runtime API.
#[tokio::test]
#[ignore = "needs moto and the release binary: run scripts/test"]
async fn the_release_binary_answers_deliveries_under_the_runtime_api() {
    let sdk = aws::sdk_config().await;
    let queue_url = aws::create_fifo_queue(&sdk, &e2e::unique("builds")).await;
    let table = e2e::unique("state");
    aws::create_state_table(&sdk, &table).await;
    let intake = ReleaseIntake::start(&sdk, &queue_url, &table).await;

    let (status, message) = intake
        .deliver(headers("push", "bin-push-1", PUSH), PUSH, false)
        .await;
    assert_eq!(
        (status, message.as_str()),
        (
            202,
            "queued: build of Codertocat/Hello-World#master at 6113728"
        )
    );
    assert_eq!(
        intake
            .deliver(
                headers("pull_request", "bin-pr-1", PR_OPENED),
                PR_OPENED,
                true
            )
            .await
            .0,
        202,
        "base64 body"
    );
    assert_eq!(
        intake
            .deliver(headers("pull_request", "bin-pr-2", PR_SYNC), PR_SYNC, false)
            .await
            .0,
        202
    );
    assert_eq!(
        intake
            .deliver(headers("ping", "bin-ping", PING), PING, false)
            .await,
        (200, "pong".to_string())
    );
    refuses_what_it_cannot_trust(&intake).await;
    let (status, message) = intake
        .deliver(headers("push", "bin-push-1", PUSH), PUSH, false)
        .await;
    assert_eq!(
        (status, message.as_str()),
        (200, "duplicate: this delivery was already queued")
    );

    assert_eq!(
        summary(&build_requests(&sdk, &queue_url).await),
        vec![
            "bin-push-1 push master 6113728",
            "bin-pr-1 pr-2 opened ec26c3e",
            "bin-pr-2 pr-2 synchronize ec26c3e",
        ]
    );
}

/// A forged signature and a missing one are unauthorised; a body that does not parse is a bad
/// request.
async fn refuses_what_it_cannot_trust(intake: &ReleaseIntake) {
    let mut forged = headers("push", "bin-forged", PUSH);
    forged["x-hub-signature-256"] = json!(sign(b"guessed", PUSH));
    assert_eq!(intake.deliver(forged, PUSH, false).await.0, 401);
    let mut unsigned = headers("push", "bin-unsigned", PUSH);
    unsigned
        .as_object_mut()
        .unwrap()
        .remove("x-hub-signature-256");
    assert_eq!(intake.deliver(unsigned, PUSH, false).await.0, 401);

    let malformed = b"{\"ref\": \"refs/heads/master\",";
    assert_eq!(
        intake
            .deliver(headers("push", "bin-bad", malformed), malformed, false)
            .await
            .0,
        400
    );
}

/// Each queued request as `<delivery> <trigger> <short sha>`.
fn summary(requests: &[BuildRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| match &r.trigger {
            Trigger::Push(p) => format!("{} push {} {}", r.delivery_id, p.branch, r.short_sha()),
            Trigger::PullRequest(pr) => format!(
                "{} pr-{} {} {}",
                r.delivery_id,
                pr.number,
                pr.action,
                r.short_sha()
            ),
        })
        .collect()
}

/// webhook-intake's release binary running under a local Runtime API.
struct ReleaseIntake {
    // Declared first so that the function stops before the API it polls.
    _function: tokio::process::Child,
    api: RuntimeApi,
}

impl ReleaseIntake {
    /// Puts the config in SSM and the webhook secret in Secrets Manager, then starts the
    /// binary with the environment the stack gives it.
    async fn start(sdk: &aws_config::SdkConfig, queue_url: &str, table: &str) -> Self {
        let param = format!("/{}/config", e2e::unique("shipline"));
        aws::put_parameter(sdk, &param, CONFIG).await;
        let secret_arn = aws::create_secret(
            sdk,
            &e2e::unique("shipline-secrets"),
            &json!({ "github_webhook_secret": SECRET }).to_string(),
        )
        .await;

        let api = RuntimeApi::start().await.unwrap();
        let mut env = aws::process_env();
        env.extend(
            [
                ("SHIPLINE_CONFIG_PARAM", param.as_str()),
                ("SHIPLINE_SECRETS_ARN", secret_arn.as_str()),
                ("STATE_TABLE", table),
                ("BUILD_QUEUE_URL", queue_url),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let function = api
            .spawn(
                &e2e::release_binary("webhook-intake"),
                "webhook-intake",
                &env,
            )
            .unwrap();
        Self {
            _function: function,
            api,
        }
    }

    /// API Gateway hands the function a delivery to `/github`; the status code and message
    /// it answered.
    async fn deliver(&self, headers: Value, body: &[u8], base64: bool) -> (u64, String) {
        let event = http_api_event("/github", &headers, body, base64);
        match self
            .api
            .invoke(&event, Duration::from_secs(30))
            .await
            .unwrap()
        {
            Outcome::Response(r) => (
                r["statusCode"].as_u64().unwrap(),
                serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap()["message"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            Outcome::Error(e) => panic!("function error: {e}"),
        }
    }
}
