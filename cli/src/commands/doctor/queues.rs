//! The stack's dead-letter queues: each empty, or how many messages wait and what to do.

use super::Check;
use crate::stack::{Aws, Stack};

pub(super) async fn dead_letter_checks(aws: &Aws, stack: &Stack) -> Vec<Check> {
    let mut checks = Vec::new();
    for (output, url) in stack.dead_letter_queues() {
        let name = output.trim_end_matches("Url").to_string();
        let depth = aws
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await;
        checks.push(match depth {
            Ok(answer) => {
                let count: u64 = answer
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if count == 0 {
                    Check::pass(name, "empty")
                } else {
                    Check::fail(
                        name,
                        format!("{count} messages wait"),
                        format!(
                            "shipline dlq list {url}; once the cause is fixed, shipline dlq redrive"
                        ),
                    )
                }
            }
            Err(e) => Check::fail(
                name,
                aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
                "the credentials need sqs:GetQueueAttributes",
            ),
        });
    }
    checks
}
