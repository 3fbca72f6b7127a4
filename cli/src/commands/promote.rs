//! `shipline promote`: a person's go for a target's pending promotion, through the deploy
//! queue (in the target's group, so it waits for that target's deploys).

use shared::messages::{self, DeployQueueMessage, PromoteRequest};

use crate::commands::rollback::send;
use crate::ui::Ui;

fn now_rfc3339() -> anyhow::Result<String> {
    Ok(time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?)
}

pub async fn promote(
    target: &str,
    sha: Option<String>,
    queue: &str,
    json: bool,
    ui: &Ui,
) -> anyhow::Result<()> {
    let request = PromoteRequest {
        v: messages::VERSION,
        target: target.into(),
        sha: sha.map(Into::into),
        requested_by: std::env::var("USER").unwrap_or_else(|_| "shipline CLI".into()),
        requested_at: now_rfc3339()?,
    };
    let dedup = format!("promote-{}", request.requested_at);
    send(queue, &DeployQueueMessage::Promote(request.clone()), &dedup).await?;
    if json {
        println!("{}", messages::encode(&request));
    } else {
        ui.done(&format!(
            "promotion to {target} queued; the chat will say when it is live"
        ));
    }
    Ok(())
}
