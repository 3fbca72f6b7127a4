//! The status page in a real browser: `shipline serve` runs a scripted story (a push that
//! builds and deploys, a push whose build fails, a Sentry alert), then headless Chromium,
//! driven over W3C WebDriver by Debian's chromedriver, opens the page and reads what a person
//! would see. A screenshot is written to this test's output folder (`CARGO_TARGET_TMPDIR`).
//!
//! The WebDriver client is the handful of endpoints the test uses, over reqwest (W3C
//! WebDriver, "List of endpoints"): every answer is `{"value": ...}`, an error
//! `{"value": {"error", "message"}}`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "browser-webhook-secret";
const SENTRY_SECRET: &str = "browser-sentry-secret";
/// The key W3C WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session. The flags keep a
    /// closed network quiet (no background, component or sync traffic) and a root user able
    /// to run it (`--no-sandbox`).
    async fn start() -> Self {
        let driver_bin = which("chromedriver");
        let chromium = which("chromium");
        let port = free_port();
        let driver = tokio::process::Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", driver_bin.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = Instant::now() + Duration::from_secs(20);
        loop {
            let status = http.get(format!("{base}/status")).send().await;
            if let Ok(status) = status {
                let body: Value = status.json().await.unwrap_or_default();
                if body["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < ready, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Self {
            driver,
            base,
            http,
            _profile: profile,
        };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1400",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let session = browser
            .call(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                }}})),
            )
            .await;
        let id = session["sessionId"].as_str().unwrap().to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        let value = answer["value"].clone();
        assert!(
            value.get("error").is_none(),
            "WebDriver {path}: {}",
            value["message"]
        );
        value
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The elements matching a CSS selector.
    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    async fn find(&self, css: &str) -> String {
        let all = self.find_all(css).await;
        assert!(!all.is_empty(), "nothing on the page matches {css}");
        all[0].clone()
    }

    /// What a person reads in the element (its rendered text).
    async fn text(&self, element: &str) -> String {
        let text = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await;
        text.as_str().unwrap().to_string()
    }

    async fn attribute(&self, element: &str, name: &str) -> Option<String> {
        let value = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/attribute/{name}"),
                None,
            )
            .await;
        value.as_str().map(str::to_string)
    }

    async fn click(&self, element: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The viewport as PNG bytes.
    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap()
    }

    async fn quit(mut self) {
        let _ = self.http.delete(self.base.clone()).send().await;
        let _ = self.driver.kill().await;
    }
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{program} is not installed (Debian: apt-get install chromium chromium-driver; scripts/test installs them)")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A git repository at `dir` with one commit whose buildspec runs `command`; its commit id.
fn repo_with_buildspec(dir: &Path, message: &str, command: &str) -> String {
    std::fs::create_dir(dir).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Ana", "-c", "user.email=ana@example.com"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "--quiet", "--initial-branch=master"]);
    std::fs::write(
        dir.join("buildspec.yml"),
        format!("version: 0.2\nphases:\n  build:\n    commands:\n      - {command}\n"),
    )
    .unwrap();
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", message]);
    git(&["rev-parse", "HEAD"])
}

/// GitHub delivers a push of `sha` to `repo`'s master, signed.
async fn push(port: u16, repo: &str, sha: &str, message: &str, delivery: &str) {
    let body = json!({
        "ref": "refs/heads/master", "before": "0".repeat(40), "after": sha,
        "compare": format!("https://github.com/{repo}/compare/x"),
        "head_commit": {"id": sha, "message": message},
        "pusher": {"name": "ana"}, "repository": {"full_name": repo}
    })
    .to_string();
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            webhook_intake::webhook::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "push of {repo}");
}

/// Sentry's integration delivers an event alert for the web project in production.
async fn alert(port: u16) {
    let body = serde_json::to_vec(&json!({
        "action": "triggered",
        "installation": {"uuid": "7a485448-a9e2-4c85-8a3c-4f44175783c9"},
        "data": {
            "event": {
                "url": "https://sentry.example.com/api/0/projects/acme/web/events/5f1b7f0c/",
                "web_url": "https://sentry.example.com/organizations/acme/issues/4242/events/5f1b7f0c/",
                "issue_id": "4242", "event_id": "5f1b7f0c",
                "title": "TypeError: cart.total is not a function", "level": "error",
                "culprit": "checkout/pay", "environment": "production",
                "tags": [["environment", "production"], ["level", "error"]],
            },
            "triggered_rule": "Errors in production",
        },
        "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
    }))
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/sentry"))
        .header("content-type", "application/json")
        .header("sentry-hook-resource", "event_alert")
        .header("request-id", "browser-alert-4242")
        .header(
            "sentry-hook-signature",
            alert_forwarder::sentry::sign(SENTRY_SECRET.as_bytes(), &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// Reads the page until it contains every one of `texts`.
async fn page_shows(port: u16, texts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let html = reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if texts.iter().all(|t| html.contains(t)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {texts:?}:\n{html}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn serve(dir: &Path, port: u16, repos: &[(&str, &Path)]) -> tokio::process::Child {
    let config = dir.join("shipline.yaml");
    std::fs::write(
        &config,
        "channels:\n  team: { console: {} }\ndefaults:\n  notify: [team]\nrepos:\n  acme/web:\n    codebuild_project: web\n    sentry_project: web\n    deploy:\n      - branch: master\n        environment: production\n        command: { run: 'echo v7' }\n  acme/api:\n    codebuild_project: api\nsentry:\n  projects:\n    web: {}\n",
    )
    .unwrap();
    let secrets = dir.join("secrets.json");
    std::fs::write(
        &secrets,
        json!({"github_webhook_secret": WEBHOOK_SECRET, "sentry_client_secret": SENTRY_SECRET})
            .to_string(),
    )
    .unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipline"));
    command
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--secrets", secrets.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--data", dir.join("data").to_str().unwrap()]);
    for (name, path) in repos {
        command.args(["--repo", &format!("{name}={}", path.display())]);
    }
    command
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs Debian's chromium and chromium-driver: run scripts/test"]
async fn a_person_sees_what_is_live_what_failed_and_what_broke_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    let api = dir.path().join("api");
    let web_sha = repo_with_buildspec(&web, "Make the checkout faster", "sleep 2 && echo built");
    let api_sha = repo_with_buildspec(
        &api,
        "Break the API",
        "sleep 1 && echo the schema does not compile && exit 3",
    );
    let port = free_port();
    let mut serving = serve(dir.path(), port, &[("acme/web", &web), ("acme/api", &api)]);
    let up = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .is_err()
    {
        assert!(Instant::now() < up, "shipline serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The story: web builds and goes live; api's build fails; Sentry raises an error on web.
    push(
        port,
        "acme/web",
        &web_sha,
        "Make the checkout faster",
        "d-web",
    )
    .await;
    push(port, "acme/api", &api_sha, "Break the API", "d-api").await;
    page_shows(port, &["data-target=\"command:", "build bad", "build ok"]).await;
    alert(port).await;
    page_shows(port, &["cart.total is not a function"]).await;

    let browser = Browser::start().await;
    browser.open(&format!("http://127.0.0.1:{port}/")).await;
    let title = browser.text(&browser.find("h1").await).await;
    assert_eq!(title, "shipline status");

    // Live: web's commit in production.
    let live = browser.text(&browser.find("#live tbody tr").await).await;
    assert!(live.contains("production"), "{live}");
    assert!(live.contains("acme/web"), "{live}");
    assert!(live.contains(&web_sha[..7]), "{live}");

    // The failed build, its reason and its log, which opens.
    let failed = browser.find("#builds tr.build.bad").await;
    let row = browser.text(&failed).await;
    assert!(row.contains("failed") && row.contains("acme/api"), "{row}");
    assert!(row.contains(&api_sha[..7]), "{row}");
    assert!(row.contains("BUILD"), "the reason names the phase: {row}");
    let log_link = browser.find("#builds tr.build.bad a[href$='/log']").await;
    let href = browser.attribute(&log_link, "href").await.unwrap();
    assert!(
        href.starts_with(&format!("http://127.0.0.1:{port}/builds/")),
        "{href}"
    );

    // The alert since web's release.
    let alerts = browser.text(&browser.find("#alerts").await).await;
    assert!(
        alerts.contains("TypeError: cart.total is not a function (1)"),
        "{alerts}"
    );

    // The chart: an image with a title, a bar per build, the failure hatched.
    let chart = browser.find("svg#build-chart[role='img']").await;
    assert_eq!(
        browser
            .attribute(&chart, "aria-labelledby")
            .await
            .as_deref(),
        Some("chart-title chart-desc")
    );
    assert_eq!(browser.find_all("svg#build-chart rect.pass").await.len(), 1);
    assert_eq!(browser.find_all("svg#build-chart rect.fail").await.len(), 1);

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&out, &png).unwrap();
    println!("screenshot: {}", out.display());

    browser.click(&log_link).await;
    let log = browser.text(&browser.find("body").await).await;
    assert!(log.contains("the schema does not compile"), "{log}");

    browser.quit().await;
    let _ = serving.kill().await;
}
