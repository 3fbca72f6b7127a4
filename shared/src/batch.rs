//! SQS batches, the same way in every queue function: one span per message, per-message
//! outcomes turned into `batchItemFailures`, FIFO order kept within a message group, waits
//! (rate limits, running releases) honoured and never counted as failures, real failures
//! counted apart and dead-lettered with their reason after a few, messages that can never
//! succeed dead-lettered at once, and the invocation's deadline kept.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use tracing::{Instrument, error, info, warn};

use crate::ports::{
    Clock, OutgoingMessage, Precondition, Queue, Redelivery, Retryable, StateStore,
};
use crate::records::StateKey;

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
    /// Waiting for the service (a rate limit, a release still running): seen again after
    /// `after`, however often, and never counted as a failure.
    Wait { reason: String, after: Duration },
    /// Failed in a way a later try can fix: seen again after the queue's visibility timeout,
    /// and counted. After [`MAX_FAILURES`] counted failures it goes to the dead-letter queue
    /// with its reason.
    Retry { reason: String },
    /// Can never succeed (malformed, an unknown version, a 4xx): to the dead-letter queue.
    DeadLetter(String),
}

impl Outcome {
    /// A step that failed: a wait when the service said how long to wait, a retry when a later
    /// try can help, else the dead-letter queue with the error as its reason. Each queue
    /// function's error type turns into an `Outcome` through this, in one place.
    pub fn failed<E: Retryable + std::fmt::Display>(e: &E) -> Self {
        match (e.is_retryable(), e.retry_after()) {
            (true, Some(after)) => Outcome::Wait {
                reason: e.to_string(),
                after,
            },
            (true, None) => Outcome::Retry {
                reason: e.to_string(),
            },
            (false, _) => Outcome::DeadLetter(e.to_string()),
        }
    }
}

/// A handler's answer: an outcome, or an error that becomes one through the function's own
/// `From<Error> for Outcome`, the one place where its errors are mapped.
impl<E: Into<Outcome>> From<Result<Outcome, E>> for Outcome {
    fn from(result: Result<Outcome, E>) -> Self {
        result.unwrap_or_else(Into::into)
    }
}

/// Where a queue function hands a message it has not finished: back to its queue after a
/// wait, or to the queue's dead-letter queue. Every queue function's `Deps` holds one.
#[derive(Clone)]
pub struct Handoff {
    pub redelivery: Arc<dyn Redelivery>,
    /// The source queue's dead-letter queue: messages that can never succeed, and those that
    /// failed [`MAX_FAILURES`] times, go there at once with their reason.
    pub dead_letters: Option<Arc<dyn Queue>>,
}

/// Real failures of one message before the function sends it to its dead-letter queue itself:
/// about half an hour of retries at the stack's three-minute visibility timeout. Five, AWS's
/// usual advice, dead-lettered one deploy in a thousand-webhook run with one call in nine
/// failing (a deploy makes about seven calls and retries re-check the order guard). SQS's
/// `maxReceiveCount` (100 in the template) is only a backstop: waits do not count here.
pub const MAX_FAILURES: u32 = 10;

/// A batch stops starting messages when less than this is left of the invocation: longer than
/// any one outbound call may take (HTTP clients time out after 10 s, AWS calls after 8 s).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(12);

/// How long the failure count of a message is kept: SQS's longest retention, 14 days.
const FAILURE_TTL_SECS: i64 = 14 * 24 * 3600;

/// Where a batch's side effects go.
pub struct BatchContext<'a> {
    pub redelivery: &'a dyn Redelivery,
    /// The source queue's dead-letter queue, to send hopeless messages to directly. Without
    /// one, they are reported failed and SQS moves them after `maxReceiveCount` tries.
    pub dead_letters: Option<&'a dyn Queue>,
    /// Where failures are counted (the state table), apart from waits.
    pub failures: &'a dyn StateStore,
    pub clock: &'a dyn Clock,
    /// When the invocation ends (Lambda's deadline); `None` off Lambda.
    pub deadline: Option<Instant>,
    /// No message starts with less than this left ([`DEADLINE_MARGIN`]).
    pub margin: Duration,
}

impl<'a> BatchContext<'a> {
    /// A batch without a dead-letter queue or a deadline; see the builders.
    pub fn new(
        redelivery: &'a dyn Redelivery,
        failures: &'a dyn StateStore,
        clock: &'a dyn Clock,
    ) -> Self {
        Self {
            redelivery,
            dead_letters: None,
            failures,
            clock,
            deadline: None,
            margin: DEADLINE_MARGIN,
        }
    }

    /// The context of a queue function's batch: its handoff, its failure counts and clock, and
    /// the invocation's deadline.
    pub fn of(
        handoff: &'a Handoff,
        failures: &'a dyn StateStore,
        clock: &'a dyn Clock,
        deadline: Option<Instant>,
    ) -> Self {
        Self::new(handoff.redelivery.as_ref(), failures, clock)
            .dead_letters(handoff.dead_letters.as_deref())
            .deadline(deadline)
    }

    pub fn dead_letters(mut self, queue: Option<&'a dyn Queue>) -> Self {
        self.dead_letters = queue;
        self
    }

    pub fn deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }
}

/// The instant of Lambda's deadline (`Context::deadline`, Unix milliseconds).
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Runs `handle` on each message of `event`, in order, and reports which failed. The handler
/// gets its own copy of the message so that its future borrows nothing from the batch. Near
/// the deadline, the messages not yet started are reported unprocessed (they come back as they
/// were), and a message still running is cut off and counted as a failure, so that the
/// invocation answers before Lambda would time it out and return the finished ones too.
pub async fn process<F, Fut>(
    event: &SqsEvent,
    ctx: &BatchContext<'_>,
    mut handle: F,
) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output: Into<Outcome>>,
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
        let left = ctx
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|left| left < ctx.margin) {
            span.in_scope(|| {
                warn!("too close to the invocation's deadline; left for the next one")
            });
            response.add_failure(id);
            continue;
        }
        let answer = handle(message.clone());
        let work = async move { Into::<Outcome>::into(answer.await) }.instrument(span.clone());
        let outcome = match left {
            // A twelfth of the margin to report and answer after the cut.
            Some(left) => tokio::time::timeout(left.saturating_sub(ctx.margin / 12), work)
                .await
                .unwrap_or_else(|_| Outcome::Retry {
                    reason: "did not finish before the invocation's deadline".into(),
                }),
            None => work.await,
        };
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
        Outcome::Wait { reason, after } => {
            info!(%reason, after_secs = after.as_secs(), "waiting; not a failure");
            redeliver_after(message, after, ctx).await;
            true
        }
        Outcome::Retry { reason } => {
            let failures = count_failure(message, ctx).await;
            if failures.is_some_and(|n| n >= MAX_FAILURES) {
                let reason = format!("failed {MAX_FAILURES} times; the last: {reason}");
                return dead_letter(message, reason, ctx).await;
            }
            warn!(%reason, failures, "failed; will retry");
            true
        }
        Outcome::DeadLetter(reason) => dead_letter(message, reason, ctx).await,
    }
}

async fn redeliver_after(message: &SqsMessage, after: Duration, ctx: &BatchContext<'_>) {
    if let (Some(arn), Some(receipt)) = (&message.event_source_arn, &message.receipt_handle)
        && let Err(e) = ctx.redelivery.redeliver_after(arn, receipt, after).await
    {
        warn!(error = %e, "could not delay the retry; the queue's visibility timeout applies");
    }
}

/// Counts one more failure of `message`; `None` when the count cannot be kept (then SQS's
/// `maxReceiveCount` is the limit).
async fn count_failure(message: &SqsMessage, ctx: &BatchContext<'_>) -> Option<u32> {
    let key = message_key(message);
    let now = ctx.clock.unix();
    let store = ctx.failures;
    let count = match store.read_value::<u32>(StateKey::Failures(&key), now).await {
        Ok(count) => count.unwrap_or(0) + 1,
        Err(e) => {
            warn!(error = %e, "cannot count the failure");
            return None;
        }
    };
    let expires = Some(now + FAILURE_TTL_SECS);
    match store
        .write(
            StateKey::Failures(&key),
            &count,
            Precondition::None,
            expires,
            now,
        )
        .await
    {
        Ok(_) => Some(count),
        Err(e) => {
            warn!(error = %e, "cannot count the failure");
            None
        }
    }
}

/// A message's identity across receives: SQS keeps its message id; the body's digest keeps
/// apart the local stack's messages, whose ids are per batch.
fn message_key(message: &SqsMessage) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(message.body.as_deref().unwrap_or("").as_bytes());
    format!(
        "{}:{}",
        message.message_id.as_deref().unwrap_or(""),
        hex::encode(&digest[..8])
    )
}

/// Sends the message to the dead-letter queue with its reason; true when it must still be
/// reported failed (no DLQ, or the DLQ is unreachable: SQS moves it after its retries).
async fn dead_letter(message: &SqsMessage, reason: String, ctx: &BatchContext<'_>) -> bool {
    error!(%reason, "cannot be processed; dead-lettered");
    let Some(dlq) = ctx.dead_letters else {
        return true;
    };
    let body = message.body.clone().unwrap_or_default();
    let mut dead = OutgoingMessage::new(body).with_reason(reason);
    if let Some(group) = message.attributes.get("MessageGroupId") {
        dead.group_id = Some(group.clone());
        // The message's identity, not only its id: the local stack's ids are per batch.
        dead.dedup_id = Some(crate::messages::fifo_id(&message_key(message)));
    }
    match dlq.send(dead).await {
        Ok(()) => false,
        Err(e) => {
            warn!(error = %e, "could not reach the dead-letter queue; SQS will move it after its retries");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{FixedClock, MemoryQueue, MemoryRedelivery, MemoryStateStore};

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

    struct Fixture {
        redelivery: MemoryRedelivery,
        dlq: MemoryQueue,
        state: MemoryStateStore,
        clock: FixedClock,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                redelivery: MemoryRedelivery::default(),
                dlq: MemoryQueue::fifo(),
                state: MemoryStateStore::new(),
                clock: FixedClock::at(time::macros::datetime!(2026-11-29 10:00 UTC)),
            }
        }

        fn ctx(&self, dead_letters: bool, deadline: Option<Instant>) -> BatchContext<'_> {
            BatchContext::new(&self.redelivery, &self.state, &self.clock)
                .dead_letters(dead_letters.then_some(&self.dlq as &dyn Queue))
                .deadline(deadline)
        }
    }

    fn failed(response: &SqsBatchResponse) -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
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
        let f = Fixture::new();
        let mut seen = Vec::new();
        let response = process(&batch, &f.ctx(true, None), |m| {
            seen.push(m.message_id.clone().unwrap());
            let body = m.body.clone().unwrap();
            async move {
                match body.as_str() {
                    "retry" => Outcome::Wait {
                        reason: "429".into(),
                        after: Duration::from_secs(30),
                    },
                    "dead" => Outcome::DeadLetter("version 9".into()),
                    _ => Outcome::Done,
                }
            }
        })
        .await;
        assert_eq!(
            failed(&response),
            vec!["1", "2"],
            "2 waits behind 1 in group a"
        );
        assert_eq!(seen, vec!["1", "3", "4", "5"]);
        assert_eq!(f.redelivery.delays(), vec![Duration::from_secs(30)]);
        let dead = f.dlq.drain();
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
        let f = Fixture::new();
        let response = process(&batch, &f.ctx(false, None), |_| async {
            Outcome::DeadLetter("bad".into())
        })
        .await;
        assert_eq!(response.batch_item_failures.len(), 1);
    }

    #[tokio::test]
    async fn a_wait_is_never_counted_however_often_it_comes_back() {
        let mut batch = event();
        batch.records = vec![message("1", "a", "limited")];
        let f = Fixture::new();
        for _ in 0..(MAX_FAILURES * 4) {
            let response = process(&batch, &f.ctx(true, None), |_| async {
                Outcome::Wait {
                    reason: "Telegram: retry after 300".into(),
                    after: Duration::from_secs(300),
                }
            })
            .await;
            assert_eq!(failed(&response), vec!["1"]);
        }
        assert!(f.dlq.is_empty(), "waiting is not failing");
        assert!(
            f.redelivery
                .delays()
                .iter()
                .all(|d| *d == Duration::from_secs(300))
        );
    }

    #[tokio::test]
    async fn real_failures_are_counted_and_the_last_one_dead_letters_with_its_reason() {
        let mut batch = event();
        batch.records = vec![message("1", "a", "flaky")];
        let f = Fixture::new();
        let retry = || async {
            Outcome::Retry {
                reason: "GitHub unavailable: 502".into(),
            }
        };
        for _ in 1..MAX_FAILURES {
            let response = process(&batch, &f.ctx(true, None), |_| retry()).await;
            assert_eq!(failed(&response), vec!["1"]);
        }
        assert!(f.dlq.is_empty());
        assert!(
            f.redelivery.delays().is_empty(),
            "a failure comes back after the queue's visibility timeout"
        );
        let response = process(&batch, &f.ctx(true, None), |_| retry()).await;
        assert!(failed(&response).is_empty(), "dead-lettered, so deleted");
        let dead = f.dlq.drain();
        assert_eq!(
            dead[0].reason.as_deref(),
            Some(
                format!("failed {MAX_FAILURES} times; the last: GitHub unavailable: 502").as_str()
            )
        );
    }

    #[tokio::test]
    async fn near_the_deadline_no_message_starts_and_a_running_one_is_cut_off() {
        let mut batch = event();
        batch.records = vec![message("1", "a", "slow"), message("2", "b", "ok")];
        let f = Fixture::new();
        let mut ctx = f.ctx(true, None);
        ctx.margin = Duration::from_millis(600);
        let deadline = Instant::now() + Duration::from_millis(900);
        let ctx = ctx.deadline(Some(deadline));
        let mut seen = Vec::new();
        let response = process(&batch, &ctx, |m| {
            seen.push(m.message_id.clone().unwrap());
            async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Outcome::Done
            }
        })
        .await;
        assert!(Instant::now() < deadline, "answered before the deadline");
        assert_eq!(seen, vec!["1"], "the second never started");
        assert_eq!(failed(&response), vec!["1", "2"], "both come back");
    }
}
