//! build-dispatch end to end: intake and dispatch wired through real queues (moto), CodeBuild
//! on moto (or, for what moto cannot answer, a local fake of the CodeBuild JSON API), the state
//! table on DynamoDB (moto) and GitHub as a local HTTP fake.

use std::sync::Arc;
use std::time::Duration;

use build_dispatch::codebuild::aws::CodeBuild;
use e2e::aws;
use e2e::runtime_api::{Outcome, RuntimeApi};
use serde_json::{Value, json};
use shared::adapters::dynamodb::DynamoStateStore;
use shared::adapters::sqs::{SqsQueue, SqsRedelivery};
use shared::batch::Handoff;
use shared::config::Config;
use shared::github::client::{Auth, GitHubClient};
use shared::messages::{self, DeployRequest, Notification, NotificationKind};
use shared::ports::SystemClock;
use shared::secrets::SecretString;
use webhook_intake::webhook::sign;
use wiremock::matchers::{header, method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "e2e webhook secret";
const PUSH: &str = include_str!("../../functions/webhook-intake/testdata/github-push.json");
const STATE_CHANGE: &str = include_str!(
    "../../functions/build-dispatch/testdata/codebuild-state-change-succeeded-with-envvars.json"
);
const SHA_A: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const SHA_B: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

struct Stack {
    sdk: aws_config::SdkConfig,
    builds_url: String,
    events_url: String,
    deploys_url: String,
    notify_url: String,
    project: String,
    github: MockServer,
    intake: webhook_intake::Deps,
    dispatch: build_dispatch::Deps,
}

fn config(project: &str) -> Config {
    Config::from_yaml(&format!(
        "channels:\n  team: {{ console: {{}} }}\ndefaults:\n  notify: [team]\nrepos:\n  Codertocat/Hello-World:\n    codebuild_project: {project}\n    deploy:\n      - branch: master\n        heroku: {{ app: hello-world }}\n"
    ))
    .unwrap()
}

async fn stack(codebuild_endpoint: Option<String>) -> Stack {
    let sdk = aws::sdk_config().await;
    let builds_url = aws::create_fifo_queue(&sdk, &e2e::unique("builds")).await;
    let events_url = aws::create_queue(&sdk, &e2e::unique("build-events")).await;
    let deploys_url = aws::create_fifo_queue(&sdk, &e2e::unique("deploys")).await;
    let notify_url = aws::create_queue(&sdk, &e2e::unique("notifications")).await;
    let table = e2e::unique("state");
    aws::create_state_table(&sdk, &table).await;
    let project = e2e::unique("hello-world");
    aws::create_codebuild_project(&sdk, &project).await;
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(
            "^/repos/Codertocat/Hello-World/statuses/[0-9a-f]{40}$",
        ))
        .and(header("authorization", "Bearer ghp_e2e"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .mount(&github)
        .await;

    let config = Arc::new(config(&project));
    let state = Arc::new(DynamoStateStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &table,
    ));
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let codebuild_config = match codebuild_endpoint {
        Some(url) => aws_sdk_codebuild::config::Builder::from(&sdk)
            .endpoint_url(url)
            .build(),
        None => aws_sdk_codebuild::config::Builder::from(&sdk).build(),
    };
    let intake = webhook_intake::Deps {
        config: config.clone(),
        webhook_secret: SecretString::new(SECRET),
        builds: Arc::new(SqsQueue::new(sqs.clone(), &builds_url)),
        state: state.clone(),
        clock: Arc::new(SystemClock),
    };
    let dispatch = build_dispatch::Deps {
        config,
        builds: Arc::new(CodeBuild::new(aws_sdk_codebuild::Client::from_conf(
            codebuild_config,
        ))),
        github: Arc::new(GitHubClient::new(
            reqwest::Client::new(),
            github.uri(),
            Auth::Token(SecretString::new("ghp_e2e")),
        )),
        state,
        deploys: Arc::new(SqsQueue::new(sqs.clone(), &deploys_url)),
        notify: Arc::new(SqsQueue::new(sqs.clone(), &notify_url)),
        handoff: Handoff {
            redelivery: Arc::new(SqsRedelivery::new(sqs)),
            dead_letters: None,
        },
        event_dead_letters: None,
        clock: Arc::new(SystemClock),
        region: aws::REGION.into(),
    };
    Stack {
        sdk,
        builds_url,
        events_url,
        deploys_url,
        notify_url,
        project,
        github,
        intake,
        dispatch,
    }
}

impl Stack {
    async fn push(&self, delivery: &str, sha: &str) -> u16 {
        let body = PUSH.replace(SHA_A, sha);
        let headers: lambda_http::http::HeaderMap = [
            ("content-type", "application/json".to_string()),
            ("x-github-event", "push".to_string()),
            ("x-github-delivery", delivery.to_string()),
            (
                "x-hub-signature-256",
                sign(SECRET.as_bytes(), body.as_bytes()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect();
        webhook_intake::handle_delivery(&self.intake, &headers, body.as_bytes())
            .await
            .status
            .as_u16()
    }

    /// One Lambda invocation of build-dispatch on what is waiting on `url`.
    async fn dispatch_from(&self, url: &str) -> usize {
        let event = aws::receive_as_event(&self.sdk, url).await;
        let response = build_dispatch::handle_batch(&self.dispatch, &event, None).await;
        aws::settle_batch(&self.sdk, url, &event, &response).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{:?}",
            response.batch_item_failures
        );
        event.records.len()
    }

    /// A CodeBuild state change as EventBridge would put it on build-events.
    async fn build_event(&self, build_id: &str, status: &str) {
        let mut event: Value = serde_json::from_str(STATE_CHANGE).unwrap();
        event["detail"]["build-status"] = json!(status);
        event["detail"]["project-name"] = json!(self.project);
        event["detail"]["build-id"] = json!(format!(
            "arn:aws:codebuild:us-east-1:123456789012:build/{build_id}"
        ));
        aws_sdk_sqs::Client::new(&self.sdk)
            .send_message()
            .queue_url(&self.events_url)
            .message_body(event.to_string())
            .send()
            .await
            .unwrap();
    }

    async fn statuses(&self) -> Vec<(String, String, String)> {
        self.github
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                (
                    r.url.path().rsplit('/').next().unwrap()[..7].to_string(),
                    body["state"].as_str().unwrap().to_string(),
                    body["description"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    async fn build_ids(&self) -> Vec<String> {
        aws_sdk_codebuild::Client::new(&self.sdk)
            .list_builds_for_project()
            .project_name(&self.project)
            .send()
            .await
            .unwrap()
            .ids
            .unwrap_or_default()
    }
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_push_builds_once_supersedes_and_a_green_result_requests_a_deploy() {
    let s = stack(None).await;
    assert_eq!(s.push("e2e-1", SHA_A).await, 202);
    // SQS delivers at least once: the same batch handled twice starts one build.
    let event = aws::receive_as_event(&s.sdk, &s.builds_url).await;
    assert_eq!(event.records.len(), 1);
    build_dispatch::handle_batch(&s.dispatch, &event, None).await;
    let response = build_dispatch::handle_batch(&s.dispatch, &event, None).await;
    aws::settle_batch(&s.sdk, &s.builds_url, &event, &response).await;
    let first = s.build_ids().await;
    assert_eq!(first.len(), 1, "one build on CodeBuild");
    assert_eq!(
        s.statuses().await,
        vec![(
            "6113728".into(),
            "pending".into(),
            format!("Building on CodeBuild ({})", s.project)
        )]
    );

    // A newer push to master supersedes the running build.
    assert_eq!(s.push("e2e-2", SHA_B).await, 202);
    assert_eq!(s.dispatch_from(&s.builds_url).await, 1);
    let ids = s.build_ids().await;
    assert_eq!(ids.len(), 2);
    let second = ids.iter().find(|id| !first.contains(id)).unwrap().clone();
    let statuses = s.statuses().await;
    assert_eq!(
        statuses[1],
        (
            "6113728".into(),
            "error".into(),
            "Superseded by b0b0b0b".into()
        )
    );
    assert_eq!(statuses[2].1, "pending");

    // Its result arrives through build-events; the late STOPPED of the first changes nothing.
    s.build_event(&first[0], "STOPPED").await;
    s.build_event(&second, "SUCCEEDED").await;
    assert_eq!(s.dispatch_from(&s.events_url).await, 2);
    let statuses = s.statuses().await;
    assert_eq!(statuses.len(), 4);
    assert_eq!(
        (statuses[3].0.as_str(), statuses[3].1.as_str()),
        ("b0b0b0b", "success")
    );

    let deploys = aws::drain_queue(&s.sdk, &s.deploys_url).await;
    assert_eq!(deploys.len(), 1);
    let request: DeployRequest = messages::decode(deploys[0].body().unwrap()).unwrap();
    assert_eq!(
        (request.sha.as_str(), request.target.as_str()),
        (SHA_B, "heroku:hello-world")
    );

    let kinds: Vec<NotificationKind> = aws::drain_queue(&s.sdk, &s.notify_url)
        .await
        .iter()
        .map(|m| {
            messages::decode::<Notification>(m.body().unwrap())
                .unwrap()
                .kind
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::BuildStarted,
            NotificationKind::BuildSuperseded,
            NotificationKind::BuildStarted,
            NotificationKind::BuildSucceeded
        ]
    );
    assert_eq!(
        build_dispatch::sweep(&s.dispatch).await.checked,
        0,
        "nothing left pending"
    );
}

/// What moto cannot answer (exported variables, a FAILED build), from a local fake of the
/// CodeBuild JSON API, through the real adapter.
async fn codebuild_fake() -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(header("x-amz-target", "CodeBuild_20161006.StartBuild"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", "application/x-amz-json-1.1").set_body_json(json!({
            "build": {"id": "hello:0001", "arn": "arn:aws:codebuild:us-east-1:123456789012:build/hello:0001",
                      "projectName": "hello", "buildStatus": "IN_PROGRESS", "timeoutInMinutes": 60}
        })))
        .mount(&fake)
        .await;
    fake
}

fn fake_build(status: &str, exported: Value, phases: Value) -> Value {
    json!({"builds": [{
        "id": "hello:0001", "projectName": "hello", "buildStatus": status, "timeoutInMinutes": 60,
        "logs": {"deepLink": "https://console.aws.amazon.com/cloudwatch/home#logEvent:group=/aws/codebuild/hello"},
        "exportedEnvironmentVariables": exported, "phases": phases
    }]})
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn the_deploy_request_carries_the_exported_image_id() {
    let fake = codebuild_fake().await;
    Mock::given(header("x-amz-target", "CodeBuild_20161006.BatchGetBuilds"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", "application/x-amz-json-1.1").set_body_json(fake_build(
            "SUCCEEDED",
            json!([{"name": "SHIPLINE_IMAGE_WEB", "value": "sha256:1f2e3d"}, {"name": "VERSION", "value": "1.4.2"}]),
            json!([]),
        )))
        .mount(&fake)
        .await;
    let s = stack(Some(fake.uri())).await;
    assert_eq!(s.push("e2e-img", SHA_A).await, 202);
    s.dispatch_from(&s.builds_url).await;
    s.build_event("hello:0001", "SUCCEEDED").await;
    s.dispatch_from(&s.events_url).await;
    let deploys = aws::drain_queue(&s.sdk, &s.deploys_url).await;
    assert_eq!(deploys.len(), 1);
    let request: DeployRequest = messages::decode(deploys[0].body().unwrap()).unwrap();
    assert_eq!(request.artifacts["SHIPLINE_IMAGE_WEB"], "sha256:1f2e3d");
    assert_eq!(request.artifacts["VERSION"], "1.4.2");
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_failed_build_whose_event_was_lost_is_finalised_by_the_sweep() {
    let fake = codebuild_fake().await;
    Mock::given(header("x-amz-target", "CodeBuild_20161006.BatchGetBuilds"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", "application/x-amz-json-1.1").set_body_json(fake_build(
            "FAILED",
            json!([]),
            json!([{"phaseType": "BUILD", "phaseStatus": "FAILED",
                    "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "Error while executing command: make. Reason: exit status 2"}]}]),
        )))
        .mount(&fake)
        .await;
    let s = stack(Some(fake.uri())).await;
    assert_eq!(s.push("e2e-lost", SHA_A).await, 202);
    s.dispatch_from(&s.builds_url).await;
    let report = build_dispatch::sweep(&s.dispatch).await;
    assert_eq!((report.checked, report.finalised), (1, 1), "{report:?}");
    let last = s.statuses().await.pop().unwrap();
    assert_eq!(
        last,
        (
            "6113728".into(),
            "failure".into(),
            "Build failed in BUILD: COMMAND_EXECUTION_ERROR: Error while executing command: make. Reason: exit status 2".into()
        )
    );
    assert!(aws::drain_queue(&s.sdk, &s.deploys_url).await.is_empty());
}

/// The release binary under a local Lambda Runtime API: a batch with one malformed message
/// reports only that one as failed.
#[tokio::test]
#[ignore = "needs moto and the release binary: run scripts/test"]
async fn the_release_binary_reports_only_the_malformed_message_as_failed() {
    let s = stack(None).await;
    let param = format!("/{}/config", e2e::unique("shipline"));
    aws::put_parameter(
        &s.sdk,
        &param,
        &format!(
            "repos:\n  Codertocat/Hello-World:\n    codebuild_project: {}\n",
            s.project
        ),
    )
    .await;
    let secret_arn = aws::create_secret(
        &s.sdk,
        &e2e::unique("secrets"),
        &json!({"github_token": "ghp_e2e"}).to_string(),
    )
    .await;
    let table = e2e::unique("state");
    aws::create_state_table(&s.sdk, &table).await;

    let api = RuntimeApi::start().await.unwrap();
    let mut env = aws::process_env();
    env.extend(
        [
            ("SHIPLINE_CONFIG_PARAM", param.as_str()),
            ("SHIPLINE_SECRETS_ARN", secret_arn.as_str()),
            ("STATE_TABLE", table.as_str()),
            ("DEPLOY_QUEUE_URL", s.deploys_url.as_str()),
            ("NOTIFY_QUEUE_URL", s.notify_url.as_str()),
            ("GITHUB_API_URL", &s.github.uri()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let _function = api
        .spawn(
            &e2e::release_binary("build-dispatch"),
            "build-dispatch",
            &env,
        )
        .unwrap();

    assert_eq!(s.push("bin-1", SHA_A).await, 202);
    let mut event =
        serde_json::to_value(aws::receive_as_event(&s.sdk, &s.builds_url).await).unwrap();
    let mut malformed = event["Records"][0].clone();
    malformed["messageId"] = json!("malformed-1");
    malformed["body"] = json!("{\"v\":1,\"delivery_id\":");
    // Another line of work: within one group, a failure would rightly hold back what follows.
    malformed["attributes"]["MessageGroupId"] = json!("Codertocat/Hello-World#other");
    event["Records"]
        .as_array_mut()
        .unwrap()
        .insert(0, malformed);

    let Outcome::Response(response) = api.invoke(&event, Duration::from_secs(30)).await.unwrap()
    else {
        panic!("the function failed as a whole");
    };
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "malformed-1"}]})
    );
    assert_eq!(
        s.build_ids().await.len(),
        1,
        "the good message started its build"
    );
    assert_eq!(s.statuses().await[0].1, "pending");
}
