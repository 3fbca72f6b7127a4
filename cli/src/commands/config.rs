//! `shipline config check` and `config push`: validate a config (errors name the key and the
//! line) and store it in SSM.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use shared::config::Config;

use crate::INVALID_CONFIG;
use crate::ui::Ui;

fn load_config(file: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Config::from_yaml(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// More projects than the template's role can name (see `RunTheListedProjects` there).
const MAX_CODEBUILD_PROJECTS: usize = 16;

pub fn check(file: &Path, secrets: Option<&Path>, json: bool, ui: &Ui) -> ExitCode {
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

pub async fn push(file: &Path, param: &str, ui: &Ui) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Config::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let tier = put(&aws_sdk_ssm::Client::new(&aws), param, &text).await?;
    ui.done(&format!(
        "stored {} in {param} ({tier} tier); functions read it at their next cold start",
        file.display(),
    ));
    Ok(())
}

/// Stores a config's text in SSM; answers the tier used. Standard parameters hold 4 KB;
/// larger configs need the advanced tier.
pub async fn put(
    ssm: &aws_sdk_ssm::Client,
    param: &str,
    text: &str,
) -> anyhow::Result<&'static str> {
    let tier = if text.len() > 4096 {
        aws_sdk_ssm::types::ParameterTier::Advanced
    } else {
        aws_sdk_ssm::types::ParameterTier::Standard
    };
    ssm.put_parameter()
        .name(param)
        .value(text)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .tier(tier.clone())
        .overwrite(true)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_ssm::error::DisplayErrorContext(e)))?;
    Ok(if text.len() > 4096 {
        "Advanced"
    } else {
        "Standard"
    })
}
