//! `shipline setup --stack` and `shipline doctor --stack` as a person runs them, against a
//! stack on moto (CloudFormation outputs and parameters, IAM roles, Secrets Manager, SSM,
//! SQS) and local fakes of CodeBuild, GitHub, Heroku and Telegram. The webhook's ping is
//! answered by `shipline serve`, which runs webhook-intake's own code.

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use aws_sdk_cloudformation::types::Parameter;
use e2e::{aws, unique};
use serde_json::Value;
use support::{CodeBuild, GitHub, Telegram};

const TOKEN: &str = "ghp_setup_test";
const HEROKU_KEY: &str = "heroku-key";
const BOT_TOKEN: &str = "7000000001:AAtest";
const CHAT: i64 = -1_001_234_567_890;

fn config_text(heroku_app: &str) -> String {
    format!(
        "channels:\n  team: {{ telegram: {{ chat_id: {CHAT}, topic_id: 7 }} }}\n\
         repos:\n  pax-app/User:\n    codebuild_project: pax-user\n    deploy:\n      \
         - branch: master\n        heroku: {{ app: {heroku_app} }}\n  pax-app/Web:\n    \
         codebuild_project: pax-web\n    build_forks: true\n    fork_codebuild_project: pax-web-forks\n"
    )
}

/// An installed stack with nothing set up yet.
struct World {
    aws: aws_config::SdkConfig,
    stack: String,
    secret_arn: String,
    param: String,
    codebuild: CodeBuild,
    github: GitHub,
    telegram: Telegram,
    _heroku: wiremock::MockServer,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Where `shipline serve` listens: the stack's `GitHubWebhookUrl`.
    receiver: std::net::SocketAddr,
}

impl World {
    async fn new() -> Self {
        let aws = aws::sdk_config().await;
        let codebuild = CodeBuild::start().await;
        let github = GitHub::start(TOKEN).await;
        let telegram = Telegram::start(BOT_TOKEN, CHAT).await;
        let heroku = support::heroku(HEROKU_KEY, &["pax-user", "pax-user-eu"]).await;
        let secret = serde_json::json!({
            "github_token": TOKEN, "heroku_api_key": HEROKU_KEY, "telegram_bot_token": BOT_TOKEN,
        });
        let secret_arn = aws::create_secret(&aws, &unique("shipline"), &secret.to_string()).await;
        let param = format!("/{}/config", unique("shipline"));
        let receiver = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stack = unique("shipline");
        let parameter = |key: &str, value: &str| {
            Parameter::builder()
                .parameter_key(key)
                .parameter_value(value)
                .build()
        };
        aws_sdk_cloudformation::Client::new(&aws)
            .create_stack()
            .stack_name(&stack)
            .template_body(include_str!("testdata/stack.yaml"))
            .parameters(parameter("ConfigParameterName", &param))
            .parameters(parameter("SecretArn", &secret_arn))
            .parameters(parameter(
                "CodeBuildProjects",
                "pax-user,pax-web,pax-web-forks",
            ))
            .parameters(parameter("GitHubApiUrl", &github.server.uri()))
            .parameters(parameter("HerokuApiUrl", &heroku.uri()))
            .parameters(parameter("TelegramApiUrl", &telegram.server.uri()))
            .parameters(parameter(
                "GitHubWebhookUrl",
                &format!("http://{receiver}/github"),
            ))
            .send()
            .await
            .expect("create the stack on moto");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("shipline.yaml");
        std::fs::write(&config, config_text("pax-user")).unwrap();
        Self {
            aws,
            stack,
            secret_arn,
            param,
            codebuild,
            github,
            telegram,
            _heroku: heroku,
            dir,
            config,
            receiver,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipline"));
        command
            .args(args)
            .envs(aws::process_env())
            .env("AWS_ENDPOINT_URL_CODEBUILD", self.codebuild.server.uri())
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        command
    }

    /// Runs `shipline ARGS`: exit code, standard output, standard error.
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().await.expect("shipline runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn setup(&self, extra: &[&str]) -> (i32, String, String) {
        let config = self.config.to_str().unwrap();
        let mut args = vec!["setup", "--stack", &self.stack, "--config", config];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    async fn secret(&self) -> Value {
        let answer = aws_sdk_secretsmanager::Client::new(&self.aws)
            .get_secret_value()
            .secret_id(&self.secret_arn)
            .send()
            .await
            .unwrap();
        serde_json::from_str(answer.secret_string().unwrap()).unwrap()
    }

    async fn put_secret(&self, secret: &Value) {
        aws_sdk_secretsmanager::Client::new(&self.aws)
            .put_secret_value()
            .secret_id(&self.secret_arn)
            .secret_string(secret.to_string())
            .send()
            .await
            .unwrap();
    }

    async fn stored_config(&self) -> Option<String> {
        aws_sdk_ssm::Client::new(&self.aws)
            .get_parameter()
            .name(&self.param)
            .send()
            .await
            .ok()
            .and_then(|a| a.parameter?.value)
    }

    /// `shipline serve` on the stack's webhook URL, with the stack's secret.
    async fn serve(&self) -> tokio::process::Child {
        let secrets = self.dir.path().join("secrets.json");
        std::fs::write(&secrets, self.secret().await.to_string()).unwrap();
        let listen = self.receiver.to_string();
        let child = self
            .command(&[
                "serve",
                "--config",
                self.config.to_str().unwrap(),
                "--secrets",
                secrets.to_str().unwrap(),
                "--listen",
                &listen,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.receiver).await.is_ok() {
                return child;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("shipline serve did not listen on {listen}");
    }
}

fn steps(json: &str) -> Vec<(String, String)> {
    let report: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["resource"].as_str().unwrap().to_string(),
                s["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_plans_everything_and_changes_nothing() {
    let world = World::new().await;
    let (code, out, err) = world.setup(&["--dry-run"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "(dry run: nothing changes)",
        "create     secret key github_webhook_secret, telegram_webhook_secret: generated",
        &format!("create     ssm parameter {}", world.param),
        "unchanged  stack parameter CodeBuildProjects",
        "create     codebuild GitHub credential: the secret's github_token",
        "create     codebuild project pax-user: GitHub source pax-app/User",
        "create     codebuild project pax-web-forks (forks)",
        "create     github webhook pax-app/User: http://",
        "create     telegram webhook of @shipline_bot: url https://chatops.example.com/telegram?bot=shipline_bot; secret token (new)",
        "9 to create, 0 to update, 1 unchanged, 0 need you",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(world.secret().await.get("github_webhook_secret").is_none());
    assert_eq!(world.stored_config().await, None);
    assert!(world.codebuild.state.lock().unwrap().projects.is_empty());
    assert!(world.github.hooks("pax-app/User").is_empty());
    assert!(world.telegram.webhook.lock().unwrap().url.is_empty());
}

/// What the first setup made: the projects (the repo's source, the stack's roles, Docker, the
/// buildspec's variables) and each repo's hook (the stack's URL, JSON, the two events, the
/// secret the stack checks).
fn assert_created(world: &World, webhook_secret: &str) {
    let user = world.codebuild.project("pax-user").unwrap();
    assert_eq!(user["source"]["type"], "GITHUB");
    assert_eq!(
        user["source"]["location"],
        "https://github.com/pax-app/User.git"
    );
    assert_eq!(user["source"]["reportBuildStatus"], false);
    assert_eq!(user["environment"]["privilegedMode"], true);
    assert_eq!(user["environment"]["type"], "LINUX_CONTAINER");
    assert!(
        user["serviceRole"]
            .as_str()
            .unwrap()
            .contains("CodeBuildServiceRole")
    );
    let variables = world.codebuild.variables("pax-user");
    assert_eq!(
        variables["HEROKU_APP"],
        ("pax-user".into(), "PLAINTEXT".into())
    );
    assert_eq!(
        variables["HEROKU_API_KEY"],
        (
            format!("{}:heroku_api_key", world.secret_arn),
            "SECRETS_MANAGER".into()
        )
    );
    let forks = world.codebuild.project("pax-web-forks").unwrap();
    assert!(
        forks["serviceRole"]
            .as_str()
            .unwrap()
            .contains("CodeBuildForkServiceRole")
    );
    assert!(world.codebuild.variables("pax-web-forks").is_empty());
    assert_eq!(world.codebuild.state.lock().unwrap().credentials.len(), 1);

    for repo in ["pax-app/User", "pax-app/Web"] {
        let hooks = world.github.hooks(repo);
        assert_eq!(hooks.len(), 1, "{repo}");
        assert_eq!(hooks[0].url, format!("http://{}/github", world.receiver));
        assert_eq!(hooks[0].content_type, "json");
        assert_eq!(hooks[0].events, ["push", "pull_request"]);
        assert_eq!(hooks[0].secret, webhook_secret);
    }
}

/// Telegram delivers the chat's updates to chat-ops, with the secret token it checks.
fn assert_telegram_webhook(world: &World, secret: &Value) {
    let telegram_secret = secret["telegram_webhook_secret"].as_str().unwrap();
    assert_eq!(telegram_secret.len(), 64);
    let hook = world.telegram.webhook.lock().unwrap();
    assert_eq!(
        hook.url,
        "https://chatops.example.com/telegram?bot=shipline_bot"
    );
    assert_eq!(hook.secret_token, telegram_secret);
    assert_eq!(
        hook.allowed_updates.as_deref(),
        Some(&["message".to_string(), "callback_query".to_string()][..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_creates_everything_then_changes_only_what_the_config_changed() {
    let world = World::new().await;
    let (code, out, err) = world.setup(&[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("created    codebuild project pax-user"),
        "{out}"
    );
    assert!(
        out.contains("9 created, 0 updated, 1 unchanged, 0 need you"),
        "{out}"
    );

    // The secret gained a generated webhook secret and kept its keys.
    let secret = world.secret().await;
    let webhook_secret = secret["github_webhook_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(webhook_secret.len(), 64);
    assert_eq!(secret["heroku_api_key"], HEROKU_KEY);
    assert_eq!(world.stored_config().await, Some(config_text("pax-user")));

    assert_created(&world, &webhook_secret);
    assert_telegram_webhook(&world, &secret);

    // A second run finds everything as it should be, and says so.
    let (code, out, err) = world.setup(&["--json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let plan = steps(&out);
    assert_eq!(plan.len(), 9, "{out}");
    assert!(
        plan.iter().all(|(_, change)| change == "unchanged"),
        "{out}"
    );
    let calls = world.codebuild.state.lock().unwrap().calls.len();

    // A changed config changes the parameter and the one project whose variable it sets; a
    // hook edited by hand is put back, keeping its secret.
    std::fs::write(&world.config, config_text("pax-user-eu")).unwrap();
    world.github.edit_hook("pax-app/Web", |hook| {
        hook.content_type = "form".into();
        hook.events = vec!["push".into()];
    });
    let (code, out, err) = world.setup(&["--json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let changed: Vec<(String, String)> = steps(&out)
        .into_iter()
        .filter(|(_, change)| change != "unchanged")
        .collect();
    assert_eq!(
        changed,
        [
            (
                format!("ssm parameter {}", world.param),
                "update".to_string()
            ),
            (
                "codebuild project pax-user".to_string(),
                "update".to_string()
            ),
            (
                "github webhook pax-app/Web".to_string(),
                "update".to_string()
            ),
        ],
        "{out}"
    );
    let web = &world.github.hooks("pax-app/Web")[0];
    assert_eq!(
        (
            web.content_type.as_str(),
            web.events.len(),
            web.secret.as_str()
        ),
        ("json", 2, webhook_secret.as_str())
    );
    assert_eq!(
        world.codebuild.variables("pax-user")["HEROKU_APP"].0,
        "pax-user-eu"
    );
    let state = world.codebuild.state.lock().unwrap();
    assert_eq!(
        state.calls[calls..]
            .iter()
            .filter(|c| *c == "UpdateProject")
            .count(),
        1
    );
}

/// A hook now points elsewhere, a key leaves the secret, the bot leaves the group, a project
/// builds another repo, Telegram's deliveries fail.
async fn break_five_things(world: &World) {
    world.telegram.webhook.lock().unwrap().last_error = Some((
        time::OffsetDateTime::now_utc().unix_timestamp() - 120,
        "Wrong response from the webhook: 401 Unauthorized".into(),
    ));
    world.github.edit_hook("pax-app/Web", |hook| {
        hook.url = "https://old-ci.example.com/github".into();
    });
    let mut secret = world.secret().await;
    secret.as_object_mut().unwrap().remove("heroku_api_key");
    world.put_secret(&secret).await;
    world
        .telegram
        .members
        .lock()
        .unwrap()
        .insert(CHAT, "left".into());
    world
        .codebuild
        .state
        .lock()
        .unwrap()
        .projects
        .get_mut("pax-user")
        .unwrap()["source"]["location"] = "https://github.com/pax-app/Chat.git".into();
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_on_the_set_up_world_and_names_the_fix_for_each_broken_piece() {
    let world = World::new().await;
    let (code, out, err) = world.setup(&[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let _receiver = world.serve().await;
    let config = world.config.to_str().unwrap();
    let doctor = [
        "doctor",
        "--stack",
        &world.stack,
        "--config",
        config,
        "--ping-wait",
        "10",
    ];

    let (code, out, err) = world.run(&doctor).await;
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "✔ secret: the 5 keys the config needs are set",
        "answered the ping with 200",
        "✔ heroku app pax-user: the key can read it",
        "✔ telegram channel team: @shipline_bot can post in chat",
        "✔ telegram webhook of @shipline_bot: updates go to the stack (0 waiting)",
        "✔ BuildDeadLetterQueue: empty",
        "✔ status page: not set up (GET / answers 404)",
        "checks passed",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(!out.contains('✖'), "{out}");

    break_five_things(&world).await;
    let (code, out, err) = world.run(&doctor).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let setup_fix = format!("fix: shipline setup --stack {}", world.stack);
    for (broken, fix) in [
        (
            "✖ webhook pax-app/Web: no webhook points at the stack (they point at https://old-ci.example.com/github)",
            setup_fix.as_str(),
        ),
        (
            "✖ secret key heroku_api_key: missing (needed by repos.pax-app/User.deploy[0].heroku)",
            "fix: add \"heroku_api_key\" to the secret's JSON",
        ),
        (
            "✖ telegram channel team: @shipline_bot is not in chat -1001234567890 (left)",
            "fix: add @shipline_bot to the group again",
        ),
        (
            "✖ telegram webhook of @shipline_bot: Telegram's last delivery failed 2 min ago: Wrong response from the webhook: 401 Unauthorized (3 update(s) waiting)",
            "fix: a 401 means the secret token differs",
        ),
        (
            "✖ codebuild project pax-user: source https://github.com/pax-app/Chat.git → https://github.com/pax-app/User.git",
            setup_fix.as_str(),
        ),
    ] {
        let at = out
            .find(broken)
            .unwrap_or_else(|| panic!("missing `{broken}` in:\n{out}"));
        let next = out[at..].lines().nth(1).unwrap_or("");
        assert!(
            next.trim().starts_with(fix),
            "`{broken}` is followed by `{next}`, not `{fix}`"
        );
    }
    assert!(err.contains("5 of 15 checks failed"), "{err}");
    assert!(out.contains("✔ webhook pax-app/User"), "{out}");
}

/// The test stack's parameters and outputs are the real template's.
#[test]
fn the_test_stack_has_the_real_templates_names() {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap();
    let test = include_str!("testdata/stack.yaml");
    let section = |text: &str, name: &str| -> Vec<String> {
        let start = text.find(&format!("\n{name}:\n")).unwrap() + name.len() + 3;
        text[start..]
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
            .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.contains(':'))
            .map(|l| l.trim().split(':').next().unwrap().to_string())
            .collect()
    };
    // A parser that found nothing would make the loops below pass vacuously.
    assert!(section(test, "Parameters").len() >= 7 && section(test, "Outputs").len() >= 7);
    assert!(section(&template, "Outputs").contains(&"GitHubWebhookUrl".to_string()));
    for name in section(test, "Parameters") {
        if name != "GitHubWebhookUrl" {
            assert!(
                section(&template, "Parameters").contains(&name),
                "template.yaml has no parameter {name}"
            );
        }
    }
    for name in section(test, "Outputs") {
        assert!(
            section(&template, "Outputs").contains(&name),
            "template.yaml has no output {name}"
        );
    }
}

impl World {
    async fn output(&self, key: &str) -> String {
        let answer = aws_sdk_cloudformation::Client::new(&self.aws)
            .describe_stacks()
            .stack_name(&self.stack)
            .send()
            .await
            .unwrap();
        answer.stacks()[0]
            .outputs()
            .iter()
            .find(|o| o.output_key() == Some(key))
            .and_then(|o| o.output_value())
            .unwrap_or_else(|| panic!("no output {key}"))
            .to_string()
    }

    /// heroku:pax-user runs `sha` (v12), and its promotion to heroku:pax-user-eu waits.
    async fn seed_live_and_pending(&self, sha: &str) {
        use shared::ports::{Precondition, StateStore};
        let world = self;
        let table = world.output("StateTableName").await;
        let state = shared::adapters::dynamodb::DynamoStateStore::new(
            aws_sdk_dynamodb::Client::new(&world.aws),
            &table,
        );
        let live = serde_json::json!({
            "repo": "pax-app/User", "branch": "master", "sha": sha, "release_id": "rel-12",
            "version": "v12", "at": "2026-11-30T09:00:00Z", "build_id": "pax-user:7",
        });
        let request = serde_json::json!({
            "v": 1, "repo": "pax-app/User", "branch": "master", "sha": sha, "build_id": "pax-user:7",
            "target": "heroku:pax-user-eu", "environment": "production-eu", "delivery_id": "d",
            "requested_at": "2026-11-30T09:00:00Z",
            "promotion": {"environment": "production", "target": "heroku:pax-user", "release": "v12", "passed": ""},
        });
        let pending = serde_json::json!({"heroku:pax-user-eu": {
            "request": request, "live_since": 1_796_000_000, "due": 1_796_001_800,
        }});
        // Two finished builds of the repo, as build-dispatch records them.
        let built = |sha: &str, id: &str, passed: bool, finished: i64| {
            serde_json::json!({
                "sha": sha, "branch": "master", "build_id": id, "passed": passed,
                "status": if passed { "SUCCEEDED" } else { "FAILED" },
                "description": if passed { "Build succeeded in 2m" } else { "Failed in BUILD: exit status 1" },
                "log_url": format!("https://console.aws.amazon.com/codesuite/codebuild/{id}"),
                "started_at": finished - 130, "finished_at": finished, "delivery_id": "d",
            })
        };
        let builds = serde_json::json!({"builds": [
            built(sha, "pax-user:7", true, 1_796_000_000),
            built("7224839f38bf93d8c2b288d9e14f0a07f1bef357", "pax-user:8", false, 1_796_000_600),
        ]});
        for (key, value) in [
            ("live:heroku:pax-user", live),
            ("promotions:pending", pending),
            ("builds:pax-app/user", builds),
        ] {
            state
                .put(key, value, Precondition::None, None, 0)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_what_is_live_and_what_waits_and_promote_queues_a_persons_go() {
    let world = World::new().await;
    let (code, out, err) = world.setup(&[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    world.seed_live_and_pending(sha).await;

    let (code, out, err) = world
        .run(&["status", "--stack", &world.stack, "--json"])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["live"][0]["target"], "heroku:pax-user");
    assert_eq!(status["live"][0]["release"], "v12");
    assert_eq!(status["pending"][0]["target"], "heroku:pax-user-eu");
    assert_eq!(status["pending"][0]["from"], "production");
    // The newest build first.
    assert_eq!(
        status["builds"][0]["sha"],
        "7224839f38bf93d8c2b288d9e14f0a07f1bef357"
    );
    assert_eq!(status["builds"][0]["passed"], false);
    assert_eq!(status["builds"][1]["duration_secs"], 130);
    let (code, out, _) = world.run(&["status", "--stack", &world.stack]).await;
    assert_eq!(code, 0);
    for line in [
        "heroku:pax-user-eu ← production 6113728 (v12)",
        "✖ pax-app/User",
        "Failed in BUILD: exit status 1",
        "log: https://console.aws.amazon.com/codesuite/codebuild/pax-user:8",
        "✔ pax-app/User",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }

    let queue = world.output("DeployQueueUrl").await;
    let args = [
        "promote",
        "heroku:pax-user-eu",
        "--sha",
        sha,
        "--queue",
        &queue,
    ];
    let (code, out, err) = world.run(&args).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let received = aws_sdk_sqs::Client::new(&world.aws)
        .receive_message()
        .queue_url(&queue)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
        )
        .send()
        .await
        .unwrap();
    let message = &received.messages()[0];
    let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
    assert_eq!(
        (
            body["kind"].as_str(),
            body["target"].as_str(),
            body["sha"].as_str()
        ),
        (Some("promote"), Some("heroku:pax-user-eu"), Some(sha))
    );
    assert_eq!(
        message.attributes().unwrap()
            [&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId],
        "heroku:pax-user-eu"
    );
}
