//! GitHub deliveries as intake reads them: any bytes, under any signature header and event
//! name, must give a plan or a reply, never a panic. The input's first byte picks the event;
//! the second whether the body is signed correctly (to reach the parser) or the rest of the
//! input is a forged header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::config::Config;
use webhook_intake::webhook::{self, PullRequestEvent, PushEvent};

const SECRET: &[u8] = b"fuzz secret";
const CONFIG: &str = "repos:\n  Codertocat/Hello-World:\n    codebuild_project: hello\n    deploy:\n      - branch: master\n        heroku: { app: hello }\n";
const EVENTS: [&str; 5] = ["push", "pull_request", "ping", "issues", ""];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((&signed, body)) = rest.split_first() else {
        return;
    };
    let event = EVENTS[selector as usize % EVENTS.len()];
    let signature = if signed % 2 == 0 {
        webhook::sign(SECRET, body)
    } else {
        String::from_utf8_lossy(body).chars().take(80).collect()
    };
    let mut headers = lambda_http::http::HeaderMap::new();
    headers.insert(
        "content-type",
        if signed % 4 < 2 {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        }
        .parse()
        .unwrap(),
    );
    if let Ok(value) = signature.parse() {
        headers.insert("x-hub-signature-256", value);
    }
    let config = Config::from_yaml(CONFIG).unwrap();
    let _ = webhook_intake::accept(
        &config,
        SECRET,
        &headers,
        body,
        "fuzz-delivery",
        event,
        "2026-11-26T12:00:00Z".to_string(),
    );
    // The typed payloads on their own, as build-dispatch and the CLI read them.
    let _ = webhook::parse::<PushEvent>(body);
    let _ = webhook::parse::<PullRequestEvent>(body);
    let _ = webhook::SIGNATURE.verify(SECRET, body, std::str::from_utf8(rest).ok());
});
