//! Local fakes of what `setup` and `doctor` call beyond moto: CodeBuild (moto has no
//! UpdateProject, DeleteWebhook or source credentials), GitHub's webhooks API, Heroku's app
//! info and Telegram's chat methods. Each answers as its service documents, cited at the
//! route.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use e2e::github_spec::{self, Asked, documented, documented_item};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

// ---- CodeBuild: the AWS JSON 1.1 protocol, `X-Amz-Target: CodeBuild_20161006.<Operation>` ----

#[derive(Default)]
pub struct CodeBuildState {
    /// Projects by name, as CreateProject / UpdateProject stored them.
    pub projects: BTreeMap<String, Value>,
    pub credentials: Vec<Value>,
    /// Every operation called, in order.
    pub calls: Vec<String>,
}

pub struct CodeBuild {
    pub server: MockServer,
    pub state: Arc<Mutex<CodeBuildState>>,
}

/// An AWS JSON 1.1 error: HTTP 400 and the shape's name in `__type` (the SDK reads it there).
fn aws_error(kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(400)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(json!({"__type": kind, "message": message}))
}

fn aws_answer(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(body)
}

struct CodeBuildRoutes(Arc<Mutex<CodeBuildState>>);

impl Respond for CodeBuildRoutes {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(operation) = target.strip_prefix("CodeBuild_20161006.") else {
            return aws_error("UnknownOperationException", target);
        };
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let mut state = self.0.lock().unwrap();
        state.calls.push(operation.to_string());
        let name = body["name"].as_str().unwrap_or("").to_string();
        // docs.aws.amazon.com/codebuild/latest/APIReference/API_<Operation>.html
        match operation {
            // "projects" found, "projectsNotFound" the rest.
            "BatchGetProjects" => {
                let names: Vec<String> = body["names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect();
                let (found, missing): (Vec<_>, Vec<_>) =
                    names.iter().partition(|n| state.projects.contains_key(*n));
                let projects: Vec<Value> =
                    found.iter().map(|n| state.projects[*n].clone()).collect();
                aws_answer(json!({"projects": projects, "projectsNotFound": missing}))
            }
            "CreateProject" if state.projects.contains_key(&name) => aws_error(
                "ResourceAlreadyExistsException",
                &format!("Project already exists: {name}"),
            ),
            "CreateProject" => {
                let mut project = body.clone();
                project["arn"] = json!(format!(
                    "arn:aws:codebuild:us-east-1:123456789012:project/{name}"
                ));
                state.projects.insert(name, project.clone());
                aws_answer(json!({"project": project}))
            }
            "UpdateProject" => match state.projects.get_mut(&name) {
                None => aws_error(
                    "ResourceNotFoundException",
                    &format!("Project cannot be found: {name}"),
                ),
                Some(project) => {
                    // The fields given replace the project's; the others stay.
                    for (key, value) in body.as_object().unwrap() {
                        project[key] = value.clone();
                    }
                    aws_answer(json!({"project": project.clone()}))
                }
            },
            "DeleteWebhook" => {
                let name = body["projectName"].as_str().unwrap_or("");
                match state.projects.get_mut(name) {
                    Some(project) => {
                        project.as_object_mut().unwrap().remove("webhook");
                        aws_answer(json!({}))
                    }
                    None => aws_error("ResourceNotFoundException", "Project cannot be found"),
                }
            }
            "ListSourceCredentials" => {
                aws_answer(json!({"sourceCredentialsInfos": state.credentials.clone()}))
            }
            // The token is kept by CodeBuild; the answer is the credential's ARN.
            "ImportSourceCredentials" => {
                let arn = format!(
                    "arn:aws:codebuild:us-east-1:123456789012:token/{}",
                    body["serverType"].as_str().unwrap_or("").to_lowercase()
                );
                state.credentials.push(json!({
                    "arn": arn, "serverType": body["serverType"], "authType": body["authType"],
                }));
                aws_answer(json!({"arn": arn}))
            }
            other => aws_error("InvalidInputException", &format!("not faked: {other}")),
        }
    }
}

impl CodeBuild {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(CodeBuildState::default()));
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(CodeBuildRoutes(state.clone()))
            .mount(&server)
            .await;
        Self { server, state }
    }

    pub fn project(&self, name: &str) -> Option<Value> {
        self.state.lock().unwrap().projects.get(name).cloned()
    }

    /// The project's environment variables: name → (value, type).
    pub fn variables(&self, name: &str) -> BTreeMap<String, (String, String)> {
        let project = self.project(name).unwrap_or_default();
        project["environment"]["environmentVariables"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or("").to_string(),
                    (
                        v["value"].as_str().unwrap_or("").to_string(),
                        v["type"].as_str().unwrap_or("PLAINTEXT").to_string(),
                    ),
                )
            })
            .collect()
    }
}

// ---- GitHub: repository webhooks, their pings and deliveries ----

#[derive(Debug, Clone)]
pub struct StoredHook {
    pub id: u64,
    pub active: bool,
    pub events: Vec<String>,
    pub url: String,
    pub content_type: String,
    pub insecure_ssl: String,
    /// What the hook signs with; GitHub shows only `********`.
    pub secret: String,
}

#[derive(Default)]
pub struct GitHubState {
    pub hooks: BTreeMap<String, Vec<StoredHook>>,
    next_id: u64,
    /// Delivery attempts (hook id, `hook-delivery-item`), oldest first.
    pub deliveries: Vec<(u64, Value)>,
}

pub struct GitHub {
    pub server: MockServer,
    pub state: Arc<Mutex<GitHubState>>,
}

struct GitHubRoutes {
    state: Arc<Mutex<GitHubState>>,
}

impl StoredHook {
    /// `hook` in GitHub's OpenAPI description.
    fn json(&self, operation: &str, item: bool) -> Value {
        let mut config = json!({
            "url": self.url, "content_type": self.content_type, "insecure_ssl": self.insecure_ssl,
        });
        if !self.secret.is_empty() {
            config["secret"] = json!("********");
        }
        let fields = json!({
            "type": "Repository", "id": self.id, "name": "web", "active": self.active,
            "events": self.events, "config": config,
        });
        let mut hook = if item {
            documented_item(operation, fields)
        } else {
            documented(operation, fields)
        };
        // The example's config has fields of its own; the hook's are exactly these.
        hook["config"] = config;
        hook
    }

    fn apply(&mut self, body: &Value) {
        if let Some(active) = body["active"].as_bool() {
            self.active = active;
        }
        if let Some(events) = body["events"].as_array() {
            self.events = events
                .iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect();
        }
        let config = &body["config"];
        if config.is_object() {
            self.url = config["url"].as_str().unwrap_or(&self.url).to_string();
            self.content_type = config["content_type"]
                .as_str()
                .unwrap_or("form")
                .to_string();
            self.insecure_ssl = config["insecure_ssl"].as_str().unwrap_or("0").to_string();
            // "If you previously had a secret set, you must provide the same secret or set a
            // new secret or the secret will be removed" (Update a repository webhook).
            self.secret = config["secret"].as_str().unwrap_or("").to_string();
        }
    }
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest",
        "status": "404"
    }))
}

impl GitHubRoutes {
    /// "Create a repository webhook": 201 with the hook.
    fn create(&self, repo: &str, body: &Value) -> (u16, Value) {
        let mut state = self.state.lock().unwrap();
        state.next_id += 1;
        let mut hook = StoredHook {
            id: 12_000_000 + state.next_id,
            active: true,
            events: vec!["push".into()],
            url: String::new(),
            content_type: "form".into(),
            insecure_ssl: "0".into(),
            secret: String::new(),
        };
        hook.apply(body);
        let answer = hook.json("POST /repos/{owner}/{repo}/hooks", false);
        state.hooks.entry(repo.to_string()).or_default().push(hook);
        (201, answer)
    }

    fn ping(&self, repo: &str, id: &str) -> Option<(u16, Value)> {
        let hook = self
            .state
            .lock()
            .unwrap()
            .hooks
            .get(repo)
            .and_then(|hooks| hooks.iter().find(|h| h.id.to_string() == id).cloned())?;
        let state = self.state.clone();
        let repo = repo.to_string();
        std::thread::spawn(move || deliver_ping(&state, &repo, &hook));
        Some((204, Value::Null))
    }
}

impl Respond for GitHubRoutes {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_string();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let (status, answer) = match (request.method.as_str(), parts.as_slice()) {
            ("GET", ["repos", owner, name, "hooks"]) => {
                const OP: &str = "GET /repos/{owner}/{repo}/hooks";
                let state = self.state.lock().unwrap();
                let hooks: Vec<Value> = state
                    .hooks
                    .get(&format!("{owner}/{name}"))
                    .into_iter()
                    .flatten()
                    .map(|h| h.json(OP, true))
                    .collect();
                (200, json!(hooks))
            }
            ("POST", ["repos", owner, name, "hooks"]) => {
                self.create(&format!("{owner}/{name}"), &body)
            }
            ("PATCH", ["repos", owner, name, "hooks", id]) => {
                let mut state = self.state.lock().unwrap();
                let hook = state
                    .hooks
                    .get_mut(&format!("{owner}/{name}"))
                    .and_then(|hooks| hooks.iter_mut().find(|h| h.id.to_string() == *id));
                match hook {
                    None => return not_found(),
                    Some(hook) => {
                        hook.apply(&body);
                        (
                            200,
                            hook.json("PATCH /repos/{owner}/{repo}/hooks/{hook_id}", false),
                        )
                    }
                }
            }
            // "Ping a repository webhook": 204, and GitHub delivers a `ping` event.
            ("POST", ["repos", owner, name, "hooks", id, "pings"]) => {
                match self.ping(&format!("{owner}/{name}"), id) {
                    Some(answer) => answer,
                    None => return not_found(),
                }
            }
            // "List deliveries for a repository webhook": newest first.
            ("GET", ["repos", _, _, "hooks", id, "deliveries"]) => {
                let state = self.state.lock().unwrap();
                let mut items: Vec<Value> = state
                    .deliveries
                    .iter()
                    .filter(|(hook, _)| hook.to_string() == *id)
                    .map(|(_, item)| item.clone())
                    .collect();
                items.reverse();
                (200, json!(items))
            }
            _ => return not_found(),
        };
        let asked = Asked {
            method: request.method.as_str(),
            path: &path,
            query: request.url.query(),
            body: &request.body,
        };
        github_spec::record(&asked, status, &answer);
        if answer.is_null() {
            ResponseTemplate::new(status)
        } else {
            ResponseTemplate::new(status).set_body_json(answer)
        }
    }
}

/// GitHub's ping: a signed `ping` event POSTed to the hook's URL; the attempt is kept with the
/// receiver's status code (`hook-delivery-item`).
fn deliver_ping(state: &Mutex<GitHubState>, repo: &str, hook: &StoredHook) {
    let body = json!({
        "zen": "Keep it logically awesome.",
        "hook_id": hook.id,
        "hook": {"type": "Repository", "id": hook.id, "events": hook.events, "active": hook.active},
        "repository": {"full_name": repo, "id": 1296269},
        "sender": {"login": "octocat", "id": 1},
    })
    .to_string();
    let guid = format!("0b9a6a2e-{:04x}-11ef-8000-000000000000", hook.id % 0xffff);
    let signature = webhook_intake::webhook::sign(hook.secret.as_bytes(), body.as_bytes());
    let status_code = post(
        &hook.url,
        &[
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", &guid),
            ("X-Hub-Signature-256", &signature),
            ("Content-Type", "application/json"),
            ("User-Agent", "GitHub-Hookshot/044aadd"),
        ],
        body.as_bytes(),
    );
    let status = match status_code {
        200..=299 => "OK".to_string(),
        0 => "failed to connect to host".to_string(),
        code => format!("Invalid HTTP Response: {code}"),
    };
    let mut state = state.lock().unwrap();
    let id = 40_000_000 + state.deliveries.len() as u64;
    let delivered_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let item = documented_item(
        "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries",
        json!({
            "id": id, "guid": guid, "delivered_at": delivered_at, "redelivery": false,
            "duration": 0.03, "status": status, "status_code": status_code, "event": "ping",
            "action": null, "installation_id": null, "repository_id": 1296269,
        }),
    );
    state.deliveries.push((hook.id, item));
}

/// A blocking HTTP/1.1 POST to `http://host:port/path`; the answer's status code, 0 when
/// nothing answered.
fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let Some(rest) = url.strip_prefix("http://") else {
        return 0;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return 0;
    };
    let mut request = format!("POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    if stream.write_all(request.as_bytes()).is_err() || stream.write_all(body).is_err() {
        return 0;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

impl GitHub {
    pub async fn start(token: &str) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(GitHubState::default()));
        Mock::given(wiremock::matchers::header(
            "authorization",
            format!("Bearer {token}").as_str(),
        ))
        .respond_with(GitHubRoutes {
            state: state.clone(),
        })
        .mount(&server)
        .await;
        // Without the token: "Requires authentication".
        Mock::given(wiremock::matchers::any())
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(json!({"message": "Requires authentication"})),
            )
            .mount(&server)
            .await;
        Self { server, state }
    }

    pub fn hooks(&self, repo: &str) -> Vec<StoredHook> {
        self.state
            .lock()
            .unwrap()
            .hooks
            .get(repo)
            .cloned()
            .unwrap_or_default()
    }

    /// Someone edits a hook by hand.
    pub fn edit_hook(&self, repo: &str, edit: impl FnOnce(&mut StoredHook)) {
        let mut state = self.state.lock().unwrap();
        edit(state.hooks.get_mut(repo).unwrap().first_mut().unwrap());
    }
}

// ---- Heroku: GET /apps/{app} (Platform API v3, "App Info") ----

pub async fn heroku(key: &str, apps: &[&str]) -> MockServer {
    let server = MockServer::start().await;
    for app in apps {
        Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path(format!("/apps/{app}")))
            .and(wiremock::matchers::header("authorization", format!("Bearer {key}").as_str()))
            .and(wiremock::matchers::header(
                "accept",
                "application/vnd.heroku+json; version=3",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "01234567-89ab-cdef-0123-456789abcdef", "name": app,
                "build_stack": {"name": "container"}, "web_url": format!("https://{app}.herokuapp.com/"),
            })))
            .mount(&server)
            .await;
    }
    // Platform API errors: `{"id": ..., "message": ...}`; an unknown app is 404 `not_found`.
    Mock::given(wiremock::matchers::header(
        "authorization",
        format!("Bearer {key}").as_str(),
    ))
    .respond_with(
        ResponseTemplate::new(404)
            .set_body_json(json!({"id": "not_found", "message": "Couldn't find that app."})),
    )
    .mount(&server)
    .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"id": "unauthorized", "message": "Invalid credentials provided."}),
        ))
        .mount(&server)
        .await;
    server
}

// ---- Telegram: getMe, getChat, getChatMember, setWebhook, getWebhookInfo
// (core.telegram.org/bots/api) ----

pub struct Telegram {
    pub server: MockServer,
    /// The bot's status in each chat it knows (`member`, `left`, ...).
    pub members: Arc<Mutex<BTreeMap<i64, String>>>,
    /// The bot's webhook, as `setWebhook` left it (`getWebhookInfo` shows all but the token).
    pub webhook: Arc<Mutex<Webhook>>,
}

/// A bot's webhook settings.
#[derive(Debug, Clone, Default)]
pub struct Webhook {
    pub url: String,
    pub secret_token: String,
    pub allowed_updates: Option<Vec<String>>,
    /// Unix time and text of the last delivery error, as Telegram reports it.
    pub last_error: Option<(i64, String)>,
}

pub const BOT_ID: i64 = 7_000_000_001;

struct TelegramRoutes {
    token: String,
    members: Arc<Mutex<BTreeMap<i64, String>>>,
    webhook: Arc<Mutex<Webhook>>,
}

impl TelegramRoutes {
    /// `setWebhook`: an HTTPS URL ("bad webhook: An HTTPS URL must be provided for webhook"),
    /// a `secret_token` of 1-256 characters A-Z a-z 0-9 _ - (Bot API; the server's words for a
    /// bad one), `allowed_updates` kept when not given.
    fn set_webhook(&self, body: &Value) -> ResponseTemplate {
        let url = body["url"].as_str().unwrap_or("");
        if !url.is_empty() && !url.starts_with("https://") {
            return bot_error(
                400,
                "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
            );
        }
        let token = body["secret_token"].as_str().unwrap_or("");
        if token.len() > 256 {
            return bot_error(400, "Bad Request: secret token is too long");
        }
        if !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bot_error(
                400,
                "Bad Request: secret token contains unallowed characters",
            );
        }
        let mut hook = self.webhook.lock().unwrap();
        hook.url = url.to_string();
        hook.secret_token = token.to_string();
        if let Some(allowed) = body["allowed_updates"].as_array() {
            hook.allowed_updates = Some(
                allowed
                    .iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect(),
            );
        }
        ResponseTemplate::new(200)
            .set_body_json(json!({"ok": true, "result": true, "description": "Webhook was set"}))
    }

    /// `getWebhookInfo` (*WebhookInfo*): optional fields only when they hold something.
    fn webhook_info(&self) -> Value {
        let hook = self.webhook.lock().unwrap();
        let mut info = json!({
            "url": hook.url, "has_custom_certificate": false, "pending_update_count": 0,
        });
        if let Some(allowed) = &hook.allowed_updates {
            info["allowed_updates"] = json!(allowed);
        }
        if let Some((at, message)) = &hook.last_error {
            info["last_error_date"] = json!(at);
            info["last_error_message"] = json!(message);
            info["pending_update_count"] = json!(3);
        }
        info
    }
}

fn bot_error(code: u16, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(code)
        .set_body_json(json!({"ok": false, "error_code": code, "description": description}))
}

impl Respond for TelegramRoutes {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path();
        let Some(method) = path.strip_prefix(&format!("/bot{}/", self.token)) else {
            return bot_error(401, "Unauthorized");
        };
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let chat_id = body["chat_id"].as_i64().unwrap_or(0);
        let status = self.members.lock().unwrap().get(&chat_id).cloned();
        let ok = |result: Value| {
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": result}))
        };
        match method {
            "getMe" => ok(json!({
                "id": BOT_ID, "is_bot": true, "first_name": "shipline", "username": "shipline_bot",
            })),
            // A chat the bot was never in, or was removed from: "chat not found".
            "getChat" => match status {
                Some(_) => ok(json!({
                    "id": chat_id, "type": "supergroup", "title": "Team", "is_forum": true,
                    "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": {},
                })),
                None => bot_error(400, "Bad Request: chat not found"),
            },
            "getChatMember" => match status {
                Some(status) => ok(json!({
                    "user": {"id": body["user_id"], "is_bot": true, "first_name": "shipline"},
                    "status": status,
                })),
                None => bot_error(400, "Bad Request: chat not found"),
            },
            "getWebhookInfo" => ok(self.webhook_info()),
            "setWebhook" => self.set_webhook(&body),
            _ => bot_error(404, "Not Found"),
        }
    }
}

impl Telegram {
    pub async fn start(token: &str, chat_id: i64) -> Self {
        let server = MockServer::start().await;
        let members = Arc::new(Mutex::new(BTreeMap::from([(
            chat_id,
            "member".to_string(),
        )])));
        let webhook = Arc::new(Mutex::new(Webhook::default()));
        Mock::given(wiremock::matchers::any())
            .respond_with(TelegramRoutes {
                token: token.to_string(),
                members: members.clone(),
                webhook: webhook.clone(),
            })
            .mount(&server)
            .await;
        Self {
            server,
            members,
            webhook,
        }
    }
}
