//! The durable store of `shipline serve --data DIR` (src/adapters/durable) on this machine's
//! disk, in a temporary directory:
//! - messages per second through a queue: 100 messages sent one by one (a commit each, as
//!   intake and the functions send), then received ten at a time and each batch deleted in one
//!   commit (as the pump settles a batch), on a standard queue and on a FIFO queue (ten groups,
//!   deduplication ids);
//! - conditional state writes per second: `put` under `Precondition::Version` (read the version,
//!   compare, write, commit), a record of a few hundred bytes;
//!
//! each with every commit fsynced (`Synchronous::Full`, what `serve` uses) and, for what the
//! fsync costs, with `Synchronous::Normal`. scripts/bench prints the figures.

// The store as `shipline serve` has it; the bench uses only its hot paths.
#[path = "../src/adapters/durable/mod.rs"]
#[allow(dead_code, unused_imports)]
mod durable;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use durable::{DurableQueue, DurableStore, Synchronous};
use shared::ports::{OutgoingMessage, Precondition, Queue, StateStore, SystemClock};

/// Messages per measured iteration.
const MESSAGES: u64 = 100;

/// Unique deduplication ids across iterations (the window is five minutes).
static NEXT: AtomicU64 = AtomicU64::new(0);

fn body() -> String {
    // About a build request's size.
    format!(
        "{{\"repo\":\"team/service\",\"sha\":\"{:040x}\",\"pad\":\"{}\"}}",
        7,
        "x".repeat(900)
    )
}

async fn through(q: &DurableQueue, body: &str) {
    for i in 0..MESSAGES {
        let message = if q.is_fifo() {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            OutgoingMessage::fifo(body, format!("g{}", i % 10), format!("d{n}"))
        } else {
            OutgoingMessage::new(body)
        };
        q.send(message).await.expect("send");
    }
    let mut received = 0;
    while received < MESSAGES {
        let batch = q
            .receive(10, Duration::from_secs(60))
            .await
            .expect("receive");
        received += batch.len() as u64;
        let receipts: Vec<String> = batch.into_iter().map(|m| m.receipt).collect();
        q.delete_batch(&receipts).await.expect("delete");
    }
}

fn levels() -> [(Synchronous, &'static str); 2] {
    [(Synchronous::Full, "full"), (Synchronous::Normal, "normal")]
}

fn open(synchronous: Synchronous) -> (tempfile::TempDir, DurableStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = DurableStore::open_with(dir.path(), Arc::new(SystemClock), synchronous)
        .expect("the store opens");
    (dir, store)
}

fn queues(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let body = body();
    let mut group = c.benchmark_group("durable");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(MESSAGES));
    for (synchronous, level) in levels() {
        let (_dir, store) = open(synchronous);
        for (name, kind) in [("build-events", "standard"), ("builds.fifo", "fifo")] {
            let q = store.queue(name);
            group.bench_function(format!("queue_{kind}_{level}"), |b| {
                b.iter(|| rt.block_on(through(&q, &body)));
            });
        }
    }
    group.finish();
}

fn state(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let mut group = c.benchmark_group("durable");
    group.sample_size(10).throughput(Throughput::Elements(1));
    for (synchronous, level) in levels() {
        let (_dir, store) = open(synchronous);
        let mut version = 0;
        group.bench_function(format!("state_put_{level}"), |b| {
            b.iter(|| {
                let value = serde_json::json!({
                    "release": version, "commit": format!("{version:040x}"), "by": "shipline",
                    "at": "2027-01-01T00:00:00Z", "notes": "x".repeat(200),
                });
                let precondition = match version {
                    0 => Precondition::Absent,
                    v => Precondition::Version(v),
                };
                version = rt
                    .block_on(store.put("live:heroku:app", value, precondition, None, 0))
                    .expect("the version is ours");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, queues, state);
criterion_main!(benches);
