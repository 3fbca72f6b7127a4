//! `shipline`: the pipeline on one machine, and the tools to run it on AWS.

mod adapters;
mod commands;
mod local;
mod stack;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::ui::Ui;

/// Exit codes: 0 done, 1 failed, 2 bad usage or input (clap's own), 3 invalid config.
pub(crate) const INVALID_CONFIG: u8 = 3;

#[derive(Parser)]
#[command(
    name = "shipline",
    version,
    about = "Continuous deploy and production monitoring, serverless.",
    after_help = "Examples:\n  shipline demo                      # the whole pipeline on this machine\n  shipline demo --fail               # ... with a failing build\n  shipline demo --rollback           # ... and a bad release rolled back by itself\n  shipline demo --chatops            # ... and one rolled back from the team chat\n  shipline serve --config shipline.yaml --secrets secrets.json --repo pax-app/User=../User\n  shipline config check shipline.yaml\n  shipline config push shipline.yaml --param /shipline/config\n  shipline sign --secret \"$SECRET\" payload.json\n  shipline dlq list https://sqs.eu-west-1.amazonaws.com/123456789012/shipline-DeployDeadLetterQueue.fifo\n  shipline rollback heroku:pax-user --queue \"$DEPLOY_QUEUE_URL\"\n  shipline setup telegram --write shipline.yaml   # TELEGRAM_BOT_TOKEN in the environment\n  shipline setup --stack shipline --config shipline.yaml --dry-run\n  shipline doctor --stack shipline\n  shipline promote heroku:pax-user --queue \"$DEPLOY_QUEUE_URL\"\n  shipline status --stack shipline"
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
        #[arg(long, conflicts_with = "rollback")]
        fail: bool,
        /// Then a second release whose production starts failing, rolled back by itself.
        #[arg(long, conflicts_with = "chatops")]
        rollback: bool,
        /// Then a second release, `/status` asked and "Roll back production" pressed in the chat.
        #[arg(long, conflicts_with = "fail")]
        chatops: bool,
    },
    /// Run the pipeline as a long-running local server for real webhooks (POST /github,
    /// POST /sentry): embedded queues, state and build runner; real GitHub, Heroku and chat
    /// adapters when their secrets are given. Queues and state survive a restart (--data).
    /// Ctrl-C or SIGTERM finishes in-flight builds and messages, then exits.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// The secrets as a JSON object (github_webhook_secret at least).
        #[arg(long)]
        secrets: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// A local checkout the build runner builds from, as owner/name=PATH (repeat per repo).
        /// Repos without one are fetched from GitHub (GITHUB_GIT_URL, default
        /// https://github.com) with github_token or the App, into DIR/git.
        #[arg(long = "repo", value_name = "OWNER/NAME=PATH")]
        repos: Vec<String>,
        /// Where the queues, state and running builds are kept across restarts (default:
        /// $XDG_DATA_HOME/shipline, else ~/.local/share/shipline). One server per directory.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
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
    /// Promote now: the target's pending promotion goes whatever its soak time and gate, or,
    /// with none pending, what is live on the environment it promotes from.
    Promote {
        /// The target, as the config names it: heroku:<app>, hook:<repo>@<environment>.
        target: String,
        /// Only this commit (the pending or live one must be it).
        #[arg(long)]
        sha: Option<String>,
        /// The deploy queue's URL (the stack output DeployQueueUrl).
        #[arg(long, env = "DEPLOY_QUEUE_URL")]
        queue: String,
        /// Print the queued request as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What is live on each target, and which promotions wait (and for what).
    Status {
        /// The CloudFormation stack's name (in AWS_REGION).
        #[arg(long)]
        stack: String,
        #[arg(long)]
        json: bool,
    },
    /// Bring the account in line with a deployed stack and its config: CodeBuild projects,
    /// GitHub webhooks, the config in SSM, the secret's keys. `setup telegram` finds a chat id.
    Setup(SetupArgs),
    /// Check a deployed pipeline end to end, read-only: one line per check, ✔ or ✖ with the
    /// fix; exits 1 when any fails.
    Doctor {
        /// The CloudFormation stack's name (in AWS_REGION).
        #[arg(long)]
        stack: String,
        /// The config file the stack should run; without it, the one in SSM is checked.
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object: ok, and the checks.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for each webhook's ping to be delivered.
        #[arg(long, default_value_t = 20)]
        ping_wait: u64,
    },
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

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct SetupArgs {
    #[command(subcommand)]
    command: Option<SetupCommand>,
    /// The CloudFormation stack's name (in AWS_REGION).
    #[arg(long, required = true)]
    stack: Option<String>,
    /// The config file to set up with (also stored in SSM); without it, the one in SSM.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the plan, one line per resource; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the plan (and what was done) as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum SetupCommand {
    /// Find the chat_id (and topic_id) of a Telegram group: the bot waits for a one-time code
    /// sent in the group (or forum topic), then prints the channel's config line.
    Telegram {
        /// The environment variable holding the bot token (from @BotFather).
        #[arg(long, default_value = "TELEGRAM_BOT_TOKEN")]
        token_env: String,
        #[arg(
            long,
            env = "TELEGRAM_API_URL",
            default_value = "https://api.telegram.org"
        )]
        api_url: String,
        /// How long to wait for the code, in seconds.
        #[arg(long, default_value_t = 300)]
        wait: u64,
        /// The channel's name in the config.
        #[arg(long, default_value = "team")]
        channel: String,
        /// Add the channel to this config file instead of printing it.
        #[arg(long)]
        write: Option<PathBuf>,
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
        Command::Demo {
            fail,
            rollback,
            chatops,
        } => {
            let story = commands::demo::Story::of(fail, rollback, chatops);
            commands::demo::run(story, ui.clone()).await
        }
        Command::Serve {
            config,
            secrets,
            listen,
            repos,
            data,
        } => commands::serve::run(&config, &secrets, listen, &repos, data, ui.clone()).await,
        Command::Config(ConfigCommand::Check {
            file,
            secrets,
            json,
        }) => {
            return commands::config::check(&file, secrets.as_deref(), json, &ui);
        }
        Command::Config(ConfigCommand::Push { file, param }) => {
            commands::config::push(&file, &param, &ui).await
        }
        Command::Sign {
            secret,
            secret_env,
            sentry,
            file,
        } => commands::sign::run(secret, secret_env, sentry, &file),
        Command::Dlq(DlqCommand::List { queue_url, json }) => {
            commands::dlq::list(&queue_url, json).await
        }
        Command::Dlq(DlqCommand::Redrive {
            queue_url,
            to,
            json,
        }) => commands::dlq::redrive(&queue_url, &to, json, &ui).await,
        Command::Rollback {
            target,
            release,
            queue,
            json,
        } => commands::rollback::run(&target, release, &queue, json, &ui).await,
        Command::Promote {
            target,
            sha,
            queue,
            json,
        } => commands::promote::promote(&target, sha, &queue, json, &ui).await,
        Command::Status { stack, json } => commands::status::run(&stack, json, &ui).await,
        Command::Setup(args) => setup(args, &ui).await,
        Command::Doctor {
            stack,
            config,
            json,
            ping_wait,
        } => {
            let options = commands::doctor::Options {
                stack,
                config,
                json,
                ping_wait: std::time::Duration::from_secs(ping_wait),
            };
            checked(commands::doctor::run(&options, &ui).await)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Unfinished>() => ExitCode::FAILURE,
        Err(e) => {
            ui.error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// A command that ran to its end and printed what failed: exit 1, nothing more to print.
#[derive(Debug)]
struct Unfinished;

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("some checks failed")
    }
}

impl std::error::Error for Unfinished {}

fn checked(result: anyhow::Result<bool>) -> anyhow::Result<()> {
    match result? {
        true => Ok(()),
        false => Err(Unfinished.into()),
    }
}

async fn setup(args: SetupArgs, ui: &Ui) -> anyhow::Result<()> {
    use commands::setup::telegram;
    match args.command {
        Some(SetupCommand::Telegram {
            token_env,
            api_url,
            wait,
            channel,
            write,
        }) => {
            let token = std::env::var(&token_env).map_err(|_| {
                anyhow::anyhow!(
                    "{token_env} is not set: export the bot token from @BotFather there"
                )
            })?;
            let api = telegram::BotApi::new(&api_url, token);
            let wait = std::time::Duration::from_secs(wait);
            telegram::telegram(&api, wait, &channel, write.as_deref(), ui).await
        }
        None => {
            let options = commands::setup::Options {
                stack: args
                    .stack
                    .expect("clap requires --stack without a subcommand"),
                config: args.config,
                dry_run: args.dry_run,
                json: args.json,
            };
            checked(commands::setup::run(&options, ui).await)
        }
    }
}
