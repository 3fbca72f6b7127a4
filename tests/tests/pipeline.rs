//! The whole chain through real queues and the state table on moto: a signed push to master
//! → build on CodeBuild (a local fake of its JSON API, for the exported image id moto cannot
//! give) → a state-change event → commit status success → a release on the Heroku fake with
//! the exported image → GitHub deployment statuses → one Telegram message edited along the way.

use std::collections::HashMap;
use std::sync::Arc;

use e2e::aws;
use serde_json::{Value, json};
use shared::adapters::codebuild::CodeBuild;
use shared::adapters::deploy::{Command, Heroku, Hook, Targets};
use shared::adapters::dynamodb::DynamoStateStore;
use shared::adapters::sqs::{SqsQueue, SqsRedelivery};
use shared::config::Config;
use shared::github::client::{Auth, GitHubClient};
use shared::github::webhook::sign;
use shared::ports::SystemClock;
use shared::secrets::{SecretString, Secrets};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "pipeline webhook secret";
const PUSH: &str = include_str!("../testdata/github-push.json");
const STATE_CHANGE: &str =
    include_str!("../testdata/codebuild-state-change-succeeded-with-envvars.json");
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const JSON_1_1: &str = "application/x-amz-json-1.1";

async fn fakes() -> (MockServer, MockServer, MockServer, MockServer) {
    let codebuild = MockServer::start().await;
    Mock::given(header("x-amz-target", "CodeBuild_20161006.StartBuild"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", JSON_1_1).set_body_json(json!({
            "build": {"id": "hello:0001", "projectName": "hello", "buildStatus": "IN_PROGRESS", "timeoutInMinutes": 60}
        })))
        .mount(&codebuild)
        .await;
    Mock::given(header("x-amz-target", "CodeBuild_20161006.BatchGetBuilds"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", JSON_1_1).set_body_json(json!({"builds": [{
            "id": "hello:0001", "projectName": "hello", "buildStatus": "SUCCEEDED",
            "exportedEnvironmentVariables": [{"name": "SHIPLINE_IMAGE_WEB", "value": "sha256:feedbeef"}]
        }]})))
        .mount(&codebuild)
        .await;

    let github = MockServer::start().await;
    Mock::given(path_regex("/statuses/[0-9a-f]{40}$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .mount(&github)
        .await;
    Mock::given(path("/repos/Codertocat/Hello-World/branches/master"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"commit": {"sha": SHA}})))
        .mount(&github)
        .await;
    Mock::given(path("/repos/Codertocat/Hello-World/deployments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 77})))
        .mount(&github)
        .await;
    Mock::given(path(
        "/repos/Codertocat/Hello-World/deployments/77/statuses",
    ))
    .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
    .mount(&github)
    .await;

    let heroku = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/apps/hello-world/formation"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&heroku)
        .await;
    Mock::given(method("GET"))
        .and(path("/apps/hello-world/releases"))
        .respond_with(
            ResponseTemplate::new(206)
                .set_body_json(json!([{"id": "rel-9", "version": 9, "status": "succeeded"}])),
        )
        .mount(&heroku)
        .await;

    let telegram = MockServer::start().await;
    Mock::given(path("/bot42:tok/sendMessage"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "result": {"message_id": 314}})),
        )
        .mount(&telegram)
        .await;
    Mock::given(path("/bot42:tok/editMessageText"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "result": {"message_id": 314}})),
        )
        .mount(&telegram)
        .await;
    (codebuild, github, heroku, telegram)
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_push_to_master_is_built_released_and_told_in_one_living_message() {
    let sdk = aws::sdk_config().await;
    let builds_url = aws::create_fifo_queue(&sdk, &e2e::unique("builds")).await;
    let events_url = aws::create_queue(&sdk, &e2e::unique("build-events")).await;
    let deploys_url = aws::create_fifo_queue(&sdk, &e2e::unique("deploys")).await;
    let notify_url = aws::create_queue(&sdk, &e2e::unique("notifications")).await;
    let table = e2e::unique("state");
    aws::create_state_table(&sdk, &table).await;
    let (codebuild, github, heroku, telegram) = fakes().await;

    let config = Arc::new(
        Config::from_yaml(
            "channels:\n  team: { telegram: { chat_id: -100777 } }\ndefaults:\n  notify: [team]\nrepos:\n  Codertocat/Hello-World:\n    codebuild_project: hello\n    deploy:\n      - branch: master\n        heroku: { app: hello-world }\n",
        )
        .unwrap(),
    );
    let secrets = Secrets::default().with("telegram_bot_token", "42:tok");
    let http = reqwest::Client::new();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let state = Arc::new(DynamoStateStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &table,
    ));
    let gh = Arc::new(GitHubClient::new(
        http.clone(),
        github.uri(),
        Auth::Token(SecretString::new("ghp")),
    ));
    let notify = Arc::new(SqsQueue::new(sqs.clone(), &notify_url));
    let redelivery = Arc::new(SqsRedelivery::new(sqs.clone()));
    let clock = Arc::new(SystemClock);

    let intake = webhook_intake::Deps {
        config: config.clone(),
        webhook_secret: SecretString::new(SECRET),
        builds: Arc::new(SqsQueue::new(sqs.clone(), &builds_url)),
        state: state.clone(),
        clock: clock.clone(),
    };
    let dispatch = build_dispatch::Deps {
        config: config.clone(),
        builds: Arc::new(CodeBuild::new(aws_sdk_codebuild::Client::from_conf(
            aws_sdk_codebuild::config::Builder::from(&sdk)
                .endpoint_url(codebuild.uri())
                .build(),
        ))),
        github: gh.clone(),
        state: state.clone(),
        deploys: Arc::new(SqsQueue::new(sqs.clone(), &deploys_url)),
        notify: notify.clone(),
        redelivery: redelivery.clone(),
        clock: clock.clone(),
        region: aws::REGION.into(),
    };
    let promotion = deploy_promotion::Deps {
        config: config.clone(),
        github: gh,
        deployer: Arc::new(Targets {
            heroku: Some(Arc::new(Heroku::new(
                http.clone(),
                &heroku.uri(),
                SecretString::new("hk"),
            ))),
            hook: Arc::new(Hook::new(http.clone(), Arc::new(Secrets::default()))),
            command: Arc::new(Command),
        }),
        state: state.clone(),
        notify: notify.clone(),
        redelivery: redelivery.clone(),
        clock: clock.clone(),
        follow: deploy_promotion::Follow::default(),
    };
    let notifier = notifier::Deps {
        channels: notifier::channels_from_config(&config, &secrets, &http, &telegram.uri())
            .unwrap(),
        config,
        state,
        redelivery,
        dead_letters: None,
        clock,
    };

    // GitHub delivers the push.
    let headers: lambda_http::http::HeaderMap = [
        ("content-type", "application/json".to_string()),
        ("x-github-event", "push".to_string()),
        ("x-github-delivery", "pipeline-1".to_string()),
        (
            "x-hub-signature-256",
            sign(SECRET.as_bytes(), PUSH.as_bytes()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
    .collect();
    assert_eq!(
        webhook_intake::handle_delivery(&intake, &headers, PUSH.as_bytes())
            .await
            .status,
        202
    );

    // Each queue to its consumer, as the event source mappings would.
    let event = aws::receive_as_event(&sdk, &builds_url).await;
    let response = build_dispatch::handle_batch(&dispatch, &event).await;
    aws::settle_batch(&sdk, &builds_url, &event, &response).await;

    // CodeBuild reports the result through EventBridge.
    let mut change: Value = serde_json::from_str(STATE_CHANGE).unwrap();
    change["detail"]["project-name"] = json!("hello");
    change["detail"]["build-id"] =
        json!("arn:aws:codebuild:us-east-1:123456789012:build/hello:0001");
    sqs.send_message()
        .queue_url(&events_url)
        .message_body(change.to_string())
        .send()
        .await
        .unwrap();
    let event = aws::receive_as_event(&sdk, &events_url).await;
    let response = build_dispatch::handle_batch(&dispatch, &event).await;
    aws::settle_batch(&sdk, &events_url, &event, &response).await;

    let event = aws::receive_as_event(&sdk, &deploys_url).await;
    assert_eq!(event.records.len(), 1, "one deploy request");
    let response = deploy_promotion::handle_batch(&promotion, &event).await;
    assert!(response.batch_item_failures.is_empty());
    aws::settle_batch(&sdk, &deploys_url, &event, &response).await;

    for _ in 0..5 {
        let event = aws::receive_as_event(&sdk, &notify_url).await;
        if event.records.is_empty() {
            break;
        }
        let response = notifier::handle_batch(&notifier, &event).await;
        aws::settle_batch(&sdk, &notify_url, &event, &response).await;
    }

    // GitHub saw pending then success, and the deployment go in_progress then success.
    let states: Vec<(String, String)> = github
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().contains("statuses"))
        .map(|r| {
            let b: Value = serde_json::from_slice(&r.body).unwrap();
            (
                if r.url.path().contains("deployments") {
                    "deployment"
                } else {
                    "commit"
                }
                .to_string(),
                b["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("commit".to_string(), "pending".to_string()),
            ("commit".to_string(), "success".to_string()),
            ("deployment".to_string(), "in_progress".to_string()),
            ("deployment".to_string(), "success".to_string()),
        ]
    );
    // Heroku released the exported image.
    let patch = heroku
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "PATCH")
        .unwrap();
    let body: Value = serde_json::from_slice(&patch.body).unwrap();
    assert_eq!(body["updates"][0]["docker_image"], "sha256:feedbeef");
    // One Telegram message, edited along the way, ending live.
    let calls: HashMap<String, Vec<Value>> = telegram
        .received_requests()
        .await
        .unwrap()
        .iter()
        .fold(HashMap::new(), |mut m, r| {
            m.entry(r.url.path().to_string())
                .or_default()
                .push(serde_json::from_slice(&r.body).unwrap());
            m
        });
    assert_eq!(calls["/bot42:tok/sendMessage"].len(), 1, "{calls:?}");
    let edits = &calls["/bot42:tok/editMessageText"];
    assert!(!edits.is_empty());
    assert!(edits.iter().all(|e| e["message_id"] == 314));
    assert!(
        edits.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .starts_with("🟢 <b>Live</b>"),
        "{edits:?}"
    );
}
