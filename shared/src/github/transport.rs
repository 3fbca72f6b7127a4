//! Requests to GitHub's REST API and what a failed answer means (wait, later, never).

use std::time::Duration;

use reqwest::{Method, StatusCode, header::HeaderMap};

use super::auth::now;
use crate::ports::GitHubError;
use crate::secrets::SecretString;

pub const PUBLIC_API: &str = "https://api.github.com";
pub(super) const API_VERSION: &str = "2022-11-28";

/// GitHub's REST API at one base URL: requests with a given token, and what a failed answer
/// means. The installation client (`super::client::GitHubClient`) and the status page's calls for
/// a signed-in person both go through it.
#[derive(Debug, Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
}

impl Rest {
    /// `base`: `https://api.github.com`, a GitHub Enterprise Server's `/api/v3`, or a fake.
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self {
            http,
            base: base.into().trim_end_matches('/').to_string(),
        }
    }

    pub(super) async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &SecretString,
        body: Option<serde_json::Value>,
    ) -> Result<T, GitHubError> {
        self.send_with_headers(method, path, token, body)
            .await
            .map(|(answer, _)| answer)
    }

    /// `send`, with the answer's headers (pagination's `Link`).
    pub(super) async fn send_with_headers<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &SecretString,
        body: Option<serde_json::Value>,
    ) -> Result<(T, HeaderMap), GitHubError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header("user-agent", crate::http::USER_AGENT)
            .bearer_auth(token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| GitHubError::Unavailable(without_url(e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| GitHubError::Unavailable(without_url(e)))?;
        if status.is_success() {
            let text = if text.is_empty() { "null" } else { &text };
            return serde_json::from_str(text)
                .map(|answer| (answer, headers))
                .map_err(|e| {
                    GitHubError::Unavailable(format!("unexpected answer from GitHub: {e}"))
                });
        }
        Err(classify(status, &headers, &text))
    }
}

/// The `cursor` of the `rel="next"` page in a `Link` header (GitHub's cursor pagination, as on
/// the webhook deliveries endpoints), if there is a next page.
pub(super) fn next_cursor(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let query = url.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "cursor")
            .map(|(_, v)| v.into_owned())
    })
}

/// reqwest's errors carry the URL; ours never do (a GHES URL can hold a token).
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

/// GitHub's error body (REST reference, *Client errors*): a message, and for a 422 the fields
/// at fault, each an object with its own message or, on some endpoints, a plain string.
#[derive(serde::Deserialize)]
struct ErrorBody {
    message: String,
    #[serde(default)]
    errors: Vec<FieldError>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum FieldError {
    Text(String),
    Field {
        #[serde(default)]
        message: Option<String>,
    },
}

/// The words of a failed answer: GitHub's message and each field's, else the status's reason.
fn error_message(status: StatusCode, body: &str) -> String {
    let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) else {
        return status.canonical_reason().unwrap_or("error").to_string();
    };
    let fields = parsed.errors.into_iter().filter_map(|e| match e {
        FieldError::Text(text) => Some(text),
        FieldError::Field { message } => message,
    });
    std::iter::once(parsed.message)
        .chain(fields)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Maps a failed answer to what shipline should do about it: the one classifier of
/// `crate::http`, after GitHub's own rate-limit rule (a primary rate limit is a 403 with
/// `x-ratelimit-remaining: 0`, a secondary one a 403 or 429 that says so; the wait is
/// `retry-after`, else until `x-ratelimit-reset`; REST reference, *Rate limits*).
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> GitHubError {
    let message = error_message(status, body);
    let header_num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let wait = header_num("retry-after")
        .or_else(|| header_num("x-ratelimit-reset").map(|reset| reset - now()))
        .map(|seconds| Duration::from_secs(seconds.clamp(1, 3600) as u64));
    let limited_403 = status == StatusCode::FORBIDDEN
        && (header_num("x-ratelimit-remaining") == Some(0)
            || message.to_ascii_lowercase().contains("rate limit"));
    let status_for_classify = if limited_403 {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        status
    };
    match crate::http::classify(status_for_classify, wait, Duration::from_secs(60)) {
        crate::http::Failure::RateLimited(retry_after) => GitHubError::RateLimited { retry_after },
        crate::http::Failure::Unavailable => {
            GitHubError::Unavailable(format!("{status}: {message}"))
        }
        crate::http::Failure::Rejected => GitHubError::Rejected {
            status: status.as_u16(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_primary_rate_limit_is_a_403_that_waits_until_the_reset() {
        let reset = (now() + 120).to_string();
        let limited = classify(
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset),
            ]),
            r#"{"message":"API rate limit exceeded for installation ID 1."}"#,
        );
        let GitHubError::RateLimited { retry_after } = limited else {
            panic!("{limited:?}")
        };
        assert!(
            (119..=120).contains(&retry_after.as_secs()),
            "{retry_after:?}"
        );
        // A secondary limit says so in its message and sends retry-after.
        let secondary = classify(
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "30".into())]),
            r#"{"message":"You have exceeded a secondary rate limit."}"#,
        );
        assert!(
            matches!(secondary, GitHubError::RateLimited { retry_after } if retry_after.as_secs() == 30)
        );
    }

    #[test]
    fn other_answers_are_classified_as_every_service_s_are() {
        let refused = classify(
            StatusCode::UNPROCESSABLE_ENTITY,
            &HeaderMap::new(),
            r#"{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","message":"description is too long"},"sha is not a commit"]}"#,
        );
        assert!(
            matches!(&refused, GitHubError::Rejected { status: 422, message }
            if message == "Validation Failed: description is too long: sha is not a commit"),
            "{refused:?}"
        );
        let forbidden = classify(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            r#"{"message":"Resource not accessible by integration"}"#,
        );
        assert!(matches!(
            forbidden,
            GitHubError::Rejected { status: 403, .. }
        ));
        let down = classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "<html>");
        assert!(
            matches!(&down, GitHubError::Unavailable(m) if m == "502 Bad Gateway: Bad Gateway"),
            "{down:?}"
        );
        let limited = classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), "");
        assert!(
            matches!(limited, GitHubError::RateLimited { retry_after } if retry_after.as_secs() == 60)
        );
    }
}
