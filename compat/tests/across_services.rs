//! Runs the "Across services" example (an axum service continuing the caller's trace, a reqwest
//! client sending it, a job carrying it through PostgreSQL) and reads the trace back: one
//! `traces` row, every part's spans under the right parents, every part's usage counted once.

use tracing_postgres_test_support::{fresh_db, trace_totals};

#[path = "../examples/across_services.rs"]
#[allow(dead_code)] // the example's `main`
mod example;

#[tokio::test(flavor = "current_thread")]
async fn the_example_writes_one_trace_across_its_three_parts() {
    let db = fresh_db().await;
    let trace_id = example::run(&db.url).await.unwrap();
    let trace = uuid::Uuid::parse_str(&trace_id).unwrap();

    let traces: i64 = sqlx::query_scalar("SELECT count(*) FROM observability.traces WHERE id = $1")
        .bind(trace)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(traces, 1, "one traces row for the whole trace");
    // The service's 100 + 20 tokens and the worker's 40, each once.
    let totals = trace_totals(&db.pool, trace).await;
    assert_eq!((totals.0, totals.1, totals.2), (140, 20, 160), "{totals:?}");

    // name -> parent's name, within the trace (NULL parent: under the root).
    let edges: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT s.name, p.name FROM observability.spans s \
         LEFT JOIN observability.spans p ON p.trace_id = s.trace_id AND p.id = s.parent_span_id \
         WHERE s.trace_id = $1 ORDER BY s.started_at",
    )
    .bind(trace)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let parent_of = |name: &str| {
        edges
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no span {name:?} in {edges:?}"))
            .1
            .clone()
    };
    assert_eq!(parent_of("call rag service"), None);
    assert_eq!(
        parent_of("POST /answer").as_deref(),
        Some("call rag service")
    );
    assert_eq!(parent_of("llm").as_deref(), Some("POST /answer"));
    assert_eq!(
        parent_of("ingest document").as_deref(),
        Some("POST /answer")
    );
    assert_eq!(
        parent_of("embed chunks").as_deref(),
        Some("ingest document")
    );
    assert_eq!(edges.len(), 5, "{edges:?}");

    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.document_events WHERE trace_id = $1",
    )
    .bind(trace)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(events, 2);
}
