//! [`WriterGuard`]: keeps the writer running, flushes on demand, and on drop (or
//! [`shutdown`](WriterGuard::shutdown)) writes what is queued within a deadline and stops the
//! writer, reporting what was written and lost ([`ShutdownReport`]).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::model::record::Queued;
use crate::model::stats::Stats;
use crate::queue::Shared;
use crate::writer::Control;

/// What a shutdown wrote and lost.
///
/// `stats.dropped_unwritten` counts every record not written by the end, including those a
/// writer stuck past its deadline still held.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The counters at the end.
    pub stats: Stats,
    /// Whether everything queued was written (or refused by the database) before the
    /// deadline, with nothing left unwritten.
    pub complete: bool,
}

impl ShutdownReport {
    /// Records written over the writer's life.
    pub fn written(&self) -> u64 {
        self.stats.written
    }

    /// Records dropped over the writer's life (queue full, after shutdown, or unwritten when
    /// the deadline passed).
    pub fn dropped(&self) -> u64 {
        self.stats.dropped()
    }
}

/// Keeps the writer running; dropping it writes what is queued (within the builder's shutdown
/// timeout) and stops the writer.
///
/// Bind it to a named variable for the life of the program (`let _guard = ...`): a guard
/// bound to `_` is dropped at once, and the writer stops before anything is recorded.
#[derive(Debug)]
#[must_use = "dropping the guard stops the writer: bind it to a variable such as `_guard`"]
pub struct WriterGuard {
    control: Sender<Control>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    timeout: Duration,
    /// Keeps the queue open while the guard lives, so the writer outlives every layer and
    /// provider handle until the guard's flush or shutdown.
    _keep_open: Sender<Queued>,
}

impl WriterGuard {
    pub(crate) fn new(
        control: Sender<Control>,
        shared: Arc<Shared>,
        thread: JoinHandle<()>,
        timeout: Duration,
        keep_open: Sender<Queued>,
    ) -> Self {
        Self {
            control,
            shared,
            thread: Some(thread),
            timeout,
            _keep_open: keep_open,
        }
    }

    /// The writer's counters now. This is the one `stats()`: the layer's and the provider's
    /// read the same counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Writes everything queued before this call, waiting at most `timeout`. Returns `true`
    /// when it was written (or refused) in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        if self.control.send(Control::Flush(done_tx)).is_err() {
            return false;
        }
        done_rx.recv_timeout(timeout).is_ok()
    }

    /// Writes everything queued, waiting at most `timeout`, stops the writer and reports what
    /// was written and what was dropped. Records still unwritten at the deadline are counted
    /// as dropped.
    pub fn shutdown(mut self, timeout: Duration) -> ShutdownReport {
        self.stop(timeout)
    }

    fn stop(&mut self, timeout: Duration) -> ShutdownReport {
        let Some(thread) = self.thread.take() else {
            return self.report(true);
        };
        let deadline = Instant::now() + timeout;
        let _ = self.shared.shutdown_deadline.set(deadline);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let answered = self.control.send(Control::Shutdown(done_tx)).is_ok()
            // A little past the deadline: the writer gives up on its own at the deadline.
            && done_rx.recv_timeout(timeout + Duration::from_millis(200)).is_ok();
        if answered {
            // The writer answered and is returning; joining cannot wait on the database.
            let _ = thread.join();
        }
        // Otherwise the writer is stuck past its deadline: leave it detached rather than
        // block the application, and count what it still holds as dropped.
        self.report(answered)
    }

    fn report(&self, answered: bool) -> ShutdownReport {
        let mut stats = self.shared.counters.snapshot();
        let unaccounted = stats.pending();
        let complete = answered && unaccounted == 0 && stats.dropped_unwritten == 0;
        // What a writer stuck past its deadline still holds is lost too.
        stats.dropped_unwritten += unaccounted;
        ShutdownReport { stats, complete }
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let timeout = self.timeout;
            self.stop(timeout);
        }
    }
}
