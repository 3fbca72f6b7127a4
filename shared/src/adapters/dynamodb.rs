//! The `StateStore` port on DynamoDB: one table, string key `pk`, the JSON value in `value`, a
//! numeric `version` for optimistic concurrency and `expires_at` (unix seconds) as the TTL
//! attribute. Expired items read as absent, since DynamoDB deletes them only eventually.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};

use crate::ports::{Precondition, Record, StateError, StateStore};

pub struct DynamoStateStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStateStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Result<Option<i64>, StateError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| StateError::Corrupt(format!("`{name}` is not an integer"))),
        Some(_) => Err(StateError::Corrupt(format!("`{name}` is not a number"))),
    }
}

/// An item as a record; an expired one reads as absent.
fn record(item: &HashMap<String, AttributeValue>, now: i64) -> Result<Option<Record>, StateError> {
    let expires_at = number(item, "expires_at")?;
    if expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    let value = match item.get("value") {
        Some(AttributeValue::S(text)) => serde_json::from_str(text)
            .map_err(|e| StateError::Corrupt(format!("`value` is not JSON: {e}")))?,
        _ => return Err(StateError::Corrupt("`value` is missing".into())),
    };
    let version = number(item, "version")?.unwrap_or(1);
    Ok(Some(Record {
        value,
        version: u64::try_from(version).unwrap_or(1),
        expires_at,
    }))
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StateError {
    StateError::Unavailable(DisplayErrorContext(e).to_string())
}

#[async_trait]
impl StateStore for DynamoStateStore {
    async fn get(&self, key: &str, now: i64) -> Result<Option<Record>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.map_or(Ok(None), |item| record(&item, now))
    }

    /// `BatchGetItem`, 100 keys a call (DynamoDB's limit), strongly consistent; the keys
    /// DynamoDB leaves unprocessed (throughput) are asked again, after a short wait.
    async fn get_many(&self, keys: &[String], now: i64) -> Result<Vec<Option<Record>>, StateError> {
        let mut found: HashMap<String, Record> = HashMap::new();
        let mut unique: Vec<&String> = keys.iter().collect();
        unique.sort_unstable();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let mut wanted: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|k| HashMap::from([("pk".to_string(), AttributeValue::S((*k).clone()))]))
                .collect();
            for attempt in 0..5u32 {
                if wanted.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut wanted)))
                    .consistent_read(true)
                    .build()
                    .map_err(unavailable)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let Some(AttributeValue::S(pk)) = item.get("pk") else {
                        continue;
                    };
                    if let Some(record) = record(&item, now)? {
                        found.insert(pk.clone(), record);
                    }
                }
                wanted = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
            if !wanted.is_empty() {
                return Err(StateError::Unavailable(
                    "DynamoDB left keys unprocessed five times".into(),
                ));
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn put(
        &self,
        key: &str,
        value: serde_json::Value,
        precondition: Precondition,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<u64, StateError> {
        // One UpdateItem for every case: it bumps the version atomically and can be conditional.
        let mut update =
            String::from("SET #value = :value, #version = if_not_exists(#version, :zero) + :one");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .expression_attribute_names("#value", "value")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":value", AttributeValue::S(value.to_string()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew);
        match expires_at {
            Some(at) => {
                update.push_str(", expires_at = :expires_at");
                request = request.expression_attribute_values(":expires_at", n(at));
            }
            None => update.push_str(" REMOVE expires_at"),
        }
        request = match precondition {
            Precondition::None => request,
            Precondition::Absent => request
                .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                .expression_attribute_values(":now", n(now)),
            Precondition::Version(v) => request
                .condition_expression(
                    "#version = :expected AND (attribute_not_exists(expires_at) OR expires_at > :now)",
                )
                .expression_attribute_values(":expected", n(v))
                .expression_attribute_values(":now", n(now)),
        };
        let out = request
            .update_expression(update)
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                err if err.is_conditional_check_failed_exception() => StateError::ConditionFailed,
                err => unavailable(err),
            })?;
        let version = out
            .attributes
            .as_ref()
            .map(|a| number(a, "version"))
            .transpose()?
            .flatten()
            .unwrap_or(1);
        Ok(u64::try_from(version).unwrap_or(1))
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
