//! Cold start and memory, as `scripts/coldstart` reports them: each function's release binary
//! under the local Lambda Runtime API against AWS on moto (the endpoint in
//! `SHIPLINE_TEST_AWS_ENDPOINT`), next to the `hello` binary built with the same profile.
//!
//! For each binary: the time from spawn to its first poll of `invocation/next` (init: config
//! from SSM, secrets from Secrets Manager, clients built, connections opened), and to its
//! first answered event, the median of several cold starts; then its peak resident memory
//! (`VmHWM`) over 1,000 events, and its size on disk.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::aws;
use e2e::runtime_api::{Outcome, RuntimeApi, http_api_event, http_api_get};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{Value, json};
use shared::messages;

const COLD_STARTS: usize = 7;
const EVENTS: usize = 1000;
const WEBHOOK_SECRET: &str = "coldstart webhook secret";
const SENTRY_SECRET: &str = "coldstart sentry secret";
const TELEGRAM_SECRET: &str = "coldstart-telegram-secret";
const OAUTH_SECRET: &str = "coldstart oauth secret";
const PUSH: &str = include_str!("../../../functions/webhook-intake/testdata/github-push.json");
const SENTRY_ISSUE: &str =
    include_str!("../../../functions/alert-forwarder/testdata/sentry-issue-created.json");
const STATE_CHANGE: &str = include_str!(
    "../../../functions/build-dispatch/testdata/codebuild-state-change-succeeded-with-envvars.json"
);

struct Subject {
    name: &'static str,
    env: Vec<(String, String)>,
    /// The i-th event it is given.
    event: Box<dyn Fn(usize) -> Value>,
}

struct Figures {
    name: &'static str,
    first_poll_ms: f64,
    first_answer_ms: f64,
    /// Spawn → first poll with the config and secrets read from files.
    first_poll_files_ms: f64,
    peak_rss_mb: f64,
    size_mb: f64,
    errors: usize,
}

/// What the functions run against: queues, the state table, the config and secrets both in
/// SSM / Secrets Manager and as files, and a Telegram stand-in.
struct Stack {
    table: String,
    builds: String,
    deploys: String,
    notify: String,
    events_arn: String,
    notify_arn: String,
    deploys_arn: String,
    param: String,
    secret_arn: String,
    config_file: String,
    secrets_file: String,
    telegram: String,
    /// Answers every GitHub call with an empty list (no hooks to recover).
    github: String,
}

const CONFIG: &str = "channels:\n  team: { telegram: { chat_id: -100123 } }\ndefaults:\n  notify: [team]\nrepos:\n  Codertocat/Hello-World:\n    codebuild_project: hello\n    deploy:\n      - branch: master\n        heroku: { app: hello-world }\nsentry:\n  projects:\n    front-end: { notify: [team] }\n";

impl Stack {
    async fn create() -> anyhow::Result<Self> {
        let sdk = aws::sdk_config().await;
        let telegram = stand_in(r#"{"ok":true,"result":{"message_id":1}}"#).await?;
        let github = stand_in("[]").await?;
        let table = e2e::unique("state");
        aws::create_state_table(&sdk, &table).await;
        let builds = aws::create_fifo_queue(&sdk, &e2e::unique("builds")).await;
        let deploys = aws::create_fifo_queue(&sdk, &e2e::unique("deploys")).await;
        let notify = aws::create_queue(&sdk, &e2e::unique("notifications")).await;
        let events = aws::create_queue(&sdk, &e2e::unique("events")).await;
        let secrets = json!({
            "github_webhook_secret": WEBHOOK_SECRET, "github_token": "ghp_x",
            "heroku_api_key": "hk", "telegram_bot_token": "1:x",
                        "sentry_client_secret": SENTRY_SECRET,
            "telegram_webhook_secret": TELEGRAM_SECRET,
            "github_oauth_client_id": "Iv1.coldstart", "github_oauth_client_secret": OAUTH_SECRET,
        })
        .to_string();
        let param = format!("/{}/config", e2e::unique("shipline"));
        aws::put_parameter(&sdk, &param, CONFIG).await;
        let secret_arn = aws::create_secret(&sdk, &e2e::unique("secrets"), &secrets).await;
        // The same config and secrets as files: init without the two AWS reads, to tell the
        // functions' own init cost from moto's answers.
        let files = std::env::temp_dir().join(e2e::unique("coldstart"));
        std::fs::create_dir_all(&files)?;
        std::fs::write(files.join("shipline.yaml"), CONFIG)?;
        std::fs::write(files.join("secrets.json"), &secrets)?;
        Ok(Self {
            events_arn: aws::queue_arn(&sdk, &events).await,
            notify_arn: aws::queue_arn(&sdk, &notify).await,
            deploys_arn: aws::queue_arn(&sdk, &deploys).await,
            config_file: files.join("shipline.yaml").display().to_string(),
            secrets_file: files.join("secrets.json").display().to_string(),
            table,
            builds,
            deploys,
            notify,
            param,
            secret_arn,
            telegram,
            github,
        })
    }

    /// The Lambda environment every function gets, plus `extra`.
    fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = aws::process_env();
        for (k, v) in [
            ("SHIPLINE_CONFIG_PARAM", self.param.as_str()),
            ("SHIPLINE_SECRETS_ARN", self.secret_arn.as_str()),
            ("STATE_TABLE", self.table.as_str()),
            ("RUST_LOG", "warn"),
        ]
        .iter()
        .chain(extra)
        {
            env.push((k.to_string(), v.to_string()));
        }
        env
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let stack = Stack::create().await?;
    let mut subjects = vec![Subject {
        name: "hello",
        env: aws::process_env(),
        event: Box::new(|i| json!({ "n": i })),
    }];
    subjects.extend(http_subjects(&stack));
    subjects.extend(queue_subjects(&stack));
    let mut table_rows = Vec::new();
    for subject in &subjects {
        table_rows.push(measure(subject, &stack.config_file, &stack.secrets_file).await?);
    }
    print(&table_rows);
    let moto_ms = moto_answer_ms(&stack.param).await;
    println!(
        "moto answers one call (SSM GetParameter, open connection) in {moto_ms:.1} ms: {:.1}× hello's whole init",
        moto_ms / table_rows[0].first_poll_ms
    );
    Ok(())
}

/// How long moto takes to answer one call on an open connection (median of 21): the floor under
/// every init that waits for an AWS answer here.
async fn moto_answer_ms(param: &str) -> f64 {
    let ssm = aws_sdk_ssm::Client::new(&aws::sdk_config().await);
    let mut times = Vec::new();
    for _ in 0..22 {
        let started = Instant::now();
        ssm.get_parameter()
            .name(param)
            .send()
            .await
            .expect("moto answers the config read");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.remove(0);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The HTTP functions, each given a signed delivery.
fn http_subjects(stack: &Stack) -> Vec<Subject> {
    vec![
        Subject {
            name: "webhook-intake",
            env: stack.env(&[("BUILD_QUEUE_URL", &stack.builds)]),
            event: Box::new(|i| {
                let body = PUSH.as_bytes();
                let headers = json!({
                    "content-type": "application/json",
                    "x-github-event": "push",
                    "x-github-delivery": format!("cold-{i}"),
                    "x-hub-signature-256": format!("sha256={}", shared::signature::sign_hex(WEBHOOK_SECRET.as_bytes(), body)),
                });
                http_api_event("/github", &headers, body, false)
            }),
        },
        Subject {
            name: "alert-forwarder",
            env: stack.env(&[("NOTIFY_QUEUE_URL", &stack.notify)]),
            event: Box::new(|i| {
                let mut issue: Value = serde_json::from_str(SENTRY_ISSUE).unwrap();
                issue["data"]["issue"]["id"] = json!(format!("{}", 1000 + i));
                let body = issue.to_string();
                let headers = json!({
                    "content-type": "application/json",
                    "sentry-hook-resource": "issue",
                    "request-id": format!("cold-{i}"),
                    "sentry-hook-signature": shared::signature::sign_hex(SENTRY_SECRET.as_bytes(), body.as_bytes()),
                });
                http_api_event("/sentry", &headers, body.as_bytes(), false)
            }),
        },
        Subject {
            name: "chat-ops",
            env: stack.env(&[
                ("DEPLOY_QUEUE_URL", &stack.deploys),
                ("NOTIFY_QUEUE_URL", &stack.notify),
                ("DEAD_LETTER_QUEUES", &format!("deploys={}", stack.deploys)),
            ]),
            // `/status` in the team's chat: every target's record and the queue depths.
            event: Box::new(|i| {
                let update = json!({"update_id": i, "message": {
                    "message_id": i, "date": 0, "text": "/status",
                    "chat": {"id": -100123, "type": "supergroup"},
                    "from": {"id": 2222, "is_bot": false, "first_name": "Bob"},
                }});
                let headers = json!({
                    "content-type": "application/json",
                    "x-telegram-bot-api-secret-token": TELEGRAM_SECRET,
                });
                http_api_event("/telegram", &headers, update.to_string().as_bytes(), false)
            }),
        },
        Subject {
            name: "status-page",
            env: stack.env(&[("DEAD_LETTER_QUEUES", &format!("deploys={}", stack.deploys))]),
            // A signed-in person opens the page: three batched reads and the queue's depth.
            event: Box::new(|_| {
                let signin = status_page::signin::SignIn::new(
                    "Iv1.coldstart",
                    shared::secrets::SecretString::new(OAUTH_SECRET),
                    reqwest::Client::new(),
                    "http://127.0.0.1:9",
                    "http://127.0.0.1:9",
                );
                let cookie = signin.session_cookie(&status_page::signin::Session {
                    login: "ana".into(),
                    id: 1,
                    repos: vec!["Codertocat/Hello-World".into()],
                    exp: i64::MAX,
                });
                let cookie = cookie.split(';').next().unwrap_or_default().to_string();
                http_api_get("/", "", &[cookie])
            }),
        },
    ]
}

/// The queue functions, each given a batch from its queue.
fn queue_subjects(stack: &Stack) -> Vec<Subject> {
    let events_arn = stack.events_arn.clone();
    let deploys_arn = stack.deploys_arn.clone();
    let notify_arn = stack.notify_arn.clone();
    vec![
        Subject {
            name: "build-dispatch",
            env: stack.env(&[
                ("DEPLOY_QUEUE_URL", &stack.deploys),
                ("NOTIFY_QUEUE_URL", &stack.notify),
            ]),
            // A state change of a build shipline did not start: read the state, skip.
            event: Box::new(move |_| sqs_event(&events_arn, STATE_CHANGE, None)),
        },
        Subject {
            name: "deploy-promotion",
            env: stack.env(&[
                ("DEPLOY_QUEUE_URL", &stack.deploys),
                ("NOTIFY_QUEUE_URL", &stack.notify),
                ("HEROKU_API_URL", "http://127.0.0.1:9"),
            ]),
            // A deploy to a target no rule names any more: read the config, skip.
            event: Box::new(move |i| {
                let request = messages::DeployRequest {
                    v: messages::VERSION,
                    repo: "Codertocat/Hello-World".into(),
                    branch: "master".into(),
                    sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
                    build_id: format!("hello:{i}").into(),
                    log_url: None,
                    target: "heroku:gone".into(),
                    environment: "production".into(),
                    artifacts: Default::default(),
                    delivery_id: format!("cold-{i}").into(),
                    commit_message: None,
                    author: None,
                    installation_id: None,
                    requested_at: "2026-11-26T10:00:00Z".into(),
                    promotion: None,
                    requested_by: None,
                };
                sqs_event(
                    &deploys_arn,
                    &messages::encode(&request),
                    Some("heroku-gone"),
                )
            }),
        },
        Subject {
            name: "notifier",
            env: stack.env(&[("TELEGRAM_API_URL", &stack.telegram)]),
            // A build's story on Telegram: read the thread, post or edit, record it.
            event: Box::new(move |i| {
                let notification = messages::Notification {
                    v: messages::VERSION,
                    kind: messages::NotificationKind::BuildStarted,
                    thread_key: format!("build:{}", i % 50),
                    channels: vec!["team".into()],
                    facts: messages::Facts {
                        repo: Some("Codertocat/Hello-World".into()),
                        sha: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
                        branch: Some("master".into()),
                        ..Default::default()
                    },
                    at: format!("2026-11-26T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
                };
                sqs_event(&notify_arn, &messages::encode(&notification), None)
            }),
        },
        Subject {
            name: "delivery-recovery",
            env: stack.env(&[
                ("BUILD_QUEUE_URL", &stack.builds),
                ("NOTIFY_QUEUE_URL", &stack.notify),
                ("GITHUB_API_URL", &stack.github),
                ("WEBHOOK_URL", "https://example.invalid/github"),
            ]),
            // A schedule tick: each configured repo's hooks listed (none points here).
            event: Box::new(
                |_| json!({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}),
            ),
        },
    ]
}

fn sqs_event(arn: &str, body: &str, group: Option<&str>) -> Value {
    serde_json::to_value(shared::batch::sqs_event(arn, &[(body, group)])).unwrap()
}

fn binary(name: &str) -> PathBuf {
    e2e::release_binary(name)
}

/// The same environment, with the config and secrets from files instead of SSM and Secrets
/// Manager.
fn from_files(env: &[(String, String)], config: &str, secrets: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "SHIPLINE_CONFIG_PARAM" && k != "SHIPLINE_SECRETS_ARN")
        .cloned()
        .collect();
    if env.iter().any(|(k, _)| k == "STATE_TABLE") {
        env.push(("SHIPLINE_CONFIG_FILE".into(), config.into()));
        env.push(("SHIPLINE_SECRETS_FILE".into(), secrets.into()));
    }
    env
}

/// The median time from spawn to the first poll over a few cold starts.
async fn first_poll_median(subject: &Subject, env: &[(String, String)]) -> anyhow::Result<f64> {
    let path = binary(subject.name);
    let mut polls = Vec::new();
    for round in 0..COLD_STARTS {
        let api = RuntimeApi::start().await?;
        let spawned = Instant::now();
        let child = api.spawn(&path, subject.name, env)?;
        api.invoke(&(subject.event)(10_000 + round), Duration::from_secs(30))
            .await?;
        polls.push((api.first_poll().expect("it polled") - spawned).as_secs_f64() * 1000.0);
        drop(child);
    }
    polls.sort_by(f64::total_cmp);
    Ok(polls[polls.len() / 2])
}

async fn measure(
    subject: &Subject,
    config_file: &str,
    secrets_file: &str,
) -> anyhow::Result<Figures> {
    let first_poll_files_ms = first_poll_median(
        subject,
        &from_files(&subject.env, config_file, secrets_file),
    )
    .await?;
    let path = binary(subject.name);
    let mut polls = Vec::new();
    let mut answers = Vec::new();
    let mut errors = 0;
    for round in 0..COLD_STARTS {
        let api = RuntimeApi::start().await?;
        let spawned = Instant::now();
        let child = api.spawn(&path, subject.name, &subject.env)?;
        let outcome = api
            .invoke(&(subject.event)(round), Duration::from_secs(30))
            .await?;
        let answered = spawned.elapsed();
        if let Outcome::Error(e) = outcome {
            anyhow::bail!("{} answered an error: {e}", subject.name);
        }
        let first_poll = api.first_poll().expect("it polled") - spawned;
        polls.push(first_poll.as_secs_f64() * 1000.0);
        answers.push(answered.as_secs_f64() * 1000.0);
        drop(child);
        // After the last cold start, the memory run.
        if round + 1 == COLD_STARTS {
            // A fresh API: the killed process's long poll would swallow the next event.
            let api = RuntimeApi::start().await?;
            let child = api.spawn(&path, subject.name, &subject.env)?;
            let pid = child.id().expect("running");
            for i in 0..EVENTS {
                match api
                    .invoke(&(subject.event)(COLD_STARTS + i), Duration::from_secs(30))
                    .await?
                {
                    Outcome::Response(r)
                        if r.get("statusCode")
                            .is_some_and(|s| s.as_u64().unwrap_or(0) >= 400) =>
                    {
                        errors += 1
                    }
                    Outcome::Response(r)
                        if r.get("batchItemFailures")
                            .and_then(|f| f.as_array())
                            .is_some_and(|f| !f.is_empty()) =>
                    {
                        errors += 1
                    }
                    Outcome::Error(_) => errors += 1,
                    _ => {}
                }
            }
            let peak = peak_rss_kb(pid)? as f64 / 1024.0;
            drop(child);
            polls.sort_by(f64::total_cmp);
            answers.sort_by(f64::total_cmp);
            return Ok(Figures {
                name: subject.name,
                first_poll_ms: polls[polls.len() / 2],
                first_answer_ms: answers[answers.len() / 2],
                first_poll_files_ms,
                peak_rss_mb: peak,
                size_mb: std::fs::metadata(&path)?.len() as f64 / 1_048_576.0,
                errors,
            });
        }
    }
    unreachable!()
}

/// The process's peak resident set (`VmHWM` in /proc), in KiB.
fn peak_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM for {pid}"))
}

fn print(rows: &[Figures]) {
    let hello = &rows[0];
    println!(
        "\n{:<18}{:>11}{:>9}{:>15}{:>9}{:>13}{:>13}{:>10}{:>9}{:>8}",
        "binary",
        "poll ms",
        "× hello",
        "poll, files ms",
        "× hello",
        "answer ms",
        "peak RSS MB",
        "size MB",
        "errors",
        ""
    );
    for r in rows {
        println!(
            "{:<18}{:>11.1}{:>8.1}×{:>15.1}{:>8.1}×{:>13.1}{:>13.1}{:>10.1}{:>9}",
            r.name,
            r.first_poll_ms,
            r.first_poll_ms / hello.first_poll_ms,
            r.first_poll_files_ms,
            r.first_poll_files_ms / hello.first_poll_files_ms,
            r.first_answer_ms,
            r.peak_rss_mb,
            r.size_mb,
            r.errors
        );
    }
    println!(
        "poll: spawn → first poll of invocation/next (config from SSM, secrets from Secrets Manager,\n\
         clients built, HTTP functions' connections opened); poll, files: the same with the config\n\
         and secrets read from files; answer: spawn → first event answered. Medians of {COLD_STARTS}\n\
         cold starts; peak RSS over {EVENTS} events. AWS is moto on loopback (no TLS): see\n\
         docs/PERFORMANCE.md."
    );
}

/// Answers every call with `body`: for Telegram, success as for a good `sendMessage` or
/// `editMessageText`; for GitHub, an empty list. Returns its base URL.
async fn stand_in(body: &'static str) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}"))
}
