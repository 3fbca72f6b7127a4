//! The GitHub client against a fake that answers with GitHub's own examples, from GitHub's
//! official OpenAPI description (npm `@octokit/openapi`, extracted by
//! `scripts/github-openapi/examples.mjs`). Every exchange is recorded, and
//! `scripts/github-openapi/check.mjs` then validates each request body against its operation's
//! request schema and each answer against its response schema, and fails on an operation GitHub
//! does not have or that no exchange exercised. `scripts/test` runs the three in order.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use shared::github::client::{Auth, GitHubClient};
use shared::github::deliveries::HookScope;
use shared::ports::{
    CommitState, CommitStatus, DeploymentState, DeploymentStatus, GitHub, NewDeployment,
};
use shared::secrets::{SecretString, Secrets};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Where scripts/test puts the description's examples, and where the exchanges go.
const EXAMPLES: &str = "SHIPLINE_GITHUB_EXAMPLES";
const EXCHANGES: &str = "SHIPLINE_GITHUB_EXCHANGES";

/// One operation of the description: its method, path template, and the documented answer.
struct Operation {
    method: String,
    template: Vec<String>,
    status: u16,
    body: Value,
}

impl Operation {
    /// How well `path` fits the template: the number of literal segments that matched, or
    /// `None`. `{sha}` and `{basehead}` may span several segments (`x-multi-segment` in the
    /// description), and both end their templates.
    fn fit(&self, method: &str, path: &str) -> Option<usize> {
        if self.method != method {
            return None;
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut literal = 0;
        for (i, part) in self.template.iter().enumerate() {
            let multi = part == "{sha}" || part == "{basehead}";
            match segments.get(i) {
                None => return None,
                Some(_) if multi => return (segments.len() > i).then_some(literal),
                Some(_) if part.starts_with('{') => {}
                Some(s) if s == part => literal += 1,
                Some(_) => return None,
            }
        }
        (segments.len() == self.template.len()).then_some(literal)
    }
}

/// The fake GitHub: the best-fitting operation answers with its documented example; a request
/// that fits none gets GitHub's 404. Every exchange is kept for the check.
struct FakeGitHub {
    operations: Vec<Operation>,
    exchanges: Arc<Mutex<Vec<Value>>>,
}

impl Respond for FakeGitHub {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let method = request.method.as_str();
        let path = request.url.path();
        let best = self
            .operations
            .iter()
            .filter_map(|op| op.fit(method, path).map(|fit| (fit, op)))
            .max_by_key(|(fit, _)| *fit)
            .map(|(_, op)| op);
        let (status, body) = best.map_or_else(
            // GitHub's answer to a path it does not have.
            || (404, json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})),
            |op| (op.status, op.body.clone()),
        );
        self.exchanges.lock().unwrap().push(json!({
            "method": method,
            "path": path,
            "query": request.url.query().unwrap_or(""),
            "request": serde_json::from_slice::<Value>(&request.body).ok(),
            "status": status,
            "response": body,
        }));
        let answer = ResponseTemplate::new(status);
        if body.is_null() {
            answer
        } else {
            answer.set_body_json(body)
        }
    }
}

fn operations() -> Vec<Operation> {
    let file = std::env::var(EXAMPLES)
        .unwrap_or_else(|_| panic!("{EXAMPLES} names the examples file; run scripts/test"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let examples: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    examples
        .into_iter()
        .map(|(key, answer)| {
            let (method, template) = key.split_once(' ').unwrap();
            Operation {
                method: method.to_string(),
                template: template
                    .trim_start_matches('/')
                    .split('/')
                    .map(str::to_string)
                    .collect(),
                status: answer["status"].as_u64().unwrap() as u16,
                body: answer["body"].clone(),
            }
        })
        .collect()
}

async fn fake_github(exchanges: &Arc<Mutex<Vec<Value>>>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(FakeGitHub {
            operations: operations(),
            exchanges: exchanges.clone(),
        })
        .mount(&server)
        .await;
    server
}

const REPO: &str = "octocat/Hello-World";
const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

/// A description longer than GitHub takes (140 characters for a status or deployment status),
/// with characters of several bytes.
fn long_description() -> String {
    format!("Build failed: {}", "ünïcödé ✓ ".repeat(30))
}

/// Every repository operation shipline calls, as build-dispatch, deploy-promotion and
/// delivery-recovery call them, with every state shipline sets.
async fn repository_calls(github: &GitHubClient) {
    let states = [
        CommitState::Pending,
        CommitState::Success,
        CommitState::Failure,
        CommitState::Error,
    ];
    for (i, state) in states.into_iter().enumerate() {
        let status = CommitStatus {
            state,
            target_url: (i % 2 == 0)
                .then(|| "https://console.aws.amazon.com/codesuite/codebuild".to_string()),
            description: long_description(),
            context: "shipline/build".into(),
        };
        github.set_status(REPO, SHA, &status, None).await.unwrap();
    }
    assert!(
        !github
            .branch_head(REPO, "master", None)
            .await
            .unwrap()
            .is_empty()
    );
    github.compare(REPO, "master", SHA, None).await.unwrap();
    let deployment = NewDeployment {
        sha: SHA.into(),
        environment: "production".into(),
        description: "shipline: abc1234 to heroku:pax-user".into(),
        payload: json!({"target": "heroku:pax-user", "build_id": "pax-user:1"}),
    };
    let id = github
        .create_deployment(REPO, &deployment, None)
        .await
        .unwrap();
    for state in [
        DeploymentState::InProgress,
        DeploymentState::Success,
        DeploymentState::Failure,
        DeploymentState::Error,
        DeploymentState::Inactive,
    ] {
        let status = DeploymentStatus {
            state,
            description: long_description(),
            log_url: Some("https://dashboard.heroku.com/apps/pax-user/activity".into()),
            environment_url: Some("https://pax-user.herokuapp.com".into()),
        };
        github
            .set_deployment_status(REPO, id, &status, None)
            .await
            .unwrap();
    }
    let hooks = github.hooks(REPO).await.unwrap();
    let scope = HookScope::Repo {
        repo: REPO.into(),
        hook_id: hooks[0].id,
    };
    deliveries(github, &scope).await;
}

async fn deliveries(github: &GitHubClient, scope: &HookScope) {
    let page = github.deliveries(scope, None).await.unwrap();
    let attempt = page.attempts.first().expect("the example lists a delivery");
    github.delivery(scope, attempt.id).await.unwrap();
    github.redeliver(scope, attempt.id).await.unwrap();
}

#[tokio::test]
#[ignore = "needs GitHub's OpenAPI examples and the checker: run scripts/test"]
async fn every_github_call_matches_githubs_own_description() {
    let exchanges = Arc::new(Mutex::new(Vec::new()));
    let server = fake_github(&exchanges).await;
    let http = reqwest::Client::new();
    let token = GitHubClient::new(
        http.clone(),
        server.uri(),
        Auth::Token(SecretString::new("ghp_x")),
    );
    repository_calls(&token).await;

    // As a GitHub App: the repo's installation, an installation token, the App's own hook.
    let secrets = Secrets::default().with("github_app_id", "1").with(
        "github_app_private_key",
        include_str!("../testdata/test-app-key.pem"),
    );
    let app = GitHubClient::new(http, server.uri(), Auth::from_secrets(&secrets).unwrap());
    let status = CommitStatus {
        state: CommitState::Failure,
        target_url: None,
        description: "Build failed".into(),
        context: "shipline/build".into(),
    };
    app.set_status(REPO, SHA, &status, None).await.unwrap();
    deliveries(&app, &HookScope::App).await;
    // `shipline setup` and `doctor` check where the App delivers.
    let hook = app.app_hook_config().await.unwrap();
    assert!(hook.url.is_some_and(|url| url.starts_with("https://")));

    let exchanges = exchanges.lock().unwrap();
    // What GitHub caps but its description does not say: 140 characters of a description
    // (REST reference, "Create a deployment status").
    for exchange in exchanges.iter() {
        if let Some(description) = exchange["request"]["description"].as_str() {
            assert!(description.chars().count() <= 140, "{exchange}");
        }
    }
    let lines: Vec<String> = exchanges.iter().map(Value::to_string).collect();
    let out = PathBuf::from(
        std::env::var(EXCHANGES).unwrap_or_else(|_| panic!("{EXCHANGES} is not set")),
    );
    // Appended: the pipeline tests record their exchanges with GitHub's fake in the same file.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .unwrap();
    std::io::Write::write_all(&mut file, (lines.join("\n") + "\n").as_bytes()).unwrap();
}
