//! The writer: a thread of its own with its own single-threaded tokio runtime and connection
//! pool, which takes records from the queue, batches them by size or interval, and writes each
//! batch in one transaction, retrying transient failures and isolating refused rows.
//!
//! Owning its runtime means the writer works whether or not the application uses tokio, and
//! that shutting it down never needs the application's runtime (whose shutdown has deadlocked
//! many users of exporters that borrowed it).

pub(crate) mod batch;
pub(crate) mod copy;
mod sink;
pub(crate) mod tables;
mod upkeep;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

use crate::partitions::PartitionPolicy;
use crate::queue::Shared;
use crate::record::Queued;
use batch::Batch;
use sink::{Failure, Link, Mode};

thread_local! {
    /// Set on the writer's threads: the layer ignores every span and event there, so the
    /// writer's own work (sqlx's, tokio's) never becomes rows or re-enters the queue.
    static ON_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// `true` on a thread that belongs to a writer.
pub(crate) fn on_writer_thread() -> bool {
    ON_WRITER.with(Cell::get)
}

/// Marks the current thread as a writer's.
pub(crate) fn mark_writer_thread() {
    ON_WRITER.with(|f| f.set(true));
}

/// First pause after a transient failure; doubled each time up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// At most one warning of each kind per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// A batch is split across connections only when each part gets at least this many rows.
const MIN_ROWS_PER_CONNECTION: usize = 2_000;

/// What the writer needs to run.
#[derive(Debug)]
pub(crate) struct WriterConfig {
    pub connect: PgConnectOptions,
    pub connections: u32,
    pub batch_size: usize,
    pub partitions: PartitionPolicy,
    pub flush_interval: Duration,
}

/// Requests from the guard.
#[derive(Debug)]
pub(crate) enum Control {
    /// Write everything queued so far, then answer.
    Flush(Sender<()>),
    /// Write everything queued so far, answer and stop.
    Shutdown(Sender<()>),
}

/// Starts the writer thread.
pub(crate) fn spawn(
    config: WriterConfig,
    records: Receiver<Queued>,
    control: Receiver<Control>,
    shared: Arc<Shared>,
) -> std::io::Result<JoinHandle<()>> {
    // The partitions' upkeep has a thread and a connection of its own: its DDL may wait on a
    // lock for seconds, and no batch should wait with it. It stops when the writer does.
    let upkeep_stop = upkeep::spawn(config.partitions.clone(), config.connect.clone());
    std::thread::Builder::new()
        .name("tracing-postgres-writer".into())
        .spawn(move || {
            let _stop_upkeep_with_the_writer = upkeep_stop;
            mark_writer_thread();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_start(mark_writer_thread)
                .thread_name("tracing-postgres-blocking")
                .build();
            let runtime = match runtime {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "tracing-postgres: cannot start the writer's runtime; records will be counted as dropped");
                    return;
                }
            };
            // No statement logging, and no NOTICEs (such as "relation already exists") that
            // sqlx would log into the application's subscriber.
            let connect = config
                .connect
                .clone()
                .disable_statement_logging()
                .options([("client_min_messages", "warning")]);
            let links = (0..config.connections.max(1))
                .map(|_| Link::new(connect.clone()))
                .collect();
            let mut writer = Writer {
                runtime,
                links,
                shared,
                batch: Batch::with_capacity(config.batch_size.max(1)),
                batch_size: config.batch_size.max(1),
                flush_interval: config.flush_interval,
                warnings: RefCell::default(),
            };
            writer.run(&records, control);
            writer.give_up_queued(&records);
            writer.warnings.borrow_mut().report_now(&writer.shared);
        })
}

/// The writer's warnings: at most one burst per [`WARN_EVERY`], each saying what is new since
/// the last.
#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
    dropped: u64,
    rejected: u64,
    refused: u64,
    retries: u64,
}

impl Warnings {
    /// Logs what went wrong since the last warning, unless one was logged within
    /// [`WARN_EVERY`].
    fn report(&mut self, shared: &Shared) {
        if self.last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        self.report_now(shared);
    }

    /// Logs what went wrong since the last warning, now: at shutdown nothing may stay unsaid.
    fn report_now(&mut self, shared: &Shared) {
        let s = shared.counters.snapshot();
        let dropped = s.dropped();
        let any = dropped > self.dropped
            || s.rejected > self.rejected
            || s.refused > self.refused
            || s.retries > self.retries;
        if !any {
            return;
        }
        if dropped > self.dropped {
            tracing::warn!(
                dropped = dropped - self.dropped,
                total_dropped = dropped,
                "tracing-postgres: records dropped because the queue was full"
            );
        }
        if s.rejected > self.rejected {
            let reason = shared
                .counters
                .last_rejection
                .lock()
                .ok()
                .and_then(|g| *g)
                .unwrap_or("invalid record");
            tracing::warn!(
                rejected = s.rejected - self.rejected,
                last_reason = reason,
                "tracing-postgres: records rejected before queueing"
            );
        }
        if s.refused > self.refused {
            tracing::warn!(
                refused = s.refused - self.refused,
                last_error = s.last_error.as_deref().unwrap_or(""),
                "tracing-postgres: rows refused by the database"
            );
        }
        if s.retries > self.retries {
            tracing::warn!(
                retries = s.retries - self.retries,
                connected = s.connected,
                last_error = s.last_error.as_deref().unwrap_or(""),
                "tracing-postgres: database unavailable, records kept and retried"
            );
        }
        *self = Warnings {
            last: Some(Instant::now()),
            dropped,
            rejected: s.rejected,
            refused: s.refused,
            retries: s.retries,
        };
    }
}

struct Writer {
    runtime: tokio::runtime::Runtime,
    /// One per connection; a large batch is split across them and written concurrently.
    links: Vec<Link>,
    shared: Arc<Shared>,
    batch: Batch,
    batch_size: usize,
    flush_interval: Duration,
    warnings: RefCell<Warnings>,
}

impl Writer {
    fn run(&mut self, records: &Receiver<Queued>, mut control: Receiver<Control>) {
        let mut due = Instant::now() + self.flush_interval;
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            select! {
                recv(records) -> r => match r {
                    Ok(record) => {
                        self.take(record);
                        self.take_ready(records);
                    }
                    // Every handle is gone: write what is left and stop.
                    Err(_) => {
                        self.flush();
                        return;
                    }
                },
                recv(control) -> c => match c {
                    Ok(Control::Flush(done)) => {
                        self.take_all(records);
                        let _ = done.send(());
                    }
                    Ok(Control::Shutdown(done)) => {
                        self.take_all(records);
                        let _ = done.send(());
                        return;
                    }
                    // The guard is gone without a shutdown (it was forgotten): go on until
                    // the handles are gone.
                    Err(_) => control = crossbeam_channel::never(),
                },
                default(wait) => {}
            }
            let now = Instant::now();
            if self.batch.rows() >= self.batch_size || now >= due {
                self.flush();
                self.warnings.borrow_mut().report(&self.shared);
                due = Instant::now() + self.flush_interval;
            }
        }
    }

    fn take(&mut self, (record, bytes): Queued) {
        self.batch.push(record, bytes);
    }

    /// Takes what is already queued, up to a full batch, without waiting.
    fn take_ready(&mut self, records: &Receiver<Queued>) {
        while self.batch.rows() < self.batch_size {
            match records.try_recv() {
                Ok(r) => self.take(r),
                Err(_) => break,
            }
        }
    }

    /// Takes and writes everything queued when the request came. Only that: under a steady
    /// load the queue may never be empty, and a flush or shutdown must still end.
    fn take_all(&mut self, records: &Receiver<Queued>) {
        let mut remaining = records.len();
        loop {
            while remaining > 0 && self.batch.rows() < self.batch_size {
                match records.try_recv() {
                    Ok(r) => {
                        self.take(r);
                        remaining -= 1;
                    }
                    Err(_) => remaining = 0,
                }
            }
            self.flush();
            if remaining == 0 {
                break;
            }
        }
    }

    /// After stopping: whatever is still queued will not be written. Count it.
    fn give_up_queued(&mut self, records: &Receiver<Queued>) {
        let counters = &self.shared.counters;
        while let Ok(r) = records.try_recv() {
            counters.queued_bytes.fetch_sub(r.1, Relaxed);
            counters.dropped_unwritten.fetch_add(1, Relaxed);
        }
    }

    fn flush(&mut self) {
        if self.batch.records == 0 {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Batch::with_capacity(self.batch_size));
        let bytes = batch.bytes;
        // Split only batches big enough for a second connection to pay for its transaction.
        let parts = (batch.rows() / MIN_ROWS_PER_CONNECTION).clamp(1, self.links.len());
        let mut batches = vec![batch];
        while batches.len() < parts {
            // Halve the largest part until there are enough.
            batches.sort_by_key(Batch::rows);
            let Some(largest) = batches.pop() else { break };
            let (a, b) = largest.split();
            batches.extend([a, b]);
        }
        let (shared, warnings) = (&*self.shared, &self.warnings);
        let writes = self
            .links
            .iter_mut()
            .zip(batches)
            .map(|(link, batch)| write(link, shared, warnings, batch));
        self.runtime
            .block_on(futures_util::future::join_all(writes));
        self.shared.counters.queued_bytes.fetch_sub(bytes, Relaxed);
    }
}

/// Writes a batch: retries transient failures with backoff (keeping the rows), and when the
/// database refuses data, splits the batch until the refused rows stand alone.
async fn write(link: &mut Link, shared: &Shared, warnings: &RefCell<Warnings>, batch: Batch) {
    let counters = &shared.counters;
    let mut work = vec![(batch, Mode::Fast)];
    let mut backoff = INITIAL_BACKOFF;
    while let Some((batch, mode)) = work.pop() {
        let deadline = shared.shutdown_deadline.get().copied();
        let attempt = link.write(&batch, mode);
        let result = match deadline {
            Some(d) => tokio::time::timeout(d.saturating_duration_since(Instant::now()), attempt)
                .await
                .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut)),
            None => attempt.await,
        };
        let err = match result {
            Ok(()) => {
                counters.written.fetch_add(batch.record_count(), Relaxed);
                counters.batches.fetch_add(1, Relaxed);
                counters.connected.store(true, Relaxed);
                backoff = INITIAL_BACKOFF;
                continue;
            }
            Err(e) => e,
        };
        counters.set_last_error(err.to_string());
        match sink::classify(&err) {
            Failure::Transient => {
                counters.connected.store(false, Relaxed);
                counters.retries.fetch_add(1, Relaxed);
                warnings.borrow_mut().report(shared);
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let lost: u64 = batch.record_count()
                        + work.iter().map(|(b, _)| b.record_count()).sum::<u64>();
                    counters.dropped_unwritten.fetch_add(lost, Relaxed);
                    return;
                }
                let pause = match deadline {
                    Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                    None => backoff,
                };
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                work.push((batch, Mode::Idempotent));
            }
            Failure::Refused if batch.rows() <= 1 => {
                counters.refused.fetch_add(batch.record_count(), Relaxed);
                warnings.borrow_mut().report(shared);
            }
            // A fresh row may meet a row stored by a concurrent batch: retry the whole batch
            // through the upsert before searching for a refused row.
            Failure::Refused if mode == Mode::Fast => work.push((batch, Mode::Idempotent)),
            Failure::Refused => {
                let (left, right) = batch.split();
                work.push((right, Mode::Idempotent));
                work.push((left, Mode::Idempotent));
            }
        }
    }
}
