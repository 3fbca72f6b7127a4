//! The status page's server time per view for a big team: 30 repos, each with a production
//! target live (ten releases of history), its 50 newest builds (what `builds:<repo>` keeps of a
//! year of pushes), and a Sentry project with its full alert log (500 alerts, two weeks). The
//! state is in memory: this measures the reading and rendering, not DynamoDB's round trips
//! (one per target, per repo and per Sentry project; docs/PERFORMANCE.md).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shared::adapters::memory::MemoryStateStore;
use shared::alerts::{AlertLog, AlertMark};
use shared::config::{Config, Level};
use shared::ports::{Precondition, StateStore};
use shared::records::{BuiltCommit, LiveRecord, PastRelease, RecentBuilds, StateKey};

const REPOS: usize = 30;
const NOW: i64 = 1_800_000_000;

fn config() -> Config {
    let mut yaml = String::from("repos:\n");
    for r in 0..REPOS {
        yaml.push_str(&format!(
            "  team/service-{r}:\n    codebuild_project: s{r}\n    sentry_project: p{r}\n    deploy:\n      - branch: master\n        heroku: {{ app: service-{r} }}\n"
        ));
    }
    yaml.push_str("sentry:\n  projects:\n");
    for r in 0..REPOS {
        yaml.push_str(&format!("    p{r}: {{}}\n"));
    }
    Config::from_yaml(&yaml).expect("the bench config is valid")
}

async fn seed(state: &(dyn StateStore + 'static)) {
    let sha = |n: usize| format!("{n:040x}");
    for r in 0..REPOS {
        let mut recent = RecentBuilds::default();
        for b in 0..RecentBuilds::KEPT {
            recent.add(BuiltCommit {
                sha: sha(r * 1000 + b).into(),
                branch: Some("master".into()),
                pull_request: None,
                build_id: format!("s{r}:{b}").into(),
                passed: b % 7 != 0,
                status: if b % 7 != 0 { "SUCCEEDED" } else { "FAILED" }.into(),
                description: "Failed in BUILD: exit status 1".into(),
                log_url: Some(format!("https://console.aws.amazon.com/codebuild/s{r}:{b}")),
                started_at: NOW - 86_400 * 7 + (b as i64) * 3600,
                finished_at: NOW - 86_400 * 7 + (b as i64) * 3600 + 180,
                artifacts: BTreeMap::from([("SHIPLINE_IMAGE_WEB".into(), "sha256:abc".into())]),
                commit_message: Some("Make the checkout faster".into()),
                author: Some("ana".into()),
                installation_id: None,
                delivery_id: "d".into(),
            });
        }
        let live = LiveRecord {
            repo: format!("team/service-{r}"),
            branch: "master".into(),
            sha: sha(r * 1000 + 49).into(),
            release_id: format!("rel-{r}"),
            version: Some("v120".into()),
            at: "2027-01-15T08:00:00Z".into(),
            build_id: format!("s{r}:49").into(),
            history: (0..10)
                .map(|h| PastRelease {
                    sha: sha(r * 1000 + h).into(),
                    release_id: format!("rel-{r}-{h}"),
                    version: Some(format!("v{}", 110 + h)),
                })
                .collect(),
            artifacts: BTreeMap::new(),
            deployment_id: Some(9),
            restored: false,
            by: Some("ana".into()),
        };
        let alerts = AlertLog {
            marks: (0..500)
                .map(|a| AlertMark {
                    issue: format!("{}", a % 40),
                    title: format!("TypeError: thing {} is undefined", a % 40),
                    level: Level::Error,
                    at: NOW - 14 * 86_400 + a * 2000,
                    environment: Some("production".into()),
                })
                .collect(),
        };
        let target = format!("heroku:service-{r}");
        let repo = format!("team/service-{r}");
        let project = format!("p{r}");
        for (key, value) in [
            (
                StateKey::Builds(&repo),
                serde_json::to_value(&recent).unwrap(),
            ),
            (
                StateKey::Live(&target),
                serde_json::to_value(&live).unwrap(),
            ),
            (
                StateKey::Alerts(&project),
                serde_json::to_value(&alerts).unwrap(),
            ),
        ] {
            state
                .put(&key.to_string(), value, Precondition::None, None, 0)
                .await
                .unwrap();
        }
    }
}

fn page(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let config = config();
    let store = MemoryStateStore::new();
    let state: &(dyn StateStore + 'static) = &store;
    runtime.block_on(seed(state));
    let none = Vec::new();
    let data = runtime
        .block_on(status_page::gather(state, &config, &none, NOW))
        .unwrap();
    assert_eq!(data.overview.live.len(), REPOS);
    let mut group = c.benchmark_group("status-page");
    group.bench_function("gather and render, 30 repos", |b| {
        b.iter(|| {
            let data = runtime
                .block_on(status_page::gather(state, &config, &none, NOW))
                .unwrap();
            black_box(status_page::render::html(&data, NOW))
        });
    });
    group.bench_function("render, 30 repos", |b| {
        b.iter(|| black_box(status_page::render::html(&data, NOW)));
    });
    group.finish();
    let bytes = status_page::render::html(&data, NOW).len();
    eprintln!("page: {bytes} bytes of HTML");
}

criterion_group!(benches, page);
criterion_main!(benches);
