//! The builder: one writer started for its layer or provider, from a URL, options or a pool
//! (the guard that stops it is in `guard.rs`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

mod guard;

pub use guard::{ShutdownReport, WriterGuard};

use crate::capture::{Handle, LayerConfig, PostgresLayer, PostgresProvider};
use crate::map::MapConfig;
use crate::map::privacy::{Privacy, TextKind};
use crate::model::prices::PriceTable;
use crate::model::sanitize::TextLimits;
use crate::model::stats::Stats;
use crate::partitions::PartitionPolicy;
use crate::queue::{Queue, Shared};
use crate::writer::{self, WriterConfig};

/// Where the writer connects.
#[derive(Debug, Clone)]
enum Target {
    Url(String),
    Options(Box<PgConnectOptions>),
}

/// Builds a [`PostgresProvider`] and the [`WriterGuard`] of its background writer.
///
/// Building never touches the database: the writer connects in the background, and records
/// are buffered (up to the queue's bounds) until it can write them.
///
/// ```no_run
/// use std::time::Duration;
/// # fn main() -> Result<(), tracing_postgres::BuildError> {
/// let (provider, guard) = tracing_postgres::Builder::new("postgres://app@localhost/app")
///     .queue_capacity(200_000)
///     .flush_interval(Duration::from_millis(250))
///     .build()?;
/// # drop((provider, guard));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Builder {
    target: Target,
    queue_capacity: usize,
    max_queue_bytes: usize,
    batch_size: usize,
    flush_interval: Duration,
    connections: u32,
    map: MapConfig,
    shutdown_timeout: Duration,
    layer: LayerConfig,
    privacy: Privacy,
    partitions: PartitionPolicy,
    lower_priority: bool,
    on_state_change: Option<writer::StateCallback>,
}

/// Shows where the writer connects without its password.
impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::Url(url) => mask_password(url),
            Target::Options(o) => format!(
                "postgres://{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default()
            ),
        };
        f.debug_struct("Builder")
            .field("target", &target)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("connections", &self.connections)
            .field("limits", &self.map.limits)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("privacy", &self.privacy)
            .field("partitions", &self.partitions)
            .field("lower_priority", &self.lower_priority)
            .field("on_state_change", &self.on_state_change.is_some())
            .finish_non_exhaustive()
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db` (and `password=` options
/// masked too).
fn mask_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let start = i + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |j| start + j);
        out.replace_range(start..end, "***");
    }
    out
}

/// The password of a URL as written in it (`user:secret@` or `password=secret`), if any, so
/// the writer can mask it in messages.
fn url_password(url: &str) -> Option<String> {
    let masked = mask_password(url);
    if masked == url {
        return None;
    }
    // The masked URL differs from the original only where a password was: the text the
    // first `***` replaced.
    let start = masked.find("***")?;
    let tail = &masked[start + 3..];
    let end = url.len().checked_sub(tail.len())?;
    url.get(start..end)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
}

/// Why [`Builder::build`] failed: only a bad configuration, never the database being down.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The database URL could not be parsed.
    InvalidUrl(sqlx::Error),
    /// The writer thread could not be started.
    Spawn(std::io::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // sqlx's parse errors do not echo the URL, so no password can leak through here.
            BuildError::InvalidUrl(e) => write!(f, "invalid database URL: {e}"),
            BuildError::Spawn(e) => write!(f, "cannot start the writer thread: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::InvalidUrl(e) => Some(e),
            BuildError::Spawn(e) => Some(e),
        }
    }
}

/// Default queue capacity: 262,144 records, over 50 s at 5,000 records/s.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1 << 18;
/// Default byte budget of the queue: 256 MiB of queued records.
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 256 << 20;
/// Default rows per batch.
pub const DEFAULT_BATCH_SIZE: usize = 10_000;
/// Default flush interval.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Default time the guard's drop waits for the queue to be written.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl Builder {
    /// Writes to the database at `url` (`postgres://user:password@host:port/db`).
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_target(Target::Url(url.into()))
    }

    /// Writes to the database an existing pool connects to. The writer opens its own small
    /// pool with the same options (on its own runtime, with statement logging off), so the
    /// application's pool is never borrowed and never waits on the writer.
    pub fn from_pool(pool: &PgPool) -> Self {
        Self::from_options((*pool.connect_options()).clone())
    }

    /// Writes to the database these options describe.
    pub fn from_options(options: PgConnectOptions) -> Self {
        Self::with_target(Target::Options(Box::new(options)))
    }

    fn with_target(target: Target) -> Self {
        Self {
            target,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            batch_size: DEFAULT_BATCH_SIZE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            connections: 3,
            map: MapConfig::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            layer: LayerConfig::default(),
            privacy: Privacy::default(),
            partitions: PartitionPolicy::default(),
            lower_priority: true,
            on_state_change: None,
        }
    }

    /// Most records the queue holds; more are dropped and counted. Default
    /// [`DEFAULT_QUEUE_CAPACITY`].
    pub fn queue_capacity(mut self, records: usize) -> Self {
        self.queue_capacity = records.max(1);
        self
    }

    /// Most bytes (approximate) the queued records may hold; more are dropped and counted.
    /// Default [`DEFAULT_MAX_QUEUE_BYTES`].
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes.max(1);
        self
    }

    /// Rows per batch: a batch is written when it has this many rows or when the flush
    /// interval passes, whichever comes first. Default [`DEFAULT_BATCH_SIZE`].
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// About the longest time from a record being queued to its row being visible, with
    /// the database keeping up: a batch is written this long after its first record, less
    /// what writing a batch has recently taken (at most half of it). Default
    /// [`DEFAULT_FLUSH_INTERVAL`].
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Connections the writer opens, each written by a thread of its own. Default 3.
    pub fn connections(mut self, n: u32) -> Self {
        self.connections = n.max(1);
        self
    }

    /// Text limits (error messages, previews, labels, JSON depth).
    pub fn text_limits(mut self, limits: TextLimits) -> Self {
        self.map.limits = limits;
        self
    }

    /// How long the guard's drop waits for queued records to be written. Default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether content is stored: chat message content, input and output previews, retrieval
    /// query text, source excerpts and score comments. With `false`, previews, query text and
    /// score comments are NULL and chat content is
    /// [`NOT_CAPTURED`](crate::privacy::NOT_CAPTURED); ids, names, types, timings,
    /// tokens, costs and score values are still stored. Default `true`.
    pub fn capture_content(mut self, on: bool) -> Self {
        self.privacy.skip_content = !on;
        self
    }

    /// A redaction hook, applied to every piece of text a record carries (see
    /// [`TextKind`](crate::privacy::TextKind)) on the caller's thread before the record is
    /// queued.
    ///
    /// ```
    /// use tracing_postgres::privacy::TextKind;
    /// let builder = tracing_postgres::Builder::new("postgres://localhost/app")
    ///     .redact(|_kind: TextKind, text: &mut String| {
    ///         if text.contains('@') {
    ///             *text = "[email]".to_owned();
    ///         }
    ///     });
    /// # drop(builder);
    /// ```
    pub fn redact(mut self, hook: impl Fn(TextKind, &mut String) + Send + Sync + 'static) -> Self {
        self.privacy.redactor = Some(Arc::new(hook));
        self
    }

    /// Whether the OpenTelemetry bridge's transport fields (`otel.kind`, `server.address`,
    /// `server.port`, as genai and other OTel-style instrumentation set them) are kept in a
    /// span's `metadata`. Default `false`: metadata holds what your code put there.
    pub fn otel_transport_fields(mut self, keep: bool) -> Self {
        self.map.otel_transport_fields = keep;
        self
    }

    /// Prices used to compute the cost of spans that report tokens but no cost (stored with
    /// `cost_source = 'computed'`). Default [`PriceTable::bundled`]; pass
    /// `PriceTable::bundled().with(...)` to add or override models, or
    /// [`PriceTable::empty()`] to compute no cost at all.
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.map.prices = prices;
        self
    }

    /// Events at this level or more severe are attached to their span's `metadata.events`
    /// (within [`max_events_per_span`](Self::max_events_per_span)); less severe events are left
    /// out, unless they are chat messages, document events or errors. Default `WARN`.
    pub fn attach_events(mut self, level: tracing::level_filters::LevelFilter) -> Self {
        self.layer.attach_events = level;
        self
    }

    /// Most events attached to one span; more are counted in `metadata.events_dropped`.
    /// Default 16.
    pub fn max_events_per_span(mut self, n: usize) -> Self {
        self.layer.max_events_per_span = n;
        self
    }

    /// Whether the layer writes every span as `in_progress` when it starts, so long spans are
    /// visible before they end. Root spans (traces) always are. Off by default: it doubles the
    /// records of short spans, which are merged into one row anyway.
    pub fn span_starts(mut self, on: bool) -> Self {
        self.map.span_starts = on;
        self
    }

    /// Whether the writer yields the machine's cores to the application (Linux only; default
    /// `true`). On a busy machine the writer then waits for the application's threads instead
    /// of taking their cores, and the queue buffers meanwhile:
    ///
    /// - the writer's threads run at a lower scheduling priority (`nice` +10);
    /// - the writer keeps at most as many [`connections`](Self::connections) busy at once as
    ///   the application leaves cores idle (measured from the process's CPU time, the
    ///   writer's own excluded, every 100 ms), and always one. Each busy connection keeps a
    ///   server backend busy, which takes a core from the application when the server runs on
    ///   the same machine, and a nice value cannot reach the server's processes. The writer
    ///   cannot tell a local server from a remote one, so it applies this in both cases.
    ///
    /// Turn it off when the machine is saturated for long stretches and the writer must keep
    /// up with every connection (the queue would otherwise fill and drop).
    pub fn lower_writer_priority(mut self, on: bool) -> Self {
        self.lower_priority = on;
        self
    }

    /// How the writer keeps the time partitions: their length, how many are made ahead, and an
    /// optional retention it enforces once a day (default: days, 3 ahead, no retention). See
    /// [`partitions`](crate::partitions).
    pub fn partitions(mut self, policy: PartitionPolicy) -> Self {
        self.partitions = policy;
        self
    }

    /// Calls `callback` with the writer's [`Stats`] whenever its [`state`](Stats::state)
    /// changes (connecting, writing, retrying, stopped) or the kind of its
    /// [`last_error`](Stats::last_error) does: to export the state to a health check or a
    /// metric.
    ///
    /// The callback runs on a thread of its own, never on a writer's thread, so a slow or
    /// blocking callback holds no write back (changes that happen while it runs are given to
    /// it together, as the state it then reads). A panic in it is caught and logged. Events it
    /// emits are not recorded by this crate's layer.
    ///
    /// ```
    /// use tracing_postgres::{Builder, WriterState};
    /// let builder = Builder::new("postgres://localhost/app").on_state_change(|stats| {
    ///     let healthy = stats.state == WriterState::Writing;
    ///     if let Some(e) = &stats.last_error {
    ///         eprintln!("observability writer: {} ({}); fix: {}", stats.state, e.message, e.fix);
    ///     }
    ///     # let _ = healthy;
    /// });
    /// # drop(builder);
    /// ```
    pub fn on_state_change(mut self, callback: impl Fn(&Stats) + Send + Sync + 'static) -> Self {
        self.on_state_change = Some(Arc::new(callback));
        self
    }

    /// Starts the writer and returns the layer (which is also the provider) and the writer's
    /// guard.
    pub fn build_layer(self) -> Result<(PostgresLayer, WriterGuard), BuildError> {
        let config = Arc::new(self.layer.clone());
        let (provider, guard) = self.build()?;
        Ok((PostgresLayer::new(provider, config), guard))
    }

    /// Starts the writer and returns the provider and the writer's guard.
    ///
    /// Keep the guard alive as long as records should be written: its drop flushes the queue
    /// and stops the writer. Binding it to `_` drops it at once (bind it to `_guard`).
    pub fn build(self) -> Result<(PostgresProvider, WriterGuard), BuildError> {
        let (connect, password) = match self.target {
            Target::Url(url) => (
                PgConnectOptions::from_str(&url).map_err(BuildError::InvalidUrl)?,
                url_password(&url),
            ),
            Target::Options(o) => (*o, None),
        };
        let connect = connect.application_name("tracing-postgres");
        let role = connect.get_username().to_owned();
        let (tx, rx) = crossbeam_channel::bounded(self.queue_capacity);
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::default());
        let map = Arc::new(self.map);
        let config = WriterConfig {
            connect,
            map: Arc::clone(&map),
            connections: self.connections,
            batch_size: self.batch_size,
            flush_interval: self.flush_interval,
            partitions: self.partitions,
            lower_priority: self.lower_priority,
            role,
            password,
            on_state_change: self.on_state_change,
        };
        let thread = writer::spawn(config, rx, control_rx, Arc::clone(&shared))
            .map_err(BuildError::Spawn)?;
        let keep_open = tx.clone();
        let handle = Arc::new(Handle {
            queue: Queue::new(tx, self.max_queue_bytes, Arc::clone(&shared)),
            map,
            privacy: self.privacy,
        });
        let guard = WriterGuard::new(control_tx, shared, thread, self.shutdown_timeout, keep_open);
        Ok((PostgresProvider { handle }, guard))
    }
}

#[cfg(test)]
mod tests;
