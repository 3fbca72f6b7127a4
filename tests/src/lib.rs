//! The end-to-end harness: AWS on moto (resources made per test, so tests run in parallel on
//! one server), and a local Lambda Runtime API that runs a function's release binary exactly
//! as Lambda does.

pub mod aws;
pub mod github_signin;
pub mod github_spec;
pub mod runtime_api;

use std::path::PathBuf;

/// A name no other test uses, for queues and tables on the shared moto server.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The release binary of a function, as `cargo build --release` leaves it (the test command
/// builds them first). `SHIPLINE_BIN_DIR` points elsewhere.
pub fn release_binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("SHIPLINE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .parent()
                        .unwrap()
                        .join("target")
                });
            target.join("release")
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --release -p {name}` (scripts/test does)",
        path.display()
    );
    path
}
