//! Unit tests of the layer.

use tracing::Dispatch;
use tracing_subscriber::prelude::*;

/// Spans and events on a writer thread are never recorded: without this guard the writer's
/// own work would feed the queue it drains.
#[test]
fn nothing_is_recorded_on_a_writer_thread() {
    let (layer, guard) = crate::Builder::new("postgres://nobody@127.0.0.1:1/none")
        .shutdown_timeout(std::time::Duration::from_millis(50))
        .build_layer()
        .expect("valid configuration");
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    let on_writer = std::thread::spawn({
        let dispatch = dispatch.clone();
        move || {
            crate::queue::mark_writer_thread();
            tracing::dispatcher::with_default(&dispatch, || {
                let _root = tracing::info_span!("writer_work", model = "m").entered();
                tracing::error!(role = "user", content = "x", "ignored");
            });
        }
    });
    assert!(on_writer.join().is_ok());
    assert_eq!(layer.stats().enqueued + layer.stats().dropped_full, 0);
    // The same work on an application thread is recorded (a start and an end).
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("app_work").entered();
    });
    assert_eq!(layer.stats().enqueued, 2);
    drop(guard);
}
