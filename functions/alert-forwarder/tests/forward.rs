//! alert-forwarder as Lambda calls it, on in-memory state and queues.

use std::sync::Arc;
use std::time::Duration;

use alert_forwarder::sentry::sign;
use alert_forwarder::{Deps, handle};
use lambda_http::Body;
use serde_json::{Value, json};
use shared::adapters::memory::{FixedClock, MemoryQueue, MemoryStateStore};
use shared::config::Config;
use shared::messages::{self, Notification, NotificationKind};
use shared::ports::{Clock, OutgoingMessage, Precondition, Queue, QueueError, StateStore};
use shared::records::{LiveRecord, StateKey};
use shared::secrets::SecretString;

const SECRET: &str = "sentry client secret";
const ISSUE: &str = include_str!("../testdata/sentry-issue-created.json");
const EVENT_ALERT: &str = include_str!("../testdata/sentry-event_alert.json");
const INSTALLATION: &str = include_str!("../testdata/sentry-installation-created.json");
const URL_EVENT: &str = include_str!("../../../shared/testdata/lambda-function-url-request.json");

struct Harness {
    deps: Deps,
    queue: Arc<MemoryQueue>,
    state: Arc<MemoryStateStore>,
    clock: Arc<FixedClock>,
}

fn harness(extra: &str) -> Harness {
    let queue = Arc::new(MemoryQueue::standard());
    let state = Arc::new(MemoryStateStore::new());
    let clock = Arc::new(FixedClock::at(
        time::macros::datetime!(2026-11-26 12:00 UTC),
    ));
    let config = Config::from_yaml(&format!(
        "channels:\n  team: {{ console: {{}} }}\n  alerts: {{ console: {{}} }}\ndefaults:\n  notify: [team]\nrepos:\n  pax-app/Frontend:\n    codebuild_project: front\n    sentry_project: front-end\n    deploy:\n      - branch: master\n        heroku: {{ app: pax-front }}\nsentry:\n  projects:\n    front-end: {{ notify: [team, alerts], min_level: warning, throttle: 10m }}\n{extra}"
    ))
    .unwrap();
    let deps = Deps {
        config: Arc::new(config),
        client_secret: Some(SecretString::new(SECRET)),
        legacy_token: Some(SecretString::new("legacy-token-123")),
        notify: queue.clone(),
        deploys: None,
        state: state.clone(),
        clock: clock.clone(),
    };
    Harness {
        deps,
        queue,
        state,
        clock,
    }
}

fn event(path: &str, query: &str, headers: Value, body: &str) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(URL_EVENT).unwrap();
    event["headers"] = headers;
    event["rawPath"] = json!(path);
    event["rawQueryString"] = json!(query);
    event["queryStringParameters"] = if query.is_empty() {
        json!(null)
    } else {
        let (k, v) = query.split_once('=').unwrap();
        json!({ k: v })
    };
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["domainName"] = json!("abc.lambda-url.us-east-1.on.aws");
    event["body"] = json!(body);
    event["isBase64Encoded"] = json!(false);
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// The headers of a delivery as Sentry sends it now: each with its own `Request-ID` and the
/// time it was sent (docs.sentry.io, *Integration Platform → Webhooks → Headers*).
fn signed(h: &Harness, resource: &str, body: &str) -> Value {
    static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({
        "content-type": "application/json",
        "sentry-hook-resource": resource,
        "sentry-hook-timestamp": h.clock.unix().to_string(),
        "sentry-hook-signature": sign(SECRET.as_bytes(), body.as_bytes()),
        "request-id": format!("5f1c7c6e-0000-4000-8000-{n:012}"),
    })
}

async fn call(h: &Harness, request: lambda_http::Request) -> (u16, String) {
    let response = handle(&h.deps, request).await.unwrap();
    let Body::Text(text) = response.body() else {
        panic!()
    };
    let message = serde_json::from_str::<Value>(text).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    (response.status().as_u16(), message)
}

async fn post(h: &Harness, resource: &str, body: &str) -> (u16, String) {
    call(h, event("/sentry", "", signed(h, resource, body), body)).await
}

fn queued(h: &Harness) -> Vec<Notification> {
    h.queue
        .drain()
        .into_iter()
        .map(|m| messages::decode(&m.body).unwrap())
        .collect()
}

fn with_action(body: &str, action: &str) -> String {
    let mut v: Value = serde_json::from_str(body).unwrap();
    v["action"] = json!(action);
    v.to_string()
}

#[tokio::test]
async fn each_resource_and_action_yields_a_notification_or_a_reasoned_ignore() {
    let h = harness("");
    assert_eq!(post(&h, "issue", ISSUE).await, (202, "queued".into()));
    assert_eq!(post(&h, "event_alert", EVENT_ALERT).await.0, 202);
    assert_eq!(
        post(&h, "issue", &with_action(ISSUE, "resolved")).await.0,
        202
    );
    assert_eq!(
        post(&h, "issue", &with_action(ISSUE, "unresolved")).await.0,
        202
    );
    let metric = json!({"action": "critical", "data": {"description_title": "Too many errors", "web_url": "https://sentry.io/organizations/baz/alerts/1/",
        "metric_alert": {"id": "1", "projects": ["front-end"], "alert_rule": {"id": 7, "name": "errors"}}}}).to_string();
    assert_eq!(post(&h, "metric_alert", &metric).await.0, 202);
    let error = json!({"action": "created", "data": {"error": {"issue_id": "55", "title": "KeyError: 'x'", "level": "error",
        "url": "https://sentry.io/api/0/projects/test-org/front-end/events/abc/", "web_url": "https://sentry.io/organizations/test-org/issues/55/events/abc/"}}}).to_string();
    assert_eq!(post(&h, "error", &error).await.0, 202);
    let sent = queued(&h);
    assert_eq!(sent.len(), 6);
    assert!(sent.iter().all(|n| n.kind == NotificationKind::ErrorAlert && n.channels == vec!["team", "alerts"]));
    assert_eq!(
        sent[0].facts.title.as_deref(),
        Some("ReferenceError: blooopy is not defined")
    );
    assert_eq!(
        sent[0].facts.url.as_deref(),
        Some("https://sentry.io/issues/1170820242/")
    );
    assert_eq!(sent[2].facts.status.as_deref(), Some("resolved"));
    assert_eq!(sent[3].facts.status.as_deref(), Some("regressed"));
    assert_eq!(sent[4].facts.title.as_deref(), Some("Too many errors"));

    assert_eq!(
        post(&h, "installation", INSTALLATION).await,
        (200, "acknowledged: installation created".into())
    );
    assert_eq!(
        post(&h, "comment", r#"{"action":"created","data":{}}"#).await,
        (200, "ignored: resource `comment`".into())
    );
    assert_eq!(
        post(&h, "issue", &with_action(ISSUE, "bookmarked")).await,
        (200, "ignored: issue action `bookmarked`".into())
    );
    assert!(queued(&h).is_empty());
}

#[tokio::test]
async fn a_wrong_missing_or_truncated_signature_is_401_and_enqueues_nothing() {
    let h = harness("");
    let mut wrong = signed(&h, "issue", ISSUE);
    wrong["sentry-hook-signature"] = json!(sign(b"guess", ISSUE.as_bytes()));
    assert_eq!(call(&h, event("/sentry", "", wrong, ISSUE)).await.0, 401);
    let mut truncated = signed(&h, "issue", ISSUE);
    truncated["sentry-hook-signature"] = json!(&sign(SECRET.as_bytes(), ISSUE.as_bytes())[..40]);
    assert_eq!(
        call(&h, event("/sentry", "", truncated, ISSUE)).await.0,
        401
    );
    let mut missing = signed(&h, "issue", ISSUE);
    missing
        .as_object_mut()
        .unwrap()
        .remove("sentry-hook-signature");
    assert_eq!(
        call(&h, event("/sentry", "", missing, ISSUE)).await,
        (401, "missing Sentry-Hook-Signature header".into())
    );
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn a_delivery_sent_again_is_answered_once_and_a_replay_is_refused() {
    let h = harness("");
    let resolved = with_action(ISSUE, "resolved");
    let headers = signed(&h, "issue", &resolved);
    let again = || call(&h, event("/sentry", "", headers.clone(), &resolved));
    assert_eq!(again().await, (202, "queued".into()));
    assert_eq!(
        again().await,
        (200, "duplicate: this request was answered".into())
    );
    assert_eq!(
        queued(&h).len(),
        1,
        "a resolved alert sent twice is told once"
    );

    // The same delivery captured and sent an hour later, with a fresh Request-ID.
    h.clock.advance(Duration::from_secs(3600));
    let mut replay = headers.clone();
    replay["request-id"] = json!("a-new-id");
    assert_eq!(
        call(&h, event("/sentry", "", replay.clone(), &resolved)).await,
        (
            401,
            "Sentry-Hook-Timestamp is 3600 s from now, outside the 300 s window: a replay is refused"
                .into()
        )
    );
    replay["sentry-hook-timestamp"] = json!("yesterday");
    assert_eq!(
        call(&h, event("/sentry", "", replay, &resolved)).await,
        (401, "Sentry-Hook-Timestamp is not Unix seconds".into())
    );
    assert!(h.queue.is_empty());
}

/// The notifications queue with a round trip: other requests run while a send is under way,
/// as they do beside SQS.
struct RoundTrip(Arc<MemoryQueue>);

#[async_trait::async_trait]
impl Queue for RoundTrip {
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        tokio::task::yield_now().await;
        self.0.send(message).await
    }
}

#[tokio::test]
async fn two_copies_arriving_together_are_told_once_and_a_failed_answer_is_retried() {
    let mut h = harness("");
    h.deps.notify = Arc::new(RoundTrip(h.queue.clone()));
    let resolved = with_action(ISSUE, "resolved");
    let headers = signed(&h, "issue", &resolved);
    let copy = || call(&h, event("/sentry", "", headers.clone(), &resolved));
    let (a, b) = tokio::join!(copy(), copy());
    let mut answers = [a, b];
    answers.sort();
    assert_eq!(
        answers,
        [
            (200, "duplicate: this request was answered".into()),
            (202, "queued".into())
        ]
    );
    assert_eq!(queued(&h).len(), 1, "told once");

    // The queue down: Sentry is answered 5xx, and its retry of the same request acts.
    let headers = signed(&h, "issue", &resolved);
    let again = || call(&h, event("/sentry", "", headers.clone(), &resolved));
    h.queue.fail_next_sends(1);
    assert!(again().await.0 >= 500);
    assert_eq!(again().await, (202, "queued".into()));
    assert_eq!(queued(&h).len(), 1);
}

#[tokio::test]
async fn a_burst_of_fifty_events_yields_one_message_and_then_one_summary() {
    let h = harness("");
    for _ in 0..50 {
        post(&h, "event_alert", EVENT_ALERT).await;
    }
    assert_eq!(queued(&h).len(), 1);
    h.clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(post(&h, "event_alert", EVENT_ALERT).await.0, 202);
    let summary = queued(&h);
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].facts.count, Some(49));
    assert_eq!(
        summary[0].facts.reason.as_deref(),
        Some("49 more events since 2026-11-26T12:00:00Z")
    );
}

#[tokio::test]
async fn resolved_passes_the_throttle() {
    let h = harness("");
    post(&h, "issue", ISSUE).await;
    post(&h, "issue", ISSUE).await;
    assert_eq!(
        post(&h, "issue", &with_action(ISSUE, "resolved")).await.0,
        202
    );
    assert_eq!(queued(&h).len(), 2, "created once, then resolved");
}

#[tokio::test]
async fn the_live_release_of_the_mapped_service_is_in_the_message() {
    let h = harness("");
    let live = LiveRecord {
        repo: "pax-app/Frontend".into(),
        branch: "master".into(),
        sha: "abc1234def5678".into(),
        release_id: "rel-7".into(),
        version: Some("v7".into()),
        at: "2026-11-26T10:00:00Z".into(),
        build_id: "front:1".into(),
        history: vec![],
        artifacts: Default::default(),
        deployment_id: None,
        restored: false,
        by: None,
    };
    h.state
        .put(
            &StateKey::Live("heroku:pax-front").to_string(),
            serde_json::to_value(live).unwrap(),
            Precondition::None,
            None,
            0,
        )
        .await
        .unwrap();
    post(&h, "issue", ISSUE).await;
    let n = queued(&h).pop().unwrap();
    assert_eq!(
        n.facts.release.as_deref(),
        Some("abc1234 (v7) on heroku:pax-front, deployed 2h ago")
    );
}

#[tokio::test]
async fn a_corrupt_throttle_record_is_a_500_not_an_open_window() {
    let h = harness("");
    h.state
        .put(
            &StateKey::Throttle {
                project: "front-end",
                issue: "1170820242",
            }
            .to_string(),
            json!({"window_start": "yesterday"}),
            Precondition::None,
            None,
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        post(&h, "issue", ISSUE).await,
        (500, "state store unavailable".into())
    );
    assert!(queued(&h).is_empty());
}

#[tokio::test]
async fn an_unreadable_live_record_leaves_the_release_out_of_the_alert() {
    let h = harness("");
    h.state
        .put(
            &StateKey::Live("heroku:pax-front").to_string(),
            json!({"sha": 7}),
            Precondition::None,
            None,
            0,
        )
        .await
        .unwrap();
    assert_eq!(post(&h, "issue", ISSUE).await.0, 202);
    assert_eq!(queued(&h).pop().unwrap().facts.release, None);
}

#[tokio::test]
async fn levels_below_the_minimum_and_unknown_projects_are_ignored_as_configured() {
    let h = harness("  unknown_projects: ignore\n");
    let info = ISSUE.replace(r#""level": "error""#, r#""level": "info""#);
    assert!(
        post(&h, "issue", &info)
            .await
            .1
            .starts_with("ignored: level Info is below Warning")
    );
    let other = ISSUE.replace(r#""slug": "front-end""#, r#""slug": "elsewhere""#);
    assert_eq!(
        post(&h, "issue", &other).await,
        (
            200,
            "ignored: Sentry project `elsewhere` is not in the config".into()
        )
    );
    assert!(h.queue.is_empty());
    // By default an unknown project goes to the default channels.
    let h = harness("");
    assert_eq!(post(&h, "issue", &other).await.0, 202);
    assert_eq!(queued(&h)[0].channels, vec!["team"]);
}

#[tokio::test]
async fn the_legacy_plugin_needs_its_token() {
    let h = harness("");
    let body = json!({"id": "77", "project": "front-end", "project_name": "Front End", "level": "error", "culprit": "app.js",
        "message": "boom", "url": "https://sentry.example/org/front-end/issues/77/?referrer=webhooks_plugin", "event": {"title": "Error: boom"}}).to_string();
    let headers = json!({"content-type": "application/json"});
    assert_eq!(
        call(
            &h,
            event("/sentry/legacy", "token=wrong", headers.clone(), &body)
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(&h, event("/sentry/legacy", "", headers.clone(), &body))
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            &h,
            event("/sentry/legacy", "token=legacy-token-123", headers, &body)
        )
        .await
        .0,
        202
    );
    assert_eq!(queued(&h)[0].facts.title.as_deref(), Some("Error: boom"));
}

#[tokio::test]
async fn a_malformed_body_is_400() {
    let h = harness("");
    assert_eq!(post(&h, "issue", "{not json").await.0, 400);
    assert_eq!(
        post(&h, "issue", r#"{"action":"created"}"#).await,
        (400, "payload is missing `data`".into())
    );
}
