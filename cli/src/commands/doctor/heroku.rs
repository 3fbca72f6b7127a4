//! The Heroku apps the deploy rules release to: each readable with the secret's key.

use shared::config::Config;

use super::Check;
use crate::stack::{Stack, StackSecret};

pub(super) async fn heroku_checks(
    http: &reqwest::Client,
    stack: &Stack,
    secret: &StackSecret,
    config: &Config,
) -> Vec<Check> {
    let base = stack.api_url("HerokuApiUrl", "https://api.heroku.com");
    let apps: std::collections::BTreeSet<&str> = config
        .repos
        .values()
        .flat_map(|r| r.deploy.iter().filter_map(|d| d.heroku.as_ref()))
        .map(|h| h.app.as_str())
        .collect();
    let Some(key) = secret.secrets.get("heroku_api_key") else {
        return Vec::new(); // the secret check names it
    };
    let mut checks = Vec::new();
    for app in apps {
        let name = format!("heroku app {app}");
        // Platform API v3 (devcenter.heroku.com/articles/platform-api-reference#app-info).
        let answer = http
            .get(format!("{base}/apps/{app}"))
            .header("accept", "application/vnd.heroku+json; version=3")
            .bearer_auth(key.expose())
            .send()
            .await;
        checks.push(match answer.map(|r| r.status().as_u16()) {
            Ok(200) => Check::pass(name, "the key can read it"),
            Ok(401) => Check::fail(
                name,
                "Heroku refused heroku_api_key (401)",
                "make a key (heroku authorizations:create) and put it in the secret",
            ),
            Ok(403 | 404) => Check::fail(
                name,
                "no such app that the key's account can see",
                "check the app's name in the config, or use the key of an account that has \
                 access to the app (heroku access:add)",
            ),
            Ok(status) => Check::fail(name, format!("Heroku answered {status}"), "try again"),
            Err(e) => Check::fail(name, e.without_url().to_string(), "try again"),
        });
    }
    checks
}
