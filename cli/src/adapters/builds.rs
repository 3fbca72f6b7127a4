//! The local build runner: checks out the commit and runs the buildspec's phase commands, then
//! reports the result as CodeBuild's EventBridge event would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use build_dispatch::codebuild::{BuildInfo, BuildStatus, Builds, BuildsError, Phase, StartBuild};
use shared::ports::{OutgoingMessage, Precondition, Queue, StateError, StateStore};

use super::git_source::{GitHubSource, Wanted};

/// The state record that numbers local builds, so an id is never given twice, even across
/// restarts of `shipline serve`.
const COUNTER_KEY: &str = "local:build-counter";
/// How long a finished build's result is kept for `get` (as CodeBuild keeps a build's record).
const RESULT_TTL_SECS: i64 = 30 * 24 * 3600;

/// A finished build as [`result_key`] keeps it.
fn result_record(info: &BuildInfo) -> serde_json::Value {
    json!({"project": info.project, "status": info.status.as_str(), "exported": info.exported})
}

/// Where a finished build's status and exported variables are kept: build-dispatch reads a
/// green build's image ids with `get` (as it reads them from BatchGetBuilds), and a restart
/// between the result and its handling must not lose them.
fn result_key(id: &str) -> String {
    format!("local:build-result:{id}")
}

/// The parts of a CodeBuild buildspec the local runner understands.
#[derive(Debug, Deserialize)]
struct Buildspec {
    #[serde(default)]
    env: BuildspecEnv,
    #[serde(default)]
    phases: BTreeMap<String, BuildspecPhase>,
}

#[derive(Debug, Default, Deserialize)]
struct BuildspecEnv {
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default, rename = "exported-variables")]
    exported: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct BuildspecPhase {
    #[serde(default)]
    commands: Vec<String>,
}

const PHASES: [(&str, &str); 4] = [
    ("install", "INSTALL"),
    ("pre_build", "PRE_BUILD"),
    ("build", "BUILD"),
    ("post_build", "POST_BUILD"),
];

/// Runs builds on this machine: a checkout of the commit (a fresh clone of the repo's local
/// checkout given with `--repo`, else a worktree of the commit fetched from GitHub, once
/// [`Self::fetch_from_github`] was called), then the buildspec's phases in one shell, in
/// order, stopping at the first failing command. When a build ends, a CodeBuild-shaped state-change event goes to
/// `events`, as EventBridge would deliver it.
///
/// Each started build is recorded in `work/started/` until its event is sent, so a build the
/// process was killed in the middle of runs again, under the same id, at the next start
/// ([`Self::resume`]).
pub struct LocalBuildRunner {
    /// Where each repo (`owner/name`) lives on this machine.
    repos: BTreeMap<String, PathBuf>,
    work: PathBuf,
    events: Arc<dyn Queue>,
    state: Arc<dyn StateStore>,
    builds: Arc<Mutex<BTreeMap<String, BuildInfo>>>,
    logs: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    /// The build started last.
    latest: Mutex<Option<String>>,
    /// Builds running, until their result is sent.
    running: Arc<AtomicUsize>,
    /// Where this machine serves the logs (`http://127.0.0.1:PORT`), once it does.
    log_links: Mutex<Option<String>>,
    /// Where repos without a local checkout come from, once set.
    github: OnceLock<Arc<GitHubSource>>,
}

/// Where a build's commit comes from.
enum Source {
    /// A local checkout (`--repo owner/name=PATH`), cloned for each build.
    Checkout(PathBuf),
    /// GitHub, fetched into the cache, for the repo named.
    GitHub(Arc<GitHubSource>, String),
}

impl LocalBuildRunner {
    pub fn new(
        repos: BTreeMap<String, PathBuf>,
        work: PathBuf,
        events: Arc<dyn Queue>,
        state: Arc<dyn StateStore>,
    ) -> Self {
        Self {
            repos,
            work,
            events,
            state,
            builds: Arc::default(),
            logs: Arc::default(),
            latest: Mutex::new(None),
            running: Arc::default(),
            log_links: Mutex::new(None),
            github: OnceLock::new(),
        }
    }

    /// Builds of repos without a local checkout fetch their commit from GitHub through
    /// `source` (only the first call counts).
    pub fn fetch_from_github(&self, source: GitHubSource) {
        let _ = self.github.set(Arc::new(source));
    }

    /// A build that finished in an earlier run of this process, as its result was kept.
    async fn kept_result(&self, id: &str) -> Result<Option<BuildInfo>, BuildsError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let record = self.state.get(&result_key(id), now).await;
        let record = record.map_err(|e| BuildsError::Unavailable(format!("build {id}: {e}")))?;
        Ok(record.and_then(|r| {
            let status = BuildStatus::parse(r.value["status"].as_str()?)?;
            let project = r.value["project"].as_str()?;
            let mut info = BuildInfo::new(id, project, status);
            info.exported = serde_json::from_value(r.value["exported"].clone()).ok()?;
            Some(info)
        }))
    }

    /// Where started builds are recorded until their result is sent.
    fn started_dir(&self) -> PathBuf {
        self.work.join("started")
    }

    /// Runs again every build recorded as started whose result was never sent (the process
    /// stopped while it ran), under the same id; returns their ids.
    pub fn resume(&self) -> anyhow::Result<Vec<String>> {
        let mut resumed = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.started_dir()) else {
            return Ok(resumed);
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let started: Started = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            let Some(source) = self.source_of(&started.request()) else {
                tracing::warn!(
                    build = started.id,
                    "no local checkout any more; not resumed"
                );
                continue;
            };
            resumed.push(started.id.clone());
            self.launch(source, started);
        }
        Ok(resumed)
    }

    /// How many builds are running or have not sent their result yet.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// The repo's local checkout when `--repo` gave one, else GitHub when it may be asked.
    fn source_of(&self, request: &StartBuild) -> Option<Source> {
        let repo = variable(request, build_dispatch::plan::VAR_REPO).unwrap_or_default();
        let checkout = self
            .repos
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(repo))
            .map(|(_, dir)| Source::Checkout(dir.clone()));
        checkout.or_else(|| {
            let github = self.github.get()?;
            Some(Source::GitHub(github.clone(), repo.to_string()))
        })
    }

    /// The next build number, from the state store: one more than any given before.
    async fn next_number(&self) -> Result<u64, BuildsError> {
        let unavailable = |e: StateError| BuildsError::Unavailable(format!("build counter: {e}"));
        for _ in 0..16 {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let current = self
                .state
                .get(COUNTER_KEY, now)
                .await
                .map_err(unavailable)?;
            let (n, precondition) = match current {
                Some(r) => (
                    r.value.as_u64().unwrap_or(0),
                    Precondition::Version(r.version),
                ),
                None => (0, Precondition::Absent),
            };
            match self
                .state
                .put(COUNTER_KEY, json!(n + 1), precondition, None, now)
                .await
            {
                Ok(_) => return Ok(n + 1),
                Err(StateError::ConditionFailed) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(BuildsError::Unavailable(
            "build counter: too many writers at once".into(),
        ))
    }

    /// Registers a build as running and runs it in the background.
    fn launch(&self, source: Source, started: Started) -> BuildInfo {
        let info = BuildInfo {
            id: started.id.clone(),
            project: started.project.clone(),
            status: BuildStatus::InProgress,
            current_phase: Some("SUBMITTED".into()),
            phases: vec![],
            log_url: self
                .log_links
                .lock()
                .unwrap()
                .as_ref()
                .map(|base| format!("{base}/builds/{}/log", started.id)),
            environment: started.environment.iter().cloned().collect(),
            exported: BTreeMap::new(),
            timeout_minutes: Some(60),
        };
        self.builds
            .lock()
            .unwrap()
            .insert(started.id.clone(), info.clone());
        *self.latest.lock().unwrap() = Some(started.id.clone());
        let build = run_build(
            source,
            self.work.join(format!("build-{}", started.number)),
            self.started_dir().join(format!("{}.json", started.number)),
            started,
            self.builds.clone(),
            self.logs.clone(),
            (self.events.clone(), self.state.clone()),
        );
        let running = self.running.clone();
        running.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            build.await;
            running.fetch_sub(1, Ordering::SeqCst);
        });
        info
    }

    /// Builds started from now on link their log at `{base}/builds/{id}/log`, which the local
    /// server answers with [`Self::log`].
    pub fn link_logs(&self, base: String) {
        *self.log_links.lock().unwrap() = Some(base);
    }

    /// A build's whole log, once it has finished; `None` for a build this runner does not
    /// know or one still running.
    pub fn log(&self, build_id: &str) -> Option<Vec<String>> {
        self.logs.lock().unwrap().get(build_id).cloned()
    }

    /// The build started last.
    pub fn latest_build(&self) -> Option<String> {
        self.latest.lock().unwrap().clone()
    }

    /// The last `n` lines of a build's log.
    pub fn log_tail(&self, build_id: &str, n: usize) -> Vec<String> {
        let logs = self.logs.lock().unwrap();
        let lines = logs.get(build_id).cloned().unwrap_or_default();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

/// A started build as recorded until its result is sent: enough to run it again.
#[derive(Debug, Serialize, Deserialize)]
struct Started {
    id: String,
    number: u64,
    project: String,
    source_version: String,
    environment: Vec<(String, String)>,
    idempotency_token: String,
}

impl Started {
    fn request(&self) -> StartBuild {
        StartBuild {
            project: self.project.clone(),
            source_version: self.source_version.clone(),
            environment: self.environment.clone(),
            idempotency_token: self.idempotency_token.clone(),
        }
    }

    /// Writes the record whole (a temporary file renamed over it) and on disk.
    fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.json", self.number));
        let tmp = dir.join(format!("{}.json.tmp", self.number));
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, serde_json::to_string(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(tmp, path)
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs one build to its end: check out, run the phases, record the result on the build,
/// send the state-change event, then forget the record of its start (`record`).
async fn run_build(
    source: Source,
    dir: PathBuf,
    record: PathBuf,
    started: Started,
    builds: Arc<Mutex<BTreeMap<String, BuildInfo>>>,
    logs: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    (events, state): (Arc<dyn Queue>, Arc<dyn StateStore>),
) {
    let (request, id) = (started.request(), started.id);
    // What a run the process was killed in left behind.
    let _ = std::fs::remove_dir_all(&dir);
    let Finished {
        status,
        phases,
        exported,
        log,
    } = match check_out(&source, &dir, &request).await {
        Err(reason) => Finished::without_source(reason),
        Ok(spec) => run_phases(&spec, &dir, &request, &id).await,
    };
    logs.lock()
        .unwrap()
        .entry(id.clone())
        .or_default()
        .extend(log);
    let _ = std::fs::remove_dir_all(&dir);
    let info = {
        let mut builds = builds.lock().unwrap();
        let info = builds
            .get_mut(&id)
            .expect("the build was registered at start");
        info.status = status;
        info.phases = phases;
        info.exported = exported;
        info.current_phase = Some("COMPLETED".into());
        info.clone()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let key = result_key(&id);
    let kept = state.put(
        &key,
        result_record(&info),
        Precondition::None,
        Some(now + RESULT_TTL_SECS),
        now,
    );
    if let Err(e) = kept.await {
        tracing::warn!(build = id, error = %e, "cannot keep the build's result; sending it anyway");
    }
    let sent = events
        .send(OutgoingMessage::new(state_change_event(&info).to_string()))
        .await;
    match sent {
        // Killed before this, the build runs again at the next start and its event is sent
        // then; build-dispatch makes a second event of one build count once.
        Ok(()) => {
            let _ = std::fs::remove_file(&record);
        }
        Err(e) => tracing::warn!(build = id, error = %e, "cannot send the build's result"),
    }
}

/// What a build leaves behind when it ends.
struct Finished {
    status: BuildStatus,
    phases: Vec<Phase>,
    exported: BTreeMap<String, String>,
    log: Vec<String>,
}

impl Finished {
    /// The source could not be checked out or its buildspec read: the build fails in
    /// DOWNLOAD_SOURCE, with `reason` as its context and its log.
    fn without_source(reason: String) -> Self {
        Self {
            status: BuildStatus::Failed,
            phases: vec![phase("DOWNLOAD_SOURCE", "FAILED", vec![reason.clone()])],
            exported: BTreeMap::new(),
            log: vec![reason],
        }
    }
}

fn phase(kind: impl Into<String>, status: &str, context: Vec<String>) -> Phase {
    Phase {
        kind: kind.into(),
        status: Some(status.into()),
        context,
    }
}

/// A plain variable of the build's request.
fn variable<'a>(request: &'a StartBuild, name: &str) -> Option<&'a str> {
    request
        .environment
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Checks out the build's commit into `dir` from its source and reads its buildspec; the
/// reason, in CodeBuild's words, when either fails.
async fn check_out(source: &Source, dir: &Path, request: &StartBuild) -> Result<Buildspec, String> {
    let version = request.source_version.as_str();
    // A fork's pinned pull-request ref (`refs/pull/<n>/head^{<sha>}`) names its commit.
    let sha = version
        .rsplit_once("^{")
        .map_or(version, |(_, commit)| commit.trim_end_matches('}'));
    match source {
        Source::Checkout(repo_dir) => clone_local(repo_dir, dir, sha).await,
        Source::GitHub(github, repo) => {
            use build_dispatch::plan::{VAR_BRANCH, VAR_PR};
            let pushed_ref = match (variable(request, VAR_BRANCH), variable(request, VAR_PR)) {
                (Some(branch), _) => Some(format!("refs/heads/{branch}")),
                (None, Some(pr)) => Some(format!("refs/pull/{pr}/head")),
                (None, None) => None,
            };
            let wanted = Wanted {
                repo,
                sha,
                pushed_ref,
            };
            github.check_out(&wanted, dir).await?;
            read_buildspec(dir)
        }
    }
}

/// Clones the local repository into `dir` at `sha` and reads its buildspec.
async fn clone_local(repo_dir: &Path, dir: &Path, sha: &str) -> Result<Buildspec, String> {
    let checkout = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git clone --quiet {} {} && cd {} && git -c advice.detachedHead=false checkout --quiet {}",
            shell_quote(&repo_dir.display().to_string()),
            shell_quote(&dir.display().to_string()),
            shell_quote(&dir.display().to_string()),
            shell_quote(sha)
        ))
        .output()
        .await;
    match checkout {
        Ok(out) if out.status.success() => read_buildspec(dir),
        Ok(out) => Err(format!(
            "CLIENT_ERROR: checkout failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("CLIENT_ERROR: cannot run git: {e}")),
    }
}

fn read_buildspec(dir: &Path) -> Result<Buildspec, String> {
    let text = std::fs::read_to_string(dir.join("buildspec.yml"))
        .map_err(|e| format!("YAML_FILE_ERROR: cannot read buildspec.yml: {e}"))?;
    serde_saphyr::from_str::<Buildspec>(&text).map_err(|e| {
        // The first line says what and where; the rest is a source excerpt.
        format!(
            "YAML_FILE_ERROR: buildspec.yml {}",
            e.to_string()
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
        )
    })
}

/// Runs the buildspec's phases in `dir` with the build's environment, as CodeBuild would.
async fn run_phases(spec: &Buildspec, dir: &Path, request: &StartBuild, id: &str) -> Finished {
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(build_script(spec))
        .current_dir(dir)
        .envs(request.environment.iter().cloned())
        .env("CODEBUILD_BUILD_ID", id)
        .env("CODEBUILD_RESOLVED_SOURCE_VERSION", &request.source_version)
        .output()
        .await;
    match output {
        Ok(o) => finished_from_output(
            o.status.success(),
            &String::from_utf8_lossy(&o.stdout),
            &String::from_utf8_lossy(&o.stderr),
        ),
        Err(e) => finished_from_output(false, "", &format!("cannot run sh: {e}")),
    }
}

/// One shell script for all phases, as CodeBuild keeps the environment across them. It marks
/// where each phase starts (`::phase KIND`) and prints the exported variables at the end
/// (`::export NAME=value`).
fn build_script(spec: &Buildspec) -> String {
    let mut script = String::from("set -e\n");
    for (name, value) in &spec.env.variables {
        script.push_str(&format!("export {name}={}\n", shell_quote(value)));
    }
    for (key, kind) in PHASES {
        if let Some(phase) = spec.phases.get(key) {
            script.push_str(&format!("echo '::phase {kind}'\n"));
            for command in &phase.commands {
                script.push_str(&format!(
                    "echo {}\n{command}\n",
                    shell_quote(&format!("$ {command}"))
                ));
            }
        }
    }
    for name in &spec.env.exported {
        script.push_str(&format!("echo \"::export {name}=${{{name}}}\"\n"));
    }
    script
}

/// The build's result from its script's output: each phase that was followed by another
/// succeeded; the last one succeeded or failed with the script, the failure's reason being the
/// last line on stderr. A failed build exports nothing.
fn finished_from_output(ok: bool, stdout: &str, stderr: &str) -> Finished {
    let mut finished = Finished {
        status: BuildStatus::Succeeded,
        phases: vec![phase("DOWNLOAD_SOURCE", "SUCCEEDED", vec![])],
        exported: BTreeMap::new(),
        log: vec![],
    };
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(kind) = line.strip_prefix("::phase ") {
            if let Some(done) = current.replace(kind.to_string()) {
                finished.phases.push(phase(done, "SUCCEEDED", vec![]));
            }
        } else if let Some(pair) = line.strip_prefix("::export ") {
            if let Some((k, v)) = pair.split_once('=') {
                finished.exported.insert(k.to_string(), v.to_string());
            }
        } else {
            finished.log.push(line.to_string());
        }
    }
    finished.log.extend(stderr.lines().map(str::to_string));
    if let Some(last) = current {
        finished.phases.push(if ok {
            phase(last, "SUCCEEDED", vec![])
        } else {
            let reason = stderr.lines().last().unwrap_or("a command failed");
            phase(
                last,
                "FAILED",
                vec![format!("COMMAND_EXECUTION_ERROR: {reason}")],
            )
        });
    }
    if !ok {
        finished.status = BuildStatus::Failed;
        finished.exported.clear();
    }
    finished
}

/// The EventBridge event CodeBuild would send for `build`.
pub fn state_change_event(build: &BuildInfo) -> serde_json::Value {
    json!({
        "version": "0",
        "id": format!("local-{}", build.id),
        "detail-type": build_dispatch::codebuild::STATE_CHANGE,
        "source": "aws.codebuild",
        "account": "000000000000",
        "time": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "region": "local",
        "resources": [format!("arn:aws:codebuild:local:000000000000:build/{}", build.id)],
        "detail": {
            "build-status": build.status.as_str(),
            "project-name": build.project,
            "build-id": format!("arn:aws:codebuild:local:000000000000:build/{}", build.id),
            "current-phase": build.current_phase,
            "additional-information": {
                "timeout-in-minutes": build.timeout_minutes,
                "environment": {"environment-variables": build.environment.iter().map(|(k, v)| json!({"name": k, "value": v, "type": "PLAINTEXT"})).collect::<Vec<_>>()},
                "phases": build.phases.iter().map(|p| json!({"phase-type": p.kind, "phase-status": p.status, "phase-context": p.context})).collect::<Vec<_>>(),
            }
        }
    })
}

#[async_trait]
impl Builds for LocalBuildRunner {
    async fn start(&self, request: StartBuild) -> Result<BuildInfo, BuildsError> {
        let source = self.source_of(&request).ok_or_else(|| {
            BuildsError::Refused(format!(
                "no local checkout of {}",
                variable(&request, build_dispatch::plan::VAR_REPO).unwrap_or_default()
            ))
        })?;
        let number = self.next_number().await?;
        let started = Started {
            id: format!("{}:local-{number}", request.project),
            number,
            project: request.project,
            source_version: request.source_version,
            environment: request.environment,
            idempotency_token: request.idempotency_token,
        };
        started.write(&self.started_dir()).map_err(|e| {
            BuildsError::Unavailable(format!("cannot record the build's start: {e}"))
        })?;
        Ok(self.launch(source, started))
    }

    async fn stop(&self, _build_id: &str) -> Result<(), BuildsError> {
        // Local builds are short; a superseded one finishes and its result is ignored.
        Ok(())
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<BuildInfo>, BuildsError> {
        let known: Vec<Option<BuildInfo>> = {
            let builds = self.builds.lock().unwrap();
            ids.iter().map(|id| builds.get(id).cloned()).collect()
        };
        let mut found = Vec::new();
        for (id, info) in ids.iter().zip(known) {
            match info {
                Some(info) => found.push(info),
                // Finished before this process started: its kept result.
                None => found.extend(self.kept_result(id).await?),
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_build_that_finished_before_a_restart_is_still_found_with_its_variables() {
        let state: Arc<dyn StateStore> =
            Arc::new(shared::adapters::memory::MemoryStateStore::new());
        let mut info = BuildInfo::new("web:local-7", "web", BuildStatus::Succeeded);
        info.exported
            .insert("IMAGE_ID_WEB".into(), "sha256:abc".into());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let key = result_key(&info.id);
        let kept = state.put(&key, result_record(&info), Precondition::None, None, now);
        kept.await.unwrap();
        // A new process: nothing in memory, the store as the last one left it.
        let events = Arc::new(shared::adapters::memory::MemoryQueue::standard());
        let runner = LocalBuildRunner::new(BTreeMap::new(), std::env::temp_dir(), events, state);
        let found = runner
            .get(&["web:local-7".into(), "web:local-8".into()])
            .await
            .unwrap();
        assert_eq!(
            found,
            vec![info],
            "the finished one, with its image id; the unknown one absent"
        );
    }

    #[test]
    fn a_passing_script_succeeds_every_phase_and_exports_its_variables() {
        let finished = finished_from_output(
            true,
            "::phase INSTALL\n$ true\n::phase BUILD\n$ make\nbuilt\n::export IMAGE=sha256:abc\n",
            "",
        );
        assert_eq!(finished.status, BuildStatus::Succeeded);
        assert_eq!(
            finished.phases,
            vec![
                phase("DOWNLOAD_SOURCE", "SUCCEEDED", vec![]),
                phase("INSTALL", "SUCCEEDED", vec![]),
                phase("BUILD", "SUCCEEDED", vec![]),
            ]
        );
        assert_eq!(
            finished.exported,
            BTreeMap::from([("IMAGE".to_string(), "sha256:abc".to_string())])
        );
        assert_eq!(finished.log, vec!["$ true", "$ make", "built"]);
    }

    #[test]
    fn a_failing_command_fails_its_phase_with_the_last_error_line_and_exports_nothing() {
        let finished = finished_from_output(
            false,
            "::phase BUILD\n$ sh ./test.sh\n::export IMAGE=half-built\n",
            "test checkout ... FAILED\nexpected 42, got 41\n",
        );
        assert_eq!(finished.status, BuildStatus::Failed);
        assert_eq!(
            finished.phases.last(),
            Some(&phase(
                "BUILD",
                "FAILED",
                vec!["COMMAND_EXECUTION_ERROR: expected 42, got 41".into()]
            ))
        );
        assert!(finished.exported.is_empty());
        assert_eq!(
            finished.log,
            vec![
                "$ sh ./test.sh",
                "test checkout ... FAILED",
                "expected 42, got 41"
            ]
        );
    }

    #[test]
    fn a_buildspec_runs_its_phases_in_codebuilds_order_in_one_shell() {
        let spec: Buildspec = serde_saphyr::from_str(
            "env:\n  variables: { GREETING: \"it's\" }\n  exported-variables: [IMAGE]\nphases:\n  build:\n    commands: [make]\n  install:\n    commands: [npm ci]\n",
        )
        .unwrap();
        assert_eq!(
            build_script(&spec),
            "set -e\nexport GREETING='it'\\''s'\necho '::phase INSTALL'\necho '$ npm ci'\nnpm ci\necho '::phase BUILD'\necho '$ make'\nmake\necho \"::export IMAGE=${IMAGE}\"\n"
        );
    }
}
