//! Each repo's CodeBuild project as shipline needs it, compared with what the account has.
//!
//! What shipline owns on a project, and so compares and sets: the GitHub source on that repo,
//! no CodeBuild webhook (shipline starts the builds; a webhook would build every push twice),
//! CodeBuild's own commit status off (shipline posts it), the stack's service role, privileged
//! mode (Docker builds), and the variables the example buildspec reads: `HEROKU_APP` (and
//! `HEROKU_APPS`, every app of the repo, when promotions need the image in more than one), and
//! `HEROKU_API_KEY` from the stack's secret (never on a fork project, whose role cannot read
//! it). The build image, compute type and any other variable are the team's: set once when
//! the project is created, kept on update.
//!
//! The image is x86_64 (`aws/codebuild/standard:7.0`): Heroku's dynos run linux/amd64 images.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::anyhow;
use aws_sdk_codebuild::error::DisplayErrorContext;
use aws_sdk_codebuild::types::{
    ArtifactsType, AuthType, ComputeType, EnvironmentType, EnvironmentVariable,
    EnvironmentVariableType, Project, ProjectArtifacts, ProjectEnvironment, ProjectSource,
    ServerType, SourceType,
};
use shared::config::Config;
use shared::secrets::SecretString;

use super::{Action, Change, Step};
use crate::stack::{Aws, Stack};

pub const BUILD_IMAGE: &str = "aws/codebuild/standard:7.0";

/// A variable shipline sets on a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub value: String,
    pub secret: bool,
}

/// What one project should be.
#[derive(Debug, Clone)]
pub struct Desired {
    pub name: String,
    pub repo: String,
    pub fork: bool,
    pub location: String,
    pub role: String,
    pub variables: BTreeMap<String, Variable>,
}

/// A project to create, or to update from what it is.
#[derive(Debug, Clone)]
pub struct ProjectChange {
    desired: Desired,
    existing: Option<Box<Project>>,
}

pub fn repo_location(repo: &str) -> String {
    format!("https://github.com/{repo}.git")
}

/// The projects the config names, or the first conflict (a project named by two repos
/// cannot point at both).
pub fn desired(config: &Config, stack: &Stack) -> anyhow::Result<Vec<Desired>> {
    let role = stack.output("CodeBuildServiceRoleArn")?;
    let fork_role = stack.output("CodeBuildForkServiceRoleArn")?;
    let secret_arn = stack.parameter("SecretArn")?;
    let mut projects: Vec<Desired> = Vec::new();
    for (repo_name, repo) in &config.repos {
        let mut variables = BTreeMap::new();
        let apps: Vec<&str> = repo
            .deploy
            .iter()
            .filter_map(|rule| rule.heroku.as_ref())
            .map(|h| h.app.as_str())
            .collect();
        if let Some(first) = apps.first() {
            variables.insert(
                "HEROKU_APP".to_string(),
                Variable {
                    value: first.to_string(),
                    secret: false,
                },
            );
            // Heroku keeps images per app: a promotion releases the same image id to the
            // next app, so the build pushes it to every one.
            if apps.len() > 1 {
                variables.insert(
                    "HEROKU_APPS".to_string(),
                    Variable {
                        value: apps.join(" "),
                        secret: false,
                    },
                );
            }
            variables.insert(
                "HEROKU_API_KEY".to_string(),
                Variable {
                    value: format!("{secret_arn}:heroku_api_key"),
                    secret: true,
                },
            );
        }
        let main = Desired {
            name: repo.codebuild_project.clone(),
            repo: repo_name.clone(),
            fork: false,
            location: repo_location(repo_name),
            role: role.to_string(),
            variables: variables.clone(),
        };
        variables.retain(|_, v| !v.secret);
        let fork = repo.fork_codebuild_project.as_ref().map(|name| Desired {
            name: name.clone(),
            repo: repo_name.clone(),
            fork: true,
            location: repo_location(repo_name),
            role: fork_role.to_string(),
            variables,
        });
        for project in std::iter::once(main).chain(fork) {
            if let Some(other) = projects.iter().find(|p| p.name == project.name) {
                anyhow::bail!(
                    "the CodeBuild project {} is named by {} and {}: a project builds one \
                     repo, give each its own codebuild_project",
                    project.name,
                    other.repo,
                    project.repo
                );
            }
            projects.push(project);
        }
    }
    Ok(projects)
}

/// Reads the projects and plans each.
pub async fn plan(aws: &Aws, desired: Vec<Desired>) -> Vec<Step> {
    let names: Vec<String> = desired.iter().map(|d| d.name.clone()).collect();
    let mut found: BTreeMap<String, Project> = BTreeMap::new();
    // BatchGetProjects takes at most 100 names.
    for chunk in names.chunks(100) {
        match aws
            .codebuild
            .batch_get_projects()
            .set_names(Some(chunk.to_vec()))
            .send()
            .await
        {
            Ok(answer) => {
                for project in answer.projects() {
                    if let Some(name) = project.name() {
                        found.insert(name.to_string(), project.clone());
                    }
                }
            }
            Err(e) => {
                return vec![Step::blocked(
                    "codebuild projects",
                    format!("cannot read them: {}", DisplayErrorContext(e)),
                    "the credentials need codebuild:BatchGetProjects, CreateProject and \
                     UpdateProject in the stack's region",
                )];
            }
        }
    }
    desired
        .into_iter()
        .map(|d| {
            let resource = format!(
                "codebuild project {}{}",
                d.name,
                if d.fork { " (forks)" } else { "" }
            );
            match found.remove(&d.name) {
                None => Step::new(
                    resource,
                    Change::Create(describe(&d)),
                    Action::Project(ProjectChange {
                        desired: d,
                        existing: None,
                    }),
                ),
                Some(existing) => {
                    let differences = differences(&d, &existing);
                    if differences.is_empty() {
                        Step::unchanged(resource)
                    } else {
                        Step::new(
                            resource,
                            Change::Update(differences),
                            Action::Project(ProjectChange {
                                desired: d,
                                existing: Some(Box::new(existing)),
                            }),
                        )
                    }
                }
            }
        })
        .collect()
}

fn describe(d: &Desired) -> Vec<String> {
    let mut out = vec![
        format!("GitHub source {}", d.repo),
        format!("role {}", role_name(&d.role)),
        format!("{BUILD_IMAGE}, privileged (Docker)"),
    ];
    out.extend(d.variables.iter().map(|(name, v)| variable_text(name, v)));
    out
}

fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn variable_text(name: &str, v: &Variable) -> String {
    if v.secret {
        format!("{name} from the secret")
    } else {
        format!("{name}={}", v.value)
    }
}

fn is_secret_type(kind: Option<&EnvironmentVariableType>) -> bool {
    matches!(
        kind,
        Some(EnvironmentVariableType::SecretsManager | EnvironmentVariableType::ParameterStore)
    )
}

/// What differs between a project and what shipline needs of it, one phrase each.
pub fn differences(d: &Desired, project: &Project) -> Vec<String> {
    let mut out = Vec::new();
    let source = project.source();
    let location = source.and_then(ProjectSource::location).unwrap_or("");
    let is_github = source.is_some_and(|s| s.r#type() == &SourceType::Github);
    if !is_github || location.trim_end_matches('/') != d.location {
        out.push(format!("source {location} → {}", d.location));
    }
    if source.and_then(ProjectSource::report_build_status) == Some(true) {
        out.push("CodeBuild's own commit status off (shipline posts it)".into());
    }
    if project.webhook().is_some() {
        out.push("CodeBuild's webhook removed (shipline starts the builds)".into());
    }
    if project.service_role() != Some(d.role.as_str()) {
        out.push(format!(
            "role {} → {}",
            role_name(project.service_role().unwrap_or("none")),
            role_name(&d.role)
        ));
    }
    let environment = project.environment();
    if environment.and_then(ProjectEnvironment::privileged_mode) != Some(true) {
        out.push("privileged mode on (Docker builds)".into());
    }
    let existing: BTreeMap<&str, &EnvironmentVariable> = environment
        .map(ProjectEnvironment::environment_variables)
        .unwrap_or_default()
        .iter()
        .map(|v| (v.name(), v))
        .collect();
    for (name, want) in &d.variables {
        let same = existing.get(name.as_str()).is_some_and(|have| {
            have.value() == want.value && is_secret_type(have.r#type()) == want.secret
        });
        if !same {
            out.push(variable_text(name, want));
        }
    }
    if d.fork {
        let secret: BTreeSet<&str> = existing
            .values()
            .filter(|v| is_secret_type(v.r#type()))
            .map(|v| v.name())
            .collect();
        if !secret.is_empty() {
            out.push(format!(
                "secret variables removed from a fork project: {}",
                secret.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    out
}

fn sdk<T, E>(result: Result<T, aws_sdk_codebuild::error::SdkError<E>>) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    result.map_err(|e| anyhow!("{}", DisplayErrorContext(e)))
}

fn variable(name: &str, value: &str, kind: EnvironmentVariableType) -> EnvironmentVariable {
    EnvironmentVariable::builder()
        .name(name)
        .value(value)
        .r#type(kind)
        .build()
        .expect("name and value are set")
}

/// The environment to send: the existing one (image, compute, the team's variables) with
/// shipline's parts set, or a new x86_64 one.
fn environment(d: &Desired, existing: Option<&ProjectEnvironment>) -> ProjectEnvironment {
    let mut variables: Vec<EnvironmentVariable> = existing
        .map(ProjectEnvironment::environment_variables)
        .unwrap_or_default()
        .iter()
        .filter(|v| !d.variables.contains_key(v.name()))
        .filter(|v| !(d.fork && is_secret_type(v.r#type())))
        .cloned()
        .collect();
    for (name, v) in &d.variables {
        let kind = if v.secret {
            EnvironmentVariableType::SecretsManager
        } else {
            EnvironmentVariableType::Plaintext
        };
        variables.push(variable(name, &v.value, kind));
    }
    let builder = match existing {
        Some(e) => ProjectEnvironment::builder()
            .r#type(e.r#type().clone())
            .image(e.image())
            .compute_type(e.compute_type().clone())
            .set_certificate(e.certificate().map(str::to_string))
            .set_registry_credential(e.registry_credential().cloned())
            .set_image_pull_credentials_type(e.image_pull_credentials_type().cloned()),
        None => ProjectEnvironment::builder()
            .r#type(EnvironmentType::LinuxContainer)
            .image(BUILD_IMAGE)
            .compute_type(ComputeType::BuildGeneral1Small),
    };
    builder
        .privileged_mode(true)
        .set_environment_variables(Some(variables))
        .build()
        .expect("type, image and compute type are set")
}

fn source(d: &Desired, existing: Option<&ProjectSource>) -> ProjectSource {
    ProjectSource::builder()
        .r#type(SourceType::Github)
        .location(&d.location)
        .set_buildspec(existing.and_then(|s| s.buildspec().map(str::to_string)))
        .report_build_status(false)
        .build()
        .expect("type is set")
}

impl ProjectChange {
    pub async fn apply(&self, aws: &Aws) -> anyhow::Result<()> {
        let d = &self.desired;
        let existing = self.existing.as_deref();
        let source = source(d, existing.and_then(Project::source));
        let environment = environment(d, existing.and_then(Project::environment));
        match existing {
            None => {
                let artifacts = ProjectArtifacts::builder()
                    .r#type(ArtifactsType::NoArtifacts)
                    .build()
                    .expect("type is set");
                sdk(aws
                    .codebuild
                    .create_project()
                    .name(&d.name)
                    .description(format!("shipline builds of {}", d.repo))
                    .source(source)
                    .artifacts(artifacts)
                    .environment(environment)
                    .service_role(&d.role)
                    .send()
                    .await)?;
            }
            Some(project) => {
                if project.webhook().is_some() {
                    sdk(aws
                        .codebuild
                        .delete_webhook()
                        .project_name(&d.name)
                        .send()
                        .await)?;
                }
                sdk(aws
                    .codebuild
                    .update_project()
                    .name(&d.name)
                    .source(source)
                    .environment(environment)
                    .service_role(&d.role)
                    .send()
                    .await)?;
            }
        }
        Ok(())
    }
}

/// CodeBuild clones GitHub sources with the account's GitHub credential: one is imported from
/// the secret's `github_token` when the account has none.
pub async fn credential(aws: &Aws, token: Option<&SecretString>) -> Step {
    const RESOURCE: &str = "codebuild GitHub credential";
    const FIX: &str = "connect CodeBuild to GitHub once: CodeBuild console → Create project → \
        Source: GitHub → Connect using OAuth (then cancel), or add github_token to the secret \
        and run setup again";
    let answer = match aws.codebuild.list_source_credentials().send().await {
        Ok(answer) => answer,
        Err(e) => {
            return Step::blocked(
                RESOURCE,
                format!("cannot list them: {}", DisplayErrorContext(e)),
                "the credentials need codebuild:ListSourceCredentials",
            );
        }
    };
    let connected = answer
        .source_credentials_infos()
        .iter()
        .any(|c| c.server_type() == Some(&ServerType::Github));
    match (connected, token) {
        (true, _) => Step::unchanged(RESOURCE),
        (false, Some(token)) => Step::new(
            RESOURCE,
            Change::Create(vec!["the secret's github_token".into()]),
            Action::ImportCredential(token.clone()),
        ),
        (false, None) => Step::blocked(RESOURCE, "the account has none", FIX),
    }
}

pub async fn import_credential(aws: &Aws, token: &SecretString) -> anyhow::Result<()> {
    sdk(aws
        .codebuild
        .import_source_credentials()
        .server_type(ServerType::Github)
        .auth_type(AuthType::PersonalAccessToken)
        .token(token.expose())
        .send()
        .await)?;
    Ok(())
}
