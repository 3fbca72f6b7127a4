//! The fields of Sentry's webhook payloads that shipline reads, as typed structs. Sentry sends
//! `null` for some documented fields, leaves others out and types a few loosely (an issue id is
//! a string in one resource and a number in another), so every field reads leniently: a value
//! of another type than expected counts as absent, and anything but an object reads as an
//! object without fields. Only a missing `data` (and, per resource, its one required object) is
//! refused, by the parser in `sentry`.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An integration-platform delivery: the `action` and the resource's `data`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, bound = "D: DeserializeOwned + Default")]
pub(super) struct Envelope<D> {
    #[serde(deserialize_with = "text")]
    pub action: Option<String>,
    #[serde(deserialize_with = "present")]
    pub data: Option<D>,
}

/// `data` of the resources shipline only acknowledges or ignores.
pub(super) type Unread = IgnoredAny;

/// `data` of the `issue` resource.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct IssueData {
    #[serde(deserialize_with = "present")]
    pub issue: Option<Issue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Issue {
    #[serde(deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(deserialize_with = "object")]
    pub project: ProjectRef,
    #[serde(deserialize_with = "text")]
    pub title: Option<String>,
    #[serde(deserialize_with = "text")]
    pub level: Option<String>,
    #[serde(deserialize_with = "text")]
    pub culprit: Option<String>,
    #[serde(rename = "shortId", deserialize_with = "text")]
    pub short_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub web_url: Option<String>,
    #[serde(deserialize_with = "text")]
    pub permalink: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ProjectRef {
    #[serde(deserialize_with = "string")]
    pub slug: Option<String>,
}

/// `data` of the `event_alert` (an `event`) and `error` (an `error`) resources.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct EventData {
    #[serde(deserialize_with = "present")]
    pub event: Option<Event>,
    #[serde(deserialize_with = "present")]
    pub error: Option<Event>,
    #[serde(deserialize_with = "string")]
    pub triggered_rule: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Event {
    /// The API URL, which names the project (`.../projects/<org>/<slug>/events/...`).
    #[serde(deserialize_with = "text")]
    pub url: Option<String>,
    #[serde(deserialize_with = "text")]
    pub project: Option<String>,
    #[serde(deserialize_with = "issue_id")]
    pub issue_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub event_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub title: Option<String>,
    #[serde(deserialize_with = "text")]
    pub message: Option<String>,
    #[serde(deserialize_with = "text")]
    pub level: Option<String>,
    #[serde(deserialize_with = "text")]
    pub web_url: Option<String>,
    #[serde(deserialize_with = "text")]
    pub issue_url: Option<String>,
    #[serde(deserialize_with = "text")]
    pub culprit: Option<String>,
    #[serde(deserialize_with = "text")]
    pub environment: Option<String>,
    /// The `environment` tag: Sentry's event JSON lists tags as `[key, value]` pairs.
    #[serde(rename = "tags", deserialize_with = "environment_tag")]
    pub tagged_environment: Option<String>,
}

/// The value of the `environment` tag in `[[key, value], ...]` (or `[{key, value}, ...]`).
fn environment_tag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Value::Array(tags) = Value::deserialize(d)? else {
        return Ok(None);
    };
    Ok(tags.iter().find_map(|tag| {
        let (key, value) = match tag {
            Value::Array(pair) => (pair.first()?, pair.get(1)?),
            Value::Object(o) => (o.get("key")?, o.get("value")?),
            _ => return None,
        };
        (key == "environment")
            .then(|| value.as_str().map(str::to_string))
            .flatten()
    }))
}

/// `data` of the `metric_alert` resource.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct MetricData {
    #[serde(deserialize_with = "present")]
    pub metric_alert: Option<MetricAlert>,
    #[serde(deserialize_with = "text")]
    pub description_title: Option<String>,
    #[serde(deserialize_with = "text")]
    pub description_text: Option<String>,
    #[serde(deserialize_with = "text")]
    pub web_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct MetricAlert {
    #[serde(deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub title: Option<String>,
    /// The first project slug: the one shipline routes on.
    #[serde(rename = "projects", deserialize_with = "first_string")]
    pub first_project: Option<String>,
    #[serde(deserialize_with = "object")]
    pub alert_rule: AlertRule,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct AlertRule {
    /// As JSON text: a rule id is a number (`7`); any other value keeps its JSON spelling.
    #[serde(deserialize_with = "json_text")]
    pub id: Option<String>,
}

/// A delivery of the legacy (self-hosted) "WebHooks" plugin.
#[derive(Debug, Deserialize)]
pub(super) struct Legacy {
    #[serde(default, deserialize_with = "string_or_number")]
    pub id: Option<String>,
    pub project: Option<String>,
    pub project_slug: Option<String>,
    pub level: Option<String>,
    pub culprit: Option<String>,
    pub message: Option<String>,
    pub url: Option<String>,
    #[serde(default, deserialize_with = "object")]
    pub event: LegacyEvent,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LegacyEvent {
    #[serde(deserialize_with = "text")]
    pub title: Option<String>,
    #[serde(deserialize_with = "text")]
    pub environment: Option<String>,
    #[serde(rename = "tags", deserialize_with = "environment_tag")]
    pub tagged_environment: Option<String>,
}

/// Reads an object's fields as `T`; any other value reads as an object without fields.
pub(super) fn from_value<T: DeserializeOwned + Default>(value: Value) -> T {
    match value {
        // Every field of these structs reads leniently, so an object always reads.
        value @ Value::Object(_) => T::deserialize(value).unwrap_or_default(),
        _ => T::default(),
    }
}

fn object<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(d: D) -> Result<T, D::Error> {
    Value::deserialize(d).map(from_value)
}

/// A field whose presence matters: present as anything (even `null`) is `Some`.
fn present<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> Result<Option<T>, D::Error> {
    object(d).map(Some)
}

/// A string, empty or not.
fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// A string with something in it: an empty one is as good as none.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(string(d)?.filter(|s| !s.is_empty()))
}

/// An issue id: a non-empty string, or an unsigned number.
fn issue_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    })
}

/// The legacy plugin's group id: a string or any number.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// The first element of an array, if it is a string.
fn first_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => match items.into_iter().next() {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    })
}

fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Value::deserialize(d).map(|v| Some(v.to_string()))
}
