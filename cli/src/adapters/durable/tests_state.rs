//! The state-store port on the durable store: the same checks tests/tests/state_store.rs makes
//! on DynamoDB (moto) and shared's memory adapter tests make on `MemoryStateStore`, then what
//! only a durable store must do (survive a reopen, serialise concurrent conditional writes).

use std::sync::Arc;

use serde_json::json;
use shared::adapters::memory::FixedClock;
use shared::ports::{Precondition, StateError, StateStore};
use tempfile::TempDir;

use super::{DurableStore, Synchronous};

fn open(dir: &TempDir) -> DurableStore {
    let clock = Arc::new(FixedClock::at(time::macros::datetime!(2027-01-01 0:00 UTC)));
    DurableStore::open_with(dir.path(), clock, Synchronous::Full).unwrap()
}

fn store() -> (TempDir, DurableStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    (dir, store)
}

/// tests/tests/state_store.rs `conditional_writes_versions_and_expiry_on_dynamodb`, which
/// includes memory.rs's `conditional_writes_and_expiry`.
#[tokio::test]
async fn conditional_writes_versions_and_expiry() {
    let (_dir, store) = store();
    let put = |v, pre, exp, now| store.put("k", v, pre, exp, now);
    assert_eq!(
        put(json!({"a": 1}), Precondition::Absent, Some(100), 0)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        put(json!(2), Precondition::Absent, None, 50).await,
        Err(StateError::ConditionFailed)
    ));
    assert!(matches!(
        put(json!(2), Precondition::Version(9), None, 50).await,
        Err(StateError::ConditionFailed)
    ));
    assert_eq!(
        put(json!(2), Precondition::Version(1), Some(100), 50)
            .await
            .unwrap(),
        2
    );
    let record = store.get("k", 99).await.unwrap().unwrap();
    assert_eq!(
        (record.value, record.version, record.expires_at),
        (json!(2), 2, Some(100))
    );

    // Expired, not yet swept: gone for reads and for `Absent`, and the count starts again.
    assert!(store.get("k", 100).await.unwrap().is_none());
    assert!(matches!(
        put(json!(3), Precondition::Version(2), None, 100).await,
        Err(StateError::ConditionFailed)
    ));
    assert_eq!(
        put(json!(3), Precondition::Absent, None, 100)
            .await
            .unwrap(),
        1
    );
    let record = store.get("k", 10_000).await.unwrap().unwrap();
    assert_eq!((record.value, record.expires_at), (json!(3), None));

    assert_eq!(put(json!(4), Precondition::None, None, 0).await.unwrap(), 2);
    store.delete("k").await.unwrap();
    assert!(store.get("k", 0).await.unwrap().is_none());
    store.delete("k").await.unwrap();
    assert_eq!(put(json!(5), Precondition::None, None, 0).await.unwrap(), 1);
}

/// tests/tests/state_store.rs `many_records_are_read_in_batches_in_the_order_asked`.
#[tokio::test]
async fn many_records_are_read_in_the_order_asked() {
    let (_dir, store) = store();
    for i in 0..150 {
        if i % 10 != 3 {
            store
                .put(&format!("k{i}"), json!(i), Precondition::None, None, 0)
                .await
                .unwrap();
        }
    }
    store
        .put("k7", json!("old"), Precondition::None, Some(50), 0)
        .await
        .unwrap();
    let mut keys: Vec<String> = (0..150).rev().map(|i| format!("k{i}")).collect();
    keys.push("k149".into());
    let records = store.get_many(&keys, 100).await.unwrap();
    assert_eq!(records.len(), 151);
    for (key, record) in keys.iter().zip(&records) {
        let i: u64 = key[1..].parse().unwrap();
        match record {
            _ if i % 10 == 3 || i == 7 => assert!(record.is_none(), "{key}"),
            Some(r) => assert_eq!(r.value, json!(i), "{key}"),
            None => panic!("{key} is missing"),
        }
    }
    assert_eq!(records[0], records[150], "the same key answers the same");
}

#[tokio::test]
async fn records_survive_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store
            .put("live", json!({"release": 7}), Precondition::Absent, None, 0)
            .await
            .unwrap();
        store
            .put(
                "live",
                json!({"release": 8}),
                Precondition::Version(1),
                None,
                0,
            )
            .await
            .unwrap();
        store
            .put("dedupe", json!(true), Precondition::Absent, Some(500), 0)
            .await
            .unwrap();
    }
    let store = open(&dir);
    let live = store.get("live", 10).await.unwrap().unwrap();
    assert_eq!((live.value, live.version), (json!({"release": 8}), 2));
    assert_eq!(
        store.get("dedupe", 10).await.unwrap().unwrap().expires_at,
        Some(500)
    );
    assert_eq!(
        store
            .put("live", json!(9), Precondition::Version(2), None, 10)
            .await
            .unwrap(),
        3,
        "the version count goes on across the restart"
    );
}

/// Several tasks bump one counter by read-then-`Version` writes: every version is won exactly
/// once and no increment is lost; and of tasks all writing over the same version, one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_version_writes_have_one_winner_per_version() {
    let (_dir, store) = store();
    store
        .put("n", json!(0), Precondition::Absent, None, 0)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut won = Vec::new();
                while won.len() < 20 {
                    let r = store.get("n", 0).await.unwrap().unwrap();
                    let next = json!(r.value.as_u64().unwrap() + 1);
                    match store
                        .put("n", next, Precondition::Version(r.version), None, 0)
                        .await
                    {
                        Ok(v) => won.push(v),
                        Err(StateError::ConditionFailed) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    won.sort_unstable();
    assert_eq!(won, (2..=121).collect::<Vec<u64>>());
    assert_eq!(store.get("n", 0).await.unwrap().unwrap().value, json!(120));

    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put("n", json!(i), Precondition::Version(121), None, 0)
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            Ok(v) => winners.push(v),
            Err(StateError::ConditionFailed) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(winners, vec![122], "one winner over version 121");
    assert_eq!(store.get("n", 0).await.unwrap().unwrap().version, 122);
}

#[tokio::test]
async fn expired_records_are_swept_and_a_bad_record_is_corrupt() {
    let (_dir, store) = store();
    let now = time::macros::datetime!(2027-01-01 0:00 UTC).unix_timestamp();
    store
        .put("old", json!(1), Precondition::None, Some(now), 0)
        .await
        .unwrap();
    store
        .put("new", json!(1), Precondition::None, Some(now + 1), 0)
        .await
        .unwrap();
    store
        .put("kept", json!(1), Precondition::None, None, 0)
        .await
        .unwrap();
    assert_eq!(store.sweep().await.unwrap(), 1);
    assert!(
        store.get("old", 0).await.unwrap().is_none(),
        "swept, not only hidden"
    );
    assert!(store.get("new", 0).await.unwrap().is_some());

    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute(
        "INSERT INTO state (key, value, version) VALUES ('bad', 'not json', 1)",
        [],
    )
    .unwrap();
    assert!(matches!(
        store.get("bad", 0).await,
        Err(StateError::Corrupt(_))
    ));
    assert!(matches!(
        store.get_many(&["kept".into(), "bad".into()], 0).await,
        Err(StateError::Corrupt(_))
    ));
}
