//! The connection threads: each takes whole batches from the collecting thread and writes
//! them, retrying transient failures with backoff and splitting a refused batch until the
//! refused rows stand alone; and what they share with the collecting thread.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::batch::Batch;
use super::cores::{self, WriterCpu};
use super::pg::sink::{self, Failure, Link, Mode};
use super::priority::set_nice;
use super::report::Reporter;
use super::warnings::Warnings;
use crate::queue::{Shared, mark_writer_thread};

/// First pause after a transient failure; doubled each time up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Batches handed to the connection threads and not yet written.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    pub(super) count: Mutex<usize>,
    pub(super) idle: Condvar,
}

impl InFlight {
    pub(super) fn add(&self) {
        if let Ok(mut n) = self.count.lock() {
            *n += 1;
        }
    }

    pub(super) fn done(&self) {
        if let Ok(mut n) = self.count.lock() {
            *n = n.saturating_sub(1);
            self.idle.notify_all();
        }
    }

    /// Waits until fewer than `limit` batches are being written.
    pub(super) fn wait_below(&self, limit: usize) {
        let Ok(mut n) = self.count.lock() else { return };
        while *n >= limit.max(1) {
            match self.idle.wait(n) {
                Ok(g) => n = g,
                Err(_) => return,
            }
        }
    }

    /// Waits until every batch handed over is written.
    pub(super) fn wait_idle(&self) {
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
pub(super) struct LinkShared {
    pub(super) shared: Arc<Shared>,
    pub(super) warnings: Arc<Mutex<Warnings>>,
    pub(super) in_flight: Arc<InFlight>,
    pub(super) writer_cpu: Arc<WriterCpu>,
    pub(super) reporter: Arc<Reporter>,
}

/// Starts the thread of one connection: it writes the batches it takes from `batches` until
/// the writer drops the sending side.
pub(super) fn spawn_link(
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

/// Checks the database (see [`probe`]) and moves the state by what it finds. Given up as soon
/// as a shutdown begins, so a connection attempt to a server that does not answer never holds
/// the guard's drop.
pub(super) async fn check(link: &mut Link, shared: &Shared, reporter: &Reporter) {
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

/// Folds the duration of a batch written at the first attempt into the moving average the
/// collecting thread reads (weight 1/4: a few batches follow a change of load). Concurrent
/// updates may lose one sample, which an average can afford.
pub(super) fn note_write_time(shared: &Shared, took: Duration) {
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
pub(super) async fn write(
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
        let failure = sink::classify(&err);
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
