//! Sign-in with GitHub on the status page, end to end against the fake GitHub of
//! `e2e::github_signin` (the OAuth web flow and the REST answers a user token gets): the
//! handler in process on in-memory state, then the release binary under the local Runtime API
//! on moto, as API Gateway hands it requests (payload 2.0 `cookies`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use e2e::github_signin::GitHubSignIn;
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};
use shared::adapters::memory::{FixedClock, MemoryStateStore};
use shared::config::Config;
use shared::ports::{Precondition, StateStore};
use shared::records::{BuiltCommit, RecentBuilds, StateKey};
use shared::secrets::SecretString;
use status_page::signin::{SESSION_COOKIE, SignIn};
use status_page::web::{Asked, Deps, Reply, answer};

const ORIGIN: &str = "https://status.example.com";
const CALLBACK: &str = "https://status.example.com/auth/callback";
const NOW: i64 = 1_800_000_000;

const CONFIG: &str =
    "repos:\n  team/a:\n    codebuild_project: a\n  team/b:\n    codebuild_project: b\n";

/// What a browser keeps: the cookies the answers set (`Max-Age=0` removes one).
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn keep(&mut self, set_cookies: &[String]) {
        for set in set_cookies {
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.into(), value.into());
            }
        }
    }

    fn header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn list(&self) -> Vec<String> {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

fn build(repo: &str, passed: bool) -> Value {
    let mut recent = RecentBuilds::default();
    recent.add(BuiltCommit {
        sha: format!("{:040x}", repo.len() + usize::from(passed)).into(),
        branch: Some("master".into()),
        pull_request: None,
        build_id: format!("{repo}:1").into(),
        passed,
        status: if passed { "SUCCEEDED" } else { "FAILED" }.into(),
        description: format!("build of {repo}"),
        log_url: None,
        started_at: NOW - 300,
        finished_at: NOW - 100,
        artifacts: BTreeMap::new(),
        commit_message: Some(format!("Change {repo}")),
        author: None,
        installation_id: None,
        delivery_id: "d".into(),
    });
    serde_json::to_value(&recent).unwrap()
}

async fn seed(state: &dyn StateStore) {
    for repo in ["team/a", "team/b"] {
        state
            .put(
                &StateKey::Builds(repo).to_string(),
                build(repo, repo == "team/a"),
                Precondition::None,
                None,
                0,
            )
            .await
            .unwrap();
    }
}

struct World {
    github: GitHubSignIn,
    deps: Deps,
    clock: Arc<FixedClock>,
}

async fn world(with_keys: bool) -> World {
    let github = GitHubSignIn::start("Iv1.page", "page-secret", CALLBACK).await;
    github.person("ana", 1, &["team/a", "other/x"]);
    github.person("bob", 2, &["other/x"]);
    let state = Arc::new(MemoryStateStore::new());
    seed(state.as_ref()).await;
    let clock = Arc::new(FixedClock::at(
        time::OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
    ));
    let signin = with_keys.then(|| {
        SignIn::new(
            "Iv1.page",
            SecretString::new("page-secret"),
            reqwest::Client::new(),
            &github.web.uri(),
            &github.api.uri(),
        )
    });
    let deps = Deps {
        config: Arc::new(Config::from_yaml(CONFIG).unwrap()),
        state,
        dead_letters: Vec::new(),
        clock: clock.clone(),
        signin,
    };
    World {
        github,
        deps,
        clock,
    }
}

impl World {
    async fn get(&self, browser: &mut Browser, path_and_query: &str) -> Reply {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let cookies = browser.header();
        let reply = answer(
            &self.deps,
            Asked {
                method: &Method::GET,
                path,
                query,
                cookies: cookies.as_deref(),
                origin: ORIGIN,
            },
        )
        .await;
        browser.keep(&reply.cookies);
        reply
    }

    /// The browser opens the page, is sent to GitHub, and GitHub sends it back: the callback
    /// URL GitHub redirected to.
    async fn to_github_and_back(&self, browser: &mut Browser) -> String {
        let reply = self.get(browser, "/").await;
        assert_eq!(reply.status, StatusCode::FOUND);
        let authorize = reply.location.unwrap();
        assert!(
            authorize.starts_with(&format!("{}/login/oauth/authorize?", self.github.web.uri())),
            "{authorize}"
        );
        let at_github = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(&authorize)
            .send()
            .await
            .unwrap();
        assert_eq!(at_github.status(), 302);
        let back = at_github.headers()["location"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(back.starts_with(CALLBACK), "{back}");
        back.trim_start_matches(ORIGIN).to_string()
    }
}

#[tokio::test]
async fn someone_who_can_read_one_repo_signs_in_and_sees_only_that_repo() {
    let w = world(true).await;
    w.github.at_browser("ana");
    let mut browser = Browser::default();
    let callback = w.to_github_and_back(&mut browser).await;
    let before_callback = browser.cookies.clone();
    let signed_in = w.get(&mut browser, &callback).await;
    assert_eq!(signed_in.status, StatusCode::FOUND, "{}", signed_in.body);
    assert_eq!(signed_in.location.as_deref(), Some("/"));
    let session = signed_in
        .cookies
        .iter()
        .find(|c| c.starts_with(SESSION_COOKIE))
        .unwrap();
    assert!(
        session.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{session}"
    );
    assert!(
        !browser.cookies.contains_key("__Host-shipline_oauth"),
        "the sign-in in progress is over"
    );
    // No token reaches the browser: only the signed session.
    assert!(!session.contains("ghu_"), "{session}");

    let page = w.get(&mut browser, "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Signed in as @ana"), "{}", page.body);
    assert!(page.body.contains("team/a"), "{}", page.body);
    assert!(!page.body.contains("team/b"), "{}", page.body);

    // The code worked once: the same callback again, with the same state cookie, passes the
    // state check and GitHub refuses the used code; nothing is signed in.
    let mut replay = Browser {
        cookies: before_callback,
    };
    let replayed = w.get(&mut replay, &callback).await;
    assert_eq!(replayed.status, StatusCode::FORBIDDEN, "{}", replayed.body);
    assert!(
        replayed
            .body
            .contains("The code passed is incorrect or expired."),
        "{}",
        replayed.body
    );
    assert!(!replay.cookies.contains_key(SESSION_COOKIE));

    let out = w.get(&mut browser, "/auth/signout").await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(!browser.cookies.contains_key(SESSION_COOKIE));
    assert_eq!(w.get(&mut browser, "/").await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn someone_who_reads_no_configured_repo_sees_nothing() {
    let w = world(true).await;
    w.github.at_browser("bob");
    let mut browser = Browser::default();
    let callback = w.to_github_and_back(&mut browser).await;
    let refused = w.get(&mut browser, &callback).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .body
            .contains("@bob cannot read any repository this page covers"),
        "{}",
        refused.body
    );
    assert!(!refused.body.contains("team/"), "{}", refused.body);
    assert!(!browser.cookies.contains_key(SESSION_COOKIE));
    // And the page still sends them to sign in.
    assert_eq!(w.get(&mut browser, "/").await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn a_callback_whose_state_is_not_this_browsers_is_refused_before_github_is_asked() {
    let w = world(true).await;
    w.github.at_browser("ana");
    let mut browser = Browser::default();
    let callback = w.to_github_and_back(&mut browser).await;
    let forged: String = {
        let (path, query) = callback.split_once('?').unwrap();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .map(|(k, v)| {
                if k == "state" {
                    (k, "forged".into())
                } else {
                    (k, v)
                }
            })
            .collect();
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{path}?{query}")
    };
    let refused = w.get(&mut browser, &forged).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("Sign-in refused"), "{}", refused.body);
    // Another browser (no state cookie at all) with the real callback URL: refused too.
    let mut other = Browser::default();
    assert_eq!(
        w.get(&mut other, &callback).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(w.github.tokens_issued(), 0, "the code was never exchanged");
    assert!(!browser.cookies.contains_key(SESSION_COOKIE));
}

#[tokio::test]
async fn a_tampered_or_expired_session_cookie_is_refused() {
    let w = world(true).await;
    w.github.at_browser("ana");
    let mut browser = Browser::default();
    let callback = w.to_github_and_back(&mut browser).await;
    w.get(&mut browser, &callback).await;
    let sealed = browser.cookies[SESSION_COOKIE].clone();
    assert_eq!(w.get(&mut browser, "/").await.status, StatusCode::OK);

    // ana gives herself team/b, keeping the MAC.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, mac) = sealed.rsplit_once('.').unwrap();
    let mut session: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    session["repos"] = json!(["team/a", "team/b"]);
    let forged = format!("{}.{mac}", b64.encode(session.to_string()));
    let mut tampered = Browser::default();
    tampered.cookies.insert(SESSION_COOKIE.into(), forged);
    let reply = w.get(&mut tampered, "/").await;
    assert_eq!(reply.status, StatusCode::FOUND, "back to sign-in");
    assert!(
        reply
            .location
            .is_some_and(|l| l.contains("/login/oauth/authorize?")),
        "to GitHub"
    );
    assert!(!tampered.cookies.contains_key(SESSION_COOKIE), "cleared");

    // Eight hours later the session is over.
    w.clock.advance(Duration::from_secs(8 * 3600));
    let reply = w.get(&mut browser, "/").await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert!(!browser.cookies.contains_key(SESSION_COOKIE));
}

#[tokio::test]
async fn without_the_oauth_keys_every_route_is_not_found() {
    let w = world(false).await;
    for path in ["/", "/auth/callback?code=x&state=y", "/auth/signout"] {
        let reply = w.get(&mut Browser::default(), path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(reply.cookies.is_empty());
    }
}

mod binary {
    use super::*;
    use e2e::aws;
    use e2e::runtime_api::{Outcome, RuntimeApi, http_api_get};

    const DOMAIN: &str = "https://local.execute-api.us-east-1.amazonaws.com";

    async fn get(api: &RuntimeApi, browser: &mut Browser, path_and_query: &str) -> Value {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let event = http_api_get(path, query, &browser.list());
        let Outcome::Response(response) =
            api.invoke(&event, Duration::from_secs(30)).await.unwrap()
        else {
            panic!("function error");
        };
        let set: Vec<String> = response["cookies"]
            .as_array()
            .map(|a| a.iter().map(|c| c.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        browser.keep(&set);
        response
    }

    #[tokio::test]
    #[ignore = "needs moto and the release binary: run scripts/test"]
    async fn the_release_binary_signs_in_with_github_and_serves_the_page() {
        let github = GitHubSignIn::start(
            "Iv1.page",
            "page-secret",
            &format!("{DOMAIN}/auth/callback"),
        )
        .await;
        github.person("ana", 1, &["team/a"]);
        github.at_browser("ana");
        let sdk = aws::sdk_config().await;
        let table = e2e::unique("state");
        aws::create_state_table(&sdk, &table).await;
        seed_dynamo(&sdk, &table).await;
        let dlq = aws::create_queue(&sdk, &e2e::unique("builds-dlq")).await;
        let param = format!("/{}/config", e2e::unique("shipline"));
        aws::put_parameter(&sdk, &param, CONFIG).await;
        let secret_arn = aws::create_secret(
            &sdk,
            &e2e::unique("secrets"),
            &json!({"github_oauth_client_id": "Iv1.page", "github_oauth_client_secret": "page-secret"}).to_string(),
        )
        .await;
        let api = RuntimeApi::start().await.unwrap();
        let mut env = aws::process_env();
        let dead_letters = format!("builds={dlq}");
        let (web, rest) = (github.web.uri(), github.api.uri());
        env.extend(
            [
                ("SHIPLINE_CONFIG_PARAM", param.as_str()),
                ("SHIPLINE_SECRETS_ARN", secret_arn.as_str()),
                ("STATE_TABLE", table.as_str()),
                ("DEAD_LETTER_QUEUES", dead_letters.as_str()),
                ("GITHUB_WEB_URL", web.as_str()),
                ("GITHUB_API_URL", rest.as_str()),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let _function = api
            .spawn(&e2e::release_binary("status-page"), "status-page", &env)
            .unwrap();

        let mut browser = Browser::default();
        let first = get(&api, &mut browser, "/").await;
        assert_eq!(first["statusCode"], 302, "{first}");
        let authorize = first["headers"]["location"].as_str().unwrap();
        let back = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(authorize)
            .send()
            .await
            .unwrap();
        let callback = back.headers()["location"].to_str().unwrap().to_string();
        assert!(
            callback.starts_with(&format!("{DOMAIN}/auth/callback?code=")),
            "{callback}"
        );
        let signed_in = get(&api, &mut browser, callback.trim_start_matches(DOMAIN)).await;
        assert_eq!(signed_in["statusCode"], 302, "{signed_in}");
        assert!(browser.cookies.contains_key(SESSION_COOKIE), "{signed_in}");

        let page = get(&api, &mut browser, "/").await;
        assert_eq!(page["statusCode"], 200, "{page}");
        assert_eq!(page["headers"]["content-type"], "text/html; charset=utf-8");
        assert_eq!(page["headers"]["cache-control"], "no-store");
        let html = page["body"].as_str().unwrap();
        assert!(html.contains("Signed in as @ana"), "{html}");
        assert!(
            html.contains("team/a") && !html.contains("team/b"),
            "{html}"
        );
        assert!(
            html.contains("builds: empty"),
            "the DLQ depth, read from SQS: {html}"
        );
    }

    async fn seed_dynamo(sdk: &aws_config::SdkConfig, table: &str) {
        let store = shared::adapters::dynamodb::DynamoStateStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            table.to_string(),
        );
        seed(&store).await;
    }
}
