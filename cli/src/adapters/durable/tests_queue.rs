//! The queues of the durable store: shared's memory-queue check, then the SQS behaviours the
//! local pump relies on (visibility, receipts, FIFO groups, delays, redrive with a reason) and
//! what only a durable queue must do (keep messages, dedup ids and in-flight messages across a
//! restart).

use std::sync::Arc;
use std::time::Duration;

use shared::adapters::memory::FixedClock;
use shared::ports::{OutgoingMessage, Queue, QueueError, Redelivery};
use tempfile::TempDir;

use super::{DurableQueue, DurableStore, Received, Synchronous};

const MINUTE: Duration = Duration::from_secs(60);

struct Fixture {
    dir: TempDir,
    clock: Arc<FixedClock>,
    store: DurableStore,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(time::macros::datetime!(2027-01-01 0:00 UTC)));
        let store = DurableStore::open_with(dir.path(), clock.clone(), Synchronous::Full).unwrap();
        Self { dir, clock, store }
    }

    /// Closes the store and opens the file again, as a restarted `serve` does.
    fn reopen(&mut self) {
        self.store =
            DurableStore::open_with(self.dir.path(), self.clock.clone(), Synchronous::Full)
                .unwrap();
    }

    fn q(&self, name: &str) -> DurableQueue {
        self.store.queue(name)
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

async fn bodies(q: &DurableQueue) -> Vec<String> {
    q.list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect()
}

fn bodies_of(batch: &[Received]) -> Vec<&str> {
    batch.iter().map(|m| m.body.as_str()).collect()
}

/// shared/src/adapters/memory.rs `a_fifo_queue_drops_a_repeated_deduplication_id`.
#[tokio::test]
async fn a_fifo_queue_drops_a_repeated_deduplication_id() {
    let f = Fixture::new();
    let q = f.q("builds.fifo");
    q.send(OutgoingMessage::fifo("a", "g", "d1")).await.unwrap();
    q.send(OutgoingMessage::fifo("a again", "g", "d1"))
        .await
        .unwrap();
    q.send(OutgoingMessage::fifo("b", "g", "d2")).await.unwrap();
    assert_eq!(bodies(&q).await, vec!["a", "b"]);
    assert!(q.send(OutgoingMessage::new("no group")).await.is_err());
    let mut no_dedup = OutgoingMessage::new("no dedup id");
    no_dedup.group_id = Some("g".into());
    assert!(matches!(
        q.send(no_dedup).await,
        Err(QueueError::Rejected(_))
    ));
}

/// DeduplicationScope messageGroup: the id counts within its group, for five minutes of wall
/// time, across a restart.
#[tokio::test]
async fn deduplication_is_per_group_for_five_minutes_across_a_restart() {
    let mut f = Fixture::new();
    f.q("builds.fifo")
        .send(OutgoingMessage::fifo("a", "g1", "d"))
        .await
        .unwrap();
    f.q("builds.fifo")
        .send(OutgoingMessage::fifo("b", "g2", "d"))
        .await
        .unwrap();
    f.q("deploys.fifo")
        .send(OutgoingMessage::fifo("c", "g1", "d"))
        .await
        .unwrap();
    f.reopen();
    let q = f.q("builds.fifo");
    f.advance(Duration::from_secs(299));
    q.send(OutgoingMessage::fifo("a again", "g1", "d"))
        .await
        .unwrap();
    assert_eq!(bodies(&q).await, vec!["a", "b"]);
    f.advance(Duration::from_secs(1));
    q.send(OutgoingMessage::fifo("a later", "g1", "d"))
        .await
        .unwrap();
    assert_eq!(bodies(&q).await, vec!["a", "b", "a later"]);
    assert_eq!(bodies(&f.q("deploys.fifo")).await, vec!["c"]);
}

#[tokio::test]
async fn a_standard_queue_honours_a_delay_and_a_fifo_queue_refuses_one() {
    let f = Fixture::new();
    let q = f.q("notifications");
    q.send(OutgoingMessage::new("soon").with_delay(MINUTE))
        .await
        .unwrap();
    q.send(OutgoingMessage::new("capped").with_delay(60 * MINUTE))
        .await
        .unwrap();
    assert_eq!(q.depth().await.unwrap(), Some(0));
    assert!(q.receive(10, MINUTE).await.unwrap().is_empty());
    f.advance(MINUTE);
    let soon = q.receive(10, MINUTE).await.unwrap();
    assert_eq!(bodies_of(&soon), vec!["soon"]);
    assert!(q.delete(&soon[0].receipt).await.unwrap());
    f.advance(13 * MINUTE);
    assert_eq!(q.depth().await.unwrap(), Some(0));
    f.advance(MINUTE);
    assert_eq!(
        q.depth().await.unwrap(),
        Some(1),
        "SQS delays 15 minutes at most"
    );
    let fifo = OutgoingMessage::fifo("x", "g", "d").with_delay(MINUTE);
    assert!(matches!(
        f.q("deploys.fifo").send(fifo).await,
        Err(QueueError::Rejected(_))
    ));
}

#[tokio::test]
async fn a_received_message_is_invisible_until_its_visibility_deadline() {
    let f = Fixture::new();
    let q = f.q("build-events");
    q.send(OutgoingMessage::new("m")).await.unwrap();
    let first = q.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!((first.len(), first[0].receive_count), (1, 1));
    assert!(q.receive(10, MINUTE).await.unwrap().is_empty(), "in flight");
    assert_eq!(
        (q.depth().await.unwrap(), q.len().await.unwrap()),
        (Some(0), 1)
    );

    f.advance(Duration::from_secs(30));
    let second = q.receive(10, MINUTE).await.unwrap();
    assert_eq!(
        second[0].message_id, first[0].message_id,
        "the id is stable"
    );
    assert_ne!(
        second[0].receipt, first[0].receipt,
        "a new receipt per receive"
    );
    assert_eq!(second[0].receive_count, 2);
    assert!(
        !q.delete(&first[0].receipt).await.unwrap(),
        "a stale receipt deletes nothing"
    );
    assert_eq!(q.len().await.unwrap(), 1);
    assert!(q.delete(&second[0].receipt).await.unwrap());
    assert_eq!(q.len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_released_message_is_visible_again_after_the_delay() {
    let f = Fixture::new();
    let q = f.q("notifications");
    q.send(OutgoingMessage::new("m")).await.unwrap();
    let got = q.receive(1, MINUTE).await.unwrap();
    assert!(
        q.release(&got[0].receipt, Duration::from_secs(10))
            .await
            .unwrap()
    );
    f.advance(Duration::from_secs(9));
    assert!(q.receive(1, MINUTE).await.unwrap().is_empty());
    f.advance(Duration::from_secs(1));
    let again = q.receive(1, MINUTE).await.unwrap();
    assert_eq!(again[0].receive_count, 2);
    assert!(
        !q.release(&got[0].receipt, Duration::ZERO).await.unwrap(),
        "stale receipt"
    );
    assert!(q.release(&again[0].receipt, Duration::ZERO).await.unwrap());
    assert_eq!(q.depth().await.unwrap(), Some(1), "released at once");
}

/// SQS FIFO: a receive takes a group's messages in order, and nothing of a group while one of
/// its messages is in flight; other groups go on.
#[tokio::test]
async fn a_fifo_group_keeps_its_order_with_one_batch_in_flight() {
    let f = Fixture::new();
    let q = f.q("deploys.fifo");
    for (body, group) in [
        ("a1", "a"),
        ("a2", "a"),
        ("b1", "b"),
        ("a3", "a"),
        ("b2", "b"),
    ] {
        q.send(OutgoingMessage::fifo(body, group, body))
            .await
            .unwrap();
    }
    let a1 = q.receive(1, MINUTE).await.unwrap();
    assert_eq!(bodies_of(&a1), vec!["a1"]);
    let b = q.receive(10, MINUTE).await.unwrap();
    assert_eq!(bodies_of(&b), vec!["b1", "b2"], "group a waits for a1");
    assert!(q.receive(10, MINUTE).await.unwrap().is_empty());
    let done: Vec<String> = b.into_iter().map(|m| m.receipt).collect();
    assert_eq!(q.delete_batch(&done).await.unwrap(), 2);

    // a1 fails and comes back later: a2 must not overtake it.
    q.release(&a1[0].receipt, MINUTE).await.unwrap();
    assert!(q.receive(10, MINUTE).await.unwrap().is_empty());
    f.advance(MINUTE);
    let a = q.receive(10, MINUTE).await.unwrap();
    assert_eq!(bodies_of(&a), vec!["a1", "a2", "a3"]);
    assert_eq!(a[0].receive_count, 2);
    assert_eq!(a[0].group_id.as_deref(), Some("a"));
}

#[tokio::test]
async fn the_receive_after_max_receive_count_dead_letters_with_a_reason() {
    let f = Fixture::new();
    let q = f.q("builds.fifo").with_redrive("builds-dlq.fifo", 3);
    q.send(OutgoingMessage::fifo("hopeless", "g", "d"))
        .await
        .unwrap();
    let mut id = String::new();
    for n in 1..=3 {
        let got = q.receive(10, MINUTE).await.unwrap();
        assert_eq!(got[0].receive_count, n);
        id.clone_from(&got[0].message_id);
        q.release(&got[0].receipt, Duration::ZERO).await.unwrap();
    }
    assert!(q.receive(10, MINUTE).await.unwrap().is_empty());
    assert_eq!(q.len().await.unwrap(), 0);

    let dlq = f.q("builds-dlq.fifo");
    let dead = dlq.list().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].message_id.as_str(),
            dead[0].reason.as_deref(),
            dead[0].group_id.as_deref()
        ),
        (
            id.as_str(),
            Some("received 3 times without success"),
            Some("g")
        )
    );
    assert_eq!(dlq.depth().await.unwrap(), Some(1));
}

/// A function's own dead letter (shared/src/batch.rs `dead_letter`) keeps its reason, and the
/// event handed out for it carries it as SQS's message attribute would.
#[tokio::test]
async fn a_dead_letter_keeps_its_reason_into_the_event() {
    let f = Fixture::new();
    let dlq = f.q("deploys-dlq.fifo");
    let mut dead = OutgoingMessage::fifo("{}", "heroku:app", "k").with_reason("version 9");
    dlq.send(dead.clone()).await.unwrap();
    dead.body = "other".into();
    dlq.send(dead).await.unwrap();
    let got = dlq.receive(10, MINUTE).await.unwrap();
    assert_eq!(got.len(), 1, "the FIFO dead-letter queue deduplicates too");
    assert_eq!(got[0].reason.as_deref(), Some("version 9"));

    let event = dlq.sqs_event(&got);
    let r = &event.records[0];
    assert_eq!(r.message_id.as_deref(), Some(got[0].message_id.as_str()));
    assert_eq!(r.receipt_handle.as_deref(), Some(got[0].receipt.as_str()));
    assert_eq!(r.body.as_deref(), Some("{}"));
    assert_eq!(
        r.event_source_arn.as_deref(),
        Some("arn:aws:sqs:local:000000000000:deploys-dlq.fifo")
    );
    assert_eq!(r.attributes["MessageGroupId"], "heroku:app");
    assert_eq!(r.attributes["ApproximateReceiveCount"], "1");
    assert_eq!(r.attributes["SentTimestamp"], got[0].sent_at.to_string());
    let reason = &r.message_attributes["shipline_reason"];
    assert_eq!(reason.string_value.as_deref(), Some("version 9"));
}

/// The crash case: what was queued is still there, and what was in flight comes back at once
/// after `recover_in_flight`, its receive count going on.
#[tokio::test]
async fn messages_survive_a_restart_and_in_flight_ones_are_redelivered() {
    let mut f = Fixture::new();
    let q = f.q("build-events");
    for body in ["a", "b", "c"] {
        q.send(OutgoingMessage::new(body)).await.unwrap();
    }
    let taken = q.receive(2, Duration::from_secs(180)).await.unwrap();
    assert_eq!(bodies_of(&taken), vec!["a", "b"]);
    f.reopen();
    let q = f.q("build-events");
    assert_eq!(bodies(&q).await, vec!["a", "b", "c"]);
    assert_eq!(
        q.depth().await.unwrap(),
        Some(1),
        "a and b wait for their deadline"
    );
    assert_eq!(f.store.recover_in_flight().await.unwrap(), 2);
    let again = q.receive(10, MINUTE).await.unwrap();
    assert_eq!(bodies_of(&again), vec!["a", "b", "c"]);
    let counts: Vec<u32> = again.iter().map(|m| m.receive_count).collect();
    assert_eq!(counts, vec![2, 2, 1]);
    assert_eq!(again[0].message_id, taken[0].message_id);
    assert!(
        !q.delete(&taken[0].receipt).await.unwrap(),
        "the dead process's receipt"
    );
}

#[tokio::test]
async fn redelivery_by_arn_sets_a_new_visibility() {
    let f = Fixture::new();
    let q = f.q("notifications");
    q.send(OutgoingMessage::new("rate limited")).await.unwrap();
    let got = q.receive(1, MINUTE).await.unwrap();
    let store: &dyn Redelivery = &f.store;
    store
        .redeliver_after(&q.arn(), &got[0].receipt, Duration::from_secs(300))
        .await
        .unwrap();
    f.advance(Duration::from_secs(299));
    assert!(
        q.receive(1, MINUTE).await.unwrap().is_empty(),
        "past the queue's own timeout"
    );
    f.advance(Duration::from_secs(1));
    assert_eq!(q.receive(1, MINUTE).await.unwrap().len(), 1);
    let unknown = store.redeliver_after(&q.arn(), "nope", MINUTE).await;
    assert!(matches!(unknown, Err(QueueError::Rejected(_))));
    let foreign = store
        .redeliver_after("arn:aws:sqs:eu-west-1:1:q", &got[0].receipt, MINUTE)
        .await;
    assert!(matches!(foreign, Err(QueueError::Rejected(_))));
}

/// Receivers racing on one queue never get the same message twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_receivers_share_the_messages_out() {
    let f = Fixture::new();
    let q = f.q("build-events");
    for i in 0..60 {
        q.send(OutgoingMessage::new(format!("m{i}"))).await.unwrap();
    }
    let receivers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let batch = q.receive(3, MINUTE).await.unwrap();
                    if batch.is_empty() {
                        return ids;
                    }
                    ids.extend(batch.into_iter().map(|m| m.message_id));
                }
            })
        })
        .collect();
    let mut ids = Vec::new();
    for r in receivers {
        ids.extend(r.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (60, 60));
}

#[tokio::test]
async fn the_file_is_in_wal_mode_with_full_sync() {
    let f = Fixture::new();
    let conn = f.store.inner.conn.lock().unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!((mode.as_str(), sync), ("wal", 2), "2 is FULL");
    drop(conn);
    let other = rusqlite::Connection::open(f.store.path()).unwrap();
    other.pragma_update(None, "user_version", 99).unwrap();
    drop(other);
    let newer = DurableStore::open(f.dir.path()).err().unwrap();
    assert!(format!("{newer:#}").contains("newer shipline"), "{newer:#}");
}
