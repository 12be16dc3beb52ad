//! The writer's threads run at a lower scheduling priority by default, and at the
//! application's when asked (Linux: their nice values, read from /proc).
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use tracing_postgres::{Builder, PartitionPolicy};

/// Nice values of this process's threads whose name starts with "tracing-postgre" (names are
/// cut to 15 bytes), and of the calling thread.
fn writer_nices() -> (Vec<i64>, i64) {
    let nice_of = |task: &std::path::Path| -> Option<i64> {
        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 1..];
        after.split_whitespace().nth(16)?.parse().ok()
    };
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("tracing-postgre") {
            nices.extend(nice_of(&task.path()));
        }
    }
    let me = nice_of(std::path::Path::new("/proc/thread-self")).unwrap();
    (nices, me)
}

fn build(lower: bool) -> tracing_postgres::WriterGuard {
    // No server needed: the threads start at once, and the writer only buffers.
    let (_provider, guard) = Builder::new("postgres://nobody@127.0.0.1:1/none")
        .partitions(PartitionPolicy {
            maintain: false,
            ..Default::default()
        })
        .lower_writer_priority(lower)
        .shutdown_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    guard
}

/// Waits until the writer's threads (the writer and one per connection) are up.
fn threads_up(n: usize) -> (Vec<i64>, i64) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (nices, me) = writer_nices();
        if nices.len() >= n || Instant::now() > end {
            return (nices, me);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn writer_threads_are_niced_unless_asked_not_to_be() {
    let guard = build(false);
    let (nices, me) = threads_up(4);
    assert_eq!(
        nices.len(),
        4,
        "the writer and its three connection threads"
    );
    assert!(nices.iter().all(|n| *n == me), "{nices:?} vs {me}");
    drop(guard);
    let end = Instant::now() + Duration::from_secs(10);
    while !writer_nices().0.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        writer_nices().0.is_empty(),
        "the first writer's threads are gone"
    );

    let guard = build(true);
    let (nices, me) = threads_up(4);
    assert_eq!(nices.len(), 4);
    assert!(
        nices.iter().all(|n| *n == (me + 10).min(19)),
        "{nices:?} vs {me}"
    );
    drop(guard);
}
