//! The team's Telegram group as the control room, end to end: real queues and the state table
//! on moto, the GitHub, Heroku, Telegram and CodeBuild fakes, and chat-ops answering updates as
//! Telegram's webhook delivers them.
//!
//! - a forged or missing secret token → 401, nothing queued;
//! - `/status` answers with the live release;
//! - someone not allowed → refused, nothing queued;
//! - the "Roll back production" button on the live release's message, pressed twice, and the
//!   same update delivered twice → one rollback on Heroku, the release restored, the message
//!   edited to say who;
//! - `/deploy` of a commit whose build failed → refused with the reason.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use shared::ports::StateStore;
use shared::records::{LiveRecord, StateKey};
use support::{FaultPlan, Pipeline};

const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const NEWER: &str = "7224839f38bf93d8c2b288d9e14f0a07f1bef357";
const BROKEN: &str = "8335940a49ca04d9c399e0f1ae25b1851c0f0468";
const REPO: &str = "Codertocat/Hello-World";
const TARGET: &str = "heroku:hello-world";
const CHAT: i64 = -100_777;
const ANA: i64 = 1111;
const BOB: i64 = 2222;

const CONFIG: &str = "\
channels:
  team: { telegram: { chat_id: -100777 } }
defaults:
  notify: [team]
chatops:
  allow:
    deploy: [1111]
    rollback: [1111]
repos:
  Codertocat/Hello-World:
    codebuild_project: hello
    deploy:
      - branch: master
        environment: production
        heroku: { app: hello-world }
";

async fn pushed(pipeline: &Pipeline, sha: &str, delivery: &str, status: &str) {
    pipeline.pushed(sha, delivery, status).await;
}

async fn live(pipeline: &Pipeline) -> LiveRecord {
    let state: &dyn StateStore = pipeline.promotion.state.as_ref();
    state
        .read_value(StateKey::Live(TARGET), 0)
        .await
        .expect("the table answers")
        .expect("something is live")
}

fn person(id: i64) -> Value {
    let name = if id == ANA { "ana" } else { "bob" };
    json!({"id": id, "is_bot": false, "first_name": name, "username": name})
}

/// A message in the team's group, as Telegram's webhook delivers it.
fn says(update_id: i64, from: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": 900 + update_id, "date": 1_780_000_000,
        "chat": {"id": CHAT, "type": "supergroup", "title": "team"},
        "from": person(from), "text": text,
        "entities": [{"type": "bot_command", "offset": 0, "length": text.split(' ').next().unwrap().len()}],
    }})
}

/// A press of the button whose `callback_data` is `data`, under message `message_id`.
fn presses(update_id: i64, from: i64, message_id: i64, data: &str) -> Value {
    json!({"update_id": update_id, "callback_query": {
        "id": format!("cbq-{update_id}"), "from": person(from), "chat_instance": "-55",
        "message": {"message_id": message_id, "date": 1_780_000_000, "chat": {"id": CHAT, "type": "supergroup"}},
        "data": data,
    }})
}

/// The buttons the chat shows under its newest message that has any: (label, data).
fn buttons(pipeline: &Pipeline) -> Vec<(String, String)> {
    let mut calls = pipeline.telegram.calls("POST", "/sendMessage");
    calls.extend(pipeline.telegram.calls("POST", "/editMessageText"));
    calls
        .iter()
        .rev()
        .find_map(|c| {
            c.body["reply_markup"]["inline_keyboard"]
                .as_array()
                .cloned()
        })
        .unwrap_or_default()
        .iter()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .map(|b| {
            (
                b["text"].as_str().unwrap_or("").to_string(),
                b["callback_data"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn chat_texts(pipeline: &Pipeline) -> Vec<String> {
    let mut calls = pipeline.telegram.calls("POST", "/sendMessage");
    calls.extend(pipeline.telegram.calls("POST", "/editMessageText"));
    support::texts(&calls)
}

async fn deploys_waiting(pipeline: &Pipeline) -> u64 {
    e2e::aws::queue_depth(&pipeline.sdk, &pipeline.deploys.url).await
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn only_telegram_with_the_secret_token_is_heard() {
    let pipeline = Pipeline::new(CONFIG, FaultPlan::default()).await;
    pushed(&pipeline, SHA, "co-0", "SUCCEEDED").await;
    let update = says(1, ANA, "/rollback heroku:hello-world");
    for token in [None, Some("forged")] {
        let answer = pipeline.telegram_delivers_with(token, &update).await;
        assert_eq!(answer.status.as_u16(), 401);
    }
    assert_eq!(deploys_waiting(&pipeline).await, 0);
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_rollback_pressed_in_the_chat_happens_once_and_the_message_says_who() {
    let pipeline = Pipeline::new(CONFIG, FaultPlan::default()).await;
    pushed(&pipeline, SHA, "co-1", "SUCCEEDED").await;
    let first = live(&pipeline).await;
    pushed(&pipeline, NEWER, "co-2", "SUCCEEDED").await;
    assert_eq!(live(&pipeline).await.sha, NEWER);

    // Everyone in the chat may read the status.
    let status = pipeline.telegram_delivers(&says(10, BOB, "/status")).await;
    assert_eq!(status.body["method"], "sendMessage");
    let text = status.body["text"].as_str().unwrap();
    assert!(
        text.contains("production · <code>heroku:hello-world</code> · <code>7224839</code>"),
        "{text}"
    );
    assert!(
        text.contains(
            "<b>Dead-letter queues</b>: builds 0 · build-events 0 · deploys 0 · notifications 0"
        ),
        "{text}"
    );

    // Bob may not act: told why, nothing queued.
    let refused = pipeline
        .telegram_delivers(&says(11, BOB, "/rollback heroku:hello-world"))
        .await;
    assert!(
        refused.body["text"]
            .as_str()
            .unwrap()
            .contains("you may not roll back"),
        "{refused:?}"
    );
    assert_eq!(deploys_waiting(&pipeline).await, 0);

    // The live release's message carries the button; Ana presses it twice, and Telegram
    // delivers her first press twice.
    let shown = buttons(&pipeline);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0].0, "Roll back production");
    let data = &shown[0].1;
    let first_press = presses(12, ANA, 2, data);
    let answered = pipeline.telegram_delivers(&first_press).await;
    assert_eq!(answered.body["method"], "answerCallbackQuery");
    assert_eq!(
        answered.body["text"],
        "Rollback of heroku:hello-world queued"
    );
    assert_eq!(pipeline.telegram_delivers(&first_press).await, answered);
    let again = pipeline.telegram_delivers(&presses(13, ANA, 2, data)).await;
    assert!(
        again.body["text"]
            .as_str()
            .unwrap()
            .starts_with("Already asked for by @ana"),
        "{again:?}"
    );
    assert_eq!(deploys_waiting(&pipeline).await, 1);

    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;
    let rollbacks = pipeline.heroku.calls("POST", "/apps/hello-world/releases");
    assert_eq!(rollbacks.len(), 1, "exactly one rollback");
    assert_eq!(rollbacks[0].body["release"], first.release_id);
    let restored = live(&pipeline).await;
    assert_eq!((restored.sha.as_str(), restored.restored), (SHA, true));
    assert_eq!(restored.by.as_deref(), Some("@ana (Telegram 1111)"));

    // The pressed message was edited as it moved on: queued, then rolled back, by Ana; the
    // GitHub deployment of the restored commit names her.
    let texts = chat_texts(&pipeline);
    let queued = texts.iter().position(|t| {
        t.starts_with("⏳ <b>Queued</b>") && t.contains("asked for by @ana (Telegram 1111)")
    });
    let rolled = texts.iter().position(|t| {
        t.starts_with("⏪ <b>Rolled back</b>") && t.contains("rolled back to v10 by @ana")
    });
    assert!(
        matches!((queued, rolled), (Some(q), Some(r)) if q < r),
        "{texts:#?}"
    );
    let created = pipeline.github.calls("POST", "/deployments");
    let restored_deployment = created
        .iter()
        .rfind(|c| !c.path.contains("/statuses"))
        .unwrap();
    assert_eq!(
        restored_deployment.body["payload"]["requested_by"],
        "@ana (Telegram 1111)"
    );
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn deploying_a_commit_whose_build_failed_is_refused_with_the_reason() {
    let pipeline = Pipeline::new(CONFIG, FaultPlan::default()).await;
    pushed(&pipeline, SHA, "co-20", "SUCCEEDED").await;
    pushed(&pipeline, BROKEN, "co-21", "FAILED").await;
    let refused = pipeline
        .telegram_delivers(&says(20, ANA, "/deploy codertocat/hello-world master"))
        .await;
    let text = refused.body["text"].as_str().unwrap();
    assert!(
        text.contains("The build of <code>8335940</code> did not pass (FAILED"),
        "{text}"
    );
    assert_eq!(deploys_waiting(&pipeline).await, 0);

    // The green one is already live; a person's /deploy of it says so and queues nothing.
    let live_already = pipeline
        .telegram_delivers(&says(21, ANA, &format!("/deploy {REPO} {}", &SHA[..7])))
        .await;
    assert!(
        live_already.body["text"]
            .as_str()
            .unwrap()
            .contains("is already live"),
        "{live_already:?}"
    );
    assert_eq!(deploys_waiting(&pipeline).await, 0);
}

const APPROVAL: &str = "\
channels:
  team: { telegram: { chat_id: -100777 } }
defaults:
  notify: [team]
chatops:
  allow:
    promote: [1111]
repos:
  Codertocat/Hello-World:
    codebuild_project: hello
    deploy:
      - branch: master
        environment: staging
        heroku: { app: hello-staging }
      - promote_from: staging
        environment: production
        gate: approval
        heroku: { app: hello-world }
";

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_promotion_waiting_for_approval_is_promoted_by_its_button() {
    let pipeline = Pipeline::new(APPROVAL, FaultPlan::default()).await;
    pushed(&pipeline, SHA, "co-30", "SUCCEEDED").await;
    // Staging's first release: nothing to roll back to, a promotion to approve.
    let shown = buttons(&pipeline);
    assert_eq!(
        shown
            .iter()
            .map(|(label, _)| label.as_str())
            .collect::<Vec<_>>(),
        ["Promote to production"]
    );
    let answered = pipeline
        .telegram_delivers(&presses(30, ANA, 2, &shown[0].1))
        .await;
    assert_eq!(
        answered.body["text"],
        "Promotion to heroku:hello-world queued"
    );
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;
    let state: &dyn StateStore = pipeline.promotion.state.as_ref();
    let production: LiveRecord = state
        .read_value(StateKey::Live(TARGET), 0)
        .await
        .unwrap()
        .expect("promoted");
    assert_eq!(production.sha, SHA);
    let texts = chat_texts(&pipeline);
    assert!(
        texts.iter().any(|t| t.contains("promoted from staging")
            && t.contains("approved by @ana (Telegram 1111)")),
        "{texts:#?}"
    );
    // GitHub's production deployment names who approved it; staging's, nobody.
    let created = pipeline.github.calls("POST", "/deployments");
    let created: Vec<_> = created
        .iter()
        .filter(|c| !c.path.contains("/statuses"))
        .collect();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].body["environment"], "staging");
    assert!(created[0].body["payload"].get("requested_by").is_none());
    assert_eq!(created[1].body["environment"], "production");
    assert_eq!(
        created[1].body["payload"]["requested_by"],
        "@ana (Telegram 1111)"
    );
    assert_eq!(production.by.as_deref(), Some("@ana (Telegram 1111)"));
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_rollback_asked_in_the_chat_restores_the_release_and_edits_its_message() {
    let pipeline = Pipeline::new(CONFIG, FaultPlan::default()).await;
    pushed(&pipeline, SHA, "co-40", "SUCCEEDED").await;
    let first = live(&pipeline).await;
    pushed(&pipeline, NEWER, "co-41", "SUCCEEDED").await;
    let asked = says(40, ANA, "/rollback heroku:hello-world");
    let answer = pipeline.telegram_delivers(&asked).await;
    let text = answer.body["text"].as_str().unwrap();
    assert!(
        text.contains(
            "Rollback of <code>heroku:hello-world</code> from v11 to the release before queued"
        ),
        "{text}"
    );
    // Telegram delivers it again: still one request.
    assert_eq!(pipeline.telegram_delivers(&asked).await, answer);
    assert_eq!(deploys_waiting(&pipeline).await, 1);
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;
    let rollbacks = pipeline.heroku.calls("POST", "/apps/hello-world/releases");
    assert_eq!(rollbacks.len(), 1, "exactly one rollback");
    assert_eq!(rollbacks[0].body["release"], first.release_id);
    assert_eq!(live(&pipeline).await.sha, SHA);
    // The rolled-back release's message was edited to say so, and who asked.
    let edits = support::texts(&pipeline.telegram.calls("POST", "/editMessageText"));
    assert!(
        edits.iter().any(|t| t.starts_with("⏪ <b>Rolled back</b>")
            && t.contains("7224839")
            && t.contains("rolled back to v10 by @ana (Telegram 1111)")),
        "{edits:#?}"
    );
}
