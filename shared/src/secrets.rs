//! Secrets: one JSON object of named strings, from Secrets Manager or a local file, never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A secret value. `Debug` and `Display` print `[redacted]`, so a secret that ends up in a log
/// line, an error or a `{:?}` of a larger struct gives nothing away.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (an HMAC key, an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets are not a JSON object of strings: {0}")]
    Malformed(String),
    #[error("secret `{0}` is not set")]
    Missing(String),
    #[error("cannot read the secrets file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("cannot read the secret from Secrets Manager: {0}")]
    Remote(String),
}

/// The named secrets of one installation (`github_webhook_secret`, `telegram_bot_token`, ...).
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, SecretString>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The names are not secret and help when debugging a missing key; the values are.
        f.debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    /// Parses a JSON object. Strings are taken as they are; numbers (a GitHub App id) are
    /// accepted and kept as their decimal text. Anything else is an error that names the key
    /// but never shows a value.
    pub fn from_json(text: &str) -> Result<Self, SecretsError> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| {
                // serde_json's message can quote input; keep only the position.
                SecretsError::Malformed(format!(
                    "invalid JSON object at line {}, column {}",
                    e.line(),
                    e.column()
                ))
            })?;
        let mut values = BTreeMap::new();
        for (name, value) in object {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => {
                    return Err(SecretsError::Malformed(format!(
                        "`{name}` must be a string"
                    )));
                }
            };
            values.insert(name, SecretString(text));
        }
        Ok(Self { values })
    }

    pub fn from_file(path: &Path) -> Result<Self, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|e| SecretsError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_json(&text)
    }

    pub async fn from_secrets_manager(
        client: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
    ) -> Result<Self, SecretsError> {
        let out = client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                SecretsError::Remote(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                )
            })?;
        let text = out
            .secret_string()
            .ok_or_else(|| SecretsError::Malformed("the secret has no SecretString".into()))?;
        Self::from_json(text)
    }

    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.values.get(name)
    }

    pub fn require(&self, name: &str) -> Result<&SecretString, SecretsError> {
        self.get(name)
            .ok_or_else(|| SecretsError::Missing(name.to_string()))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Builds a set in code (tests, the local demo).
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.values
            .insert(name.to_string(), SecretString::new(value));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_a_value() {
        let secrets =
            Secrets::from_json(r#"{"github_webhook_secret":"hunter2","github_app_id":12345}"#)
                .unwrap();
        let printed = format!("{secrets:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("github_webhook_secret"));
        let value = secrets.require("github_webhook_secret").unwrap();
        assert_eq!(format!("{value:?} {value}"), "[redacted] [redacted]");
        assert_eq!(value.expose(), "hunter2");
        assert_eq!(secrets.require("github_app_id").unwrap().expose(), "12345");
    }

    #[test]
    fn a_malformed_secret_names_the_key_but_not_the_value() {
        let err = Secrets::from_json(r#"{"token":{"nested":"hunter2"}}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`token`"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");

        let err = Secrets::from_json(r#"{"token": "hunter2""#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_missing_secret_is_named() {
        let err = Secrets::default()
            .require("telegram_bot_token")
            .unwrap_err();
        assert_eq!(err.to_string(), "secret `telegram_bot_token` is not set");
    }
}
