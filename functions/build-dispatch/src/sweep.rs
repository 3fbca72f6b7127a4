//! The scheduled sweep: finalises running builds whose end never reached shipline, and those
//! silent past their timeout, so that no status stays pending.

use serde::Serialize;
use shared::ids::BuildId;
use tracing::info;

use crate::Deps;
use crate::codebuild::{BuildInfo, BuildStatus, Phase};
use crate::error::DispatchError;
use crate::finalize::finalize;
use crate::records;
use crate::run::{Run, RunStatus};

/// How long past its own timeout a build may stay silent before the sweep calls it lost.
const LOST_GRACE_SECS: i64 = 15 * 60;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub checked: usize,
    pub finalised: usize,
    pub lost: usize,
    pub still_running: usize,
    pub errors: Vec<String>,
}

/// Checks every build recorded as running: finalises those that ended without an event
/// reaching shipline, and those silent past their timeout.
pub async fn sweep(deps: &Deps) -> SweepReport {
    let now = deps.clock.unix();
    let mut report = SweepReport::default();
    let ids = match records::running_builds(deps.state.as_ref(), now).await {
        Ok(ids) => ids,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    report.checked = ids.len();
    if ids.is_empty() {
        return report;
    }
    let lookup: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let found = match deps.builds.get(&lookup).await {
        Ok(found) => found,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    for id in ids {
        if let Err(e) = check(deps, &id, &found, &mut report, now).await {
            report.errors.push(format!("{id}: {e}"));
        }
    }
    info!(?report, "sweep done");
    report
}

/// One running build: finalised if it ended or went silent for too long, else left running.
async fn check(
    deps: &Deps,
    id: &BuildId,
    found: &[BuildInfo],
    report: &mut SweepReport,
    now: i64,
) -> Result<(), DispatchError> {
    let state = deps.state.as_ref();
    let run = match records::load_run(state, id, now).await? {
        Some(run) if !run.is_final() => run,
        _ => {
            // Reported already, or its record expired: only the index entry is left, and a
            // failure to drop it now only means the next sweep tries again.
            let _ = records::remove_running(state, id, now).await;
            return Ok(());
        }
    };
    let channels = deps
        .config
        .repo(&run.repo)
        .map(|r| deps.config.notify_channels(r))
        .unwrap_or_default();
    let build = found.iter().find(|b| b.id == *id);
    let overdue = now > run.started_at + i64::from(run.timeout_minutes) * 60 + LOST_GRACE_SECS;
    match build {
        Some(b) if b.status.is_final() => {
            report.finalised += 1;
            finalize(deps, run, b, &channels, b.status.into()).await
        }
        Some(_) if !overdue => {
            report.still_running += 1;
            Ok(())
        }
        None if !overdue && now - run.started_at < LOST_GRACE_SECS => {
            report.still_running += 1;
            Ok(())
        }
        _ => {
            report.lost += 1;
            // Best effort: a build CodeBuild no longer answers for is reported lost either way.
            let _ = deps.builds.stop(id).await;
            let lost = lost_build(&run, now);
            finalize(deps, run, &lost, &channels, RunStatus::Lost).await
        }
    }
}

/// A build CodeBuild never reported on: reported as a fault, with how long it was silent.
fn lost_build(run: &Run, now: i64) -> BuildInfo {
    let mut build = BuildInfo::new(run.build_id.as_str(), &run.project, BuildStatus::Fault);
    build.phases = vec![Phase {
        kind: "SWEEP".into(),
        status: Some("FAULT".into()),
        context: vec![format!(
            "no result from CodeBuild after {} min",
            (now - run.started_at) / 60
        )],
    }];
    build.log_url = run.log_url.clone();
    build.timeout_minutes = Some(run.timeout_minutes);
    build
}
