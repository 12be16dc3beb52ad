//! The W3C `traceparent` a context gives: its fields are the ids the rows are stored under, so
//! another system (a log line, Jaeger, a downstream service) can find the rows by them.

use tracing_postgres_test_support as common;

use std::time::Duration;

use common::fresh_db;
use sqlx::Row;
use tracing::Dispatch;
use tracing_postgres::*;
use tracing_subscriber::prelude::*;

#[tokio::test]
async fn a_spans_traceparent_names_its_stored_trace_and_span() {
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().unwrap();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let (at_root, in_child) = tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("api_request");
        let _root = root.enter();
        let at_root = TraceContext::current().expect("a context").traceparent();
        let child = tracing::info_span!("call_worker");
        let _child = child.enter();
        let in_child = TraceContext::current().expect("a context").traceparent();
        (at_root, in_child)
    });
    assert!(guard.flush(Duration::from_secs(30)));

    // Both parse back as sent, sampled.
    for tp in [at_root, in_child] {
        assert_eq!(TraceParent::parse(&tp.to_string()), Ok(tp));
        assert!(tp.sampled());
    }
    let trace: String = sqlx::query_scalar("SELECT trace_id::text FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let row = sqlx::query(
        "SELECT replace(trace_id::text, '-', '') AS trace, span_id::text AS span \
         FROM observability.spans WHERE name = 'call_worker'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let (span_trace, span): (String, String) = (row.get("trace"), row.get("span"));
    assert_eq!(in_child.to_string(), format!("00-{trace}-{span}-01"));
    assert_eq!(span_trace, trace);
    // The root has no span row: its parent id is the trace id's last 16 hex digits.
    assert_eq!(
        at_root.to_string(),
        format!("00-{trace}-{}-01", &trace[16..])
    );
    assert_eq!(at_root.trace_id, in_child.trace_id);
    assert_ne!(at_root.parent_id, in_child.parent_id);
}

#[test]
fn an_explicit_context_gives_its_current_spans_traceparent() {
    let ctx = TraceContext::new();
    let root = ctx.traceparent();
    assert_eq!(root.trace_id, ctx.trace_id);
    let span = SpanId::new();
    let child = ctx.child(span).traceparent();
    assert_eq!(child.to_string(), format!("00-{}-{span}-01", ctx.trace_id));
    assert_ne!(root, child);
}
