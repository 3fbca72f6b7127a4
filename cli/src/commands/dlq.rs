//! `shipline dlq list` and `dlq redrive`: what waits in a dead-letter queue (with the reason
//! shipline gave), and moving it back.

use crate::ui::Ui;

pub async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(
        &aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    )
}

pub async fn list(queue_url: &str, json: bool) -> anyhow::Result<()> {
    let client = sqs().await;
    let attributes = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    let count = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned()
        .unwrap_or_default();
    // A short visibility timeout: looking does not hide the messages for long.
    let received = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(1)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    if !json {
        println!(
            "{count} message(s) in {queue_url}; the first {}:",
            received.messages().len()
        );
    }
    for m in received.messages() {
        let reason = m
            .message_attributes()
            .and_then(|a| a.get("shipline_reason"))
            .and_then(|v| v.string_value())
            .unwrap_or("");
        if json {
            println!(
                "{}",
                serde_json::json!({"message_id": m.message_id(), "reason": reason, "body": m.body()})
            );
        } else {
            let body: String = m.body().unwrap_or("").chars().take(160).collect();
            println!(
                "- {} {}\n  {body}",
                m.message_id().unwrap_or("?"),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!("({reason})")
                }
            );
        }
    }
    Ok(())
}

pub async fn redrive(queue_url: &str, to: &str, json: bool, ui: &Ui) -> anyhow::Result<()> {
    let client = sqs().await;
    let fifo = to.ends_with(".fifo");
    let mut moved = 0usize;
    loop {
        let received = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        if received.messages().is_empty() {
            break;
        }
        for m in received.messages() {
            let mut send = client
                .send_message()
                .queue_url(to)
                .message_body(m.body().unwrap_or(""));
            if fifo {
                let attrs = m.attributes();
                let group = attrs
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    })
                    .cloned()
                    .unwrap_or_else(|| "redrive".into());
                send = send
                    .message_group_id(group)
                    .message_deduplication_id(format!("redrive-{}", m.message_id().unwrap_or("")));
            }
            send.send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            client
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or(""))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            moved += 1;
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"moved": moved, "from": queue_url, "to": to})
        );
        return Ok(());
    }
    ui.done(&format!(
        "moved {moved} message(s) from {queue_url} to {to}"
    ));
    Ok(())
}
