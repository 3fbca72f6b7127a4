//! Ports: the traits that more than one function uses, each with a real adapter (`adapters`,
//! `github`) and an embedded twin (`adapters::memory`). A port that one function alone uses
//! lives in that function's crate (CodeBuild, the deployers, the chats).

use std::time::Duration;

/// Whether trying the same thing again later can help, and when. SQS handlers use it to decide
/// between a retry (the message becomes visible again, after `retry_after` when the service
/// said how long to wait) and a dead letter.
pub trait Retryable {
    fn is_retryable(&self) -> bool;

    /// How long the service asked us to wait (a rate limit), if it said.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// Time, so that tests can hold it still.
pub trait Clock: Send + Sync {
    fn now(&self) -> time::OffsetDateTime;

    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    fn rfc3339(&self) -> String {
        self.now()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a current time formats as RFC 3339")
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

mod github;
mod queue;
mod state;

pub use github::*;
pub use queue::*;
pub use state::*;
