//! GitHub as far as a local repository can answer it, for `shipline demo`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use shared::messages::short_sha;
use shared::ports::{
    CommitStatus, Comparison, DeploymentStatus, GitHub, GitHubError, NewDeployment,
};

/// GitHub as far as a local repository can answer it: branch heads and ancestry from git;
/// statuses and deployments are reported through `report` (the demo prints them).
pub struct LocalGitHub {
    repos: BTreeMap<String, PathBuf>,
    report: Box<dyn Fn(String) + Send + Sync>,
    next_deployment: Mutex<u64>,
}

impl LocalGitHub {
    pub fn new(
        repos: BTreeMap<String, PathBuf>,
        report: Box<dyn Fn(String) + Send + Sync>,
    ) -> Self {
        Self {
            repos,
            report,
            next_deployment: Mutex::new(0),
        }
    }

    fn dir(&self, repo: &str) -> Result<&Path, GitHubError> {
        self.repos
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(repo))
            .map(|(_, d)| d.as_path())
            .ok_or_else(|| GitHubError::Rejected {
                status: 404,
                message: format!("no local checkout of {repo}"),
            })
    }

    async fn git(&self, repo: &str, args: &[&str]) -> Result<(bool, String), GitHubError> {
        let out = tokio::process::Command::new("git")
            .args(args)
            .current_dir(self.dir(repo)?)
            .output()
            .await
            .map_err(|e| GitHubError::Unavailable(format!("cannot run git: {e}")))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    }
}

#[async_trait]
impl GitHub for LocalGitHub {
    async fn set_status(
        &self,
        _repo: &str,
        sha: &str,
        status: &CommitStatus,
        _i: Option<u64>,
    ) -> Result<(), GitHubError> {
        let state = status.state;
        (self.report)(format!(
            "GitHub status {state} on {}: {}",
            short_sha(sha),
            status.description
        ));
        Ok(())
    }

    async fn branch_head(
        &self,
        repo: &str,
        branch: &str,
        _i: Option<u64>,
    ) -> Result<String, GitHubError> {
        let (ok, sha) = self
            .git(repo, &["rev-parse", &format!("refs/heads/{branch}")])
            .await?;
        if ok {
            Ok(sha)
        } else {
            Err(GitHubError::Rejected {
                status: 404,
                message: format!("no branch {branch}"),
            })
        }
    }

    async fn compare(
        &self,
        repo: &str,
        base: &str,
        head: &str,
        _i: Option<u64>,
    ) -> Result<Comparison, GitHubError> {
        if base == head {
            return Ok(Comparison::Identical);
        }
        let (behind, _) = self
            .git(repo, &["merge-base", "--is-ancestor", head, base])
            .await?;
        let (ahead, _) = self
            .git(repo, &["merge-base", "--is-ancestor", base, head])
            .await?;
        Ok(match (ahead, behind) {
            (true, _) => Comparison::Ahead,
            (_, true) => Comparison::Behind,
            _ => Comparison::Diverged,
        })
    }

    async fn create_deployment(
        &self,
        _repo: &str,
        d: &NewDeployment,
        _i: Option<u64>,
    ) -> Result<u64, GitHubError> {
        let id = {
            let mut n = self.next_deployment.lock().unwrap();
            *n += 1;
            *n
        };
        (self.report)(format!(
            "GitHub deployment #{id} of {} to {}",
            short_sha(&d.sha),
            d.environment
        ));
        Ok(id)
    }

    async fn set_deployment_status(
        &self,
        _repo: &str,
        id: u64,
        status: &DeploymentStatus,
        _i: Option<u64>,
    ) -> Result<(), GitHubError> {
        (self.report)(format!(
            "GitHub deployment #{id} {}: {}",
            status.state, status.description
        ));
        Ok(())
    }
}
