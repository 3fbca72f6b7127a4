//! notifier against local fakes of the Telegram, Slack and Discord APIs, on in-memory state
//! and queues: one living message per build, rate limits that delay but never drop, refusals
//! that go to the dead-letter queue.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use notifier::{Deps, channels_from_config, handle_batch};
use serde_json::{Value, json};
use shared::adapters::memory::{FixedClock, MemoryQueue, MemoryRedelivery, MemoryStateStore};
use shared::batch::Handoff;
use shared::config::Config;
use shared::messages::{self, Facts, Notification, NotificationKind};
use shared::records::{LastAlarm, StateKey};
use shared::secrets::Secrets;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

struct Harness {
    deps: Deps,
    chat: MockServer,
    redelivery: Arc<MemoryRedelivery>,
    dlq: Arc<MemoryQueue>,
}

async fn harness() -> Harness {
    let chat = MockServer::start().await;
    let config = Config::from_yaml(
        "channels:\n  team: { telegram: { chat_id: -1001234567890, topic_id: 7 } }\n  alerts: { slack: { webhook_secret: slack_url } }\n  ops: { discord: { webhook_secret: discord_url } }\ndefaults:\n  notify: [team]\n",
    )
    .unwrap();
    let secrets = Secrets::default()
        .with("telegram_bot_token", "123:tok")
        .with("slack_url", &format!("{}/slack/hook", chat.uri()))
        // A forum-thread webhook URL, as Discord shows it: unversioned, with `thread_id`.
        .with(
            "discord_url",
            &format!("{}/api/webhooks/1/tok?thread_id=77", chat.uri()),
        );
    let channels =
        channels_from_config(&config, &secrets, &reqwest::Client::new(), &chat.uri()).unwrap();
    let redelivery = Arc::new(MemoryRedelivery::default());
    let dlq = Arc::new(MemoryQueue::standard());
    let deps = Deps {
        config: Arc::new(config),
        channels,
        state: Arc::new(MemoryStateStore::new()),
        handoff: Handoff {
            redelivery: redelivery.clone(),
            dead_letters: Some(dlq.clone()),
        },
        clock: Arc::new(FixedClock::at(
            time::macros::datetime!(2026-11-26 10:00 UTC),
        )),
    };
    Harness {
        deps,
        chat,
        redelivery,
        dlq,
    }
}

fn notification(kind: NotificationKind, at: &str, channels: &[&str]) -> String {
    messages::encode(&Notification {
        v: 1,
        kind,
        thread_key: format!("build:pax-app/User@{SHA}"),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        facts: Facts {
            repo: Some("pax-app/User".into()),
            sha: Some(SHA.into()),
            branch: Some("master".into()),
            commit_message: Some("Fix login".into()),
            author: Some("ana".into()),
            ..Facts::default()
        },
        at: at.into(),
    })
}

fn sqs(bodies: &[String]) -> SqsEvent {
    let groups: Vec<String> = (0..bodies.len())
        .map(|i| {
            let _ = i;
            String::new()
        })
        .collect();
    let messages: Vec<(&str, Option<&str>)> = bodies
        .iter()
        .zip(&groups)
        .map(|(b, g)| (b.as_str(), (!g.is_empty()).then_some(g.as_str())))
        .collect();
    shared::batch::sqs_event(
        "arn:aws:sqs:us-east-1:123456789012:notifications",
        &messages,
    )
}

async fn run(h: &Harness, bodies: &[String]) -> Vec<String> {
    handle_batch(&h.deps, &sqs(bodies), None)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

fn telegram_ok(message_id: i64) -> BotApi {
    BotApi(message_id)
}

/// Telegram's `sendMessage` / `editMessageText`: the text is "1-4096 characters after entities
/// parsing" (Bot API, *sendMessage*), counted in UTF-16 units as entity offsets are (*MessageEntity*);
/// a longer one is refused with 400 "message is too long", an empty one "message text is
/// empty" (the Bot API server's answers for MESSAGE_TOO_LONG and MESSAGE_EMPTY).
struct BotApi(i64);

impl Respond for BotApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let units = after_entity_parsing(body["text"].as_str().unwrap_or(""));
        let refused = match units {
            0 => Some("Bad Request: message text is empty"),
            n if n > 4096 => Some("Bad Request: message is too long"),
            _ => None,
        };
        match refused {
            Some(description) => ResponseTemplate::new(400)
                .set_body_json(json!({"ok": false, "error_code": 400, "description": description})),
            None => ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "result": {"message_id": self.0}})),
        }
    }
}

/// The length Telegram checks for `parse_mode: HTML`: tags are entities, not text, and `&lt;`
/// and its kind are one character.
fn after_entity_parsing(html: &str) -> usize {
    let (mut units, mut in_tag, mut in_entity) = (0, false, false);
    for c in html.chars() {
        match c {
            '<' if !in_entity => in_tag = true,
            '>' if in_tag => in_tag = false,
            '&' if !in_tag => (in_entity, units) = (true, units + 1),
            ';' if in_entity => in_entity = false,
            _ if in_tag || in_entity => {}
            c => units += c.len_utf16(),
        }
    }
    units
}

/// Discord's Execute / Edit Webhook Message: `content` is at most 2000 characters; a longer one
/// is refused with 400 and code 50035 "Invalid Form Body", the field's error nested as the
/// Discord API reference shows (*Opcodes and Status Codes*, JSON error codes; *Error
/// Messages*).
struct DiscordApi;

impl Respond for DiscordApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let content = body["content"].as_str().unwrap_or("");
        if content.chars().count() > 2000 {
            return ResponseTemplate::new(400).set_body_json(json!({
                "message": "Invalid Form Body", "code": 50035,
                "errors": {"content": {"_errors": [
                    {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
                ]}}
            }));
        }
        ResponseTemplate::new(200).set_body_json(json!({"id": "1234"}))
    }
}

/// (method path, request body) of every call the fake received.
async fn calls(h: &Harness) -> Vec<(String, Value)> {
    h.chat
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.url.path().to_string(),
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_builds_story_is_one_telegram_message_edited_twice() {
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(501))
        .mount(&h.chat)
        .await;
    Mock::given(path("/bot123:tok/editMessageText"))
        .respond_with(telegram_ok(501))
        .mount(&h.chat)
        .await;
    let story = [
        notification(
            NotificationKind::BuildStarted,
            "2026-11-26T10:00:00Z",
            &["team"],
        ),
        notification(
            NotificationKind::BuildSucceeded,
            "2026-11-26T10:03:12Z",
            &["team"],
        ),
        notification(
            NotificationKind::DeploySucceeded,
            "2026-11-26T10:05:00Z",
            &["team"],
        ),
    ];
    for message in &story {
        assert!(run(&h, std::slice::from_ref(message)).await.is_empty());
    }
    let calls = calls(&h).await;
    let paths: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/bot123:tok/sendMessage",
            "/bot123:tok/editMessageText",
            "/bot123:tok/editMessageText"
        ]
    );
    assert_eq!(calls[0].1["message_thread_id"], 7);
    assert_eq!(calls[1].1["message_id"], 501);
    assert!(
        calls[2].1["text"]
            .as_str()
            .unwrap()
            .starts_with("🟢 <b>Live</b>")
    );
}

#[tokio::test]
async fn late_or_repeated_notifications_do_not_roll_the_message_back() {
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(9))
        .mount(&h.chat)
        .await;
    Mock::given(path("/bot123:tok/editMessageText"))
        .respond_with(telegram_ok(9))
        .mount(&h.chat)
        .await;
    let started = notification(
        NotificationKind::BuildStarted,
        "2026-11-26T10:00:00Z",
        &["team"],
    );
    let passed = notification(
        NotificationKind::BuildSucceeded,
        "2026-11-26T10:03:00Z",
        &["team"],
    );
    assert!(run(&h, &[passed.clone(), started, passed]).await.is_empty());
    assert_eq!(
        calls(&h).await.len(),
        1,
        "the late `started` and the repeat change nothing"
    );
}

#[tokio::test]
async fn a_429_delays_the_message_which_is_then_delivered_exactly_once() {
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 2", "parameters": {"retry_after": 2}
        })))
        .up_to_n_times(1)
        .mount(&h.chat)
        .await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(77))
        .mount(&h.chat)
        .await;
    Mock::given(path("/slack/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&h.chat)
        .await;

    let both = notification(
        NotificationKind::BuildFailed,
        "2026-11-26T10:00:00Z",
        &["team", "alerts"],
    );
    let next_to_team = notification(
        NotificationKind::OpsAlarm,
        "2026-11-26T10:00:01Z",
        &["team"],
    );
    let failed = run(&h, &[both.clone(), next_to_team.clone()]).await;
    assert_eq!(
        failed,
        vec!["m-0", "m-1"],
        "the second waits behind the first on the same chat"
    );
    assert_eq!(
        h.redelivery.delays(),
        vec![Duration::from_secs(2), Duration::from_secs(2)]
    );

    // Redelivered after the delay: Telegram gets each once, Slack is not sent twice.
    assert!(run(&h, &[both, next_to_team]).await.is_empty());
    let calls = calls(&h).await;
    let count = |p: &str| calls.iter().filter(|(path, _)| path == p).count();
    assert_eq!(
        count("/bot123:tok/sendMessage"),
        2,
        "one 429, then the thread's message"
    );
    assert_eq!(
        count("/bot123:tok/editMessageText"),
        1,
        "the second notification of the thread edits it"
    );
    assert_eq!(count("/slack/hook"), 1);
}

#[tokio::test]
async fn a_400_goes_to_the_dead_letter_queue_without_retry() {
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "ok": false, "error_code": 400, "description": "Bad Request: chat not found"
        })))
        .mount(&h.chat)
        .await;
    let message = notification(
        NotificationKind::BuildStarted,
        "2026-11-26T10:00:00Z",
        &["team"],
    );
    assert!(
        run(&h, std::slice::from_ref(&message)).await.is_empty(),
        "not looped"
    );
    let dead = h.dlq.drain();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, message);
    assert!(
        dead[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("chat not found")
    );
    assert_eq!(calls(&h).await.len(), 1);
}

#[tokio::test]
async fn a_5xx_is_retried() {
    let h = harness().await;
    Mock::given(path("/slack/hook"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&h.chat)
        .await;
    let message = notification(
        NotificationKind::BuildStarted,
        "2026-11-26T10:00:00Z",
        &["alerts"],
    );
    assert_eq!(run(&h, &[message]).await, vec!["m-0"]);
    assert!(h.dlq.is_empty());
}

#[tokio::test]
async fn discord_edits_its_message_and_slack_posts_anew() {
    let h = harness().await;
    Mock::given(method("POST"))
        .and(path("/api/v10/webhooks/1/tok"))
        .respond_with(DiscordApi)
        .mount(&h.chat)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v10/webhooks/1/tok/messages/1234"))
        .respond_with(DiscordApi)
        .mount(&h.chat)
        .await;
    Mock::given(path("/slack/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&h.chat)
        .await;
    run(
        &h,
        &[notification(
            NotificationKind::BuildStarted,
            "2026-11-26T10:00:00Z",
            &["ops", "alerts"],
        )],
    )
    .await;
    run(
        &h,
        &[notification(
            NotificationKind::BuildSucceeded,
            "2026-11-26T10:01:00Z",
            &["ops", "alerts"],
        )],
    )
    .await;
    let paths: Vec<String> = calls(&h).await.into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        vec![
            "/api/v10/webhooks/1/tok",
            "/slack/hook",
            "/api/v10/webhooks/1/tok/messages/1234",
            "/slack/hook"
        ]
    );
    let discord_queries: Vec<String> = h
        .chat
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().starts_with("/api/"))
        .map(|r| r.url.query().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        discord_queries,
        vec!["thread_id=77&wait=true", "thread_id=77"],
        "the forum thread is kept; the post waits for the message"
    );
}

#[tokio::test]
async fn a_hostile_commit_message_is_accepted_by_every_channel() {
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(1))
        .mount(&h.chat)
        .await;
    Mock::given(path("/slack/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&h.chat)
        .await;
    Mock::given(path("/api/v10/webhooks/1/tok"))
        .respond_with(DiscordApi)
        .mount(&h.chat)
        .await;
    let mut n: Notification = messages::decode(&notification(
        NotificationKind::BuildFailed,
        "2026-11-26T10:00:00Z",
        &["team", "alerts", "ops"],
    ))
    .unwrap();
    n.facts.commit_message = Some(format!(
        "<b>&</b> <i>unbalanced *x* _y_ @everyone {} مرحبا {}",
        "🚀".repeat(20),
        "z".repeat(10_000)
    ));
    // The Telegram and Discord fakes refuse an over-long text as the services do: a message
    // over the limit would be dead-lettered here.
    assert!(run(&h, &[messages::encode(&n)]).await.is_empty());
    assert!(h.dlq.is_empty());
    for (path, body) in calls(&h).await {
        let text = body["text"].as_str().or(body["content"].as_str()).unwrap();
        // Slack truncates beyond 40,000 and advises under 4,000 (*Truncating content*).
        let limit = match path.as_str() {
            "/slack/hook" => 4000,
            p if p.starts_with("/api/") => 2000,
            _ => 4096,
        };
        assert!(
            text.encode_utf16().count() <= limit,
            "{path}: {}",
            text.encode_utf16().count()
        );
        assert!(!text.contains("<b>&</b>"), "{path} escaped the user text");
    }
}

#[tokio::test]
async fn the_fakes_refuse_a_text_over_the_limit_as_the_services_do() {
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(1))
        .mount(&h.chat)
        .await;
    Mock::given(path("/api/v10/webhooks/1/tok"))
        .respond_with(DiscordApi)
        .mount(&h.chat)
        .await;
    let send = |path: &str, body: Value| {
        let url = format!("{}{path}", h.chat.uri());
        async move {
            let answer = reqwest::Client::new().post(url).json(&body).send().await;
            let answer = answer.unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        }
    };
    // 2,048 emoji are 4,096 UTF-16 units; the tags around them are not counted.
    let fits = format!("<b>{}</b>", "🚀".repeat(2048));
    assert_eq!(
        send("/bot123:tok/sendMessage", json!({"text": fits}))
            .await
            .0,
        200
    );
    let (status, body) = send(
        "/bot123:tok/sendMessage",
        json!({"text": "🚀".repeat(2049)}),
    )
    .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: message is too long"))
    );
    let (status, body) = send(
        "/api/v10/webhooks/1/tok",
        json!({"content": "z".repeat(2001)}),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50035)));
}

#[tokio::test]
async fn a_cloudwatch_alarm_becomes_a_clear_message() {
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(3))
        .mount(&h.chat)
        .await;
    let alarm = r#"{"AlarmName":"shipline-deploy-dlq","NewStateValue":"ALARM","NewStateReason":"Threshold Crossed: 1 datapoint [3.0 (26/11/26 10:00:00)] was greater than or equal to the threshold (1.0).","StateChangeTime":"2026-11-26T10:00:00.000+0000","Trigger":{"MetricName":"ApproximateNumberOfMessagesVisible","Namespace":"AWS/SQS","Dimensions":[{"value":"shipline-DeployDeadLetterQueue-X.fifo","name":"QueueName"}]}}"#;
    assert!(run(&h, &[alarm.to_string()]).await.is_empty());
    let text = calls(&h).await[0].1["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("🚨 <b>shipline alarm</b>: <b>3 messages in the dead-letter queue shipline-DeployDeadLetterQueue-X.fifo</b>"), "{text}");
}

#[tokio::test]
async fn a_new_alarms_first_ok_says_nothing_and_a_recovery_is_told() {
    // A new alarm starts in INSUFFICIENT_DATA; its first evaluation to OK fires its OK actions
    // (CloudWatch, "Alarm states"): on a first deploy, every alarm of the stack at once.
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(3))
        .mount(&h.chat)
        .await;
    let ok_after = |old: &str| {
        format!(
            r#"{{"AlarmName":"shipline-deploy-dlq","AlarmDescription":"Deploy requests in the dead-letter queue","NewStateValue":"OK","OldStateValue":"{old}","NewStateReason":"Threshold Crossed: 1 datapoint [0.0 (26/11/26 10:05:00)] was not greater than or equal to the threshold (1.0).","StateChangeTime":"2026-11-26T10:05:00.000+0000"}}"#
        )
    };
    let last_alarm = || async {
        h.deps
            .state
            .read_value::<LastAlarm>(StateKey::LastAlarm, 0)
            .await
            .unwrap()
    };
    assert!(run(&h, &[ok_after("INSUFFICIENT_DATA")]).await.is_empty());
    assert!(calls(&h).await.is_empty(), "nothing to tell");
    assert!(h.dlq.is_empty());
    assert_eq!(last_alarm().await, None, "nor to show");
    assert!(run(&h, &[ok_after("ALARM")]).await.is_empty());
    let text = calls(&h).await[0].1["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("Resolved: Deploy requests in the dead-letter queue"),
        "{text}"
    );
    // The status page shows it as the last alarm.
    let shown = last_alarm().await.unwrap();
    assert_eq!(
        shown.title,
        "Resolved: Deploy requests in the dead-letter queue"
    );
    assert_eq!(shown.state, "OK");
    // CloudWatch's `StateChangeTime` (`2026-11-26T10:05:00.000+0000`), read as a time.
    assert_eq!(shown.at, 1_795_687_500);
}

#[tokio::test]
async fn a_message_that_is_neither_is_dead_lettered_alone() {
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(3))
        .mount(&h.chat)
        .await;
    let good = notification(
        NotificationKind::BuildStarted,
        "2026-11-26T10:00:00Z",
        &["team"],
    );
    assert!(
        run(&h, &["{\"hello\": 1}".to_string(), good])
            .await
            .is_empty()
    );
    assert_eq!(h.dlq.drain().len(), 1);
}

#[tokio::test]
async fn a_corrupt_thread_record_is_dead_lettered_with_its_reason_not_posted_anew() {
    let h = harness().await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(3))
        .mount(&h.chat)
        .await;
    h.deps
        .state
        .put(
            &format!("chat:team:build:pax-app/User@{SHA}"),
            json!({"message_id": 12}),
            shared::ports::Precondition::None,
            None,
            0,
        )
        .await
        .unwrap();
    let message = notification(
        NotificationKind::BuildStarted,
        "2026-11-26T10:00:00Z",
        &["team"],
    );
    assert!(run(&h, std::slice::from_ref(&message)).await.is_empty());
    let dead = h.dlq.drain();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("team: stored record is corrupt: chat:team:build:"),
        "{:?}",
        dead[0].reason
    );
    assert!(calls(&h).await.is_empty(), "no second message in the chat");
}

#[tokio::test]
async fn a_chat_limited_for_300_s_time_after_time_gets_the_message_once_and_nothing_is_dead_lettered()
 {
    // Eight waits at least, and more than the real failures a message may have: if waits
    // counted, this message would be dead-lettered before the chat took it.
    let limited = 8.max(shared::batch::MAX_FAILURES as usize + 2);
    let h = harness().await;
    // Telegram's 429 carries the wait in `parameters.retry_after` (Bot API, ResponseParameters).
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 300",
            "parameters": {"retry_after": 300}
        })))
        .up_to_n_times(limited as u64)
        .mount(&h.chat)
        .await;
    Mock::given(path("/bot123:tok/sendMessage"))
        .respond_with(telegram_ok(88))
        .mount(&h.chat)
        .await;
    let message = notification(
        NotificationKind::BuildFailed,
        "2026-11-26T10:00:00Z",
        &["team"],
    );
    // SQS redelivers the same message after each wait: the limited receives, then one more.
    for receive in 1..=limited {
        assert_eq!(
            run(&h, std::slice::from_ref(&message)).await,
            vec!["m-0"],
            "receive {receive} waits"
        );
    }
    assert!(
        run(&h, std::slice::from_ref(&message)).await.is_empty(),
        "the next receive delivers it"
    );
    assert!(
        run(&h, std::slice::from_ref(&message)).await.is_empty(),
        "a duplicate delivery afterwards changes nothing"
    );
    let paths: Vec<String> = calls(&h).await.into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        vec!["/bot123:tok/sendMessage"; limited + 1],
        "the refused attempts, then the one message the chat shows"
    );
    assert_eq!(
        h.redelivery.delays(),
        vec![Duration::from_secs(300); limited]
    );
    assert!(h.dlq.is_empty(), "waiting is never failing");
}
