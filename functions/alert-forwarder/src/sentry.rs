//! Sentry webhooks: `Sentry-Hook-Signature` verification and the payloads shipline reads
//! (integration platform: issue, event_alert, metric_alert, error, installation; and the legacy
//! "WebHooks" plugin), reduced to one `Alert` shape. Fields Sentry documents but does not always
//! send (a `null` permalink, a missing `web_url`) are optional: the best link available wins.

mod payload;

use serde::de::DeserializeOwned;
use serde_json::Value;
use shared::config::Level;
use shared::signature::SignedHeader;

use self::payload::{Envelope, EventData, IssueData, Legacy, MetricData, Unread};

pub const SIGNATURE_HEADER: &str = "sentry-hook-signature";
pub const RESOURCE_HEADER: &str = "sentry-hook-resource";
/// Unix seconds when Sentry sent the delivery (docs.sentry.io, *Integration Platform →
/// Webhooks → Headers*).
pub const TIMESTAMP_HEADER: &str = "sentry-hook-timestamp";
/// A unique id per delivery, the same when Sentry sends it again.
pub const REQUEST_ID_HEADER: &str = "request-id";

/// How far from the present a delivery's timestamp may be: beyond it, the delivery is a
/// replay of one captured earlier (or a clock far off), and is refused.
pub const REPLAY_WINDOW_SECS: i64 = 5 * 60;

/// Why a delivery's timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaleDelivery {
    #[error("Sentry-Hook-Timestamp is not Unix seconds")]
    Malformed,
    #[error(
        "Sentry-Hook-Timestamp is {0} s from now, outside the {REPLAY_WINDOW_SECS} s window: a replay is refused"
    )]
    OutsideWindow(i64),
}

/// Checks `Sentry-Hook-Timestamp` against `now`. The header is not covered by the signature,
/// so a missing one is let through (a test with curl, a sample event); what this refuses is a
/// captured delivery sent again as it was.
pub fn check_timestamp(header: Option<&str>, now: i64) -> Result<(), StaleDelivery> {
    let Some(header) = header else {
        return Ok(());
    };
    let sent = header
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite())
        .ok_or(StaleDelivery::Malformed)? as i64;
    let off = now - sent;
    if off.abs() > REPLAY_WINDOW_SECS {
        return Err(StaleDelivery::OutsideWindow(off));
    }
    Ok(())
}

/// `Sentry-Hook-Signature`: the bare hex HMAC-SHA256 of the raw body, keyed with the
/// integration's client secret.
pub static SIGNATURE: SignedHeader = SignedHeader {
    name: "Sentry-Hook-Signature",
    prefix: "",
};

/// The header value Sentry would send for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    SIGNATURE.sign(secret, body)
}

/// What an alert means for the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new problem or more of it: throttled.
    Raised,
    /// Back after being resolved (a regression): always told.
    Regressed,
    /// Resolved: always told.
    Resolved,
    /// Assigned, ignored / archived: told, throttled like the rest.
    Updated,
}

/// One Sentry delivery, reduced to what shipline tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The project slug, for routing.
    pub project: String,
    /// What throttling is keyed on: the issue id, or the alert rule for metric alerts.
    pub issue: String,
    pub title: String,
    pub level: Level,
    pub change: Change,
    /// "created", "triggered", "critical", ...
    pub action: String,
    pub url: Option<String>,
    pub culprit: Option<String>,
    pub short_id: Option<String>,
    /// The environment the event came from (`production`), when the payload says.
    pub environment: Option<String>,
}

/// What a delivery is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Alert(Alert),
    /// Acknowledged and logged, nothing to tell (installation created / deleted).
    Acknowledged(String),
    /// A resource or action shipline does not act on, with the reason.
    Ignored(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not valid JSON (line {0}, column {1})")]
    Malformed(usize, usize),
    #[error("payload is missing `{0}`")]
    Missing(&'static str),
}

fn level(text: Option<&str>) -> Level {
    match text.unwrap_or("error") {
        "debug" => Level::Debug,
        "info" => Level::Info,
        "warning" => Level::Warning,
        "fatal" => Level::Fatal,
        _ => Level::Error,
    }
}

/// `https://sentry.io/api/0/projects/<org>/<slug>/events/...` → `<slug>`.
fn slug_from_api_url(url: &str) -> Option<String> {
    let rest = &url[url.find("/projects/")? + "/projects/".len()..];
    rest.split('/')
        .nth(1)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// The body as JSON. Payloads are read from the parsed value, not straight from the bytes, so
/// that a repeated key counts once (the last), as in any JSON reader, instead of failing.
fn parse_json(body: &[u8]) -> Result<Value, PayloadError> {
    serde_json::from_slice(body).map_err(|e| PayloadError::Malformed(e.line(), e.column()))
}

/// The action and the `data` of an integration-platform payload; every resource has `data`.
fn open<D: DeserializeOwned + Default>(payload: Value) -> Result<(String, D), PayloadError> {
    let envelope: Envelope<D> = payload::from_value(payload);
    let data = envelope.data.ok_or(PayloadError::Missing("data"))?;
    Ok((envelope.action.unwrap_or_default(), data))
}

/// An integration-platform delivery, by its `Sentry-Hook-Resource`.
pub fn parse_integration(resource: &str, body: &[u8]) -> Result<Delivery, PayloadError> {
    let payload = parse_json(body)?;
    match resource {
        "issue" => {
            let (action, data) = open(payload)?;
            issue_alert(action, data)
        }
        "event_alert" | "error" => {
            let (action, data) = open(payload)?;
            event_alert(resource, action, data)
        }
        "metric_alert" => {
            let (action, data) = open(payload)?;
            metric_alert(action, data)
        }
        "installation" => {
            let (action, _) = open::<Unread>(payload)?;
            Ok(Delivery::Acknowledged(format!("installation {action}")))
        }
        other => {
            open::<Unread>(payload)?;
            Ok(Delivery::Ignored(format!("resource `{other}`")))
        }
    }
}

fn issue_alert(action: String, data: IssueData) -> Result<Delivery, PayloadError> {
    let issue = data.issue.ok_or(PayloadError::Missing("data.issue"))?;
    let change = match action.as_str() {
        "created" => Change::Raised,
        "resolved" => Change::Resolved,
        "unresolved" => Change::Regressed,
        "assigned" | "ignored" | "archived" => Change::Updated,
        other => return Ok(Delivery::Ignored(format!("issue action `{other}`"))),
    };
    let project = issue
        .project
        .slug
        .ok_or(PayloadError::Missing("data.issue.project.slug"))?;
    let id = issue.id.ok_or(PayloadError::Missing("data.issue.id"))?;
    // `permalink` is often null and `web_url` absent: the issue's page is built from its id.
    let url = issue
        .web_url
        .or(issue.permalink)
        .unwrap_or_else(|| format!("https://sentry.io/issues/{id}/"));
    Ok(Delivery::Alert(Alert {
        project,
        issue: id,
        title: issue
            .title
            .unwrap_or_else(|| "(untitled issue)".to_string()),
        level: level(issue.level.as_deref()),
        change,
        action,
        url: Some(url),
        culprit: issue.culprit,
        short_id: issue.short_id,
        environment: None,
    }))
}

/// `event_alert` carries an `event` and fires on `triggered`; `error` carries an `error` and
/// fires on `created`.
fn event_alert(resource: &str, action: String, data: EventData) -> Result<Delivery, PayloadError> {
    let (event, expected) = if resource == "error" {
        (data.error, "created")
    } else {
        (data.event, "triggered")
    };
    if action != expected {
        return Ok(Delivery::Ignored(format!("{resource} action `{action}`")));
    }
    let event = event.ok_or(PayloadError::Missing("data.event"))?;
    let project = event
        .url
        .as_deref()
        .and_then(slug_from_api_url)
        .or(event.project)
        .unwrap_or_else(|| "unknown".to_string());
    let rule = data
        .triggered_rule
        .map(|r| format!(" (rule: {r})"))
        .unwrap_or_default();
    Ok(Delivery::Alert(Alert {
        project,
        issue: event
            .issue_id
            .or(event.event_id)
            .unwrap_or_else(|| "unknown".to_string()),
        title: event
            .title
            .or(event.message)
            .unwrap_or_else(|| "(untitled event)".to_string()),
        level: level(event.level.as_deref()),
        change: Change::Raised,
        action: format!("{action}{rule}"),
        url: event.web_url.or(event.issue_url),
        culprit: event.culprit,
        short_id: None,
        environment: event.environment.or(event.tagged_environment),
    }))
}

fn metric_alert(action: String, data: MetricData) -> Result<Delivery, PayloadError> {
    let (change, level) = match action.as_str() {
        "critical" => (Change::Raised, Level::Fatal),
        "warning" => (Change::Raised, Level::Warning),
        "open" => (Change::Raised, Level::Error),
        "resolved" => (Change::Resolved, Level::Error),
        other => return Ok(Delivery::Ignored(format!("metric_alert action `{other}`"))),
    };
    let alert = data
        .metric_alert
        .ok_or(PayloadError::Missing("data.metric_alert"))?;
    // Throttled per alert rule, as a metric alert has no issue.
    let rule = alert
        .alert_rule
        .id
        .or(alert.id)
        .unwrap_or_else(|| "metric".into());
    Ok(Delivery::Alert(Alert {
        project: alert.first_project.unwrap_or_else(|| "unknown".to_string()),
        issue: format!("metric-{rule}"),
        title: data
            .description_title
            .or(alert.title)
            .unwrap_or_else(|| "Metric alert".to_string()),
        level,
        change,
        action,
        url: data.web_url,
        culprit: data.description_text,
        short_id: None,
        environment: None,
    }))
}

/// A delivery of the legacy (self-hosted) "WebHooks" plugin.
pub fn parse_legacy(body: &[u8]) -> Result<Delivery, PayloadError> {
    let legacy: Legacy =
        serde_json::from_value(parse_json(body)?).map_err(|_| PayloadError::Missing("project"))?;
    let project = legacy
        .project_slug
        .or(legacy.project)
        .ok_or(PayloadError::Missing("project"))?;
    let issue = legacy.id.ok_or(PayloadError::Missing("id"))?;
    let environment = legacy.event.environment.or(legacy.event.tagged_environment);
    let title = legacy
        .event
        .title
        .or(legacy.message)
        .unwrap_or_else(|| "(untitled event)".into());
    Ok(Delivery::Alert(Alert {
        project,
        issue,
        title,
        level: level(legacy.level.as_deref()),
        change: Change::Raised,
        action: "triggered".into(),
        url: legacy.url,
        culprit: legacy.culprit,
        short_id: None,
        environment,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::signature::SignatureError;
    use shared::signature::token_matches;

    #[test]
    fn signatures_verify_over_the_raw_body() {
        let body = include_bytes!("../testdata/sentry-issue-created.json");
        let good = sign(b"client-secret", body);
        assert_eq!(
            SIGNATURE.verify(b"client-secret", body, Some(&good)),
            Ok(())
        );
        assert_eq!(
            SIGNATURE.verify(b"other", body, Some(&good)),
            Err(SignatureError::Mismatch(&SIGNATURE))
        );
        assert_eq!(
            SIGNATURE.verify(b"client-secret", body, Some(&good[..63])),
            Err(SignatureError::Malformed(&SIGNATURE))
        );
        assert_eq!(
            SIGNATURE.verify(b"client-secret", body, None),
            Err(SignatureError::Missing(&SIGNATURE))
        );
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            SIGNATURE.verify(b"client-secret", &tampered, Some(&good)),
            Err(SignatureError::Mismatch(&SIGNATURE))
        );
    }

    #[test]
    fn the_published_issue_payload_reads_with_a_fallback_link() {
        let Delivery::Alert(alert) = parse_integration(
            "issue",
            include_bytes!("../testdata/sentry-issue-created.json"),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (alert.project.as_str(), alert.issue.as_str(), alert.change),
            ("front-end", "1170820242", Change::Raised)
        );
        assert_eq!(alert.title, "ReferenceError: blooopy is not defined");
        // `permalink` is null and `web_url` absent in the example: a link is built anyway.
        assert_eq!(
            alert.url.as_deref(),
            Some("https://sentry.io/issues/1170820242/")
        );
        assert_eq!(alert.short_id.as_deref(), Some("FRONT-END-9"));
    }

    #[test]
    fn the_published_event_alert_finds_its_project_from_the_api_url() {
        let Delivery::Alert(alert) = parse_integration(
            "event_alert",
            include_bytes!("../testdata/sentry-event_alert.json"),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (alert.project.as_str(), alert.issue.as_str()),
            ("front-end", "1117540176")
        );
        assert!(
            alert
                .url
                .unwrap()
                .starts_with("https://sentry.io/organizations/test-org/issues/1117540176/")
        );
    }

    #[test]
    fn installation_is_acknowledged_and_unknown_resources_ignored() {
        assert_eq!(
            parse_integration(
                "installation",
                include_bytes!("../testdata/sentry-installation-created.json")
            )
            .unwrap(),
            Delivery::Acknowledged("installation created".into())
        );
        assert!(matches!(
            parse_integration("comment", br#"{"action":"created","data":{}}"#).unwrap(),
            Delivery::Ignored(_)
        ));
        assert!(matches!(
            parse_integration("issue", br#"{"action":"bookmarked","data":{"issue":{}}}"#).unwrap(),
            Delivery::Ignored(_)
        ));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("s3cret-token", "s3cret-token"));
        assert!(!token_matches("s3cret-toke", "s3cret-token"));
        assert!(!token_matches("", "s3cret-token"));
    }
}
