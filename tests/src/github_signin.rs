//! A fake of GitHub for signing in: the OAuth web application flow on the web base URL
//! (`GET /login/oauth/authorize`, `POST /login/oauth/access_token`) and what a user access
//! token may ask on the API base URL (`GET /user`, `GET /repos/{owner}/{repo}`).
//!
//! It answers as GitHub documents (docs.github.com, "Authorizing OAuth apps", "Generating a
//! user access token for a GitHub App", "Troubleshooting OAuth app access token request
//! errors"):
//! - authorize redirects to `redirect_uri?code=…&state=…` (the person approves at once here);
//!   an unknown `client_id` gets GitHub's 404 page; a `redirect_uri` that is not the
//!   registered callback redirects to the *registered* callback with
//!   `error=redirect_uri_mismatch`; PKCE accepts only `S256`;
//! - the token exchange answers **200 with an `error`** for wrong client credentials, a bad,
//!   used or expired code (codes live ten minutes and work once), a `redirect_uri` that differs
//!   from the authorize request's, and a `code_verifier` whose SHA-256 is not the challenge;
//!   `Accept: application/json` gets JSON, anything else the form-encoded answer;
//! - the API answers with GitHub's own examples (`crate::github_spec`), recorded for the
//!   OpenAPI check; a repo the person cannot read is a 404 (not 403: GitHub does not confirm
//!   that a private repository exists); a bad token is 401 "Bad credentials".
//!
//! The OAuth endpoints are not in GitHub's OpenAPI description (it describes the REST API on
//! api.github.com only), so they are served apart and not recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::github_spec::{Asked, documented, record};

/// A code works once and for ten minutes (docs: "The code will expire after 10 minutes").
const CODE_SECS: u64 = 600;

#[derive(Default)]
struct World {
    client_id: String,
    client_secret: String,
    callback: String,
    /// login → (id, repos they can read).
    people: HashMap<String, (u64, Vec<String>)>,
    /// Who is at the browser when GitHub asks.
    at_browser: Option<String>,
    /// code → what it was issued for.
    codes: HashMap<String, Grant>,
    /// token → login.
    tokens: HashMap<String, String>,
    issued: u64,
    /// Seconds that have passed, as the test says.
    clock: u64,
}

#[derive(Clone)]
struct Grant {
    login: String,
    challenge: String,
    redirect_uri: String,
    issued_at: u64,
}

/// GitHub, as far as signing in goes.
pub struct GitHubSignIn {
    pub web: MockServer,
    pub api: MockServer,
    world: Arc<Mutex<World>>,
}

impl GitHubSignIn {
    /// An OAuth app (client id and secret) whose registered callback URL is `callback`.
    pub async fn start(client_id: &str, client_secret: &str, callback: &str) -> Self {
        let world = Arc::new(Mutex::new(World {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            callback: callback.into(),
            ..World::default()
        }));
        let web = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(Web(world.clone()))
            .mount(&web)
            .await;
        let api = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(Api(world.clone()))
            .mount(&api)
            .await;
        Self { web, api, world }
    }

    /// A GitHub account that can read `repos`.
    pub fn person(&self, login: &str, id: u64, repos: &[&str]) {
        self.world.lock().unwrap().people.insert(
            login.into(),
            (id, repos.iter().map(|r| (*r).to_string()).collect()),
        );
    }

    /// Who approves the next authorize request.
    pub fn at_browser(&self, login: &str) {
        self.world.lock().unwrap().at_browser = Some(login.into());
    }

    /// Lets `secs` pass (codes expire).
    pub fn wait(&self, secs: u64) {
        self.world.lock().unwrap().clock += secs;
    }

    /// How many user tokens were issued.
    pub fn tokens_issued(&self) -> usize {
        self.world.lock().unwrap().tokens.len()
    }
}

fn query(request: &Request) -> HashMap<String, String> {
    request.url.query_pairs().into_owned().collect()
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{query}")
}

struct Web(Arc<Mutex<World>>);

impl Respond for Web {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut world = self.0.lock().unwrap();
        match (request.method.as_str(), request.url.path()) {
            ("GET", "/login/oauth/authorize") => authorize(&mut world, &query(request)),
            ("POST", "/login/oauth/access_token") => exchange(&mut world, request),
            _ => ResponseTemplate::new(404).set_body_string("Not Found"),
        }
    }
}

fn authorize(world: &mut World, q: &HashMap<String, String>) -> ResponseTemplate {
    if q.get("client_id") != Some(&world.client_id) {
        return ResponseTemplate::new(404).set_body_string("Not Found");
    }
    let state = q.get("state").cloned().unwrap_or_default();
    let redirect_uri = q
        .get("redirect_uri")
        .cloned()
        .unwrap_or(world.callback.clone());
    if redirect_uri != world.callback {
        // "If you provide a redirect_uri that doesn't match what you've registered with your
        // application, GitHub will redirect to the following URL" (the registered callback).
        let location = with_query(
            &world.callback,
            &[
                ("error", "redirect_uri_mismatch"),
                (
                    "error_description",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                ),
                ("state", &state),
            ],
        );
        return ResponseTemplate::new(302).insert_header("location", location);
    }
    // PKCE is optional; when a challenge is sent, only S256 is accepted.
    if q.contains_key("code_challenge")
        && q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return ResponseTemplate::new(400).set_body_string("code_challenge_method must be S256");
    }
    let Some(login) = world.at_browser.clone() else {
        let location = with_query(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "The user has denied your application access.",
                ),
                ("state", &state),
            ],
        );
        return ResponseTemplate::new(302).insert_header("location", location);
    };
    world.issued += 1;
    let code = format!("code{:016x}", world.issued * 0x9e37_79b9);
    world.codes.insert(
        code.clone(),
        Grant {
            login,
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            issued_at: world.clock,
        },
    );
    let location = with_query(&redirect_uri, &[("code", &code), ("state", &state)]);
    ResponseTemplate::new(302).insert_header("location", location)
}

/// GitHub's error answers of the token exchange, word for word from "Troubleshooting OAuth app
/// access token request errors".
fn token_error(error: &str) -> Value {
    let (description, anchor) = match error {
        "incorrect_client_credentials" => (
            "The client_id and/or client_secret passed are incorrect.",
            "incorrect-client-credentials",
        ),
        "redirect_uri_mismatch" => (
            "The redirect_uri MUST match the registered callback URL for this application.",
            "redirect-uri-mismatch2",
        ),
        _ => (
            "The code passed is incorrect or expired.",
            "bad-verification-code",
        ),
    };
    json!({
        "error": error,
        "error_description": description,
        "error_uri": format!("https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#{anchor}"),
    })
}

fn exchange(world: &mut World, request: &Request) -> ResponseTemplate {
    // Parameters as a form body, as query parameters (as the docs word it), or as JSON (as
    // Octokit sends them): GitHub takes all three.
    let mut p: HashMap<String, String> = query(request);
    p.extend(form_urlencoded::parse(&request.body).into_owned());
    if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&request.body) {
        p.extend(
            fields
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))),
        );
    }
    let json_wanted = request
        .headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let answer = |body: Value| {
        if json_wanted {
            ResponseTemplate::new(200).set_body_json(body)
        } else {
            let form = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    body.as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
                )
                .finish();
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-www-form-urlencoded")
                .set_body_string(form)
        }
    };
    if p.get("client_id") != Some(&world.client_id)
        || p.get("client_secret") != Some(&world.client_secret)
    {
        return answer(token_error("incorrect_client_credentials"));
    }
    // A code works once, whatever the outcome.
    let Some(grant) = p.get("code").and_then(|c| world.codes.remove(c)) else {
        return answer(token_error("bad_verification_code"));
    };
    if world.clock - grant.issued_at >= CODE_SECS {
        return answer(token_error("bad_verification_code"));
    }
    if p.get("redirect_uri")
        .is_some_and(|r| *r != grant.redirect_uri)
    {
        return answer(token_error("redirect_uri_mismatch"));
    }
    let verifier = p.get("code_verifier").cloned().unwrap_or_default();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if !grant.challenge.is_empty() && challenge != grant.challenge {
        return answer(token_error("bad_verification_code"));
    }
    world.issued += 1;
    let token = format!("ghu_{:036x}", world.issued * 0x85eb_ca6b);
    world.tokens.insert(token.clone(), grant.login);
    // A GitHub App's user access token (expiring: 8 hours, with a refresh token).
    answer(json!({
        "access_token": token,
        "expires_in": 28800,
        "refresh_token": format!("ghr_{:076x}", world.issued),
        "refresh_token_expires_in": 15_897_600,
        "scope": "",
        "token_type": "bearer",
    }))
}

struct Api(Arc<Mutex<World>>);

impl Respond for Api {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let world = self.0.lock().unwrap();
        let token = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("token "))
            })
            .unwrap_or_default();
        let asked = Asked {
            method: request.method.as_str(),
            path: request.url.path(),
            query: request.url.query(),
            body: &request.body,
        };
        let Some((login, (id, repos))) = world
            .tokens
            .get(token)
            .and_then(|login| Some((login.clone(), world.people.get(login)?.clone())))
        else {
            return ResponseTemplate::new(401).set_body_json(json!({
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401",
            }));
        };
        let parts: Vec<&str> = asked.path.trim_start_matches('/').split('/').collect();
        let (status, body) = match (asked.method, parts.as_slice()) {
            ("GET", ["user"]) => (
                200,
                documented("GET /user", json!({"login": login, "id": id})),
            ),
            // GitHub reads owner and name case-insensitively.
            ("GET", ["repos", owner, name])
                if repos
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(&format!("{owner}/{name}"))) =>
            {
                (
                    200,
                    documented(
                        "GET /repos/{owner}/{repo}",
                        // GitHub's own example lacks `language`, which its schema requires
                        // (nullable) at the top and in `source`: set it, or the check fails.
                        json!({
                            "name": name,
                            "full_name": format!("{owner}/{name}"),
                            "language": "Rust",
                            "source": {"language": "Rust"},
                            "private": true,
                            "permissions": {"admin": false, "maintain": false, "push": false, "triage": false, "pull": true},
                        }),
                    ),
                )
            }
            ("GET", ["repos", _, _]) => (
                404,
                json!({
                    "message": "Not Found",
                    "documentation_url": "https://docs.github.com/rest/repos/repos#get-a-repository",
                    "status": "404",
                }),
            ),
            _ => {
                return ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}));
            }
        };
        record(&asked, status, &body);
        ResponseTemplate::new(status).set_body_json(body)
    }
}
