//! The CodeBuild projects the config asks for: each there and as the config says.

use shared::config::Config;

use super::{Check, from_step};
use crate::commands::setup::codebuild;
use crate::stack::{Aws, Stack};

pub(super) async fn project_checks(aws: &Aws, stack: &Stack, config: &Config) -> Vec<Check> {
    let desired = match codebuild::desired(config, stack) {
        Ok(desired) => desired,
        Err(e) => {
            return vec![Check::fail(
                "codebuild projects",
                e.to_string(),
                "edit the config",
            )];
        }
    };
    codebuild::plan(aws, desired)
        .await
        .into_iter()
        .map(|step| from_step(step.resource, step.change, stack))
        .collect()
}
