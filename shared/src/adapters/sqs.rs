//! The `Queue` port on Amazon SQS.

use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};

use crate::ports::{OutgoingMessage, Queue, QueueError};

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        let delay = message
            .delay
            .map(|d| i32::try_from(d.as_secs().min(900)).unwrap_or(900));
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.body)
            .set_message_group_id(message.group_id)
            .set_message_deduplication_id(message.dedup_id)
            .set_delay_seconds(delay)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let permanent = matches!(&e, SdkError::ServiceError(s) if is_client_fault(s.raw().status().as_u16()));
                let text = DisplayErrorContext(e).to_string();
                if permanent {
                    QueueError::Rejected(text)
                } else {
                    QueueError::Unavailable(text)
                }
            })
    }
}

/// A 4xx other than throttling means the request itself is wrong; resending it cannot help.
pub(crate) fn is_client_fault(status: u16) -> bool {
    (400..500).contains(&status) && status != 429 && status != 408
}
