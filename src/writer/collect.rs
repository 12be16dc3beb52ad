//! The collecting thread's loop: takes records from the queue into a batch until it is full
//! or its interval has passed, and hands whole batches to the connection threads.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use super::batch::Batch;
use super::cores::{CoreBudget, WriterCpu};
use super::links::InFlight;
use super::warnings::Warnings;
use crate::map::MapConfig;
use crate::model::record::Queued;
use crate::queue::Shared;

/// A batch is split across connections only when each part gets at least this many rows.
const MIN_ROWS_PER_CONNECTION: usize = 1_500;

/// Requests from the guard.
#[derive(Debug)]
pub(crate) enum Control {
    /// Write everything queued so far, then answer.
    Flush(Sender<()>),
    /// Write everything queued so far, answer and stop.
    Shutdown(Sender<()>),
}

pub(super) struct Writer {
    /// Whole batches to the connection threads (a rendezvous: handing over waits for a free
    /// connection, so at most one batch per connection is in flight and one being collected).
    pub(super) work: Option<Sender<Batch>>,
    pub(super) in_flight: Arc<InFlight>,
    pub(super) shared: Arc<Shared>,
    /// How the records taken become rows.
    pub(super) map: Arc<MapConfig>,
    pub(super) batch: Batch,
    pub(super) batch_size: usize,
    /// How many of the connection threads running may write at once (see [`cores`]); its
    /// maximum is how many are running.
    pub(super) budget: CoreBudget,
    /// CPU time of the writer's threads, this one's included, and this one's at its last report.
    pub(super) writer_cpu: Arc<WriterCpu>,
    pub(super) cpu_seen: u64,
    pub(super) flush_interval: Duration,
    pub(super) warnings: Arc<Mutex<Warnings>>,
    /// When this thread last saw the queue empty: every record queued now arrived after it.
    pub(super) empty_at: Instant,
    /// The earliest its first record can have been queued, for the batch being collected.
    pub(super) batch_since: Instant,
}

impl Writer {
    pub(super) fn run(&mut self, records: &Receiver<Queued>, mut control: Receiver<Control>) {
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
    pub(super) fn collect_for(&self) -> Duration {
        collect_for(self.flush_interval, self.shared.write_micros.load(Relaxed))
    }

    pub(super) fn take(&mut self, (record, bytes): Queued) {
        if self.batch.records == 0 {
            self.batch_since = self.empty_at;
        }
        self.batch.push(record, bytes, &self.map);
    }

    /// Takes what is already queued, up to a full batch, without waiting.
    pub(super) fn take_ready(&mut self, records: &Receiver<Queued>) {
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
    pub(super) fn take_all(&mut self, records: &Receiver<Queued>) {
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
    pub(super) fn give_up_queued(&mut self, records: &Receiver<Queued>) {
        let counters = &self.shared.counters;
        while let Ok(r) = records.try_recv() {
            counters.queued_bytes.fetch_sub(r.1, Relaxed);
            counters.dropped_unwritten.fetch_add(1, Relaxed);
        }
    }

    /// Hands the batch to the first free connection thread (waiting for one when all the
    /// connections the budget allows are busy: the queue buffers meanwhile).
    pub(super) fn flush(&mut self) {
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
    pub(super) fn wait_idle(&self) {
        self.in_flight.wait_idle();
    }
}

/// A batch's collecting time: `interval` less `write_micros` (at most half of it).
pub(super) fn collect_for(interval: Duration, write_micros: u64) -> Duration {
    interval - Duration::from_micros(write_micros).min(interval / 2)
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
}
