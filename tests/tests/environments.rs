//! Promotion between environments and automatic rollback, end to end: real queues and the
//! state table on moto, the GitHub, Heroku, Telegram and CodeBuild fakes, and the sweep that
//! the function's schedule runs.
//!
//! - staging release → soak → gate passes → production release of the same image, no build;
//! - a Sentry error on staging during the soak → no promotion, and the chat says why;
//! - `gate: approval` → nothing until `shipline promote`'s request;
//! - a newer staging release supersedes a pending promotion;
//! - a staging release rolled back during its soak is not promoted;
//! - an error spike after a production release → one rollback to the previous release, the
//!   bad deployment marked failure; the alerts after it roll nothing back again.

mod support;

use std::time::Duration;

use deploy_promotion::promotions::sweep;
use shared::ids::TargetKey;
use shared::messages::{self, DeployQueueMessage, PromoteRequest};
use shared::ports::{OutgoingMessage, StateStore};
use shared::records::{LiveRecord, PendingPromotions, StateKey};
use support::{FaultPlan, Pipeline};

const SENTRY_ISSUE: &str =
    include_str!("../../functions/alert-forwarder/testdata/sentry-issue-created.json");
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const NEWER: &str = "7224839f38bf93d8c2b288d9e14f0a07f1bef357";
const REPO: &str = "Codertocat/Hello-World";

fn config(promotion: &str) -> String {
    format!(
        "\
channels:
  team: {{ telegram: {{ chat_id: -100777 }} }}
defaults:
  notify: [team]
repos:
  {REPO}:
    codebuild_project: hello
    sentry_project: front-end
    deploy:
      - branch: master
        environment: staging
        heroku: {{ app: hello-staging }}
      - promote_from: staging
        environment: production
        heroku: {{ app: hello-world }}
{promotion}
sentry:
  projects:
    front-end: {{ notify: [team] }}
"
    )
}

/// A push of `sha` to master, built green and released by master's rule.
async fn released(pipeline: &Pipeline, sha: &str, delivery: &str) {
    pipeline.pushed(sha, delivery, "SUCCEEDED").await;
}

async fn live(pipeline: &Pipeline, target: &str) -> Option<LiveRecord> {
    let state: &dyn StateStore = pipeline.promotion.state.as_ref();
    state
        .read_value(StateKey::Live(target), 0)
        .await
        .expect("the table answers")
}

async fn pending(pipeline: &Pipeline) -> PendingPromotions {
    let state: &dyn StateStore = pipeline.promotion.state.as_ref();
    state
        .read_value(StateKey::Promotions, 0)
        .await
        .unwrap()
        .unwrap_or_default()
}

/// The schedule's sweep, then everything it queued, to the end.
async fn sweep_and_settle(pipeline: &Pipeline) -> deploy_promotion::promotions::SweepReport {
    let report = sweep(&pipeline.promotion).await.expect("the sweep runs");
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;
    report
}

/// The FIFO group of the message waiting on `deploys.fifo`, which stays there.
async fn next_group(pipeline: &Pipeline) -> String {
    let out = pipeline
        .sqs
        .receive_message()
        .queue_url(&pipeline.deploys.url)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
        )
        .send()
        .await
        .unwrap();
    let message = &out.messages.unwrap_or_default()[0];
    pipeline
        .sqs
        .change_message_visibility()
        .queue_url(&pipeline.deploys.url)
        .receipt_handle(message.receipt_handle.clone().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    message.attributes.as_ref().unwrap()
        [&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId]
        .clone()
}

fn chat_texts(pipeline: &Pipeline) -> Vec<String> {
    let mut calls = pipeline.telegram.calls("POST", "/sendMessage");
    calls.extend(pipeline.telegram.calls("POST", "/editMessageText"));
    support::texts(&calls)
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_quiet_staging_release_reaches_production_with_the_same_image_and_no_new_build() {
    let pipeline = Pipeline::new(
        &config("        after: 3s\n        gate: sentry"),
        FaultPlan::default(),
    )
    .await;
    released(&pipeline, SHA, "env-1").await;
    let staging = live(&pipeline, "heroku:hello-staging").await.unwrap();
    assert!(live(&pipeline, "heroku:hello-world").await.is_none());
    assert_eq!(pending(&pipeline).await.len(), 1);

    // Before the soak time is over, nothing moves.
    let report = sweep_and_settle(&pipeline).await;
    assert_eq!(report.waiting, ["heroku:hello-world"]);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let report = sweep(&pipeline.promotion).await.unwrap();
    assert_eq!(report.promoted, ["heroku:hello-world"]);
    // In the target's FIFO group: it waits for any deploy of production, and they for it.
    assert_eq!(next_group(&pipeline).await, "heroku:hello-world");
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;

    let production = live(&pipeline, "heroku:hello-world").await.unwrap();
    assert_eq!(production.sha, SHA);
    assert_eq!(
        production.artifacts, staging.artifacts,
        "the same image ids"
    );
    assert_eq!(
        pipeline.codebuild.started.lock().unwrap().len(),
        1,
        "no new build"
    );
    let patches = pipeline
        .heroku
        .calls("PATCH", "/apps/hello-world/formation");
    let staged = pipeline
        .heroku
        .calls("PATCH", "/apps/hello-staging/formation");
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].body, staged[0].body);
    assert!(pending(&pipeline).await.is_empty());
    let last = chat_texts(&pipeline).pop().unwrap();
    assert!(
        last.contains("promoted from staging") && last.contains("no new Sentry issue on staging"),
        "{last}"
    );
    assert!(pipeline.dead_letters().await.is_empty());
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_sentry_error_on_staging_during_the_soak_stops_the_promotion_and_says_why() {
    let pipeline = Pipeline::new(
        &config("        after: 1s\n        gate: sentry"),
        FaultPlan::default(),
    )
    .await;
    released(&pipeline, SHA, "env-2").await;
    assert_eq!(
        pipeline
            .sentry_delivers("issue", "sentry-env-2", SENTRY_ISSUE.as_bytes())
            .await,
        202
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = sweep_and_settle(&pipeline).await;
    assert_eq!(report.blocked, ["heroku:hello-world"]);
    assert!(live(&pipeline, "heroku:hello-world").await.is_none());
    assert!(
        pipeline
            .heroku
            .calls("PATCH", "/apps/hello-world/formation")
            .is_empty()
    );
    assert!(pending(&pipeline).await.is_empty());
    let texts = chat_texts(&pipeline);
    assert!(
        texts.iter().any(|t| t.contains("Not promoted")
            && t.contains("Sentry saw on staging")
            && t.contains("ReferenceError: blooopy is not defined (1)")),
        "{texts:#?}"
    );
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn an_approval_gate_waits_for_a_person_and_a_newer_release_supersedes_the_wait() {
    let pipeline = Pipeline::new(&config("        gate: approval"), FaultPlan::default()).await;
    released(&pipeline, SHA, "env-3").await;
    let report = sweep_and_settle(&pipeline).await;
    assert_eq!(
        report.waiting,
        ["heroku:hello-world"],
        "no promotion without a person"
    );
    assert!(live(&pipeline, "heroku:hello-world").await.is_none());

    // A newer staging release replaces the pending promotion of the older one.
    released(&pipeline, NEWER, "env-4").await;
    let waiting = pending(&pipeline).await;
    assert_eq!(waiting["heroku:hello-world"].request.sha, NEWER);
    assert!(
        chat_texts(&pipeline)
            .iter()
            .any(|t| t.contains("Not promoted") && t.contains("superseded")),
        "the older commit's thread says it will not be promoted"
    );

    // `shipline promote heroku:hello-world` puts this on the deploy queue.
    let request = PromoteRequest {
        v: messages::VERSION,
        target: TargetKey::new("heroku:hello-world"),
        sha: None,
        requested_by: "octocat".into(),
        requested_at: "2026-11-30T10:00:00Z".into(),
    };
    pipeline
        .promotion
        .deploys
        .send(OutgoingMessage::fifo(
            messages::encode(&DeployQueueMessage::Promote(request)),
            "heroku:hello-world",
            "promote-1",
        ))
        .await
        .unwrap();
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;
    let production = live(&pipeline, "heroku:hello-world").await.unwrap();
    assert_eq!(production.sha, NEWER);
    assert_eq!(
        pipeline
            .heroku
            .calls("PATCH", "/apps/hello-world/formation")
            .len(),
        1
    );
    assert!(pending(&pipeline).await.is_empty());
    let last = chat_texts(&pipeline).pop().unwrap();
    assert!(last.contains("approved by octocat"), "{last}");
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn a_staging_release_rolled_back_during_its_soak_is_not_promoted() {
    let pipeline = Pipeline::new(&config("        after: 1s"), FaultPlan::default()).await;
    released(&pipeline, SHA, "soak-1").await;
    released(&pipeline, NEWER, "soak-2").await;
    assert_eq!(
        pending(&pipeline).await["heroku:hello-world"].request.sha,
        NEWER
    );
    // `shipline rollback heroku:hello-staging`: staging runs SHA again.
    let rollback = messages::RollbackRequest {
        v: messages::VERSION,
        target: TargetKey::new("heroku:hello-staging"),
        release: None,
        requested_by: "octocat".into(),
        requested_at: "2026-11-30T10:00:00Z".into(),
        from_release: None,
        reason: None,
    };
    pipeline
        .promotion
        .deploys
        .send(OutgoingMessage::fifo(
            messages::encode(&DeployQueueMessage::Rollback(rollback)),
            "heroku:hello-staging",
            "rollback-1",
        ))
        .await
        .unwrap();
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;
    assert_eq!(
        live(&pipeline, "heroku:hello-staging").await.unwrap().sha,
        SHA
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = sweep_and_settle(&pipeline).await;
    assert_eq!(report.blocked, ["heroku:hello-world"]);
    assert!(live(&pipeline, "heroku:hello-world").await.is_none());
    assert!(
        chat_texts(&pipeline)
            .iter()
            .any(|t| t.contains("Not promoted") && t.contains("was rolled back on staging")),
        "{:#?}",
        chat_texts(&pipeline)
    );
}

const ROLLBACK_CONFIG: &str = "\
channels:
  team: { telegram: { chat_id: -100777 } }
defaults:
  notify: [team]
repos:
  Codertocat/Hello-World:
    codebuild_project: hello
    sentry_project: front-end
    deploy:
      - branch: master
        environment: production
        heroku: { app: hello-world }
        auto_rollback: { window: 15m, new_issues: 1, events: 50 }
sentry:
  projects:
    front-end: { notify: [team] }
";

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn an_error_spike_after_a_release_rolls_it_back_once_and_never_again() {
    let pipeline = Pipeline::new(ROLLBACK_CONFIG, FaultPlan::default()).await;
    let target = "heroku:hello-world";
    released(&pipeline, SHA, "rb-1").await;
    let first = live(&pipeline, target).await.unwrap();
    released(&pipeline, NEWER, "rb-2").await;
    let bad = live(&pipeline, target).await.unwrap();
    assert_eq!(bad.sha, NEWER);

    // A new issue right after the release: one rollback, to the release before.
    for i in 0..3 {
        if i == 1 {
            // Queued once, in the target's FIFO group.
            assert_eq!(next_group(&pipeline).await, target);
        }
        let status = pipeline
            .sentry_delivers("issue", &format!("rb-alert-{i}"), SENTRY_ISSUE.as_bytes())
            .await;
        // The first is told; the throttle counts the others for its summary.
        assert!(status == 202 || status == 200, "{status}");
    }
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;
    let restored = live(&pipeline, target).await.unwrap();
    assert_eq!(restored.sha, SHA);
    assert!(restored.restored);
    assert_eq!(
        pipeline
            .heroku
            .calls("POST", "/apps/hello-world/releases")
            .len(),
        1,
        "exactly one rollback"
    );
    let rollback = &pipeline.heroku.calls("POST", "/apps/hello-world/releases")[0];
    assert_eq!(rollback.body["release"], first.release_id);

    // GitHub: the bad release's deployment failed, a new one records the restored commit.
    let statuses = pipeline.github.calls("POST", "/statuses");
    let bad_deployment = format!("/deployments/{}/statuses", bad.deployment_id.unwrap());
    assert!(
        statuses
            .iter()
            .any(|c| c.path.ends_with(&bad_deployment) && c.body["state"] == "failure"),
        "the bad release's deployment is marked failure"
    );
    let created = pipeline.github.calls("POST", "/deployments");
    let last = created
        .iter()
        .rfind(|c| !c.path.contains("/statuses"))
        .unwrap();
    assert_eq!(last.body["ref"], SHA);
    let texts = chat_texts(&pipeline);
    assert!(
        texts
            .iter()
            .any(|t| t.contains("automatically") && t.contains("ReferenceError")),
        "{texts:#?}"
    );

    // The storm goes on: the restored release is not rolled back by it.
    for i in 3..6 {
        pipeline
            .sentry_delivers("issue", &format!("rb-alert-{i}"), SENTRY_ISSUE.as_bytes())
            .await;
    }
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60))
        .await;
    assert_eq!(
        pipeline
            .heroku
            .calls("POST", "/apps/hello-world/releases")
            .len(),
        1
    );
    assert_eq!(live(&pipeline, target).await.unwrap().sha, SHA);
    assert!(pipeline.dead_letters().await.is_empty());
}
