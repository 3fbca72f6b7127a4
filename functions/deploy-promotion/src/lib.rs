//! deploy-promotion: a green build of a stable branch goes live on its target, one at a time
//! (one FIFO message group per target), never an older commit over a newer one, with a GitHub
//! Deployment that shows it. Rollbacks travel the same queue, so they are serialised with
//! deploys.

mod buttons;
mod deploy;
pub mod deployer;
mod error;
mod follow;
mod progress;
pub mod promotions;
mod report;
mod rollback;
pub mod targets;

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use shared::batch::{self, BatchContext, Handoff, Outcome};
use shared::config::{Config, DeployRule};
use shared::ids::TargetKey;
use shared::messages::DeployQueueMessage;
use shared::ports::{Clock, GitHub, Queue, StateStore};
use tracing::Instrument;

use crate::deployer::Deployer;
use crate::error::PromotionError;
pub use crate::follow::Follow;

pub struct Deps {
    pub config: Arc<Config>,
    pub github: Arc<dyn GitHub>,
    pub deployer: Arc<dyn Deployer>,
    pub state: Arc<dyn StateStore>,
    pub notify: Arc<dyn Queue>,
    /// `deploys.fifo` itself: the sweep puts due promotions there, in their target's group.
    pub deploys: Arc<dyn Queue>,
    /// Where unfinished messages go: back to `deploys.fifo` after a wait, or to its DLQ.
    pub handoff: Handoff,
    pub clock: Arc<dyn Clock>,
    pub follow: Follow,
}

/// The Lambda entry point: a batch of `deploys.fifo`, or the schedule's sweep of pending
/// promotions.
pub async fn handle(
    deps: &Deps,
    event: serde_json::Value,
    deadline: Option<Instant>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    if event.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(event)?;
        let response = handle_batch(deps, &event, deadline).await;
        return Ok(serde_json::to_value(response)?);
    }
    let report = promotions::sweep(deps).await?;
    Ok(serde_json::to_value(report)?)
}

pub async fn handle_batch(
    deps: &Deps,
    event: &SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let ctx = BatchContext::of(&deps.handoff, &*deps.state, &*deps.clock, deadline);
    batch::process(event, &ctx, |message| async move {
        handle_message(deps, &message).await
    })
    .await
}

async fn handle_message(deps: &Deps, message: &SqsMessage) -> Result<Outcome, PromotionError> {
    let body = message.body.as_deref().unwrap_or("");
    match DeployQueueMessage::decode(body)? {
        DeployQueueMessage::Rollback(request) => {
            let span = tracing::info_span!("rollback", target = %request.target);
            rollback::rollback(deps, &request).instrument(span).await
        }
        DeployQueueMessage::Promote(request) => {
            let span = tracing::info_span!("promote", target = %request.target);
            promotions::promote(deps, &request).instrument(span).await
        }
        DeployQueueMessage::Deploy(request) => {
            let span = tracing::info_span!("deploy", delivery_id = %request.delivery_id, target = %request.target, sha = %request.sha.short());
            deploy::deploy(deps, &request).instrument(span).await
        }
    }
}

/// The deploy rule whose target is `target`, with the name of the repo it belongs to.
fn rule_for<'a>(config: &'a Config, target: &TargetKey) -> Option<(&'a str, &'a DeployRule)> {
    config.repos.iter().find_map(|(name, repo)| {
        repo.deploy
            .iter()
            .find(|rule| rule.target_key(name) == *target)
            .map(|rule| (name.as_str(), rule))
    })
}
