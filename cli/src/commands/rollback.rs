//! `shipline rollback`: an earlier release of a target goes live again, through the deploy
//! queue, so it waits for that target's deploys.

use crate::commands::dlq::sqs;
use crate::ui::Ui;

pub async fn run(
    target: &str,
    release: Option<String>,
    queue: &str,
    json: bool,
    ui: &Ui,
) -> anyhow::Result<()> {
    let request = shared::messages::RollbackRequest {
        v: shared::messages::VERSION,
        target: target.into(),
        release,
        requested_by: std::env::var("USER").unwrap_or_else(|_| "shipline CLI".into()),
        requested_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?,
        from_release: None,
        reason: None,
    };
    sqs()
        .await
        .send_message()
        .queue_url(queue)
        .message_body(shared::messages::encode(
            &shared::messages::DeployQueueMessage::Rollback(request.clone()),
        ))
        .message_group_id(shared::messages::fifo_id(target))
        .message_deduplication_id(shared::messages::fifo_id(&format!(
            "rollback-{}",
            request.requested_at
        )))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    if json {
        println!("{}", shared::messages::encode(&request));
    } else {
        ui.done(&format!(
            "rollback of {target} queued; the chat will say when it is live"
        ));
    }
    Ok(())
}
