//! SQS batches, the same way in every queue function: one span per message, per-message
//! outcomes turned into `batchItemFailures`, FIFO order kept within a message group, rate-limit
//! delays honoured, and messages that can never succeed sent to the dead-letter queue with
//! their reason instead of being retried in a loop.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use tracing::{Instrument, error, info, warn};

use crate::ports::{OutgoingMessage, Queue, Redelivery, Retryable};

/// An SQS event as Lambda's event source mapping delivers it: one record per `(body, message
/// group)`, with message ids `m-0`, `m-1`, … and receipt handles `r-0`, `r-1`, …. The local
/// stack hands its in-memory queues to the handlers this way, and tests build batches with it.
pub fn sqs_event(source_arn: &str, messages: &[(&str, Option<&str>)]) -> SqsEvent {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, (body, group))| {
            let mut attributes = serde_json::Map::new();
            attributes.insert("ApproximateReceiveCount".into(), "1".into());
            if let Some(g) = group {
                attributes.insert("MessageGroupId".into(), (*g).into());
            }
            serde_json::json!({
                "messageId": format!("m-{i}"),
                "receiptHandle": format!("r-{i}"),
                "body": body,
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": source_arn,
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records }))
        .expect("a well-formed SQS event")
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; delete it.
    Done,
    /// Deliberately not acted on; delete it, and the reason is logged.
    Skipped(String),
    /// Failed in a way a later try can fix; leave it on the queue (after `after`, if given,
    /// else after the queue's visibility timeout).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Can never succeed (malformed, an unknown version, a 4xx): to the dead-letter queue.
    DeadLetter(String),
}

impl Outcome {
    /// A step that failed: retried (after the wait the service asked for, if it said) when a
    /// later try can help, else dead-lettered with the error as its reason. Each queue
    /// function's error type turns into an `Outcome` through this, in one place.
    pub fn failed<E: Retryable + std::fmt::Display>(e: &E) -> Self {
        if e.is_retryable() {
            Outcome::Retry {
                reason: e.to_string(),
                after: e.retry_after(),
            }
        } else {
            Outcome::DeadLetter(e.to_string())
        }
    }
}

/// Where a batch's side effects go.
pub struct BatchContext<'a> {
    pub redelivery: &'a dyn Redelivery,
    /// The source queue's dead-letter queue, to send hopeless messages to directly. Without
    /// one, they are reported failed and SQS moves them after `maxReceiveCount` tries.
    pub dead_letters: Option<&'a dyn Queue>,
}

/// Runs `handle` on each message of `event`, in order, and reports which failed. The handler
/// gets its own copy of the message so that its future borrows nothing from the batch.
pub async fn process<F, Fut>(
    event: &SqsEvent,
    ctx: &BatchContext<'_>,
    mut handle: F,
) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut response = SqsBatchResponse::default();
    // A FIFO group whose message failed: later messages of that group must not overtake it.
    let mut blocked_groups: HashSet<String> = HashSet::new();
    for message in &event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let group = message.attributes.get("MessageGroupId").cloned();
        let span = tracing::info_span!("message", message_id = %id, group = group.as_deref().unwrap_or(""));
        if let Some(g) = &group
            && blocked_groups.contains(g)
        {
            span.in_scope(|| info!("an earlier message of its group failed; kept for order"));
            response.add_failure(id);
            continue;
        }
        let outcome = handle(message.clone()).instrument(span.clone()).await;
        let failed = settle(message, outcome, ctx).instrument(span).await;
        if failed {
            response.add_failure(id);
            if let Some(g) = group {
                blocked_groups.insert(g);
            }
        }
    }
    response
}

/// Acts on an outcome; true when the message must be reported failed.
async fn settle(message: &SqsMessage, outcome: Outcome, ctx: &BatchContext<'_>) -> bool {
    match outcome {
        Outcome::Done => false,
        Outcome::Skipped(reason) => {
            info!(%reason, "skipped");
            false
        }
        Outcome::Retry { reason, after } => {
            warn!(%reason, after_secs = after.map(|d| d.as_secs()), "will retry");
            if let (Some(after), Some(arn), Some(receipt)) =
                (after, &message.event_source_arn, &message.receipt_handle)
                && let Err(e) = ctx.redelivery.redeliver_after(arn, receipt, after).await
            {
                warn!(error = %e, "could not delay the retry; the queue's visibility timeout applies");
            }
            true
        }
        Outcome::DeadLetter(reason) => {
            error!(%reason, "cannot be processed; dead-lettered");
            let Some(dlq) = ctx.dead_letters else {
                return true;
            };
            let body = message.body.clone().unwrap_or_default();
            let id = message.message_id.clone().unwrap_or_default();
            let mut dead = OutgoingMessage::new(body).with_reason(reason);
            if let Some(group) = message.attributes.get("MessageGroupId") {
                dead.group_id = Some(group.clone());
                dead.dedup_id = Some(crate::messages::fifo_id(&id));
            }
            match dlq.send(dead).await {
                Ok(()) => false,
                Err(e) => {
                    warn!(error = %e, "could not reach the dead-letter queue; SQS will move it after its retries");
                    true
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryQueue, MemoryRedelivery};

    fn event() -> SqsEvent {
        serde_json::from_str(include_str!("../testdata/sqs-event-fifo.json")).unwrap()
    }

    fn message(id: &str, group: &str, body: &str) -> SqsMessage {
        let mut m = event().records.remove(0);
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m.attributes.insert("MessageGroupId".into(), group.into());
        m
    }

    #[tokio::test]
    async fn only_failed_messages_are_reported_and_their_group_waits() {
        let mut batch = event();
        batch.records = vec![
            message("1", "a", "retry"),
            message("2", "a", "ok"),
            message("3", "b", "ok"),
            message("4", "b", "dead"),
            message("5", "c", "ok"),
        ];
        let redelivery = MemoryRedelivery::default();
        let dlq = MemoryQueue::fifo();
        let ctx = BatchContext {
            redelivery: &redelivery,
            dead_letters: Some(&dlq),
        };
        let mut seen = Vec::new();
        let response = process(&batch, &ctx, |m| {
            seen.push(m.message_id.clone().unwrap());
            let body = m.body.clone().unwrap();
            async move {
                match body.as_str() {
                    "retry" => Outcome::Retry {
                        reason: "429".into(),
                        after: Some(Duration::from_secs(30)),
                    },
                    "dead" => Outcome::DeadLetter("version 9".into()),
                    _ => Outcome::Done,
                }
            }
        })
        .await;
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, vec!["1", "2"], "2 waits behind 1 in group a");
        assert_eq!(seen, vec!["1", "3", "4", "5"]);
        assert_eq!(redelivery.delays(), vec![Duration::from_secs(30)]);
        let dead = dlq.drain();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].body.as_str(), dead[0].reason.as_deref()),
            ("dead", Some("version 9"))
        );
    }

    #[tokio::test]
    async fn without_a_dead_letter_queue_a_hopeless_message_is_reported_failed() {
        let mut batch = event();
        batch.records = vec![message("1", "a", "dead")];
        let redelivery = MemoryRedelivery::default();
        let ctx = BatchContext {
            redelivery: &redelivery,
            dead_letters: None,
        };
        let response = process(&batch, &ctx, |_| async {
            Outcome::DeadLetter("bad".into())
        })
        .await;
        assert_eq!(response.batch_item_failures.len(), 1);
    }
}
