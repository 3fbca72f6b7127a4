//! `shipline demo`: the whole pipeline on this machine, with no account and no setup. A
//! throwaway git repository with a buildspec, a config, seven of the eight functions in one
//! process (the handlers of webhook-intake, build-dispatch, deploy-promotion, notifier,
//! alert-forwarder and chat-ops, and the status page on loopback; delivery-recovery has no
//! failed GitHub deliveries to ask for again here), a signed push webhook over HTTP, and the
//! story as it happens: built, released to staging, promoted to production once Sentry stayed
//! quiet. `--fail` shows a failing build; `--rollback` a second release whose production
//! starts failing, rolled back by itself; `--chatops` a second release rolled back by a button
//! pressed in the team chat.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use shared::config::Config;
use shared::messages::{Notification, NotificationKind};
use shared::secrets::Secrets;

use crate::adapters::durable::DurableStore;
use crate::local::Stack;
use crate::ui::Ui;

const REPO: &str = "demo/shop";
const SECRET: &str = "demo webhook secret";
const SENTRY_SECRET: &str = "demo sentry secret";
const TELEGRAM_SECRET: &str = "demo-telegram-secret";
/// The team's chat, as the console channel stands for it, and its people: Ana may roll back,
/// Bob may not.
const CHAT: i64 = -100_200_300;
const ANA: i64 = 4242;
const BOB: i64 = 5353;

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

/// Which story the demo tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Story {
    /// Built, released to staging, promoted to production.
    Promotion,
    /// The build fails: nothing is released.
    Failure,
    /// A second release breaks production and is rolled back by itself.
    Rollback,
    /// A second release, then `/status` and "Roll back production" pressed in the chat.
    ChatOps,
}

impl Story {
    /// The story `shipline demo`'s flags ask for.
    pub fn of(fail: bool, rollback: bool, chatops: bool) -> Self {
        match (fail, rollback, chatops) {
            (true, _, _) => Story::Failure,
            (_, true, _) => Story::Rollback,
            (_, _, true) => Story::ChatOps,
            _ => Story::Promotion,
        }
    }
}

pub async fn run(story: Story, ui: Arc<Ui>) -> anyhow::Result<()> {
    ui.title(
        "shipline demo: push → build → status → staging → production → chat, all on this machine",
    );
    let dir = tempfile::Builder::new()
        .prefix("shipline-demo-")
        .tempdir()?;
    let mut shop = Shop::create(dir.path(), story == Story::Failure)?;
    ui.step(&format!(
        "throwaway repository {REPO} at {} (commit {})",
        shop.repo.display(),
        shop.short_sha()
    ));

    let stack = local_stack(&shop, dir.path(), story, &ui)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = stack.serve(listener);
    ui.step(&format!(
        "the six functions are running in this process; webhooks at http://{addr}/github, the chat's at http://{addr}/telegram, the status page at http://{addr}/ while the demo runs"
    ));

    let ending = tell(story, &stack, addr, &mut shop, &ui).await;
    server.abort();
    ui.done(ending?);
    Ok(())
}

async fn tell(story: Story, stack: &Stack, addr: SocketAddr, shop: &mut Shop, ui: &Ui) -> Ending {
    deliver_push(addr, shop, ui).await?;
    let ending = follow_the_story(stack, shop, Goal::Production, ui).await?;
    if !matches!(story, Story::Rollback | Story::ChatOps) {
        return Ok(ending);
    }
    shop.commit("Cache the cart between requests", "cart.cache = true\n")?;
    ui.step(&format!(
        "a second commit: {} {}",
        shop.short_sha(),
        shop.message
    ));
    deliver_push(addr, shop, ui).await?;
    follow_the_story(stack, shop, Goal::Production, ui).await?;
    if story == Story::ChatOps {
        return from_the_chat(stack, addr, shop, ui).await;
    }
    ui.step("production starts failing: Sentry reports a new issue there");
    deliver_alert(addr, ui).await?;
    follow_the_story(stack, shop, Goal::RolledBack, ui).await
}

/// The team acts from the chat: Ana asks `/status`, Bob presses "Roll back production" and is
/// refused, Ana presses it and it goes through.
async fn from_the_chat(stack: &Stack, addr: SocketAddr, shop: &Shop, ui: &Ui) -> Ending {
    ui.step("in the team chat, Ana asks /status");
    let status = telegram(addr, &chat_message(1, ANA, "/status")).await?;
    let lines: Vec<String> = chat_ops::telegram::plain(status["text"].as_str().unwrap_or(""))
        .lines()
        .map(str::to_string)
        .collect();
    ui.log_tail(&lines);
    let Some((message, button)) = stack
        .console
        .buttons()
        .into_iter()
        .rev()
        .find(|(_, b)| b.label == "Roll back production")
    else {
        bail!("the production release's message shows no \"Roll back production\" button");
    };
    ui.step(&format!(
        "Bob presses [ {} ] under chat message #{message}",
        button.label
    ));
    let refused = telegram(addr, &press(2, BOB, &button.data())).await?;
    ui.event(&format!(
        "Bob is told: {}",
        refused["text"].as_str().unwrap_or("")
    ));
    ui.step(&format!("Ana presses [ {} ]", button.label));
    let taken = telegram(addr, &press(3, ANA, &button.data())).await?;
    ui.event(&format!(
        "Ana is told: {}",
        taken["text"].as_str().unwrap_or("")
    ));
    follow_the_story(stack, shop, Goal::RolledBack, ui).await
}

/// Telegram's side: an update POSTed with the webhook's secret token; the Bot API call the
/// answer holds.
async fn telegram(
    addr: SocketAddr,
    update: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/telegram?bot=demo_shipline_bot"))
        .header("content-type", "application/json")
        .header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET)
        .json(update)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("the chat's update was answered {}", response.status());
    }
    Ok(response.json().await?)
}

fn person(id: i64) -> serde_json::Value {
    let name = if id == ANA { "ana" } else { "bob" };
    json!({"id": id, "is_bot": false, "first_name": name, "username": name})
}

fn chat_message(update_id: i64, from: i64, text: &str) -> serde_json::Value {
    json!({"update_id": update_id, "message": {
        "message_id": 1000 + update_id, "date": 0, "text": text,
        "chat": {"id": CHAT, "type": "supergroup"}, "from": person(from),
    }})
}

fn press(update_id: i64, from: i64, data: &str) -> serde_json::Value {
    json!({"update_id": update_id, "callback_query": {
        "id": format!("demo-press-{update_id}"), "from": person(from), "chat_instance": "demo",
        "message": {"message_id": 1, "date": 0, "chat": {"id": CHAT, "type": "supergroup"}},
        "data": data,
    }})
}

/// The throwaway repository the demo pushes from, and the files its staging and production
/// write to.
struct Shop {
    repo: PathBuf,
    staging: PathBuf,
    production: PathBuf,
    sha: String,
    message: &'static str,
}

impl Shop {
    /// A git repository with a buildspec and a test script (failing with `fail`), committed.
    fn create(dir: &Path, fail: bool) -> anyhow::Result<Self> {
        let repo = dir.join("shop");
        let staging = dir.join("staging.log");
        let production = dir.join("production.log");
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
        Ok(Self {
            repo,
            staging,
            production,
            sha,
            message,
        })
    }

    /// A next commit on master, which becomes the one pushed.
    fn commit(&mut self, message: &'static str, change: &str) -> anyhow::Result<()> {
        std::fs::write(self.repo.join("cart.conf"), change)?;
        git(&self.repo, &["add", "."])?;
        git(&self.repo, &["commit", "--quiet", "-m", message])?;
        self.sha = git(&self.repo, &["rev-parse", "HEAD"])?;
        self.message = message;
        Ok(())
    }

    fn short_sha(&self) -> &str {
        &self.sha[..7]
    }
}

/// One repo, built by the local runner, released to staging and promoted to production by
/// commands that append to their log and answer the release's version; production rolls back
/// by itself under `--rollback`.
fn demo_config(shop: &Shop, story: Story) -> anyhow::Result<Config> {
    let release = |log: &Path| {
        format!(
            "'echo \"$SHIPLINE_SHA $SHIPLINE_IMAGE_WEB\" >> {log} && echo v$(wc -l < {log} | tr -d \" \")'",
            log = log.display()
        )
    };
    let rollback = if story == Story::Rollback {
        "\n        auto_rollback: { window: 15m, new_issues: 1, events: 50 }"
    } else {
        ""
    };
    let (chat_id, chatops) = if story == Story::ChatOps {
        (
            format!(" chat_id: {CHAT} "),
            format!(
                "chatops:\n  allow:\n    rollback: [{ANA}]\n    promote: [{ANA}]\n    deploy: [{ANA}]\n"
            ),
        )
    } else {
        (String::new(), String::new())
    };
    let config_text = format!(
        "channels:\n  team: {{ console: {{{chat_id}}} }}\n{chatops}defaults:\n  notify: [team]\nrepos:\n  {REPO}:\n    codebuild_project: shop\n    sentry_project: shop\n    deploy:\n      - branch: master\n        environment: staging\n        command: {{ run: {staging} }}\n      - promote_from: staging\n        environment: production\n        gate: sentry\n        command: {{ run: {production} }}{rollback}\nsentry:\n  projects:\n    shop: {{ min_level: error }}\n",
        staging = release(&shop.staging),
        production = release(&shop.production),
    );
    Config::from_yaml(&config_text).context("the demo config")
}

/// The local stack in this process (six functions' handlers, and the status page its server
/// answers `GET /` with), reporting what the local GitHub is told as events.
fn local_stack(shop: &Shop, work: &Path, story: Story, ui: &Arc<Ui>) -> anyhow::Result<Arc<Stack>> {
    let secrets = Secrets::default()
        .with("github_webhook_secret", SECRET)
        .with("sentry_client_secret", SENTRY_SECRET)
        .with("telegram_webhook_secret", TELEGRAM_SECRET);
    let report_ui = ui.clone();
    // The same durable store as `shipline serve`, thrown away with the demo's directory.
    let store = DurableStore::open(&work.join("data"))?;
    Ok(Arc::new(Stack::new(
        demo_config(shop, story)?,
        secrets,
        BTreeMap::from([(REPO.to_string(), shop.repo.clone())]),
        work.to_path_buf(),
        store,
        move |line| report_ui.event(&line),
    )?))
}

/// Sentry's side: a signed event alert for the shop's project in production, as an alert
/// rule of its integration sends one (the event names its environment).
async fn deliver_alert(addr: SocketAddr, ui: &Ui) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&json!({
        "action": "triggered",
        "installation": {"uuid": "7a485448-a9e2-4c85-8a3c-4f44175783c9"},
        "data": {
            "event": {
                "url": "https://sentry.example.com/api/0/projects/demo/shop/events/5f1b7f0c/",
                "web_url": "https://sentry.example.com/organizations/demo/issues/4242/events/5f1b7f0c/",
                "issue_id": "4242", "event_id": "5f1b7f0c",
                "title": "TypeError: cart.total is not a function", "level": "error",
                "culprit": "checkout/pay", "environment": "production",
                "tags": [["environment", "production"], ["level", "error"]],
            },
            "triggered_rule": "Errors in production",
        },
        "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
    }))?;
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/sentry"))
        .header("content-type", "application/json")
        .header("sentry-hook-resource", "event_alert")
        .header("request-id", "demo-alert-4242")
        .header(
            "sentry-hook-signature",
            alert_forwarder::sentry::sign(SENTRY_SECRET.as_bytes(), &body),
        )
        .body(body)
        .send()
        .await?;
    ui.event(&format!(
        "Sentry event alert (production) → {}",
        response.status().as_u16()
    ));
    Ok(())
}

/// GitHub's side: a signed push delivery over HTTP, which the intake must queue.
async fn deliver_push(addr: SocketAddr, shop: &Shop, ui: &Ui) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&push_payload(&shop.sha, shop.message))?;
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", format!("demo-{}", &shop.sha[..12]))
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
        shop.short_sha(),
        status.as_u16(),
        reply["message"].as_str().unwrap_or("")
    ));
    if status.as_u16() != 202 {
        bail!("the webhook was not accepted");
    }
    Ok(())
}

/// Where a part of the story ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// The pushed commit is live on production (or its build failed).
    Production,
    /// Production was rolled back.
    RolledBack,
}

/// Pumps the pipeline a step at a time, telling each step, until this part of the story ends
/// (its closing line) or goes wrong, for a minute at most.
async fn follow_the_story(stack: &Stack, shop: &Shop, goal: Goal, ui: &Ui) -> Ending {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut narrator = Narrator {
        stack,
        shop,
        goal,
        ui,
        build_id: None,
    };
    loop {
        for stage in 0..4 {
            match stage {
                0 => stack.step_builds().await,
                1 => stack.step_events().await,
                2 => stack.step_deploys().await,
                _ => stack.step_sweep().await,
            }
            // Tell each step of the story, then let the notifier show it in the chat.
            let ending = narrator.tell_pending().await;
            stack.step_notify().await;
            if let Some(ending) = ending {
                return ending;
            }
        }
        if Instant::now() > deadline {
            bail!("the story did not complete within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An ending of the story: the closing line, or what went wrong.
type Ending = anyhow::Result<&'static str>;

/// Tells the story from the notifications on their way to the chat.
struct Narrator<'a> {
    stack: &'a Stack,
    shop: &'a Shop,
    goal: Goal,
    ui: &'a Ui,
    /// The build the story follows, once it has started.
    build_id: Option<String>,
}

impl Narrator<'_> {
    /// Tells every notification waiting for the notifier; the ending, if one of them was the
    /// last (the later wins when several are).
    async fn tell_pending(&mut self) -> Option<Ending> {
        let mut ending = None;
        for n in self.stack.pending_notifications().await {
            if let Some(end) = self.tell(&n) {
                ending = Some(end);
            }
        }
        ending
    }

    fn tell(&mut self, n: &Notification) -> Option<Ending> {
        let reason = n.facts.reason.clone().unwrap_or_default();
        match n.kind {
            NotificationKind::BuildStarted => {
                self.build_started();
                None
            }
            NotificationKind::BuildSucceeded | NotificationKind::BuildFailed => {
                self.build_finished(n)
            }
            NotificationKind::DeployStarted => {
                self.ui.event(&format!(
                    "deploying to {} ({})",
                    n.facts.environment.as_deref().unwrap_or("?"),
                    n.facts.target.as_deref().unwrap_or("?")
                ));
                None
            }
            NotificationKind::DeploySucceeded => self.released(n, &reason),
            NotificationKind::ErrorAlert => {
                self.ui.event(&format!(
                    "error alert: {}",
                    n.facts.title.as_deref().unwrap_or("?")
                ));
                None
            }
            NotificationKind::DeployFailed
            | NotificationKind::DeploySkipped
            | NotificationKind::PromotionBlocked => Some(Err(anyhow::anyhow!(
                "the release did not go through: {reason}"
            ))),
            _ => None,
        }
    }

    fn build_started(&mut self) {
        self.build_id = self.stack.runner.latest_build();
        self.ui.event(&format!(
            "build started on the local runner ({})",
            self.build_id.as_deref().unwrap_or("?")
        ));
    }

    /// The end of the build's log and its result; a failed build ends the story.
    fn build_finished(&self, n: &Notification) -> Option<Ending> {
        if let Some(id) = &self.build_id {
            self.ui.log_tail(&self.stack.runner.log_tail(id, 6));
        }
        let failed = n.kind == NotificationKind::BuildFailed;
        let word = if failed { "failed" } else { "succeeded" };
        self.ui.event(&format!(
            "build {word}{}",
            n.facts
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
        failed.then_some(Ok(
            "the story is complete: the failure is on the commit status and in the chat; nothing was deployed",
        ))
    }

    /// What an environment runs now, as its release command wrote it; the end of this part of
    /// the story when it is the goal.
    fn released(&self, n: &Notification, reason: &str) -> Option<Ending> {
        let environment = n.facts.environment.as_deref().unwrap_or("?");
        let log = if environment == "production" {
            &self.shop.production
        } else {
            &self.shop.staging
        };
        let live = std::fs::read_to_string(log).unwrap_or_default();
        self.ui.event(&format!(
            "released: {environment} now runs {}{}",
            live.lines().last().unwrap_or("?"),
            if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            }
        ));
        let rolled_back = reason.contains("rolled back");
        match self.goal {
            Goal::RolledBack if rolled_back && reason.contains("automatically") => Some(Ok(
                "the story is complete: the bad release was rolled back by itself, and the chat says why",
            )),
            Goal::RolledBack if rolled_back => Some(Ok(
                "the story is complete: rolled back from the chat, through the deploy queue, and the chat says who",
            )),
            Goal::Production if environment == "production" && !rolled_back => Some(Ok(
                "the story is complete: pushed, built, reported, released to staging, promoted to production, told",
            )),
            _ => None,
        }
    }
}
