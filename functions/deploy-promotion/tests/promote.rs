//! deploy-promotion against local fakes of the Heroku Platform API and GitHub (wiremock,
//! through the real clients), on in-memory state and queues.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use deploy_promotion::targets::{Heroku, Hook, Targets};
use deploy_promotion::{Deps, Follow, handle_batch};
use serde_json::{Value, json};
use shared::adapters::memory::{FixedClock, MemoryQueue, MemoryRedelivery, MemoryStateStore};
use shared::batch::Handoff;
use shared::config::Config;
use shared::github::client::{Auth, GitHubClient};
use shared::messages::{
    self, DeployQueueMessage, DeployRequest, Notification, NotificationKind, RollbackRequest,
};
use shared::ports::{Clock, Precondition, StateStore};
use shared::records::{LiveRecord, StateKey};
use shared::secrets::{SecretString, Secrets};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod heroku_fake;
use heroku_fake::{App, HerokuFake};

const NEW: &str = "2222222222222222222222222222222222222222";
const OLD: &str = "1111111111111111111111111111111111111111";

struct Harness {
    deps: Deps,
    heroku: MockServer,
    github: MockServer,
    notify: Arc<MemoryQueue>,
    state: Arc<MemoryStateStore>,
    redelivery: Arc<MemoryRedelivery>,
    clock: Arc<FixedClock>,
    /// deploys.fifo's dead-letter queue; wired in by the tests that want it.
    dlq: Arc<MemoryQueue>,
}

async fn harness() -> Harness {
    let heroku = MockServer::start().await;
    let github = MockServer::start().await;
    let config = Config::from_yaml(
        "channels:\n  team: { console: {} }\ndefaults:\n  notify: [team]\nrepos:\n  pax-app/User:\n    codebuild_project: pax-user\n    deploy:\n      - branch: master\n        environment_url: https://user.pax.app\n        heroku: { app: pax-user, process_types: [web, worker] }\n",
    )
    .unwrap();
    let http = reqwest::Client::new();
    let notify = Arc::new(MemoryQueue::standard());
    let state = Arc::new(MemoryStateStore::new());
    let redelivery = Arc::new(MemoryRedelivery::default());
    let clock = Arc::new(FixedClock::at(
        time::macros::datetime!(2026-11-26 10:00 UTC),
    ));
    let deps = Deps {
        config: Arc::new(config),
        github: Arc::new(GitHubClient::new(
            http.clone(),
            github.uri(),
            Auth::Token(SecretString::new("ghp")),
        )),
        deployer: Arc::new(Targets {
            heroku: Some(Arc::new(Heroku::new(
                http.clone(),
                &heroku.uri(),
                SecretString::new("heroku-key"),
            ))),
            hook: Arc::new(Hook::new(http, Arc::new(Secrets::default()))),
            command: None,
        }),
        state: state.clone(),
        notify: notify.clone(),
        deploys: Arc::new(MemoryQueue::fifo()),
        handoff: Handoff {
            redelivery: redelivery.clone(),
            dead_letters: None,
        },
        clock: clock.clone(),
        follow: Follow {
            interval: Duration::from_millis(10),
            budget: Duration::from_secs(2),
        },
    };
    Harness {
        deps,
        heroku,
        github,
        notify,
        state,
        redelivery,
        clock,
        dlq: Arc::new(MemoryQueue::fifo()),
    }
}

impl Harness {
    async fn github_says_head_is(&self, sha: &str) {
        Mock::given(method("GET"))
            .and(path("/repos/pax-app/User/branches/master"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"name": "master", "commit": {"sha": sha}})),
            )
            .mount(&self.github)
            .await;
        Mock::given(method("POST"))
            .and(path("/repos/pax-app/User/deployments"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 9001})))
            .mount(&self.github)
            .await;
        Mock::given(method("POST"))
            .and(path("/repos/pax-app/User/deployments/9001/statuses"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
            .mount(&self.github)
            .await;
    }

    /// Heroku with v42 live; a formation update's release phase ends in `final_status`.
    async fn heroku_releases(&self, final_status: &str, failure: Option<&str>) -> Arc<Mutex<App>> {
        let mut app = App::new();
        app.ends_as = (final_status.into(), failure.map(str::to_string));
        self.heroku_app(app).await
    }

    async fn heroku_app(&self, app: App) -> Arc<Mutex<App>> {
        let app = Arc::new(Mutex::new(app));
        Mock::given(wiremock::matchers::any())
            .respond_with(HerokuFake { app: app.clone() })
            .mount(&self.heroku)
            .await;
        app
    }

    async fn live(&self) -> Option<LiveRecord> {
        self.state
            .get(&StateKey::Live("heroku:pax-user").to_string(), 0)
            .await
            .unwrap()
            .map(|r| serde_json::from_value(r.value).unwrap())
    }

    async fn set_live(&self, sha: &str) {
        let record = LiveRecord {
            repo: "pax-app/User".into(),
            branch: "master".into(),
            sha: sha.into(),
            release_id: "rel-42".into(),
            version: Some("v42".into()),
            at: "2026-11-26T09:00:00Z".into(),
            build_id: "pax-user:0".into(),
            history: vec![shared::records::PastRelease {
                sha: "0000000000000000000000000000000000000000".into(),
                release_id: "rel-41".into(),
                version: Some("v41".into()),
            }],
            artifacts: Default::default(),
            deployment_id: None,
            restored: false,
            by: None,
        };
        self.state
            .put(
                &StateKey::Live("heroku:pax-user").to_string(),
                serde_json::to_value(record).unwrap(),
                Precondition::None,
                None,
                0,
            )
            .await
            .unwrap();
    }

    async fn patches(&self) -> usize {
        self.heroku_calls("PATCH").await
    }

    /// How many calls of `method` Heroku received.
    async fn heroku_calls(&self, method: &str) -> usize {
        self.heroku
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == method)
            .count()
    }

    fn kinds(&self) -> Vec<(NotificationKind, Option<String>)> {
        self.notify
            .drain()
            .into_iter()
            .map(|m| {
                let n: Notification = messages::decode(&m.body).unwrap();
                (n.kind, n.facts.reason)
            })
            .collect()
    }

    /// (state, description) of each deployment status GitHub received.
    async fn deployment_statuses(&self) -> Vec<(String, String)> {
        self.github
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path().ends_with("/statuses"))
            .map(|r| {
                let b: Value = serde_json::from_slice(&r.body).unwrap();
                (
                    b["state"].as_str().unwrap().into(),
                    b["description"].as_str().unwrap().into(),
                )
            })
            .collect()
    }
}

fn request(sha: &str) -> DeployRequest {
    DeployRequest {
        v: 1,
        repo: "pax-app/User".into(),
        branch: "master".into(),
        sha: sha.into(),
        build_id: "pax-user:abc".into(),
        log_url: Some("https://logs.example/pax-user".into()),
        target: "heroku:pax-user".into(),
        environment: "production".into(),
        artifacts: BTreeMap::from([
            ("SHIPLINE_IMAGE_WEB".to_string(), "sha256:web1".to_string()),
            (
                "SHIPLINE_IMAGE_WORKER".to_string(),
                "sha256:worker1".to_string(),
            ),
        ]),
        delivery_id: "d-1".into(),
        commit_message: Some("Fix login".into()),
        author: Some("ana".into()),
        installation_id: None,
        requested_at: "2026-11-26T10:00:00Z".into(),
        promotion: None,
        requested_by: None,
    }
}

fn sqs(bodies: &[String]) -> SqsEvent {
    let groups: Vec<String> = (0..bodies.len())
        .map(|i| {
            let _ = i;
            "heroku:pax-user".to_string()
        })
        .collect();
    let messages: Vec<(&str, Option<&str>)> = bodies
        .iter()
        .zip(&groups)
        .map(|(b, g)| (b.as_str(), (!g.is_empty()).then_some(g.as_str())))
        .collect();
    shared::batch::sqs_event("arn:aws:sqs:us-east-1:123456789012:deploys.fifo", &messages)
}

async fn run(h: &Harness, body: String) -> Vec<String> {
    handle_batch(&h.deps, &sqs(&[body]), None)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

#[tokio::test]
async fn a_green_master_build_releases_the_exported_images_and_posts_the_deployment() {
    let h = harness().await;
    h.github_says_head_is(NEW).await;
    h.heroku_releases("succeeded", None).await;
    assert!(run(&h, messages::encode(&request(NEW))).await.is_empty());

    let patch = h
        .heroku
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "PATCH")
        .unwrap();
    let body: Value = serde_json::from_slice(&patch.body).unwrap();
    assert_eq!(
        body,
        json!({"updates": [{"type": "web", "docker_image": "sha256:web1"}, {"type": "worker", "docker_image": "sha256:worker1"}]})
    );
    assert_eq!(
        patch.headers.get("authorization").unwrap(),
        "Bearer heroku-key"
    );

    assert_eq!(
        h.deployment_statuses().await,
        vec![
            ("in_progress".into(), "Releasing to heroku:pax-user".into()),
            ("success".into(), "Live on heroku:pax-user (v43)".into())
        ]
    );
    let created: Value = serde_json::from_slice(
        &h.github
            .received_requests()
            .await
            .unwrap()
            .iter()
            .find(|r| r.url.path().ends_with("/deployments"))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(
        (
            created["ref"].as_str(),
            created["environment"].as_str(),
            created["auto_merge"].as_bool()
        ),
        (Some(NEW), Some("production"), Some(false))
    );
    let success = h
        .github
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/statuses"))
        .last()
        .unwrap();
    let success: Value = serde_json::from_slice(&success.body).unwrap();
    assert_eq!(success["environment_url"], "https://user.pax.app");
    assert_eq!(success["log_url"], "https://logs.example/pax-user");

    let live = h.live().await.unwrap();
    assert_eq!(
        (
            live.sha.as_str(),
            live.release_id.as_str(),
            live.version.as_deref()
        ),
        (NEW, "rel-43", Some("v43"))
    );
    let kinds: Vec<_> = h.kinds().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::DeployStarted,
            NotificationKind::DeploySucceeded
        ]
    );
}

#[tokio::test]
async fn a_late_older_build_is_skipped_and_said_so() {
    let h = harness().await;
    h.set_live(NEW).await;
    h.github_says_head_is(NEW).await;
    assert!(run(&h, messages::encode(&request(OLD))).await.is_empty());
    assert!(
        h.heroku.received_requests().await.unwrap().is_empty(),
        "production untouched"
    );
    assert_eq!(
        h.kinds(),
        vec![(
            NotificationKind::DeploySkipped,
            Some("superseded by 2222222".into())
        )]
    );
    assert_eq!(h.live().await.unwrap().sha, NEW);
}

#[tokio::test]
async fn a_commit_behind_the_live_one_is_skipped_even_as_branch_head() {
    let h = harness().await;
    h.set_live(NEW).await;
    h.github_says_head_is(OLD).await; // the branch was reset
    Mock::given(path(format!("/repos/pax-app/User/compare/{NEW}...{OLD}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "behind"})))
        .mount(&h.github)
        .await;
    assert!(run(&h, messages::encode(&request(OLD))).await.is_empty());
    assert!(h.heroku.received_requests().await.unwrap().is_empty());
    assert_eq!(
        h.kinds(),
        vec![(
            NotificationKind::DeploySkipped,
            Some("1111111 is behind the live 2222222".into())
        )]
    );
}

#[tokio::test]
async fn a_failing_release_phase_is_reported_with_production_unchanged() {
    let h = harness().await;
    h.set_live(OLD).await;
    h.github_says_head_is(NEW).await;
    Mock::given(path(format!("/repos/pax-app/User/compare/{OLD}...{NEW}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ahead"})))
        .mount(&h.github)
        .await;
    h.heroku_releases("failed", Some("Release command failed: rake db:migrate"))
        .await;
    assert!(
        run(&h, messages::encode(&request(NEW))).await.is_empty(),
        "a failed release is not retried"
    );
    let statuses = h.deployment_statuses().await;
    assert_eq!(statuses[1].0, "failure");
    assert_eq!(
        statuses[1].1,
        "deploy failed, production unchanged: release v43 failed: Release command failed: rake db:migrate"
    );
    assert_eq!(
        h.live().await.unwrap().sha,
        OLD,
        "the old release is still live"
    );
    let kinds = h.kinds();
    assert_eq!(kinds[1].0, NotificationKind::DeployFailed);
}

#[tokio::test]
async fn a_429_then_200_from_heroku_deploys_once() {
    let h = harness().await;
    h.github_says_head_is(NEW).await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(429).set_body_json(
            json!({"id": "rate_limit", "message": "Your account reached the API rate limit"}),
        ))
        .up_to_n_times(1)
        .mount(&h.heroku)
        .await;
    h.heroku_releases("succeeded", None).await;
    assert_eq!(
        run(&h, messages::encode(&request(NEW))).await,
        vec!["m-0"],
        "retried later"
    );
    assert!(run(&h, messages::encode(&request(NEW))).await.is_empty());
    let patches = h.heroku_calls("PATCH").await;
    assert_eq!(patches, 2, "one refused, one released");
    let creations = h
        .github
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/deployments"))
        .count();
    assert_eq!(creations, 1, "the retry resumed the same deployment");
    assert_eq!(h.live().await.unwrap().sha, NEW);
    let kinds: Vec<_> = h.kinds().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::DeployStarted,
            NotificationKind::DeploySucceeded
        ]
    );
}

#[tokio::test]
async fn an_unknown_app_fails_at_once_with_a_clear_reason() {
    let h = harness().await;
    h.github_says_head_is(NEW).await;
    // Heroku answers every call about an app it does not know with 404 not_found.
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"id": "not_found", "message": "Couldn't find that app."})),
        )
        .mount(&h.heroku)
        .await;
    assert!(
        run(&h, messages::encode(&request(NEW))).await.is_empty(),
        "not retried"
    );
    let kinds = h.kinds();
    assert_eq!(kinds[1].0, NotificationKind::DeployFailed);
    assert_eq!(
        kinds[1].1.as_deref(),
        Some(
            "deploy failed, production unchanged: Heroku app pax-user not found (404 not_found): Couldn't find that app."
        )
    );
    assert!(h.live().await.is_none());
}

#[tokio::test]
async fn a_missing_image_is_a_clear_failure() {
    let h = harness().await;
    h.github_says_head_is(NEW).await;
    let mut r = request(NEW);
    r.artifacts.remove("SHIPLINE_IMAGE_WORKER");
    assert!(run(&h, messages::encode(&r)).await.is_empty());
    let reason = h.kinds().pop().unwrap().1.unwrap();
    assert!(
        reason.contains("no image for process `worker` (SHIPLINE_IMAGE_WORKER)"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_rollback_releases_the_earlier_release() {
    let h = harness().await;
    h.set_live(NEW).await;
    Mock::given(method("POST"))
        .and(path("/apps/pax-user/releases"))
        .and(body_json(json!({"release": "rel-41"})))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "rel-44", "version": 44, "status": "succeeded"})),
        )
        .expect(1)
        .mount(&h.heroku)
        .await;
    h.heroku_releases("succeeded", None).await;
    h.github_says_head_is(NEW).await;
    let rollback = RollbackRequest {
        v: 1,
        target: "heroku:pax-user".into(),
        release: None,
        requested_by: "ana".into(),
        requested_at: "2026-11-26T10:00:00Z".into(),
        from_release: None,
        reason: None,
    };
    assert!(
        run(
            &h,
            messages::encode(&DeployQueueMessage::Rollback(rollback))
        )
        .await
        .is_empty()
    );
    let live = h.live().await.unwrap();
    assert_eq!(
        (live.release_id.as_str(), live.sha.as_str()),
        ("rel-44", "0000000000000000000000000000000000000000")
    );
    assert_eq!(
        live.history.last().unwrap().release_id,
        "rel-42",
        "the rolled-back release can be restored"
    );
    assert_last_told(
        &h,
        NotificationKind::DeploySucceeded,
        "rolled back to v41 by ana",
    );
    // GitHub shows what is live: a deployment of the restored commit, successful.
    let github = h.github.received_requests().await.unwrap();
    let deployment: Value = github
        .iter()
        .find(|r| r.url.path() == "/repos/pax-app/User/deployments")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .expect("a deployment of the restored commit");
    assert_eq!(
        deployment["ref"],
        "0000000000000000000000000000000000000000"
    );
    let status: Value = github
        .iter()
        .find(|r| r.url.path().ends_with("/deployments/9001/statuses"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .unwrap();
    assert_eq!(
        (status["state"].as_str(), status["environment_url"].as_str()),
        (Some("success"), Some("https://user.pax.app"))
    );
}

/// The chat's last message about the target was `kind`, saying `reason`.
fn assert_last_told(h: &Harness, kind: NotificationKind, reason: &str) {
    let (told, said) = h.kinds().pop().expect("the chat was told");
    assert_eq!((told, said.as_deref()), (kind, Some(reason)));
}

/// A rollback of `heroku:pax-user` to `release`, by ana.
fn rollback_to(release: &str) -> String {
    messages::encode(&DeployQueueMessage::Rollback(RollbackRequest {
        v: 1,
        target: "heroku:pax-user".into(),
        release: Some(release.into()),
        requested_by: "ana".into(),
        requested_at: "2026-11-26T10:00:00Z".into(),
        from_release: None,
        reason: None,
    }))
}

#[tokio::test]
async fn a_rollback_to_a_version_is_resolved_to_the_release_id_heroku_takes() {
    // v40 is not in shipline's history; Heroku's rollback takes a release id, not `v40`.
    let h = harness().await;
    h.set_live(NEW).await;
    let app = h.heroku_releases("succeeded", None).await;
    assert!(run(&h, rollback_to("v40")).await.is_empty());
    let rollbacks: Vec<Value> = h
        .heroku
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(rollbacks, vec![json!({"release": "rel-40"})]);
    assert_eq!(
        app.lock().unwrap().releases.last().unwrap().description,
        "Rollback to v40"
    );
    // Heroku's release does not name its commit and shipline's history does not reach v40:
    // GitHub gets no deployment of a guessed commit, and the chat says so.
    let deployments = h
        .github
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/deployments"))
        .count();
    assert_eq!(deployments, 0);
    assert_last_told(
        &h,
        NotificationKind::DeploySucceeded,
        "rolled back to v40 by ana (v40 is older than the releases shipline keeps, so its commit is unknown and GitHub's deployments page is not updated for it)",
    );
}

#[tokio::test]
async fn a_rollback_to_a_version_heroku_does_not_have_is_refused_with_that_reason() {
    let h = harness().await;
    h.set_live(NEW).await;
    h.heroku_releases("succeeded", None).await;
    assert!(
        run(&h, rollback_to("v99")).await.is_empty(),
        "told, not retried"
    );
    assert_eq!(h.heroku_calls("POST").await, 0, "nothing released");
    assert_eq!(h.live().await.unwrap().release_id, "rel-42", "still live");
    assert_last_told(
        &h,
        NotificationKind::DeployFailed,
        "rollback to v99 failed: Heroku app pax-user has no such release (404 not_found): Couldn't find that release.",
    );
}

#[tokio::test]
async fn a_rollback_to_an_expired_release_is_refused_with_that_reason() {
    let h = harness().await;
    h.set_live(NEW).await;
    h.heroku_releases("succeeded", None).await;
    assert!(
        run(&h, rollback_to("v39")).await.is_empty(),
        "told, not retried"
    );
    let posts = h.heroku_calls("POST").await;
    assert_eq!(posts, 0, "nothing released");
    assert_eq!(h.live().await.unwrap().release_id, "rel-42", "still live");
    let (kind, reason) = h.kinds().pop().unwrap();
    assert_eq!(kind, NotificationKind::DeployFailed);
    assert_eq!(
        reason.as_deref(),
        Some(
            "rollback to v39 failed: release v39 of pax-user has expired (older than Heroku keeps releases for rollback)"
        )
    );
}

#[tokio::test]
async fn a_release_still_pending_after_the_budget_is_followed_by_the_retry_not_made_again() {
    let mut h = harness().await;
    h.deps.follow.budget = Duration::from_millis(50);
    h.github_says_head_is(NEW).await;
    h.heroku_releases("pending", None).await;
    assert_eq!(run(&h, messages::encode(&request(NEW))).await, vec!["m-0"]);
    assert_eq!(
        h.redelivery.delays(),
        vec![Duration::from_secs(15)],
        "looked at again a little later"
    );
    assert_eq!(run(&h, messages::encode(&request(NEW))).await, vec!["m-0"]);
    assert_eq!(h.patches().await, 1, "one release, followed twice");
    assert!(h.live().await.is_none(), "not live while pending");
    let kinds: Vec<_> = h.kinds().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        vec![NotificationKind::DeployStarted],
        "announced once"
    );
}

/// The first try fails after Heroku made the release; the retry finds it: one formation
/// update, and v43 live.
async fn the_retry_finds_the_release_the_first_try_made(h: &Harness) {
    assert_eq!(run(h, messages::encode(&request(NEW))).await, vec!["m-0"]);
    assert!(run(h, messages::encode(&request(NEW))).await.is_empty());
    assert_eq!(h.patches().await, 1, "the retry found the release it made");
    assert_eq!(h.live().await.unwrap().release_id, "rel-43");
}

#[tokio::test]
async fn a_formation_update_whose_answer_was_lost_is_looked_up_not_made_again() {
    // Heroku made the release, then the answer was lost (a 503 after the change): a second
    // update would run the release phase's migrations twice.
    let h = harness().await;
    h.github_says_head_is(NEW).await;
    let mut app = App::new();
    app.lose_patch_answers = 1;
    h.heroku_app(app).await;
    the_retry_finds_the_release_the_first_try_made(&h).await;
}

#[tokio::test]
async fn a_release_heroku_made_but_could_not_list_is_looked_up_not_made_again() {
    let h = harness().await;
    h.github_says_head_is(NEW).await;
    // The read after the update fails once; the one before it does not.
    Mock::given(method("GET"))
        .and(path("/apps/pax-user/releases"))
        .and(wiremock::matchers::header_regex(
            "range",
            r"^version \]42\.\.",
        ))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&h.heroku)
        .await;
    h.heroku_releases("succeeded", None).await;
    the_retry_finds_the_release_the_first_try_made(&h).await;
}

#[tokio::test]
async fn a_config_release_landing_after_the_update_is_not_taken_for_ours() {
    // A config change lands right after the formation update and succeeds at once; our
    // release's phase fails. The newest release is the config change's: following it would
    // call a failed deploy live.
    let h = harness().await;
    h.github_says_head_is(NEW).await;
    let mut app = App::new();
    app.interleave = true;
    app.ends_as = ("failed".into(), Some("Release command failed".into()));
    h.heroku_app(app).await;
    assert!(run(&h, messages::encode(&request(NEW))).await.is_empty());
    assert!(h.live().await.is_none(), "nothing of ours went live");
    let kinds = h.kinds();
    assert_eq!(kinds.last().unwrap().0, NotificationKind::DeployFailed);
    assert!(
        kinds
            .last()
            .unwrap()
            .1
            .as_deref()
            .unwrap()
            .contains("release v43 failed"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_corrupt_live_record_stops_the_deploy_and_is_left_as_it_is() {
    let h = harness().await;
    h.github_says_head_is(NEW).await;
    h.heroku_releases("succeeded", None).await;
    let key = StateKey::Live("heroku:pax-user").to_string();
    h.state
        .put(&key, json!({"sha": 7}), Precondition::None, None, 0)
        .await
        .unwrap();
    assert_eq!(run(&h, messages::encode(&request(NEW))).await, vec!["m-0"]);
    assert_eq!(h.patches().await, 0, "production untouched");
    assert_eq!(
        h.state.get(&key, 0).await.unwrap().unwrap().value,
        json!({"sha": 7}),
        "never overwritten as if nothing were live"
    );
}

#[tokio::test]
async fn a_message_that_is_not_a_deploy_is_reported_failed_and_deploys_nothing() {
    let h = harness().await;
    assert_eq!(
        run(&h, r#"{"v": 2, "kind": "deploy"}"#.into()).await,
        vec!["m-0"]
    );
    assert!(h.heroku.received_requests().await.unwrap().is_empty());
}

/// A Heroku release phase that runs until `ends` on the test's clock: until then the Platform
/// API shows the release `pending`, then `succeeded` (Release Info's `status`; Heroku lets a
/// release phase run up to an hour).
impl Harness {
    /// Heroku accepts the formation update and runs its release phase for `phase` of
    /// simulated time.
    async fn heroku_release_phase_runs_for(&self, phase: Duration) {
        let mut app = App::new();
        app.phase_ends = Some((self.clock.clone(), self.clock.now() + phase));
        self.heroku_app(app).await;
    }

    /// One receive of `body`, the `receive`th, as SQS delivers it again and again.
    async fn receive(&self, body: &str, receive: usize) -> Vec<String> {
        let mut event = sqs(&[body.to_string()]);
        event.records[0]
            .attributes
            .insert("ApproximateReceiveCount".into(), receive.to_string());
        handle_batch(&self.deps, &event, None)
            .await
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }
}

#[tokio::test]
async fn a_release_phase_pending_for_40_minutes_is_released_once_and_ends_in_success() {
    let mut h = harness().await;
    // Each receive follows the release for a moment of real time; the time between receives
    // is simulated: the clock moves on by the wait each receive asked for.
    h.deps.follow = Follow {
        interval: Duration::from_millis(5),
        budget: Duration::from_millis(15),
    };
    h.deps.handoff.dead_letters = Some(h.dlq.clone());
    h.github_says_head_is(NEW).await;
    h.heroku_release_phase_runs_for(Duration::from_secs(40 * 60))
        .await;
    let started = h.clock.now();
    let body = messages::encode(&request(NEW));
    let mut receives = 0;
    loop {
        receives += 1;
        assert!(receives < 1000, "never finished");
        let failed = h.receive(&body, receives).await;
        if failed.is_empty() {
            break;
        }
        assert_eq!(failed, vec!["m-0"]);
        let wait = h
            .redelivery
            .take("r-0")
            .expect("a pending release waits; it is not a failure");
        h.clock.advance(wait);
    }

    assert!(h.clock.now() - started >= time::Duration::minutes(40));
    assert!(
        receives > 4 * shared::batch::MAX_FAILURES as usize,
        "came back {receives} times"
    );
    assert_eq!(h.patches().await, 1, "released once");
    let statuses = h.deployment_statuses().await;
    assert_eq!(
        statuses.last().map(|(state, _)| state.as_str()),
        Some("success")
    );
    assert_eq!(statuses.len(), 2, "in_progress once, then success");
    assert_eq!(h.live().await.unwrap().release_id, "rel-43");
    assert!(h.dlq.is_empty(), "waiting is not failing");
    let kinds: Vec<_> = h.kinds().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::DeployStarted,
            NotificationKind::DeploySucceeded
        ]
    );
}

#[tokio::test]
async fn poison_is_dead_lettered_at_once_with_its_reason_and_the_next_deploy_goes_through() {
    let mut h = harness().await;
    h.deps.handoff.dead_letters = Some(h.dlq.clone());
    h.github_says_head_is(NEW).await;
    h.heroku_releases("succeeded", None).await;
    let mut unknown_version: Value =
        serde_json::from_str(&messages::encode(&request(OLD))).unwrap();
    unknown_version["v"] = json!(9);
    let poison = [
        "{\"v\": 1, \"repo\": \"pax-app/Us".to_string(),
        unknown_version.to_string(),
    ];
    let batch = sqs(&[
        poison[0].clone(),
        poison[1].clone(),
        messages::encode(&request(NEW)),
    ]);
    let response = handle_batch(&h.deps, &batch, None).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "nothing comes back, so the target's FIFO group is not held"
    );

    let dead = h.dlq.drain();
    let dead: Vec<_> = dead
        .iter()
        .map(|m| (m.body.as_str(), m.group_id.as_deref(), m.reason.as_deref()))
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0].0, dead[0].1),
        (poison[0].as_str(), Some("heroku:pax-user"))
    );
    assert!(
        dead[0]
            .2
            .unwrap()
            .starts_with("message is not valid JSON: "),
        "{:?}",
        dead[0].2
    );
    assert_eq!(
        dead[1],
        (
            poison[1].as_str(),
            Some("heroku:pax-user"),
            Some("message version 9 is not supported (this build reads version 1)")
        )
    );
    assert_eq!(h.patches().await, 1);
    assert_eq!(
        h.live().await.unwrap().sha,
        NEW,
        "the next deploy went live"
    );
    assert_eq!(h.deployment_statuses().await.last().unwrap().0, "success");
}

// SQS forgets a FIFO deduplication id after five minutes (and moto as soon as the message is
// deleted), so build-dispatch's finalize, retried late, can request the same deploy twice.
#[tokio::test]
async fn a_second_request_for_the_live_commit_releases_nothing_and_tells_nobody() {
    let h = harness().await;
    h.github_says_head_is(NEW).await;
    h.heroku_releases("succeeded", None).await;
    assert!(run(&h, messages::encode(&request(NEW))).await.is_empty());
    let story: Vec<_> = h.kinds().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        story,
        vec![
            NotificationKind::DeployStarted,
            NotificationKind::DeploySucceeded
        ]
    );

    assert!(run(&h, messages::encode(&request(NEW))).await.is_empty());
    let patches = h
        .heroku
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .count();
    assert_eq!(patches, 1, "released once");
    assert!(h.kinds().is_empty(), "the chat's story still ends on Live");
    assert_eq!(
        h.deployment_statuses().await.len(),
        2,
        "no second deployment"
    );
}
