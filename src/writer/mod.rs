//! The writer: a thread of its own with its own single-threaded tokio runtime and connection
//! pool, which takes records from the queue, batches them by size or interval, and writes each
//! batch in one transaction, retrying transient failures and isolating refused rows.
//!
//! Owning its runtime means the writer works whether or not the application uses tokio, and
//! that shutting it down never needs the application's runtime (whose shutdown has deadlocked
//! many users of exporters that borrowed it).

mod batch;
mod cores;
pub(crate) mod nodelay;
pub(crate) mod pg;
mod priority;
mod probe;
mod report;
mod upkeep;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

use batch::Batch;
use cores::{CoreBudget, WriterCpu};
use pg::sink::{Failure, Link, Mode};
use priority::{set_nice, writer_nice};
use report::Reporter;
pub(crate) use report::StateCallback;

use crate::map::MapConfig;
use crate::model::record::Queued;
use crate::partitions::PartitionPolicy;
use crate::queue::{Shared, mark_writer_thread};

/// A batch is split across connections only when each part gets at least this many rows.
const MIN_ROWS_PER_CONNECTION: usize = 1_500;

/// First pause after a transient failure; doubled each time up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// At most one warning of each kind per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the writer needs to run.
pub(crate) struct WriterConfig {
    pub connect: PgConnectOptions,
    /// How queued records become rows.
    pub map: Arc<MapConfig>,
    pub connections: u32,
    pub batch_size: usize,
    pub partitions: PartitionPolicy,
    /// Whether the writer's threads run at a lower scheduling priority.
    pub lower_priority: bool,
    pub flush_interval: Duration,
    /// The role the writer connects as, named in the fixes of its failures.
    pub role: String,
    /// The password of the database URL, masked wherever a message would repeat it.
    pub password: Option<String>,
    /// Called (on a thread of its own) when the writer's state changes.
    pub on_state_change: Option<StateCallback>,
}

impl std::fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterConfig")
            .field("role", &self.role)
            .field("connections", &self.connections)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .finish_non_exhaustive()
    }
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
    let nice = writer_nice(config.lower_priority);
    let upkeep_stop = upkeep::spawn(config.partitions.clone(), config.connect.clone(), nice);
    std::thread::Builder::new()
        .name("tracing-postgres-writer".into())
        .spawn(move || {
            let _stop_upkeep_with_the_writer = upkeep_stop;
            mark_writer_thread();
            set_nice(nice);
            // No statement logging, and no NOTICEs (such as "relation already exists") that
            // sqlx would log into the application's subscriber.
            let connect = config
                .connect
                .clone()
                .disable_statement_logging()
                .options([("client_min_messages", "warning")]);
            let warnings = Arc::new(Mutex::new(Warnings::default()));
            let reporter = Arc::new(Reporter::new(
                Arc::clone(&shared),
                config.role.clone(),
                config.password.clone(),
                config.on_state_change.clone(),
            ));
            let in_flight = Arc::new(InFlight::default());
            let writer_cpu = Arc::new(WriterCpu::default());
            // One thread per connection, each with its own runtime, taking whole batches from
            // `work`: while they write, this thread goes on collecting the next batch.
            let (work, batches) = crossbeam_channel::bounded::<Batch>(0);
            let mut links = Vec::new();
            for i in 0..config.connections.max(1) {
                let link = spawn_link(
                    i,
                    nice,
                    Link::new(connect.clone()),
                    batches.clone(),
                    LinkShared {
                        shared: Arc::clone(&shared),
                        warnings: Arc::clone(&warnings),
                        in_flight: Arc::clone(&in_flight),
                        writer_cpu: Arc::clone(&writer_cpu),
                        reporter: Arc::clone(&reporter),
                    },
                    // One connection checks the database at start, and again while the writer
                    // cannot write, so the state says why before (and after) any batch.
                    i == 0,
                );
                match link {
                    Ok(handle) => links.push(handle),
                    Err(e) => {
                        tracing::error!(error = %e, "tracing-postgres: cannot start a writer connection thread");
                    }
                }
            }
            drop(batches);
            if links.is_empty() {
                tracing::error!("tracing-postgres: no writer connection thread; records will be counted as dropped");
                // Count what is queued now; later pushes fail (the receiver is gone) and are
                // counted by the queue.
                let counters = &shared.counters;
                while let Ok((_, bytes)) = records.try_recv() {
                    counters.queued_bytes.fetch_sub(bytes, Relaxed);
                    counters.dropped_unwritten.fetch_add(1, Relaxed);
                }
                reporter.stopped();
                return;
            }
            let mut writer = Writer {
                work: Some(work),
                in_flight,
                shared,
                map: Arc::clone(&config.map),
                batch: Batch::with_capacity(config.batch_size.max(1)),
                batch_size: config.batch_size.max(1),
                budget: CoreBudget::new(config.lower_priority, links.len()),
                cpu_seen: cores::thread_cpu_ns(),
                writer_cpu,
                flush_interval: config.flush_interval,
                warnings,
                empty_at: Instant::now(),
                batch_since: Instant::now(),
            };
            writer.run(&records, control);
            // Every batch handed over is written (or given up at the deadline) before the
            // connection threads stop.
            writer.wait_idle();
            writer.work = None;
            for link in links {
                let _ = link.join();
            }
            writer.give_up_queued(&records);
            if let Ok(mut w) = writer.warnings.lock() {
                w.report_now(&writer.shared);
            }
            reporter.stopped();
        })
}

/// Batches handed to the connection threads and not yet written.
#[derive(Debug, Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    fn add(&self) {
        if let Ok(mut n) = self.count.lock() {
            *n += 1;
        }
    }

    fn done(&self) {
        if let Ok(mut n) = self.count.lock() {
            *n = n.saturating_sub(1);
            self.idle.notify_all();
        }
    }

    /// Waits until fewer than `limit` batches are being written.
    fn wait_below(&self, limit: usize) {
        let Ok(mut n) = self.count.lock() else { return };
        while *n >= limit.max(1) {
            match self.idle.wait(n) {
                Ok(g) => n = g,
                Err(_) => return,
            }
        }
    }

    /// Waits until every batch handed over is written.
    fn wait_idle(&self) {
        let Ok(mut n) = self.count.lock() else { return };
        while *n > 0 {
            match self.idle.wait(n) {
                Ok(g) => n = g,
                Err(_) => return,
            }
        }
    }
}

/// What a connection thread shares with the writer's thread and the other connections'.
struct LinkShared {
    shared: Arc<Shared>,
    warnings: Arc<Mutex<Warnings>>,
    in_flight: Arc<InFlight>,
    writer_cpu: Arc<WriterCpu>,
    reporter: Arc<Reporter>,
}

/// Starts the thread of one connection: it writes the batches it takes from `batches` until
/// the writer drops the sending side.
fn spawn_link(
    i: u32,
    nice: Option<i32>,
    mut link: Link,
    batches: Receiver<Batch>,
    with: LinkShared,
    checks: bool,
) -> std::io::Result<JoinHandle<()>> {
    let LinkShared {
        shared,
        warnings,
        in_flight,
        writer_cpu,
        reporter,
    } = with;
    std::thread::Builder::new()
        .name(format!("tracing-postgres-conn-{i}"))
        .spawn(move || {
            mark_writer_thread();
            set_nice(nice);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_start(mark_writer_thread)
                .thread_name("tracing-postgres-blocking")
                .build();
            let runtime = match runtime {
                Ok(rt) => rt,
                Err(e) => {
                    // Leave the batches to the other connections' threads: this one's receiver
                    // goes with it, and if no thread is left, `flush` counts what it cannot
                    // hand over.
                    tracing::error!(error = %e, "tracing-postgres: cannot start a writer connection's runtime");
                    return;
                }
            };
            let mut cpu_seen = cores::thread_cpu_ns();
            let mut check_every = checks.then_some(Duration::ZERO);
            loop {
                let next = match check_every {
                    // Checks while nothing is written: at once, then with backoff while the
                    // database cannot be written.
                    Some(wait) if reporter.wants_check() => {
                        match batches.recv_timeout(wait) {
                            Ok(batch) => Some(batch),
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                                runtime.block_on(check(&mut link, &shared, &reporter));
                                check_every = Some(if wait.is_zero() {
                                    INITIAL_BACKOFF
                                } else {
                                    (wait * 2).min(MAX_BACKOFF)
                                });
                                continue;
                            }
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
                        }
                    }
                    _ => batches.recv().ok(),
                };
                let Some(batch) = next else { break };
                if check_every.is_some() {
                    // A new outage is checked from the shortest pause again.
                    check_every = Some(INITIAL_BACKOFF);
                }
                let bytes = batch.bytes;
                runtime.block_on(write(&mut link, &shared, &warnings, &reporter, batch));
                shared.counters.queued_bytes.fetch_sub(bytes, Relaxed);
                writer_cpu.report(&mut cpu_seen);
                in_flight.done();
            }
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
        let (kind, message, fix) = s.last_error.as_ref().map_or(("", "", ""), |e| {
            (e.kind.name(), e.message.as_str(), e.fix.as_str())
        });
        if s.refused > self.refused {
            tracing::warn!(
                refused = s.refused - self.refused,
                last_error = message,
                "tracing-postgres: rows refused by the database (skipped and counted; the \
                 rest of their batches written)"
            );
        }
        if s.retries > self.retries {
            tracing::warn!(
                retries = s.retries - self.retries,
                state = %s.state,
                kind,
                last_error = message,
                "tracing-postgres: cannot write to the database ({kind}), records kept and \
                 retried. Fix: {fix}"
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
    /// Whole batches to the connection threads (a rendezvous: handing over waits for a free
    /// connection, so at most one batch per connection is in flight and one being collected).
    work: Option<Sender<Batch>>,
    in_flight: Arc<InFlight>,
    shared: Arc<Shared>,
    /// How the records taken become rows.
    map: Arc<MapConfig>,
    batch: Batch,
    batch_size: usize,
    /// How many of the connection threads running may write at once (see [`cores`]); its
    /// maximum is how many are running.
    budget: CoreBudget,
    /// CPU time of the writer's threads, this one's included, and this one's at its last report.
    writer_cpu: Arc<WriterCpu>,
    cpu_seen: u64,
    flush_interval: Duration,
    warnings: Arc<Mutex<Warnings>>,
    /// When this thread last saw the queue empty: every record queued now arrived after it.
    empty_at: Instant,
    /// The earliest its first record can have been queued, for the batch being collected.
    batch_since: Instant,
}

impl Writer {
    fn run(&mut self, records: &Receiver<Queued>, mut control: Receiver<Control>) {
        // When the batch being collected must go, set by its first record: `flush_interval`
        // bounds the time from a record's arrival in the queue to its row being visible, so
        // the batch goes that long after the earliest its first record can have arrived, less
        // what writing one has been taking. Counting from arrival, not from when this thread
        // took the record, matters after a backlog: the rows left when the queue runs dry have
        // waited already, and go at once instead of another interval later.
        let mut due: Option<Instant> = None;
        // Warnings (drops, rejections counted on the callers' threads) are reported after each
        // batch and at least once per interval.
        let mut report_at = Instant::now() + self.flush_interval;
        loop {
            let next = due.map_or(report_at, |d| d.min(report_at));
            let wait = next.saturating_duration_since(Instant::now());
            let was_empty = records.is_empty();
            select! {
                recv(records) -> r => match r {
                    Ok(record) => {
                        if was_empty {
                            // It arrived while this thread waited.
                            self.empty_at = Instant::now();
                        }
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
                        self.wait_idle();
                        let _ = done.send(());
                    }
                    Ok(Control::Shutdown(done)) => {
                        self.take_all(records);
                        self.wait_idle();
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
            if self.batch.records == 0 {
                due = None;
            } else if due.is_none() {
                due = Some(self.batch_since + self.collect_for());
            }
            let go = self.batch.rows() >= self.batch_size || due.is_some_and(|d| now >= d);
            if go {
                self.flush();
                due = None;
            }
            if go || now >= report_at {
                if let Ok(mut w) = self.warnings.lock() {
                    w.report(&self.shared);
                }
                report_at = Instant::now() + self.flush_interval;
            }
        }
    }

    /// How long a batch collects after its first record: the flush interval less what a write
    /// has been taking (at most half the interval, so batches still gather rows).
    fn collect_for(&self) -> Duration {
        collect_for(self.flush_interval, self.shared.write_micros.load(Relaxed))
    }

    fn take(&mut self, (record, bytes): Queued) {
        if self.batch.records == 0 {
            self.batch_since = self.empty_at;
        }
        self.batch.push(record, bytes, &self.map);
    }

    /// Takes what is already queued, up to a full batch, without waiting.
    fn take_ready(&mut self, records: &Receiver<Queued>) {
        while self.batch.rows() < self.batch_size {
            match records.try_recv() {
                Ok(r) => self.take(r),
                Err(_) => {
                    self.empty_at = Instant::now();
                    break;
                }
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

    /// Hands the batch to the first free connection thread (waiting for one when all the
    /// connections the budget allows are busy: the queue buffers meanwhile).
    fn flush(&mut self) {
        if self.batch.records == 0 {
            return;
        }
        let Some(work) = &self.work else { return };
        let batch = std::mem::replace(&mut self.batch, Batch::with_capacity(self.batch_size));
        self.writer_cpu.report(&mut self.cpu_seen);
        let allowed = self.budget.allowed(&self.writer_cpu);
        // A batch big enough is split across the connections, written side by side: its rows
        // are visible sooner.
        let parts = (batch.rows() / MIN_ROWS_PER_CONNECTION).clamp(1, allowed);
        let mut batches = vec![batch];
        while batches.len() < parts {
            // Halve the largest part until there are enough.
            batches.sort_by_key(Batch::rows);
            let Some(largest) = batches.pop() else { break };
            let (a, b) = largest.split();
            batches.extend([a, b]);
        }
        for batch in batches {
            self.in_flight.wait_below(allowed);
            self.in_flight.add();
            if let Err(crossbeam_channel::SendError(batch)) = work.send(batch) {
                // Every connection thread is gone (they only stop when `work` is dropped, or
                // when they could not start): the batch cannot be written.
                let counters = &self.shared.counters;
                counters
                    .dropped_unwritten
                    .fetch_add(batch.record_count(), Relaxed);
                counters.queued_bytes.fetch_sub(batch.bytes, Relaxed);
                self.in_flight.done();
            }
        }
    }

    /// Waits until every batch handed over is written.
    fn wait_idle(&self) {
        self.in_flight.wait_idle();
    }
}

/// Checks the database (see [`probe`]) and moves the state by what it finds. Given up as soon
/// as a shutdown begins, so a connection attempt to a server that does not answer never holds
/// the guard's drop.
async fn check(link: &mut Link, shared: &Shared, reporter: &Reporter) {
    let checked = std::pin::pin!(link.check(reporter.role()));
    let stop = std::pin::pin!(async {
        while shared.shutdown_deadline.get().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    match futures_util::future::select(checked, stop).await {
        futures_util::future::Either::Left((result, _)) => reporter.checked(result),
        futures_util::future::Either::Right(_) => {}
    }
}

/// A batch's collecting time: `interval` less `write_micros` (at most half of it).
fn collect_for(interval: Duration, write_micros: u64) -> Duration {
    interval - Duration::from_micros(write_micros).min(interval / 2)
}

/// Folds the duration of a batch written at the first attempt into the moving average the
/// collecting thread reads (weight 1/4: a few batches follow a change of load). Concurrent
/// updates may lose one sample, which an average can afford.
fn note_write_time(shared: &Shared, took: Duration) {
    let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    let old = shared.write_micros.load(Relaxed);
    let new = if old == 0 {
        sample
    } else {
        old - old / 4 + sample / 4
    };
    shared.write_micros.store(new, Relaxed);
}

/// Writes a batch: retries transient failures with backoff (keeping the rows), and when the
/// database refuses data, splits the batch until the refused rows stand alone.
async fn write(
    link: &mut Link,
    shared: &Shared,
    warnings: &Mutex<Warnings>,
    reporter: &Reporter,
    batch: Batch,
) {
    let counters = &shared.counters;
    let mut work = vec![(batch, Mode::Fast)];
    let mut backoff = INITIAL_BACKOFF;
    let mut first = true;
    while let Some((batch, mode)) = work.pop() {
        let started = Instant::now();
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
                if std::mem::take(&mut first) {
                    note_write_time(shared, started.elapsed());
                }
                counters.written.fetch_add(batch.record_count(), Relaxed);
                counters.batches.fetch_add(1, Relaxed);
                reporter.wrote();
                backoff = INITIAL_BACKOFF;
                continue;
            }
            Err(e) => e,
        };
        // Only batches written at the first attempt feed the average.
        first = false;
        let failure = pg::sink::classify(&err);
        let error = reporter.write_error(&err, failure == Failure::Refused);
        if failure == Failure::Refused {
            reporter.refused(error.clone());
        }
        match failure {
            Failure::Transient => {
                counters.retries.fetch_add(1, Relaxed);
                reporter.failed(error);
                if let Ok(mut w) = warnings.lock() {
                    w.report(shared);
                }
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
                if let Ok(mut w) = warnings.lock() {
                    w.report(shared);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_collects_for_the_interval_less_what_writing_takes() {
        let interval = Duration::from_millis(500);
        assert_eq!(collect_for(interval, 0), interval);
        assert_eq!(collect_for(interval, 80_000), Duration::from_millis(420));
        // Slow writes never shrink collecting below half the interval.
        assert_eq!(collect_for(interval, 5_000_000), Duration::from_millis(250));
    }

    #[test]
    fn the_write_time_is_a_moving_average_seeded_by_the_first_batch() {
        let shared = Shared::default();
        note_write_time(&shared, Duration::from_millis(100));
        assert_eq!(shared.write_micros.load(Relaxed), 100_000);
        note_write_time(&shared, Duration::from_millis(20));
        assert_eq!(shared.write_micros.load(Relaxed), 80_000);
        for _ in 0..40 {
            note_write_time(&shared, Duration::from_millis(20));
        }
        assert!(shared.write_micros.load(Relaxed).abs_diff(20_000) < 100);
    }

    #[test]
    fn handing_over_waits_until_fewer_batches_than_allowed_are_in_flight() {
        let in_flight = Arc::new(InFlight::default());
        in_flight.add();
        in_flight.add();
        // Below three: at once.
        in_flight.wait_below(3);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let waiter = {
            let in_flight = Arc::clone(&in_flight);
            std::thread::spawn(move || {
                in_flight.wait_below(2);
                tx.send(()).unwrap();
            })
        };
        // Two in flight: the waiter waits for one of them to be written.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        in_flight.done();
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
        waiter.join().unwrap();
        // A limit of zero is taken as one.
        in_flight.done();
        in_flight.wait_below(0);
    }
}
