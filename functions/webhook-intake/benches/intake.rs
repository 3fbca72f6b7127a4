//! Intake's cost next to its floor, in the same run: verify + parse + plan + serialise the
//! `BuildRequest` (`accept` then `messages::encode`, exactly what a delivery costs before its
//! two network calls), against HMAC-SHA256 of the same bytes plus `serde_json` parsing them
//! into the same typed struct, which any correct intake must do.
//!
//! On the push fixture (about 9 KB) and on a generated 1 MB push. `scripts/bench` runs this and
//! prints the ratios; docs/PERFORMANCE.md holds the figures.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{KeyInit, Mac};
use lambda_http::http::HeaderMap;
use shared::config::Config;
use shared::messages;
use webhook_intake::plan::Plan;
use webhook_intake::webhook::{PushEvent, sign};

const SECRET: &[u8] = b"a webhook secret of ordinary length";
const PUSH: &str = include_str!("../testdata/github-push.json");
const CONFIG: &str = "repos:\n  Codertocat/Hello-World:\n    codebuild_project: hello\n    deploy:\n      - branch: master\n        heroku: { app: hello }\n";

/// The fixture with its `commits` list grown to about `size` bytes (GitHub sends up to 2,048
/// commits in a push, each with its message and file lists).
fn big_push(size: usize) -> Vec<u8> {
    let mut push: serde_json::Value = serde_json::from_str(PUSH).unwrap();
    let mut commit = push["head_commit"].clone();
    commit["added"] = serde_json::json!(["src/one.rs", "src/two.rs", "docs/three.md"]);
    let mut commits = Vec::new();
    let mut i = 0;
    while serde_json::to_vec(&push).unwrap().len() + commits.len() * 900 < size {
        commit["id"] = serde_json::json!(format!("{i:040x}"));
        commit["message"] = serde_json::json!(format!(
            "Change {i}: {}",
            "a line of commit message ".repeat(12)
        ));
        commits.push(commit.clone());
        i += 1;
    }
    push["commits"] = serde_json::Value::Array(commits);
    serde_json::to_vec(&push).unwrap()
}

fn headers(body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("x-github-event", "push".parse().unwrap());
    h.insert("x-github-delivery", "d-1".parse().unwrap());
    h.insert("x-hub-signature-256", sign(SECRET, body).parse().unwrap());
    h
}

fn intake(config: &Config, headers: &HeaderMap, body: &[u8]) -> String {
    match webhook_intake::accept(
        config,
        SECRET,
        headers,
        body,
        "d-1",
        "push",
        "2026-11-26T12:00:00Z".to_string(),
    ) {
        Ok(Plan::Build(request)) => messages::encode(&request),
        other => panic!("not a build: {other:?}"),
    }
}

fn floor(body: &[u8]) -> PushEvent {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(body);
    black_box(mac.finalize());
    serde_json::from_slice(body).unwrap()
}

fn bench(c: &mut Criterion) {
    let config = Config::from_yaml(CONFIG).unwrap();
    let big = big_push(1 << 20);
    // The peer comparison in scripts/bench signs and receives the same bytes.
    if let Some(dir) = std::env::var_os("SHIPLINE_BENCH_BODIES") {
        std::fs::write(std::path::Path::new(&dir).join("push-fixture.json"), PUSH).unwrap();
        std::fs::write(std::path::Path::new(&dir).join("push-1MB.json"), &big).unwrap();
    }
    let mut group = c.benchmark_group("push");
    for (name, body) in [("fixture", PUSH.as_bytes().to_vec()), ("1MB", big)] {
        let headers = headers(&body);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("intake", name), &body, |b, body| {
            b.iter(|| intake(&config, &headers, black_box(body)))
        });
        group.bench_with_input(BenchmarkId::new("floor", name), &body, |b, body| {
            b.iter(|| floor(black_box(body)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
