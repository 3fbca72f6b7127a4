//! Logs: JSON lines on Lambda (one object per line, the current span's fields included, so the
//! delivery id rides on every line of a message's work), readable text on a terminal. The level
//! and format follow Lambda's advanced logging controls as the runtime's own subscriber
//! (`lambda_runtime::tracing::init_default_subscriber`) reads them.

use tracing_subscriber::EnvFilter;

/// The log format chosen from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
}

/// `AWS_LAMBDA_LOG_FORMAT` (`JSON` or `Text`, the function's `LoggingConfig.LogFormat`) wins;
/// else `SHIPLINE_LOG_FORMAT=json`; else JSON on Lambda and text elsewhere.
fn format(var: impl Fn(&str) -> Option<String>) -> Format {
    let json = |v: String| {
        if v.eq_ignore_ascii_case("json") {
            Format::Json
        } else {
            Format::Text
        }
    };
    var("AWS_LAMBDA_LOG_FORMAT")
        .or_else(|| var("SHIPLINE_LOG_FORMAT"))
        .map(json)
        .unwrap_or(if var("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            Format::Json
        } else {
            Format::Text
        })
}

/// `AWS_LAMBDA_LOG_LEVEL` (the function's `ApplicationLogLevel`) takes precedence over
/// `RUST_LOG`, as in the runtime's subscriber; `info` when neither is set. Lambda's `FATAL`
/// has no `tracing` level: it keeps errors only.
fn filter(var: impl Fn(&str) -> Option<String>) -> EnvFilter {
    let level = var("AWS_LAMBDA_LOG_LEVEL")
        .map(|l| match l.to_ascii_lowercase().as_str() {
            "fatal" => "error".to_string(),
            other => other.to_string(),
        })
        .or_else(|| var("RUST_LOG"))
        .unwrap_or_else(|| "info".into());
    EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(var))
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format(var) {
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            // CloudWatch stamps each line; the function's own clock adds nothing.
            .without_time()
            .try_init(),
        Format::Text => builder.compact().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn lambdas_log_format_setting_decides_the_format() {
        assert_eq!(
            format(env(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")])),
            Format::Json
        );
        assert_eq!(
            format(env(&[
                ("AWS_LAMBDA_LOG_FORMAT", "Text"),
                ("AWS_LAMBDA_FUNCTION_NAME", "f")
            ])),
            Format::Text
        );
        assert_eq!(
            format(env(&[("AWS_LAMBDA_FUNCTION_NAME", "f")])),
            Format::Json
        );
        assert_eq!(format(env(&[])), Format::Text);
    }

    #[test]
    fn lambdas_log_level_wins_over_rust_log() {
        let f = filter(env(&[
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
            ("RUST_LOG", "debug"),
        ]));
        assert_eq!(
            f.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::WARN)
        );
        let f = filter(env(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]));
        assert_eq!(
            f.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::ERROR)
        );
        let f = filter(env(&[("RUST_LOG", "debug")]));
        assert_eq!(
            f.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::DEBUG)
        );
    }
}
