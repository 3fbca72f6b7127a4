//! `shipline serve`: the local stack as a long-running server for real webhooks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shared::config::Config;
use shared::secrets::Secrets;

use crate::adapters::durable::DurableStore;
use crate::adapters::git_source::GitHubSource;
use crate::local::Stack;
use crate::ui::Ui;
use shared::github::client::{Auth, GitHubClient};

/// How often expired state records and deduplication ids are swept from the store.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Where `serve` keeps its queues, state and builds without `--data`: `$XDG_DATA_HOME/shipline`,
/// else `~/.local/share/shipline`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("shipline"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_DATA_HOME nor HOME is set: give --data DIR")?;
    Ok(PathBuf::from(home).join(".local/share/shipline"))
}

/// Takes `dir` for this process alone (an advisory lock on `dir/lock`, released when the
/// process ends, however it ends): two servers on one store would each redeliver what the
/// other has in flight.
fn lock(dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let path = dir.join("lock");
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    {
        use rustix::fs::{FlockOperation, flock};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                bail!("another shipline serve uses {}", dir.display())
            }
            Err(e) => bail!("cannot lock {}: {e}", path.display()),
        }
    }
    Ok(file)
}

pub async fn run(
    config: &Path,
    secrets: &Path,
    listen: std::net::SocketAddr,
    repos: &[String],
    data: Option<PathBuf>,
    ui: Arc<Ui>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let config =
        Config::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let secrets = Secrets::from_file(secrets)?;
    config.check_secrets(&secrets)?;
    let checkouts = checkouts(repos)?;
    let data = match data {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    let _lock = lock(&data)?;
    let store = DurableStore::open(&data)?;
    ui.step(&format!("data in {}", store.path().display()));
    let recovered = store.recover_in_flight().await?;
    if recovered > 0 {
        ui.step(&format!(
            "{recovered} message(s) in flight when the last run stopped: delivered again"
        ));
    }
    let source = github_source(&data, &secrets)?;
    let report_ui = ui.clone();
    let stack = Arc::new(Stack::new(
        config,
        secrets,
        checkouts,
        data.join("work"),
        store.clone(),
        move |line| report_ui.event(&line),
    )?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    stack.runner.fetch_from_github(source);
    let server = stack.serve(listener);
    for id in stack.runner.resume()? {
        ui.step(&format!(
            "build {id} was running when the last run stopped: running it again"
        ));
    }
    // Listening before the first pump: a signal that comes while a pump runs is kept for the
    // next look, not lost (a `ctrl_c()` made anew each turn misses one sent in between).
    let stop = stop_signal()?;
    tokio::pin!(stop);
    ui.done(&format!(
        "listening on http://{listen} (POST /github, POST /sentry, POST /telegram, GET /healthz; the status page at GET /{}); Ctrl-C or SIGTERM to stop",
        if listen.ip().is_loopback() { "" } else { " on loopback only" }
    ));
    let mut swept = Instant::now();
    let signal = loop {
        tokio::select! {
            signal = &mut stop => break signal,
            _ = tokio::time::sleep(Duration::from_millis(300)) => stack.pump().await,
        }
        if swept.elapsed() > SWEEP_EVERY {
            swept = Instant::now();
            if let Err(e) = store.sweep().await {
                tracing::warn!(error = %e, "cannot sweep the store; the next sweep tries again");
            }
        }
    };
    // Stop taking webhooks, then finish what is in flight.
    server.abort();
    drain(&stack, signal, &data, &ui).await
}

/// `--repo owner/name=PATH`s as the runner's checkouts.
fn checkouts(repos: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut checkouts = BTreeMap::new();
    for spec in repos {
        let Some((name, path)) = spec.split_once('=') else {
            bail!("--repo takes owner/name=PATH, not `{spec}`");
        };
        let path = PathBuf::from(path)
            .canonicalize()
            .with_context(|| format!("--repo {name}: no such directory"))?;
        checkouts.insert(name.to_string(), path);
    }
    Ok(checkouts)
}

/// Where builds of repos without `--repo` come from: GitHub (`GITHUB_GIT_URL`), with
/// `github_token` or the App's installation tokens when given (else anonymously), into
/// `DIR/git`.
fn github_source(data: &Path, secrets: &Secrets) -> anyhow::Result<GitHubSource> {
    let credentials = match Auth::from_secrets(secrets) {
        Ok(auth) => {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?;
            let api = std::env::var("GITHUB_API_URL")
                .unwrap_or_else(|_| shared::github::client::PUBLIC_API.into());
            Some(GitHubClient::new(http, api, auth))
        }
        Err(_) => None,
    };
    Ok(GitHubSource::new(data.join("git"), credentials))
}

/// Once webhooks are no longer taken: finishes what is in flight, running builds and what
/// waits on the queues now, for two minutes at most. What was put back for later stays in the
/// store for the next start.
async fn drain(stack: &Stack, signal: &str, data: &Path, ui: &Ui) -> anyhow::Result<()> {
    ui.step(&format!(
        "{signal}: stopping, finishing in-flight builds and messages"
    ));
    let deadline = Instant::now() + Duration::from_secs(120);
    while stack.busy().await && Instant::now() < deadline {
        stack.pump().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if stack.busy().await {
        bail!("stopped with builds or messages still in flight after two minutes")
    }
    if !stack.idle().await {
        ui.step(&format!(
            "{} message(s) put back for later stay in {} for the next start",
            stack.queued().await,
            data.display()
        ));
    }
    ui.done("stopped; nothing left in flight");
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM (systemd, Docker, Kubernetes), whichever comes first; both are
/// listened for from the moment this is called.
fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        })
    }
}
