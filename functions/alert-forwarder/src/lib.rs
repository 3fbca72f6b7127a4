//! alert-forwarder: `POST /sentry` (integration platform, signed) and `POST /sentry/legacy`
//! (the self-hosted WebHooks plugin, with a URL token). Verify, route by project, throttle per
//! issue, add the release that is live, enqueue one `Notification`. Sentry gives a webhook one
//! second, so nothing here calls a chat: only the state table and the queue.

pub mod sentry;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use crate::sentry::{
    Alert, Change, Delivery, REQUEST_ID_HEADER, RESOURCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use shared::config::{Config, UnknownProjects};
pub use shared::http::Reply;
use shared::messages::{self, Facts, Notification, NotificationKind, short_sha};
use shared::ports::{Clock, OutgoingMessage, Precondition, Queue, StateError, StateStore};
use shared::records::{LiveRecord, StateKey};
use shared::secrets::SecretString;
use shared::signature::token_matches;
use tracing::{Instrument, error, info, warn};

/// Sentry alert bodies are small; a megabyte is far beyond any.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct Deps {
    pub config: Arc<Config>,
    pub client_secret: Option<SecretString>,
    pub legacy_token: Option<SecretString>,
    pub notify: Arc<dyn Queue>,
    /// `deploys.fifo`, for automatic rollbacks (none: alerts never roll back).
    pub deploys: Option<Arc<dyn Queue>>,
    pub state: Arc<dyn StateStore>,
    pub clock: Arc<dyn Clock>,
}

pub async fn handle(
    deps: &Deps,
    request: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let legacy = request
        .uri()
        .path()
        .trim_end_matches('/')
        .ends_with("/legacy");
    let reply = if request.method() != Method::POST {
        Reply::new(StatusCode::METHOD_NOT_ALLOWED, "POST a Sentry webhook here")
    } else if legacy {
        let token = request
            .query_string_parameters_ref()
            .and_then(|q| q.first("token").map(str::to_string))
            .unwrap_or_default();
        handle_legacy(deps, &token, request.body().as_ref()).await
    } else {
        handle_integration(deps, request.headers(), request.body().as_ref()).await
    };
    Ok(reply.into_response())
}

/// An integration-platform delivery: signature first, then the resource.
pub async fn handle_integration(deps: &Deps, headers: &HeaderMap, body: &[u8]) -> Reply {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request_id = header(REQUEST_ID_HEADER).unwrap_or("").to_string();
    let resource = header(RESOURCE_HEADER).unwrap_or("").to_string();
    let span = tracing::info_span!("sentry", request_id = %request_id, resource = %resource);
    async {
        if body.len() > MAX_BODY_BYTES {
            return Reply::new(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        let Some(secret) = &deps.client_secret else {
            return Reply::new(
                StatusCode::UNAUTHORIZED,
                "no sentry_client_secret is configured",
            );
        };
        if let Err(e) =
            sentry::SIGNATURE.verify(secret.expose().as_bytes(), body, header(SIGNATURE_HEADER))
        {
            return Reply::new(StatusCode::UNAUTHORIZED, e.to_string());
        }
        if let Err(e) = sentry::check_timestamp(header(TIMESTAMP_HEADER), deps.clock.unix()) {
            return Reply::new(StatusCode::UNAUTHORIZED, e.to_string());
        }
        once_per_request(deps, &request_id, async {
            match sentry::parse_integration(&resource, body) {
                Ok(delivery) => act(deps, delivery).await,
                Err(e) => Reply::new(StatusCode::BAD_REQUEST, e.to_string()),
            }
        })
        .await
    }
    .instrument(span.clone())
    .await
    .logged(&span)
}

/// How long a Sentry delivery's `Request-ID` is remembered: far longer than Sentry retries.
const REQUEST_TTL_SECS: i64 = 24 * 3600;
/// A claim older than this was left by an invocation that died while answering (the function's
/// timeout is far shorter): the next copy of the delivery takes it over.
const CLAIM_STALE_SECS: i64 = 120;

/// What the state table remembers of a `Request-ID`: `true` once answered with success, or
/// the time an invocation claimed it and began answering.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum RequestMark {
    Answered(bool),
    Answering { answering_since: i64 },
}

/// Answers a delivery Sentry sends again (the same `Request-ID`) without acting twice: a
/// resolved or regressed alert, which no throttle holds back, is posted once, even when two
/// copies arrive together (the request is claimed with a create-only write before anything is
/// done). A failed answer gives the claim back, so Sentry's retry acts. The state table
/// unreachable never refuses an alert: it goes through unremembered.
async fn once_per_request(
    deps: &Deps,
    request_id: &str,
    act: impl Future<Output = Reply>,
) -> Reply {
    if request_id.is_empty() {
        return act.await;
    }
    let key = StateKey::SentryRequest(request_id);
    let now = deps.clock.unix();
    let version = match claim(deps, key, now).await {
        Ok(Some(version)) => Some(version),
        Ok(None) => return Reply::new(StatusCode::OK, "duplicate: this request was answered"),
        Err(e) => {
            warn!(error = %e, "cannot tell a repeated request; acting on it");
            None
        }
    };
    let reply = act.await;
    let Some(version) = version else {
        return reply;
    };
    let kept = if reply.status.is_success() {
        let answered = RequestMark::Answered(true);
        let expires = Some(now + REQUEST_TTL_SECS);
        let written =
            deps.state
                .write(key, &answered, Precondition::Version(version), expires, now);
        written.await.map(drop)
    } else {
        deps.state.remove(key).await
    };
    if let Err(e) = kept {
        warn!(error = %e, "cannot record how the request was answered");
    }
    reply
}

/// Claims a request for this invocation: its version, or `None` when another answered it or is
/// answering it now.
async fn claim(deps: &Deps, key: StateKey<'_>, now: i64) -> Result<Option<u64>, StateError> {
    let mark = RequestMark::Answering {
        answering_since: now,
    };
    let expires = Some(now + REQUEST_TTL_SECS);
    match deps
        .state
        .write(key, &mark, Precondition::Absent, expires, now)
        .await
    {
        Ok(version) => return Ok(Some(version)),
        Err(StateError::ConditionFailed) => {}
        Err(e) => return Err(e),
    }
    let Some(stored) = deps.state.read::<RequestMark>(key, now).await? else {
        return Ok(None);
    };
    match stored.value {
        RequestMark::Answering { answering_since } if answering_since < now - CLAIM_STALE_SECS => {
            let taken = Precondition::Version(stored.version);
            match deps.state.write(key, &mark, taken, expires, now).await {
                Ok(version) => Ok(Some(version)),
                Err(StateError::ConditionFailed) => Ok(None),
                Err(e) => Err(e),
            }
        }
        _ => Ok(None),
    }
}

/// A legacy plugin delivery: the token in the URL stands in for a signature.
pub async fn handle_legacy(deps: &Deps, token: &str, body: &[u8]) -> Reply {
    let span = tracing::info_span!("sentry_legacy");
    async {
        if body.len() > MAX_BODY_BYTES {
            return Reply::new(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        let Some(expected) = &deps.legacy_token else {
            return Reply::new(
                StatusCode::UNAUTHORIZED,
                "no sentry_legacy_token is configured",
            );
        };
        if !token_matches(token, expected.expose()) {
            return Reply::new(StatusCode::UNAUTHORIZED, "wrong or missing token");
        }
        match sentry::parse_legacy(body) {
            Ok(delivery) => act(deps, delivery).await,
            Err(e) => Reply::new(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
    .instrument(span.clone())
    .await
    .logged(&span)
}

trait Logged {
    fn logged(self, span: &tracing::Span) -> Self;
}

impl Logged for Reply {
    fn logged(self, span: &tracing::Span) -> Self {
        span.in_scope(|| {
            if self.status.is_server_error() {
                error!(status = self.status.as_u16(), reason = %self.message, "alert failed");
            } else if self.status.is_client_error() {
                warn!(status = self.status.as_u16(), reason = %self.message, "alert refused");
            } else {
                info!(status = self.status.as_u16(), outcome = %self.message, "alert answered");
            }
        });
        self
    }
}

async fn act(deps: &Deps, delivery: Delivery) -> Reply {
    match delivery {
        Delivery::Acknowledged(what) => Reply::new(StatusCode::OK, format!("acknowledged: {what}")),
        Delivery::Ignored(why) => Reply::new(StatusCode::OK, format!("ignored: {why}")),
        Delivery::Alert(alert) => forward(deps, &alert).await,
    }
}

/// Where a project's alerts go and from which level.
fn route(
    config: &Config,
    project: &str,
) -> Result<(Vec<String>, shared::config::Level, Duration), String> {
    match config.sentry.projects.get(project) {
        Some(p) => Ok((
            p.notify
                .as_ref()
                .unwrap_or(&config.defaults.notify)
                .iter()
                .map(|c| c.value.clone())
                .collect(),
            p.min_level,
            p.throttle.unwrap_or(config.sentry.throttle),
        )),
        None if config.sentry.unknown_projects == UnknownProjects::Ignore => {
            Err(format!("Sentry project `{project}` is not in the config"))
        }
        None => Ok((
            config
                .defaults
                .notify
                .iter()
                .map(|c| c.value.clone())
                .collect(),
            shared::config::Level::Error,
            config.sentry.throttle,
        )),
    }
}

/// Per issue (`StateKey::Throttle`): when the window opened and how many events it swallowed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Throttle {
    window_start: i64,
    suppressed: u64,
    /// RFC 3339 time of the first suppressed event.
    suppressed_since: Option<String>,
}

impl Throttle {
    fn opened(now: i64) -> Self {
        Throttle {
            window_start: now,
            suppressed: 0,
            suppressed_since: None,
        }
    }

    /// How many events the window held back, and since when; `None` when it held none.
    fn summary(&self) -> Option<(u64, String)> {
        (self.suppressed > 0).then(|| {
            (
                self.suppressed,
                self.suppressed_since.clone().unwrap_or_default(),
            )
        })
    }

    fn counted(self, now_rfc3339: impl FnOnce() -> String) -> Self {
        Throttle {
            suppressed: self.suppressed + 1,
            suppressed_since: self.suppressed_since.or_else(|| Some(now_rfc3339())),
            ..self
        }
    }
}

/// The throttle's decision for one event.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Tell the chat; `Some(n, since)` when n earlier events were held back.
    Tell(Option<(u64, String)>),
    Hold,
}

/// At most one message per issue per window; the first event after a window also carries how
/// many were held back. Conditional writes make two concurrent invocations agree.
async fn throttle(
    deps: &Deps,
    key: StateKey<'_>,
    window: Duration,
    now: i64,
) -> Result<Pass, StateError> {
    let window = window.as_secs() as i64;
    let expires = now + 2 * window + 3600;
    for _ in 0..8 {
        let (decision, next, precondition) = match deps.state.read::<Throttle>(key, now).await? {
            None => (
                Pass::Tell(None),
                Throttle::opened(now),
                Precondition::Absent,
            ),
            Some(stored) if now - stored.value.window_start >= window => (
                Pass::Tell(stored.value.summary()),
                Throttle::opened(now),
                Precondition::Version(stored.version),
            ),
            Some(stored) => (
                Pass::Hold,
                stored.value.counted(|| deps.clock.rfc3339()),
                Precondition::Version(stored.version),
            ),
        };
        match deps
            .state
            .write(key, &next, precondition, Some(expires), now)
            .await
        {
            Ok(_) => return Ok(decision),
            Err(StateError::ConditionFailed) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StateError::ConditionFailed)
}

/// "abc1234 (v43) on heroku:pax-gateway, 2h ago" for the service this project watches.
async fn live_release(deps: &Deps, project: &str, now: i64) -> Option<String> {
    for (name, repo) in &deps.config.repos {
        if repo.sentry_project.as_ref().map(|s| s.value.as_str()) != Some(project) {
            continue;
        }
        for rule in &repo.deploy {
            let target = rule.target_key(name);
            // A target with nothing recorded (never deployed) is skipped, and so is one whose
            // record cannot be read (the table unreachable, a corrupt record): the alert goes
            // out without the line rather than not at all.
            let live = match deps
                .state
                .read_value::<LiveRecord>(StateKey::Live(&target), now)
                .await
            {
                Ok(Some(live)) => live,
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, target = %target, "live release unknown; the alert goes without it");
                    continue;
                }
            };
            return Some(describe_live(&live, &target, now));
        }
    }
    None
}

fn describe_live(live: &LiveRecord, target: &str, now: i64) -> String {
    let ago = time::OffsetDateTime::parse(&live.at, &time::format_description::well_known::Rfc3339)
        .map(|at| human_ago(now - at.unix_timestamp()))
        .unwrap_or_default();
    format!(
        "{}{} on {target}{}",
        short_sha(&live.sha),
        live.version
            .as_ref()
            .map(|v| format!(" ({v})"))
            .unwrap_or_default(),
        if ago.is_empty() {
            String::new()
        } else {
            format!(", deployed {ago}")
        }
    )
}

fn human_ago(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => "just now".into(),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

async fn forward(deps: &Deps, alert: &Alert) -> Reply {
    // Before routing and throttling: a gate and a rollback weigh every event.
    watch::watch(deps, alert).await;
    let now = deps.clock.unix();
    let (channels, min_level, window) = match route(&deps.config, &alert.project) {
        Ok(route) => route,
        Err(reason) => return Reply::new(StatusCode::OK, format!("ignored: {reason}")),
    };
    if channels.is_empty() {
        return Reply::new(StatusCode::OK, "ignored: no channels for this project");
    }
    let always = matches!(alert.change, Change::Resolved | Change::Regressed);
    if !always && alert.level < min_level {
        return Reply::new(
            StatusCode::OK,
            format!("ignored: level {:?} is below {:?}", alert.level, min_level),
        );
    }
    let summary = if always {
        None
    } else {
        let key = StateKey::Throttle {
            project: &alert.project,
            issue: &alert.issue,
        };
        match throttle(deps, key, window, now).await {
            Ok(Pass::Tell(summary)) => summary,
            Ok(Pass::Hold) => {
                return Reply::new(StatusCode::OK, "throttled: counted for the next summary");
            }
            Err(e) => {
                error!(error = %e, "throttle unavailable");
                return Reply::new(StatusCode::INTERNAL_SERVER_ERROR, "state store unavailable");
            }
        }
    };
    let release = live_release(deps, &alert.project, now).await;
    let notification = Notification {
        v: messages::VERSION,
        kind: NotificationKind::ErrorAlert,
        thread_key: format!("sentry:{}:{}:{now}", alert.project, alert.issue),
        channels,
        facts: facts(alert, summary, release),
        at: deps.clock.rfc3339(),
    };
    match deps
        .notify
        .send(OutgoingMessage::new(messages::encode(&notification)))
        .await
    {
        Ok(()) => Reply::new(StatusCode::ACCEPTED, "queued"),
        Err(e) => {
            error!(error = %e, "cannot enqueue the notification");
            Reply::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "notification queue unavailable",
            )
        }
    }
}

/// What the chat shows of an alert: the summary of held-back events, when there is one, takes
/// the culprit's place.
fn facts(alert: &Alert, summary: Option<(u64, String)>, release: Option<String>) -> Facts {
    let status = match alert.change {
        Change::Raised => None,
        Change::Regressed => Some("regressed".to_string()),
        Change::Resolved => Some("resolved".to_string()),
        Change::Updated => Some(alert.action.clone()),
    };
    Facts {
        title: Some(alert.title.clone()),
        target: Some(alert.project.clone().into()),
        level: Some(format!("{:?}", alert.level).to_lowercase()),
        status,
        count: summary.as_ref().map(|(n, _)| *n),
        reason: summary
            .as_ref()
            .map(|(n, since)| {
                format!(
                    "{n} more event{} since {since}",
                    if *n == 1 { "" } else { "s" }
                )
            })
            .or_else(|| alert.culprit.clone()),
        release,
        url: alert.url.clone(),
        ..Facts::default()
    }
}
