//! `shipline demo`: the whole pipeline on this machine, with no account and no setup. A
//! throwaway git repository with a buildspec, a config, the five functions in one process, a
//! signed push webhook over HTTP, and the story as it happens.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use shared::config::Config;
use shared::messages::NotificationKind;
use shared::secrets::Secrets;

use crate::local::Stack;
use crate::ui::Ui;

const REPO: &str = "demo/shop";
const SECRET: &str = "demo webhook secret";

const BUILDSPEC: &str = r#"version: 0.2
env:
  exported-variables: [SHIPLINE_IMAGE_WEB]
phases:
  install:
    commands:
      - echo "installing dependencies (none, this is a demo)"
  build:
    commands:
      - sh ./test.sh
      - export SHIPLINE_IMAGE_WEB="sha256:$(git rev-parse HEAD | cut -c1-12)"
  post_build:
    commands:
      - echo "image $SHIPLINE_IMAGE_WEB ready"
"#;

fn test_script(fail: bool) -> String {
    let last = if fail {
        "echo 'test checkout::pays_the_total ... FAILED' >&2\necho 'expected 42, got 41' >&2\nexit 1"
    } else {
        "echo 'test checkout::pays_the_total ... ok'"
    };
    format!(
        "echo 'running 3 tests'\necho 'test cart::adds_items ... ok'\necho 'test cart::removes_items ... ok'\n{last}\n"
    )
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Ana Demo",
            "-c",
            "user.email=ana@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .context("git is needed for the demo (it builds a throwaway repository)")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A signed push delivery, shaped as GitHub sends it.
fn push_payload(sha: &str, message: &str) -> serde_json::Value {
    json!({
        "ref": "refs/heads/master",
        "before": "0000000000000000000000000000000000000000",
        "after": sha,
        "created": true, "deleted": false, "forced": false,
        "compare": format!("https://github.com/{REPO}/commit/{sha}"),
        "head_commit": {"id": sha, "message": message, "url": format!("https://github.com/{REPO}/commit/{sha}"),
                        "author": {"name": "Ana Demo", "username": "ana"}},
        "pusher": {"name": "ana"},
        "repository": {"full_name": REPO, "html_url": format!("https://github.com/{REPO}")},
    })
}

pub async fn run(fail: bool, ui: Arc<Ui>) -> anyhow::Result<()> {
    ui.title("shipline demo: push → build → status → deploy → chat, all on this machine");
    let dir = tempfile::Builder::new()
        .prefix("shipline-demo-")
        .tempdir()?;
    let repo = dir.path().join("shop");
    let production = dir.path().join("production.log");
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "--quiet", "--initial-branch=master"])?;
    std::fs::write(repo.join("buildspec.yml"), BUILDSPEC)?;
    std::fs::write(repo.join("test.sh"), test_script(fail))?;
    std::fs::write(repo.join("README.md"), "# shop\n")?;
    git(&repo, &["add", "."])?;
    let message = if fail {
        "Round totals before paying"
    } else {
        "Add the checkout page"
    };
    git(&repo, &["commit", "--quiet", "-m", message])?;
    let sha = git(&repo, &["rev-parse", "HEAD"])?;
    ui.step(&format!(
        "throwaway repository {REPO} at {} (commit {})",
        repo.display(),
        &sha[..7]
    ));

    let config_text = format!(
        "channels:\n  team: {{ console: {{}} }}\ndefaults:\n  notify: [team]\nrepos:\n  {REPO}:\n    codebuild_project: shop\n    deploy:\n      - branch: master\n        environment: production\n        command: {{ run: 'echo \"$SHIPLINE_SHA $SHIPLINE_IMAGE_WEB\" >> {} && echo v1' }}\n",
        production.display()
    );
    let config = Config::from_yaml(&config_text).context("the demo config")?;
    let secrets = Secrets::default().with("github_webhook_secret", SECRET);
    let report_ui = ui.clone();
    let stack = Arc::new(Stack::new(
        config,
        secrets,
        BTreeMap::from([(REPO.to_string(), repo.clone())]),
        dir.path().to_path_buf(),
        move |line| report_ui.event(&line),
    )?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = stack.serve(listener);
    ui.step(&format!(
        "the five functions are running in this process; webhooks at http://{addr}/github"
    ));

    // GitHub's side: a signed push delivery over HTTP.
    let body = serde_json::to_vec(&push_payload(&sha, message))?;
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", format!("demo-{}", &sha[..12]))
        .header(
            "x-hub-signature-256",
            webhook_intake::webhook::sign(SECRET.as_bytes(), &body),
        )
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let reply: serde_json::Value = response.json().await.unwrap_or_default();
    ui.event(&format!(
        "webhook push {} → {} {}",
        &sha[..7],
        status.as_u16(),
        reply["message"].as_str().unwrap_or("")
    ));
    if status.as_u16() != 202 {
        bail!("the webhook was not accepted");
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut build_id: Option<String> = None;
    let mut outcome: Option<anyhow::Result<&str>> = None;
    loop {
        for stage in 0..3 {
            match stage {
                0 => stack.step_builds().await,
                1 => stack.step_events().await,
                _ => stack.step_deploys().await,
            }
            // Tell each step of the story, then let the notifier show it in the chat.
            for n in stack.pending_notifications() {
                match n.kind {
                    NotificationKind::BuildStarted => {
                        build_id = stack.runner.latest_build();
                        ui.event(&format!(
                            "build started on the local runner ({})",
                            build_id.as_deref().unwrap_or("?")
                        ));
                    }
                    NotificationKind::BuildSucceeded | NotificationKind::BuildFailed => {
                        if let Some(id) = &build_id {
                            ui.log_tail(&stack.runner.log_tail(id, 6));
                        }
                        let word = if n.kind == NotificationKind::BuildSucceeded {
                            "succeeded"
                        } else {
                            "failed"
                        };
                        ui.event(&format!(
                            "build {word}{}",
                            n.facts
                                .reason
                                .as_deref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        ));
                        if n.kind == NotificationKind::BuildFailed {
                            outcome = Some(Ok(
                                "the story is complete: the failure is on the commit status and in the chat; nothing was deployed",
                            ));
                        }
                    }
                    NotificationKind::DeployStarted => ui.event(&format!(
                        "deploying to {}",
                        n.facts.target.as_deref().unwrap_or("?")
                    )),
                    NotificationKind::DeploySucceeded => {
                        let live = std::fs::read_to_string(&production).unwrap_or_default();
                        ui.event(&format!(
                            "released: production now runs {}",
                            live.lines().last().unwrap_or("?")
                        ));
                        outcome = Some(Ok(
                            "the story is complete: pushed, built, reported, released, told",
                        ));
                    }
                    NotificationKind::DeployFailed | NotificationKind::DeploySkipped => {
                        outcome = Some(Err(anyhow::anyhow!(
                            "the deploy did not go through: {}",
                            n.facts.reason.clone().unwrap_or_default()
                        )));
                    }
                    _ => {}
                }
            }
            stack.step_notify().await;
            if let Some(outcome) = outcome.take() {
                server.abort();
                let message = outcome?;
                ui.done(message);
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the story did not complete within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
