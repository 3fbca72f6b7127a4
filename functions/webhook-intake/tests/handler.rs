//! The handler as Lambda calls it, on in-memory adapters: what GitHub sees in the reply and
//! what lands on the build queue.

use std::sync::Arc;

use base64::Engine;
use lambda_http::Body;
use serde_json::{Value, json};
use shared::adapters::memory::{FixedClock, MemoryQueue, MemoryStateStore};
use shared::config::Config;
use shared::messages::{self, BuildRequest, Trigger};
use shared::ports::{Precondition, StateStore};
use shared::secrets::SecretString;
use webhook_intake::webhook::sign;
use webhook_intake::{Deps, handle};

const SECRET: &str = "It's a Secret to Everybody";
const PUSH: &[u8] = include_bytes!("../testdata/github-push.json");
const PR_OPENED: &[u8] = include_bytes!("../testdata/github-pull_request-opened.json");
const PING: &[u8] = include_bytes!("../testdata/github-ping.json");
const URL_EVENT: &str = include_str!("../../../shared/testdata/lambda-function-url-request.json");

struct Harness {
    deps: Deps,
    queue: Arc<MemoryQueue>,
    state: Arc<MemoryStateStore>,
}

fn harness() -> Harness {
    let queue = Arc::new(MemoryQueue::fifo());
    let state = Arc::new(MemoryStateStore::new());
    let config =
        Config::from_yaml("repos:\n  Codertocat/Hello-World:\n    codebuild_project: hello\n")
            .unwrap();
    let deps = Deps {
        config: Arc::new(config),
        webhook_secret: SecretString::new(SECRET),
        builds: queue.clone(),
        state: state.clone(),
        clock: Arc::new(FixedClock::at(
            time::macros::datetime!(2026-11-26 10:00 UTC),
        )),
    };
    Harness { deps, queue, state }
}

/// A function URL event around `body`, as Lambda delivers it.
fn event(headers: Value, body: &[u8], base64: bool) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(URL_EVENT).unwrap();
    event["headers"] = headers;
    event["rawPath"] = json!("/github");
    event["requestContext"]["http"]["path"] = json!("/github");
    // The published template has placeholders (`<url-id>`) where a real host name stands.
    event["requestContext"]["domainName"] = json!("abcdefg.lambda-url.us-west-2.on.aws");
    event["body"] = if base64 {
        json!(base64::engine::general_purpose::STANDARD.encode(body))
    } else {
        json!(String::from_utf8(body.to_vec()).unwrap())
    };
    event["isBase64Encoded"] = json!(base64);
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn github_headers(event: &str, delivery: &str, body: &[u8]) -> Value {
    json!({
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": sign(SECRET.as_bytes(), body),
        "user-agent": "GitHub-Hookshot/044aadd",
    })
}

async fn call(h: &Harness, request: lambda_http::Request) -> (u16, String) {
    let response = handle(&h.deps, request).await.unwrap();
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(t) => t.clone(),
        other => panic!("unexpected body {other:?}"),
    };
    let message = serde_json::from_str::<Value>(&body).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    (status, message)
}

fn queued(h: &Harness) -> Vec<BuildRequest> {
    h.queue
        .drain()
        .into_iter()
        .map(|m| {
            let request: BuildRequest = messages::decode(&m.body).unwrap();
            assert_eq!(m.dedup_id.as_deref(), Some(request.delivery_id.as_str()));
            assert_eq!(m.group_id, Some(request.message_group_id()));
            request
        })
        .collect()
}

#[tokio::test]
async fn a_signed_push_is_queued_once_and_answered_202() {
    let h = harness();
    let (status, message) = call(&h, event(github_headers("push", "d-1", PUSH), PUSH, false)).await;
    assert_eq!(status, 202, "{message}");
    assert_eq!(
        message,
        "queued: build of Codertocat/Hello-World#master at 6113728"
    );
    let requests = queued(&h);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].sha, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(requests[0].received_at, "2026-11-26T10:00:00Z");
    assert!(matches!(&requests[0].trigger, Trigger::Push(p) if p.branch == "master"));
}

#[tokio::test]
async fn a_redelivery_answers_duplicate_and_enqueues_nothing() {
    let h = harness();
    let first = call(&h, event(github_headers("push", "d-1", PUSH), PUSH, false)).await;
    assert_eq!(first.0, 202);
    let again = call(&h, event(github_headers("push", "d-1", PUSH), PUSH, false)).await;
    assert_eq!(
        again,
        (200, "duplicate: this delivery was already queued".into())
    );
    assert_eq!(queued(&h).len(), 1);
    assert_eq!(h.state.keys(), vec!["delivery:d-1".to_string()]);
}

#[tokio::test]
async fn a_base64_body_is_verified_over_the_decoded_bytes() {
    let h = harness();
    let request = event(
        github_headers("pull_request", "d-2", PR_OPENED),
        PR_OPENED,
        true,
    );
    let (status, _) = call(&h, request).await;
    assert_eq!(status, 202);
    let requests = queued(&h);
    assert!(matches!(&requests[0].trigger, Trigger::PullRequest(pr) if pr.number == 2 && !pr.fork));
    assert_eq!(
        requests[0].message_group_id(),
        "Codertocat/Hello-World#pr-2"
    );
}

#[tokio::test]
async fn a_form_encoded_delivery_is_read_from_its_payload_field() {
    let h = harness();
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(PUSH).unwrap())
        .finish();
    let mut headers = github_headers("push", "d-3", form.as_bytes());
    headers["content-type"] = json!("application/x-www-form-urlencoded");
    // Function URLs base64-encode form bodies.
    let (status, message) = call(&h, event(headers, form.as_bytes(), true)).await;
    assert_eq!(status, 202, "{message}");
    assert_eq!(queued(&h).len(), 1);
}

#[tokio::test]
async fn header_names_are_case_insensitive() {
    let h = harness();
    let headers = json!({
        "Content-Type": "application/json; charset=utf-8",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-4",
        "X-Hub-Signature-256": sign(SECRET.as_bytes(), PUSH),
    });
    let (status, _) = call(&h, event(headers, PUSH, false)).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_wrong_or_missing_signature_is_401_and_enqueues_nothing() {
    let h = harness();
    let mut wrong = github_headers("push", "d-5", PUSH);
    wrong["x-hub-signature-256"] = json!(sign(b"not the secret", PUSH));
    assert_eq!(call(&h, event(wrong, PUSH, false)).await.0, 401);

    let mut missing = github_headers("push", "d-5", PUSH);
    missing
        .as_object_mut()
        .unwrap()
        .remove("x-hub-signature-256");
    let (status, message) = call(&h, event(missing, PUSH, false)).await;
    assert_eq!(
        (status, message.as_str()),
        (401, "missing X-Hub-Signature-256 header")
    );

    // A signature over other bytes than those delivered (re-serialised JSON) fails too.
    let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(PUSH).unwrap()).unwrap();
    let tampered = github_headers("push", "d-5", PUSH);
    assert_eq!(call(&h, event(tampered, &reserialised, false)).await.0, 401);

    assert!(h.queue.is_empty());
    assert!(
        h.state.keys().is_empty(),
        "a refused delivery leaves no dedup record"
    );
}

#[tokio::test]
async fn an_unsigned_garbage_body_is_401_before_any_parsing() {
    let h = harness();
    let mut headers = github_headers("push", "d-6", b"x");
    headers["content-type"] = json!("text/plain");
    headers["x-hub-signature-256"] = json!("sha256=00");
    assert_eq!(call(&h, event(headers, b"{{{{", false)).await.0, 401);
}

#[tokio::test]
async fn ping_is_answered_pong() {
    let h = harness();
    assert_eq!(
        call(&h, event(github_headers("ping", "d-7", PING), PING, false)).await,
        (200, "pong".into())
    );
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn other_events_unconfigured_repos_and_closed_prs_are_ignored_with_reason() {
    let h = harness();
    let issues = br#"{"action":"opened"}"#;
    assert_eq!(
        call(
            &h,
            event(github_headers("issues", "d-8", issues), issues, false)
        )
        .await,
        (200, "ignored: event `issues` does not start a build".into())
    );
    let other_repo = String::from_utf8(PUSH.to_vec())
        .unwrap()
        .replace("Codertocat/Hello-World", "someone/else");
    let body = other_repo.as_bytes();
    let (status, message) = call(&h, event(github_headers("push", "d-9", body), body, false)).await;
    assert_eq!(
        (status, message.as_str()),
        (200, "ignored: repo someone/else is not in the config")
    );
    let closed = include_bytes!("../testdata/github-pull_request-closed.json");
    let request = event(
        github_headers("pull_request", "d-10", closed),
        closed,
        false,
    );
    let (status, message) = call(&h, request).await;
    assert_eq!(status, 200);
    assert!(
        message.starts_with("ignored: pull request action `closed`"),
        "{message}"
    );
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn bad_bodies_get_clear_statuses() {
    let h = harness();
    let malformed = b"{\"ref\": ";
    let request = event(github_headers("push", "d-11", malformed), malformed, false);
    let (status, message) = call(&h, request).await;
    assert_eq!(status, 400);
    assert!(message.starts_with("body is not valid JSON"), "{message}");

    let missing = br#"{"ref":"refs/heads/master","before":"a","compare":"c","pusher":{"name":"n"},"repository":{"full_name":"Codertocat/Hello-World"},"head_commit":null}"#;
    let request = event(github_headers("push", "d-12", missing), missing, false);
    let (status, message) = call(&h, request).await;
    assert_eq!(
        (status, message.as_str()),
        (400, "payload is missing the field `after`")
    );

    let mut xml = github_headers("push", "d-13", PUSH);
    xml["content-type"] = json!("application/xml");
    assert_eq!(call(&h, event(xml, PUSH, false)).await.0, 415);

    let mut no_delivery = github_headers("push", "", PUSH);
    no_delivery
        .as_object_mut()
        .unwrap()
        .remove("x-github-delivery");
    assert_eq!(call(&h, event(no_delivery, PUSH, false)).await.0, 400);
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let h = harness();
    let headers = lambda_http::http::HeaderMap::new();
    let body = vec![b' '; webhook_intake::MAX_BODY_BYTES + 1];
    let reply = webhook_intake::handle_delivery(&h.deps, &headers, &body).await;
    assert_eq!(reply.status.as_u16(), 413);
}

#[tokio::test]
async fn a_failed_enqueue_is_500_and_leaves_the_delivery_retryable() {
    let h = harness();
    h.queue.fail_next_sends(1);
    let (status, _) = call(&h, event(github_headers("push", "d-14", PUSH), PUSH, false)).await;
    assert_eq!(status, 500);
    assert!(
        h.state.keys().is_empty(),
        "a failed enqueue must not look done"
    );
    // GitHub's redelivery (same id) then goes through.
    let (status, _) = call(&h, event(github_headers("push", "d-14", PUSH), PUSH, false)).await;
    assert_eq!(status, 202);
    assert_eq!(queued(&h).len(), 1);
}

// GitHub never redelivers a failed delivery by itself: a state-table hiccup must not turn into
// a lost push. The delivery is queued without the dedup check; a copy is absorbed by the FIFO
// deduplication id (the delivery id) and build-dispatch's request record.
#[tokio::test]
async fn an_unavailable_state_store_still_queues_the_delivery_once() {
    let h = harness();
    h.state.set_unavailable(true);
    let (status, _) = call(&h, event(github_headers("push", "d-15", PUSH), PUSH, false)).await;
    assert_eq!(status, 202);
    let (status, _) = call(&h, event(github_headers("push", "d-15", PUSH), PUSH, false)).await;
    assert_eq!(status, 202);
    let queued = queued(&h);
    assert_eq!(queued.len(), 1, "the FIFO deduplication id keeps one copy");
    assert_eq!(queued[0].delivery_id, "d-15");
}

#[tokio::test]
async fn a_corrupt_dedup_record_does_not_lose_the_delivery() {
    let h = harness();
    h.state
        .put(
            "delivery:d-17",
            json!("not a record"),
            Precondition::None,
            None,
            0,
        )
        .await
        .unwrap();
    let (status, _) = call(&h, event(github_headers("push", "d-17", PUSH), PUSH, false)).await;
    assert_eq!(status, 202);
    assert_eq!(queued(&h).len(), 1);
}

#[tokio::test]
async fn only_post_is_accepted() {
    let h = harness();
    let mut request = event(github_headers("push", "d-16", PUSH), PUSH, false);
    *request.method_mut() = lambda_http::http::Method::GET;
    assert_eq!(call(&h, request).await.0, 405);
}
