//! webhook-intake: `POST /github`. Verify the signature over the raw body, answer `ping`, turn
//! push and pull_request deliveries into one `BuildRequest` each on the build queue, and never
//! enqueue the same delivery twice. Nothing on this path calls GitHub, CodeBuild or a chat.

pub mod plan;
pub mod webhook;

use std::borrow::Cow;
use std::sync::Arc;

use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use tracing::{Instrument, error, info, warn};

use crate::webhook::{
    DELIVERY_HEADER, EVENT_HEADER, PingEvent, PullRequestEvent, PushEvent, SIGNATURE_HEADER,
};
use shared::config::Config;
pub use shared::http::Reply;
use shared::ids::Sha;
use shared::messages::{self, BuildRequest};
use shared::ports::{Clock, OutgoingMessage, Precondition, Queue, StateError, StateStore};
use shared::records::StateKey;
use shared::secrets::SecretString;

use crate::plan::{Delivery, Plan};

/// GitHub caps a delivery at 25 MB and does not send a larger one; anything bigger is not
/// GitHub. (Behind API Gateway and Lambda the platform limits are lower still.)
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// GitHub lets a delivery be redelivered for 3 days (7 on Enterprise Server): a week of
/// memory covers both.
pub const DEDUP_TTL_SECS: i64 = 7 * 24 * 3600;

/// What intake needs, built once per cold start.
pub struct Deps {
    pub config: Arc<Config>,
    pub webhook_secret: SecretString,
    pub builds: Arc<dyn Queue>,
    pub state: Arc<dyn StateStore>,
    pub clock: Arc<dyn Clock>,
}

impl Deps {
    /// What queueing a planned delivery needs.
    pub fn enqueue(&self) -> Enqueue<'_> {
        Enqueue {
            config: &self.config,
            builds: self.builds.as_ref(),
            state: self.state.as_ref(),
            clock: self.clock.as_ref(),
        }
    }
}

/// What planning and queueing a delivery needs once its origin is established (a verified
/// signature, or GitHub's deliveries API read with shipline's own credentials).
pub struct Enqueue<'a> {
    pub config: &'a Config,
    pub builds: &'a dyn Queue,
    pub state: &'a dyn StateStore,
    pub clock: &'a dyn Clock,
}

/// The Lambda entry point (API Gateway HTTP API v2 or a function URL). `lambda_http` has
/// already base64-decoded the body when `isBase64Encoded` was set, so the bytes are the raw
/// bytes GitHub signed.
pub async fn handle(
    deps: &Deps,
    request: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let reply = if request.method() != Method::POST {
        Reply::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST a GitHub webhook delivery here",
        )
    } else {
        handle_delivery(deps, request.headers(), request.body().as_ref()).await
    };
    Ok(reply.into_response())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// One delivery, from raw headers and body to a reply. Shared by the Lambda handler and the
/// local server.
pub async fn handle_delivery(deps: &Deps, headers: &HeaderMap, body: &[u8]) -> Reply {
    let delivery_id = header(headers, DELIVERY_HEADER).unwrap_or("").to_string();
    let event = header(headers, EVENT_HEADER).unwrap_or("").to_string();
    let span = tracing::info_span!("delivery", delivery_id = %delivery_id, event = %event);
    let reply = process(deps, headers, body, &delivery_id, &event)
        .instrument(span.clone())
        .await;
    span.in_scope(|| {
        if reply.status.is_server_error() {
            error!(status = reply.status.as_u16(), reason = %reply.message, "delivery failed");
        } else if reply.status.is_client_error() {
            warn!(status = reply.status.as_u16(), reason = %reply.message, "delivery refused");
        } else {
            info!(status = reply.status.as_u16(), outcome = %reply.message, "delivery answered");
        }
    });
    reply
}

async fn process(
    deps: &Deps,
    headers: &HeaderMap,
    body: &[u8],
    delivery_id: &str,
    event: &str,
) -> Reply {
    let accepted = accept(
        &deps.config,
        deps.webhook_secret.expose().as_bytes(),
        headers,
        body,
        delivery_id,
        event,
        deps.clock.rfc3339(),
    );
    match accepted {
        Err(reply) => reply,
        Ok(Plan::Ignore(reason)) => Reply::new(StatusCode::OK, format!("ignored: {reason}")),
        Ok(Plan::Build(request)) => enqueue_once(&deps.enqueue(), &request).await,
    }
}

/// A delivery whose payload came from GitHub's deliveries API (too large for Lambda, or never
/// delivered): planned and queued exactly as a verified delivery is.
pub async fn queue_payload(
    target: &Enqueue<'_>,
    delivery_id: &str,
    event: &str,
    payload: &[u8],
) -> Reply {
    let span = tracing::info_span!("delivery", delivery_id = %delivery_id, event = %event, source = "deliveries API");
    let planned = plan_payload(
        target.config,
        delivery_id,
        event,
        payload,
        target.clock.rfc3339(),
    );
    async {
        match planned {
            Err(reply) => reply,
            Ok(Plan::Ignore(reason)) => Reply::new(StatusCode::OK, format!("ignored: {reason}")),
            Ok(Plan::Build(request)) => enqueue_once(target, &request).await,
        }
    }
    .instrument(span)
    .await
}

/// Everything intake decides without I/O: verify the signature over the raw body, read the
/// payload, and plan what the delivery asks for, or give the reply to send at once (a refusal,
/// or ping's pong). `Plan::Build`
/// is what goes on the queue; the benchmarks measure this function against its floor.
pub fn accept(
    config: &Config,
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    delivery_id: &str,
    event: &str,
    received_at: String,
) -> Result<Plan, Reply> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Reply::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than GitHub's 25 MB cap",
        ));
    }
    // Nothing is parsed before the signature holds.
    webhook::SIGNATURE
        .verify(secret, body, header(headers, SIGNATURE_HEADER))
        .map_err(|e| Reply::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let payload = json_payload(headers, body)?;
    plan_payload(config, delivery_id, event, &payload, received_at)
}

/// Plans a delivery's JSON payload whose origin is established: what to build, or the reply
/// to send at once (a refusal, or ping's pong).
pub fn plan_payload(
    config: &Config,
    delivery_id: &str,
    event: &str,
    payload: &[u8],
    received_at: String,
) -> Result<Plan, Reply> {
    if event.is_empty() {
        return Err(Reply::new(
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Event header",
        ));
    }
    if delivery_id.is_empty() {
        return Err(Reply::new(
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Delivery header",
        ));
    }
    let delivery = Delivery {
        id: delivery_id,
        received_at,
    };
    let bad_request = |e: webhook::PayloadError| Reply::new(StatusCode::BAD_REQUEST, e.to_string());
    Ok(match event {
        "ping" => {
            webhook::parse::<PingEvent>(payload).map_err(bad_request)?;
            return Err(Reply::new(StatusCode::OK, "pong"));
        }
        "push" => plan::plan_push(
            config,
            &webhook::parse::<PushEvent>(payload).map_err(bad_request)?,
            delivery,
        ),
        "pull_request" => plan::plan_pull_request(
            config,
            &webhook::parse::<PullRequestEvent>(payload).map_err(bad_request)?,
            delivery,
        ),
        other => Plan::Ignore(format!("event `{other}` does not start a build")),
    })
}

/// The JSON text of the delivery: the body itself (not copied), or the `payload` field of a
/// form body.
fn json_payload<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<Cow<'a, [u8]>, Reply> {
    let content_type = header(headers, "content-type").unwrap_or("");
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/json" => Ok(Cow::Borrowed(body)),
        "application/x-www-form-urlencoded" => form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| Cow::Owned(v.into_owned().into_bytes()))
            .ok_or_else(|| Reply::new(StatusCode::BAD_REQUEST, "form body has no `payload` field")),
        _ => Err(Reply::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type must be application/json or application/x-www-form-urlencoded",
        )),
    }
}

/// What the dedup record (`StateKey::Delivery`) remembers of an accepted delivery.
#[derive(Debug, Serialize, Deserialize)]
struct DeliveryRecord {
    repo: String,
    sha: Sha,
    queued_at: i64,
}

/// Enqueues the request unless this delivery was enqueued before.
///
/// The order matters: the dedup record is written only after the message is on the queue, so
/// a delivery whose enqueue failed never looks done, and GitHub's redelivery tries again. Two
/// copies racing past the check both send with the delivery id as FIFO deduplication id, and
/// SQS keeps one.
async fn enqueue_once(target: &Enqueue<'_>, request: &BuildRequest) -> Reply {
    let key = StateKey::Delivery(&request.delivery_id);
    let now = target.clock.unix();
    match target.state.read_value::<DeliveryRecord>(key, now).await {
        Ok(Some(_)) => {
            return Reply::new(
                StatusCode::OK,
                "duplicate: this delivery was already queued",
            );
        }
        Ok(None) => {}
        // GitHub never redelivers by itself: a refusal here could lose the push. Queue it
        // anyway; a duplicate is absorbed by the FIFO deduplication id (the delivery id) and
        // build-dispatch's request record.
        Err(e) => {
            warn!(error = %e, "cannot check the delivery against earlier ones; queueing it anyway")
        }
    }
    let message = OutgoingMessage::fifo(
        messages::encode(request),
        request.message_group_id(),
        messages::fifo_id(&request.delivery_id),
    );
    if let Err(e) = target.builds.send(message).await {
        error!(error = %e, "cannot enqueue the build request");
        return Reply::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "build queue unavailable; redeliver later",
        );
    }
    let record = DeliveryRecord {
        repo: request.repo.clone(),
        sha: request.sha.clone(),
        queued_at: now,
    };
    match target
        .state
        .write(
            key,
            &record,
            Precondition::Absent,
            Some(now + DEDUP_TTL_SECS),
            now,
        )
        .await
    {
        Ok(_) | Err(StateError::ConditionFailed) => {}
        // The message is queued and the build will run; without the record a much later
        // redelivery could queue it again, which build-dispatch's own idempotency absorbs.
        Err(e) => warn!(error = %e, "queued, but the dedup record was not written"),
    }
    Reply::new(
        StatusCode::ACCEPTED,
        format!(
            "queued: build of {} at {}",
            request.line_of_work(),
            request.short_sha()
        ),
    )
}
