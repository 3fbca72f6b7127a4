//! The config loader against the architecture's example and the mistakes people make.

use super::*;
use crate::secrets::Secrets;

const EXAMPLE: &str = r#"
channels:
  team:   { telegram: { chat_id: -1001234567890, topic_id: 7 } }
  alerts: { slack: { webhook_secret: slack_alerts_url } }
defaults:
  stable_branches: [master, devel]
  notify: [team]
repos:
  pax-app/User:
    codebuild_project: pax-user
    deploy:
      - branch: master
        heroku: { app: pax-user, process_types: [web] }
  pax-app/Gateway:
    codebuild_project: pax-gateway
    sentry_project: gateway
    deploy:
      - branch: master
        heroku: { app: pax-gateway }
sentry:
  projects:
    gateway: { notify: [team, alerts], min_level: error, throttle: 10m }
"#;

#[test]
fn the_local_stacks_parts_are_refused_by_a_deployed_function_with_key_and_line() {
    let config = Config::from_yaml(EXAMPLE).unwrap();
    config.refuse_local_only().unwrap();
    let console = Config::from_yaml("channels:\n  team: { console: {} }\n").unwrap();
    let e = console.refuse_local_only().unwrap_err().to_string();
    assert!(e.contains("channels.team.console at line 2"), "{e}");
    let command = Config::from_yaml(
        "repos:\n  o/r:\n    codebuild_project: p\n    deploy:\n      - branch: master\n        command: { run: 'echo hi' }\n",
    )
    .unwrap();
    let e = command.refuse_local_only().unwrap_err().to_string();
    assert!(e.contains("repos.o/r.deploy[0].command at line 6"), "{e}");
}

#[test]
fn the_architecture_example_loads() {
    let config = Config::from_yaml(EXAMPLE).unwrap();
    let user = config.repo("pax-app/User").unwrap();
    assert_eq!(user.codebuild_project, "pax-user");
    assert!(config.is_stable_branch(user, "devel"));
    assert!(!config.is_stable_branch(user, "feature/x"));
    assert_eq!(config.notify_channels(user), vec!["team".to_string()]);
    let gateway = config
        .repo("PAX-APP/gateway")
        .expect("case-insensitive lookup");
    let rule = config.deploy_rule(gateway, "master").unwrap();
    assert_eq!(rule.target_key("pax-app/Gateway"), "heroku:pax-gateway");
    assert_eq!(rule.heroku.as_ref().unwrap().process_types, vec!["web"]);
    assert_eq!(rule.environment, "production");
    let sentry = &config.sentry.projects["gateway"];
    assert_eq!(sentry.throttle, Some(Duration::from_secs(600)));
    assert_eq!(sentry.min_level, Level::Error);
    assert!(config.supersede(user));
    assert!(!config.build_forks(user));
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let yaml = "repos:\n  a/b:\n    codebuild_project: p\n    deploy_branch: master\n";
    let err = Config::from_yaml(yaml).unwrap_err().to_string();
    assert!(err.contains("deploy_branch"), "{err}");
    assert!(err.contains('4'), "names line 4: {err}");
}

#[test]
fn a_repo_without_a_build_project_is_refused() {
    let yaml = "repos:\n  a/b:\n    deploy: []\n";
    let err = Config::from_yaml(yaml).unwrap_err().to_string();
    assert!(err.contains("codebuild_project"), "{err}");
}

#[test]
fn an_undefined_channel_is_named_with_its_line() {
    let yaml = "channels:\n  team: { console: {} }\ndefaults:\n  notify: [team, ops]\n";
    let err = Config::from_yaml(yaml).unwrap_err().to_string();
    assert!(err.contains("`ops`"), "{err}");
    assert!(err.contains("defaults.notify at line 4"), "{err}");
}

#[test]
fn a_named_secret_must_exist() {
    let config = Config::from_yaml(EXAMPLE).unwrap();
    let secrets = Secrets::default().with("telegram_bot_token", "t");
    let err = config.check_secrets(&secrets).unwrap_err().to_string();
    assert!(
        err.contains("channels.alerts.webhook_secret at line 4"),
        "{err}"
    );
    assert!(err.contains("`slack_alerts_url`"), "{err}");
    let secrets = secrets.with("slack_alerts_url", "https://hooks.slack.test/x");
    config.check_secrets(&secrets).unwrap();
}

#[test]
fn a_deploy_rule_needs_exactly_one_target() {
    let yaml = "repos:\n  a/b:\n    codebuild_project: p\n    deploy:\n      - branch: master\n";
    let err = Config::from_yaml(yaml).unwrap_err().to_string();
    assert!(err.contains("repos.a/b.deploy[0]"), "{err}");
}

#[test]
fn a_bad_duration_says_what_to_write() {
    let yaml = "sentry:\n  throttle: ten minutes\n";
    let err = Config::from_yaml(yaml).unwrap_err().to_string();
    assert!(err.contains("10m"), "{err}");
}

fn with_rules(rules: &str, sentry: bool) -> Result<Config, ConfigError> {
    let project = if sentry {
        "    sentry_project: user\n"
    } else {
        ""
    };
    Config::from_yaml(&format!(
        "repos:\n  o/r:\n    codebuild_project: p\n{project}    deploy:\n{rules}sentry:\n  projects:\n    user: {{ min_level: error }}\n"
    ))
}

#[test]
fn a_promotion_chain_loads_and_names_its_source_and_gate() {
    let config = with_rules(
        "      - branch: master\n        environment: staging\n        heroku: { app: r-staging }\n      \
         - promote_from: staging\n        environment: canary\n        heroku: { app: r-canary }\n        after: 30m\n        gate: sentry\n      \
         - promote_from: canary\n        environment: production\n        heroku: { app: r }\n        gate: approval\n        auto_rollback: { window: 15m, new_issues: 1, events: 50, min_level: error }\n",
        true,
    )
    .unwrap();
    let repo = config.repo("o/r").unwrap();
    let next: Vec<&str> = config
        .promotions_from(repo, "staging")
        .map(|r| r.environment.as_str())
        .collect();
    assert_eq!(next, ["canary"]);
    let canary = &repo.deploy[1];
    assert_eq!(
        (canary.after, canary.gate()),
        (Some(Duration::from_secs(1800)), Gate::Sentry)
    );
    assert_eq!(repo.deploy[2].auto_rollback.as_ref().unwrap().events, 50);
    // A promotion rule is not a branch's rule.
    assert_eq!(
        config.deploy_rule(repo, "master").unwrap().environment,
        "staging"
    );
}

#[test]
fn a_promotion_from_nowhere_a_cycle_and_a_gate_without_sentry_are_refused_with_the_line() {
    let from_nowhere = with_rules(
        "      - branch: master\n        heroku: { app: r }\n      - promote_from: staging\n        environment: prod\n        heroku: { app: r2 }\n",
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        from_nowhere.contains("repos.o/r.deploy[1].promote_from at line 8")
            && from_nowhere.contains(
                "no rule of repos.o/r deploys environment `staging` (deployed: production, prod)"
            ),
        "{from_nowhere}"
    );
    let cycle = with_rules(
        "      - promote_from: b\n        environment: a\n        heroku: { app: r1 }\n      - promote_from: a\n        environment: b\n        heroku: { app: r2 }\n",
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        cycle.contains("promotions go round in a cycle: a ← b ← a"),
        "{cycle}"
    );
    let no_sentry = with_rules(
        "      - branch: master\n        environment: staging\n        heroku: { app: r1 }\n      - promote_from: staging\n        heroku: { app: r2 }\n        gate: sentry\n",
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        no_sentry.contains("repos.o/r.deploy[1].gate at line 10")
            && no_sentry.contains("has no `sentry_project`"),
        "{no_sentry}"
    );
    let both = with_rules(
        "      - branch: master\n        environment: staging\n        heroku: { app: r1 }\n      - branch: devel\n        promote_from: staging\n        heroku: { app: r2 }\n",
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(both.contains("not both"), "{both}");
}

#[test]
fn chatops_allows_only_the_listed_people_and_needs_a_chat_to_listen_to() {
    let config = Config::from_yaml(&format!(
        "{EXAMPLE}chatops:\n  allow:\n    rollback: [1111, 2222]\n    deploy: [1111]\n"
    ))
    .unwrap();
    assert!(config.chatops.enabled());
    assert!(config.chatops.may(ChatPower::Rollback, 2222));
    assert!(!config.chatops.may(ChatPower::Deploy, 2222));
    assert!(!config.chatops.may(ChatPower::Promote, 1111));
    assert_eq!(config.telegram_chats(), [-1001234567890]);

    let no_chat = Config::from_yaml(
        "channels:\n  ops: { slack: { webhook_secret: s } }\nchatops:\n  allow:\n    rollback: [1111]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(no_chat.contains("chatops.allow at line 5"), "{no_chat}");
    assert!(no_chat.contains("none is defined"), "{no_chat}");

    let group = Config::from_yaml(&format!(
        "{EXAMPLE}chatops:\n  allow:\n    promote: [-1001234567890]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(group.contains("chatops.allow.promote at line"), "{group}");
    assert!(group.contains("is not a Telegram user id"), "{group}");

    let nobody = Config::from_yaml(EXAMPLE).unwrap();
    assert!(!nobody.chatops.enabled());
    let local = Config::from_yaml("channels:\n  team: { console: { chat_id: -5 } }\n").unwrap();
    assert_eq!(local.telegram_chats(), [-5]);
}
