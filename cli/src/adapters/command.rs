//! The command deploy target: runs `sh -c` on this machine, for `shipline demo` and `serve`. It
//! is linked only into the `shipline` command, never into a Lambda function.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deploy_promotion::deployer::{DeployError, Deployer, Release};
use shared::config::DeployRule;
use shared::messages::DeployRequest;

/// Runs `sh -c <run>` with the release described in `SHIPLINE_*` variables; exit 0 is live.
pub struct Command;

#[async_trait]
impl Deployer for Command {
    async fn release(
        &self,
        rule: &DeployRule,
        request: &DeployRequest,
    ) -> Result<Release, DeployError> {
        let command = rule
            .command
            .as_ref()
            .ok_or_else(|| DeployError::Refused("not a command target".into()))?;
        let mut env: BTreeMap<String, String> = request.artifacts.clone();
        env.insert("SHIPLINE_REPO".into(), request.repo.clone());
        env.insert("SHIPLINE_BRANCH".into(), request.branch.clone());
        env.insert("SHIPLINE_SHA".into(), request.sha.to_string());
        env.insert("SHIPLINE_ENVIRONMENT".into(), request.environment.clone());
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command.run.value)
            .envs(env)
            .output()
            .await
            .map_err(|e| DeployError::Refused(format!("cannot run the deploy command: {e}")))?;
        let tail = String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        if output.status.success() {
            Ok(Release::Live {
                id: request.sha.to_string(),
                version: String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .last()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
                url: None,
            })
        } else {
            Ok(Release::Failed {
                id: None,
                reason: format!(
                    "deploy command exited with {}{}",
                    output.status,
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!(": {tail}")
                    }
                ),
            })
        }
    }

    async fn rollback(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        let request = DeployRequest {
            v: 1,
            repo: String::new(),
            branch: rule.branch.clone(),
            sha: id.to_string().into(),
            build_id: String::new().into(),
            log_url: None,
            target: String::new().into(),
            environment: rule.environment.clone(),
            artifacts: BTreeMap::new(),
            delivery_id: String::new().into(),
            commit_message: None,
            author: None,
            installation_id: None,
            requested_at: String::new(),
            promotion: None,
            requested_by: None,
        };
        self.release(rule, &request).await
    }
}
