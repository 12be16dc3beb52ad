//! The writer's scheduling priority: its threads run at a lower priority (a higher nice value)
//! than the application's, so under CPU contention the application's threads go first.

/// How much lower than the application's threads the writer's run (Linux `nice` steps).
const WRITER_NICE: i32 = 10;

/// The nice value the writer's threads take: the calling (application's) thread's plus
/// [`WRITER_NICE`], or `None` to leave them at the application's.
///
/// Computed once, on the thread that starts the writer: threads inherit their creator's nice
/// value on Linux, so a per-thread "current plus 10" would lower the threads the writer starts
/// twice.
pub(super) fn writer_nice(lower: bool) -> Option<i32> {
    if !lower {
        return None;
    }
    #[cfg(target_os = "linux")]
    {
        // On Linux, `PRIO_PROCESS` with a thread id reads that one thread's nice value.
        let tid = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        Some(now.saturating_add(WRITER_NICE).min(19))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Sets the current thread's nice value (see [`writer_nice`]): on a busy machine the writer's
/// work waits for the application's threads rather than taking their cores (the queue buffers
/// meanwhile). Best effort: where it is not supported or not allowed, nothing changes.
pub(super) fn set_nice(nice: Option<i32>) {
    let Some(_nice) = nice else { return };
    // On Linux, `PRIO_PROCESS` with a thread id sets that one thread's nice value.
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), _nice);
}
