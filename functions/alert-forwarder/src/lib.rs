//! alert-forwarder: `POST /sentry` (integration platform, signed) and `POST /sentry/legacy`
//! (the self-hosted WebHooks plugin, with a URL token). Verify, route by project, throttle per
//! issue, add the release that is live, enqueue one `Notification`. Sentry gives a webhook one
//! second, so nothing here calls a chat: only the state table and the queue.

pub mod sentry;

use std::sync::Arc;
use std::time::Duration;

use crate::sentry::{Alert, Change, Delivery, RESOURCE_HEADER, SIGNATURE_HEADER};
use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::config::{Config, UnknownProjects};
use shared::messages::{self, Facts, Notification, NotificationKind, short_sha};
use shared::ports::{Clock, OutgoingMessage, Precondition, Queue, StateError, StateStore};
use shared::records::{LiveRecord, StateKey};
use shared::secrets::SecretString;
use tracing::{Instrument, error, info, warn};

/// Sentry alert bodies are small; a megabyte is far beyond any.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct Deps {
    pub config: Arc<Config>,
    pub client_secret: Option<SecretString>,
    pub legacy_token: Option<SecretString>,
    pub notify: Arc<dyn Queue>,
    pub state: Arc<dyn StateStore>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub message: String,
}

fn reply(status: StatusCode, message: impl Into<String>) -> Reply {
    Reply {
        status,
        message: message.into(),
    }
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
        reply(StatusCode::METHOD_NOT_ALLOWED, "POST a Sentry webhook here")
    } else if legacy {
        let token = request
            .query_string_parameters_ref()
            .and_then(|q| q.first("token").map(str::to_string))
            .unwrap_or_default();
        handle_legacy(deps, &token, request.body().as_ref()).await
    } else {
        handle_integration(deps, request.headers(), request.body().as_ref()).await
    };
    Ok(Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .body(Body::Text(json!({ "message": reply.message }).to_string()))
        .expect("a static response builds"))
}

/// An integration-platform delivery: signature first, then the resource.
pub async fn handle_integration(deps: &Deps, headers: &HeaderMap, body: &[u8]) -> Reply {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request_id = header("request-id").unwrap_or("").to_string();
    let resource = header(RESOURCE_HEADER).unwrap_or("").to_string();
    let span = tracing::info_span!("sentry", request_id = %request_id, resource = %resource);
    async {
        if body.len() > MAX_BODY_BYTES {
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        let Some(secret) = &deps.client_secret else {
            return reply(
                StatusCode::UNAUTHORIZED,
                "no sentry_client_secret is configured",
            );
        };
        if let Err(e) =
            sentry::verify_signature(secret.expose().as_bytes(), body, header(SIGNATURE_HEADER))
        {
            return reply(StatusCode::UNAUTHORIZED, e.to_string());
        }
        match sentry::parse_integration(&resource, body) {
            Ok(delivery) => act(deps, delivery).await,
            Err(e) => reply(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
    .instrument(span.clone())
    .await
    .logged(&span)
}

/// A legacy plugin delivery: the token in the URL stands in for a signature.
pub async fn handle_legacy(deps: &Deps, token: &str, body: &[u8]) -> Reply {
    let span = tracing::info_span!("sentry_legacy");
    async {
        if body.len() > MAX_BODY_BYTES {
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        let Some(expected) = &deps.legacy_token else {
            return reply(
                StatusCode::UNAUTHORIZED,
                "no sentry_legacy_token is configured",
            );
        };
        if !shared::signature::token_matches(token, expected.expose()) {
            return reply(StatusCode::UNAUTHORIZED, "wrong or missing token");
        }
        match sentry::parse_legacy(body) {
            Ok(delivery) => act(deps, delivery).await,
            Err(e) => reply(StatusCode::BAD_REQUEST, e.to_string()),
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
        Delivery::Acknowledged(what) => reply(StatusCode::OK, format!("acknowledged: {what}")),
        Delivery::Ignored(why) => reply(StatusCode::OK, format!("ignored: {why}")),
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

/// Per issue: when the window opened and how many events it swallowed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Throttle {
    window_start: i64,
    suppressed: u64,
    /// RFC 3339 time of the first suppressed event.
    suppressed_since: Option<String>,
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
async fn throttle(deps: &Deps, key: &str, window: Duration, now: i64) -> Result<Pass, StateError> {
    for _ in 0..8 {
        let current = deps.state.get(key, now).await?;
        let expires = now + 2 * window.as_secs() as i64 + 3600;
        let (decision, next, precondition) = match &current {
            None => (
                Pass::Tell(None),
                Throttle {
                    window_start: now,
                    suppressed: 0,
                    suppressed_since: None,
                },
                Precondition::Absent,
            ),
            Some(record) => {
                let t: Throttle = serde_json::from_value(record.value.clone())
                    .map_err(|e| StateError::Corrupt(e.to_string()))?;
                if now - t.window_start >= window.as_secs() as i64 {
                    let summary = (t.suppressed > 0)
                        .then(|| (t.suppressed, t.suppressed_since.clone().unwrap_or_default()));
                    (
                        Pass::Tell(summary),
                        Throttle {
                            window_start: now,
                            suppressed: 0,
                            suppressed_since: None,
                        },
                        Precondition::Version(record.version),
                    )
                } else {
                    let since = t
                        .suppressed_since
                        .clone()
                        .or_else(|| Some(deps.clock.rfc3339()));
                    (
                        Pass::Hold,
                        Throttle {
                            suppressed: t.suppressed + 1,
                            suppressed_since: since,
                            ..t
                        },
                        Precondition::Version(record.version),
                    )
                }
            }
        };
        let value = serde_json::to_value(&next).expect("records serialise");
        match deps
            .state
            .put(key, value, precondition, Some(expires), now)
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
            // A target with nothing recorded (never deployed, or the table unreachable) is
            // skipped: the alert goes out without the line rather than not at all.
            let Some(record) = deps
                .state
                .get(&StateKey::Live(&target).to_string(), now)
                .await
                .ok()
                .flatten()
            else {
                continue;
            };
            let Ok(live) = serde_json::from_value::<LiveRecord>(record.value) else {
                continue;
            };
            let ago = time::OffsetDateTime::parse(
                &live.at,
                &time::format_description::well_known::Rfc3339,
            )
            .map(|at| human_ago(now - at.unix_timestamp()))
            .unwrap_or_default();
            return Some(format!(
                "{}{} on {target}{}",
                short_sha(&live.sha),
                live.version.map(|v| format!(" ({v})")).unwrap_or_default(),
                if ago.is_empty() {
                    String::new()
                } else {
                    format!(", deployed {ago}")
                }
            ));
        }
    }
    None
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
    let now = deps.clock.unix();
    let (channels, min_level, window) = match route(&deps.config, &alert.project) {
        Ok(route) => route,
        Err(reason) => return reply(StatusCode::OK, format!("ignored: {reason}")),
    };
    if channels.is_empty() {
        return reply(StatusCode::OK, "ignored: no channels for this project");
    }
    let always = matches!(alert.change, Change::Resolved | Change::Regressed);
    if !always && alert.level < min_level {
        return reply(
            StatusCode::OK,
            format!("ignored: level {:?} is below {:?}", alert.level, min_level),
        );
    }
    let summary = if always {
        None
    } else {
        let key = format!("throttle:{}:{}", alert.project, alert.issue);
        match throttle(deps, &key, window, now).await {
            Ok(Pass::Tell(summary)) => summary,
            Ok(Pass::Hold) => {
                return reply(StatusCode::OK, "throttled: counted for the next summary");
            }
            Err(e) => {
                error!(error = %e, "throttle unavailable");
                return reply(StatusCode::INTERNAL_SERVER_ERROR, "state store unavailable");
            }
        }
    };
    let status = match alert.change {
        Change::Raised => None,
        Change::Regressed => Some("regressed".to_string()),
        Change::Resolved => Some("resolved".to_string()),
        Change::Updated => Some(alert.action.clone()),
    };
    let facts = Facts {
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
        release: live_release(deps, &alert.project, now).await,
        url: alert.url.clone(),
        ..Facts::default()
    };
    let notification = Notification {
        v: messages::VERSION,
        kind: NotificationKind::ErrorAlert,
        thread_key: format!("sentry:{}:{}:{now}", alert.project, alert.issue),
        channels,
        facts,
        at: deps.clock.rfc3339(),
    };
    match deps
        .notify
        .send(OutgoingMessage::new(messages::encode(&notification)))
        .await
    {
        Ok(()) => reply(StatusCode::ACCEPTED, "queued"),
        Err(e) => {
            error!(error = %e, "cannot enqueue the notification");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "notification queue unavailable",
            )
        }
    }
}
