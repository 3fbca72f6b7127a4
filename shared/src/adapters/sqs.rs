//! The `Queue` and `Redelivery` ports on Amazon SQS.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::ports::{OutgoingMessage, Queue, QueueError, Redelivery};

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
        // SQS delays a message by at most 15 minutes.
        let delay = message
            .delay
            .map(|d| i32::try_from(d.as_secs().min(900)).unwrap_or(900));
        let attributes = message.reason.map(|reason| {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(reason)
                .build()
                .expect("data type is set");
            [("shipline_reason".to_string(), value)].into()
        });
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.body)
            .set_message_group_id(message.group_id)
            .set_message_deduplication_id(message.dedup_id)
            .set_delay_seconds(delay)
            .set_message_attributes(attributes)
            .send()
            .await
            .map(|_| ())
            .map_err(queue_error)
    }

    async fn warm(&self) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map(|_| ())
            .map_err(queue_error)
    }

    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages as Waiting;
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(Waiting)
            .send()
            .await
            .map_err(queue_error)?;
        Ok(answer
            .attributes()
            .and_then(|a| a.get(&Waiting))
            .and_then(|n| n.parse().ok()))
    }
}

/// A service error other than throttling or a server fault means the request itself is wrong:
/// resending it cannot help.
fn queue_error<E, R>(e: SdkError<E, R>) -> QueueError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let permanent = match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            !(code.contains("Throttl")
                || code.contains("RequestThrottled")
                || code.contains("InternalError")
                || code.contains("ServiceUnavailable"))
        }
        _ => false,
    };
    let text = DisplayErrorContext(e).to_string();
    if permanent {
        QueueError::Rejected(text)
    } else {
        QueueError::Unavailable(text)
    }
}

/// Redelivers a received message later by changing its visibility timeout.
pub struct SqsRedelivery {
    client: aws_sdk_sqs::Client,
}

impl SqsRedelivery {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Self { client }
    }
}

/// `arn:aws:sqs:<region>:<account>:<name>` → the queue URL. With `AWS_ENDPOINT_URL` set
/// (moto), the SDK sends the call there and the server finds the queue by its path.
pub fn queue_url_from_arn(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "sqs", region, account, name] => {
            let suffix = if partition.starts_with("aws-cn") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            Some(format!("https://sqs.{region}.{suffix}/{account}/{name}"))
        }
        _ => None,
    }
}

#[async_trait]
impl Redelivery for SqsRedelivery {
    async fn redeliver_after(
        &self,
        source_arn: &str,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let url = queue_url_from_arn(source_arn)
            .ok_or_else(|| QueueError::Rejected(format!("not an SQS queue ARN: {source_arn}")))?;
        // SQS allows at most 12 hours.
        let seconds = i32::try_from(delay.as_secs().clamp(1, 43_200)).unwrap_or(43_200);
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .map(|_| ())
            .map_err(queue_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_come_from_arns() {
        assert_eq!(
            queue_url_from_arn("arn:aws:sqs:us-east-2:123456789012:my-queue.fifo").as_deref(),
            Some("https://sqs.us-east-2.amazonaws.com/123456789012/my-queue.fifo")
        );
        assert_eq!(queue_url_from_arn("arn:aws:sns:us-east-2:1:topic"), None);
    }
}
