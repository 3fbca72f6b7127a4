//! `shipline`: the pipeline on one machine, and the tools to run it on AWS.

mod adapters;
mod demo;
mod local;
mod serve;
mod ui;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use shared::config::Config;

use crate::ui::Ui;

/// Exit codes: 0 done, 1 failed, 2 bad usage or input (clap's own), 3 invalid config.
const INVALID_CONFIG: u8 = 3;

#[derive(Parser)]
#[command(
    name = "shipline",
    version,
    about = "Continuous deploy and production monitoring, serverless.",
    after_help = "Examples:\n  shipline demo                      # the whole pipeline on this machine\n  shipline demo --fail               # ... with a failing build\n  shipline serve --config shipline.yaml --secrets secrets.json --repo pax-app/User=../User\n  shipline config check shipline.yaml\n  shipline config push shipline.yaml --param /shipline/config\n  shipline sign --secret \"$SECRET\" payload.json\n  shipline dlq list https://sqs.eu-west-1.amazonaws.com/123456789012/shipline-DeployDeadLetterQueue.fifo\n  shipline rollback heroku:pax-user --queue \"$DEPLOY_QUEUE_URL\""
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on this machine: a throwaway repo, a signed push, a local build,
    /// the commit status, a release, the chat messages. No account, no network.
    Demo {
        /// Show a failing build instead.
        #[arg(long)]
        fail: bool,
    },
    /// Run the pipeline as a long-running local server for real webhooks (POST /github,
    /// POST /sentry): embedded queues, state and build runner; real GitHub, Heroku and chat
    /// adapters when their secrets are given. Ctrl-C finishes in-flight messages, then exits.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// The secrets as a JSON object (github_webhook_secret at least).
        #[arg(long)]
        secrets: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// A local checkout the build runner builds from, as owner/name=PATH (repeat per repo).
        #[arg(long = "repo", value_name = "OWNER/NAME=PATH")]
        repos: Vec<String>,
    },
    /// Check or store the pipeline config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the X-Hub-Signature-256 header for a payload (a file, or - for standard input), to
    /// test a deployment with curl.
    Sign {
        /// The webhook secret. Prefer --secret-env, which keeps it out of your shell history.
        #[arg(long, conflicts_with = "secret_env")]
        secret: Option<String>,
        /// Read the secret from this environment variable.
        #[arg(long)]
        secret_env: Option<String>,
        /// Sign as Sentry does (bare hex, for Sentry-Hook-Signature).
        #[arg(long)]
        sentry: bool,
        file: PathBuf,
    },
    /// Show a dead-letter queue, or move its messages back to their queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Put an earlier release of a target live again (through the deploy queue, so it waits for
    /// that target's deploys).
    Rollback {
        /// The target, as the config names it: heroku:<app>, hook:<repo>@<branch>.
        target: String,
        /// The release to restore (a Heroku release id or version like v41); the one before the
        /// live release when not given.
        #[arg(long = "to")]
        release: Option<String>,
        /// The deploy queue's URL (the stack output DeployQueueUrl).
        #[arg(long, env = "DEPLOY_QUEUE_URL")]
        queue: String,
        /// Print the queued request as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config; errors name the key and the line.
    Check {
        file: PathBuf,
        /// Also check that every secret it names is in this JSON file.
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Print one JSON object: ok, error, and the counts and projects when valid.
        #[arg(long)]
        json: bool,
    },
    /// Validate, then store in SSM (advanced tier when over 4 KB).
    Push {
        file: PathBuf,
        #[arg(long, default_value = "/shipline/config")]
        param: String,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Count and show the messages waiting in a dead-letter queue.
    List {
        queue_url: String,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
    },
    /// Move every message back to the queue the DLQ serves.
    Redrive {
        queue_url: String,
        /// The queue to move them to.
        #[arg(long)]
        to: String,
        /// Print the count moved as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let ui = Arc::new(Ui::new());
    let result = match cli.command {
        Command::Demo { fail } => demo::run(fail, ui.clone()).await,
        Command::Serve {
            config,
            secrets,
            listen,
            repos,
        } => serve::run(&config, &secrets, listen, &repos, ui.clone()).await,
        Command::Config(ConfigCommand::Check {
            file,
            secrets,
            json,
        }) => {
            return config_check(&file, secrets.as_deref(), json, &ui);
        }
        Command::Config(ConfigCommand::Push { file, param }) => {
            config_push(&file, &param, &ui).await
        }
        Command::Sign {
            secret,
            secret_env,
            sentry,
            file,
        } => sign(secret, secret_env, sentry, &file),
        Command::Dlq(DlqCommand::List { queue_url, json }) => dlq_list(&queue_url, json).await,
        Command::Dlq(DlqCommand::Redrive {
            queue_url,
            to,
            json,
        }) => dlq_redrive(&queue_url, &to, json, &ui).await,
        Command::Rollback {
            target,
            release,
            queue,
            json,
        } => rollback(&target, release, &queue, json, &ui).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ui.error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn load_config(file: &std::path::Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Config::from_yaml(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// More projects than the template's role can name (see `RunTheListedProjects` there).
const MAX_CODEBUILD_PROJECTS: usize = 16;

fn config_check(
    file: &std::path::Path,
    secrets: Option<&std::path::Path>,
    json: bool,
    ui: &Ui,
) -> ExitCode {
    let checked = load_config(file).and_then(|config| {
        if let Some(path) = secrets {
            shared::secrets::Secrets::from_file(path)
                .map_err(|e| e.to_string())
                .and_then(|s| config.check_secrets(&s).map_err(|e| e.to_string()))
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
        Ok(config)
    });
    let config = match checked {
        Ok(c) => c,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"ok": false, "error": e}));
            } else {
                ui.error(&e);
            }
            return ExitCode::from(INVALID_CONFIG);
        }
    };
    let projects = config.codebuild_projects();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "repos": config.repos.len(),
                "channels": config.channels.len(),
                "sentry_projects": config.sentry.projects.len(),
                "codebuild_projects": projects,
            })
        );
    } else {
        ui.done(&format!(
            "{}: {} repo(s), {} channel(s), {} Sentry project(s)",
            file.display(),
            config.repos.len(),
            config.channels.len(),
            config.sentry.projects.len()
        ));
        ui.step(&format!("CodeBuildProjects={}", projects.join(",")));
    }
    if projects.len() > MAX_CODEBUILD_PROJECTS {
        ui.error(&format!(
            "{} CodeBuild projects: the stack's role names at most {MAX_CODEBUILD_PROJECTS}; \
             share projects between repos or widen RunTheListedProjects in template.yaml",
            projects.len()
        ));
        return ExitCode::from(INVALID_CONFIG);
    }
    ExitCode::SUCCESS
}

async fn config_push(file: &std::path::Path, param: &str, ui: &Ui) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Config::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // Standard parameters hold 4 KB; larger configs need the advanced tier.
    let tier = if text.len() > 4096 {
        aws_sdk_ssm::types::ParameterTier::Advanced
    } else {
        aws_sdk_ssm::types::ParameterTier::Standard
    };
    aws_sdk_ssm::Client::new(&aws)
        .put_parameter()
        .name(param)
        .value(&text)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .tier(tier.clone())
        .overwrite(true)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_ssm::error::DisplayErrorContext(e)))?;
    ui.done(&format!(
        "stored {} in {param} ({} tier); functions read it at their next cold start",
        file.display(),
        tier.as_str()
    ));
    Ok(())
}

fn sign(
    secret: Option<String>,
    secret_env: Option<String>,
    sentry: bool,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let secret = match (secret, secret_env) {
        (Some(s), _) => s,
        (None, Some(var)) => std::env::var(&var).with_context(|| format!("{var} is not set"))?,
        (None, None) => bail!("give the secret with --secret-env NAME (or --secret)"),
    };
    let mut body = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body)?;
    } else {
        body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    if sentry {
        println!(
            "Sentry-Hook-Signature: {}",
            alert_forwarder::sentry::sign(secret.as_bytes(), &body)
        );
    } else {
        println!(
            "X-Hub-Signature-256: {}",
            webhook_intake::webhook::sign(secret.as_bytes(), &body)
        );
    }
    Ok(())
}

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(
        &aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    )
}

async fn dlq_list(queue_url: &str, json: bool) -> anyhow::Result<()> {
    let client = sqs().await;
    let attributes = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    let count = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned()
        .unwrap_or_default();
    // A short visibility timeout: looking does not hide the messages for long.
    let received = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(1)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    if !json {
        println!(
            "{count} message(s) in {queue_url}; the first {}:",
            received.messages().len()
        );
    }
    for m in received.messages() {
        let reason = m
            .message_attributes()
            .and_then(|a| a.get("shipline_reason"))
            .and_then(|v| v.string_value())
            .unwrap_or("");
        if json {
            println!(
                "{}",
                serde_json::json!({"message_id": m.message_id(), "reason": reason, "body": m.body()})
            );
        } else {
            let body: String = m.body().unwrap_or("").chars().take(160).collect();
            println!(
                "- {} {}\n  {body}",
                m.message_id().unwrap_or("?"),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!("({reason})")
                }
            );
        }
    }
    Ok(())
}

async fn dlq_redrive(queue_url: &str, to: &str, json: bool, ui: &Ui) -> anyhow::Result<()> {
    let client = sqs().await;
    let fifo = to.ends_with(".fifo");
    let mut moved = 0usize;
    loop {
        let received = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        if received.messages().is_empty() {
            break;
        }
        for m in received.messages() {
            let mut send = client
                .send_message()
                .queue_url(to)
                .message_body(m.body().unwrap_or(""));
            if fifo {
                let attrs = m.attributes();
                let group = attrs
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    })
                    .cloned()
                    .unwrap_or_else(|| "redrive".into());
                send = send
                    .message_group_id(group)
                    .message_deduplication_id(format!("redrive-{}", m.message_id().unwrap_or("")));
            }
            send.send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            client
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or(""))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            moved += 1;
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"moved": moved, "from": queue_url, "to": to})
        );
        return Ok(());
    }
    ui.done(&format!(
        "moved {moved} message(s) from {queue_url} to {to}"
    ));
    Ok(())
}

async fn rollback(
    target: &str,
    release: Option<String>,
    queue: &str,
    json: bool,
    ui: &Ui,
) -> anyhow::Result<()> {
    let request = shared::messages::RollbackRequest {
        v: shared::messages::VERSION,
        target: target.into(),
        release,
        requested_by: std::env::var("USER").unwrap_or_else(|_| "shipline CLI".into()),
        requested_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?,
    };
    sqs()
        .await
        .send_message()
        .queue_url(queue)
        .message_body(shared::messages::encode(
            &shared::messages::DeployQueueMessage::Rollback(request.clone()),
        ))
        .message_group_id(shared::messages::fifo_id(target))
        .message_deduplication_id(shared::messages::fifo_id(&format!(
            "rollback-{}",
            request.requested_at
        )))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    if json {
        println!("{}", shared::messages::encode(&request));
    } else {
        ui.done(&format!(
            "rollback of {target} queued; the chat will say when it is live"
        ));
    }
    Ok(())
}
