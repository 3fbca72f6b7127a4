//! The local stack's parts never reach production: every function's release binary refuses, at
//! cold start, a config that names the `console` channel or the `command` deploy target (with
//! the key and the line), and no binary carries their code.

use std::process::Stdio;
use std::time::Duration;

use e2e::runtime_api::RuntimeApi;

const FUNCTIONS: [&str; 8] = [
    "webhook-intake",
    "build-dispatch",
    "deploy-promotion",
    "notifier",
    "alert-forwarder",
    "delivery-recovery",
    "chat-ops",
    "status-page",
];

const CONSOLE: &str = "channels:\n  team: { console: {} }\ndefaults:\n  notify: [team]\n";
const COMMAND: &str = "repos:\n  shop/app:\n    codebuild_project: shop\n    deploy:\n      - branch: master\n        command: { run: 'echo deployed' }\n";
const SECRETS: &str = r#"{"github_webhook_secret": "s", "github_token": "t", "sentry_client_secret": "c", "telegram_webhook_secret": "w"}"#;

/// Starts `function` under a local Runtime API with `config`, and returns its exit status and
/// what it logged, once it exits (it must: init fails before the first poll).
async fn cold_start(function: &str, config: &str) -> (bool, String, bool) {
    cold_start_with(function, config, &[]).await
}

/// `cold_start`, with `extra` in the environment.
async fn cold_start_with(
    function: &str,
    config: &str,
    extra: &[(&str, &str)],
) -> (bool, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("shipline.yaml");
    let secrets_path = dir.path().join("secrets.json");
    std::fs::write(&config_path, config).unwrap();
    std::fs::write(&secrets_path, SECRETS).unwrap();
    let api = RuntimeApi::start().await.unwrap();
    let child = tokio::process::Command::new(e2e::release_binary(function))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SHIPLINE_CONFIG_FILE", &config_path)
        .env("SHIPLINE_SECRETS_FILE", &secrets_path)
        .env("STATE_TABLE", "state")
        .env("BUILD_QUEUE_URL", "http://127.0.0.1:9/queue/builds.fifo")
        .env("DEPLOY_QUEUE_URL", "http://127.0.0.1:9/queue/deploys.fifo")
        .env("NOTIFY_QUEUE_URL", "http://127.0.0.1:9/queue/notifications")
        .env("WEBHOOK_URL", "https://example.invalid/github")
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{function} kept running with a config it must refuse"))
        .unwrap();
    let logged = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), logged, api.first_poll().is_some())
}

#[tokio::test]
#[ignore = "needs the release binaries: run scripts/test"]
async fn every_function_refuses_the_console_channel_at_cold_start_with_key_and_line() {
    for function in FUNCTIONS {
        let (ok, logged, polled) = cold_start(function, CONSOLE).await;
        assert!(!ok, "{function} accepted a console channel: {logged}");
        assert!(
            !polled,
            "{function} asked for an event with a config it must refuse"
        );
        assert!(
            logged.contains("channels.team.console at line 2"),
            "{function} did not name the key and line: {logged}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the release binaries: run scripts/test"]
async fn every_function_refuses_the_command_target_at_cold_start_with_key_and_line() {
    for function in FUNCTIONS {
        let (ok, logged, _) = cold_start(function, COMMAND).await;
        assert!(!ok, "{function} accepted a command target: {logged}");
        assert!(
            logged.contains("repos.shop/app.deploy[0].command at line 6"),
            "{function} did not name the key and line: {logged}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the release binaries: run scripts/test"]
async fn a_trust_bundle_that_cannot_be_read_stops_every_cold_start() {
    // `SSL_CERT_FILE` replaces the compiled-in roots: a wrong path must not leave a function
    // that trusts nothing (every TLS call failing later), but stop it at once, saying why.
    for function in FUNCTIONS {
        let (ok, logged, polled) = cold_start_with(
            function,
            CONSOLE,
            &[("SSL_CERT_FILE", "/nonexistent/company-ca.pem")],
        )
        .await;
        assert!(!ok && !polled, "{function} started without roots: {logged}");
        assert!(
            logged.contains("SSL_CERT_FILE /nonexistent/company-ca.pem: I/O error"),
            "{function} did not say which file: {logged}"
        );
    }
}

#[test]
#[ignore = "needs the release binaries: run scripts/test"]
fn no_release_binary_carries_the_console_channel_or_the_command_target() {
    // Text only the console channel and the command deployer print: a binary that linked them
    // would hold it.
    let marks: [&[u8]; 3] = [
        "chat message #".as_bytes(),
        b"deploy command exited with",
        b"cannot run the deploy command",
    ];
    for function in FUNCTIONS {
        let bytes = std::fs::read(e2e::release_binary(function)).unwrap();
        for mark in marks {
            assert!(
                !bytes.windows(mark.len()).any(|w| w == mark),
                "{function} carries {:?}",
                String::from_utf8_lossy(mark)
            );
        }
    }
    // The marks are real: the `shipline` command, which runs the local stack, carries them (its
    // debug build, which `cargo test --workspace` makes for the CLI's own tests).
    let release = e2e::release_binary("webhook-intake");
    let cli = release
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("debug/shipline");
    let cli = std::fs::read(&cli)
        .unwrap_or_else(|e| panic!("{}: {e} (cargo test --workspace builds it)", cli.display()));
    for mark in marks {
        assert!(
            cli.windows(mark.len()).any(|w| w == mark),
            "the shipline binary lacks {:?}: the check looks for the wrong text",
            String::from_utf8_lossy(mark)
        );
    }
}
