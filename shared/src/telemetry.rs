//! Logs: JSON lines on Lambda (one object per line, the current span's fields included, so the
//! delivery id rides on every line of a message's work), readable text on a terminal.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
///
/// The level comes from `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`. JSON is
/// used on Lambda (`AWS_LAMBDA_FUNCTION_NAME` set) or when `SHIPLINE_LOG_FORMAT=json`.
pub fn init() {
    let level = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("SHIPLINE_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            // CloudWatch stamps each line; the function's own clock adds nothing.
            .without_time()
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
