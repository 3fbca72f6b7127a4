//! The sweep as the schedule calls it, on in-memory state and queues and a GitHub that keeps
//! deliveries as GitHub does: every attempt has its own id, a redelivery is a new attempt with
//! a larger id and the same GUID (`redelivery: true`), listed newest first and paged with a
//! cursor ("List deliveries for a repository webhook"), and delivered some time after the
//! redelivery was asked for (202 Accepted, "Redeliver a delivery for a repository webhook").

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use delivery_recovery::{Deliveries, Deps, MAX_REDELIVERIES, Report, sweep};
use serde_json::Value;
use shared::adapters::memory::{FixedClock, MemoryQueue, MemoryStateStore};
use shared::config::Config;
use shared::github::deliveries::{
    DeliveredRequest, DeliveryAttempt, DeliveryDetail, DeliveryPage, Hook, HookConfig, HookScope,
};
use shared::messages::{self, BuildRequest, Notification, NotificationKind, Trigger};
use shared::ports::{
    Clock, GitHubError, OutgoingMessage, Precondition, Queue, QueueError, StateStore,
};
use shared::records::StateKey;

const PUSH: &[u8] = include_bytes!("../../webhook-intake/testdata/github-push.json");
const PR_OPENED: &[u8] =
    include_bytes!("../../webhook-intake/testdata/github-pull_request-opened.json");
const HELLO: &str = "Codertocat/Hello-World";
const OTHER: &str = "Codertocat/Other";
const PUSH_SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const STACK_URL: &str = "https://abc123.execute-api.eu-west-1.amazonaws.com/github";
const CONFIG: &str = r#"
channels:
  team: { console: {} }
defaults:
  notify: [team]
repos:
  Codertocat/Hello-World:
    codebuild_project: hello
  Codertocat/Other:
    codebuild_project: other
"#;

/// One attempt GitHub keeps, with the payload it sent.
struct Kept {
    scope: HookScope,
    attempt: DeliveryAttempt,
    payload: Value,
}

/// GitHub's side of webhooks, as its REST reference describes it.
struct FakeGitHub {
    app: bool,
    clock: Arc<FixedClock>,
    /// Each repo's hooks, or the status GitHub refuses the listing with.
    hooks: Mutex<BTreeMap<String, Result<Vec<Hook>, u16>>>,
    kept: Mutex<Vec<Kept>>,
    next_id: Mutex<u64>,
    /// Redeliveries asked for and not delivered yet.
    asked: Mutex<Vec<(HookScope, u64)>>,
    /// Every redelivery asked for (accepted with 202).
    redelivered: Mutex<Vec<(HookScope, u64)>>,
    /// What the receiver answers the next redeliveries; 202 when none is left.
    answers: Mutex<VecDeque<u16>>,
    /// Redeliver calls to fail with a 502 before one is accepted.
    refuse_redeliver: Mutex<u32>,
    /// Hook listings to fail with a 502.
    fail_hooks: Mutex<u32>,
    /// Redeliver calls are refused with 403 (a token without "Webhooks" write).
    forbid_redeliver: Mutex<bool>,
    /// Scopes whose deliveries were listed, in order.
    listed: Mutex<Vec<HookScope>>,
    /// The payloads read through "Get a delivery".
    details_read: Mutex<Vec<u64>>,
}

/// Attempts per page: small, so that paging is exercised.
const PAGE: usize = 2;

impl FakeGitHub {
    fn new(clock: Arc<FixedClock>, app: bool) -> Self {
        Self {
            app,
            clock,
            hooks: Mutex::default(),
            kept: Mutex::default(),
            next_id: Mutex::new(1000),
            asked: Mutex::default(),
            redelivered: Mutex::default(),
            answers: Mutex::default(),
            refuse_redeliver: Mutex::new(0),
            fail_hooks: Mutex::new(0),
            forbid_redeliver: Mutex::new(false),
            listed: Mutex::default(),
            details_read: Mutex::default(),
        }
    }

    fn hook(&self, repo: &str, id: u64, url: &str) {
        let hook = Hook {
            id,
            active: true,
            events: vec!["push".into(), "pull_request".into()],
            config: HookConfig {
                url: Some(url.into()),
                ..HookConfig::default()
            },
        };
        let mut hooks = self.hooks.lock().unwrap();
        match hooks.entry(repo.to_string()).or_insert(Ok(vec![])) {
            Ok(list) => list.push(hook),
            Err(_) => panic!("{repo}'s hooks are refused"),
        }
    }

    fn refuse_hooks(&self, repo: &str, status: u16) {
        self.hooks.lock().unwrap().insert(repo.into(), Err(status));
    }

    /// GitHub delivers an event; the receiver answered `status_code`. Returns the attempt id.
    fn delivers(&self, scope: &HookScope, guid: &str, event: &str, body: &[u8], code: u16) -> u64 {
        let payload = serde_json::from_slice(body).unwrap();
        self.keep(scope, guid, event, payload, code, false)
    }

    fn keep(
        &self,
        scope: &HookScope,
        guid: &str,
        event: &str,
        payload: Value,
        status_code: u16,
        redelivery: bool,
    ) -> u64 {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            *next
        };
        let status = match status_code {
            200..=299 => "OK".to_string(),
            0 => "timed out".to_string(),
            code => format!("Invalid HTTP Response: {code}"),
        };
        self.kept.lock().unwrap().push(Kept {
            scope: scope.clone(),
            attempt: DeliveryAttempt {
                id,
                guid: guid.into(),
                delivered_at: self.clock.rfc3339(),
                redelivery,
                status,
                status_code,
                event: event.into(),
                action: None,
            },
            payload,
        });
        id
    }

    /// GitHub delivers the redeliveries asked for, each answered by the receiver as scripted.
    fn redeliveries_arrive(&self) {
        let asked: Vec<_> = self.asked.lock().unwrap().drain(..).collect();
        for (scope, id) in asked {
            let (guid, event, payload) = {
                let kept = self.kept.lock().unwrap();
                let k = kept.iter().find(|k| k.attempt.id == id).unwrap();
                (
                    k.attempt.guid.clone(),
                    k.attempt.event.clone(),
                    k.payload.clone(),
                )
            };
            let code = self.answers.lock().unwrap().pop_front().unwrap_or(202);
            self.keep(&scope, &guid, &event, payload, code, true);
        }
    }

    fn answer_redeliveries_with(&self, codes: &[u16]) {
        self.answers.lock().unwrap().extend(codes);
    }

    fn redelivered(&self) -> Vec<(HookScope, u64)> {
        self.redelivered.lock().unwrap().clone()
    }

    fn listed(&self) -> Vec<HookScope> {
        self.listed.lock().unwrap().clone()
    }
}

fn take(counter: &Mutex<u32>) -> bool {
    let mut n = counter.lock().unwrap();
    let hit = *n > 0;
    *n = n.saturating_sub(1);
    hit
}

fn refused(status: u16) -> GitHubError {
    GitHubError::Rejected {
        status,
        message: "Resource not accessible by personal access token".into(),
    }
}

#[async_trait]
impl Deliveries for FakeGitHub {
    fn is_app(&self) -> bool {
        self.app
    }

    async fn hooks(&self, repo: &str) -> Result<Vec<Hook>, GitHubError> {
        if take(&self.fail_hooks) {
            return Err(GitHubError::Unavailable("502: Bad Gateway".into()));
        }
        match self.hooks.lock().unwrap().get(repo) {
            Some(Ok(hooks)) => Ok(hooks.clone()),
            Some(Err(status)) => Err(refused(*status)),
            None => Ok(vec![]),
        }
    }

    async fn page(
        &self,
        scope: &HookScope,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, GitHubError> {
        if self.app != (*scope == HookScope::App) {
            return Err(refused(404));
        }
        self.listed.lock().unwrap().push(scope.clone());
        let mut attempts: Vec<DeliveryAttempt> = self
            .kept
            .lock()
            .unwrap()
            .iter()
            .filter(|k| &k.scope == scope)
            .map(|k| k.attempt.clone())
            .collect();
        attempts.sort_by_key(|a| std::cmp::Reverse(a.id));
        // The cursor names the last attempt of the previous page, as an opaque string.
        let start = match cursor {
            Some(c) => {
                let after: u64 = c.strip_prefix("v1_").unwrap().parse().unwrap();
                attempts
                    .iter()
                    .position(|a| a.id < after)
                    .unwrap_or(attempts.len())
            }
            None => 0,
        };
        let page: Vec<_> = attempts.iter().skip(start).take(PAGE).cloned().collect();
        let next =
            (start + PAGE < attempts.len()).then(|| format!("v1_{}", page.last().unwrap().id));
        Ok(DeliveryPage {
            attempts: page,
            next,
        })
    }

    async fn detail(&self, scope: &HookScope, id: u64) -> Result<DeliveryDetail, GitHubError> {
        self.details_read.lock().unwrap().push(id);
        let kept = self.kept.lock().unwrap();
        let k = kept
            .iter()
            .find(|k| &k.scope == scope && k.attempt.id == id)
            .ok_or_else(|| refused(404))?;
        Ok(DeliveryDetail {
            id,
            guid: k.attempt.guid.clone(),
            event: k.attempt.event.clone(),
            request: DeliveredRequest {
                headers: None,
                payload: Some(k.payload.clone()),
            },
        })
    }

    async fn redeliver(&self, scope: &HookScope, id: u64) -> Result<(), GitHubError> {
        if *self.forbid_redeliver.lock().unwrap() {
            return Err(refused(403));
        }
        if take(&self.refuse_redeliver) {
            return Err(GitHubError::Unavailable("502: Bad Gateway".into()));
        }
        if !self
            .kept
            .lock()
            .unwrap()
            .iter()
            .any(|k| &k.scope == scope && k.attempt.id == id)
        {
            return Err(refused(404));
        }
        self.asked.lock().unwrap().push((scope.clone(), id));
        self.redelivered.lock().unwrap().push((scope.clone(), id));
        Ok(())
    }
}

/// A queue that remembers every message sent to it, before the FIFO deduplication an SQS
/// queue would apply: a duplicate send is visible here.
#[derive(Default)]
struct SentTo {
    sent: Mutex<Vec<OutgoingMessage>>,
    queue: MemoryQueue,
}

#[async_trait]
impl Queue for SentTo {
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        self.queue.send(message.clone()).await?;
        self.sent.lock().unwrap().push(message);
        Ok(())
    }
}

impl SentTo {
    fn fifo() -> Self {
        Self {
            sent: Mutex::default(),
            queue: MemoryQueue::fifo(),
        }
    }

    fn take(&self) -> Vec<OutgoingMessage> {
        self.sent.lock().unwrap().drain(..).collect()
    }
}

struct Harness {
    deps: Deps,
    github: Arc<FakeGitHub>,
    state: Arc<MemoryStateStore>,
    builds: Arc<SentTo>,
    notify: Arc<MemoryQueue>,
    clock: Arc<FixedClock>,
}

fn harness_with(app: bool) -> Harness {
    let clock = Arc::new(FixedClock::at(
        time::macros::datetime!(2026-11-29 10:00 UTC),
    ));
    let github = Arc::new(FakeGitHub::new(clock.clone(), app));
    let state = Arc::new(MemoryStateStore::new());
    let builds = Arc::new(SentTo::fifo());
    let notify = Arc::new(MemoryQueue::standard());
    let deps = Deps {
        config: Arc::new(Config::from_yaml(CONFIG).unwrap()),
        github: github.clone(),
        state: state.clone(),
        builds: builds.clone(),
        notify: notify.clone(),
        clock: clock.clone(),
        webhook_url: STACK_URL.into(),
    };
    Harness {
        deps,
        github,
        state,
        builds,
        notify,
        clock,
    }
}

/// A token-auth stack whose Hello-World hook (id 7) points at it.
fn harness() -> Harness {
    let h = harness_with(false);
    h.github.hook(HELLO, 7, STACK_URL);
    h
}

fn hello_hook() -> HookScope {
    HookScope::Repo {
        repo: HELLO.into(),
        hook_id: 7,
    }
}

impl Harness {
    /// The schedule ticks five minutes after the last sweep.
    async fn sweep(&self) -> Report {
        self.clock.advance(Duration::from_secs(300));
        sweep(&self.deps).await
    }

    /// The build requests sent to `builds.fifo` since the last look, checked for the FIFO
    /// group and deduplication id SQS needs.
    fn build_requests(&self) -> Vec<BuildRequest> {
        self.builds
            .take()
            .into_iter()
            .map(|m| {
                let request: BuildRequest = messages::decode(&m.body).unwrap();
                assert_eq!(m.group_id, Some(request.message_group_id()));
                assert_eq!(m.dedup_id, Some(messages::fifo_id(&request.delivery_id)));
                request
            })
            .collect()
    }

    fn notices(&self) -> Vec<Notification> {
        self.notify
            .drain()
            .iter()
            .map(|m| messages::decode(&m.body).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn a_failed_push_intake_never_accepted_is_redelivered_once_and_a_second_sweep_does_nothing() {
    let h = harness();
    let first = h.github.delivers(&hello_hook(), "g-1", "push", PUSH, 500);

    let report = h.sweep().await;
    assert_eq!((report.failed, report.redelivered), (1, 1), "{report:?}");
    assert_eq!(h.github.redelivered(), vec![(hello_hook(), first)]);

    // Before GitHub gets round to it, and after intake accepted it.
    let report = h.sweep().await;
    assert_eq!(report.redelivered, 0, "{report:?}");
    h.github.redeliveries_arrive();
    let report = h.sweep().await;
    assert_eq!((report.failed, report.redelivered), (0, 0), "{report:?}");
    assert_eq!(h.github.redelivered().len(), 1);
    assert!(
        h.build_requests().is_empty(),
        "intake queues it, not the sweep"
    );
    assert!(report.errors.is_empty(), "{report:?}");
}

#[tokio::test]
async fn a_delivery_intake_accepted_is_left_alone() {
    let h = harness();
    // Intake queued it, then its answer was lost (GitHub's 10 s timeout): the attempt failed.
    h.github
        .delivers(&hello_hook(), "g-accepted", "push", PUSH, 0);
    let state: &dyn StateStore = h.state.as_ref();
    state
        .write(
            StateKey::Delivery("g-accepted"),
            &serde_json::json!({"repo": HELLO, "sha": PUSH_SHA, "queued_at": 0}),
            Precondition::Absent,
            None,
            0,
        )
        .await
        .unwrap();

    for _ in 0..2 {
        let report = h.sweep().await;
        assert_eq!(
            report.redelivered + report.queued_from_payload,
            0,
            "{report:?}"
        );
    }
    assert!(h.github.redelivered().is_empty());
    assert!(h.build_requests().is_empty());
}

#[tokio::test]
async fn a_delivery_whose_redeliveries_fail_is_redelivered_up_to_the_limit_then_queued_from_its_payload()
 {
    let h = harness();
    h.github
        .delivers(&hello_hook(), "g-stubborn", "push", PUSH, 500);
    h.github
        .answer_redeliveries_with(&vec![500; MAX_REDELIVERIES as usize]);

    for n in 1..=MAX_REDELIVERIES {
        let report = h.sweep().await;
        assert_eq!(report.redelivered, 1, "sweep {n}: {report:?}");
        h.github.redeliveries_arrive();
    }
    assert_eq!(h.github.redelivered().len(), MAX_REDELIVERIES as usize);
    // Each redelivery is of the newest failed attempt.
    let ids: Vec<u64> = h.github.redelivered().iter().map(|(_, id)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let report = h.sweep().await;
    assert_eq!(
        (report.redelivered, report.queued_from_payload),
        (0, 1),
        "{report:?}"
    );
    let requests = h.build_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (
            requests[0].repo.as_str(),
            requests[0].sha.as_str(),
            requests[0].delivery_id.as_str()
        ),
        (HELLO, PUSH_SHA, "g-stubborn")
    );

    let report = h.sweep().await;
    assert_eq!(
        report,
        Report {
            hooks: 1,
            failed: 1,
            ..Report::default()
        }
    );
    assert!(h.build_requests().is_empty());
    assert_eq!(h.github.redelivered().len(), MAX_REDELIVERIES as usize);
}

#[tokio::test]
async fn a_delivery_too_large_for_lambda_is_read_through_the_deliveries_api_and_queued_once() {
    let h = harness();
    let attempt = h
        .github
        .delivers(&hello_hook(), "g-huge", "push", PUSH, 413);

    let report = h.sweep().await;
    assert_eq!(
        (report.redelivered, report.queued_from_payload),
        (0, 1),
        "{report:?}"
    );
    assert_eq!(*h.github.details_read.lock().unwrap(), vec![attempt]);
    let requests = h.build_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.repo, HELLO);
    assert_eq!(request.sha, PUSH_SHA);
    assert_eq!(request.delivery_id, "g-huge");
    assert!(matches!(&request.trigger, Trigger::Push(p) if p.branch == "master"));
    assert!(
        h.github.redelivered().is_empty(),
        "a redelivery would be refused the same way"
    );

    let report = h.sweep().await;
    assert_eq!(report.queued_from_payload, 0, "{report:?}");
    assert!(h.build_requests().is_empty());
    assert!(report.errors.is_empty(), "{report:?}");
}

#[tokio::test]
async fn failed_deliveries_of_events_other_than_push_and_pull_request_are_ignored() {
    let h = harness();
    h.github.delivers(
        &hello_hook(),
        "g-star",
        "star",
        b"{\"action\":\"created\"}",
        500,
    );
    h.github.delivers(
        &hello_hook(),
        "g-ping",
        "ping",
        b"{\"zen\":\"Keep it simple.\"}",
        500,
    );
    let pr = h
        .github
        .delivers(&hello_hook(), "g-pr", "pull_request", PR_OPENED, 502);

    let report = h.sweep().await;
    assert_eq!((report.failed, report.redelivered), (1, 1), "{report:?}");
    assert_eq!(h.github.redelivered(), vec![(hello_hook(), pr)]);
}

#[tokio::test]
async fn a_hooks_listing_refused_with_403_is_told_once_and_the_other_repos_still_recover() {
    let h = harness_with(false);
    h.github.refuse_hooks(HELLO, 403);
    h.github.hook(OTHER, 9, STACK_URL);
    let other = HookScope::Repo {
        repo: OTHER.into(),
        hook_id: 9,
    };
    let attempt = h.github.delivers(&other, "g-other", "push", PUSH, 500);

    let first = h.sweep().await;
    let second = h.sweep().await;
    assert_eq!(first.redelivered, 1, "{first:?}");
    assert_eq!(h.github.redelivered(), vec![(other, attempt)]);
    assert!(first.errors.iter().any(|e| e.contains(HELLO)), "{first:?}");
    assert!(
        second.errors.iter().any(|e| e.contains(HELLO)),
        "{second:?}"
    );

    let notices = h.notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].kind, NotificationKind::OpsAlarm);
    assert_eq!(notices[0].channels, vec!["team".to_string()]);
    assert_eq!(notices[0].facts.repo.as_deref(), Some(HELLO));
    let reason = notices[0].facts.reason.as_deref().unwrap();
    assert!(reason.contains("admin:repo_hook"), "{reason}");
}

#[tokio::test]
async fn a_hooks_listing_that_fails_for_a_moment_does_not_stop_the_other_repos() {
    let h = harness_with(false);
    h.github.hook(HELLO, 7, STACK_URL);
    h.github.hook(OTHER, 9, STACK_URL);
    let other = HookScope::Repo {
        repo: OTHER.into(),
        hook_id: 9,
    };
    let attempt = h.github.delivers(&other, "g-other", "push", PUSH, 500);
    *h.github.fail_hooks.lock().unwrap() = 1; // Hello-World's listing, read first

    let report = h.sweep().await;
    assert_eq!(h.github.redelivered(), vec![(other, attempt)], "{report:?}");
    assert!(h.notices().is_empty(), "a 502 is not a missing permission");
}

#[tokio::test]
async fn a_redeliver_call_that_fails_gives_the_claim_back_and_the_next_sweep_tries_again() {
    let h = harness();
    let attempt = h.github.delivers(&hello_hook(), "g-1", "push", PUSH, 500);
    *h.github.refuse_redeliver.lock().unwrap() = 1;

    let report = h.sweep().await;
    assert_eq!(report.redelivered, 0);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(h.github.redelivered().is_empty());

    let report = h.sweep().await;
    assert_eq!(report.redelivered, 1, "{report:?}");
    assert_eq!(h.github.redelivered(), vec![(hello_hook(), attempt)]);
}

#[tokio::test]
async fn a_delivery_whose_redelivery_keeps_failing_for_hours_is_still_recovered() {
    let h = harness();
    let attempt = h.github.delivers(&hello_hook(), "g-1", "push", PUSH, 500);
    // GitHub's redelivery endpoint is down for two hours of sweeps.
    *h.github.refuse_redeliver.lock().unwrap() = 24;
    for _ in 0..24 {
        assert_eq!(h.sweep().await.redelivered, 0);
    }

    let report = h.sweep().await;
    assert_eq!(report.redelivered, 1, "{report:?}");
    assert_eq!(h.github.redelivered(), vec![(hello_hook(), attempt)]);
}

#[tokio::test]
async fn a_failed_delivery_pages_back_among_later_ones_is_found() {
    let h = harness();
    let failed = h.github.delivers(&hello_hook(), "g-old", "push", PUSH, 500);
    for n in 0..5 {
        h.clock.advance(Duration::from_secs(20));
        h.github
            .delivers(&hello_hook(), &format!("g-ok-{n}"), "push", PUSH, 202);
    }

    let report = h.sweep().await;
    assert_eq!(
        h.github.redelivered(),
        vec![(hello_hook(), failed)],
        "{report:?}"
    );
    assert!(
        h.github.listed().len() >= 3,
        "the failure was on the third page"
    );
}

#[tokio::test]
async fn only_hooks_that_point_at_this_stack_are_read() {
    let h = harness_with(false);
    h.github
        .hook(HELLO, 5, "https://ci.example.com/hooks/github");
    h.github.hook(HELLO, 7, &format!("{STACK_URL}/"));
    let elsewhere = HookScope::Repo {
        repo: HELLO.into(),
        hook_id: 5,
    };
    h.github
        .delivers(&elsewhere, "g-elsewhere", "push", PUSH, 500);
    let ours = h
        .github
        .delivers(&hello_hook(), "g-ours", "push", PUSH, 500);

    let report = h.sweep().await;
    assert_eq!(report.hooks, 1, "{report:?}");
    assert_eq!(h.github.listed(), vec![hello_hook()]);
    assert_eq!(h.github.redelivered(), vec![(hello_hook(), ours)]);
}

#[tokio::test]
async fn with_app_auth_the_apps_own_hook_is_read() {
    let h = harness_with(true);
    let attempt = h
        .github
        .delivers(&HookScope::App, "g-app", "push", PUSH, 500);

    let report = h.sweep().await;
    assert_eq!((report.hooks, report.redelivered), (1, 1), "{report:?}");
    assert_eq!(h.github.listed(), vec![HookScope::App]);
    assert_eq!(h.github.redelivered(), vec![(HookScope::App, attempt)]);
}

#[tokio::test]
async fn a_redelivery_refused_with_403_is_told_once_and_asked_again_on_each_sweep() {
    let h = harness();
    h.github.delivers(&hello_hook(), "g-1", "push", PUSH, 500);
    // A fine-grained token with "Webhooks" read but not write.
    *h.github.forbid_redeliver.lock().unwrap() = true;

    let first = h.sweep().await;
    let second = h.sweep().await;
    assert_eq!(first.errors.len(), 1, "{first:?}");
    assert_eq!(second.errors.len(), 1, "{second:?}");
    let notices = h.notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].kind, NotificationKind::OpsAlarm);
    assert_eq!(notices[0].facts.repo.as_deref(), Some(HELLO));

    *h.github.forbid_redeliver.lock().unwrap() = false;
    assert_eq!(h.sweep().await.redelivered, 1, "the permission was given");
}
