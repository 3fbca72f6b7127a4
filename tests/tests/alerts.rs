//! alert-forwarder's release binary under a local Lambda Runtime API, on moto.

use std::time::Duration;

use e2e::aws;
use e2e::runtime_api::{Outcome, RuntimeApi, http_api_event};
use serde_json::json;
use shared::messages::{self, Notification, NotificationKind};

const ISSUE: &[u8] =
    include_bytes!("../../functions/alert-forwarder/testdata/sentry-issue-created.json");

#[tokio::test]
#[ignore = "needs moto and the release binary: run scripts/test"]
async fn the_release_binary_answers_a_signed_issue_alert_and_queues_the_notification() {
    let sdk = aws::sdk_config().await;
    let notify_url = aws::create_queue(&sdk, &e2e::unique("notifications")).await;
    let table = e2e::unique("state");
    aws::create_state_table(&sdk, &table).await;
    let param = format!("/{}/config", e2e::unique("shipline"));
    aws::put_parameter(
        &sdk,
        &param,
        "channels:\n  team: { telegram: { chat_id: -100123 } }\ndefaults:\n  notify: [team]\nsentry:\n  projects:\n    front-end: { notify: [team] }\n",
    )
    .await;
    let secret_arn = aws::create_secret(
        &sdk,
        &e2e::unique("secrets"),
        &json!({"sentry_client_secret": "e2e sentry secret", "telegram_bot_token": "1:x"})
            .to_string(),
    )
    .await;

    let api = RuntimeApi::start().await.unwrap();
    let mut env = aws::process_env();
    env.extend(
        [
            ("SHIPLINE_CONFIG_PARAM", param.as_str()),
            ("SHIPLINE_SECRETS_ARN", secret_arn.as_str()),
            ("STATE_TABLE", table.as_str()),
            ("NOTIFY_QUEUE_URL", notify_url.as_str()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let _function = api
        .spawn(
            &e2e::release_binary("alert-forwarder"),
            "alert-forwarder",
            &env,
        )
        .unwrap();

    let headers = json!({
        "content-type": "application/json",
        "sentry-hook-resource": "issue",
        "sentry-hook-signature": alert_forwarder::sentry::sign(b"e2e sentry secret", ISSUE),
        "request-id": "e2e-1",
    });
    let event = http_api_event("/sentry", &headers, ISSUE, false);
    let Outcome::Response(response) = api.invoke(&event, Duration::from_secs(30)).await.unwrap()
    else {
        panic!("function error");
    };
    assert_eq!(response["statusCode"], 202, "{response}");

    let mut forged = headers.clone();
    forged["sentry-hook-signature"] = json!(alert_forwarder::sentry::sign(b"guess", ISSUE));
    let Outcome::Response(response) = api
        .invoke(
            &http_api_event("/sentry", &forged, ISSUE, false),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
    else {
        panic!("function error");
    };
    assert_eq!(response["statusCode"], 401);

    let queued = aws::drain_queue(&sdk, &notify_url).await;
    assert_eq!(queued.len(), 1);
    let n: Notification = messages::decode(queued[0].body().unwrap()).unwrap();
    assert_eq!(
        (n.kind, n.channels.clone()),
        (NotificationKind::ErrorAlert, vec!["team".to_string()])
    );
    assert_eq!(
        n.facts.title.as_deref(),
        Some("ReferenceError: blooopy is not defined")
    );
}
