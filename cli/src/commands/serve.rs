//! `shipline serve`: the local stack as a long-running server for real webhooks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shared::config::Config;
use shared::secrets::Secrets;

use crate::local::Stack;
use crate::ui::Ui;

pub async fn run(
    config: &Path,
    secrets: &Path,
    listen: std::net::SocketAddr,
    repos: &[String],
    ui: Arc<Ui>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let config =
        Config::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let secrets = Secrets::from_file(secrets)?;
    config.check_secrets(&secrets)?;
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
    let work = tempfile::Builder::new()
        .prefix("shipline-serve-")
        .tempdir()?;
    let report_ui = ui.clone();
    let stack = Arc::new(Stack::new(
        config,
        secrets,
        checkouts,
        work.path().to_path_buf(),
        move |line| report_ui.event(&line),
    )?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let server = stack.serve(listener);
    // Listening before the first pump: a signal that comes while a pump runs is kept for the
    // next look, not lost (a `ctrl_c()` made anew each turn misses one sent in between).
    let stop = stop_signal()?;
    tokio::pin!(stop);
    ui.done(&format!(
        "listening on http://{listen} (POST /github, POST /sentry, POST /telegram; the status page at GET /{}); Ctrl-C or SIGTERM to stop",
        if listen.ip().is_loopback() { "" } else { " on loopback only" }
    ));
    let signal = loop {
        tokio::select! {
            signal = &mut stop => break signal,
            _ = tokio::time::sleep(Duration::from_millis(300)) => stack.pump().await,
        }
    };
    // Stop taking webhooks, then finish what is in flight.
    server.abort();
    ui.step(&format!("{signal}: stopping, finishing in-flight messages"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stack.idle() && Instant::now() < deadline {
        stack.pump().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if stack.idle() {
        ui.done("stopped; nothing left in flight");
        Ok(())
    } else {
        bail!("stopped with messages still queued after two minutes")
    }
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
