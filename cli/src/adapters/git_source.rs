//! Where the local build runner gets a commit it has no `--repo` checkout of: GitHub itself,
//! over HTTPS with git, into a bare cache repository per repo (`DIR/git/<owner>/<name>.git`),
//! from which each build gets a worktree of its commit.
//!
//! The credential (the configured token, or the App's installation token for the repo) reaches
//! git only through its environment (`GIT_CONFIG_*`: an `http.<base>/.extraheader`), never the
//! URL, the arguments or a log; git's own words, when a fetch fails, are scrubbed of anything
//! that looks like a token before they become the build's reason.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use shared::github::client::GitHubClient;
use shared::secrets::SecretString;

/// Where repositories are fetched from without `GITHUB_GIT_URL`.
pub const PUBLIC_GIT: &str = "https://github.com";

/// How long one git command may take before it is killed and the build fails.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// GitHub as the source of builds: `base` (`GITHUB_GIT_URL`, default `https://github.com`)
/// serves `<base>/<owner>/<name>.git`.
pub struct GitHubSource {
    base: String,
    cache: PathBuf,
    /// The configured token or App; `None` fetches anonymously (public repos).
    credentials: Option<GitHubClient>,
    /// One fetch at a time per repo: git locks a repository's shallow file while it fetches.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    timeout: Duration,
}

/// The commit a build wants, and the ref it was pushed on, should GitHub refuse it by id.
pub struct Wanted<'a> {
    pub repo: &'a str,
    pub sha: &'a str,
    /// `refs/heads/<branch>` or `refs/pull/<n>/head`.
    pub pushed_ref: Option<String>,
}

impl GitHubSource {
    /// Caches under `cache`; fetches from `GITHUB_GIT_URL` (default `https://github.com`).
    pub fn new(cache: PathBuf, credentials: Option<GitHubClient>) -> Self {
        let base = std::env::var("GITHUB_GIT_URL")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| PUBLIC_GIT.into());
        Self {
            base: base.trim_end_matches('/').to_string(),
            cache,
            credentials,
            locks: Mutex::default(),
            timeout: GIT_TIMEOUT,
        }
    }

    /// The clone URL of `repo` (`owner/name`).
    pub fn url(&self, repo: &str) -> String {
        format!("{}/{repo}.git", self.base)
    }

    /// The bare cache repository of `repo`; refused for a name that is not `owner/name`.
    fn cache_of(&self, repo: &str) -> Result<PathBuf, String> {
        let safe = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match repo.split_once('/') {
            Some((owner, name)) if safe(owner) && safe(name) => Ok(self
                .cache
                .join(owner.to_ascii_lowercase())
                .join(format!("{}.git", name.to_ascii_lowercase()))),
            _ => Err(format!(
                "CLIENT_ERROR: `{repo}` is not a GitHub repository name (owner/name)"
            )),
        }
    }

    /// Makes `dir` a worktree of `wanted.sha`, fetched from GitHub unless the cache has it; the
    /// reason, in CodeBuild's words and naming the repo and commit, when it cannot.
    pub async fn check_out(&self, wanted: &Wanted<'_>, dir: &Path) -> Result<(), String> {
        let cache = self.cache_of(wanted.repo)?;
        let hex = |c: char| c.is_ascii_hexdigit();
        if !matches!(wanted.sha.len(), 40 | 64) || !wanted.sha.chars().all(hex) {
            return Err(format!(
                "CLIENT_ERROR: cannot fetch {}@{}: not a commit id",
                wanted.repo, wanted.sha
            ));
        }
        let lock = self
            .locks
            .lock()
            .unwrap()
            .entry(cache.clone())
            .or_default()
            .clone();
        let _held = lock.lock().await;
        let what = format!("{}@{}", wanted.repo, wanted.sha);
        if !cache.join("HEAD").exists() {
            std::fs::create_dir_all(&cache)
                .map_err(|e| format!("CLIENT_ERROR: cannot create the cache of {what}: {e}"))?;
            let init = git(&cache, None, ["init", "--bare", "--quiet", "."]);
            self.run(init, None, &what).await?;
        }
        if !self.has_commit(&cache, wanted.sha).await {
            self.fetch(&cache, wanted).await?;
        }
        let prune = git(&cache, None, ["worktree", "prune"]);
        self.run(prune, None, &what).await?;
        let add = ["worktree", "add", "--quiet", "--detach", "--force"].map(OsStr::new);
        let add = git(
            &cache,
            None,
            add.into_iter()
                .chain([dir.as_os_str(), wanted.sha.as_ref()]),
        );
        self.run(add, None, &what).await.map(drop)
    }

    async fn has_commit(&self, cache: &Path, sha: &str) -> bool {
        let probe = git(
            cache,
            None,
            ["cat-file", "-e", &format!("{sha}^{{commit}}")],
        );
        self.run(probe, None, sha).await.is_ok()
    }

    /// `git fetch --depth=1 <url> <sha>`; when refused, the ref it was pushed on, which must
    /// still point at the commit.
    async fn fetch(&self, cache: &Path, wanted: &Wanted<'_>) -> Result<(), String> {
        let what = format!("{}@{}", wanted.repo, wanted.sha);
        let token = match &self.credentials {
            None => None,
            Some(client) => Some(client.token_for(wanted.repo).await.map_err(|e| {
                format!("CLIENT_ERROR: cannot fetch {what}: no GitHub token for it: {e}")
            })?),
        };
        let url = self.url(wanted.repo);
        let fetch = |target: &str| fetch_command(cache, &self.base, token.as_ref(), &url, target);
        let by_id = match self.run(fetch(wanted.sha), token.as_ref(), &what).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(pushed) = &wanted.pushed_ref else {
            return Err(by_id);
        };
        self.run(fetch(pushed), token.as_ref(), &what)
            .await
            .map_err(|e| format!("{by_id}; {pushed}: {e}"))?;
        if self.has_commit(cache, wanted.sha).await {
            Ok(())
        } else {
            Err(format!("{by_id}; not on {pushed} either"))
        }
    }

    /// Runs `command` for at most the timeout (killed after it); its output when it succeeds,
    /// else why not, in words that carry no token.
    async fn run(
        &self,
        mut command: tokio::process::Command,
        token: Option<&SecretString>,
        what: &str,
    ) -> Result<Output, String> {
        command
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        let output = tokio::time::timeout(self.timeout, command.output()).await;
        match output {
            Err(_) => Err(format!(
                "CLIENT_ERROR: cannot fetch {what}: git took longer than {}s",
                self.timeout.as_secs()
            )),
            Ok(Err(e)) => Err(format!("CLIENT_ERROR: cannot run git for {what}: {e}")),
            Ok(Ok(out)) if out.status.success() => Ok(out),
            Ok(Ok(out)) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let said = scrub(stderr.trim(), token).replace('\n', " / ");
                Err(format!("CLIENT_ERROR: cannot fetch {what}: {said}"))
            }
        }
    }
}

/// `git -C <dir> <args>` with no terminal prompt and no credential but `token` (for URLs
/// under its base), when given.
fn git<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(
    dir: &Path,
    token: Option<(&str, &SecretString)>,
    args: I,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true");
    if let Some((base, token)) = token {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", token.expose()));
        command
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", format!("http.{base}/.extraheader"))
            .env(
                "GIT_CONFIG_VALUE_0",
                format!("AUTHORIZATION: basic {basic}"),
            );
    }
    command
}

/// `git fetch` of one commit (or ref), `target`, from `url` into `cache`, the credential in
/// the environment only.
fn fetch_command(
    cache: &Path,
    base: &str,
    token: Option<&SecretString>,
    url: &str,
    target: &str,
) -> tokio::process::Command {
    let args = [
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--depth=1",
    ];
    git(
        cache,
        token.map(|t| (base, t)),
        args.into_iter().chain([url, target]),
    )
}

/// `text` without `token` (plain or as its basic-auth header) and without any word that looks
/// like a GitHub token or a credential in a URL.
fn scrub(text: &str, token: Option<&SecretString>) -> String {
    let mut text = text.to_string();
    if let Some(token) = token.map(SecretString::expose).filter(|t| !t.is_empty()) {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        text = text
            .replace(&basic, "[redacted]")
            .replace(token, "[redacted]");
    }
    let looks_secret = |word: &str| {
        [
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
            "x-access-token",
        ]
        .iter()
        .any(|p| word.contains(p))
            || (word.contains(':') && word.contains('@'))
    };
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let bare = word.trim_end();
            if looks_secret(bare) {
                format!("[redacted]{}", &word[bare.len()..])
            } else {
                word.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_reaches_git_through_its_environment_only() {
        let token = SecretString::new("ghs_s3cr3tT0ken");
        let command = fetch_command(
            Path::new("/cache/acme/app.git"),
            PUBLIC_GIT,
            Some(&token),
            "https://github.com/acme/app.git",
            "0123456789abcdef0123456789abcdef01234567",
        );
        let command = command.as_std();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.iter().all(|a| !a.contains("s3cr3t")), "{args:?}");
        let env: HashMap<String, String> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into(), v?.to_string_lossy().into())))
            .collect();
        let basic =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:ghs_s3cr3tT0ken");
        assert_eq!(env["GIT_CONFIG_COUNT"], "1");
        assert_eq!(
            env["GIT_CONFIG_KEY_0"],
            "http.https://github.com/.extraheader"
        );
        assert_eq!(
            env["GIT_CONFIG_VALUE_0"],
            format!("AUTHORIZATION: basic {basic}")
        );
        assert_eq!(env["GIT_TERMINAL_PROMPT"], "0");
        // Without a token, no header at all.
        let anonymous = fetch_command(Path::new("/c"), PUBLIC_GIT, None, "u", "t");
        assert!(
            anonymous
                .as_std()
                .get_envs()
                .all(|(k, _)| k != "GIT_CONFIG_COUNT")
        );
    }

    #[test]
    fn what_git_says_is_told_without_tokens() {
        let token = SecretString::new("ghs_s3cr3tT0ken");
        let basic =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:ghs_s3cr3tT0ken");
        let said = scrub(
            &format!(
                "fatal: unable to access 'https://x-access-token:abc@github.com/a/b.git/': 403\n\
                 header AUTHORIZATION: basic {basic}\nghp_other123 s3 ghs_s3cr3tT0ken"
            ),
            Some(&token),
        );
        for secret in ["abc@", &basic, "ghp_other123", "s3cr3t"] {
            assert!(!said.contains(secret), "{said}");
        }
        assert!(said.starts_with("fatal: unable to access"), "{said}");
    }

    #[test]
    fn a_repo_name_that_is_not_owner_slash_name_is_refused() {
        let source = GitHubSource::new(PathBuf::from("/data/git"), None);
        assert_eq!(
            source.cache_of("Acme/App").unwrap(),
            PathBuf::from("/data/git/acme/app.git")
        );
        for bad in ["acme", "../etc/passwd", "acme/..", "a/b/c", "acme/app name"] {
            assert!(source.cache_of(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_commit_fetched_by_id_is_checked_out_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("remote/acme/app.git");
        let sha = commit_in_a_bare_repo(&origin);
        let mut source = GitHubSource::new(dir.path().join("git"), None);
        source.base = format!("file://{}", dir.path().join("remote").display());
        let wanted = Wanted {
            repo: "acme/app",
            sha: &sha,
            pushed_ref: Some("refs/heads/master".into()),
        };
        let work = dir.path().join("build-1");
        source.check_out(&wanted, &work).await.unwrap();
        assert_eq!(std::fs::read_to_string(work.join("f")).unwrap(), "hi\n");
        // Again, from the cache, into a fresh directory of the same name.
        std::fs::remove_dir_all(&work).unwrap();
        source.check_out(&wanted, &work).await.unwrap();

        let missing = "1111111111111111111111111111111111111111";
        let wanted = Wanted {
            sha: missing,
            ..wanted
        };
        let reason = source
            .check_out(&wanted, &dir.path().join("build-2"))
            .await
            .unwrap_err();
        assert!(
            reason.contains(&format!("cannot fetch acme/app@{missing}")),
            "{reason}"
        );
        assert!(
            reason.ends_with("; not on refs/heads/master either"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn as_a_github_app_it_fetches_with_the_repos_installation_token() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let api = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/repos/acme/app/installation"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": 7})))
            .mount(&api)
            .await;
        let minted =
            serde_json::json!({"token": "ghs_minted", "expires_at": "2099-01-01T00:00:00Z"});
        Mock::given(method("POST"))
            .and(path("/app/installations/7/access_tokens"))
            .respond_with(ResponseTemplate::new(201).set_body_json(minted))
            .expect(1)
            .mount(&api)
            .await;
        let secrets = shared::secrets::Secrets::default()
            .with("github_app_id", "1")
            .with(
                "github_app_private_key",
                include_str!("../../../shared/testdata/test-app-key.pem"),
            );
        let auth = shared::github::client::Auth::from_secrets(&secrets).unwrap();
        let client = GitHubClient::new(reqwest::Client::new(), api.uri(), auth);
        let dir = tempfile::tempdir().unwrap();
        let sha = commit_in_a_bare_repo(&dir.path().join("remote/acme/app.git"));
        let mut source = GitHubSource::new(dir.path().join("git"), Some(client));
        source.base = format!("file://{}", dir.path().join("remote").display());
        let wanted = Wanted {
            repo: "acme/app",
            sha: &sha,
            pushed_ref: None,
        };
        source
            .check_out(&wanted, &dir.path().join("build-1"))
            .await
            .unwrap();
        // A repo the App is not installed on: the build fails, naming it.
        let elsewhere = Wanted {
            repo: "acme/other",
            ..wanted
        };
        let reason = source
            .check_out(&elsewhere, &dir.path().join("build-2"))
            .await
            .unwrap_err();
        assert!(
            reason.starts_with(&format!(
                "CLIENT_ERROR: cannot fetch acme/other@{sha}: no GitHub token"
            )),
            "{reason}"
        );
    }

    /// A bare repository at `bare` whose master has one commit (file `f`); its id.
    fn commit_in_a_bare_repo(bare: &Path) -> String {
        let work = bare.with_extension("work");
        std::fs::create_dir_all(&work).unwrap();
        let git = |dir: &Path, args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
                .args(["-c", "commit.gpgsign=false"])
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        git(&work, &["init", "--quiet", "--initial-branch=master"]);
        std::fs::write(work.join("f"), "hi\n").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "--quiet", "-m", "First"]);
        let bare_arg = bare.to_str().unwrap();
        git(&work, &["clone", "--quiet", "--bare", ".", bare_arg]);
        git(&work, &["rev-parse", "HEAD"])
    }
}
