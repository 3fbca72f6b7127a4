//! The pipeline wired as the stack wires it, for the end-to-end and fault-injection tests:
//! the five pipeline handlers unchanged, real queues (each with its dead-letter queue) and the state
//! table on moto, and local fakes for CodeBuild's JSON API, GitHub, Heroku and Telegram that
//! keep a record of what they answered and can fail a share of calls on purpose.
//!
//! Each queue goes to its consumer as an event source mapping would: up to ten messages as one
//! SQS event, the failed ones left for their visibility timeout, the rest deleted.

#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use build_dispatch::codebuild::aws::CodeBuild;
use deploy_promotion::targets::{Heroku, Hook, Targets};
use e2e::aws;
use e2e::github_spec::{self, Asked, documented};
use serde_json::{Value, json};
use shared::adapters::dynamodb::DynamoStateStore;
use shared::adapters::sqs::{SqsQueue, SqsRedelivery};
use shared::batch::Handoff;
use shared::config::Config;
use shared::github::client::{Auth, GitHubClient};
use shared::ports::SystemClock;
use shared::secrets::{SecretString, Secrets};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const WEBHOOK_SECRET: &str = "pipeline webhook secret";
pub const SENTRY_SECRET: &str = "pipeline sentry secret";
pub const BOT: &str = "42:tok";
/// The bot's username, as `shipline setup` puts it in the webhook URL (`?bot=`).
pub const TELEGRAM_BOT: &str = "pipeline_bot";
/// The `secret_token` given to Telegram's `setWebhook`.
pub const TELEGRAM_SECRET: &str = "pipeline-telegram_secret";
/// How long the adapters wait for an answer here: a fake's "timeout" answers after twice this.
pub const HTTP_TIMEOUT: Duration = Duration::from_millis(500);

/// Which calls a fake fails, by its call counter: deterministic, so a run can be repeated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Every n-th call answers 500.
    pub server_error_every: u64,
    /// Every n-th call answers 429 with `Retry-After: 1`.
    pub rate_limit_every: u64,
    /// Every n-th call answers only after the client has given up.
    pub timeout_every: u64,
    /// One call in n on average, at scattered calls, instead of exactly every n-th: a strict
    /// period can fall in step with a retry loop and fail the same message every time.
    pub scattered: bool,
}

impl Faults {
    pub const NONE: Faults = Faults {
        server_error_every: 0,
        rate_limit_every: 0,
        timeout_every: 0,
        scattered: false,
    };

    fn hits(&self, every: u64, n: u64, offset: u64) -> bool {
        let n = if self.scattered {
            scatter(n ^ offset)
        } else {
            n
        };
        every > 0 && n % every == offset % every
    }
}

/// splitmix64: a fixed, well-mixed permutation of the call counter.
fn scatter(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One call a fake answered with success.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// What a fake did: the calls it answered with success, and the faults it injected.
#[derive(Default)]
pub struct Record {
    pub ok: Vec<Call>,
    pub server_errors: u64,
    pub rate_limited: u64,
    pub timed_out: u64,
    /// Calls the service itself refused (4xx), not injected.
    pub refused: u64,
}

/// A route's answer: a call that did what it asked (recorded), or the service's refusal.
enum Answer {
    Done(ResponseTemplate),
    Refused(ResponseTemplate),
}
use Answer::{Done, Refused};
type Route = dyn Fn(&Request, u64) -> Answer + Send + Sync;

/// A fake service: `route` answers a call (given its sequence number); `faults` replaces some
/// answers with failures before the route sees them, so a failed call changed nothing.
pub struct Fake {
    pub server: MockServer,
    pub record: Arc<Mutex<Record>>,
}

struct Responder {
    route: Box<Route>,
    faults: Faults,
    /// Faults answer 429 in the service's own way.
    rate_limit: ResponseTemplate,
    calls: AtomicU64,
    record: Arc<Mutex<Record>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let f = self.faults;
        let mut record = self.record.lock().unwrap();
        if f.hits(f.timeout_every, n, 5) {
            record.timed_out += 1;
            return ResponseTemplate::new(504).set_delay(HTTP_TIMEOUT * 2);
        }
        if f.hits(f.server_error_every, n, 3) {
            record.server_errors += 1;
            return ResponseTemplate::new(500).set_body_string("injected");
        }
        if f.hits(f.rate_limit_every, n, 1) {
            record.rate_limited += 1;
            return self.rate_limit.clone();
        }
        match (self.route)(request, n) {
            Done(answer) => {
                record.ok.push(Call {
                    method: request.method.to_string(),
                    path: request.url.path().to_string(),
                    body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
                });
                answer
            }
            Refused(refusal) => {
                record.refused += 1;
                refusal
            }
        }
    }
}

impl Fake {
    async fn start(
        faults: Faults,
        rate_limit: ResponseTemplate,
        route: impl Fn(&Request, u64) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let server = MockServer::start().await;
        let record = Arc::new(Mutex::new(Record::default()));
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder {
                route: Box::new(route),
                faults,
                rate_limit,
                calls: AtomicU64::new(0),
                record: record.clone(),
            })
            .mount(&server)
            .await;
        Self { server, record }
    }

    /// The successful calls of `method` whose path contains `fragment`.
    pub fn calls(&self, method: &str, fragment: &str) -> Vec<Call> {
        self.record
            .lock()
            .unwrap()
            .ok
            .iter()
            .filter(|c| c.method == method && c.path.contains(fragment))
            .cloned()
            .collect()
    }

    pub fn faults(&self) -> (u64, u64, u64) {
        let r = self.record.lock().unwrap();
        (r.server_errors, r.rate_limited, r.timed_out)
    }
}

/// GitHub: statuses, branch heads (what the test says master points at), deployments.
pub async fn github(faults: Faults, heads: Arc<Mutex<HashMap<String, String>>>) -> Fake {
    let rate_limit = ResponseTemplate::new(429)
        .insert_header("retry-after", "1")
        .set_body_json(json!({"message": "You have exceeded a secondary rate limit."}));
    // Each answer is GitHub's documented example with the fields the pipeline reads set.
    let answer = |request: &Request, status: u16, operation: &str, fields: Value| {
        let body = documented(operation, fields);
        let asked = Asked {
            method: request.method.as_str(),
            path: request.url.path(),
            query: request.url.query(),
            body: &request.body,
        };
        github_spec::record(&asked, status, &body);
        ResponseTemplate::new(status).set_body_json(body)
    };
    Fake::start(faults, rate_limit, move |request, n| {
        let path = request.url.path();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method.as_str(), parts.as_slice()) {
            ("POST", ["repos", _, _, "statuses", _]) => Done(answer(
                request,
                201,
                "POST /repos/{owner}/{repo}/statuses/{sha}",
                json!({"id": n}),
            )),
            ("GET", ["repos", owner, name, "branches", branch]) => {
                let head = heads
                    .lock()
                    .unwrap()
                    .get(&format!("{owner}/{name}@{branch}"))
                    .cloned();
                match head {
                    Some(sha) => Done(answer(
                        request,
                        200,
                        "GET /repos/{owner}/{repo}/branches/{branch}",
                        json!({"name": branch, "commit": {"sha": sha}}),
                    )),
                    None => Refused(
                        ResponseTemplate::new(404)
                            .set_body_json(json!({"message": "Branch not found"})),
                    ),
                }
            }
            // Every commit a test pushes is newer than the one before it.
            ("GET", ["repos", _, _, "compare", _]) => Done(answer(
                request,
                200,
                "GET /repos/{owner}/{repo}/compare/{basehead}",
                json!({"status": "ahead", "ahead_by": 1, "behind_by": 0}),
            )),
            ("POST", ["repos", _, _, "deployments"]) => Done(answer(
                request,
                201,
                "POST /repos/{owner}/{repo}/deployments",
                json!({"id": n}),
            )),
            ("POST", ["repos", _, _, "deployments", _, "statuses"]) => Done(answer(
                request,
                201,
                "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
                json!({"id": n}),
            )),
            _ => Refused(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}))),
        }
    })
    .await
}

/// Heroku: a formation update makes a release that has succeeded by the time it is read.
pub async fn heroku(faults: Faults) -> Fake {
    let rate_limit = ResponseTemplate::new(429)
        .insert_header("retry-after", "1")
        .set_body_json(
            json!({"id": "rate_limit", "message": "Your account reached the API rate limit"}),
        );
    // Each app's newest release version: v9 before the first update. A formation update
    // makes the next release, and a release list honours `Range: version ]N..` (the first
    // after vN) and `order=desc` (the newest), as the Platform API's *Ranges* describes.
    let versions: Mutex<HashMap<String, u64>> = Mutex::default();
    let release = |app: &str, v: u64| json!({"id": format!("rel-{app}-{v}"), "version": v, "status": "succeeded", "app": {"name": app}});
    Fake::start(faults, rate_limit, move |request, _| {
        let parts: Vec<&str> = request
            .url
            .path()
            .trim_start_matches('/')
            .split('/')
            .collect();
        let mut versions = versions.lock().unwrap();
        match (request.method.as_str(), parts.as_slice()) {
            ("PATCH", ["apps", app, "formation"]) => {
                *versions.entry(app.to_string()).or_insert(9) += 1;
                Done(ResponseTemplate::new(200).set_body_json(json!([])))
            }
            ("GET", ["apps", app, "releases"]) => {
                let newest = *versions.get(*app).unwrap_or(&9);
                let range = request.headers.get("range").and_then(|v| v.to_str().ok());
                let after = range
                    .and_then(|r| r.strip_prefix("version ]"))
                    .and_then(|r| r.split("..").next())
                    .and_then(|v| v.parse::<u64>().ok());
                let listed = match after {
                    Some(n) if n < newest => vec![release(app, n + 1)],
                    Some(_) => vec![],
                    None => vec![release(app, newest)],
                };
                Done(ResponseTemplate::new(206).set_body_json(listed))
            }
            // "Release Rollback": a new release of an earlier one's slug or image.
            ("POST", ["apps", app, "releases"]) => {
                let v = versions.entry(app.to_string()).or_insert(9);
                *v += 1;
                Done(ResponseTemplate::new(201).set_body_json(release(app, *v)))
            }
            ("GET", ["apps", app, "releases", id]) => {
                let v = id
                    .rsplit('-')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(9);
                Done(ResponseTemplate::new(200).set_body_json(release(app, v)))
            }
            _ => Refused(ResponseTemplate::new(404).set_body_json(json!({"id": "not_found"}))),
        }
    })
    .await
}

/// A chat id the Telegram fake refuses ("chat not found"), as for a bot removed from a group.
pub const REFUSED_CHAT: i64 = -1;

/// Telegram's Bot API: message ids from the call counter.
pub async fn telegram(faults: Faults) -> Fake {
    let rate_limit = ResponseTemplate::new(429).set_body_json(json!({
        "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1}
    }));
    Fake::start(faults, rate_limit, |request, n| {
        let path = request.url.path();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if body["chat_id"] == json!(REFUSED_CHAT) {
            return Refused(ResponseTemplate::new(400).set_body_json(json!({
                "ok": false, "error_code": 400, "description": "Bad Request: chat not found"
            })));
        }
        // InlineKeyboardButton.callback_data is 1-64 bytes (Bot API); Telegram answers a longer
        // one with 400 "BUTTON_DATA_INVALID".
        let rows = body["reply_markup"]["inline_keyboard"].as_array().cloned();
        let bad_button = rows
            .iter()
            .flatten()
            .flat_map(|row| row.as_array().cloned().unwrap_or_default())
            .any(|button| {
                let data = button["callback_data"].as_str().unwrap_or("");
                data.is_empty()
                    || data.len() > 64
                    || button["text"].as_str().is_none_or(str::is_empty)
            });
        if bad_button {
            return Refused(ResponseTemplate::new(400).set_body_json(json!({
                "ok": false, "error_code": 400, "description": "Bad Request: BUTTON_DATA_INVALID"
            })));
        }
        if path == format!("/bot{BOT}/sendMessage") {
            Done(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": true, "result": {"message_id": n}})),
            )
        } else if path == format!("/bot{BOT}/editMessageText") {
            Done(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ok": true, "result": {"message_id": 1}})),
            )
        } else {
            Refused(
                ResponseTemplate::new(404).set_body_json(
                    json!({"ok": false, "error_code": 404, "description": "Not Found"}),
                ),
            )
        }
    })
    .await
}

/// A build CodeBuild started, as its fake saw it.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    pub project: String,
    pub source_version: String,
}

/// CodeBuild's JSON API (moto cannot export variables): builds get ids from a counter and
/// succeed with an image id exported per build.
pub struct CodeBuildFake {
    pub server: MockServer,
    pub started: Arc<Mutex<Vec<Started>>>,
    pub stopped: Arc<Mutex<Vec<String>>>,
}

const JSON_1_1: &str = "application/x-amz-json-1.1";

pub fn image_of(build_id: &str) -> String {
    format!("sha256:{}", hex_of(build_id))
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

pub async fn codebuild() -> CodeBuildFake {
    let server = MockServer::start().await;
    let started: Arc<Mutex<Vec<Started>>> = Arc::default();
    let stopped: Arc<Mutex<Vec<String>>> = Arc::default();
    let (s, t) = (started.clone(), stopped.clone());
    let counter = AtomicU64::new(0);
    Mock::given(wiremock::matchers::any())
        .respond_with(move |request: &Request| {
            let target = request
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let answer = match target.as_str() {
                "CodeBuild_20161006.StartBuild" => {
                    let project = body["projectName"].as_str().unwrap_or("").to_string();
                    let id = format!("{project}:{:04}", counter.fetch_add(1, Ordering::Relaxed) + 1);
                    s.lock().unwrap().push(Started {
                        id: id.clone(),
                        project: project.clone(),
                        source_version: body["sourceVersion"].as_str().unwrap_or("").to_string(),
                    });
                    json!({"build": {"id": id, "projectName": project, "buildStatus": "IN_PROGRESS", "timeoutInMinutes": 60}})
                }
                "CodeBuild_20161006.StopBuild" => {
                    let id = body["id"].as_str().unwrap_or("").to_string();
                    t.lock().unwrap().push(id.clone());
                    json!({"build": {"id": id, "buildStatus": "STOPPED"}})
                }
                "CodeBuild_20161006.BatchGetBuilds" => {
                    let builds: Vec<Value> = body["ids"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|id| id.as_str())
                        .map(|id| json!({
                            "id": id, "projectName": id.split(':').next().unwrap_or(""),
                            "buildStatus": "SUCCEEDED",
                            "exportedEnvironmentVariables": [{"name": "SHIPLINE_IMAGE_WEB", "value": image_of(id)}]
                        }))
                        .collect();
                    json!({"builds": builds})
                }
                _ => json!({}),
            };
            ResponseTemplate::new(200)
                .insert_header("content-type", JSON_1_1)
                .set_body_json(answer)
        })
        .mount(&server)
        .await;
    CodeBuildFake {
        server,
        started,
        stopped,
    }
}

#[derive(Clone, Copy)]
enum Consumer {
    Dispatch,
    Promotion,
    Notifier,
}

/// A queue and its dead-letter queue.
pub struct QueuePair {
    pub url: String,
    pub dlq: String,
}

pub struct Pipeline {
    pub sdk: aws_config::SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub builds: QueuePair,
    pub events: QueuePair,
    pub deploys: QueuePair,
    pub notify: QueuePair,
    pub github: Fake,
    pub heroku: Fake,
    pub telegram: Fake,
    pub codebuild: CodeBuildFake,
    /// What the GitHub fake says each `owner/name@branch` points at.
    pub heads: Arc<Mutex<HashMap<String, String>>>,
    /// CodeBuild builds whose state change has been sent.
    reported: Mutex<usize>,
    pub intake: webhook_intake::Deps,
    pub dispatch: build_dispatch::Deps,
    pub promotion: deploy_promotion::Deps,
    pub notifier: notifier::Deps,
    pub alerts: alert_forwarder::Deps,
    /// The control room, on the same queues and table.
    pub chatops: chat_ops::Deps,
}

/// Faults per fake.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultPlan {
    pub github: Faults,
    pub heroku: Faults,
    pub telegram: Faults,
}

/// What the five pipeline functions (intake, build-dispatch, deploy-promotion, notifier,
/// alert-forwarder) are wired to in a pipeline test.
struct Wiring<'a> {
    sdk: &'a aws_config::SdkConfig,
    sqs: &'a aws_sdk_sqs::Client,
    config: Arc<Config>,
    state: Arc<DynamoStateStore>,
    http: reqwest::Client,
    builds: &'a QueuePair,
    events: &'a QueuePair,
    deploys: &'a QueuePair,
    notify: &'a QueuePair,
    github: &'a Fake,
    heroku: &'a Fake,
    telegram: &'a Fake,
    codebuild: &'a CodeBuildFake,
}

type Functions = (
    webhook_intake::Deps,
    build_dispatch::Deps,
    deploy_promotion::Deps,
    notifier::Deps,
    alert_forwarder::Deps,
);

impl Wiring<'_> {
    /// Each function as the stack wires it: the queue functions with their dead-letter queues.
    fn functions(self) -> Functions {
        let (sdk, sqs) = (self.sdk, self.sqs);
        let (config, state, http) = (self.config.clone(), self.state.clone(), self.http.clone());
        let gh = Arc::new(GitHubClient::new(
            http.clone(),
            self.github.server.uri(),
            Auth::Token(SecretString::new("ghp")),
        ));
        let notify_queue = Arc::new(SqsQueue::new(sqs.clone(), &self.notify.url));
        let deploys_queue = Arc::new(SqsQueue::new(sqs.clone(), &self.deploys.url));
        let redelivery = Arc::new(SqsRedelivery::new(sqs.clone()));
        let handoff = |dlq: &str| Handoff {
            redelivery: redelivery.clone(),
            dead_letters: Some(Arc::new(SqsQueue::new(sqs.clone(), dlq))),
        };
        let clock = Arc::new(SystemClock);
        let secrets = Secrets::default().with("telegram_bot_token", BOT);
        let intake = webhook_intake::Deps {
            config: config.clone(),
            webhook_secret: SecretString::new(WEBHOOK_SECRET),
            builds: Arc::new(SqsQueue::new(sqs.clone(), &self.builds.url)),
            state: state.clone(),
            clock: clock.clone(),
        };
        let dispatch = build_dispatch::Deps {
            config: config.clone(),
            builds: Arc::new(CodeBuild::new(aws_sdk_codebuild::Client::from_conf(
                aws_sdk_codebuild::config::Builder::from(sdk)
                    .endpoint_url(self.codebuild.server.uri())
                    .build(),
            ))),
            github: gh.clone(),
            state: state.clone(),
            deploys: deploys_queue.clone(),
            notify: notify_queue.clone(),
            handoff: handoff(&self.builds.dlq),
            event_dead_letters: Some(Arc::new(SqsQueue::new(sqs.clone(), &self.events.dlq))),
            clock: clock.clone(),
            region: aws::REGION.into(),
        };
        let promotion = deploy_promotion::Deps {
            config: config.clone(),
            github: gh,
            deployer: Arc::new(Targets {
                heroku: Some(Arc::new(Heroku::new(
                    http.clone(),
                    &self.heroku.server.uri(),
                    SecretString::new("hk"),
                ))),
                hook: Arc::new(Hook::new(http.clone(), Arc::new(Secrets::default()))),
                command: None,
            }),
            state: state.clone(),
            notify: notify_queue.clone(),
            deploys: deploys_queue.clone(),
            handoff: handoff(&self.deploys.dlq),
            clock: clock.clone(),
            follow: deploy_promotion::Follow::default(),
        };
        let notifier = notifier::Deps {
            channels: notifier::channels_from_config(
                &config,
                &secrets,
                &http,
                &self.telegram.server.uri(),
            )
            .unwrap(),
            config: config.clone(),
            state: state.clone(),
            handoff: handoff(&self.notify.dlq),
            clock: clock.clone(),
        };
        let alerts = alerts(config, notify_queue, deploys_queue, state, clock);
        (intake, dispatch, promotion, notifier, alerts)
    }
}

/// alert-forwarder, with automatic rollbacks to the deploy queue.
fn alerts(
    config: Arc<Config>,
    notify: Arc<SqsQueue>,
    deploys: Arc<SqsQueue>,
    state: Arc<DynamoStateStore>,
    clock: Arc<SystemClock>,
) -> alert_forwarder::Deps {
    alert_forwarder::Deps {
        config,
        client_secret: Some(SecretString::new(SENTRY_SECRET)),
        legacy_token: None,
        notify,
        deploys: Some(deploys),
        state,
        clock,
    }
}

/// chat-ops on the pipeline's queues and table; `/status` reads the four dead-letter queues.
fn chatops(
    sqs: &aws_sdk_sqs::Client,
    promotion: &deploy_promotion::Deps,
    [builds, events, deploys, notify]: [&QueuePair; 4],
) -> chat_ops::Deps {
    let dead_letters = [
        ("builds", &builds.dlq),
        ("build-events", &events.dlq),
        ("deploys", &deploys.dlq),
        ("notifications", &notify.dlq),
    ]
    .into_iter()
    .map(|(name, url)| {
        let queue: Arc<dyn shared::ports::Queue> = Arc::new(SqsQueue::new(sqs.clone(), url));
        (name.to_string(), queue)
    })
    .collect();
    chat_ops::Deps {
        config: promotion.config.clone(),
        webhook_secret: SecretString::new(TELEGRAM_SECRET),
        deploys: Arc::new(SqsQueue::new(sqs.clone(), &deploys.url)),
        notify: Arc::new(SqsQueue::new(sqs.clone(), &notify.url)),
        dead_letters,
        state: promotion.state.clone(),
        clock: promotion.clock.clone(),
    }
}

impl Pipeline {
    pub async fn new(config_yaml: &str, faults: FaultPlan) -> Self {
        let sdk = aws::sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let pair = |name: &'static str, fifo: bool| {
            let sdk = sdk.clone();
            async move {
                // maxReceiveCount 100, as in template.yaml: only a backstop, since the functions
                // count real failures themselves and waits do not count.
                let (url, dlq) =
                    aws::create_queue_with_dlq(&sdk, &e2e::unique(name), fifo, 100).await;
                QueuePair { url, dlq }
            }
        };
        let builds = pair("builds", true).await;
        let events = pair("build-events", false).await;
        let deploys = pair("deploys", true).await;
        let notify = pair("notifications", false).await;
        let table = e2e::unique("state");
        aws::create_state_table(&sdk, &table).await;

        let heads: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let github = github(faults.github, heads.clone()).await;
        let heroku = heroku(faults.heroku).await;
        let telegram = telegram(faults.telegram).await;
        let codebuild = codebuild().await;

        let config = Arc::new(Config::from_yaml(config_yaml).expect("a valid config"));
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .unwrap();
        let state = Arc::new(DynamoStateStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &table,
        ));
        let (intake, dispatch, promotion, notifier, alerts) = Wiring {
            sdk: &sdk,
            sqs: &sqs,
            config,
            state,
            http,
            builds: &builds,
            events: &events,
            deploys: &deploys,
            notify: &notify,
            github: &github,
            heroku: &heroku,
            telegram: &telegram,
            codebuild: &codebuild,
        }
        .functions();
        let chatops = chatops(&sqs, &promotion, [&builds, &events, &deploys, &notify]);
        Self {
            sdk,
            sqs,
            builds,
            events,
            deploys,
            notify,
            github,
            heroku,
            telegram,
            codebuild,
            heads,
            reported: Mutex::new(0),
            intake,
            dispatch,
            promotion,
            notifier,
            alerts,
            chatops,
        }
    }

    /// GitHub's sample push (`Codertocat/Hello-World`, master) of `sha`, with the branch's head
    /// moved to it, built with `status`, and everything after it.
    pub async fn pushed(&self, sha: &str, delivery: &str, status: &str) {
        const PUSH: &str =
            include_str!("../../../functions/webhook-intake/testdata/github-push.json");
        const SAMPLE_SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
        self.heads
            .lock()
            .unwrap()
            .insert("Codertocat/Hello-World@master".into(), sha.into());
        let push = PUSH.replace(SAMPLE_SHA, sha);
        assert_eq!(
            self.github_delivers("push", delivery, push.as_bytes())
                .await,
            202
        );
        self.run_until_idle(status, Duration::from_secs(60)).await;
    }

    /// Telegram delivers an update with the webhook's secret token; chat-ops' answer.
    pub async fn telegram_delivers(&self, update: &Value) -> chat_ops::Answer {
        self.telegram_delivers_with(Some(TELEGRAM_SECRET), update)
            .await
    }

    /// An update sent with `token` as its secret-token header (none when `None`).
    pub async fn telegram_delivers_with(
        &self,
        token: Option<&str>,
        update: &Value,
    ) -> chat_ops::Answer {
        let mut pairs = vec![("content-type", "application/json".to_string())];
        if let Some(token) = token {
            pairs.push(("x-telegram-bot-api-secret-token", token.to_string()));
        }
        chat_ops::handle_update(
            &self.chatops,
            &header_map(&pairs),
            update.to_string().as_bytes(),
            Some(TELEGRAM_BOT),
        )
        .await
    }

    /// GitHub delivers a webhook; the intake's answer status.
    pub async fn github_delivers(&self, event: &str, delivery: &str, body: &[u8]) -> u16 {
        let headers = header_map(&[
            ("content-type", "application/json".into()),
            ("x-github-event", event.into()),
            ("x-github-delivery", delivery.into()),
            (
                "x-hub-signature-256",
                webhook_intake::webhook::sign(WEBHOOK_SECRET.as_bytes(), body),
            ),
        ]);
        webhook_intake::handle_delivery(&self.intake, &headers, body)
            .await
            .status
            .as_u16()
    }

    /// Sentry delivers an issue alert; the forwarder's answer status.
    pub async fn sentry_delivers(&self, resource: &str, request_id: &str, body: &[u8]) -> u16 {
        let headers = header_map(&[
            ("content-type", "application/json".into()),
            ("sentry-hook-resource", resource.into()),
            ("request-id", request_id.into()),
            (
                "sentry-hook-signature",
                alert_forwarder::sentry::sign(SENTRY_SECRET.as_bytes(), body),
            ),
        ]);
        alert_forwarder::handle_integration(&self.alerts, &headers, body)
            .await
            .status
            .as_u16()
    }

    /// CodeBuild finishes every build it started since the last call, and EventBridge puts
    /// each state change on the build-events queue. Returns how many.
    pub async fn builds_finish(&self, status: &str) -> usize {
        let started = self.codebuild.started.lock().unwrap().clone();
        let mut reported = self.reported.lock().unwrap().to_owned();
        let new = started[reported..].to_vec();
        reported = started.len();
        *self.reported.lock().unwrap() = reported;
        for build in &new {
            let event = json!({
                "version": "0", "id": e2e::unique("event"),
                "detail-type": "CodeBuild Build State Change", "source": "aws.codebuild",
                "account": "123456789012", "time": "2026-11-26T12:00:00Z", "region": aws::REGION,
                "resources": [format!("arn:aws:codebuild:us-east-1:123456789012:build/{}", build.id)],
                "detail": {
                    "build-status": status,
                    "project-name": build.project,
                    "build-id": format!("arn:aws:codebuild:us-east-1:123456789012:build/{}", build.id),
                    "additional-information": {"build-complete": true, "source-version": build.source_version},
                    "current-phase": "COMPLETED", "current-phase-context": "[: ]", "version": "1"
                }
            });
            self.sqs
                .send_message()
                .queue_url(&self.events.url)
                .message_body(event.to_string())
                .send()
                .await
                .expect("send to moto");
        }
        new.len()
    }

    /// One round: each queue's waiting messages (up to ten at a time) to its consumer.
    /// Returns how many messages were handed over.
    pub async fn pump_once(&self) -> usize {
        let mut handed = 0;
        for (url, consumer) in [
            (&self.builds.url, Consumer::Dispatch),
            (&self.events.url, Consumer::Dispatch),
            (&self.deploys.url, Consumer::Promotion),
            (&self.notify.url, Consumer::Notifier),
        ] {
            loop {
                let event = aws::receive_as_event(&self.sdk, url).await;
                if event.records.is_empty() {
                    break;
                }
                handed += event.records.len();
                let response = match consumer {
                    Consumer::Dispatch => {
                        build_dispatch::handle_batch(&self.dispatch, &event, None).await
                    }
                    Consumer::Promotion => {
                        deploy_promotion::handle_batch(&self.promotion, &event, None).await
                    }
                    Consumer::Notifier => {
                        notifier::handle_batch(&self.notifier, &event, None).await
                    }
                };
                aws::settle_batch(&self.sdk, url, &event, &response).await;
            }
        }
        handed
    }

    /// Pumps until every queue is empty (in-flight and delayed messages included), finishing
    /// builds as CodeBuild would whenever new ones started.
    pub async fn run_until_idle(&self, build_status: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let handed = self.pump_once().await;
            let finished = self.builds_finish(build_status).await;
            if handed == 0 && finished == 0 && self.depth().await == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the pipeline did not settle within {limit:?}"
            );
            if handed == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn depth(&self) -> u64 {
        let mut total = 0;
        for url in [
            &self.builds.url,
            &self.events.url,
            &self.deploys.url,
            &self.notify.url,
        ] {
            total += aws::queue_depth(&self.sdk, url).await;
        }
        total
    }

    /// Every message in the four dead-letter queues, with the reason the consumer gave when
    /// it put one there itself.
    pub async fn dead_letters(&self) -> Vec<(String, String, String)> {
        let mut all = Vec::new();
        for (name, url) in [
            ("builds", &self.builds.dlq),
            ("build-events", &self.events.dlq),
            ("deploys", &self.deploys.dlq),
            ("notifications", &self.notify.dlq),
        ] {
            loop {
                let out = self
                    .sqs
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(10)
                    .message_attribute_names("All")
                    .send()
                    .await
                    .expect("receive from moto");
                let messages = out.messages.unwrap_or_default();
                if messages.is_empty() {
                    break;
                }
                for m in messages {
                    let reason = m
                        .message_attributes
                        .as_ref()
                        .and_then(|a| a.get("shipline_reason"))
                        .and_then(|v| v.string_value.clone())
                        .unwrap_or_else(|| "moved by SQS after 5 receives".into());
                    all.push((name.to_string(), reason, m.body.unwrap_or_default()));
                    self.sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(m.receipt_handle.unwrap())
                        .send()
                        .await
                        .expect("delete from moto");
                }
            }
        }
        all
    }
}

/// The `text` of each chat call, in order.
pub fn texts(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .collect()
}

pub fn header_map(pairs: &[(&str, String)]) -> lambda_http::http::HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect()
}
