//! Requests to GitHub's REST API and what a failed answer means (wait, later, never).

use std::time::Duration;

use reqwest::{Method, StatusCode, header::HeaderMap};

use super::auth::now;
use crate::ports::GitHubError;
use crate::secrets::SecretString;

pub const PUBLIC_API: &str = "https://api.github.com";
pub(super) const API_VERSION: &str = "2022-11-28";

/// GitHub's REST API at one base URL: requests with a given token, and what a failed answer
/// means. The installation client (`super::client::GitHubClient`) and a signed-in person's calls
/// (`super::person`) both go through it.
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

/// Maps a failed answer to what shipline should do about it.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> GitHubError {
    let header_num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let mut m = v.get("message")?.as_str()?.to_string();
            if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
                for e in errors {
                    if let Some(em) = e.get("message").and_then(|x| x.as_str()) {
                        m.push_str(": ");
                        m.push_str(em);
                    }
                }
            }
            Some(m)
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (header_num("x-ratelimit-remaining") == Some(0)
                || message.to_ascii_lowercase().contains("rate limit")));
    if limited {
        let retry_after = header_num("retry-after")
            .or_else(|| header_num("x-ratelimit-reset").map(|reset| reset - now()))
            .unwrap_or(60)
            .clamp(1, 3600);
        return GitHubError::RateLimited {
            retry_after: Duration::from_secs(retry_after as u64),
        };
    }
    if status.is_server_error() {
        return GitHubError::Unavailable(format!("{status}: {message}"));
    }
    GitHubError::Rejected {
        status: status.as_u16(),
        message,
    }
}
