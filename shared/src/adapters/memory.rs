//! Embedded adapters: an in-memory queue, state store and clock, for the local stack and
//! handler tests. They keep the semantics that matter (FIFO deduplication, conditional writes,
//! expiry), so that a handler behaves the same on them as on SQS and DynamoDB.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{
    Clock, OutgoingMessage, Precondition, Queue, QueueError, Record, Redelivery, StateError,
    StateStore,
};

/// FIFO deduplication window, as on SQS.
const DEDUP_WINDOW: Duration = Duration::from_secs(300);

/// A queue in memory. On a FIFO queue (`fifo = true`) a message whose deduplication id was
/// seen in the last five minutes is accepted and dropped, as SQS does.
#[derive(Default)]
pub struct MemoryQueue {
    fifo: bool,
    inner: Mutex<MemoryQueueState>,
    fail_sends: Mutex<u32>,
}

#[derive(Default)]
struct MemoryQueueState {
    messages: VecDeque<OutgoingMessage>,
    seen: HashMap<String, std::time::Instant>,
}

impl MemoryQueue {
    pub fn standard() -> Self {
        Self::default()
    }

    pub fn fifo() -> Self {
        Self {
            fifo: true,
            ..Self::default()
        }
    }

    /// Makes the next `n` sends fail as if SQS were down.
    pub fn fail_next_sends(&self, n: u32) {
        *self.fail_sends.lock().unwrap() = n;
    }

    /// Puts a message back at the end without the deduplication check: a redelivery of a
    /// message that was received but not processed.
    pub fn requeue(&self, message: OutgoingMessage) {
        self.inner.lock().unwrap().messages.push_back(message);
    }

    /// Copies of the messages waiting, oldest first, left in place.
    pub fn peek(&self) -> Vec<OutgoingMessage> {
        self.inner
            .lock()
            .unwrap()
            .messages
            .iter()
            .cloned()
            .collect()
    }

    /// Takes every message sent so far, oldest first.
    pub fn drain(&self) -> Vec<OutgoingMessage> {
        self.inner.lock().unwrap().messages.drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        {
            let mut failures = self.fail_sends.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(QueueError::Unavailable("injected failure".into()));
            }
        }
        let mut state = self.inner.lock().unwrap();
        if self.fifo {
            let (Some(_), Some(dedup)) = (&message.group_id, &message.dedup_id) else {
                return Err(QueueError::Rejected(
                    "a FIFO queue needs a group id and a deduplication id".into(),
                ));
            };
            let now = std::time::Instant::now();
            state
                .seen
                .retain(|_, at| now.duration_since(*at) < DEDUP_WINDOW);
            if state.seen.contains_key(dedup) {
                return Ok(());
            }
            state.seen.insert(dedup.clone(), now);
        }
        state.messages.push_back(message);
        Ok(())
    }

    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        Ok(Some(self.len() as u64))
    }
}

/// A state store in memory with the same conditional-write and expiry rules as the DynamoDB
/// adapter.
#[derive(Default)]
pub struct MemoryStateStore {
    records: Mutex<HashMap<String, Record>>,
    fail: Mutex<bool>,
}

impl MemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail as if the table were unreachable, until called with `false`.
    pub fn set_unavailable(&self, unavailable: bool) {
        *self.fail.lock().unwrap() = unavailable;
    }

    fn check_available(&self) -> Result<(), StateError> {
        if *self.fail.lock().unwrap() {
            Err(StateError::Unavailable("injected failure".into()))
        } else {
            Ok(())
        }
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<_> = self.records.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

fn live(record: Option<&Record>, now: i64) -> Option<&Record> {
    record.filter(|r| r.expires_at.is_none_or(|at| at > now))
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn get(&self, key: &str, now: i64) -> Result<Option<Record>, StateError> {
        self.check_available()?;
        Ok(live(self.records.lock().unwrap().get(key), now).cloned())
    }

    async fn put(
        &self,
        key: &str,
        value: serde_json::Value,
        precondition: Precondition,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<u64, StateError> {
        self.check_available()?;
        let mut records = self.records.lock().unwrap();
        let current = live(records.get(key), now);
        let ok = match precondition {
            Precondition::None => true,
            Precondition::Absent => current.is_none(),
            Precondition::Version(v) => current.is_some_and(|r| r.version == v),
        };
        if !ok {
            return Err(StateError::ConditionFailed);
        }
        let version = current.map_or(1, |r| r.version + 1);
        records.insert(
            key.to_string(),
            Record {
                value,
                version,
                expires_at,
            },
        );
        Ok(version)
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.check_available()?;
        self.records.lock().unwrap().remove(key);
        Ok(())
    }
}

/// Records the delays asked for; the local runner reads them to schedule a message again.
#[derive(Default)]
pub struct MemoryRedelivery {
    delays: Mutex<Vec<(String, Duration)>>,
}

impl MemoryRedelivery {
    pub fn delays(&self) -> Vec<Duration> {
        self.delays
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d)| *d)
            .collect()
    }

    /// The delay asked for a receipt handle, taken.
    pub fn take(&self, receipt: &str) -> Option<Duration> {
        let mut delays = self.delays.lock().unwrap();
        let i = delays.iter().position(|(r, _)| r == receipt)?;
        Some(delays.remove(i).1)
    }
}

#[async_trait]
impl Redelivery for MemoryRedelivery {
    async fn redeliver_after(
        &self,
        _source_arn: &str,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.delays
            .lock()
            .unwrap()
            .push((receipt.to_string(), delay));
        Ok(())
    }
}

/// A clock that stands still until moved.
pub struct FixedClock(Mutex<time::OffsetDateTime>);

impl FixedClock {
    pub fn at(t: time::OffsetDateTime) -> Self {
        Self(Mutex::new(t))
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> time::OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_fifo_queue_drops_a_repeated_deduplication_id() {
        let q = MemoryQueue::fifo();
        q.send(OutgoingMessage::fifo("a", "g", "d1")).await.unwrap();
        q.send(OutgoingMessage::fifo("a again", "g", "d1"))
            .await
            .unwrap();
        q.send(OutgoingMessage::fifo("b", "g", "d2")).await.unwrap();
        let bodies: Vec<_> = q.drain().into_iter().map(|m| m.body).collect();
        assert_eq!(bodies, vec!["a", "b"]);
        assert!(q.send(OutgoingMessage::new("no group")).await.is_err());
    }

    #[tokio::test]
    async fn conditional_writes_and_expiry() {
        let s = MemoryStateStore::new();
        assert_eq!(
            s.put("k", json!(1), Precondition::Absent, Some(100), 0)
                .await
                .unwrap(),
            1
        );
        assert!(matches!(
            s.put("k", json!(2), Precondition::Absent, None, 50).await,
            Err(StateError::ConditionFailed)
        ));
        assert!(matches!(
            s.put("k", json!(2), Precondition::Version(7), None, 50)
                .await,
            Err(StateError::ConditionFailed)
        ));
        assert_eq!(
            s.put("k", json!(2), Precondition::Version(1), Some(100), 50)
                .await
                .unwrap(),
            2
        );
        assert_eq!(s.get("k", 99).await.unwrap().unwrap().value, json!(2));
        // Past its expiry the record is gone for reads and for `Absent`.
        assert!(s.get("k", 100).await.unwrap().is_none());
        assert_eq!(
            s.put("k", json!(3), Precondition::Absent, None, 100)
                .await
                .unwrap(),
            1
        );
    }
}
