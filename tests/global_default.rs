//! Installed as the global default (a process of its own, so the global dispatcher is real),
//! with sqlx and the application logging at TRACE: the layer writes no row for its own work,
//! and neither deadlocks nor recurses.

use tracing_postgres_test_support as common;

use std::time::{Duration, Instant};

use tracing_postgres::*;
use tracing_subscriber::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_default_at_trace_writes_only_the_applications_rows() {
    let db = common::fresh_db().await;
    let (layer, guard) = Builder::new(&db.url)
        .attach_events(tracing::level_filters::LevelFilter::TRACE)
        .flush_interval(Duration::from_millis(20))
        .build_layer()
        .unwrap();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("trace"))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(layer)
        .init();

    let started = Instant::now();
    for i in 0..200_i64 {
        let root = tracing::info_span!("app_request", i);
        let _r = root.enter();
        {
            let _s = tracing::trace_span!("app_step", model = "m", prompt_tokens = 1_i64).entered();
            tracing::trace!(i, "app trace event");
        }
        // The application's own database work, logged by sqlx at TRACE inside its span.
        let n: i64 = sqlx::query_scalar("SELECT $1::bigint")
            .bind(i)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(n, i);
    }
    assert!(guard.flush(Duration::from_secs(30)));
    // The writer's many statements (and its pauses between flushes) ran under the same global
    // subscriber at TRACE: none of them is a row.
    std::thread::sleep(Duration::from_millis(200));
    assert!(guard.flush(Duration::from_secs(30)));
    let elapsed = started.elapsed();

    let traces = common::count(&db.pool, "traces").await;
    let spans = common::count(&db.pool, "spans").await;
    assert_eq!(traces, 200);
    assert_eq!(spans, 200);
    let names: Vec<String> = sqlx::query_scalar("SELECT DISTINCT name FROM observability.traces UNION SELECT DISTINCT name FROM observability.spans ORDER BY 1")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(names, ["app_request", "app_step"]);
    let stats = guard.stats();
    assert_eq!(stats.enqueued, stats.written, "{stats:?}");
    // Per request: a trace start, a trace end (merged into one row) and one span.
    assert_eq!(stats.written, 600, "{stats:?}");
    // Bounded: no runaway feedback loop (a generous bound for a debug build on 2 cores).
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}
