//! The decision, without I/O: which deliveries become a `BuildRequest`, and why others do not.

use crate::webhook::{PullRequestEvent, PushEvent};
use shared::config::Config;
use shared::messages::{
    self, BuildRequest, MAX_COMMIT_MESSAGE, PullRequestTrigger, PushTrigger, Trigger,
};

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// What to do with one verified, parsed delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Build(Box<BuildRequest>),
    /// Nothing to build; the reason goes into the reply (`ignored: ...`) and the log.
    Ignore(String),
}

/// Identifies the delivery being planned.
pub struct Delivery<'a> {
    pub id: &'a str,
    pub received_at: String,
}

pub fn plan_push(config: &Config, event: &PushEvent, delivery: Delivery<'_>) -> Plan {
    let Some((repo_name, repo)) = configured(config, &event.repository.full_name) else {
        return not_configured(&event.repository.full_name);
    };
    let Some(branch) = event.git_ref.strip_prefix("refs/heads/") else {
        return if event.git_ref.starts_with("refs/tags/") {
            Plan::Ignore(format!("tag push {} is not built", event.git_ref))
        } else {
            Plan::Ignore(format!("ref {} is not a branch", event.git_ref))
        };
    };
    if event.deleted || event.after == ZERO_SHA {
        return Plan::Ignore(format!("branch {branch} was deleted"));
    }
    if !config.builds_branch(repo, branch) {
        return Plan::Ignore(format!(
            "branch {branch} is not in repos.{repo_name}.branches"
        ));
    }
    let head = event.head_commit.as_ref();
    Plan::Build(Box::new(BuildRequest {
        v: messages::VERSION,
        delivery_id: delivery.id.to_string().into(),
        repo: repo_name.to_string(),
        sha: event.after.clone().into(),
        trigger: Trigger::Push(PushTrigger {
            branch: branch.to_string(),
            before: event.before.clone(),
            after: event.after.clone(),
            forced: event.forced,
            pusher: event.pusher.name.clone(),
            head_commit_message: head
                .map(|c| messages::truncate_chars(&c.message, MAX_COMMIT_MESSAGE))
                .unwrap_or_default(),
            head_commit_url: head.and_then(|c| c.url.clone()),
            head_commit_author: head
                .and_then(|c| c.author.as_ref())
                .map(|a| a.username.clone().unwrap_or_else(|| a.name.clone())),
            compare_url: event.compare.clone(),
        }),
        received_at: delivery.received_at,
        installation_id: event.installation.as_ref().map(|i| i.id),
    }))
}

pub fn plan_pull_request(
    config: &Config,
    event: &PullRequestEvent,
    delivery: Delivery<'_>,
) -> Plan {
    let Some((repo_name, _)) = configured(config, &event.repository.full_name) else {
        return not_configured(&event.repository.full_name);
    };
    if !config.builds_pull_request_action(&event.action) {
        return Plan::Ignore(format!(
            "pull request action `{}` does not start a build",
            event.action
        ));
    }
    let pr = &event.pull_request;
    Plan::Build(Box::new(BuildRequest {
        v: messages::VERSION,
        delivery_id: delivery.id.to_string().into(),
        repo: repo_name.to_string(),
        sha: pr.head.sha.clone().into(),
        trigger: Trigger::PullRequest(PullRequestTrigger {
            number: event.number,
            action: event.action.clone(),
            head_sha: pr.head.sha.clone(),
            head_ref: pr.head.git_ref.clone(),
            base_ref: pr.base.git_ref.clone(),
            fork: event.is_from_fork(),
            title: messages::truncate_chars(&pr.title, MAX_COMMIT_MESSAGE),
            author: pr.user.login.clone(),
            url: pr.html_url.clone(),
        }),
        received_at: delivery.received_at,
        installation_id: event.installation.as_ref().map(|i| i.id),
    }))
}

/// The repo's config entry, under the name the config spells it with.
fn configured<'a>(
    config: &'a Config,
    full_name: &str,
) -> Option<(&'a str, &'a shared::config::Repo)> {
    config
        .repos
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(full_name))
        .map(|(name, repo)| (name.as_str(), repo))
}

fn not_configured(full_name: &str) -> Plan {
    Plan::Ignore(format!("repo {full_name} is not in the config"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::parse;

    fn config() -> Config {
        Config::from_yaml("repos:\n  codertocat/hello-world:\n    codebuild_project: hello\n")
            .unwrap()
    }

    fn delivery() -> Delivery<'static> {
        Delivery {
            id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            received_at: "2026-11-26T10:00:00Z".into(),
        }
    }

    fn push() -> PushEvent {
        parse(include_bytes!("../testdata/github-push.json")).unwrap()
    }

    fn pull_request() -> PullRequestEvent {
        parse(include_bytes!(
            "../testdata/github-pull_request-opened.json"
        ))
        .unwrap()
    }

    #[test]
    fn a_branch_push_builds_its_new_head() {
        let Plan::Build(request) = plan_push(&config(), &push(), delivery()) else {
            panic!("expected a build");
        };
        assert_eq!(
            request.repo, "codertocat/hello-world",
            "the config's spelling"
        );
        assert_eq!(request.sha, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
        assert_eq!(request.message_group_id(), "codertocat/hello-world#master");
        assert_eq!(request.installation_id, Some(1));
        let Trigger::Push(trigger) = &request.trigger else {
            panic!()
        };
        assert_eq!(trigger.branch, "master");
        assert_eq!(trigger.pusher, "Codertocat");
    }

    #[test]
    fn push_to_unconfigured_repo_is_ignored_with_reason() {
        let mut event = push();
        event.repository.full_name = "someone/else".into();
        assert_eq!(
            plan_push(&config(), &event, delivery()),
            Plan::Ignore("repo someone/else is not in the config".into())
        );
    }

    #[test]
    fn tag_pushes_and_deleted_branches_are_ignored() {
        let mut tag = push();
        tag.git_ref = "refs/tags/v1.0.0".into();
        assert!(
            matches!(plan_push(&config(), &tag, delivery()), Plan::Ignore(r) if r.contains("tag push"))
        );
        let mut deleted = push();
        deleted.deleted = true;
        deleted.after = ZERO_SHA.into();
        deleted.head_commit = None;
        assert!(
            matches!(plan_push(&config(), &deleted, delivery()), Plan::Ignore(r) if r.contains("deleted"))
        );
    }

    #[test]
    fn a_long_commit_message_is_cut() {
        let mut event = push();
        event.head_commit.as_mut().unwrap().message = "x".repeat(100_000);
        let Plan::Build(request) = plan_push(&config(), &event, delivery()) else {
            panic!()
        };
        let Trigger::Push(trigger) = &request.trigger else {
            panic!()
        };
        assert_eq!(
            trigger.head_commit_message.chars().count(),
            MAX_COMMIT_MESSAGE
        );
    }

    #[test]
    fn an_opened_pull_request_builds_its_head() {
        let Plan::Build(request) = plan_pull_request(&config(), &pull_request(), delivery()) else {
            panic!("expected a build");
        };
        assert_eq!(request.sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
        assert_eq!(request.message_group_id(), "codertocat/hello-world#pr-2");
        let Trigger::PullRequest(pr) = &request.trigger else {
            panic!()
        };
        assert_eq!(
            (pr.number, pr.fork, pr.head_ref.as_str()),
            (2, false, "changes")
        );
    }

    #[test]
    fn a_fork_pull_request_is_marked() {
        let mut event = pull_request();
        event.pull_request.head.repo.as_mut().unwrap().full_name = "stranger/hello-world".into();
        let Plan::Build(request) = plan_pull_request(&config(), &event, delivery()) else {
            panic!()
        };
        let Trigger::PullRequest(pr) = &request.trigger else {
            panic!()
        };
        assert!(pr.fork);
    }

    #[test]
    fn only_building_actions_build() {
        for action in ["synchronize", "reopened", "ready_for_review"] {
            let mut event = pull_request();
            event.action = action.into();
            assert!(
                matches!(
                    plan_pull_request(&config(), &event, delivery()),
                    Plan::Build(_)
                ),
                "{action}"
            );
        }
        let closed: PullRequestEvent = parse(include_bytes!(
            "../testdata/github-pull_request-closed.json"
        ))
        .unwrap();
        assert_eq!(
            plan_pull_request(&config(), &closed, delivery()),
            Plan::Ignore("pull request action `closed` does not start a build".into())
        );
    }
}
