//! Fault injection: a stream of webhooks (pushes to feature branches and to master, pull
//! requests, redeliveries, Sentry alerts and repeats of them) through the pipeline wired by
//! real queues on moto, while the GitHub, Heroku and Telegram fakes fail a share of their calls
//! with 500, 429 + Retry-After, and answers that come after the client gave up. Then: every
//! expected build, status, deployment, release and chat message happened exactly once, and
//! the one failure that cannot succeed (a chat that refuses the bot) sits in the notification
//! DLQ with its reason.
//!
//! `SHIPLINE_FAULT_WEBHOOKS` sets how many webhooks (100 in the test command;
//! `scripts/fault-injection` runs 1,000 and prints the report), `SHIPLINE_FAULT_RATE` how
//! often calls fail (one in 9, the default, or 16).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{FaultPlan, Faults, Pipeline, REFUSED_CHAT};

const PUSH: &str = include_str!("../../functions/webhook-intake/testdata/github-push.json");
const PR_OPENED: &str =
    include_str!("../../functions/webhook-intake/testdata/github-pull_request-opened.json");
const SENTRY_ISSUE: &str =
    include_str!("../../functions/alert-forwarder/testdata/sentry-issue-created.json");

/// A commit id whose first seven characters (what the chat shows) are unique to `i`.
fn sha(i: usize) -> String {
    format!("{i:07x}{}", "a".repeat(33))
}

fn push(repo: &str, branch: &str, sha: &str) -> Vec<u8> {
    let mut p: Value = serde_json::from_str(PUSH).unwrap();
    p["ref"] = json!(format!("refs/heads/{branch}"));
    p["after"] = json!(sha);
    p["head_commit"]["id"] = json!(sha);
    p["repository"]["full_name"] = json!(repo);
    p["repository"]["name"] = json!(repo.split('/').nth(1).unwrap());
    serde_json::to_vec(&p).unwrap()
}

fn pull_request(repo: &str, number: usize, sha: &str) -> Vec<u8> {
    let mut p: Value = serde_json::from_str(PR_OPENED).unwrap();
    p["number"] = json!(number);
    p["pull_request"]["number"] = json!(number);
    p["pull_request"]["head"]["sha"] = json!(sha);
    p["pull_request"]["head"]["ref"] = json!(format!("change-{number}"));
    for side in ["head", "base"] {
        p["pull_request"][side]["repo"]["full_name"] = json!(repo);
    }
    p["repository"]["full_name"] = json!(repo);
    serde_json::to_vec(&p).unwrap()
}

fn sentry_alert(project: &str, issue: usize) -> Vec<u8> {
    let mut p: Value = serde_json::from_str(SENTRY_ISSUE).unwrap();
    p["data"]["issue"]["id"] = json!(issue.to_string());
    p["data"]["issue"]["title"] = json!(alert_title(issue));
    p["data"]["issue"]["project"]["slug"] = json!(project);
    p["data"]["issue"]["project"]["name"] = json!(project);
    serde_json::to_vec(&p).unwrap()
}

fn alert_title(issue: usize) -> String {
    format!("FaultError-{issue:05}-end")
}

/// How often the fakes fail, by `SHIPLINE_FAULT_RATE`: about one call in nine (the default,
/// far worse than these services on a bad day) or one in sixteen. Rate limits are waits and
/// never count; a message is dead-lettered only after ten real failures (500s, timeouts),
/// which a deploy's seven calls, resumed where they failed, practically never reach.
fn faults() -> Faults {
    let (server_error_every, rate_limit_every, timeout_every) =
        match std::env::var("SHIPLINE_FAULT_RATE").as_deref() {
            Ok("16") => (29, 43, 151),
            Ok("9") | Err(_) => (19, 31, 97),
            Ok(other) => panic!("SHIPLINE_FAULT_RATE is 9 or 16, not {other}"),
        };
    Faults {
        server_error_every,
        rate_limit_every,
        timeout_every,
        scattered: true,
    }
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test (or scripts/fault-injection for 1,000 webhooks)"]
async fn nothing_is_lost_and_nothing_is_duplicated_under_injected_faults() {
    log_warnings_to_stderr();
    let total: usize = std::env::var("SHIPLINE_FAULT_WEBHOOKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let repos: usize = (total / 20).max(2);
    let pipeline = Pipeline::new(
        &config(repos),
        FaultPlan {
            github: faults(),
            heroku: faults(),
            telegram: faults(),
        },
    )
    .await;
    let stream = Stream::of(total, repos);
    for (repo, sha, _) in stream.plan.builds.iter().filter(|b| b.2) {
        pipeline
            .heads
            .lock()
            .unwrap()
            .insert(format!("{repo}@master"), sha.clone());
    }

    let started_at = Instant::now();
    deliver_all(&pipeline, &stream.sent).await;
    pipeline
        .run_until_idle("SUCCEEDED", Duration::from_secs(60 + total as u64))
        .await;
    let elapsed = started_at.elapsed();
    let dead = pipeline.dead_letters().await;
    let unexpected: Vec<_> = dead
        .iter()
        .filter(|(queue, reason, _)| !(queue == "notifications" && reason.contains("gone")))
        .collect();
    assert!(unexpected.is_empty(), "dead letters: {unexpected:#?}");

    let plan = &stream.plan;
    let builds = each_expected_build_started_once(&pipeline, plan);
    let (statuses, pending_skipped) = each_commit_has_its_statuses_once(&pipeline, plan);
    let deployments = each_master_push_is_deployed_and_released_once(&pipeline, plan, repos);
    let (posts, edits) = each_build_and_alert_is_told_once(&pipeline, plan);
    only_the_refused_alerts_are_dead_letters(&dead, plan);

    report(
        total,
        elapsed,
        plan,
        &pipeline,
        &Outcome {
            builds,
            statuses,
            pending_skipped,
            deployments,
            posts,
            edits,
            dead_letters: dead.len(),
        },
    );
}

/// The handlers' logs (warnings by default) go to stderr, for a run that fails.
fn log_warnings_to_stderr() {
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: set before any thread of this test reads the environment.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RUST_LOG", "warn")
        };
    }
    shared::telemetry::init();
}

/// `repos` repos deploying master to Heroku; Sentry projects for the team and for a chat that
/// refuses the bot.
fn config(repos: usize) -> String {
    let mut config = format!(
        "channels:\n  team: {{ telegram: {{ chat_id: -100777 }} }}\n  gone: {{ telegram: {{ chat_id: {REFUSED_CHAT} }} }}\ndefaults:\n  notify: [team]\nsentry:\n  projects:\n    gateway: {{ notify: [team] }}\n    legacy: {{ notify: [gone] }}\nrepos:\n"
    );
    for r in 0..repos {
        config.push_str(&format!(
            "  acme/svc-{r}:\n    codebuild_project: svc-{r}\n    deploy:\n      - branch: master\n        heroku: {{ app: svc-{r} }}\n"
        ));
    }
    config
}

#[derive(Default, Debug)]
struct Plan {
    /// (repo, sha, master?) of every build that should run.
    builds: Vec<(String, String, bool)>,
    /// Alerts that should reach the team, by title.
    alerts: Vec<String>,
    /// Alerts for the project whose chat refuses the bot.
    refused_alerts: usize,
    counts: HashMap<&'static str, usize>,
}

/// One webhook as its sender delivers it.
#[derive(Clone)]
struct Delivery {
    /// GitHub's event name, or `sentry`.
    event: String,
    id: String,
    body: Vec<u8>,
}

/// The webhooks to send, and what they should lead to.
#[derive(Default)]
struct Stream {
    plan: Plan,
    sent: Vec<Delivery>,
    /// The last Sentry issue alerted.
    issue: usize,
}

impl Stream {
    /// One master push per repo, then a mix, `total` webhooks in all.
    fn of(total: usize, repos: usize) -> Self {
        let mut stream = Self::default();
        for r in 0..repos {
            stream.push_to_master(&format!("acme/svc-{r}"));
        }
        while stream.sent.len() < total {
            let i = stream.sent.len();
            let repo = format!("acme/svc-{}", i % repos);
            match i % 20 {
                0..=7 => stream.push_to_a_feature_branch(i, &repo),
                8..=12 => stream.pull_request_opened(i, &repo),
                13 | 14 => stream.redelivery(i),
                15..=17 => stream.sentry_alert(i),
                18 => stream.sentry_alert_repeated(i),
                _ => stream.sentry_alert_to_a_chat_that_refuses_the_bot(i),
            }
        }
        stream
    }

    fn send(&mut self, kind: &'static str, event: &str, id: String, body: Vec<u8>) {
        self.sent.push(Delivery {
            event: event.into(),
            id,
            body,
        });
        *self.plan.counts.entry(kind).or_default() += 1;
    }

    fn push_to_master(&mut self, repo: &str) {
        let sha = sha(self.sent.len());
        self.plan.builds.push((repo.into(), sha.clone(), true));
        let id = format!("d-{}", self.sent.len());
        self.send("push to master", "push", id, push(repo, "master", &sha));
    }

    fn push_to_a_feature_branch(&mut self, i: usize, repo: &str) {
        let sha = sha(i);
        self.plan.builds.push((repo.into(), sha.clone(), false));
        let body = push(repo, &format!("feature-{i}"), &sha);
        self.send("push to a feature branch", "push", format!("d-{i}"), body);
    }

    fn pull_request_opened(&mut self, i: usize, repo: &str) {
        let sha = sha(i);
        self.plan.builds.push((repo.into(), sha.clone(), false));
        let body = pull_request(repo, i, &sha);
        self.send(
            "pull request opened",
            "pull_request",
            format!("d-{i}"),
            body,
        );
    }

    /// GitHub redelivers an earlier delivery: same id, same body.
    fn redelivery(&mut self, i: usize) {
        let Delivery { event, id, body } = self.sent[i / 2].clone();
        self.send("redelivery", &event, id, body);
    }

    fn sentry_alert(&mut self, i: usize) {
        self.issue += 1;
        self.plan.alerts.push(alert_title(self.issue));
        let body = sentry_alert("gateway", self.issue);
        self.send("Sentry alert", "sentry", format!("s-{i}"), body);
    }

    /// The same issue again within the throttle window: no second message.
    fn sentry_alert_repeated(&mut self, i: usize) {
        let body = sentry_alert("gateway", self.issue.max(1));
        if self.issue == 0 {
            self.issue = 1;
            self.plan.alerts.push(alert_title(1));
        }
        self.send("Sentry alert, repeated", "sentry", format!("s-{i}"), body);
    }

    fn sentry_alert_to_a_chat_that_refuses_the_bot(&mut self, i: usize) {
        self.issue += 1;
        self.plan.refused_alerts += 1;
        let body = sentry_alert("legacy", self.issue);
        self.send(
            "Sentry alert to a chat that refuses the bot",
            "sentry",
            format!("s-{i}"),
            body,
        );
    }
}

/// Sends every webhook, each answered 202 or 200, while the consumers run alongside, as
/// Lambda's would.
async fn deliver_all(pipeline: &Pipeline, sent: &[Delivery]) {
    for (n, Delivery { event, id, body }) in sent.iter().enumerate() {
        let status = if event == "sentry" {
            pipeline.sentry_delivers("issue", id, body).await
        } else {
            pipeline.github_delivers(event, id, body).await
        };
        assert!(status == 202 || status == 200, "{event} {id}: {status}");
        if n % 25 == 24 {
            pipeline.pump_once().await;
            pipeline.builds_finish("SUCCEEDED").await;
        }
    }
}

/// Builds: each expected commit started exactly once, and nothing else. How many started.
fn each_expected_build_started_once(pipeline: &Pipeline, plan: &Plan) -> usize {
    let started = pipeline.codebuild.started.lock().unwrap().clone();
    let mut per_sha: HashMap<&str, usize> = HashMap::new();
    for b in &started {
        *per_sha.entry(b.source_version.as_str()).or_default() += 1;
    }
    for (repo, sha, _) in &plan.builds {
        assert_eq!(
            per_sha.get(sha.as_str()),
            Some(&1),
            "builds of {repo} {sha}"
        );
    }
    assert_eq!(started.len(), plan.builds.len(), "builds started");
    started.len()
}

/// Commit statuses: pending then success, once each, per commit. How many statuses, and on
/// how many commits the pending one was skipped.
fn each_commit_has_its_statuses_once(pipeline: &Pipeline, plan: &Plan) -> (usize, usize) {
    let statuses = pipeline.github.calls("POST", "/statuses/");
    let mut per_commit: HashMap<String, Vec<String>> = HashMap::new();
    for c in statuses
        .iter()
        .filter(|c| !c.path.contains("/deployments/"))
    {
        let sha = c.path.rsplit('/').next().unwrap().to_string();
        per_commit
            .entry(sha)
            .or_default()
            .push(c.body["state"].as_str().unwrap().to_string());
    }
    // Pending then success; or only success, when the build finished before GitHub took the
    // pending status (a pending then would land after the result).
    let mut pending_skipped = 0;
    for (repo, sha, _) in &plan.builds {
        let states = per_commit.get(sha).map(Vec::as_slice).unwrap_or_default();
        match states {
            [p, s] if p == "pending" && s == "success" => {}
            [s] if s == "success" => pending_skipped += 1,
            other => panic!("statuses of {repo} {sha}: {other:?}"),
        }
    }
    assert_eq!(per_commit.len(), plan.builds.len());
    (
        per_commit.values().map(Vec::len).sum::<usize>(),
        pending_skipped,
    )
}

/// Deployments and releases: one per master push. How many deployments were created.
fn each_master_push_is_deployed_and_released_once(
    pipeline: &Pipeline,
    plan: &Plan,
    repos: usize,
) -> usize {
    let masters: Vec<&(String, String, bool)> = plan.builds.iter().filter(|b| b.2).collect();
    let deployments = pipeline.github.calls("POST", "/deployments");
    let created: Vec<&support::Call> = deployments
        .iter()
        .filter(|c| c.path.ends_with("/deployments"))
        .collect();
    assert_eq!(created.len(), masters.len(), "deployments created");
    for (repo, sha, _) in &masters {
        assert_eq!(
            created
                .iter()
                .filter(|c| c.body["ref"] == json!(sha))
                .count(),
            1,
            "deployment of {repo} {sha}"
        );
    }
    let deployment_states: Vec<String> = deployments
        .iter()
        .filter(|c| c.path.ends_with("/statuses"))
        .map(|c| c.body["state"].as_str().unwrap().to_string())
        .collect();
    for state in ["in_progress", "success"] {
        assert_eq!(
            deployment_states.iter().filter(|s| *s == state).count(),
            masters.len(),
            "deployment statuses {state}"
        );
    }
    for r in 0..repos {
        assert_eq!(
            pipeline
                .heroku
                .calls("PATCH", &format!("/apps/svc-{r}/formation"))
                .len(),
            1,
            "releases of svc-{r}"
        );
    }
    created.len()
}

/// Chat: one message per build thread and per alert, each build's ending its story. How many
/// messages were posted, and how many edits.
fn each_build_and_alert_is_told_once(pipeline: &Pipeline, plan: &Plan) -> (usize, usize) {
    let posts = pipeline.telegram.calls("POST", "/sendMessage");
    let edits = pipeline.telegram.calls("POST", "/editMessageText");
    let text = |c: &support::Call| c.body["text"].as_str().unwrap_or("").to_string();
    for (repo, sha, master) in &plan.builds {
        // The chat shows the short id as a link's text.
        let short = format!(">{}<", &sha[..7]);
        let mine: Vec<String> = posts
            .iter()
            .map(text)
            .filter(|t| t.contains(&short))
            .collect();
        assert_eq!(mine.len(), 1, "messages for {repo} {short}: {mine:?}");
        let last = posts
            .iter()
            .chain(edits.iter())
            .map(text)
            .rfind(|t| t.contains(&short))
            .unwrap();
        if *master {
            assert!(last.starts_with("🟢 <b>Live</b>"), "{repo} {short}: {last}");
        } else {
            assert!(last.contains("passed"), "{repo} {short}: {last}");
        }
    }
    for title in &plan.alerts {
        assert_eq!(
            posts
                .iter()
                .map(text)
                .filter(|t| t.contains(title.as_str()))
                .count(),
            1,
            "alert {title}"
        );
    }
    assert_eq!(
        posts.len(),
        plan.builds.len() + plan.alerts.len(),
        "chat messages posted"
    );
    (posts.len(), edits.len())
}

/// Dead letters: only what could never succeed, each with its reason.
fn only_the_refused_alerts_are_dead_letters(dead: &[(String, String, String)], plan: &Plan) {
    assert_eq!(dead.len(), plan.refused_alerts, "{dead:?}");
    for (queue, reason, _) in dead {
        assert_eq!(queue, "notifications");
        assert!(
            reason.contains("gone") && reason.contains("chat not found"),
            "{reason}"
        );
    }
}

/// What the pipeline did, as the checks counted it.
struct Outcome {
    builds: usize,
    statuses: usize,
    pending_skipped: usize,
    deployments: usize,
    posts: usize,
    edits: usize,
    dead_letters: usize,
}

/// The report: what was sent, what the fakes injected, and what came of it.
fn report(total: usize, elapsed: Duration, plan: &Plan, pipeline: &Pipeline, outcome: &Outcome) {
    let mut kinds: Vec<_> = plan.counts.iter().collect();
    kinds.sort();
    println!(
        "\nfault injection: {total} webhooks through moto in {:.1} s",
        elapsed.as_secs_f64()
    );
    for (kind, n) in kinds {
        println!("  {n:>5}  {kind}");
    }
    println!("injected faults (500 / 429 / timeout) and refusals:");
    for (name, fake) in [
        ("GitHub", &pipeline.github),
        ("Heroku", &pipeline.heroku),
        ("Telegram", &pipeline.telegram),
    ] {
        let r = fake.record.lock().unwrap();
        println!(
            "  {name:<9} {:>5} ok  {:>4} × 500  {:>4} × 429  {:>4} × timeout  {:>4} refused",
            r.ok.len(),
            r.server_errors,
            r.rate_limited,
            r.timed_out,
            r.refused
        );
    }
    println!("outcome:");
    println!("  {:>5}  builds started, each once", outcome.builds);
    println!(
        "  {:>5}  commit statuses, each once: pending then success ({} commit(s) finished before GitHub took their pending: success only)",
        outcome.statuses, outcome.pending_skipped
    );
    println!(
        "  {:>5}  deployments and Heroku releases, each once",
        outcome.deployments
    );
    println!(
        "  {:>5}  chat messages posted, each once ({} build threads, {} alerts)",
        outcome.posts,
        plan.builds.len(),
        plan.alerts.len()
    );
    println!("  {:>5}  chat message edits", outcome.edits);
    println!(
        "  {:>5}  in dead-letter queues, each with its reason (a chat that refuses the bot)",
        outcome.dead_letters
    );
    println!("  {:>5}  lost, {:>5} duplicated", 0, 0);
}
