//! delivery-recovery end to end (issue 14, "Done when"): GitHub delivers over HTTP to intake's
//! front door, which refuses a body over Lambda's payload limit as the platform does; the
//! recovery sweep reads the hook's deliveries through the real REST client from a GitHub fake
//! that keeps attempts as GitHub does and redelivers by POSTing the stored signed body again;
//! the real intake and build-dispatch handlers build on a CodeBuild JSON API fake. Queues and
//! the state table are the in-memory adapters, so this runs without moto.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use shared::adapters::memory::{MemoryQueue, MemoryRedelivery, MemoryStateStore};
use shared::batch::Handoff;
use shared::config::Config;
use shared::github::client::{Auth, GitHubClient};
use shared::ports::SystemClock;
use shared::secrets::SecretString;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "recovery webhook secret";
const TOKEN: &str = "ghp_recovery";
const HOOK_ID: u64 = 1;
/// Another hook of the repo, pointing at some other service: never read.
const OTHER_HOOK_ID: u64 = 2;
const PUSH: &[u8] = include_bytes!("../../functions/webhook-intake/testdata/github-push.json");
const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const CONFIG: &str = "repos:\n  Codertocat/Hello-World:\n    codebuild_project: hello-world\n";
/// Lambda's synchronous invocation payload limit: a larger request is refused with 413 before
/// the function runs (AWS Lambda quotas, "Invocation payload (request and response)").
const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

// ---- intake's front door: API Gateway and Lambda in front of the real handler ----

/// Serves `POST /github` as the stack does; returns the URL to give GitHub.
async fn serve_intake(deps: Arc<webhook_intake::Deps>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let deps = deps.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let deps = deps.clone();
                    async move { Ok::<_, Infallible>(front_door(&deps, request).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/github")
}

async fn front_door(
    deps: &webhook_intake::Deps,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let (status, message) = if body.len() > LAMBDA_PAYLOAD_LIMIT {
        (413, "Request Entity Too Large".to_string())
    } else {
        let reply = webhook_intake::handle_delivery(deps, &parts.headers, &body).await;
        (reply.status.as_u16(), reply.message)
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({ "message": message }).to_string(),
        )))
        .unwrap()
}

// ---- GitHub: one repository webhook, its deliveries, commit statuses ----

/// One attempt GitHub made to deliver an event, with the signed body it sent.
#[derive(Clone)]
struct Attempt {
    id: u64,
    guid: String,
    event: String,
    delivered_at: String,
    redelivery: bool,
    status_code: u16,
    body: Arc<Vec<u8>>,
}

impl Attempt {
    /// `hook-delivery-item` in GitHub's OpenAPI description.
    fn item(&self) -> Value {
        let status = match self.status_code {
            200..=299 => "OK".to_string(),
            0 => "timed out".to_string(),
            code => format!("Invalid HTTP Response: {code}"),
        };
        json!({
            "id": self.id, "guid": self.guid, "delivered_at": self.delivered_at,
            "redelivery": self.redelivery, "duration": 0.27, "status": status,
            "status_code": self.status_code, "event": self.event, "action": null,
            "installation_id": null, "repository_id": 1296269, "throttled_at": null,
        })
    }
}

#[derive(Default)]
struct Hub {
    attempts: Vec<Attempt>,
    /// Redeliveries asked for (202), which GitHub makes shortly after.
    asked: Vec<u64>,
    redeliveries_asked: usize,
    deliveries_read: Vec<u64>,
    /// Every `GET …/hooks/{id}/deliveries` path listed.
    listed: Vec<String>,
    /// Commit statuses set: (sha, state).
    statuses: Vec<(String, String)>,
}

struct GitHub {
    server: MockServer,
    hub: Arc<Mutex<Hub>>,
    hook_url: String,
    http: reqwest::Client,
}

/// Answers as GitHub's REST API documents each route.
struct Routes {
    hub: Arc<Mutex<Hub>>,
    hook_url: String,
}

impl Respond for Routes {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_string();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let hook = |id: &str| id.parse::<u64>().ok();
        match (request.method.as_str(), parts.as_slice()) {
            // "List repository webhooks": GET /repos/{owner}/{repo}/hooks
            ("GET", ["repos", _, _, "hooks"]) => self.hooks(),
            // "List deliveries for a repository webhook": newest first, at most `per_page`,
            // the next page's `cursor` in the `Link` header.
            ("GET", ["repos", _, _, "hooks", id, "deliveries"]) if hook(id).is_some() => {
                self.hub.lock().unwrap().listed.push(path.clone());
                self.list(request, hook(id).unwrap())
            }
            // "Get a delivery for a repository webhook": the request as sent, payload parsed.
            ("GET", ["repos", _, _, "hooks", _, "deliveries", id]) => self.detail(id),
            // "Redeliver a delivery for a repository webhook": 202 Accepted; GitHub delivers
            // the stored request again, as a new attempt with the same GUID.
            ("POST", ["repos", _, _, "hooks", _, "deliveries", id, "attempts"]) => {
                self.redeliver(id)
            }
            // "Create a commit status": 201 Created.
            ("POST", ["repos", _, _, "statuses", sha]) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                let state = body["state"].as_str().unwrap_or("").to_string();
                self.hub
                    .lock()
                    .unwrap()
                    .statuses
                    .push((sha.to_string(), state));
                ResponseTemplate::new(201).set_body_json(json!({"id": 1, "state": body["state"]}))
            }
            _ => not_found(),
        }
    }
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest"
    }))
}

impl Routes {
    fn hooks(&self) -> ResponseTemplate {
        let hook = |id: u64, url: &str| {
            json!({
                "type": "Repository", "id": id, "name": "web", "active": true,
                "events": ["push", "pull_request"],
                "config": {"content_type": "json", "insecure_ssl": "0", "url": url},
            })
        };
        ResponseTemplate::new(200).set_body_json(json!([
            hook(OTHER_HOOK_ID, "https://ci.example.com/github"),
            hook(HOOK_ID, &self.hook_url),
        ]))
    }

    fn list(&self, request: &Request, hook_id: u64) -> ResponseTemplate {
        let query = |name: &str| {
            request
                .url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let per_page: usize = query("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
        let before: u64 = query("cursor")
            .and_then(|c| c.strip_prefix("v1_").and_then(|id| id.parse().ok()))
            .unwrap_or(u64::MAX);
        let hub = self.hub.lock().unwrap();
        let mut attempts: Vec<&Attempt> = if hook_id == HOOK_ID {
            hub.attempts.iter().filter(|a| a.id < before).collect()
        } else {
            vec![]
        };
        attempts.sort_by_key(|a| std::cmp::Reverse(a.id));
        let page: Vec<Value> = attempts.iter().take(per_page).map(|a| a.item()).collect();
        let mut answer = ResponseTemplate::new(200).set_body_json(page);
        if attempts.len() > per_page {
            let mut next = request.url.clone();
            next.set_query(Some(&format!(
                "per_page={per_page}&cursor=v1_{}",
                attempts[per_page - 1].id
            )));
            answer = answer.insert_header("link", format!("<{next}>; rel=\"next\"").as_str());
        }
        answer
    }

    fn detail(&self, id: &str) -> ResponseTemplate {
        let mut hub = self.hub.lock().unwrap();
        let Some(a) = id
            .parse::<u64>()
            .ok()
            .and_then(|id| hub.attempts.iter().find(|a| a.id == id).cloned())
        else {
            return not_found();
        };
        hub.deliveries_read.push(a.id);
        let mut item = a.item();
        item["url"] = json!(self.hook_url);
        item["request"] = json!({
            "headers": {
                "X-GitHub-Event": a.event, "X-GitHub-Delivery": a.guid,
                "Content-Type": "application/json",
                "X-Hub-Signature-256": webhook_intake::webhook::sign(SECRET.as_bytes(), &a.body),
            },
            "payload": serde_json::from_slice::<Value>(&a.body).unwrap(),
        });
        item["response"] = json!({"headers": {}, "payload": null});
        ResponseTemplate::new(200).set_body_json(item)
    }

    fn redeliver(&self, id: &str) -> ResponseTemplate {
        let mut hub = self.hub.lock().unwrap();
        let Some(id) = id
            .parse::<u64>()
            .ok()
            .filter(|id| hub.attempts.iter().any(|a| a.id == *id))
        else {
            return not_found();
        };
        hub.asked.push(id);
        hub.redeliveries_asked += 1;
        ResponseTemplate::new(202).set_body_json(json!({}))
    }
}

impl GitHub {
    async fn start(hook_url: &str) -> Self {
        let server = MockServer::start().await;
        let hub = Arc::new(Mutex::new(Hub::default()));
        Mock::given(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(Routes {
                hub: hub.clone(),
                hook_url: hook_url.to_string(),
            })
            .mount(&server)
            .await;
        // Without the token: "Requires authentication".
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(json!({"message": "Requires authentication"})),
            )
            .mount(&server)
            .await;
        Self {
            server,
            hub,
            hook_url: hook_url.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// GitHub delivers an event to the hook, signed, and keeps the attempt with the answer.
    async fn delivers(&self, event: &str, guid: &str, body: Arc<Vec<u8>>, redelivery: bool) -> u16 {
        let answer = self
            .http
            .post(&self.hook_url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/044aadd")
            .header("x-github-event", event)
            .header("x-github-delivery", guid)
            .header(
                "x-hub-signature-256",
                webhook_intake::webhook::sign(SECRET.as_bytes(), &body),
            )
            .body(body.as_ref().clone())
            .send()
            .await;
        // GitHub records an attempt without an answer as status code 0.
        let status_code = answer.map_or(0, |a| a.status().as_u16());
        let mut hub = self.hub.lock().unwrap();
        let id = hub
            .attempts
            .iter()
            .map(|a| a.id)
            .max()
            .unwrap_or(12_345_000)
            + 1;
        hub.attempts.push(Attempt {
            id,
            guid: guid.into(),
            event: event.into(),
            delivered_at: OffsetDateTime::now_utc().format(&Rfc3339).unwrap(),
            redelivery,
            status_code,
            body,
        });
        status_code
    }

    /// GitHub makes the redeliveries it accepted: the stored body, POSTed again.
    async fn makes_redeliveries(&self) -> usize {
        let asked: Vec<Attempt> = {
            let mut hub = self.hub.lock().unwrap();
            let ids: Vec<u64> = hub.asked.drain(..).collect();
            ids.iter()
                .map(|id| hub.attempts.iter().find(|a| a.id == *id).unwrap().clone())
                .collect()
        };
        for a in &asked {
            self.delivers(&a.event, &a.guid, a.body.clone(), true).await;
        }
        asked.len()
    }

    /// Each attempt, oldest first: (GUID, redelivery, status code).
    fn attempts(&self) -> Vec<(String, bool, u16)> {
        let hub = self.hub.lock().unwrap();
        hub.attempts
            .iter()
            .map(|a| (a.guid.clone(), a.redelivery, a.status_code))
            .collect()
    }
}

// ---- the stack ----

struct Stack {
    github: GitHub,
    codebuild: MockServer,
    /// `builds.fifo`, shared by intake, the sweep and build-dispatch.
    builds: Arc<MemoryQueue>,
    dispatch: build_dispatch::Deps,
    recovery: delivery_recovery::Deps,
}

/// CodeBuild's JSON API, enough for build-dispatch to start a build ("StartBuild").
async fn codebuild() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(header("x-amz-target", "CodeBuild_20161006.StartBuild"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let project = body["projectName"].as_str().unwrap().to_string();
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(json!({"build": {
                    "id": format!("{project}:build-1"), "projectName": project,
                    "buildStatus": "IN_PROGRESS", "timeoutInMinutes": 60,
                    "sourceVersion": body["sourceVersion"],
                }}))
        })
        .mount(&server)
        .await;
    server
}

async fn codebuild_client(endpoint: &str) -> build_dispatch::codebuild::aws::CodeBuild {
    let credentials = aws_sdk_codebuild::config::Credentials::new("k", "s", None, None, "test");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await;
    build_dispatch::codebuild::aws::CodeBuild::new(aws_sdk_codebuild::Client::from_conf(
        aws_sdk_codebuild::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .build(),
    ))
}

async fn stack() -> Stack {
    let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
    let state = Arc::new(MemoryStateStore::new());
    let builds = Arc::new(MemoryQueue::fifo());
    let clock = Arc::new(SystemClock);
    let intake = Arc::new(webhook_intake::Deps {
        config: config.clone(),
        webhook_secret: SecretString::new(SECRET),
        builds: builds.clone(),
        state: state.clone(),
        clock: clock.clone(),
    });
    let hook_url = serve_intake(intake).await;
    let github = GitHub::start(&hook_url).await;
    let client = Arc::new(GitHubClient::new(
        reqwest::Client::new(),
        github.server.uri(),
        Auth::Token(SecretString::new(TOKEN)),
    ));
    let codebuild = codebuild().await;
    let dispatch = build_dispatch::Deps {
        config: config.clone(),
        builds: Arc::new(codebuild_client(&codebuild.uri()).await),
        github: client.clone(),
        state: state.clone(),
        deploys: Arc::new(MemoryQueue::fifo()),
        notify: Arc::new(MemoryQueue::standard()),
        handoff: Handoff {
            redelivery: Arc::new(MemoryRedelivery::default()),
            dead_letters: None,
        },
        event_dead_letters: None,
        clock: clock.clone(),
        region: "us-east-1".into(),
    };
    let recovery = delivery_recovery::Deps {
        config,
        github: client,
        state,
        builds: builds.clone(),
        notify: Arc::new(MemoryQueue::standard()),
        clock,
        webhook_url: hook_url,
    };
    Stack {
        github,
        codebuild,
        builds,
        dispatch,
        recovery,
    }
}

impl Stack {
    /// build-dispatch takes what waits on `builds.fifo`, as its event source mapping would;
    /// returns how many requests it was given.
    async fn dispatch(&self) -> usize {
        let messages = self.builds.drain();
        if messages.is_empty() {
            return 0;
        }
        let records: Vec<(&str, Option<&str>)> = messages
            .iter()
            .map(|m| (m.body.as_str(), m.group_id.as_deref()))
            .collect();
        let event =
            shared::batch::sqs_event("arn:aws:sqs:us-east-1:123456789012:builds.fifo", &records);
        let response = build_dispatch::handle_batch(&self.dispatch, &event, None).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        messages.len()
    }

    /// The source versions CodeBuild was asked to build.
    async fn builds_started(&self) -> Vec<String> {
        self.codebuild
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["sourceVersion"].to_string())
            .map(|v| v.trim_matches('"').to_string())
            .collect()
    }

    fn statuses(&self) -> Vec<(String, String)> {
        self.github.hub.lock().unwrap().statuses.clone()
    }

    fn redeliveries_asked(&self) -> usize {
        self.github.hub.lock().unwrap().redeliveries_asked
    }
}

#[tokio::test]
async fn a_push_intake_answered_500_is_redelivered_once_built_once_and_a_second_sweep_does_nothing()
{
    let stack = stack().await;
    stack.builds.fail_next_sends(1); // SQS is down for a moment
    let body = Arc::new(PUSH.to_vec());
    assert_eq!(
        stack.github.delivers("push", "guid-a", body, false).await,
        500
    );
    assert_eq!(stack.dispatch().await, 0, "nothing was queued");

    let report = delivery_recovery::sweep(&stack.recovery).await;
    assert_eq!(
        (report.hooks, report.failed, report.redelivered),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(stack.github.makes_redeliveries().await, 1);
    assert_eq!(
        stack.github.attempts(),
        vec![("guid-a".into(), false, 500), ("guid-a".into(), true, 202)]
    );
    assert_eq!(stack.dispatch().await, 1);
    assert_eq!(stack.builds_started().await, vec![SHA.to_string()]);
    assert_eq!(
        stack.statuses(),
        vec![(SHA.to_string(), "pending".to_string())]
    );

    let report = delivery_recovery::sweep(&stack.recovery).await;
    assert_eq!(
        report,
        delivery_recovery::Report {
            hooks: 1,
            ..Default::default()
        }
    );
    assert_eq!(stack.github.makes_redeliveries().await, 0);
    assert_eq!(stack.redeliveries_asked(), 1);
    assert_eq!(stack.dispatch().await, 0);
    assert_eq!(stack.builds_started().await.len(), 1);
    assert_eq!(stack.statuses().len(), 1);
    let listed = stack.github.hub.lock().unwrap().listed.clone();
    assert!(
        listed
            .iter()
            .all(|p| p.contains(&format!("/hooks/{HOOK_ID}/"))),
        "only the hook that points at the stack is read: {listed:?}"
    );
}

/// A push of 2,048 commits with long messages: about 7 MB, as GitHub sends it (up to 25 MB).
fn huge_push() -> Vec<u8> {
    let mut push: Value = serde_json::from_slice(PUSH).unwrap();
    let commit = push["head_commit"].clone();
    let commits: Vec<Value> = (0..2048)
        .map(|n| {
            let mut c = commit.clone();
            c["message"] = json!(format!(
                "commit {n}\n\n{}",
                "a long line of detail ".repeat(145)
            ));
            c
        })
        .collect();
    push["commits"] = json!(commits);
    serde_json::to_vec(&push).unwrap()
}

#[tokio::test]
async fn a_7_mb_push_refused_before_the_function_builds_once_through_the_deliveries_api() {
    let stack = stack().await;
    let body = huge_push();
    assert!(
        body.len() > 7_000_000 && body.len() < 8_000_000,
        "{}",
        body.len()
    );
    let status = stack
        .github
        .delivers("push", "guid-b", Arc::new(body), false)
        .await;
    assert_eq!(status, 413);
    assert!(stack.builds.is_empty());

    let report = delivery_recovery::sweep(&stack.recovery).await;
    assert_eq!(
        (report.queued_from_payload, report.redelivered),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(stack.dispatch().await, 1);
    assert_eq!(stack.builds_started().await, vec![SHA.to_string()]);
    assert_eq!(
        stack.statuses(),
        vec![(SHA.to_string(), "pending".to_string())]
    );

    let report = delivery_recovery::sweep(&stack.recovery).await;
    assert_eq!(report.queued_from_payload, 0, "{report:?}");
    assert_eq!(stack.dispatch().await, 0);
    assert_eq!(stack.builds_started().await.len(), 1);
    assert_eq!(
        stack.redeliveries_asked(),
        0,
        "a redelivery would be refused the same way"
    );
    assert_eq!(stack.github.hub.lock().unwrap().deliveries_read.len(), 1);
}
