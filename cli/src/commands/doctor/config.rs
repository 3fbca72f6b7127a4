//! The config stored in SSM: there, the same as the file given, and valid for the functions.

use shared::config::Config;

use super::{Check, setup_fix};
use crate::commands::setup::ConfigSource;
use crate::stack::Stack;

pub(super) fn config_check(stack: &Stack, source: &ConfigSource) -> Check {
    let param = stack
        .parameters
        .get("ConfigParameterName")
        .cloned()
        .unwrap_or_default();
    let name = format!("config {param}");
    match &source.stored {
        None => Check::fail(
            name,
            "not in SSM",
            format!("{} --config FILE", setup_fix(stack)),
        ),
        Some(stored) if stored != &source.text => Check::fail(
            name,
            format!("differs from {}", source.origin),
            format!("{} --config {}", setup_fix(stack), source.origin),
        ),
        Some(stored) => match Config::from_yaml(stored).and_then(|c| c.refuse_local_only()) {
            Ok(()) => Check::pass(
                name,
                format!(
                    "valid (repos: {}, channels: {})",
                    source.config.repos.len(),
                    source.config.channels.len()
                ),
            ),
            Err(e) => Check::fail(name, e.to_string(), "fix the config, then setup again"),
        },
    }
}
