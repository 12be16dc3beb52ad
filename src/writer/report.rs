//! How the writer's threads tell the application what state they are in: they move the shared
//! [`Health`](crate::health::Health) from state to state, log each new failure once with its
//! fix (and the recovery), and wake the thread that runs the application's
//! [`on_state_change`](crate::Builder::on_state_change) callback.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};

use crate::model::health::{ErrorKind, WriterError, WriterState};
use crate::model::stats::Stats;
use crate::queue::{Shared, mark_writer_thread};

/// The application's callback for state changes.
pub(crate) type StateCallback = Arc<dyn Fn(&Stats) + Send + Sync>;

/// Moves the writer's state, shared by its threads.
pub(crate) struct Reporter {
    shared: Arc<Shared>,
    /// The writer's role, named in the fixes.
    role: String,
    /// Masked wherever a message would repeat it.
    password: Option<String>,
    /// Wakes the callback's thread (a channel of one: a wake-up already pending covers the
    /// change too, since the callback reads the state when it runs).
    wake: Option<Sender<()>>,
    /// Whether the database should be checked while nothing is written: at start, and after
    /// a check found a problem. A failed write is retried by its own batch, whose success
    /// says when the problem is gone, so a check meanwhile would only make the state flap.
    check_pending: AtomicBool,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Reporter {
    /// A reporter for the writer of `shared`, starting the callback's thread when there is a
    /// callback.
    pub fn new(
        shared: Arc<Shared>,
        role: String,
        password: Option<String>,
        callback: Option<StateCallback>,
    ) -> Reporter {
        let wake = callback.and_then(|cb| spawn_notifier(Arc::clone(&shared), cb));
        Reporter {
            shared,
            role,
            password,
            wake,
            check_pending: AtomicBool::new(true),
        }
    }

    /// The failure of an error of sqlx, with its kind and fix.
    fn error(&self, err: &sqlx::Error) -> WriterError {
        WriterError::new(err, &self.role, self.password.as_deref())
    }

    /// The failure of a write: `refused` when the database refused the data (the writer's
    /// classification decides, so the kind agrees with what the writer does with the rows).
    pub fn write_error(&self, err: &sqlx::Error, refused: bool) -> WriterError {
        self.check_pending.store(false, Relaxed);
        let error = self.error(err);
        let kind = match (refused, error.kind) {
            (true, _) => ErrorKind::Refused,
            // Retried, not refused (a row routed just as its partition was attached).
            (false, ErrorKind::Refused) => ErrorKind::Other,
            (false, kind) => kind,
        };
        error.with_kind(kind, &self.role)
    }

    /// Whether the database should be checked now (see `check_pending`).
    pub fn wants_check(&self) -> bool {
        self.check_pending.load(Relaxed)
    }

    /// What a check of the database found: nothing (the writer can write), a problem, or an
    /// error of the check itself.
    pub fn checked(&self, result: Result<Option<WriterError>, sqlx::Error>) {
        match result {
            Ok(None) => {
                self.check_pending.store(false, Relaxed);
                self.wrote();
            }
            Ok(Some(problem)) => {
                self.check_pending.store(true, Relaxed);
                self.failed(problem);
            }
            Err(e) => {
                self.check_pending.store(true, Relaxed);
                self.failed(self.error(&e));
            }
        }
    }

    /// The writer's role.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// A failure after which the records are kept and tried again.
    pub fn failed(&self, err: WriterError) {
        let news = {
            let Ok(mut h) = self.shared.counters.health.lock() else {
                return;
            };
            self.shared.counters.connected.store(false, Relaxed);
            h.failed(err.clone())
        };
        if news {
            // Once per new kind of failure; the writer's rate-limited warnings repeat it
            // while the retries go on.
            tracing::warn!(
                kind = err.kind.name(),
                error = %err.message,
                "tracing-postgres: cannot write to the database ({}); records are kept and \
                 retried. Fix: {}",
                err.kind,
                err.fix
            );
            self.wake();
        }
    }

    /// A row the database refused (already counted); its reason becomes the last error.
    pub fn refused(&self, err: WriterError) {
        if let Ok(mut h) = self.shared.counters.health.lock() {
            h.refused(err);
        }
    }

    /// An attempt the database accepted. Takes no lock while the state is already writing.
    pub fn wrote(&self) {
        // While writing, no check is pending (a check's failure clears `connected`), so the
        // written batches store nothing shared.
        if self.shared.counters.connected.load(Relaxed) {
            return;
        }
        self.check_pending.store(false, Relaxed);
        let before = {
            let Ok(mut h) = self.shared.counters.health.lock() else {
                return;
            };
            let before = h.wrote();
            self.shared.counters.connected.store(true, Relaxed);
            before
        };
        if let Some(WriterState::Retrying { since, attempts }) = before {
            let down_s = SystemTime::now()
                .duration_since(since)
                .unwrap_or_default()
                .as_secs_f64();
            tracing::info!(
                down_s,
                attempts,
                "tracing-postgres: writing again; the records kept meanwhile are being written"
            );
        }
        if before.is_some() {
            self.wake();
        }
    }

    /// The writer has stopped.
    pub fn stopped(&self) {
        if let Ok(mut h) = self.shared.counters.health.lock() {
            h.state = WriterState::Stopped;
        }
        self.shared.counters.connected.store(false, Relaxed);
        self.wake();
    }

    fn wake(&self) {
        if let Some(wake) = &self.wake {
            // Full: a wake-up is pending already. Disconnected: the callback's thread is gone.
            let _ = wake.try_send(());
        }
    }
}

/// Starts the thread that calls `callback` after each change, so a slow or blocking callback
/// never holds a write back. It stops when the reporter (every writer thread) is gone.
fn spawn_notifier(shared: Arc<Shared>, callback: StateCallback) -> Option<Sender<()>> {
    let (wake, woken) = crossbeam_channel::bounded::<()>(1);
    let started = std::thread::Builder::new()
        .name("tracing-postgres-state".into())
        .spawn(move || {
            // Events the callback emits are not recorded by the layer (like the writer's own).
            mark_writer_thread();
            notify(&shared, &callback, &woken);
        });
    match started {
        Ok(_) => Some(wake),
        Err(e) => {
            tracing::warn!(error = %e, "tracing-postgres: cannot start the thread of on_state_change; it will not be called");
            None
        }
    }
}

/// Calls `callback` with the stats after each wake-up whose state or failure differs from the
/// last one it was given.
fn notify(shared: &Shared, callback: &StateCallback, woken: &Receiver<()>) {
    let mut last: Option<(&'static str, Option<&'static str>)> = None;
    for () in woken.iter() {
        let stats = shared.counters.snapshot();
        let now = (
            stats.state.name(),
            stats.last_error.as_ref().map(|e| e.kind.name()),
        );
        if last == Some(now) {
            continue;
        }
        last = Some(now);
        if catch_unwind(AssertUnwindSafe(|| callback(&stats))).is_err() {
            tracing::warn!("tracing-postgres: the on_state_change callback panicked");
        }
        if stats.state == WriterState::Stopped {
            return;
        }
    }
}
