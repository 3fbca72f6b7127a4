//! Deploy adapters, one module per kind of target, and `Targets`, which picks the adapter a
//! deploy rule names.

mod heroku;
mod hook;

use std::sync::Arc;

use async_trait::async_trait;
use shared::config::{DeployRule, Target};
use shared::messages::DeployRequest;

use crate::deployer::{DeployError, Deployer, Named, Release};

pub use heroku::{HEROKU_PUBLIC_API, Heroku, image_variable};
pub use hook::Hook;

/// The adapter for each kind of target a config can name. A kind whose credentials are not
/// configured refuses with a message that says which secret is missing.
pub struct Targets {
    pub heroku: Option<Arc<dyn Deployer>>,
    pub hook: Arc<dyn Deployer>,
    /// The `command` target's adapter: only the local stack (`shipline demo` / `serve`) has
    /// one; a deployed function refused such a config at cold start.
    pub command: Option<Arc<dyn Deployer>>,
}

impl Targets {
    fn pick(&self, rule: &DeployRule) -> Result<&dyn Deployer, DeployError> {
        match rule.target() {
            Some(Target::Heroku(_)) => self.heroku.as_deref().ok_or_else(|| {
                DeployError::Refused("no Heroku API key: set heroku_api_key in the secrets".into())
            }),
            Some(Target::Hook(_)) => Ok(self.hook.as_ref()),
            Some(Target::Command(_)) => self.command.as_deref().ok_or_else(|| {
                DeployError::Refused(
                    "a command target runs only under `shipline demo` or `serve`".into(),
                )
            }),
            None => Err(DeployError::Refused(
                "the deploy rule names no target".into(),
            )),
        }
    }
}

#[async_trait]
impl Deployer for Targets {
    async fn release(
        &self,
        rule: &DeployRule,
        request: &DeployRequest,
    ) -> Result<Release, DeployError> {
        self.pick(rule)?.release(rule, request).await
    }

    async fn status(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        self.pick(rule)?.status(rule, id).await
    }

    async fn rollback_candidate(
        &self,
        rule: &DeployRule,
        asked: &str,
    ) -> Result<Named, DeployError> {
        self.pick(rule)?.rollback_candidate(rule, asked).await
    }

    async fn released_since(
        &self,
        rule: &DeployRule,
        since: Option<&str>,
    ) -> Result<Option<Release>, DeployError> {
        self.pick(rule)?.released_since(rule, since).await
    }

    async fn rollback(&self, rule: &DeployRule, id: &str) -> Result<Release, DeployError> {
        self.pick(rule)?.rollback(rule, id).await
    }
}
