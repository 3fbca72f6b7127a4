//! The durable store of `shipline serve --data DIR`: the `Queue`, `StateStore` and `Redelivery`
//! ports, and the receive side the local pump needs, in one SQLite file, so that a restart (a
//! deploy of shipline itself, a reboot, an OOM kill) loses no queued message, dedup record or
//! live record.
//!
//! Why SQLite: one transaction makes a conditional write (read the version, compare, write) or a
//! receive (pick the visible messages, give each a receipt and a visibility deadline) atomic; the
//! write-ahead log keeps a committed transaction across a crash; it is compiled in (`bundled`),
//! so it does not depend on the system's older libsqlite3. The file can be read while `serve`
//! runs (`sqlite3 DIR/shipline.db`, or a second `shipline` reading a dead-letter queue): WAL lets
//! readers and the one writer go on together.
//!
//! One connection behind a mutex, used from `spawn_blocking`: a call is short (a few statements
//! and one commit), so the serialisation costs nothing at the local stack's rates (tens of
//! messages a minute; docs/PERFORMANCE.md has the measured ceiling), and no statement can
//! interleave with another's transaction. Each write is a `BEGIN IMMEDIATE` transaction, so a
//! second process writing the same file waits (the busy timeout) instead of failing midway.
//!
//! Times: queue times are unix milliseconds from the store's clock (wall time, so a visibility
//! deadline or a deduplication window means the same after a restart); state records keep the
//! port's unix seconds.

mod queue;
mod state;
#[cfg(test)]
mod tests_queue;
#[cfg(test)]
mod tests_state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::Connection;
use shared::ports::{Clock, QueueError, StateError, SystemClock};

pub use queue::{DurableQueue, Received};

/// The database's file name under the data directory.
pub const DB_FILE: &str = "shipline.db";

/// How long a write waits for another process's write to finish before it reports the store
/// unavailable (a retryable error for the functions).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The layout below; a file written by a newer shipline is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT, -- send order, never reused: FIFO order
    queue         TEXT    NOT NULL,
    message_id    TEXT    NOT NULL UNIQUE,           -- stable across receives (SQS MessageId)
    body          TEXT    NOT NULL,
    group_id      TEXT,
    reason        TEXT,                              -- why it was dead-lettered
    sent_at       INTEGER NOT NULL,                  -- unix ms
    visible_at    INTEGER NOT NULL,                  -- unix ms; later than now: delayed or in flight
    receipt       TEXT    UNIQUE,                    -- the latest receive's handle
    receive_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, seq);
CREATE TABLE IF NOT EXISTS dedup (
    queue      TEXT    NOT NULL,
    group_id   TEXT    NOT NULL,
    dedup_id   TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,                     -- unix ms
    PRIMARY KEY (queue, group_id, dedup_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_by_expiry ON dedup (expires_at);
CREATE TABLE IF NOT EXISTS state (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,                     -- JSON
    version    INTEGER NOT NULL,
    expires_at INTEGER                               -- unix s
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS state_by_expiry ON state (expires_at) WHERE expires_at IS NOT NULL;
";

/// When a commit reaches the disk (SQLite's `synchronous` pragma, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit waits for the log to be on the disk (fsync): what `serve` uses. A webhook
    /// that intake answered 202 is a queued build even after a power cut, and GitHub does not
    /// send it again by itself.
    Full,
    /// Commits reach the operating system only: safe when the process dies (SIGKILL, OOM), may
    /// lose the last commits to a power cut or a kernel crash. For measuring what `Full` costs.
    #[allow(dead_code)] // benches/durable.rs measures it
    Normal,
}

/// The queues and state of the local stack in `DIR/shipline.db`. Cheap to clone: the clones
/// share one connection.
#[derive(Clone)]
pub struct DurableStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
}

impl DurableStore {
    /// Opens (creating if needed) the store under `dir`, on the system clock, fsyncing every
    /// commit. Messages left in flight by a previous process stay invisible until
    /// [`recover_in_flight`](Self::recover_in_flight), which only the process that owns the
    /// directory may call.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Self::open_with(dir, Arc::new(SystemClock), Synchronous::Full)
    }

    pub fn open_with(
        dir: &Path,
        clock: Arc<dyn Clock>,
        synchronous: Synchronous,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open the store {}", path.display()))?;
        configure(&conn, synchronous)
            .with_context(|| format!("cannot set up the store {}", path.display()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path,
                clock,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The queue named `name`. As on SQS, a name ending in `.fifo` is a FIFO queue.
    pub fn queue(&self, name: &str) -> DurableQueue {
        DurableQueue::new(self.clone(), name)
    }

    /// Makes every message that was in flight (received, neither deleted nor released) visible
    /// at once, and returns how many. Called once at start by the process that owns the data
    /// directory: their receiver died with the previous process. SQS would redeliver them after
    /// their visibility timeout; at-least-once either way, and sooner. A message put back for
    /// later (`release`, `Redelivery::redeliver_after`) and not yet due comes back at once too:
    /// the two are not told apart, and a redelivery early is harmless to the functions.
    pub async fn recover_in_flight(&self) -> Result<u64, QueueError> {
        let now = self.now_ms();
        let n = self
            .run(move |conn| {
                Ok(conn.execute(
                    "UPDATE messages SET visible_at = ?1 WHERE receipt IS NOT NULL AND visible_at > ?1",
                    [now],
                )?)
            })
            .await?;
        Ok(n as u64)
    }

    /// Deletes expired state records and deduplication ids, and returns how many rows went.
    /// Expired records already read as absent (as DynamoDB's do before its TTL sweep); this
    /// only keeps the file small. Call it now and then (once a minute is plenty).
    pub async fn sweep(&self) -> Result<u64, StateError> {
        let (now_ms, now_s) = (self.now_ms(), self.inner.clock.unix());
        let n = self
            .run(move |conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let a = tx.execute("DELETE FROM dedup WHERE expires_at <= ?1", [now_ms])?;
                let b = tx.execute("DELETE FROM state WHERE expires_at <= ?1", [now_s])?;
                tx.commit()?;
                Ok(a + b)
            })
            .await?;
        Ok(n as u64)
    }

    fn now_ms(&self) -> i64 {
        unix_ms(self.inner.clock.now())
    }

    /// Runs `f` on the connection off the async workers (a commit waits for an fsync).
    async fn run<T, F>(&self, f: F) -> Result<T, Fail>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fail> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` rolled its transaction back (a dropped `Transaction` does), so
            // the connection is still sound.
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| Fail::Unavailable(format!("the store's worker stopped: {e}")))?
    }
}

fn configure(conn: &Connection, synchronous: Synchronous) -> anyhow::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: a commit is one append to the log, readers do not block the writer, and a crash
    // mid-commit leaves the last committed state (https://sqlite.org/wal.html).
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("the file system does not support SQLite's write-ahead log (journal mode {mode})");
    }
    // FULL by default (see `Synchronous::Full`): the local stack writes tens of times a minute,
    // so an fsync per commit costs nothing that matters, and an acknowledged send is on disk.
    let level = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", level)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        bail!("written by a newer shipline (layout {version}; this one knows {SCHEMA_VERSION})");
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// Unix milliseconds.
fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A duration in milliseconds, for adding to a unix-ms time.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Why a call failed, before it is told as the port's error.
#[derive(Debug)]
enum Fail {
    Db(rusqlite::Error),
    ConditionFailed,
    Corrupt(String),
    Unavailable(String),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<Fail> for StateError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Db(e) => StateError::Unavailable(e.to_string()),
            Fail::ConditionFailed => StateError::ConditionFailed,
            Fail::Corrupt(e) => StateError::Corrupt(e),
            Fail::Unavailable(e) => StateError::Unavailable(e),
        }
    }
}

impl From<Fail> for QueueError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Db(e) => QueueError::Unavailable(e.to_string()),
            Fail::ConditionFailed => QueueError::Rejected("the message changed".into()),
            Fail::Corrupt(e) | Fail::Unavailable(e) => QueueError::Unavailable(e),
        }
    }
}
