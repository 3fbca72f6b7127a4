//! The `StateStore` port on the durable store, with the rules of `MemoryStateStore` and the
//! DynamoDB adapter. A write under a precondition happens only if the precondition holds, in one
//! step, as DynamoDB's conditional writes do (a `PutItem` whose `ConditionExpression` must hold
//! for the write to succeed, else `ConditionalCheckFailedException`:
//! https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html): here one
//! `BEGIN IMMEDIATE` transaction that reads the version and writes. A record whose
//! `expires_at <= now` reads as absent before it is swept, as the DynamoDB adapter filters the
//! expired items TTL has not deleted yet
//! (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html),
//! and a write over it starts again at version 1, as `MemoryStateStore` does.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use shared::ports::{Precondition, Record, StateError, StateStore};

use super::{DurableStore, Fail};

/// A row of `state` as stored: the JSON text, the version, the expiry.
type Row = (String, i64, Option<i64>);

fn read(conn: &Connection, key: &str) -> rusqlite::Result<Option<Row>> {
    conn.prepare_cached("SELECT value, version, expires_at FROM state WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
}

/// The row as a record, or `None` when there is none or it expired at `now`.
fn live(row: Option<Row>, key: &str, now: i64) -> Result<Option<Record>, Fail> {
    let Some((value, version, expires_at)) = row else {
        return Ok(None);
    };
    if expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    let value = serde_json::from_str(&value)
        .map_err(|e| Fail::Corrupt(format!("{key} is not JSON: {e}")))?;
    Ok(Some(Record {
        value,
        version: u64::try_from(version)
            .map_err(|_| Fail::Corrupt(format!("{key} has version {version}")))?,
        expires_at,
    }))
}

fn put(
    conn: &mut Connection,
    key: &str,
    value: &str,
    precondition: Precondition,
    expires_at: Option<i64>,
    now: i64,
) -> Result<u64, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = live(read(&tx, key)?, key, now)?;
    let holds = match precondition {
        Precondition::None => true,
        Precondition::Absent => current.is_none(),
        Precondition::Version(v) => current.as_ref().is_some_and(|r| r.version == v),
    };
    if !holds {
        return Err(Fail::ConditionFailed);
    }
    let version = current.map_or(1, |r| r.version + 1);
    let stored = i64::try_from(version).map_err(|_| Fail::Corrupt(format!("{key} overflowed")))?;
    tx.prepare_cached(
        "INSERT INTO state (key, value, version, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET
             value = excluded.value, version = excluded.version, expires_at = excluded.expires_at",
    )?
    .execute(params![key, value, stored, expires_at])?;
    tx.commit()?;
    Ok(version)
}

#[async_trait]
impl StateStore for DurableStore {
    async fn get(&self, key: &str, now: i64) -> Result<Option<Record>, StateError> {
        let key = key.to_string();
        Ok(self
            .run(move |conn| live(read(conn, &key)?, &key, now))
            .await?)
    }

    /// One read transaction for all of them: a consistent view, in the order of `keys`.
    async fn get_many(&self, keys: &[String], now: i64) -> Result<Vec<Option<Record>>, StateError> {
        let keys = keys.to_vec();
        Ok(self
            .run(move |conn| {
                let tx = conn.transaction()?;
                let records = keys
                    .iter()
                    .map(|key| live(read(&tx, key)?, key, now))
                    .collect::<Result<Vec<_>, Fail>>()?;
                tx.commit()?;
                Ok(records)
            })
            .await?)
    }

    async fn put(
        &self,
        key: &str,
        value: serde_json::Value,
        precondition: Precondition,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<u64, StateError> {
        let key = key.to_string();
        let value = value.to_string();
        Ok(self
            .run(move |conn| put(conn, &key, &value, precondition, expires_at, now))
            .await?)
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        let key = key.to_string();
        Ok(self
            .run(move |conn| {
                conn.prepare_cached("DELETE FROM state WHERE key = ?1")?
                    .execute([key])?;
                Ok(())
            })
            .await?)
    }
}
