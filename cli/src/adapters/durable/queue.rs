//! Queues on the durable store, with the SQS semantics the functions rely on. Sending is the
//! `Queue` port; receiving, deleting and releasing are what Lambda's event source mapping does
//! on AWS, and the local pump does here.
//!
//! What is kept from SQS, each from its documentation:
//! - Visibility timeout: a received message stays in the queue, invisible, until its deadline;
//!   not deleted by then, it is received again. The timeout and a change of it are 0 s to 12 h
//!   (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html,
//!   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html).
//! - Receipt handles: each receive of a message gives a new one; deleting with an older one
//!   succeeds without deleting (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessage.html).
//!   The message id stays the same.
//! - FIFO message groups: a receive returns as many messages of a group as it can, in order,
//!   and no message of a group is returned while an earlier one of that group is in flight
//!   (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-understanding-logic.html).
//! - FIFO deduplication: a message whose deduplication id was sent in the last five minutes is
//!   accepted and not delivered; with `DeduplicationScope: messageGroup` (template.yaml) the id
//!   counts within its group
//!   (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-exactly-once-processing.html,
//!   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/high-throughput-fifo.html).
//! - Delays: a standard queue's message may be delayed up to 15 minutes; a FIFO queue refuses a
//!   per-message delay (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html).
//! - Redrive: a message received more than `maxReceiveCount` times goes to the dead-letter
//!   queue (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html);
//!   here it carries a reason, as the functions' own dead letters do.
//! - At most 10 messages per receive (`MaxNumberOfMessages`,
//!   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html).

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use shared::ports::{OutgoingMessage, Queue, QueueError, Redelivery};

use super::{DurableStore, Fail, millis};

/// SQS's deduplication interval.
const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// SQS's longest per-message delay.
const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// SQS's most messages per receive.
const MAX_BATCH: usize = 10;
/// The account part of the local stack's queue ARNs (cli/src/local.rs uses the same).
const LOCAL_ARN_PREFIX: &str = "arn:aws:sqs:local:000000000000:";

/// One queue of the store. Sends go through the `Queue` port; the pump receives with
/// [`receive`](Self::receive) and settles each message with [`delete`](Self::delete) or
/// [`release`](Self::release).
#[derive(Clone)]
pub struct DurableQueue {
    store: DurableStore,
    name: String,
    fifo: bool,
    redrive: Option<(String, u32)>,
}

/// A message as a receive hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The same on every receive of this message (SQS `MessageId`).
    pub message_id: String,
    /// This receive's handle, for `delete` and `release`.
    pub receipt: String,
    pub body: String,
    pub group_id: Option<String>,
    /// How many times it has been received, this time included (`ApproximateReceiveCount`).
    pub receive_count: u32,
    /// Why it was dead-lettered, on a dead-letter queue.
    pub reason: Option<String>,
    /// When it was sent, unix ms (`SentTimestamp`).
    pub sent_at: i64,
}

/// A message as stored, for listing a queue (`shipline dlq list`, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub message_id: String,
    pub body: String,
    pub group_id: Option<String>,
    pub reason: Option<String>,
    pub receive_count: u32,
    /// Unix ms.
    pub sent_at: i64,
    /// Unix ms; later than now while delayed or in flight.
    pub visible_at: i64,
}

impl DurableQueue {
    pub(super) fn new(store: DurableStore, name: &str) -> Self {
        Self {
            store,
            name: name.to_string(),
            fifo: name.ends_with(".fifo"),
            redrive: None,
        }
    }

    /// Moves a message to `dead_letter_queue` when a receive finds it already received
    /// `max_receive_count` times (SQS's redrive policy). As on SQS, a FIFO queue's dead-letter
    /// queue is a FIFO queue and a standard queue's a standard one.
    pub fn with_redrive(mut self, dead_letter_queue: &str, max_receive_count: u32) -> Self {
        assert_eq!(
            self.fifo,
            dead_letter_queue.ends_with(".fifo"),
            "{} and its dead-letter queue {dead_letter_queue} must both be FIFO or both standard",
            self.name
        );
        self.redrive = Some((dead_letter_queue.to_string(), max_receive_count.max(1)));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    #[allow(dead_code)] // benches/durable.rs sends by it
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// The queue's ARN in the local stack's events (`eventSourceARN`), which
    /// [`Redelivery::redeliver_after`] is given back.
    pub fn arn(&self) -> String {
        format!("{LOCAL_ARN_PREFIX}{}", self.name)
    }

    /// Up to `max` (at most 10) visible messages, oldest first, each invisible for `visibility`
    /// from now and with a new receipt; on a FIFO queue, none of a group that has a message in
    /// flight. A message already received as often as the redrive allows goes to the
    /// dead-letter queue instead, with the reason "received N times without success".
    pub async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        let (queue, fifo, redrive) = (self.name.clone(), self.fifo, self.redrive.clone());
        let max = max.clamp(1, MAX_BATCH);
        let now = self.store.now_ms();
        let deadline = now + millis(visibility.min(MAX_VISIBILITY));
        Ok(self
            .store
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let picked = if fifo {
                    pick_fifo(&tx, &queue, max, now)?
                } else {
                    pick_standard(&tx, &queue, max, now)?
                };
                let mut received = Vec::with_capacity(picked.len());
                for seq in picked {
                    if let Some(m) = hand_out(&tx, seq, redrive.as_ref(), deadline, now)? {
                        received.push(m);
                    }
                }
                tx.commit()?;
                Ok(received)
            })
            .await?)
    }

    /// Acknowledges a message: deletes it if `receipt` is its latest receive's, and says
    /// whether it did (an older receipt deletes nothing, as on SQS).
    #[allow(dead_code)] // the pump deletes by batch; the tests one by one
    pub async fn delete(&self, receipt: &str) -> Result<bool, QueueError> {
        Ok(self.delete_batch(&[receipt.to_string()]).await? == 1)
    }

    /// Acknowledges several messages in one commit (SQS's `DeleteMessageBatch`); returns how
    /// many were deleted.
    pub async fn delete_batch(&self, receipts: &[String]) -> Result<u64, QueueError> {
        let (queue, receipts) = (self.name.clone(), receipts.to_vec());
        Ok(self
            .store
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut deleted = 0;
                for receipt in &receipts {
                    deleted += tx
                        .prepare_cached("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2")?
                        .execute(params![queue, receipt])?;
                }
                tx.commit()?;
                Ok(deleted as u64)
            })
            .await?)
    }

    /// Makes an in-flight message visible again after `delay` (0 s to 12 h), as SQS's
    /// `ChangeMessageVisibility`; false when `receipt` is not the latest receive of a message
    /// still in flight.
    pub async fn release(&self, receipt: &str, delay: Duration) -> Result<bool, QueueError> {
        let (queue, receipt) = (self.name.clone(), receipt.to_string());
        let now = self.store.now_ms();
        let visible_at = now + millis(delay.min(MAX_VISIBILITY));
        let changed = self
            .store
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE messages SET visible_at = ?3
                         WHERE queue = ?1 AND receipt = ?2 AND visible_at > ?4",
                    )?
                    .execute(params![queue, receipt, visible_at, now])?)
            })
            .await?;
        Ok(changed == 1)
    }

    /// Every message of the queue, oldest first, left in place: visible, delayed or in flight.
    pub async fn list(&self) -> Result<Vec<Stored>, QueueError> {
        let queue = self.name.clone();
        Ok(self
            .store
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT message_id, body, group_id, reason, receive_count, sent_at, visible_at
                     FROM messages WHERE queue = ?1 ORDER BY seq",
                )?;
                let rows = stmt.query_map([queue], |r| {
                    Ok(Stored {
                        message_id: r.get(0)?,
                        body: r.get(1)?,
                        group_id: r.get(2)?,
                        reason: r.get(3)?,
                        receive_count: r.get(4)?,
                        sent_at: r.get(5)?,
                        visible_at: r.get(6)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?)
    }

    /// How many messages the queue holds, visible or not: zero means nothing is left to do.
    pub async fn len(&self) -> Result<u64, QueueError> {
        self.count(false).await
    }

    async fn count(&self, visible_only: bool) -> Result<u64, QueueError> {
        let queue = self.name.clone();
        let now = if visible_only {
            self.store.now_ms()
        } else {
            i64::MAX
        };
        let n: i64 = self
            .store
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM messages WHERE queue = ?1 AND visible_at <= ?2",
                    )?
                    .query_row(params![queue, now], |r| r.get(0))?)
            })
            .await?;
        Ok(n.unsigned_abs())
    }

    /// The event Lambda's event source mapping would hand a function for `batch`.
    pub fn sqs_event(&self, batch: &[Received]) -> SqsEvent {
        let arn = self.arn();
        let records: Vec<serde_json::Value> = batch.iter().map(|m| record(m, &arn)).collect();
        serde_json::from_value(serde_json::json!({ "Records": records }))
            .expect("a well-formed SQS event")
    }
}

/// One record of an SQS event, with the attributes the functions read.
fn record(m: &Received, arn: &str) -> serde_json::Value {
    let mut attributes = serde_json::Map::new();
    attributes.insert(
        "ApproximateReceiveCount".into(),
        m.receive_count.to_string().into(),
    );
    attributes.insert("SentTimestamp".into(), m.sent_at.to_string().into());
    if let Some(g) = &m.group_id {
        attributes.insert("MessageGroupId".into(), g.clone().into());
    }
    let mut message_attributes = serde_json::Map::new();
    if let Some(reason) = &m.reason {
        message_attributes.insert(
            "shipline_reason".into(),
            serde_json::json!({ "stringValue": reason, "dataType": "String" }),
        );
    }
    serde_json::json!({
        "messageId": m.message_id,
        "receiptHandle": m.receipt,
        "body": m.body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "local",
    })
}

/// The oldest visible messages of a standard queue.
fn pick_standard(tx: &Transaction, queue: &str, max: usize, now: i64) -> Result<Vec<i64>, Fail> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq FROM messages WHERE queue = ?1 AND visible_at <= ?2 ORDER BY seq LIMIT ?3",
    )?;
    let seqs = stmt.query_map(params![queue, now, max as i64], |r| r.get(0))?;
    Ok(seqs.collect::<rusqlite::Result<Vec<i64>>>()?)
}

/// The oldest visible messages of a FIFO queue, in order, skipping every group that has an
/// earlier message not visible (in flight, or released for later): its order must hold.
fn pick_fifo(tx: &Transaction, queue: &str, max: usize, now: i64) -> Result<Vec<i64>, Fail> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq, group_id, visible_at FROM messages WHERE queue = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([queue])?;
    let mut blocked: HashSet<String> = HashSet::new();
    let mut picked = Vec::new();
    while picked.len() < max
        && let Some(row) = rows.next()?
    {
        let group: String = row.get::<_, Option<String>>(1)?.unwrap_or_default();
        if blocked.contains(&group) {
            continue;
        }
        if row.get::<_, i64>(2)? > now {
            blocked.insert(group);
            continue;
        }
        picked.push(row.get(0)?);
    }
    Ok(picked)
}

/// Gives the message at `seq` a new receipt and visibility deadline, or moves it to the
/// dead-letter queue if it was already received as often as the redrive allows.
fn hand_out(
    tx: &Transaction,
    seq: i64,
    redrive: Option<&(String, u32)>,
    deadline: i64,
    now: i64,
) -> Result<Option<Received>, Fail> {
    let (message_id, body, group_id, reason, sent_at, count): (
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
        u32,
    ) = tx
        .prepare_cached(
            "SELECT message_id, body, group_id, reason, sent_at, receive_count
             FROM messages WHERE seq = ?1",
        )?
        .query_row([seq], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
    if let Some((dead_letters, max)) = redrive
        && count >= *max
    {
        // Same message id and group; its receives there are counted afresh.
        let why = format!("received {count} times without success");
        tx.prepare_cached(
            "UPDATE messages SET queue = ?2, reason = ?3, receipt = NULL, receive_count = 0,
                 visible_at = ?4 WHERE seq = ?1",
        )?
        .execute(params![seq, dead_letters, why, now])?;
        return Ok(None);
    }
    let receipt = random_hex()?;
    tx.prepare_cached(
        "UPDATE messages SET receipt = ?2, receive_count = receive_count + 1, visible_at = ?3
         WHERE seq = ?1",
    )?
    .execute(params![seq, receipt, deadline])?;
    Ok(Some(Received {
        message_id,
        receipt,
        body,
        group_id,
        receive_count: count + 1,
        reason,
        sent_at,
    }))
}

fn insert(
    conn: &mut Connection,
    queue: &str,
    fifo: bool,
    m: &OutgoingMessage,
    now: i64,
) -> Result<(), Fail> {
    let delay = m.delay.map_or(0, |d| millis(d.min(MAX_DELAY)));
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if fifo {
        let (group, dedup) = (m.group_id.as_deref(), m.dedup_id.as_deref());
        tx.prepare_cached("DELETE FROM dedup WHERE expires_at <= ?1")?
            .execute([now])?;
        let fresh = tx
            .prepare_cached(
                "INSERT INTO dedup (queue, group_id, dedup_id, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![queue, group, dedup, now + millis(DEDUP_WINDOW)])?;
        if fresh == 0 {
            // A resend within the window: accepted, and not delivered again.
            tx.commit()?;
            return Ok(());
        }
    }
    tx.prepare_cached(
        "INSERT INTO messages (queue, message_id, body, group_id, reason, sent_at, visible_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        queue,
        message_id()?,
        m.body,
        m.group_id,
        m.reason,
        now,
        now + delay
    ])?;
    tx.commit()?;
    Ok(())
}

#[async_trait]
impl Queue for DurableQueue {
    /// Committed (on disk) before it returns: an accepted webhook survives a crash.
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        if self.fifo {
            if message.group_id.is_none() || message.dedup_id.is_none() {
                return Err(QueueError::Rejected(
                    "a FIFO queue needs a group id and a deduplication id".into(),
                ));
            }
            if message.delay.is_some() {
                return Err(QueueError::Rejected(
                    "a FIFO queue takes no per-message delay".into(),
                ));
            }
        }
        let (queue, fifo) = (self.name.clone(), self.fifo);
        let now = self.store.now_ms();
        Ok(self
            .store
            .run(move |conn| insert(conn, &queue, fifo, &message, now))
            .await?)
    }

    /// The messages a receive could return now (SQS's `ApproximateNumberOfMessages`: neither
    /// delayed nor in flight).
    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        self.count(true).await.map(Some)
    }
}

/// `ChangeMessageVisibility` on the local queues: the queue is the ARN's last part.
#[async_trait]
impl Redelivery for DurableStore {
    async fn redeliver_after(
        &self,
        source_arn: &str,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let Some(name) = source_arn.strip_prefix(LOCAL_ARN_PREFIX) else {
            return Err(QueueError::Rejected(format!(
                "not a local queue: {source_arn}"
            )));
        };
        // As the SQS adapter: at least a second, at most SQS's 12 hours.
        let delay = delay.max(Duration::from_secs(1));
        if self.queue(name).release(receipt, delay).await? {
            Ok(())
        } else {
            Err(QueueError::Rejected(format!(
                "no message in flight in {name} with that receipt"
            )))
        }
    }
}

/// 128 random bits in hex: a receipt handle.
fn random_hex() -> Result<String, Fail> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Fail::Unavailable(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random (version 4) UUID, the shape of an SQS message id.
fn message_id() -> Result<String, Fail> {
    let hex = random_hex()?;
    let variant = ["8", "9", "a", "b"][usize::from(hex.as_bytes()[16] % 4)];
    Ok(format!(
        "{}-{}-4{}-{}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        variant,
        &hex[17..20],
        &hex[20..32]
    ))
}
