//! The writer's rate-limited warnings: drops, rejections, refusals and retries, each burst
//! saying what is new since the last.

use std::time::{Duration, Instant};

use crate::queue::Shared;

/// At most one warning of each kind per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The writer's warnings: at most one burst per [`WARN_EVERY`], each saying what is new since
/// the last.
#[derive(Debug, Default)]
pub(super) struct Warnings {
    pub(super) last: Option<Instant>,
    pub(super) dropped: u64,
    pub(super) rejected: u64,
    pub(super) refused: u64,
    pub(super) retries: u64,
}

impl Warnings {
    /// Logs what went wrong since the last warning, unless one was logged within
    /// [`WARN_EVERY`].
    pub(super) fn report(&mut self, shared: &Shared) {
        if self.last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        self.report_now(shared);
    }

    /// Logs what went wrong since the last warning, now: at shutdown nothing may stay unsaid.
    pub(super) fn report_now(&mut self, shared: &Shared) {
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
