//! build-dispatch: every `BuildRequest` becomes a CodeBuild build of that exact commit, with
//! its status on GitHub; every build result becomes a final status, a `DeployRequest` when a
//! stable branch went green, and `Notification`s. A scheduled sweep finalises builds whose
//! events were lost, so no status stays pending.

pub mod codebuild;
mod error;
mod finalize;
pub mod plan;
mod records;
mod report;
pub mod run;
mod start;
mod sweep;

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::Value;
use shared::batch::{self, BatchContext, Handoff, Outcome};
use shared::config::Config;
use shared::messages::{self, BuildRequest, MessageError, short_sha};
use shared::ports::{Clock, GitHub, Queue, StateStore};
use tracing::Instrument;

use crate::codebuild::{Builds, StateChangeEvent};
pub use crate::error::DispatchError;
pub use crate::sweep::{SweepReport, sweep};

pub struct Deps {
    pub config: Arc<Config>,
    pub builds: Arc<dyn Builds>,
    pub github: Arc<dyn GitHub>,
    pub state: Arc<dyn StateStore>,
    pub deploys: Arc<dyn Queue>,
    pub notify: Arc<dyn Queue>,
    /// Where unfinished messages go: back to `builds.fifo` after a wait, or to its DLQ.
    pub handoff: Handoff,
    /// build-events' dead-letter queue (a standard queue, as build-events is): a CodeBuild
    /// event that can never succeed goes there.
    pub event_dead_letters: Option<Arc<dyn Queue>>,
    pub clock: Arc<dyn Clock>,
    /// The AWS region, for console links before CloudWatch's deep link is known.
    pub region: String,
}

/// The Lambda entry point: an SQS batch (from `builds.fifo` or `build-events`), or the
/// scheduled sweep.
pub async fn handle(
    deps: &Deps,
    event: Value,
    deadline: Option<Instant>,
) -> Result<Value, lambda_runtime::Error> {
    if event.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(event)?;
        let response = handle_batch(deps, &event, deadline).await;
        return Ok(serde_json::to_value(response)?);
    }
    let report = sweep(deps).await;
    Ok(serde_json::to_value(report)?)
}

pub async fn handle_batch(
    deps: &Deps,
    event: &SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let ctx = BatchContext::of(&deps.handoff, &*deps.state, &*deps.clock, deadline)
        .dead_letters(dead_letters_for(deps, event));
    batch::process(event, &ctx, |message| async move {
        handle_message(deps, &message).await
    })
    .await
}

/// The dead-letter queue of the queue the batch came from: one event source mapping sends one
/// queue's messages, and a FIFO queue's DLQ is FIFO (builds.fifo), a standard queue's standard
/// (build-events).
fn dead_letters_for<'a>(deps: &'a Deps, event: &SqsEvent) -> Option<&'a dyn Queue> {
    let from_fifo = event
        .records
        .first()
        .is_some_and(|m| m.attributes.contains_key("MessageGroupId"));
    if from_fifo {
        deps.handoff.dead_letters.as_deref()
    } else {
        deps.event_dead_letters.as_deref()
    }
}

/// Routes a message by what it is: a CodeBuild event from `build-events`, else a
/// `BuildRequest` from `builds.fifo`.
async fn handle_message(deps: &Deps, message: &SqsMessage) -> Result<Outcome, DispatchError> {
    let body = message.body.as_deref().unwrap_or("");
    let value: Value = serde_json::from_str(body)
        .map_err(|e| DispatchError::Unreadable(format!("message is not JSON: {e}")))?;
    if value.get("source").and_then(Value::as_str) == Some("aws.codebuild") {
        let event: StateChangeEvent = serde_json::from_value(value)
            .map_err(|e| DispatchError::Unreadable(format!("malformed CodeBuild event: {e}")))?;
        if event.detail_type != codebuild::STATE_CHANGE {
            return Ok(Outcome::Skipped(format!(
                "not a build state change: {}",
                event.detail_type
            )));
        }
        return finalize::handle_state_change(deps, &event).await;
    }
    let request = messages::decode::<BuildRequest>(body).map_err(|e| match e {
        MessageError::UnsupportedVersion { .. } => DispatchError::Unreadable(e.to_string()),
        e => DispatchError::Unreadable(format!("not a BuildRequest: {e}")),
    })?;
    let span = tracing::info_span!("build_request", delivery_id = %request.delivery_id, repo = %request.repo, sha = %short_sha(&request.sha));
    start::handle_build_request(deps, &request)
        .instrument(span)
        .await
}
