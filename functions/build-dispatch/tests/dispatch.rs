//! build-dispatch as Lambda calls it, on in-memory state and queues, a local GitHub fake
//! (wiremock, through the real REST client) and a scripted build service.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::sqs::SqsEvent;
use build_dispatch::codebuild::{BuildInfo, BuildStatus, Builds, BuildsError, StartBuild};
use build_dispatch::{Deps, handle_batch, sweep};
use serde_json::{Value, json};
use shared::adapters::memory::{FixedClock, MemoryQueue, MemoryRedelivery, MemoryStateStore};
use shared::batch::Handoff;
use shared::config::Config;
use shared::github::client::{Auth, GitHubClient};
use shared::messages::{
    self, BuildRequest, DeployRequest, Notification, NotificationKind, PullRequestTrigger,
    PushTrigger, Trigger,
};
use shared::ports::Precondition;
use shared::secrets::SecretString;
use wiremock::matchers::{body_partial_json, method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONFIG: &str = r#"
channels:
  team: { console: {} }
defaults:
  notify: [team]
repos:
  pax-app/User:
    codebuild_project: pax-user
    deploy:
      - branch: master
        heroku: { app: pax-user, process_types: [web, worker] }
  pax-app/Forky:
    codebuild_project: forky
    build_forks: true
    fork_codebuild_project: forky-untrusted
"#;

const SHA_A: &str = "aaaaaaa1111111111111111111111111111111111";
const SHA_B: &str = "bbbbbbb2222222222222222222222222222222222";

/// A build service that records what it was asked and answers as scripted.
#[derive(Default)]
struct ScriptedBuilds {
    started: Mutex<Vec<StartBuild>>,
    stopped: Mutex<Vec<String>>,
    /// What `get` answers, by build id.
    known: Mutex<BTreeMap<String, BuildInfo>>,
    refuse_start: Mutex<bool>,
}

fn info(id: &str, status: BuildStatus) -> BuildInfo {
    BuildInfo {
        id: id.into(),
        project: id.split(':').next().unwrap().into(),
        status,
        current_phase: None,
        phases: vec![],
        log_url: Some(format!("https://logs.example/{id}")),
        environment: BTreeMap::new(),
        exported: BTreeMap::new(),
        timeout_minutes: Some(60),
    }
}

#[async_trait]
impl Builds for ScriptedBuilds {
    async fn start(&self, request: StartBuild) -> Result<BuildInfo, BuildsError> {
        if *self.refuse_start.lock().unwrap() {
            return Err(BuildsError::Refused(
                "ResourceNotFoundException: project not found".into(),
            ));
        }
        let mut started = self.started.lock().unwrap();
        let id = format!("{}:build-{}", request.project, started.len() + 1);
        started.push(request);
        let mut build = info(&id, BuildStatus::InProgress);
        build.log_url = None;
        self.known.lock().unwrap().insert(id.clone(), build.clone());
        Ok(build)
    }

    async fn stop(&self, build_id: &str) -> Result<(), BuildsError> {
        self.stopped.lock().unwrap().push(build_id.to_string());
        Ok(())
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<BuildInfo>, BuildsError> {
        let known = self.known.lock().unwrap();
        Ok(ids.iter().filter_map(|id| known.get(id).cloned()).collect())
    }
}

struct Harness {
    deps: Deps,
    builds: Arc<ScriptedBuilds>,
    deploys: Arc<MemoryQueue>,
    notify: Arc<MemoryQueue>,
    clock: Arc<FixedClock>,
    github: MockServer,
}

async fn harness() -> Harness {
    let github = MockServer::start().await;
    let builds = Arc::new(ScriptedBuilds::default());
    let deploys = Arc::new(MemoryQueue::fifo());
    let notify = Arc::new(MemoryQueue::standard());
    let clock = Arc::new(FixedClock::at(
        time::macros::datetime!(2026-11-26 10:00 UTC),
    ));
    let deps = Deps {
        config: Arc::new(Config::from_yaml(CONFIG).unwrap()),
        builds: builds.clone(),
        github: Arc::new(GitHubClient::new(
            reqwest::Client::new(),
            github.uri(),
            Auth::Token(SecretString::new("ghp_test")),
        )),
        state: Arc::new(MemoryStateStore::new()),
        deploys: deploys.clone(),
        notify: notify.clone(),
        handoff: Handoff {
            redelivery: Arc::new(MemoryRedelivery::default()),
            dead_letters: None,
        },
        event_dead_letters: None,
        clock: clock.clone(),
        region: "eu-west-1".into(),
    };
    Harness {
        deps,
        builds,
        deploys,
        notify,
        clock,
        github,
    }
}

async fn github_accepts(h: &Harness) {
    Mock::given(method("POST"))
        .and(path_regex("^/repos/.+/statuses/.+$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .mount(&h.github)
        .await;
}

/// GitHub answers the first POST with 500, then accepts statuses.
async fn github_fails_once_then_accepts(h: &Harness) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&h.github)
        .await;
    github_accepts(h).await;
}

/// Every status GitHub received: (sha, state, description).
async fn statuses(h: &Harness) -> Vec<(String, String, String)> {
    h.github
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().contains("/statuses/"))
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (
                r.url.path().rsplit('/').next().unwrap()[..7].to_string(),
                body["state"].as_str().unwrap().to_string(),
                body["description"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn push(delivery: &str, sha: &str, branch: &str) -> BuildRequest {
    BuildRequest {
        v: 1,
        delivery_id: delivery.into(),
        repo: "pax-app/User".into(),
        sha: sha.into(),
        trigger: Trigger::Push(PushTrigger {
            branch: branch.into(),
            before: "0".repeat(40),
            after: sha.into(),
            forced: false,
            pusher: "ana".into(),
            head_commit_message: "Fix login\n\nlong body".into(),
            head_commit_url: None,
            head_commit_author: Some("ana".into()),
            compare_url: "https://github.com/pax-app/User/compare/x...y".into(),
        }),
        received_at: "2026-11-26T10:00:00Z".into(),
        installation_id: None,
    }
}

fn pull_request(delivery: &str, repo: &str, fork: bool) -> BuildRequest {
    BuildRequest {
        v: 1,
        delivery_id: delivery.into(),
        repo: repo.into(),
        sha: SHA_A.into(),
        trigger: Trigger::PullRequest(PullRequestTrigger {
            number: 7,
            action: "opened".into(),
            head_sha: SHA_A.into(),
            head_ref: "feature".into(),
            base_ref: "master".into(),
            fork,
            title: "Add feature".into(),
            author: "bob".into(),
            url: format!("https://github.com/{repo}/pull/7"),
        }),
        received_at: "2026-11-26T10:00:00Z".into(),
        installation_id: None,
    }
}

fn sqs(bodies: &[String]) -> SqsEvent {
    let groups: Vec<String> = (0..bodies.len()).map(|i| format!("g-{i}")).collect();
    let messages: Vec<(&str, Option<&str>)> = bodies
        .iter()
        .zip(&groups)
        .map(|(b, g)| (b.as_str(), (!g.is_empty()).then_some(g.as_str())))
        .collect();
    shared::batch::sqs_event("arn:aws:sqs:us-east-1:123456789012:builds.fifo", &messages)
}

/// A CodeBuild state-change event for a build, from the published fixture.
fn state_change(build_id: &str, status: &str) -> String {
    let mut event: Value = serde_json::from_str(include_str!(
        "../testdata/codebuild-state-change-succeeded-with-envvars.json"
    ))
    .unwrap();
    let project = build_id.split(':').next().unwrap();
    event["detail"]["build-status"] = json!(status);
    event["detail"]["project-name"] = json!(project);
    event["detail"]["build-id"] = json!(format!(
        "arn:aws:codebuild:eu-west-1:123456789012:build/{build_id}"
    ));
    if status == "FAILED" {
        let phases = event["detail"]["additional-information"]["phases"]
            .as_array_mut()
            .unwrap();
        for p in phases.iter_mut() {
            if p["phase-type"] == "BUILD" {
                p["phase-status"] = json!("FAILED");
                p["phase-context"] = json!([
                    "COMMAND_EXECUTION_ERROR: Error while executing command: cargo test. Reason: exit status 101"
                ]);
            }
        }
    }
    event.to_string()
}

async fn run(h: &Harness, bodies: &[String]) -> Vec<String> {
    handle_batch(&h.deps, &sqs(bodies), None)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

fn notifications(h: &Harness) -> Vec<(NotificationKind, String)> {
    h.notify
        .drain()
        .into_iter()
        .map(|m| {
            let n: Notification = messages::decode(&m.body).unwrap();
            (n.kind, n.thread_key)
        })
        .collect()
}

#[tokio::test]
async fn a_request_starts_one_build_of_that_commit_and_posts_pending() {
    let h = harness().await;
    github_accepts(&h).await;
    let body = messages::encode(&push("d-1", SHA_A, "master"));
    assert!(run(&h, std::slice::from_ref(&body)).await.is_empty());

    let started = h.builds.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].project, "pax-user");
    assert_eq!(started[0].source_version, SHA_A);
    assert_eq!(started[0].idempotency_token, "d-1");
    let vars: BTreeMap<_, _> = started[0].environment.iter().cloned().collect();
    assert_eq!(vars["SHIPLINE_REPO"], "pax-app/User");
    assert_eq!(vars["SHIPLINE_SHA"], SHA_A);
    assert_eq!(vars["SHIPLINE_BRANCH"], "master");
    assert_eq!(vars["SHIPLINE_DELIVERY_ID"], "d-1");

    assert_eq!(
        statuses(&h).await,
        vec![(
            "aaaaaaa".into(),
            "pending".into(),
            "Building on CodeBuild (pax-user)".into()
        )]
    );
    let target =
        serde_json::from_slice::<Value>(&h.github.received_requests().await.unwrap()[0].body)
            .unwrap()["target_url"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(
        target.starts_with(
            "https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/projects/pax-user/build/"
        ),
        "{target}"
    );
    assert_eq!(
        notifications(&h),
        vec![(
            NotificationKind::BuildStarted,
            format!("build:pax-app/User@{SHA_A}")
        )]
    );

    // The same message again (SQS redelivers at least once): no second build, no second status.
    assert!(run(&h, &[body]).await.is_empty());
    assert_eq!(h.builds.started.lock().unwrap().len(), 1);
    assert_eq!(statuses(&h).await.len(), 1);
}

#[tokio::test]
async fn a_newer_push_stops_the_older_build_and_marks_it_superseded() {
    let h = harness().await;
    github_accepts(&h).await;
    run(&h, &[messages::encode(&push("d-1", SHA_A, "master"))]).await;
    run(&h, &[messages::encode(&push("d-2", SHA_B, "master"))]).await;

    assert_eq!(
        h.builds.stopped.lock().unwrap().clone(),
        vec!["pax-user:build-1".to_string()]
    );
    assert_eq!(
        statuses(&h).await,
        vec![
            (
                "aaaaaaa".into(),
                "pending".into(),
                "Building on CodeBuild (pax-user)".into()
            ),
            (
                "aaaaaaa".into(),
                "error".into(),
                "Superseded by bbbbbbb".into()
            ),
            (
                "bbbbbbb".into(),
                "pending".into(),
                "Building on CodeBuild (pax-user)".into()
            ),
        ]
    );
    let kinds: Vec<_> = notifications(&h).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::BuildStarted,
            NotificationKind::BuildSuperseded,
            NotificationKind::BuildStarted
        ]
    );
    // The STOPPED event of the superseded build changes nothing more.
    assert!(
        run(&h, &[state_change("pax-user:build-1", "STOPPED")])
            .await
            .is_empty()
    );
    assert_eq!(statuses(&h).await.len(), 3);
    // A push to another branch supersedes nothing.
    run(&h, &[messages::encode(&push("d-3", SHA_A, "devel"))]).await;
    assert_eq!(h.builds.stopped.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_green_master_build_posts_success_and_requests_one_deploy_with_the_image() {
    let h = harness().await;
    github_accepts(&h).await;
    run(&h, &[messages::encode(&push("d-1", SHA_A, "master"))]).await;
    let mut done = info("pax-user:build-1", BuildStatus::Succeeded);
    done.exported = BTreeMap::from([
        ("SHIPLINE_IMAGE_WEB".to_string(), "sha256:web".to_string()),
        (
            "SHIPLINE_IMAGE_WORKER".to_string(),
            "sha256:worker".to_string(),
        ),
    ]);
    h.builds.known.lock().unwrap().insert(done.id.clone(), done);
    h.clock.advance(Duration::from_secs(192));

    let events = [
        state_change("pax-user:build-1", "IN_PROGRESS"),
        state_change("pax-user:build-1", "SUCCEEDED"),
        // Late and out of order: changes nothing.
        state_change("pax-user:build-1", "IN_PROGRESS"),
        state_change("pax-user:build-1", "SUCCEEDED"),
    ];
    assert!(run(&h, &events).await.is_empty());

    let statuses = statuses(&h).await;
    assert_eq!(statuses.len(), 2);
    assert_eq!(
        statuses[1],
        (
            "aaaaaaa".into(),
            "success".into(),
            "Build succeeded in 3m 12s".into()
        )
    );
    let deploys = h.deploys.drain();
    assert_eq!(deploys.len(), 1);
    assert_eq!(deploys[0].group_id.as_deref(), Some("heroku:pax-user"));
    let request: DeployRequest = messages::decode(&deploys[0].body).unwrap();
    assert_eq!(request.sha, SHA_A);
    assert_eq!(request.target, "heroku:pax-user");
    assert_eq!(request.artifacts["SHIPLINE_IMAGE_WEB"], "sha256:web");
    assert_eq!(
        request.log_url.as_deref(),
        Some(
            "https://console.aws.amazon.com/cloudwatch/home?region=us-west-2#logEvent:group=/aws/codebuild/my-sample-project;stream=8745a7a9-c340-456a-9166-edf953571bEX"
        )
    );
    let kinds: Vec<_> = notifications(&h).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::BuildStarted,
            NotificationKind::BuildSucceeded
        ]
    );
}

#[tokio::test]
async fn failed_builds_and_pull_requests_never_deploy() {
    let h = harness().await;
    github_accepts(&h).await;
    run(&h, &[messages::encode(&push("d-1", SHA_A, "master"))]).await;
    run(&h, &[state_change("pax-user:build-1", "FAILED")]).await;
    run(
        &h,
        &[messages::encode(&pull_request(
            "d-2",
            "pax-app/User",
            false,
        ))],
    )
    .await;
    run(&h, &[state_change("pax-user:build-2", "SUCCEEDED")]).await;

    let statuses = statuses(&h).await;
    assert_eq!(
        statuses[1],
        (
            "aaaaaaa".into(),
            "failure".into(),
            "Build failed in BUILD: COMMAND_EXECUTION_ERROR: Error while executing command: cargo test. Reason: exit status 101".into()
        )
    );
    assert_eq!(statuses[3].1, "success");
    assert!(
        h.deploys.is_empty(),
        "neither a failed build nor a pull request deploys"
    );
}

#[tokio::test]
async fn each_end_state_gets_its_own_status() {
    for (status, state, description) in [
        ("FAULT", "error", "CodeBuild fault after 0s"),
        ("TIMED_OUT", "failure", "Build timed out after 60 min"),
        ("STOPPED", "error", "Build stopped after 0s"),
    ] {
        let h = harness().await;
        github_accepts(&h).await;
        run(&h, &[messages::encode(&push("d-1", SHA_A, "devel"))]).await;
        run(&h, &[state_change("pax-user:build-1", status)]).await;
        let last = statuses(&h).await.pop().unwrap();
        assert_eq!(
            (last.1.as_str(), last.2.as_str()),
            (state, description),
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_fork_pull_request_is_not_built_unless_allowed_and_then_on_its_own_project() {
    let h = harness().await;
    github_accepts(&h).await;
    run(
        &h,
        &[messages::encode(&pull_request("d-1", "pax-app/User", true))],
    )
    .await;
    assert!(h.builds.started.lock().unwrap().is_empty());
    assert_eq!(
        statuses(&h).await,
        vec![(
            "aaaaaaa".into(),
            "error".into(),
            "Not built: pull requests from forks are not built (build_forks is off)".into()
        )]
    );
    run(
        &h,
        &[messages::encode(&pull_request(
            "d-2",
            "pax-app/Forky",
            true,
        ))],
    )
    .await;
    let started = h.builds.started.lock().unwrap().clone();
    assert_eq!(
        (
            started[0].project.as_str(),
            started[0].source_version.as_str()
        ),
        (
            "forky-untrusted",
            format!("refs/pull/7/head^{{{SHA_A}}}").as_str()
        ),
        "pinned to the commit whose status it reports"
    );
}

#[tokio::test]
async fn a_lost_event_is_finalised_by_the_sweep() {
    let h = harness().await;
    github_accepts(&h).await;
    run(&h, &[messages::encode(&push("d-1", SHA_A, "devel"))]).await;
    run(&h, &[messages::encode(&push("d-2", SHA_B, "feature"))]).await;
    // Build 1 failed, but its event never arrived; build 2 hangs past its timeout.
    let mut failed = info("pax-user:build-1", BuildStatus::Failed);
    failed.phases = vec![build_dispatch::codebuild::Phase {
        kind: "BUILD".into(),
        status: Some("FAILED".into()),
        context: vec!["COMMAND_EXECUTION_ERROR: exit status 1".into()],
    }];
    h.builds
        .known
        .lock()
        .unwrap()
        .insert(failed.id.clone(), failed);

    let report = sweep(&h.deps).await;
    assert_eq!(
        (report.checked, report.finalised, report.still_running),
        (2, 1, 1)
    );
    h.clock.advance(Duration::from_secs(76 * 60));
    let report = sweep(&h.deps).await;
    assert_eq!((report.checked, report.lost), (1, 1));
    assert_eq!(sweep(&h.deps).await.checked, 0, "nothing left running");

    let statuses = statuses(&h).await;
    assert_eq!(
        statuses[2],
        (
            "aaaaaaa".into(),
            "failure".into(),
            "Build failed in BUILD: COMMAND_EXECUTION_ERROR: exit status 1".into()
        )
    );
    assert_eq!(statuses[3].0, "bbbbbbb");
    assert_eq!(statuses[3].1, "error");
    assert!(
        statuses[3]
            .2
            .contains("no result from CodeBuild after 76 min"),
        "{}",
        statuses[3].2
    );
    assert_eq!(
        h.builds.stopped.lock().unwrap().clone(),
        vec!["pax-user:build-2".to_string()]
    );
}

#[tokio::test]
async fn github_failing_with_500_then_succeeding_ends_with_the_right_status() {
    let h = harness().await;
    github_fails_once_then_accepts(&h).await;
    let body = messages::encode(&push("d-1", SHA_A, "master"));
    assert_eq!(
        run(&h, std::slice::from_ref(&body)).await,
        vec!["m-0"],
        "retried later"
    );
    assert_eq!(run(&h, &[body]).await, Vec::<String>::new());
    assert_eq!(
        h.builds.started.lock().unwrap().len(),
        1,
        "the retry did not start a second build"
    );
    let statuses = statuses(&h).await;
    assert_eq!(statuses.iter().filter(|s| s.1 == "pending").count(), 2);
}

#[tokio::test]
async fn a_build_that_finishes_before_the_retry_of_its_pending_status_keeps_its_final_status() {
    // GitHub fails the pending status; the build succeeds before the request's retry.
    let h = harness().await;
    github_fails_once_then_accepts(&h).await;
    let body = messages::encode(&push("d-1", SHA_A, "feature"));
    assert_eq!(run(&h, std::slice::from_ref(&body)).await, vec!["m-0"]);
    assert_eq!(
        run(&h, &[state_change("pax-user:build-1", "SUCCEEDED")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        run(&h, std::slice::from_ref(&body)).await,
        Vec::<String>::new()
    );
    let states: Vec<String> = statuses(&h).await.into_iter().map(|s| s.1).collect();
    // The first pending is the one GitHub failed; none follows the final status.
    assert_eq!(
        states,
        vec!["pending", "success"],
        "no pending after the final status"
    );
    // And the request is settled: a further copy does nothing.
    assert_eq!(run(&h, &[body]).await, Vec::<String>::new());
    assert_eq!(statuses(&h).await.len(), 2);
}

#[tokio::test]
async fn a_result_told_late_by_a_retry_keeps_the_time_it_was_recorded() {
    // The success status fails once; the retry comes ten minutes later. The chat must still
    // date the result when the build ended, or it would overtake the deploy's story.
    let h = harness().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"state": "success"})))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&h.github)
        .await;
    github_accepts(&h).await;
    run(&h, &[messages::encode(&push("d-1", SHA_A, "master"))]).await;
    h.clock.advance(Duration::from_secs(192));
    let ended = state_change("pax-user:build-1", "SUCCEEDED");
    assert_eq!(run(&h, std::slice::from_ref(&ended)).await, vec!["m-0"]);
    h.clock.advance(Duration::from_secs(600));
    assert_eq!(run(&h, &[ended]).await, Vec::<String>::new());

    let succeeded: Vec<String> = h
        .notify
        .drain()
        .into_iter()
        .map(|m| messages::decode::<Notification>(&m.body).unwrap())
        .filter(|n| n.kind == NotificationKind::BuildSucceeded)
        .map(|n| n.at)
        .collect();
    assert_eq!(
        succeeded,
        vec!["2026-11-26T10:03:12Z"],
        "told once, dated when it ended"
    );
    let states: Vec<String> = statuses(&h).await.into_iter().map(|s| s.1).collect();
    assert_eq!(states, vec!["pending", "success", "success"]);
    assert_eq!(
        h.deploys.drain().len(),
        1,
        "one deploy, however often it is told"
    );
}

#[tokio::test]
async fn a_rate_limit_delays_that_message_only() {
    let h = harness().await;
    Mock::given(method("POST"))
        .and(path_regex(format!("/statuses/{SHA_A}$")))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&h.github)
        .await;
    github_accepts(&h).await;
    let mut other = push("d-2", SHA_B, "devel");
    other.trigger = match other.trigger {
        Trigger::Push(mut p) => {
            p.branch = "devel".into();
            Trigger::Push(p)
        }
        t => t,
    };
    let failed = run(
        &h,
        &[
            messages::encode(&push("d-1", SHA_A, "master")),
            messages::encode(&other),
        ],
    )
    .await;
    assert_eq!(failed, vec!["m-0"]);
}

#[tokio::test]
async fn a_422_is_reported_and_not_retried() {
    let h = harness().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({"message": "Validation Failed"})),
        )
        .mount(&h.github)
        .await;
    let failed = run(&h, &[messages::encode(&push("d-1", SHA_A, "master"))]).await;
    assert!(failed.is_empty(), "a permanent refusal is not retried");
    let kinds: Vec<_> = notifications(&h).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        vec![NotificationKind::OpsAlarm, NotificationKind::BuildStarted]
    );
}

#[tokio::test]
async fn an_unknown_project_is_reported_not_looped() {
    let h = harness().await;
    github_accepts(&h).await;
    *h.builds.refuse_start.lock().unwrap() = true;
    assert!(
        run(&h, &[messages::encode(&push("d-1", SHA_A, "master"))])
            .await
            .is_empty()
    );
    let last = statuses(&h).await.pop().unwrap();
    assert_eq!(last.1, "error");
    assert!(
        last.2.starts_with("CodeBuild refused to build pax-user"),
        "{}",
        last.2
    );
    let kinds: Vec<_> = notifications(&h).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, vec![NotificationKind::BuildSkipped]);
}

#[tokio::test]
async fn only_the_malformed_or_unknown_version_message_fails() {
    let h = harness().await;
    github_accepts(&h).await;
    let mut future: Value =
        serde_json::from_str(&messages::encode(&push("d-9", SHA_B, "devel"))).unwrap();
    future["v"] = json!(2);
    let failed = run(
        &h,
        &[
            "{not json".to_string(),
            messages::encode(&push("d-1", SHA_A, "master")),
            future.to_string(),
        ],
    )
    .await;
    assert_eq!(failed, vec!["m-0", "m-2"]);
    assert_eq!(h.builds.started.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_corrupt_running_builds_index_is_an_error_and_is_never_overwritten() {
    let h = harness().await;
    github_accepts(&h).await;
    let garbage = json!({"ids": "pax-user:build-0"});
    h.deps
        .state
        .put(
            "builds:running",
            garbage.clone(),
            Precondition::None,
            None,
            0,
        )
        .await
        .unwrap();

    let report = sweep(&h.deps).await;
    assert_eq!(report.checked, 0);
    assert!(
        report.errors.iter().any(|e| e.contains("builds:running")),
        "{:?}",
        report.errors
    );
    let failed = run(&h, &[messages::encode(&push("d-1", SHA_A, "master"))]).await;
    assert_eq!(
        failed,
        vec!["m-0"],
        "a build the sweep cannot see is not acknowledged"
    );
    let stored = h
        .deps
        .state
        .get("builds:running", h.deps.clock.unix())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value, garbage, "left for a person to look at");
}

const SHA_C: &str = "ccccccc3333333333333333333333333333333333";

#[tokio::test]
async fn a_github_call_that_hangs_costs_only_its_message_and_nothing_runs_twice() {
    // As in production: GitHub hangs 25 s, the HTTP client gives up after `CALL_TIMEOUT`
    // (10 s, `Bootstrap::http_client`), the invocation has 30 s (build-dispatch's timeout in
    // template.yaml). The hung call must cost its message, and nothing else.
    let hang = Duration::from_secs(25);
    let client_timeout = shared::http::CALL_TIMEOUT;
    let mut h = harness().await;
    h.deps.github = Arc::new(GitHubClient::new(
        reqwest::Client::builder()
            .timeout(client_timeout)
            .build()
            .unwrap(),
        h.github.uri(),
        Auth::Token(SecretString::new("ghp_test")),
    ));
    let dead_letters = Arc::new(MemoryQueue::fifo());
    h.deps.handoff.dead_letters = Some(dead_letters.clone());
    Mock::given(method("POST"))
        .and(path_regex(format!("/statuses/{SHA_A}$")))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": 1}))
                .set_delay(hang),
        )
        .up_to_n_times(1)
        .mount(&h.github)
        .await;
    github_accepts(&h).await;
    let bodies = [
        messages::encode(&push("d-1", SHA_A, "master")),
        messages::encode(&push("d-2", SHA_B, "devel")),
        messages::encode(&push("d-3", SHA_C, "feature")),
    ];

    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(30);
    let response = handle_batch(&h.deps, &sqs(&bodies), Some(deadline)).await;
    assert!(std::time::Instant::now() < deadline, "answered in time");
    assert!(started.elapsed() < hang, "did not wait for the hung call");
    let failed: Vec<_> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed, vec!["m-0"], "only the hung message comes back");

    // SQS redelivers the failed one alone; the others were deleted.
    assert!(run(&h, &bodies[..1]).await.is_empty());
    assert_eq!(h.builds.started.lock().unwrap().len(), 3, "one build each");
    let mut posted: Vec<_> = statuses(&h)
        .await
        .into_iter()
        .map(|(sha, state, _)| (sha, state))
        .collect();
    posted.sort();
    let pending = |sha: &str| (sha[..7].to_string(), "pending".to_string());
    assert_eq!(
        posted,
        vec![
            pending(SHA_A),
            pending(SHA_A),
            pending(SHA_B),
            pending(SHA_C)
        ],
        "the abandoned call and its one retry for the hung commit; one each for the others"
    );
    let started_kinds: Vec<_> = notifications(&h).into_iter().map(|(k, _)| k).collect();
    assert_eq!(started_kinds, vec![NotificationKind::BuildStarted; 3]);
    assert!(dead_letters.is_empty(), "nothing lost");
}

// build-dispatch reads two queues: builds.fifo, whose DLQ is FIFO, and build-events, a standard
// queue whose DLQ is standard. A message that can never succeed goes to its own queue's DLQ.
#[tokio::test]
async fn a_hopeless_message_goes_to_the_dead_letter_queue_of_the_queue_it_came_from() {
    let mut h = harness().await;
    let (fifo_dlq, events_dlq) = (
        Arc::new(MemoryQueue::fifo()),
        Arc::new(MemoryQueue::standard()),
    );
    h.deps.handoff.dead_letters = Some(fifo_dlq.clone());
    h.deps.event_dead_letters = Some(events_dlq.clone());
    let broken_event = r#"{"source": "aws.codebuild", "detail-type": 7}"#;
    let from_events = shared::batch::sqs_event(
        "arn:aws:sqs:us-east-1:123456789012:build-events",
        &[(broken_event, None)],
    );
    let failed = handle_batch(&h.deps, &from_events, None).await;
    assert!(
        failed.batch_item_failures.is_empty(),
        "dead-lettered, so deleted"
    );
    let dead = events_dlq.drain();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("malformed CodeBuild event"),
        "{:?}",
        dead[0].reason
    );
    assert!(fifo_dlq.is_empty());

    let failed = run(&h, &["not json".to_string()]).await;
    assert!(failed.is_empty());
    let dead = fifo_dlq.drain();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].group_id.as_deref(), Some("g-0"));
    assert!(events_dlq.is_empty());
}
