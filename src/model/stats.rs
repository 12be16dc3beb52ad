//! [`Stats`]: a snapshot of what happened to every record, and what the writer is doing.

use std::time::SystemTime;

use super::health::{WriterError, WriterState};

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
