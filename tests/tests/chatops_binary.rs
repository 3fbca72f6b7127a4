//! chat-ops' release binary under a local Lambda Runtime API, on moto: the function as Lambda
//! runs it, from cold start (config from SSM, secret from Secrets Manager) to its answers.

use std::time::Duration;

use e2e::aws;
use e2e::runtime_api::{Outcome, RuntimeApi, http_api_event};
use serde_json::{Value, json};

const SECRET: &str = "e2e-telegram_secret";

const CONFIG: &str = "channels:\n  team: { telegram: { chat_id: -100123 } }\ndefaults:\n  notify: [team]\nchatops:\n  allow:\n    rollback: [1111]\nrepos:\n  o/r:\n    codebuild_project: r\n    deploy:\n      - branch: master\n        heroku: { app: r }\n";

async fn answer(api: &RuntimeApi, token: &str, update: &Value) -> Value {
    let headers = json!({
        "content-type": "application/json",
        "x-telegram-bot-api-secret-token": token,
    });
    let event = http_api_event("/telegram", &headers, update.to_string().as_bytes(), false);
    let Outcome::Response(response) = api.invoke(&event, Duration::from_secs(30)).await.unwrap()
    else {
        panic!("function error");
    };
    response
}

#[tokio::test]
#[ignore = "needs moto and the release binary: run scripts/test"]
async fn the_release_binary_answers_the_chat_and_refuses_a_forged_update() {
    let sdk = aws::sdk_config().await;
    let deploys = aws::create_fifo_queue(&sdk, &e2e::unique("deploys")).await;
    let notify = aws::create_queue(&sdk, &e2e::unique("notifications")).await;
    let dlq = aws::create_queue(&sdk, &e2e::unique("deploys-dlq")).await;
    let table = e2e::unique("state");
    aws::create_state_table(&sdk, &table).await;
    let param = format!("/{}/config", e2e::unique("shipline"));
    aws::put_parameter(&sdk, &param, CONFIG).await;
    let secret_arn = aws::create_secret(
        &sdk,
        &e2e::unique("secrets"),
        &json!({"telegram_webhook_secret": SECRET, "telegram_bot_token": "1:x"}).to_string(),
    )
    .await;

    let api = RuntimeApi::start().await.unwrap();
    let mut env = aws::process_env();
    let dead_letters = format!("deploys={dlq}");
    env.extend(
        [
            ("SHIPLINE_CONFIG_PARAM", param.as_str()),
            ("SHIPLINE_SECRETS_ARN", secret_arn.as_str()),
            ("STATE_TABLE", table.as_str()),
            ("DEPLOY_QUEUE_URL", deploys.as_str()),
            ("NOTIFY_QUEUE_URL", notify.as_str()),
            ("DEAD_LETTER_QUEUES", dead_letters.as_str()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let _function = api
        .spawn(&e2e::release_binary("chat-ops"), "chat-ops", &env)
        .unwrap();

    let status = json!({"update_id": 1, "message": {
        "message_id": 5, "date": 0, "text": "/status",
        "chat": {"id": -100123, "type": "supergroup"},
        "from": {"id": 2222, "is_bot": false, "first_name": "Bob"},
    }});
    let response = answer(&api, SECRET, &status).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["headers"]["content-type"], "application/json");
    let call: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(call["method"], "sendMessage");
    assert_eq!(call["chat_id"], -100123);
    let text = call["text"].as_str().unwrap();
    assert!(
        text.contains("nothing recorded yet") && text.contains("deploys 0"),
        "{text}"
    );

    let mut rollback = status.clone();
    rollback["update_id"] = json!(2);
    rollback["message"]["text"] = json!("/rollback heroku:r");
    rollback["message"]["from"]["id"] = json!(1111);
    let forged = answer(&api, "guess", &rollback).await;
    assert_eq!(forged["statusCode"], 401, "{forged}");
    assert!(aws::drain_queue(&sdk, &deploys).await.is_empty());
}
