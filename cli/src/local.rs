//! The local stack: the six functions' handlers, unchanged, wired to embedded adapters
//! (the durable store's queues and state, the local build runner, a local GitHub, console
//! chat) and pumped in one process.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use deploy_promotion::deployer::Deployer;
use deploy_promotion::targets::{Heroku, Hook, Targets};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use notifier::chat::ChatChannel;
use shared::batch::Handoff;
use shared::config::{Channel, Config};
use shared::github::client::{Auth, GitHubClient};
use shared::messages::{self, Notification};
use shared::ports::{GitHub, Queue, SystemClock};

use crate::adapters::builds::LocalBuildRunner;
use crate::adapters::command::Command;
use crate::adapters::console::Console;
use crate::adapters::durable::{DurableQueue, DurableStore, Received};
use crate::adapters::github::LocalGitHub;
use shared::secrets::Secrets;

pub struct Stack {
    pub intake: webhook_intake::Deps,
    pub dispatch: build_dispatch::Deps,
    pub promotion: deploy_promotion::Deps,
    pub notifier: notifier::Deps,
    pub alerts: alert_forwarder::Deps,
    /// The control room (`POST /telegram`), when `telegram_webhook_secret` is given.
    pub chatops: Option<chat_ops::Deps>,
    /// What the console channels show, buttons included.
    pub console: Arc<Console>,
    pub builds_queue: Arc<DurableQueue>,
    pub events_queue: Arc<DurableQueue>,
    pub deploys_queue: Arc<DurableQueue>,
    pub notify_queue: Arc<DurableQueue>,
    pub runner: Arc<LocalBuildRunner>,
}

/// How many times a message is received before its queue moves it to its dead-letter queue:
/// template.yaml's `maxReceiveCount`.
const MAX_RECEIVE_COUNT: u32 = 100;

/// How long a received message stays invisible before it is received again. The pump is
/// sequential (a batch's handler returns before the next receive), so this never makes a
/// message run twice at once; it is how soon a plain failure (one the handler did not put back
/// for later with `redeliver_after`) is tried again, and 30 s keeps a local retry prompt. A
/// message in flight when the process dies comes back at the next start anyway
/// (`recover_in_flight`).
const VISIBILITY: Duration = Duration::from_secs(30);

/// One of the four queues the functions consume, with its dead-letter queue.
fn queue_with_dlq(store: &DurableStore, name: &str) -> (Arc<DurableQueue>, Arc<dyn Queue>) {
    let dlq = match name.strip_suffix(".fifo") {
        Some(base) => format!("{base}-dead-letters.fifo"),
        None => format!("{name}-dead-letters"),
    };
    let queue = store.queue(name).with_redrive(&dlq, MAX_RECEIVE_COUNT);
    (Arc::new(queue), Arc::new(store.queue(&dlq)))
}

impl Stack {
    /// `repos` maps each configured repo to its local checkout; `work` is where builds run and
    /// the runner records the builds it started; `store` keeps the queues and state.
    pub fn new(
        config: Config,
        secrets: Secrets,
        repos: BTreeMap<String, PathBuf>,
        work: PathBuf,
        store: DurableStore,
        report: impl Fn(String) + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let secrets = Arc::new(secrets);
        let (builds_queue, builds_dlq) = queue_with_dlq(&store, "builds.fifo");
        let (events_queue, events_dlq) = queue_with_dlq(&store, "build-events");
        let (deploys_queue, deploys_dlq) = queue_with_dlq(&store, "deploys.fifo");
        let (notify_queue, notify_dlq) = queue_with_dlq(&store, "notifications");
        let runner = Arc::new(LocalBuildRunner::new(
            repos.clone(),
            work,
            events_queue.clone(),
            Arc::new(store.clone()),
        ));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let console = Arc::new(Console::stdout());
        let channels = chat_channels(&config, &secrets, &http, &console)?;
        let wiring = Wiring {
            github: github(&secrets, &http, repos, report),
            config,
            secrets,
            http,
            state: Arc::new(store.clone()),
            clock: Arc::new(SystemClock),
            redelivery: Arc::new(store.clone()),
            notify: notify_queue.clone(),
        };
        Ok(Self {
            intake: wiring.intake(builds_queue.clone())?,
            dispatch: wiring.dispatch(
                runner.clone(),
                deploys_queue.clone(),
                [builds_dlq, events_dlq],
            ),
            promotion: wiring.promotion(deploys_queue.clone(), deploys_dlq),
            notifier: wiring.notifier(channels, notify_dlq),
            alerts: wiring.alerts(deploys_queue.clone()),
            chatops: wiring.chatops(deploys_queue.clone()),
            console,
            builds_queue,
            events_queue,
            deploys_queue,
            notify_queue,
            runner,
        })
    }

    /// Hands what waits on the build queue to build-dispatch, as one Lambda batch.
    pub async fn step_builds(&self) {
        if let Some((event, received)) = batch(&self.builds_queue).await {
            let response = build_dispatch::handle_batch(&self.dispatch, &event, None).await;
            settle(&self.builds_queue, received, &response).await;
        }
    }

    /// Hands build results (state-change events) to build-dispatch.
    pub async fn step_events(&self) {
        if let Some((event, received)) = batch(&self.events_queue).await {
            let response = build_dispatch::handle_batch(&self.dispatch, &event, None).await;
            settle(&self.events_queue, received, &response).await;
        }
    }

    /// Hands deploy requests to deploy-promotion.
    pub async fn step_deploys(&self) {
        if let Some((event, received)) = batch(&self.deploys_queue).await {
            let response = deploy_promotion::handle_batch(&self.promotion, &event, None).await;
            settle(&self.deploys_queue, received, &response).await;
        }
    }

    /// What deploy-promotion's schedule does on AWS: pending promotions whose soak time is
    /// over go through their gate (cheap here: one local read).
    pub async fn step_sweep(&self) {
        if let Err(e) = deploy_promotion::promotions::sweep(&self.promotion).await {
            tracing::warn!(error = %e, "promotion sweep failed; the next pump tries again");
        }
    }

    /// The notifications waiting for the notifier, without taking them.
    pub async fn pending_notifications(&self) -> Vec<Notification> {
        self.notify_queue
            .list()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|m| messages::decode(&m.body).ok())
            .collect()
    }

    fn queues(&self) -> [&DurableQueue; 4] {
        [
            &self.builds_queue,
            &self.events_queue,
            &self.deploys_queue,
            &self.notify_queue,
        ]
    }

    /// Whether nothing is left on any queue: visible, in flight or put back for later.
    pub async fn idle(&self) -> bool {
        for queue in self.queues() {
            if queue.len().await.ok() != Some(0) {
                return false;
            }
        }
        true
    }

    /// How many messages the queues hold (visible, in flight or put back for later).
    pub async fn queued(&self) -> u64 {
        let mut n = 0;
        for queue in self.queues() {
            n += queue.len().await.unwrap_or(0);
        }
        n
    }

    /// Whether something can be done now: a build runs, or a message waits that a receive
    /// would return. What was put back for later stays in the store across a restart, so a
    /// stopping server need not wait for it.
    pub async fn busy(&self) -> bool {
        if self.runner.running() > 0 {
            return true;
        }
        for queue in self.queues() {
            if queue.depth().await.ok().flatten() != Some(0) {
                return true;
            }
        }
        false
    }

    /// Every consumer once, in the pipeline's order.
    pub async fn pump(&self) {
        self.step_builds().await;
        self.step_events().await;
        self.step_deploys().await;
        self.step_sweep().await;
        self.step_notify().await;
    }

    /// Hands notifications to the notifier (which prints console channels as it goes).
    pub async fn step_notify(&self) {
        if let Some((event, received)) = batch(&self.notify_queue).await {
            let response = notifier::handle_batch(&self.notifier, &event, None).await;
            settle(&self.notify_queue, received, &response).await;
        }
    }

    /// Serves `POST /github`, `POST /sentry` (and `/sentry/legacy?token=`) and `POST /telegram`
    /// on `listener`.
    pub fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> tokio::task::JoinHandle<()> {
        let stack = self.clone();
        // The status page has no sign-in here: it is served only to this machine.
        let page = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
        if let (true, Ok(address)) = (page, listener.local_addr()) {
            self.runner.link_logs(format!("http://{address}"));
        }
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let stack = stack.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| route(stack.clone(), req, page));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
    }
}

/// Real GitHub when its credentials are given; otherwise the local stand-in, which answers
/// from git and reports what it is told.
fn github(
    secrets: &Secrets,
    http: &reqwest::Client,
    repos: BTreeMap<String, PathBuf>,
    report: impl Fn(String) + Send + Sync + 'static,
) -> Arc<dyn GitHub> {
    match Auth::from_secrets(secrets) {
        Ok(auth) => {
            let base = std::env::var("GITHUB_API_URL")
                .unwrap_or_else(|_| shared::github::client::PUBLIC_API.into());
            Arc::new(GitHubClient::new(http.clone(), base, auth))
        }
        Err(_) => Arc::new(LocalGitHub::new(repos, Box::new(report))),
    }
}

/// Real Heroku when its API key is given; otherwise production is only reached by commands.
fn heroku(secrets: &Secrets, http: &reqwest::Client) -> Option<Arc<dyn Deployer>> {
    secrets.get("heroku_api_key").map(|key| {
        let base = std::env::var("HEROKU_API_URL")
            .unwrap_or_else(|_| deploy_promotion::targets::HEROKU_PUBLIC_API.into());
        Arc::new(Heroku::new(http.clone(), &base, key.clone())) as Arc<dyn Deployer>
    })
}

/// Console channels print here; the others go to their real service.
fn chat_channels(
    config: &Config,
    secrets: &Secrets,
    http: &reqwest::Client,
    console: &Arc<Console>,
) -> anyhow::Result<HashMap<String, Arc<dyn ChatChannel>>> {
    let mut channels: HashMap<String, Arc<dyn ChatChannel>> = HashMap::default();
    let console: Arc<dyn ChatChannel> = console.clone();
    for (name, channel) in &config.channels {
        if matches!(channel, Channel::Console(_)) {
            channels.insert(name.clone(), console.clone());
        }
    }
    let remote =
        notifier::channels_from_config(config, secrets, http, notifier::chat::TELEGRAM_PUBLIC_API)?;
    for (name, channel) in remote {
        channels.entry(name).or_insert(channel);
    }
    Ok(channels)
}

/// What the six functions' handlers share: one config, one state store, one clock, one
/// GitHub, one notification queue.
struct Wiring {
    config: Arc<Config>,
    secrets: Arc<Secrets>,
    http: reqwest::Client,
    state: Arc<DurableStore>,
    clock: Arc<SystemClock>,
    redelivery: Arc<DurableStore>,
    github: Arc<dyn GitHub>,
    notify: Arc<DurableQueue>,
}

impl Wiring {
    fn intake(&self, builds: Arc<DurableQueue>) -> anyhow::Result<webhook_intake::Deps> {
        Ok(webhook_intake::Deps {
            config: self.config.clone(),
            webhook_secret: self.secrets.require("github_webhook_secret")?.clone(),
            builds,
            state: self.state.clone(),
            clock: self.clock.clone(),
        })
    }

    fn dispatch(
        &self,
        runner: Arc<LocalBuildRunner>,
        deploys: Arc<DurableQueue>,
        [builds_dlq, events_dlq]: [Arc<dyn Queue>; 2],
    ) -> build_dispatch::Deps {
        build_dispatch::Deps {
            config: self.config.clone(),
            builds: runner,
            github: self.github.clone(),
            state: self.state.clone(),
            deploys,
            notify: self.notify.clone(),
            handoff: Handoff {
                redelivery: self.redelivery.clone(),
                dead_letters: Some(builds_dlq),
            },
            event_dead_letters: Some(events_dlq),
            clock: self.clock.clone(),
            region: "local".into(),
        }
    }

    /// Releases go to Heroku, a hook, or a local command.
    fn promotion(
        &self,
        deploys: Arc<DurableQueue>,
        dead_letters: Arc<dyn Queue>,
    ) -> deploy_promotion::Deps {
        deploy_promotion::Deps {
            deploys,
            config: self.config.clone(),
            github: self.github.clone(),
            deployer: Arc::new(Targets {
                heroku: heroku(&self.secrets, &self.http),
                hook: Arc::new(Hook::new(self.http.clone(), self.secrets.clone())),
                command: Some(Arc::new(Command)),
            }),
            state: self.state.clone(),
            notify: self.notify.clone(),
            handoff: Handoff {
                redelivery: self.redelivery.clone(),
                dead_letters: Some(dead_letters),
            },
            clock: self.clock.clone(),
            follow: deploy_promotion::Follow::default(),
        }
    }

    fn notifier(
        &self,
        channels: HashMap<String, Arc<dyn ChatChannel>>,
        dead_letters: Arc<dyn Queue>,
    ) -> notifier::Deps {
        notifier::Deps {
            config: self.config.clone(),
            channels,
            state: self.state.clone(),
            handoff: Handoff {
                redelivery: self.redelivery.clone(),
                dead_letters: Some(dead_letters),
            },
            clock: self.clock.clone(),
        }
    }

    /// The control room; without `telegram_webhook_secret` there is none (nobody could prove
    /// to be Telegram).
    fn chatops(&self, deploys: Arc<DurableQueue>) -> Option<chat_ops::Deps> {
        Some(chat_ops::Deps {
            webhook_secret: self.secrets.get("telegram_webhook_secret")?.clone(),
            config: self.config.clone(),
            deploys,
            notify: self.notify.clone(),
            dead_letters: Vec::new(),
            state: self.state.clone(),
            clock: self.clock.clone(),
        })
    }

    fn alerts(&self, deploys: Arc<DurableQueue>) -> alert_forwarder::Deps {
        alert_forwarder::Deps {
            deploys: Some(deploys),
            config: self.config.clone(),
            client_secret: self.secrets.get("sentry_client_secret").cloned(),
            legacy_token: self.secrets.get("sentry_legacy_token").cloned(),
            notify: self.notify.clone(),
            state: self.state.clone(),
            clock: self.clock.clone(),
        }
    }
}

async fn route(
    stack: Arc<Stack>,
    req: Request<Incoming>,
    page: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == hyper::Method::GET && req.uri().path() == "/" {
        return Ok(status_page(&stack, page).await);
    }
    // For a supervisor or a load balancer: no sign-in, as it tells nothing secret.
    if req.method() == hyper::Method::GET && req.uri().path() == "/healthz" {
        let queued = stack.queued().await;
        let body = serde_json::json!({ "status": "ok", "queued": queued }).to_string();
        return Ok(json_response(StatusCode::OK, body));
    }
    if let (&hyper::Method::GET, Some(id)) = (
        req.method(),
        req.uri()
            .path()
            .strip_prefix("/builds/")
            .and_then(|rest| rest.strip_suffix("/log")),
    ) {
        return Ok(build_log(&stack, id, page));
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let post = req.method() == hyper::Method::POST;
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, message) = match (post, path.as_str()) {
        (true, "/github") => {
            let r = webhook_intake::handle_delivery(&stack.intake, &headers, &body).await;
            (r.status, r.message)
        }
        (true, "/sentry") => {
            let r = alert_forwarder::handle_integration(&stack.alerts, &headers, &body).await;
            (r.status, r.message)
        }
        (true, "/sentry/legacy") => {
            let token = query_param(&query, "token").unwrap_or("").to_string();
            let r = alert_forwarder::handle_legacy(&stack.alerts, &token, &body).await;
            (r.status, r.message)
        }
        (true, "/telegram") => match &stack.chatops {
            // The answer is a Bot API call for Telegram to make, as the function's is.
            Some(chatops) => {
                let bot = query_param(&query, "bot");
                let answer = chat_ops::handle_update(chatops, &headers, &body, bot).await;
                return Ok(json_response(answer.status, answer.body.to_string()));
            }
            None => (
                StatusCode::NOT_FOUND,
                "the control room needs telegram_webhook_secret in the secrets".to_string(),
            ),
        },
        (false, "/github" | "/sentry" | "/sentry/legacy" | "/telegram") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "POST a webhook here".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "shipline serves GET / (the status page), GET /healthz, POST /github, POST /sentry and POST /telegram"
                .to_string(),
        ),
    };
    let body = serde_json::json!({ "message": message }).to_string();
    Ok(json_response(status, body))
}

/// `GET /`: the status page, to this machine only (it has no sign-in here).
async fn status_page(stack: &Stack, page: bool) -> Response<Full<Bytes>> {
    if !page {
        return json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"message": "the status page is served on a loopback address only"})
                .to_string(),
        );
    }
    let state: &(dyn shared::ports::StateStore + 'static) = stack.promotion.state.as_ref();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match status_page::gather(state, &stack.promotion.config, &Vec::new(), now).await {
        Ok(data) => Response::builder()
            .status(200)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(status_page::render::html(
                &data, now,
            ))))
            .expect("a static response builds"),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"message": format!("cannot read the state: {e}")}).to_string(),
        ),
    }
}

/// `GET /builds/{id}/log`: a local build's log, as plain text, to this machine only (the status
/// page links it).
fn build_log(stack: &Stack, id: &str, page: bool) -> Response<Full<Bytes>> {
    let log = if page { stack.runner.log(id) } else { None };
    match log {
        Some(lines) => Response::builder()
            .status(200)
            .header("content-type", "text/plain; charset=utf-8")
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(lines.join("\n") + "\n")))
            .expect("a static response builds"),
        None => json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"message": "no finished build of that id on this machine"})
                .to_string(),
        ),
    }
}

/// A query parameter's value as sent (tokens and usernames need no decoding).
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status.as_u16())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a static response builds")
}

/// Receives what is waiting on a queue (ten at most) as the SQS event Lambda would deliver.
async fn batch(queue: &DurableQueue) -> Option<(SqsEvent, Vec<Received>)> {
    let received = match queue.receive(10, VISIBILITY).await {
        Ok(received) => received,
        Err(e) => {
            tracing::warn!(queue = queue.name(), error = %e, "cannot receive; the next pump tries again");
            return None;
        }
    };
    if received.is_empty() {
        return None;
    }
    Some((queue.sqs_event(&received), received))
}

/// Deletes the messages the handler did not report as failed, as Lambda does with a partial
/// batch response. The failed ones stay, to be received again when their visibility ends
/// (moved already by the handler when it asked for a redelivery later).
async fn settle(
    queue: &DurableQueue,
    received: Vec<Received>,
    response: &aws_lambda_events::sqs::SqsBatchResponse,
) {
    let done: Vec<String> = received
        .into_iter()
        .filter(|m| {
            !response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == m.message_id)
        })
        .map(|m| m.receipt)
        .collect();
    if let Err(e) = queue.delete_batch(&done).await {
        tracing::warn!(queue = queue.name(), error = %e, "cannot delete handled messages; they will be received again");
    }
}
