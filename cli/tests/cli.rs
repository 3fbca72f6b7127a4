//! The `shipline` command as a person runs it.

use std::process::Command;

fn shipline(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shipline"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("shipline runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_tells_the_whole_story_and_exits_0() {
    let (code, out, err) = shipline(&["demo"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for step in [
        "→ webhook push",
        "202 queued",
        "GitHub status pending",
        "build started on the local runner",
        "test checkout::pays_the_total ... ok",
        "GitHub status success",
        "GitHub deployment #1 success",
        "released: staging now runs",
        "next: production if Sentry raises no new issue on staging",
        "GitHub deployment #2 success",
        "released: production now runs",
        "promoted from staging (v1): no new Sentry issue on staging",
        "🟢 Live · demo/shop",
        "✔ the story is complete",
    ] {
        assert!(out.contains(step), "missing `{step}` in:\n{out}");
    }
    let positions: Vec<usize> = [
        "webhook push",
        "build started",
        "build succeeded",
        "deploying to staging",
        "released: staging",
        "deploying to production",
        "released: production",
    ]
    .iter()
    .map(|s| out.find(s).unwrap_or_else(|| panic!("missing {s}")))
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "the story is told in order:\n{out}"
    );
    assert_eq!(
        out.matches("┌─ chat message #1").count(),
        6,
        "one message, posted then edited along the way (built, staging, production):\n{out}"
    );
}

#[test]
fn the_rollback_demo_rolls_a_failing_release_back_by_itself() {
    let (code, out, err) = shipline(&["demo", "--rollback"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let positions: Vec<usize> = [
        "released: production now runs",
        "a second commit",
        "(v2): no new Sentry issue on staging",
        "production starts failing",
        "error alert: TypeError: cart.total is not a function",
        "GitHub deployment #4 failure: v2: rolled back to v1 automatically",
        "released: production now runs",
        "✔ the story is complete: the bad release was rolled back by itself",
    ]
    .iter()
    .scan(0, |from, step| {
        let at = *from
            + out[*from..]
                .find(step)
                .unwrap_or_else(|| panic!("missing `{step}` after {from} in:\n{out}"));
        *from = at + 1;
        Some(at)
    })
    .collect();
    assert_eq!(positions.len(), 8);
    assert_eq!(
        out.matches("rolled back to v1 automatically: 1 event, 1 new issue")
            .count(),
        5,
        "GitHub (the failed and the restored deployments), the story and the chat (the replaced \
         release's message and the restored one's) say why:\n{out}"
    );
}

#[test]
fn the_chatops_demo_rolls_back_from_a_button_only_for_who_may() {
    let (code, out, err) = shipline(&["demo", "--chatops"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let mut from = 0;
    for step in [
        "[ Roll back production ]",
        "Ana asks /status",
        "production · command:demo/shop@production · ",
        "Bob is told: Sorry bob, you may not roll back from the chat: your Telegram id 5353",
        "Ana is told: Rollback of command:demo/shop@production queued",
        "⏳ Queued · demo/shop",
        "GitHub deployment #4 failure: v2: rolled back to v1 by @ana (Telegram 4242)",
        "⏪ Rolled back · demo/shop",
        "✔ the story is complete: rolled back from the chat",
    ] {
        from += out[from..]
            .find(step)
            .unwrap_or_else(|| panic!("missing `{step}` after {from} in:\n{out}"));
    }
    assert_eq!(
        out.matches("asked for by @ana (Telegram 4242)").count(),
        1,
        "one press, one action:\n{out}"
    );
}

#[test]
fn the_failing_demo_shows_the_failure_and_deploys_nothing() {
    let (code, out, err) = shipline(&["demo", "--fail"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("GitHub status failure"), "{out}");
    assert!(out.contains("expected 42, got 41"), "{out}");
    assert!(out.contains("❌ Build failed"), "{out}");
    assert!(!out.contains("deploying to"), "{out}");
}

#[test]
fn config_check_names_the_line_of_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shipline.yaml");
    std::fs::write(
        &file,
        "channels:\n  team: { console: {} }\ndefaults:\n  notify: [team, ops]\n",
    )
    .unwrap();
    let (code, out, err) = shipline(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("defaults.notify at line 4"), "{err}");
    std::fs::write(
        &file,
        "repos:\n  a/b:\n    codebuild_project: p\n    deploy_branch: x\n",
    )
    .unwrap();
    let (code, _, err) = shipline(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(
        err.contains("deploy_branch") && err.contains("line 4"),
        "{err}"
    );
    std::fs::write(&file, "repos:\n  a/b:\n    codebuild_project: p\n").unwrap();
    let (code, out, _) = shipline(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 repo(s), 0 channel(s), 0 Sentry project(s)")
            && out.trim_end().ends_with("CodeBuildProjects=p"),
        "{out}"
    );
}

#[test]
fn config_check_speaks_json_to_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shipline.yaml");
    std::fs::write(&file, "repos:\n  a/b:\n    codebuild_project: p\n    fork_codebuild_project: p-forks\n  a/c:\n    codebuild_project: p\n").unwrap();
    let (code, out, err) = shipline(&["config", "check", "--json", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report,
        serde_json::json!({"ok": true, "repos": 2, "channels": 0, "sentry_projects": 0,
            "codebuild_projects": ["p", "p-forks"]})
    );

    std::fs::write(&file, "repos:\n  a/b:\n    codebuild_projec: p\n").unwrap();
    let (code, out, _) = shipline(&["config", "check", "--json", file.to_str().unwrap()]);
    assert_eq!(code, 3);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["error"].as_str().unwrap().contains("line 3"),
        "{out}"
    );
}

#[test]
fn config_check_refuses_more_projects_than_the_stack_can_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shipline.yaml");
    let repos: String = (0..17)
        .map(|i| format!("  a/r{i}:\n    codebuild_project: p{i}\n"))
        .collect();
    std::fs::write(&file, format!("repos:\n{repos}")).unwrap();
    let (code, _, err) = shipline(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(err.contains("17 CodeBuild projects"), "{err}");
}

#[test]
fn sign_prints_githubs_published_vector() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, "Hello, World!").unwrap();
    let (code, out, _) = Command::new(env!("CARGO_BIN_EXE_shipline"))
        .args([
            "sign",
            "--secret-env",
            "SHIPLINE_TEST_SECRET",
            file.to_str().unwrap(),
        ])
        .env("SHIPLINE_TEST_SECRET", "It's a Secret to Everybody")
        .output()
        .map(|o| {
            (
                o.status.code().unwrap(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                (),
            )
        })
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[test]
fn setup_telegram_without_a_token_says_where_to_put_it() {
    // A variable no one sets: the error must say which one to set, and with what.
    let (code, _, err) = shipline(&[
        "setup",
        "telegram",
        "--token-env",
        "SHIPLINE_TEST_NO_SUCH_TOKEN",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "SHIPLINE_TEST_NO_SUCH_TOKEN is not set: export the bot token from @BotFather there"
        ),
        "{err}"
    );
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/shipline.yaml");
    let (code, out, err) = shipline(&["config", "check", example]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("4 repo(s), 2 channel(s), 2 Sentry project(s)"),
        "{out}"
    );
}

/// The sample events in examples/events are what the functions accept, so they cannot rot.
mod sample_events {
    use std::sync::Arc;

    use shared::adapters::memory::{MemoryQueue, MemoryStateStore};
    use shared::config::Config;
    use shared::messages::{self, BuildRequest, DeployRequest, Notification};
    use shared::ports::SystemClock;
    use shared::secrets::SecretString;

    fn read(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../examples/events/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn sqs_body(name: &str) -> String {
        let event: serde_json::Value = serde_json::from_str(&read(name)).unwrap();
        event["Records"][0]["body"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn the_signed_http_events_are_accepted() {
        let config = Arc::new(
            Config::from_yaml("channels:\n  team: { console: {} }\ndefaults:\n  notify: [team]\nrepos:\n  Codertocat/Hello-World:\n    codebuild_project: hello\n").unwrap(),
        );
        let intake = webhook_intake::Deps {
            config: config.clone(),
            webhook_secret: SecretString::new("example-webhook-secret"),
            builds: Arc::new(MemoryQueue::fifo()),
            state: Arc::new(MemoryStateStore::new()),
            clock: Arc::new(SystemClock),
        };
        let request = lambda_http::request::from_str(&read("webhook-intake-push.json")).unwrap();
        assert_eq!(
            webhook_intake::handle(&intake, request)
                .await
                .unwrap()
                .status(),
            202
        );

        let alerts = alert_forwarder::Deps {
            config,
            client_secret: Some(SecretString::new("example-sentry-secret")),
            legacy_token: None,
            notify: Arc::new(MemoryQueue::standard()),
            deploys: None,
            state: Arc::new(MemoryStateStore::new()),
            clock: Arc::new(SystemClock),
        };
        let request = lambda_http::request::from_str(&read("alert-forwarder-issue.json")).unwrap();
        assert_eq!(
            alert_forwarder::handle(&alerts, request)
                .await
                .unwrap()
                .status(),
            202
        );
    }

    #[test]
    fn the_queue_events_carry_valid_contracts() {
        messages::decode::<BuildRequest>(&sqs_body("build-dispatch-build-request.json")).unwrap();
        messages::decode::<DeployRequest>(&sqs_body("deploy-promotion-deploy-request.json"))
            .unwrap();
        messages::decode::<Notification>(&sqs_body("notifier-notification.json")).unwrap();
    }
}

#[tokio::test]
async fn serve_builds_a_real_webhook_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("app");
    let sha = commit_a_buildable_repo(&repo);
    let config = dir.path().join("shipline.yaml");
    std::fs::write(&config, "channels:\n  team: { console: {} }\ndefaults:\n  notify: [team]\nrepos:\n  acme/app:\n    codebuild_project: app\n").unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"github_webhook_secret": "serve-secret"}"#).unwrap();
    let port = free_port();

    let mut serve = Serving::start(
        &config,
        &secrets,
        port,
        &format!("acme/app={}", repo.display()),
    )
    .await;
    let response = push_signed(port, &sha, b"serve-secret").await;
    assert_eq!(response.status(), 202);
    serve
        .read_until("✅ Build passed", std::time::Duration::from_secs(30))
        .await;
    // The status page, served to this machine, lists the build.
    let page = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>shipline status</title>"), "{html}");
    assert!(
        html.contains("<tr class=\"build ok\"><td>✓ passed</td><td>acme/app</td>"),
        "{html}"
    );
    assert!(
        html.contains(&format!("<code>{}</code>", &sha[..7])),
        "{html}"
    );
    assert!(
        html.contains("<svg id=\"build-chart\" role=\"img\""),
        "{html}"
    );
    let (stopped, seen) = serve.interrupt().await;
    assert!(stopped, "{seen}");
    assert!(seen.contains("stopped; nothing left in flight"), "{seen}");
}

/// A project for `shipline serve` in `dir` whose one commit's build runs `command`: its
/// config, its secrets, its `--repo` and its commit id.
fn a_served_project(
    dir: &std::path::Path,
    command: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String, String) {
    let repo = dir.join("app");
    let sha = commit_a_repo_building_with(&repo, command);
    let config = dir.join("shipline.yaml");
    std::fs::write(&config, "channels:\n  team: { console: {} }\ndefaults:\n  notify: [team]\nrepos:\n  acme/app:\n    codebuild_project: app\n").unwrap();
    let secrets = dir.join("secrets.json");
    std::fs::write(&secrets, r#"{"github_webhook_secret": "serve-secret"}"#).unwrap();
    (config, secrets, format!("acme/app={}", repo.display()), sha)
}

#[tokio::test]
async fn serve_killed_during_a_build_finishes_it_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (config, secrets, repo, sha) = a_served_project(dir.path(), "sleep 3 && echo built");
    let port = free_port();
    let limit = std::time::Duration::from_secs(30);

    let mut first = Serving::start(&config, &secrets, port, &repo).await;
    assert_eq!(push_signed(port, &sha, b"serve-secret").await.status(), 202);
    first.read_until("GitHub status pending", limit).await;
    // The build runs (it sleeps 3 s): SIGKILL the server and the build with it, once the
    // build request is settled (an unsettled one would be delivered again, which is fine too).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = first.kill().await;
    assert!(!before.contains("Build passed"), "{before}");

    let mut second = Serving::start(&config, &secrets, port, &repo).await;
    second.read_until("✅ Build passed", limit).await;
    assert!(second.seen.contains("running it again"), "{}", second.seen);
    let again = push_signed(port, &sha, b"serve-secret").await;
    assert_eq!(again.status(), 200);
    let reply: serde_json::Value = again.json().await.unwrap();
    assert!(
        reply["message"].as_str().unwrap().starts_with("duplicate"),
        "{reply}"
    );
    let (stopped, after) = second.interrupt().await;
    assert!(stopped, "{after}");
    let seen = format!("{before}{after}");
    assert_eq!(seen.matches("GitHub status success").count(), 1, "{seen}");
    assert_eq!(seen.matches("✅ Build passed").count(), 1, "{seen}");
}

#[tokio::test]
async fn serve_finishes_a_running_build_on_sigterm_and_answers_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let (config, secrets, repo, sha) = a_served_project(dir.path(), "sleep 2 && echo built");
    let port = free_port();
    let mut serve = Serving::start(&config, &secrets, port, &repo).await;
    // Without credentials: it tells nothing secret.
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health, serde_json::json!({"status": "ok", "queued": 0}));
    // One server per data directory.
    let data = dir.path().join("data");
    let (code, _, err) = shipline(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--secrets",
        secrets.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("another shipline serve uses"), "{err}");

    assert_eq!(push_signed(port, &sha, b"serve-secret").await.status(), 202);
    serve
        .read_until("GitHub status pending", std::time::Duration::from_secs(30))
        .await;
    let (stopped, seen) = serve.stop("-TERM").await;
    assert!(stopped, "{seen}");
    assert!(seen.contains("SIGTERM: stopping"), "{seen}");
    assert!(seen.contains("✅ Build passed"), "{seen}");
    assert!(seen.contains("stopped; nothing left in flight"), "{seen}");
}

/// A project served without `--repo`: its repository is on "GitHub" (`GITHUB_GIT_URL`, a
/// `file://` directory holding `acme/app.git`), and its build checks it was fetched from there.
async fn serving_from_github(dir: &std::path::Path) -> (Serving, u16, String) {
    let (config, secrets, _, sha) = a_served_project(
        dir,
        "test \"$(git rev-parse HEAD)\" = \"$SHIPLINE_SHA\" && echo fetched",
    );
    let github = dir.join("github");
    std::fs::create_dir_all(github.join("acme")).unwrap();
    let bare = Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(dir.join("app"))
        .arg(github.join("acme/app.git"))
        .status()
        .unwrap();
    assert!(bare.success());
    let base = format!("file://{}", github.display());
    let port = free_port();
    let env = [("GITHUB_GIT_URL", base.as_str())];
    let serve = Serving::start_with(&config, &secrets, port, &[], &env).await;
    (serve, port, sha)
}

#[tokio::test]
async fn serve_without_a_checkout_builds_the_commit_fetched_from_github() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, port, sha) = serving_from_github(dir.path()).await;
    assert_eq!(push_signed(port, &sha, b"serve-secret").await.status(), 202);
    serve
        .read_until("✅ Build passed", std::time::Duration::from_secs(30))
        .await;
    let (stopped, seen) = serve.interrupt().await;
    assert!(stopped, "{seen}");
    assert_eq!(seen.matches("GitHub status success").count(), 1, "{seen}");
    assert_eq!(seen.matches("✅ Build passed").count(), 1, "{seen}");
    // The commit is cached under the data directory, for the next build of the repo.
    assert!(dir.path().join("data/git/acme/app.git/HEAD").exists());
}

#[tokio::test]
async fn serve_fails_the_build_of_a_commit_github_does_not_have_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, port, _) = serving_from_github(dir.path()).await;
    let missing = "1111111111111111111111111111111111111111";
    assert_eq!(
        push_signed(port, missing, b"serve-secret").await.status(),
        202
    );
    serve
        .read_until("❌ Build failed", std::time::Duration::from_secs(30))
        .await;
    let (stopped, seen) = serve.interrupt().await;
    assert!(stopped, "{seen}");
    assert_eq!(seen.matches("GitHub status failure").count(), 1, "{seen}");
    assert!(
        seen.contains(&format!("cannot fetch acme/app@{missing}")),
        "{seen}"
    );
}

/// A git repository at `repo` whose one commit has a buildspec that builds; its commit id.
fn commit_a_buildable_repo(repo: &std::path::Path) -> String {
    commit_a_repo_building_with(repo, "echo built")
}

/// A git repository at `repo` whose one commit's buildspec runs `command`; its commit id.
fn commit_a_repo_building_with(repo: &std::path::Path, command: &str) -> String {
    std::fs::create_dir(repo).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args([
                "-c",
                "user.name=T",
                "-c",
                "user.email=t@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(repo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "--quiet", "--initial-branch=master"]);
    std::fs::write(
        repo.join("buildspec.yml"),
        format!("version: 0.2\nphases:\n  build:\n    commands:\n      - {command}\n"),
    )
    .unwrap();
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "First"]);
    String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repo)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GitHub delivers a push of `sha` to acme/app, signed with `secret`.
async fn push_signed(port: u16, sha: &str, secret: &[u8]) -> reqwest::Response {
    let body = serde_json::json!({
        "ref": "refs/heads/master", "before": "0000000000000000000000000000000000000000", "after": sha,
        "compare": "https://github.com/acme/app/compare/x", "head_commit": {"id": sha, "message": "First"},
        "pusher": {"name": "t"}, "repository": {"full_name": "acme/app"}
    })
    .to_string();
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "serve-1")
        .header(
            "x-hub-signature-256",
            webhook_intake::webhook::sign(secret, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `shipline serve` running as a child process, and what it has printed so far.
struct Serving {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: String,
}

impl Serving {
    /// Starts `shipline serve` on `port` and waits until it says it is listening.
    /// Its data directory is the config's, and it runs in a process group of its own, which
    /// its builds share (so [`Self::kill`] leaves nothing running).
    async fn start(
        config: &std::path::Path,
        secrets: &std::path::Path,
        port: u16,
        repo: &str,
    ) -> Self {
        Self::start_with(config, secrets, port, &["--repo", repo], &[]).await
    }

    /// [`Self::start`] with these arguments after `--listen` (`--repo`s), and these variables.
    async fn start_with(
        config: &std::path::Path,
        secrets: &std::path::Path,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};

        let data = config.parent().unwrap().join("data");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipline"))
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--secrets",
                secrets.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = String::new();
        while !seen.contains("listening on") {
            seen.push_str(&lines.next_line().await.unwrap().unwrap());
        }
        Self { child, lines, seen }
    }

    /// Reads what it prints until `text` appears, failing after `limit`.
    async fn read_until(&mut self, text: &str, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.seen.contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "no build result:\n{}",
                self.seen
            );
            self.seen
                .push_str(&self.lines.next_line().await.unwrap().unwrap());
            self.seen.push('\n');
        }
    }

    /// SIGINT, as Ctrl-C sends it; whether it then exited with success, and all it printed.
    async fn interrupt(self) -> (bool, String) {
        self.stop("-INT").await
    }

    /// `signal` (`-INT`, `-TERM`) to the server alone; whether it then exited with success, and
    /// all it printed.
    async fn stop(mut self, signal: &str) -> (bool, String) {
        Command::new("kill")
            .args([signal, &self.child.id().unwrap().to_string()])
            .status()
            .unwrap();
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        let success = self.child.wait().await.unwrap().success();
        (success, self.seen)
    }

    /// SIGKILL to the server and its builds (its process group), as the OOM killer or a power
    /// cut would stop it; all it printed.
    async fn kill(mut self) -> String {
        let group = format!("-{}", self.child.id().unwrap());
        Command::new("kill")
            .args(["-KILL", "--", &group])
            .status()
            .unwrap();
        self.child.wait().await.unwrap();
        self.seen
    }
}
