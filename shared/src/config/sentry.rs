//! `sentry`: which Sentry projects' alerts go where, from which level, how often.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentryConfig {
    #[serde(default)]
    pub projects: BTreeMap<String, SentryProject>,
    /// Alerts of a project not listed: sent to the default channels, or ignored.
    #[serde(default)]
    pub unknown_projects: UnknownProjects,
    #[serde(default = "default_throttle", with = "super::humantime_serde_compat")]
    pub throttle: Duration,
}

impl Default for SentryConfig {
    fn default() -> Self {
        Self {
            projects: BTreeMap::new(),
            unknown_projects: UnknownProjects::default(),
            throttle: default_throttle(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownProjects {
    #[default]
    Default,
    Ignore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentryProject {
    #[serde(default)]
    pub notify: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub min_level: Level,
    #[serde(default, with = "super::humantime_serde_compat::option")]
    pub throttle: Option<Duration>,
}

/// Sentry's levels, least severe first, so that `>=` compares severity.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    Info,
    Warning,
    #[default]
    Error,
    Fatal,
}

fn default_throttle() -> Duration {
    Duration::from_secs(600)
}
