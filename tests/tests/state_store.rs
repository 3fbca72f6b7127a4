//! The DynamoDB state store on moto keeps the same rules as the in-memory one: conditional
//! writes, versions, and expired records reading as absent.

use e2e::aws;
use serde_json::json;
use shared::adapters::dynamodb::DynamoStateStore;
use shared::ports::{Precondition, StateError, StateStore};

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn conditional_writes_versions_and_expiry_on_dynamodb() {
    let sdk = aws::sdk_config().await;
    let table = e2e::unique("state");
    aws::create_state_table(&sdk, &table).await;
    let store = DynamoStateStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);

    assert_eq!(
        store
            .put("k", json!({"a": 1}), Precondition::Absent, Some(100), 0)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        store
            .put("k", json!(2), Precondition::Absent, None, 50)
            .await,
        Err(StateError::ConditionFailed)
    ));
    assert!(matches!(
        store
            .put("k", json!(2), Precondition::Version(9), None, 50)
            .await,
        Err(StateError::ConditionFailed)
    ));
    assert_eq!(
        store
            .put("k", json!(2), Precondition::Version(1), Some(100), 50)
            .await
            .unwrap(),
        2
    );
    let record = store.get("k", 99).await.unwrap().unwrap();
    assert_eq!(
        (record.value, record.version, record.expires_at),
        (json!(2), 2, Some(100))
    );

    // Expired (moto, like DynamoDB, has not deleted it yet): gone for reads and for `Absent`.
    assert!(store.get("k", 100).await.unwrap().is_none());
    store
        .put("k", json!(3), Precondition::Absent, None, 100)
        .await
        .unwrap();
    let record = store.get("k", 10_000).await.unwrap().unwrap();
    assert_eq!((record.value, record.expires_at), (json!(3), None));

    store
        .put("k", json!(4), Precondition::None, None, 0)
        .await
        .unwrap();
    store.delete("k").await.unwrap();
    assert!(store.get("k", 0).await.unwrap().is_none());
}

#[tokio::test]
#[ignore = "needs moto: run scripts/test"]
async fn many_records_are_read_in_batches_in_the_order_asked() {
    let sdk = aws::sdk_config().await;
    let table = e2e::unique("state");
    aws::create_state_table(&sdk, &table).await;
    let store = DynamoStateStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    // More than one BatchGetItem's 100 keys, some absent, one expired, one asked twice.
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
