//! How many connections the writer keeps busy at once: no more than the cores the application
//! leaves idle, and always at least one.
//!
//! Each busy connection keeps a server backend busy. When the server runs on the same machine
//! (a small deployment's own PostgreSQL, or a developer's laptop), every backend beyond the
//! idle cores takes a core from the application's threads: the scheduler shares a core between
//! the application and the server's processes, and lowering the writer's own threads' priority
//! cannot reach the server's: on a two-core machine, three busy connections take a visible share
//! of one busy application thread's core, one connection little (`BENCHMARKS.md`).
//!
//! So the writer measures what the rest of the process uses, its own threads excluded, and
//! hands batches to at most as many connections as there are cores left over. While the
//! application idles (between bursts, after its work is done) the writer keeps one connection
//! busy per core, up to all of them; while it is busy, one, and the queue buffers meanwhile.
//! (Every connection on two cores, three rather than two, wrote no faster: the cores, not the
//! connections, bound the server's work there.) The writer cannot tell a
//! local server from a remote one, so it applies the rule in both cases;
//! [`Builder::lower_writer_priority`](crate::Builder::lower_writer_priority)`(false)` turns it
//! off with the lower priority.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The shortest window over which the application's CPU use is measured: shorter ones see the
/// scheduler's time slices rather than the load.
const WINDOW: Duration = Duration::from_millis(100);

/// CPU time the writer's threads have used, in ns, as each reports it.
#[derive(Debug, Default)]
pub(crate) struct WriterCpu(AtomicU64);

impl WriterCpu {
    /// Adds what the calling thread used since its last report (`last`, updated).
    pub(crate) fn report(&self, last: &mut u64) {
        let now = thread_cpu_ns();
        self.0.fetch_add(now.saturating_sub(*last), Relaxed);
        *last = now;
    }

    fn total(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A CPU-time reading of the process and of the writer's threads, and when it was taken.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    process_ns: u64,
    writer_ns: u64,
}

/// The connections the writer may keep busy, measured again once per [`WINDOW`].
#[derive(Debug)]
pub(crate) struct CoreBudget {
    /// `None` when the rule is off or the clocks are not available: every connection.
    cores: Option<f64>,
    max: usize,
    allowed: usize,
    last: Option<Reading>,
}

impl CoreBudget {
    /// A budget of at most `max` connections; `on == false` always allows all of them.
    pub(crate) fn new(on: bool, max: usize) -> Self {
        let max = max.max(1);
        let cores = std::thread::available_parallelism()
            .ok()
            .filter(|_| on && process_cpu_ns().is_some())
            .map(|n| n.get() as f64);
        Self {
            cores,
            max,
            allowed: max,
            last: None,
        }
    }

    /// The connections the writer may keep busy now.
    pub(crate) fn allowed(&mut self, writer: &WriterCpu) -> usize {
        let Some(cores) = self.cores else {
            return self.max;
        };
        let now = Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l.at) < WINDOW) {
            return self.allowed;
        }
        let Some(process_ns) = process_cpu_ns() else {
            return self.max;
        };
        let reading = Reading {
            at: now,
            process_ns,
            writer_ns: writer.total(),
        };
        if let Some(last) = self.last {
            self.allowed = connections_for(cores, app_cores(last, reading), self.max);
        }
        self.last = Some(reading);
        self.allowed
    }
}

/// The cores the application used between two readings: the process's CPU time less the
/// writer's, over the wall time between them.
fn app_cores(last: Reading, now: Reading) -> f64 {
    let wall = now.at.duration_since(last.at).as_nanos() as f64;
    // The writer's threads report after each batch, so a window may count more or less of
    // their time than it saw: the difference is clamped at zero.
    let writer = now.writer_ns.saturating_sub(last.writer_ns);
    let app = now
        .process_ns
        .saturating_sub(last.process_ns)
        .saturating_sub(writer);
    app as f64 / wall
}

/// Connections to keep busy on `cores` cores while the application uses `app_cores` of them:
/// the idle cores, rounded, between 1 and `max`.
fn connections_for(cores: f64, app_cores: f64, max: usize) -> usize {
    let idle = (cores - app_cores).max(0.0).round();
    // `idle` is finite, whole and at least 0 here (NaN becomes 0 through `max`).
    (idle as usize).clamp(1, max)
}

/// CPU time of the calling thread, in ns (0 where unsupported).
pub(crate) fn thread_cpu_ns() -> u64 {
    clock_ns(ClockKind::Thread).unwrap_or(0)
}

/// CPU time of the whole process, in ns, where supported.
fn process_cpu_ns() -> Option<u64> {
    clock_ns(ClockKind::Process)
}

enum ClockKind {
    Thread,
    Process,
}

#[cfg(target_os = "linux")]
fn clock_ns(kind: ClockKind) -> Option<u64> {
    use rustix::time::{ClockId, clock_gettime};
    let ts = clock_gettime(match kind {
        ClockKind::Thread => ClockId::ThreadCPUTime,
        ClockKind::Process => ClockId::ProcessCPUTime,
    });
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(not(target_os = "linux"))]
fn clock_ns(_kind: ClockKind) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connections_are_the_idle_cores_between_one_and_the_maximum() {
        // An idle application: every connection, up to the cores.
        assert_eq!(connections_for(2.0, 0.0, 3), 2);
        assert_eq!(connections_for(16.0, 0.3, 3), 3);
        // One busy thread on two cores: one connection.
        assert_eq!(connections_for(2.0, 1.0, 3), 1);
        assert_eq!(connections_for(2.0, 0.7, 3), 1);
        // Half a core busy on two cores rounds up to two idle ones.
        assert_eq!(connections_for(2.0, 0.5, 3), 2);
        // A saturated machine still gets one connection.
        assert_eq!(connections_for(2.0, 2.0, 3), 1);
        assert_eq!(connections_for(4.0, 7.5, 3), 1);
        // Readings that make no sense fall back to one, never to none.
        assert_eq!(connections_for(2.0, f64::NAN, 3), 1);
        assert_eq!(connections_for(2.0, f64::INFINITY, 3), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_busy_thread_of_the_application_takes_a_connection_from_the_writer() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut budget = CoreBudget::new(true, cores + 1);
        let writer = WriterCpu::default();
        // A first reading, then a window in which every core is busy with the application's
        // threads: had they not been counted, the budget would have allowed every core (two or
        // more on any machine with several).
        budget.allowed(&writer);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..cores)
            .map(|_| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        std::thread::sleep(WINDOW + Duration::from_millis(20));
        let busy = budget.allowed(&writer);
        stop.store(true, Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        assert_eq!(busy, 1);
        // Within a window the answer is kept.
        assert_eq!(budget.allowed(&writer), busy);
    }

    #[test]
    fn the_writers_own_cpu_is_not_the_applications() {
        let at = Instant::now();
        let reading = |ms: u64, process_ms: u64, writer_ms: u64| Reading {
            at: at + Duration::from_millis(ms),
            process_ns: process_ms * 1_000_000,
            writer_ns: writer_ms * 1_000_000,
        };
        // 100 ms in which the process used 150 ms of CPU, 100 of them the writer's.
        let used = app_cores(reading(0, 0, 0), reading(100, 150, 100));
        assert!((used - 0.5).abs() < 1e-9, "{used}");
        // The writer reported more than the window saw: none of it is the application's.
        assert_eq!(app_cores(reading(0, 0, 0), reading(100, 80, 120)), 0.0);
    }

    #[test]
    fn off_it_allows_every_connection() {
        let mut budget = CoreBudget::new(false, 3);
        assert_eq!(budget.allowed(&WriterCpu::default()), 3);
    }
}
