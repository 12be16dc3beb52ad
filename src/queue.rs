//! The bounded queue between the application's threads and the writer, the counters behind
//! [`Stats`], and the mark of the writer's own threads (which the layer ignores).
//!
//! Enqueueing never waits: a record that does not fit (too many records, or too many bytes) is
//! counted as dropped and the caller goes on. The writer logs drops, rate-limited, from its own
//! thread, so a full queue never makes the application's thread log (which, through this very
//! layer, would enqueue again).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use crossbeam_utils::CachePadded;

use crate::model::health::Health;
use crate::model::record::{Queued, Record};
use crate::model::stats::Stats;

/// Memory a queued record takes besides its own bytes: its slot in the channel and the
/// allocator's headers and rounding of its few allocations. Counted so the byte cap bounds
/// the memory the queue really holds.
const PER_RECORD_OVERHEAD: usize = 96;

/// Counters shared by every handle and the writer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Counted by the application's threads on every record: on cache lines of their own, so
    /// the writer's updates of the other counters do not take them away from those threads.
    pub enqueued: CachePadded<AtomicU64>,
    pub queued_bytes: CachePadded<AtomicUsize>,
    pub written: AtomicU64,
    pub dropped_full: AtomicU64,
    pub dropped_closed: AtomicU64,
    pub dropped_unwritten: AtomicU64,
    pub rejected: AtomicU64,
    pub refused: AtomicU64,
    pub retries: AtomicU64,
    pub batches: AtomicU64,
    /// Whether the state is [`WriterState::Writing`]: read on every written batch so that
    /// writing on does not take the health's lock.
    pub connected: AtomicBool,
    /// The writer's state and last failure.
    pub health: Mutex<Health>,
    /// Why the last record was rejected; the writer logs it with the count.
    pub last_rejection: Mutex<Option<&'static str>>,
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        let (state, last_error, recovered_at) = match self.health.lock() {
            Ok(h) => (h.state, h.last_error.clone(), h.recovered_at),
            Err(_) => Default::default(),
        };
        Stats {
            enqueued: self.enqueued.load(Relaxed),
            written: self.written.load(Relaxed),
            dropped_full: self.dropped_full.load(Relaxed),
            dropped_closed: self.dropped_closed.load(Relaxed),
            dropped_unwritten: self.dropped_unwritten.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            refused: self.refused.load(Relaxed),
            retries: self.retries.load(Relaxed),
            batches: self.batches.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
            connected: self.connected.load(Relaxed),
            state,
            last_error,
            recovered_at,
        }
    }
}

/// What the handles and the writer share. The writer holds this, not the [`Queue`], so the
/// queue disconnects when the last handle is gone.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub counters: Counters,
    /// Set once a shutdown began: the writer stops retrying when this instant passes.
    pub shutdown_deadline: OnceLock<Instant>,
    /// How long a batch's first write attempt has been taking (a moving average, in µs): the
    /// writer starts a batch that much before its flush interval ends, so its rows are
    /// visible within about the interval.
    pub write_micros: std::sync::atomic::AtomicU64,
}

/// The sending side of the queue, held by the layer, the provider and the guard.
#[derive(Debug)]
pub(crate) struct Queue {
    tx: Sender<Queued>,
    max_bytes: usize,
    pub shared: Arc<Shared>,
}

impl Queue {
    pub fn new(tx: Sender<Queued>, max_bytes: usize, shared: Arc<Shared>) -> Self {
        Self {
            tx,
            max_bytes,
            shared,
        }
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Queues a record, or counts it as dropped. Never blocks, never fails.
    pub fn push(&self, record: Record) {
        let bytes = record.approx_bytes() + PER_RECORD_OVERHEAD;
        let before = self.counters().queued_bytes.fetch_add(bytes, Relaxed);
        if before.saturating_add(bytes) > self.max_bytes {
            self.counters().queued_bytes.fetch_sub(bytes, Relaxed);
            self.counters().dropped_full.fetch_add(1, Relaxed);
            return;
        }
        match self.tx.try_send((record, bytes)) {
            Ok(()) => {
                self.counters().enqueued.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.counters().queued_bytes.fetch_sub(bytes, Relaxed);
                let counter = match e {
                    TrySendError::Full(_) => &self.counters().dropped_full,
                    TrySendError::Disconnected(_) => &self.counters().dropped_closed,
                };
                counter.fetch_add(1, Relaxed);
                // The record is dropped here, on the caller's thread; its JSON is shallow
                // (the sanitiser bounds depth), so dropping it cannot recurse deeply.
            }
        }
    }

    /// Counts a record refused before queueing; the writer logs the count and the reason.
    pub fn reject(&self, reason: &'static str) {
        self.counters().rejected.fetch_add(1, Relaxed);
        if let Ok(mut g) = self.counters().last_rejection.lock() {
            *g = Some(reason);
        }
    }
}

thread_local! {
    /// Set on the writer's threads: the layer ignores every span and event there, so the
    /// writer's own work (sqlx's, tokio's) never becomes rows or re-enters the queue.
    static WRITER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is one of the writer's.
pub(crate) fn on_writer_thread() -> bool {
    WRITER_THREAD.with(std::cell::Cell::get)
}

/// Marks this thread as one of the writer's.
pub(crate) fn mark_writer_thread() {
    WRITER_THREAD.with(|w| w.set(true));
}
