//! Sentry deliveries as alert-forwarder reads them: the integration's resources and the
//! legacy plugin's body, verified and parsed, must never panic on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use alert_forwarder::sentry;

const SECRET: &[u8] = b"fuzz sentry secret";
const RESOURCES: [&str; 6] = [
    "issue",
    "event_alert",
    "metric_alert",
    "error",
    "installation",
    "comment",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let resource = RESOURCES[selector as usize % RESOURCES.len()];
    let signature = sentry::sign(SECRET, body);
    let _ = sentry::SIGNATURE.verify(SECRET, body, Some(&signature));
    let _ = sentry::SIGNATURE.verify(SECRET, body, std::str::from_utf8(body).ok());
    let _ = sentry::parse_integration(resource, body);
    let _ = sentry::parse_legacy(body);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = shared::signature::token_matches(text, "a token");
    }
});
