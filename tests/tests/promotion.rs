//! deploy-promotion end to end: deploy requests on a real FIFO queue and the live record in a
//! real DynamoDB table (moto), Heroku and GitHub as local HTTP fakes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deploy_promotion::targets::{Heroku, Hook, Targets};
use e2e::aws;
use serde_json::json;
use shared::adapters::dynamodb::DynamoStateStore;
use shared::adapters::sqs::{SqsQueue, SqsRedelivery};
use shared::batch::Handoff;
use shared::config::Config;
use shared::github::client::{Auth, GitHubClient};
use shared::messages::{self, DeployRequest, Notification, NotificationKind};
use shared::ports::{StateStore, SystemClock};
use shared::records::{LiveRecord, StateKey};
use shared::secrets::{SecretString, Secrets};
use wiremock::matchers::{header_regex, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NEW: &str = "2222222222222222222222222222222222222222";
const OLD: &str = "1111111111111111111111111111111111111111";

fn request(sha: &str, build: &str) -> DeployRequest {
    DeployRequest {
        v: 1,
        repo: "pax-app/User".into(),
        branch: "master".into(),
        sha: sha.into(),
        build_id: build.into(),
        log_url: None,
        target: "heroku:pax-user".into(),
        environment: "production".into(),
        artifacts: BTreeMap::from([(
            "SHIPLINE_IMAGE_WEB".to_string(),
            format!("sha256:{}", &sha[..8]),
        )]),
        delivery_id: format!("d-{build}").into(),
        commit_message: None,
        author: None,
        installation_id: None,
        requested_at: "2026-11-26T10:00:00Z".into(),
        promotion: None,
        requested_by: None,
    }
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_green_build_goes_live_once_and_a_late_older_one_never_does() {
    let sdk = aws::sdk_config().await;
    let deploys_url = aws::create_fifo_queue(&sdk, &e2e::unique("deploys")).await;
    let notify_url = aws::create_queue(&sdk, &e2e::unique("notifications")).await;
    let table = e2e::unique("state");
    aws::create_state_table(&sdk, &table).await;
    let heroku = heroku_that_rate_limits_the_first_release().await;
    let github = github_with_master_at(NEW).await;
    let state = Arc::new(DynamoStateStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &table,
    ));
    let deps = promotion(&sdk, &notify_url, &heroku, &github, state.clone());
    let deploys = DeployQueue {
        sdk: &sdk,
        sqs: aws_sdk_sqs::Client::new(&sdk),
        url: &deploys_url,
        deps: &deps,
    };

    deploys.send(request(NEW, "b-new")).await;
    assert_eq!(
        deploys.consume().await,
        1,
        "Heroku's 429 leaves the message for later"
    );
    // Its visibility timeout was set from Retry-After: hidden now, back after two seconds.
    let event = aws::receive_as_event(&sdk, &deploys_url).await;
    assert!(event.records.is_empty(), "delayed, not redelivered at once");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(deploys.consume().await, 0);

    let live = live_record(state.as_ref(), "heroku:pax-user").await;
    assert_eq!(
        (live.sha.as_str(), live.version.as_deref()),
        (NEW, Some("v43"))
    );

    // A build of an older commit that finished late.
    deploys.send(request(OLD, "b-old")).await;
    assert_eq!(deploys.consume().await, 0);
    assert_eq!(
        formation_updates(&heroku).await,
        2,
        "one rate-limited, one released; the late build released nothing"
    );

    assert_eq!(
        notification_kinds(&sdk, &notify_url).await,
        vec![
            NotificationKind::DeployStarted,
            NotificationKind::DeploySucceeded,
            NotificationKind::DeploySkipped
        ]
    );
}

/// Heroku answers the first formation update with 429 and `Retry-After: 2`, then releases
/// every update as v43.
async fn heroku_that_rate_limits_the_first_release() -> MockServer {
    let heroku = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/apps/pax-user/formation"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "2")
                .set_body_json(json!({"id": "rate_limit", "message": "slow down"})),
        )
        .up_to_n_times(1)
        .mount(&heroku)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/apps/pax-user/formation"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&heroku)
        .await;
    // v42 is the newest before the update; the first after it is the update's v43 (the
    // Platform API's `Range` header, *Ranges*).
    Mock::given(method("GET"))
        .and(path("/apps/pax-user/releases"))
        .and(header_regex("range", "order=desc"))
        .respond_with(
            ResponseTemplate::new(206)
                .set_body_json(json!([{"id": "rel-42", "version": 42, "status": "succeeded"}])),
        )
        .mount(&heroku)
        .await;
    Mock::given(method("GET"))
        .and(path("/apps/pax-user/releases"))
        .and(header_regex("range", r"^version \]42\.\."))
        .respond_with(
            ResponseTemplate::new(206)
                .set_body_json(json!([{"id": "rel-43", "version": 43, "status": "succeeded"}])),
        )
        .mount(&heroku)
        .await;
    heroku
}

/// GitHub with pax-app/User's master at `head`, taking deployment 5 and its statuses.
async fn github_with_master_at(head: &str) -> MockServer {
    let github = MockServer::start().await;
    Mock::given(path("/repos/pax-app/User/branches/master"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"commit": {"sha": head}})))
        .mount(&github)
        .await;
    Mock::given(path("/repos/pax-app/User/deployments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 5})))
        .mount(&github)
        .await;
    Mock::given(path("/repos/pax-app/User/deployments/5/statuses"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({})))
        .mount(&github)
        .await;
    github
}

/// deploy-promotion as the stack wires it, with master of pax-app/User going to Heroku.
fn promotion(
    sdk: &aws_config::SdkConfig,
    notify_url: &str,
    heroku: &MockServer,
    github: &MockServer,
    state: Arc<DynamoStateStore>,
) -> deploy_promotion::Deps {
    let http = reqwest::Client::new();
    let sqs = aws_sdk_sqs::Client::new(sdk);
    deploy_promotion::Deps {
        config: Arc::new(
            Config::from_yaml("channels:\n  team: { console: {} }\ndefaults:\n  notify: [team]\nrepos:\n  pax-app/User:\n    codebuild_project: pax-user\n    deploy:\n      - branch: master\n        heroku: { app: pax-user }\n")
                .unwrap(),
        ),
        github: Arc::new(GitHubClient::new(http.clone(), github.uri(), Auth::Token(SecretString::new("ghp")))),
        deployer: Arc::new(Targets {
            heroku: Some(Arc::new(Heroku::new(http.clone(), &heroku.uri(), SecretString::new("key")))),
            hook: Arc::new(Hook::new(http, Arc::new(Secrets::default()))),
            command: None,
        }),
        state,
        notify: Arc::new(SqsQueue::new(sqs.clone(), notify_url)),
        deploys: Arc::new(shared::adapters::memory::MemoryQueue::fifo()),
        handoff: Handoff {
            redelivery: Arc::new(SqsRedelivery::new(sqs)),
            dead_letters: None,
        },
        clock: Arc::new(SystemClock),
        follow: deploy_promotion::Follow { interval: Duration::from_millis(10), budget: Duration::from_secs(2) },
    }
}

/// The deploy FIFO queue and its consumer, as the event source mapping connects them.
struct DeployQueue<'a> {
    sdk: &'a aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    url: &'a str,
    deps: &'a deploy_promotion::Deps,
}

impl DeployQueue<'_> {
    /// Sends `r` as build-dispatch does: grouped by target, deduplicated by build.
    async fn send(&self, r: DeployRequest) {
        self.sqs
            .send_message()
            .queue_url(self.url)
            .message_body(messages::encode(&r))
            .message_group_id(&*r.target)
            .message_deduplication_id(&*r.build_id)
            .send()
            .await
            .unwrap();
    }

    /// Hands what is visible to deploy-promotion as one batch; how many messages it failed.
    async fn consume(&self) -> usize {
        let event = aws::receive_as_event(self.sdk, self.url).await;
        let response = deploy_promotion::handle_batch(self.deps, &event, None).await;
        aws::settle_batch(self.sdk, self.url, &event, &response).await;
        response.batch_item_failures.len()
    }
}

/// What the state table says is live on `target`.
async fn live_record(state: &dyn StateStore, target: &str) -> LiveRecord {
    serde_json::from_value(
        state
            .get(&StateKey::Live(target).to_string(), 0)
            .await
            .unwrap()
            .unwrap()
            .value,
    )
    .unwrap()
}

/// How many formation updates Heroku received, rate-limited or not.
async fn formation_updates(heroku: &MockServer) -> usize {
    heroku
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .count()
}

/// The kinds of the notifications on their way to the chat, in order.
async fn notification_kinds(
    sdk: &aws_config::SdkConfig,
    notify_url: &str,
) -> Vec<NotificationKind> {
    aws::drain_queue(sdk, notify_url)
        .await
        .iter()
        .map(|m| {
            messages::decode::<Notification>(m.body().unwrap())
                .unwrap()
                .kind
        })
        .collect()
}
