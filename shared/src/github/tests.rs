//! The client against a local fake answering as GitHub's REST API does.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::client::*;
use super::transport::API_VERSION;
use crate::ports::{CommitState, CommitStatus, GitHub, GitHubError, MAX_DESCRIPTION, Retryable};
use crate::secrets::{SecretString, Secrets};

fn status(description: &str) -> CommitStatus {
    CommitStatus {
        state: CommitState::Pending,
        target_url: Some("https://console.aws.amazon.com/build".into()),
        description: description.into(),
        context: "shipline/build".into(),
    }
}

fn client(server: &MockServer) -> GitHubClient {
    GitHubClient::new(
        reqwest::Client::new(),
        server.uri(),
        Auth::Token(SecretString::new("ghp_test")),
    )
}

#[tokio::test]
async fn a_status_is_posted_with_the_api_headers_and_a_cut_description() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/app/statuses/abc123"))
        .and(header("authorization", "Bearer ghp_test"))
        .and(header("x-github-api-version", API_VERSION))
        .and(body_partial_json(
            json!({"state": "pending", "context": "shipline/build"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .set_status("octo/app", "abc123", &status(&"é".repeat(500)), None)
        .await
        .unwrap();
    let sent: serde_json::Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        sent["description"].as_str().unwrap().chars().count(),
        MAX_DESCRIPTION
    );
}

#[tokio::test]
async fn answers_are_classified_for_retry() {
    let server = MockServer::start().await;
    Mock::given(path("/repos/octo/app/statuses/s500"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    Mock::given(path("/repos/octo/app/statuses/s429"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    Mock::given(path("/repos/octo/app/statuses/s403"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit"})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/repos/octo/app/statuses/s422"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Status", "code": "custom", "field": "description",
                        "message": "description is too long (maximum is 140 characters)"}]
        })))
        .mount(&server)
        .await;
    let c = client(&server);
    let err = |sha: &'static str| {
        let c = &c;
        async move {
            c.set_status("octo/app", sha, &status("x"), None)
                .await
                .unwrap_err()
        }
    };
    assert!(matches!(err("s500").await, GitHubError::Unavailable(_)));
    let limited = err("s429").await;
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
    assert!(limited.is_retryable());
    assert_eq!(
        err("s403").await.retry_after(),
        Some(Duration::from_secs(60))
    );
    let rejected = err("s422").await;
    assert!(!rejected.is_retryable());
    assert!(
        rejected.to_string().contains("description is too long"),
        "{rejected}"
    );
}

#[tokio::test]
async fn a_timeout_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let c = GitHubClient::new(http, server.uri(), Auth::Token(SecretString::new("t")));
    let e = c
        .set_status("octo/app", "s", &status("x"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, GitHubError::Unavailable(_)), "{e}");
    assert!(
        !e.to_string().contains(&server.uri()),
        "no URL in errors: {e}"
    );
}

#[tokio::test]
async fn a_github_app_mints_and_caches_an_installation_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/app/installation"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 42})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/app/installations/42/access_tokens"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": "ghs_installation", "expires_at": "2999-01-01T00:00:00Z"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/app/statuses/abc"))
        .and(header("authorization", "Bearer ghs_installation"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({})))
        .expect(2)
        .mount(&server)
        .await;
    let secrets = Secrets::default().with("github_app_id", "12345").with(
        "github_app_private_key",
        include_str!("../../testdata/test-app-key.pem"),
    );
    let auth = Auth::from_secrets(&secrets).unwrap();
    assert!(!format!("{auth:?}").contains("PRIVATE"));
    let c = GitHubClient::new(reqwest::Client::new(), server.uri(), auth);
    c.set_status("octo/app", "abc", &status("x"), None)
        .await
        .unwrap();
    c.set_status("octo/app", "abc", &status("y"), None)
        .await
        .unwrap();
    // The JWT went to the App endpoints, signed RS256, issued by the app id.
    let requests = server.received_requests().await.unwrap();
    let jwt = requests[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    let payload = jwt.trim_start_matches("Bearer ").split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], "12345");
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 600);
}

// Webhook deliveries, answered as GitHub's REST reference documents them ("List deliveries for
// a repository webhook": `hook-delivery-item`s, newest first, the next page's `cursor` in the
// `Link` header; "Redeliver a delivery": 202 Accepted).
#[tokio::test]
async fn deliveries_are_paged_by_the_link_headers_cursor_and_redelivered() {
    use super::deliveries::HookScope;
    let server = MockServer::start().await;
    let item = |id: u64, guid: &str, code: u16| {
        json!({
            "id": id, "guid": guid, "delivered_at": "2026-11-29T10:00:00Z", "redelivery": false,
            "duration": 0.3, "status": if code == 200 { "OK" } else { "Invalid HTTP Response: 500" },
            "status_code": code, "event": "push", "action": null,
            "installation_id": null, "repository_id": 1
        })
    };
    Mock::given(method("GET"))
        .and(path("/repos/o/r/hooks/7/deliveries"))
        .and(wiremock::matchers::query_param("cursor", "v1_41"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([item(41, "g-41", 500)])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/hooks/7/deliveries"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "link",
                    format!(
                        "<{}/repos/o/r/hooks/7/deliveries?per_page=100&cursor=v1_41>; rel=\"next\"",
                        server.uri()
                    )
                    .as_str(),
                )
                .set_body_json(json!([item(43, "g-43", 200), item(42, "g-42", 500)])),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/o/r/hooks/7/deliveries/42/attempts"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let github = client(&server);
    let scope = HookScope::Repo {
        repo: "o/r".into(),
        hook_id: 7,
    };
    let first = github.deliveries(&scope, None).await.unwrap();
    assert_eq!(
        first
            .attempts
            .iter()
            .map(|a| (a.id, a.succeeded()))
            .collect::<Vec<_>>(),
        vec![(43, true), (42, false)]
    );
    assert_eq!(first.next.as_deref(), Some("v1_41"));
    let second = github
        .deliveries(&scope, first.next.as_deref())
        .await
        .unwrap();
    assert_eq!(second.attempts[0].guid, "g-41");
    assert_eq!(second.next, None);
    github.redeliver(&scope, 42).await.unwrap();
}

#[tokio::test]
async fn the_apps_own_hook_needs_app_credentials() {
    use super::deliveries::HookScope;
    let server = MockServer::start().await;
    let e = client(&server)
        .deliveries(&HookScope::App, None)
        .await
        .unwrap_err();
    assert!(matches!(e, GitHubError::Credentials(_)), "{e}");
}
