//! `shipline sign`: the signature header GitHub (or Sentry) would send for a payload, to try a
//! deployment with curl.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

pub fn run(
    secret: Option<String>,
    secret_env: Option<String>,
    sentry: bool,
    file: &Path,
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
