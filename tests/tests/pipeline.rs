//! The pipeline's paths end to end, through real queues and the state table on moto, with
//! local fakes for CodeBuild's JSON API (for the exported image id moto cannot give), GitHub,
//! Heroku and Telegram:
//!
//! - a push to master → build → state change → commit status success → a release on Heroku
//!   with the exported image → deployment statuses → one Telegram message edited along the way;
//! - a pull request → pending then success, and no deploy;
//! - a Sentry issue alert → alert-forwarder → notifier → Telegram;
//! - a Telegram 429 → the message waits and is delivered later, nothing lost.
//!
//! (A redelivered webhook → one build is in `intake.rs`; a late older build → no deploy is in
//! `promotion.rs`; the same paths under injected faults, a thousand times, are in `faults.rs`.)

mod support;

use std::time::Duration;

use support::{FaultPlan, Faults, Pipeline, texts};

const PUSH: &str = include_str!("../../functions/webhook-intake/testdata/github-push.json");
const PR_OPENED: &str =
    include_str!("../../functions/webhook-intake/testdata/github-pull_request-opened.json");
const SENTRY_ISSUE: &str =
    include_str!("../../functions/alert-forwarder/testdata/sentry-issue-created.json");
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const PR_SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

const CONFIG: &str = "\
channels:
  team: { telegram: { chat_id: -100777 } }
defaults:
  notify: [team]
repos:
  Codertocat/Hello-World:
    codebuild_project: hello
    deploy:
      - branch: master
        heroku: { app: hello-world }
sentry:
  projects:
    front-end: { notify: [team] }
";

/// The (kind, state) of every status GitHub accepted, in order: commit or deployment.
fn github_states(pipeline: &Pipeline) -> Vec<(&'static str, String)> {
    pipeline
        .github
        .calls("POST", "/statuses")
        .iter()
        .map(|c| {
            (
                if c.path.contains("/deployments/") {
                    "deployment"
                } else {
                    "commit"
                },
                c.body["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_push_to_master_is_built_released_and_told_in_one_living_message() {
    let pipeline = Pipeline::new(CONFIG, FaultPlan::default()).await;
    pipeline
        .heads
        .lock()
        .unwrap()
        .insert("Codertocat/Hello-World@master".into(), SHA.into());

    assert_eq!(
        pipeline
            .github_delivers("push", "pipeline-1", PUSH.as_bytes())
            .await,
        202
    );
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;

    assert_eq!(
        github_states(&pipeline),
        vec![
            ("commit", "pending".to_string()),
            ("commit", "success".to_string()),
            ("deployment", "in_progress".to_string()),
            ("deployment", "success".to_string()),
        ]
    );
    let started = pipeline.codebuild.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].source_version, SHA);
    // Heroku released the image the build exported.
    let patches = pipeline
        .heroku
        .calls("PATCH", "/apps/hello-world/formation");
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].body["updates"][0]["docker_image"],
        support::image_of(&started[0].id)
    );
    // One Telegram message, edited along the way, ending live.
    let posts = pipeline.telegram.calls("POST", "/sendMessage");
    assert_eq!(posts.len(), 1, "{:?}", texts(&posts));
    let edits = pipeline.telegram.calls("POST", "/editMessageText");
    assert!(!edits.is_empty());
    assert!(edits.iter().all(|e| e.body["chat_id"] == -100777));
    let last = texts(&edits).pop().unwrap();
    assert!(last.starts_with("🟢 <b>Live</b>"), "{last}");
    assert!(pipeline.dead_letters().await.is_empty());
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_pull_request_gets_pending_then_success_and_no_deploy() {
    let pipeline = Pipeline::new(CONFIG, FaultPlan::default()).await;
    assert_eq!(
        pipeline
            .github_delivers("pull_request", "pipeline-pr-1", PR_OPENED.as_bytes())
            .await,
        202
    );
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;

    let started = pipeline.codebuild.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].source_version, PR_SHA);
    assert_eq!(
        github_states(&pipeline),
        vec![
            ("commit", "pending".to_string()),
            ("commit", "success".to_string())
        ]
    );
    let statuses = pipeline.github.calls("POST", "/statuses");
    assert!(statuses.iter().all(|c| c.path.ends_with(PR_SHA)));
    assert!(pipeline.github.calls("POST", "/deployments").is_empty());
    assert!(pipeline.github.calls("GET", "/branches/").is_empty());
    assert!(pipeline.heroku.record.lock().unwrap().ok.is_empty());
    // The chat still hears about it: one message, ending with the result.
    let posts = pipeline.telegram.calls("POST", "/sendMessage");
    assert_eq!(posts.len(), 1, "{:?}", texts(&posts));
    let mut all = texts(&posts);
    all.extend(texts(&pipeline.telegram.calls("POST", "/editMessageText")));
    assert!(all.last().unwrap().contains("passed"), "{all:?}");
    assert!(pipeline.dead_letters().await.is_empty());
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_sentry_issue_alert_reaches_telegram() {
    let pipeline = Pipeline::new(CONFIG, FaultPlan::default()).await;
    assert_eq!(
        pipeline
            .sentry_delivers("issue", "sentry-1", SENTRY_ISSUE.as_bytes())
            .await,
        202
    );
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;
    let posts = pipeline.telegram.calls("POST", "/sendMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["chat_id"], -100777);
    let text = posts[0].body["text"].as_str().unwrap();
    assert!(
        text.contains("ReferenceError: blooopy is not defined"),
        "{text}"
    );
    assert!(pipeline.codebuild.started.lock().unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_telegram_rate_limit_delays_the_message_and_loses_nothing() {
    // Every other call to Telegram is refused with 429 and retry_after 1.
    let faults = FaultPlan {
        telegram: Faults {
            rate_limit_every: 2,
            ..Faults::NONE
        },
        ..FaultPlan::default()
    };
    let pipeline = Pipeline::new(CONFIG, faults).await;
    pipeline
        .heads
        .lock()
        .unwrap()
        .insert("Codertocat/Hello-World@master".into(), SHA.into());
    assert_eq!(
        pipeline
            .github_delivers("push", "pipeline-429", PUSH.as_bytes())
            .await,
        202
    );
    assert_eq!(
        pipeline
            .sentry_delivers("issue", "sentry-429", SENTRY_ISSUE.as_bytes())
            .await,
        202
    );
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(90))
        .await;

    let (_, rate_limited, _) = pipeline.telegram.faults();
    assert!(rate_limited >= 2, "the fake refused {rate_limited} call(s)");
    // Both stories arrived, each message once: the build's thread and the alert.
    let posts = texts(&pipeline.telegram.calls("POST", "/sendMessage"));
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(
        posts
            .iter()
            .filter(|t| t.contains("ReferenceError"))
            .count(),
        1
    );
    let edits = texts(&pipeline.telegram.calls("POST", "/editMessageText"));
    let thread: Vec<&String> = posts
        .iter()
        .filter(|t| !t.contains("ReferenceError"))
        .chain(edits.iter())
        .collect();
    assert!(
        thread.last().unwrap().starts_with("🟢 <b>Live</b>"),
        "{thread:?}"
    );
    assert!(pipeline.dead_letters().await.is_empty());
}
