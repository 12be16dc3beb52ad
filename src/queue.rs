//! The bounded queue between the application's threads and the writer, and the counters
//! behind [`Stats`].
//!
//! Enqueueing never waits: a record that does not fit (too many records, or too many bytes) is
//! counted as dropped and the caller goes on. The writer logs drops, rate-limited, from its own
//! thread, so a full queue never makes the application's thread log (which, through this very
//! layer, would enqueue again).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Sender, TrySendError};
use crossbeam_utils::CachePadded;

use crate::health::{Health, WriterError, WriterState};
use crate::record::{Queued, Record};

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

/// A snapshot of the writer's counters, from [`stats`](crate::PostgresLayer::stats).
///
/// Every record a handle was given ends in exactly one of: `written`, `dropped_full`,
/// `dropped_closed`, `dropped_unwritten`, `rejected` or `refused`; the rest are still queued or
/// being written (`pending()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Records accepted into the queue.
    pub enqueued: u64,
    /// Records written to the database (a span's start and end merged into one row count 2).
    pub written: u64,
    /// Records dropped because the queue was full (by count or by bytes).
    pub dropped_full: u64,
    /// Records dropped because the writer had shut down.
    pub dropped_closed: u64,
    /// Records still unwritten when a shutdown's deadline passed.
    pub dropped_unwritten: u64,
    /// Records refused before queueing because they were invalid (for example a chat message
    /// without session, user and kb ids), each with a logged reason.
    pub rejected: u64,
    /// Records the database refused (each isolated from its batch, counted and logged).
    pub refused: u64,
    /// Write attempts retried after a transient error.
    pub retries: u64,
    /// Batches written.
    pub batches: u64,
    /// Bytes (approximate) of the records queued or being written.
    pub queued_bytes: usize,
    /// Whether the writer's last attempt reached the database: `state` is
    /// [`WriterState::Writing`].
    pub connected: bool,
    /// What the writer is doing now: connecting, writing, retrying (since when, how many
    /// attempts) or stopped.
    pub state: WriterState,
    /// Why the writer is not writing, while it retries: the kind of failure, the server's
    /// message and the fix. Cleared when writing resumes (see `recovered_at`). Otherwise the
    /// reason the database gave for the last refused row, if any.
    pub last_error: Option<WriterError>,
    /// When writing last resumed after a failure.
    pub recovered_at: Option<SystemTime>,
}

impl Stats {
    /// Records accepted and not yet written, dropped or refused.
    pub fn pending(&self) -> u64 {
        self.enqueued
            .saturating_sub(self.written + self.dropped_unwritten + self.refused)
    }

    /// Every record dropped, for whatever reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_full + self.dropped_closed + self.dropped_unwritten
    }
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
    /// The layer's options and the text limits, set when a layer is built: the writer maps
    /// the layer's raw spans to rows with them.
    pub layer: OnceLock<(Arc<crate::layer::LayerConfig>, crate::sanitize::TextLimits)>,
    /// The text limits, for the rows the writer maps.
    pub limits: crate::sanitize::TextLimits,
    /// How long a batch's first write attempt has been taking (a moving average, in µs): the
    /// writer starts a batch that much before its flush interval ends, so its rows are
    /// visible within about the interval.
    pub write_micros: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Maps a raw span of the layer or a raw LLM call to its row; other records pass
    /// unchanged.
    pub fn finish(&self, record: Record) -> Record {
        match record {
            Record::Raw(raw) => {
                // Raw spans come only from a layer, which sets its options first.
                let default;
                let (config, limits) = match self.layer.get() {
                    Some((config, limits)) => (&**config, limits),
                    None => {
                        default = Default::default();
                        (&default, &self.limits)
                    }
                };
                let row = crate::layer::finish_span(config, limits, raw.into_raw());
                Record::Span(Box::new(row))
            }
            Record::Llm(raw) => {
                Record::Span(Box::new(crate::provider::finish_llm(&self.limits, *raw)))
            }
            other => other,
        }
    }
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
