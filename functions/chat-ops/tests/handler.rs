//! chat-ops' handler on in-memory adapters: who may do what, once, from which chat.

use std::sync::Arc;

use chat_ops::{Answer, Deps, handle_update};
use lambda_http::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use shared::adapters::memory::{FixedClock, MemoryQueue, MemoryStateStore};
use shared::config::Config;
use shared::messages::{self, DeployQueueMessage, Facts, Notification, NotificationKind};
use shared::ports::{Precondition, StateStore};
use shared::records::{
    ActionKind, BuiltCommit, ChatAction, LiveRecord, PastRelease, RecentBuilds, StateKey,
};
use shared::secrets::SecretString;

const SECRET: &str = "s3cret-token_for-telegram";
const BOT: &str = "shipline_bot";
const CHAT: i64 = -1001234567890;
const ANA: i64 = 1111;
const BOB: i64 = 2222;

const CONFIG: &str = r#"
channels:
  team: { telegram: { chat_id: -1001234567890 } }
defaults:
  notify: [team]
chatops:
  allow:
    rollback: [1111]
    deploy: [1111]
    promote: [1111]
repos:
  pax-app/User:
    codebuild_project: pax-user
    deploy:
      - branch: master
        environment: staging
        heroku: { app: pax-user-staging }
      - promote_from: staging
        environment: production
        gate: approval
        heroku: { app: pax-user }
"#;

struct World {
    deps: Deps,
    deploys: Arc<MemoryQueue>,
    notify: Arc<MemoryQueue>,
    state: Arc<MemoryStateStore>,
}

fn world() -> World {
    let deploys = Arc::new(MemoryQueue::fifo());
    let notify = Arc::new(MemoryQueue::standard());
    let dlq = Arc::new(MemoryQueue::standard());
    let state = Arc::new(MemoryStateStore::new());
    let deps = Deps {
        config: Arc::new(Config::from_yaml(CONFIG).unwrap()),
        webhook_secret: SecretString::new(SECRET),
        deploys: deploys.clone(),
        notify: notify.clone(),
        dead_letters: vec![("deploys".into(), dlq)],
        state: state.clone(),
        clock: Arc::new(FixedClock::at(
            time::macros::datetime!(2026-11-30 10:00 UTC),
        )),
    };
    World {
        deps,
        deploys,
        notify,
        state,
    }
}

fn headers(token: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if let Some(token) = token {
        // API Gateway hands header names over in lower case; the lookup does not care.
        headers.insert("X-Telegram-Bot-Api-Secret-Token", token.parse().unwrap());
    }
    headers
}

fn message(update_id: i64, from: i64, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": 500 + update_id,
            "date": 1_780_000_000,
            "chat": {"id": CHAT, "type": "supergroup", "title": "pax"},
            "from": {"id": from, "is_bot": false, "first_name": "Ana", "username": if from == ANA { "ana" } else { "bob" }},
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": text.split(' ').next().unwrap().len()}]
        }
    })
}

fn press(update_id: i64, from: i64, data: &str) -> Value {
    json!({
        "update_id": update_id,
        "callback_query": {
            "id": format!("cb-{update_id}"),
            "from": {"id": from, "is_bot": false, "first_name": "Ana", "username": "ana"},
            "message": {"message_id": 77, "date": 1_780_000_000, "chat": {"id": CHAT, "type": "supergroup"}, "text": "Live"},
            "chat_instance": "42",
            "data": data
        }
    })
}

async fn send(w: &World, update: &Value) -> Answer {
    handle_update(
        &w.deps,
        &headers(Some(SECRET)),
        update.to_string().as_bytes(),
        Some(BOT),
    )
    .await
}

fn text_of(answer: &Answer) -> String {
    answer.body["text"].as_str().unwrap_or_default().to_string()
}

fn queued(w: &World) -> Vec<DeployQueueMessage> {
    w.deploys
        .peek()
        .iter()
        .map(|m| DeployQueueMessage::decode(&m.body).unwrap())
        .collect()
}

fn live(version: u32, sha: &str) -> LiveRecord {
    LiveRecord {
        repo: "pax-app/User".into(),
        branch: "master".into(),
        sha: sha.into(),
        release_id: format!("rel-{version}"),
        version: Some(format!("v{version}")),
        at: "2026-11-30T09:00:00Z".into(),
        build_id: "pax-user:1".into(),
        history: vec![PastRelease {
            sha: "1".repeat(40).into(),
            release_id: format!("rel-{}", version - 1),
            version: Some(format!("v{}", version - 1)),
        }],
        artifacts: Default::default(),
        deployment_id: None,
        restored: false,
        by: Some("ana".into()),
    }
}

async fn put<T: serde::Serialize>(w: &World, key: StateKey<'_>, value: &T) {
    let state: &dyn StateStore = w.state.as_ref();
    state
        .write(key, value, Precondition::None, None, 0)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_forged_or_missing_secret_token_is_refused_before_anything_is_read() {
    let w = world();
    let body = message(1, ANA, "/rollback heroku:pax-user").to_string();
    for token in [None, Some("wrong"), Some("")] {
        let answer = handle_update(&w.deps, &headers(token), body.as_bytes(), Some(BOT)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    assert!(w.deploys.is_empty() && w.state.keys().is_empty());
}

#[tokio::test]
async fn status_answers_in_the_chat_with_what_is_live_and_the_dead_letters() {
    let w = world();
    put(
        &w,
        StateKey::Live("heroku:pax-user-staging"),
        &live(12, &"a".repeat(40)),
    )
    .await;
    let answer = send(&w, &message(1, BOB, "/status@shipline_bot")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["method"], "sendMessage");
    assert_eq!(answer.body["chat_id"], CHAT);
    assert_eq!(answer.body["parse_mode"], "HTML");
    let text = text_of(&answer);
    assert!(text.contains("staging · <code>heroku:pax-user-staging</code> · <code>aaaaaaa</code> v12 · 1h ago · by ana"), "{text}");
    assert!(
        text.contains("<b>Dead-letter queues</b>: deploys 0"),
        "{text}"
    );
    assert!(w.deploys.is_empty());
}

#[tokio::test]
async fn an_allowed_rollback_queues_one_request_pinned_to_the_live_release() {
    let w = world();
    put(
        &w,
        StateKey::Live("heroku:pax-user"),
        &live(42, &"c".repeat(40)),
    )
    .await;
    let update = message(7, ANA, "/rollback heroku:pax-user");
    let first = send(&w, &update).await;
    assert!(
        text_of(&first).contains("Rollback of <code>heroku:pax-user</code> from v42"),
        "{first:?}"
    );
    // Telegram retries an update whose answer it did not get: the recorded answer, nothing
    // twice (even though what is live changed in between).
    assert!(
        w.state
            .keys()
            .contains(&"telegram-update:shipline_bot:7".to_string())
    );
    put(
        &w,
        StateKey::Live("heroku:pax-user"),
        &live(43, &"d".repeat(40)),
    )
    .await;
    let again = send(&w, &update).await;
    assert_eq!(again, first);
    let queued = queued(&w);
    assert_eq!(queued.len(), 1);
    let DeployQueueMessage::Rollback(request) = &queued[0] else {
        panic!("{queued:?}")
    };
    assert_eq!(request.from_release.as_deref(), Some("rel-42"));
    assert_eq!(request.requested_by, "@ana (Telegram 1111)");
    assert_eq!(
        w.deploys.peek()[0].group_id.as_deref(),
        Some("heroku:pax-user")
    );
}

#[tokio::test]
async fn someone_not_allowed_is_answered_politely_and_nothing_is_queued() {
    let w = world();
    put(
        &w,
        StateKey::Live("heroku:pax-user"),
        &live(42, &"c".repeat(40)),
    )
    .await;
    let answer = send(&w, &message(8, BOB, "/rollback heroku:pax-user")).await;
    let text = text_of(&answer);
    assert!(
        text.contains("you may not roll back from the chat"),
        "{text}"
    );
    assert!(text.contains("2222"), "{text}");
    assert!(w.deploys.is_empty());
}

#[tokio::test]
async fn a_chat_that_is_not_shipline_s_sees_nothing() {
    let w = world();
    let mut update = message(9, ANA, "/status");
    update["message"]["chat"]["id"] = json!(-42);
    let text = text_of(&send(&w, &update).await);
    assert!(text.contains("not one of shipline's chats"), "{text}");
    assert!(!text.contains("Live"));
}

#[tokio::test]
async fn deploying_a_commit_whose_build_failed_is_refused_with_the_reason() {
    let w = world();
    let built = |sha: &str, passed: bool| BuiltCommit {
        sha: sha.into(),
        branch: Some("master".into()),
        pull_request: None,
        build_id: format!("pax-user:{sha}").into(),
        passed,
        status: if passed { "SUCCEEDED" } else { "FAILED" }.into(),
        description: if passed {
            "Build passed"
        } else {
            "Failed in BUILD: exit status 2"
        }
        .into(),
        log_url: None,
        started_at: 0,
        finished_at: 60,
        artifacts: [("SHIPLINE_IMAGE_WEB".to_string(), "sha256:abc".to_string())].into(),
        commit_message: Some("fix".into()),
        author: Some("ana".into()),
        installation_id: None,
        delivery_id: "d-1".into(),
    };
    let mut recent = RecentBuilds::default();
    recent.add(built(&"a".repeat(40), true));
    recent.add(built(&"b".repeat(40), false));
    put(&w, StateKey::Builds("pax-app/user"), &recent).await;

    let refused =
        text_of(&send(&w, &message(10, ANA, "/deploy pax-app/User master staging")).await);
    assert!(
        refused.contains("did not pass (FAILED: Failed in BUILD: exit status 2)"),
        "{refused}"
    );
    assert!(w.deploys.is_empty());

    let queued_text = text_of(
        &send(
            &w,
            &message(11, ANA, "/deploy pax-app/user aaaaaaa staging"),
        )
        .await,
    );
    assert!(
        queued_text.contains("Deploy of <code>aaaaaaa</code> (master) to staging"),
        "{queued_text}"
    );
    let queued = queued(&w);
    let DeployQueueMessage::Deploy(request) = &queued[0] else {
        panic!("{queued:?}")
    };
    assert_eq!(
        request.requested_by.as_deref(),
        Some("@ana (Telegram 1111)")
    );
    assert_eq!(request.target.as_str(), "heroku:pax-user-staging");
    assert_eq!(request.artifacts["SHIPLINE_IMAGE_WEB"], "sha256:abc");
}

async fn rollback_button(w: &World) -> String {
    let id = ChatAction::id_of(
        ActionKind::Rollback,
        "heroku:pax-user",
        &"c".repeat(40),
        Some("rel-42"),
    );
    let action = ChatAction {
        kind: ActionKind::Rollback,
        target: "heroku:pax-user".into(),
        sha: "c".repeat(40).into(),
        release: Some("rel-42".into()),
        thread_key: messages::build_thread_key("pax-app/User", &"c".repeat(40)),
        channels: vec!["team".into()],
        facts: Facts {
            repo: Some("pax-app/User".into()),
            release: Some("v42".into()),
            ..Facts::default()
        },
        shown_as: NotificationKind::DeploySucceeded,
        taken: None,
    };
    put(w, StateKey::Action(&id), &action).await;
    format!("a:{id}")
}

#[tokio::test]
async fn a_button_pressed_twice_acts_once_and_its_message_is_edited() {
    let w = world();
    put(
        &w,
        StateKey::Live("heroku:pax-user"),
        &live(42, &"c".repeat(40)),
    )
    .await;
    let data = rollback_button(&w).await;
    let first = send(&w, &press(20, ANA, &data)).await;
    assert_eq!(first.body["method"], "answerCallbackQuery");
    assert_eq!(first.body["callback_query_id"], "cb-20");
    assert_eq!(text_of(&first), "Rollback of heroku:pax-user queued");
    let second = send(&w, &press(21, ANA, &data)).await;
    assert!(
        text_of(&second).starts_with("Already asked for by @ana (Telegram 1111)"),
        "{second:?}"
    );
    assert_eq!(queued(&w).len(), 1);
    let edits: Vec<Notification> = w
        .notify
        .peek()
        .iter()
        .map(|m| messages::decode(&m.body).unwrap())
        .collect();
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].kind, NotificationKind::ActionRequested);
    assert!(edits[0].facts.actions.is_empty());
    assert_eq!(edits[0].facts.release.as_deref(), Some("v42"));
}

#[tokio::test]
async fn a_button_of_a_release_no_longer_live_or_pressed_by_someone_not_allowed_does_nothing() {
    let w = world();
    let data = rollback_button(&w).await;
    put(
        &w,
        StateKey::Live("heroku:pax-user"),
        &live(42, &"c".repeat(40)),
    )
    .await;
    let refused = send(&w, &press(30, BOB, &data)).await;
    assert_eq!(refused.body["show_alert"], true);
    assert!(
        text_of(&refused).contains("not under chatops.allow.rollback"),
        "{refused:?}"
    );
    put(
        &w,
        StateKey::Live("heroku:pax-user"),
        &live(43, &"d".repeat(40)),
    )
    .await;
    let moot = send(&w, &press(31, ANA, &data)).await;
    assert!(text_of(&moot).contains("no longer live"), "{moot:?}");
    let unknown = send(&w, &press(32, ANA, "a:0000")).await;
    assert!(text_of(&unknown).contains("expired"), "{unknown:?}");
    assert!(w.deploys.is_empty() && w.notify.is_empty());
}

#[tokio::test]
async fn nonsense_gets_the_usage_and_an_unreadable_update_never_blocks_the_chat() {
    let w = world();
    let usage = text_of(&send(&w, &message(40, BOB, "/frobnicate")).await);
    assert!(usage.contains("/rollback TARGET [version]"), "{usage}");
    let answer = handle_update(&w.deps, &headers(Some(SECRET)), b"{not json", Some(BOT)).await;
    assert_eq!(
        (answer.status, answer.body.clone()),
        (StatusCode::OK, json!({}))
    );
    let plain = send(&w, &message(41, BOB, "good morning")).await;
    assert_eq!(plain.body, json!({}));
}

#[tokio::test]
async fn a_state_outage_is_a_retry_not_an_answer() {
    let w = world();
    w.state.set_unavailable(true);
    let answer = send(&w, &message(50, ANA, "/status")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_press_whose_queue_send_failed_is_retried_by_telegram_and_queued_once() {
    let w = world();
    put(
        &w,
        StateKey::Live("heroku:pax-user"),
        &live(42, &"c".repeat(40)),
    )
    .await;
    let data = rollback_button(&w).await;
    w.deploys.fail_next_sends(1);
    let failed = send(&w, &press(60, ANA, &data)).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(w.deploys.is_empty());
    // The action is taken by this update: its retry goes on, anyone else's press does not.
    let retried = send(&w, &press(60, ANA, &data)).await;
    assert_eq!(text_of(&retried), "Rollback of heroku:pax-user queued");
    let other = send(&w, &press(61, ANA, &data)).await;
    assert!(
        text_of(&other).starts_with("Already asked for"),
        "{other:?}"
    );
    assert_eq!(queued(&w).len(), 1);
}

#[tokio::test]
async fn another_bots_command_is_left_alone() {
    let w = world();
    put(
        &w,
        StateKey::Live("heroku:pax-user"),
        &live(42, &"c".repeat(40)),
    )
    .await;
    let answer = send(&w, &message(70, ANA, "/rollback@other_bot heroku:pax-user")).await;
    assert_eq!(answer.body, json!({}));
    assert!(w.deploys.is_empty());
}

#[tokio::test]
async fn what_no_retry_can_fix_is_answered_at_once_and_never_blocks_the_chat() {
    let w = world();
    let state: &dyn StateStore = w.state.as_ref();
    state
        .put(
            "builds:pax-app/user",
            json!({"builds": "not a list"}),
            Precondition::None,
            None,
            0,
        )
        .await
        .unwrap();
    let answer = send(&w, &message(80, ANA, "/deploy pax-app/User master staging")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        text_of(&answer).contains("cannot do this now"),
        "{answer:?}"
    );
    assert!(w.deploys.is_empty());
}

#[tokio::test]
async fn deploying_past_a_promotion_gate_or_promoting_what_no_longer_waits_is_refused() {
    let w = world();
    let text = text_of(
        &send(
            &w,
            &message(90, ANA, "/deploy pax-app/User master production"),
        )
        .await,
    );
    assert!(
        text.contains("production takes its releases from staging (gate: approval): use /promote heroku:pax-user"),
        "{text}"
    );
    let id = ChatAction::id_of(
        ActionKind::Promote,
        "heroku:pax-user",
        &"a".repeat(40),
        Some("rel-12"),
    );
    let action = ChatAction {
        kind: ActionKind::Promote,
        target: "heroku:pax-user".into(),
        sha: "a".repeat(40).into(),
        release: Some("rel-12".into()),
        thread_key: "build:pax-app/User@a".into(),
        channels: vec!["team".into()],
        facts: Facts::default(),
        shown_as: NotificationKind::DeploySucceeded,
        taken: None,
    };
    put(&w, StateKey::Action(&id), &action).await;
    let moot = send(&w, &press(91, ANA, &format!("a:{id}"))).await;
    assert!(
        text_of(&moot).contains("no longer waits to be promoted"),
        "{moot:?}"
    );
    assert!(w.deploys.is_empty());
}
