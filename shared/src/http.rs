//! HTTP plumbing that several adapters and both HTTP functions share: what a failed answer
//! means (wait, later, never), the `Retry-After` header, and the HTTP functions' one reply.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// Every outbound HTTP call gives up after this: shorter than a batch's deadline margin
/// (`crate::batch::DEADLINE_MARGIN`), so no call outlives its invocation.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Every outbound request says who it is.
pub const USER_AGENT: &str = concat!("shipline/", env!("CARGO_PKG_VERSION"));

/// What a failed answer means for shipline, whoever gave it (GitHub, Heroku, a deploy hook, a
/// chat). Each adapter turns it into its own error with its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 429: wait this long, then the same request can succeed.
    RateLimited(Duration),
    /// 5xx: the service is in trouble; a later try can succeed.
    Unavailable,
    /// Any other 4xx: the request itself is wrong; trying again cannot help.
    Rejected,
}

/// Classifies a non-success status. `retry_after` is what the answer said (see
/// [`retry_after`]); `default_wait` is used when a 429 did not say.
pub fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    default_wait: Duration,
) -> Failure {
    if status == StatusCode::TOO_MANY_REQUESTS {
        Failure::RateLimited(retry_after.unwrap_or(default_wait))
    } else if status.is_server_error() {
        Failure::Unavailable
    } else {
        Failure::Rejected
    }
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3; Discord and Telegram send fractions), rounded up
/// to whole seconds and at least one.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_seconds(headers, "retry-after")
}

/// A header holding a number of seconds, rounded up to whole seconds and at least one.
pub fn header_seconds(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let value = headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some(Duration::from_secs_f64(value.max(0.0).ceil().max(1.0)))
}

/// A transport error as text without its URL (a webhook URL is a credential).
pub fn transport_error(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

/// The answer of an HTTP function (webhook-intake, alert-forwarder): a status and a short text
/// for the sender's delivery log. Never internal detail.
#[cfg(feature = "http-function")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub message: String,
}

#[cfg(feature = "http-function")]
impl Reply {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The API Gateway / function URL response: `{"message": ...}` as JSON.
    pub fn into_response(self) -> lambda_http::Response<lambda_http::Body> {
        lambda_http::Response::builder()
            .status(self.status)
            .header("content-type", "application/json")
            .body(lambda_http::Body::Text(
                serde_json::json!({ "message": self.message }).to_string(),
            ))
            .expect("a status and a JSON body always build a response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_waits_a_5xx_is_later_and_any_other_4xx_is_never() {
        let wait = Duration::from_secs(7);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, None, wait),
            Failure::RateLimited(wait)
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, None, wait),
            Failure::Unavailable
        );
        assert_eq!(
            classify(StatusCode::FORBIDDEN, None, wait),
            Failure::Rejected
        );
    }

    #[test]
    fn fractional_retry_after_rounds_up() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "1.2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after", "0".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(1)));
    }
}
