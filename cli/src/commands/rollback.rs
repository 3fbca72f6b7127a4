//! `shipline rollback`: an earlier release of a target goes live again, through the deploy
//! queue, so it waits for that target's deploys.

use shared::messages::{self, DeployQueueMessage};

use crate::commands::dlq::sqs;
use crate::ui::Ui;

pub async fn run(
    target: &str,
    release: Option<String>,
    queue: &str,
    json: bool,
    ui: &Ui,
) -> anyhow::Result<()> {
    let request = messages::RollbackRequest {
        v: messages::VERSION,
        target: target.into(),
        release,
        requested_by: std::env::var("USER").unwrap_or_else(|_| "shipline CLI".into()),
        requested_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?,
        from_release: None,
        reason: None,
    };
    let dedup = format!("rollback-{}", request.requested_at);
    send(
        queue,
        &DeployQueueMessage::Rollback(request.clone()),
        &dedup,
    )
    .await?;
    if json {
        println!("{}", messages::encode(&request));
    } else {
        ui.done(&format!(
            "rollback of {target} queued; the chat will say when it is live"
        ));
    }
    Ok(())
}

/// Puts a message on the deploy queue in its target's group, so that it waits for (and holds
/// back) that target's deploys.
pub(crate) async fn send(
    queue: &str,
    message: &DeployQueueMessage,
    dedup: &str,
) -> anyhow::Result<()> {
    sqs()
        .await
        .send_message()
        .queue_url(queue)
        .message_body(messages::encode(message))
        .message_group_id(messages::fifo_id(message.target()))
        .message_deduplication_id(messages::fifo_id(dedup))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    Ok(())
}
