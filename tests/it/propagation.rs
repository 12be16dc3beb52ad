//! The W3C `traceparent` a context gives: its fields are the ids the rows are stored under, so
//! another system (a log line, Jaeger, a downstream service) can find the rows by them.

use tracing_postgres_test_support as common;

use std::time::Duration;

use common::fresh_db;
use sqlx::Row;
use tracing::{Dispatch, Span};
use tracing_postgres::*;
use tracing_subscriber::prelude::*;
use uuid::Uuid;

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

/// Spans named `name`: (id, trace id, parent span id).
async fn spans_named(pool: &sqlx::PgPool, name: &str) -> Vec<(Uuid, Uuid, Option<Uuid>)> {
    sqlx::query_as("SELECT id, trace_id, parent_span_id FROM observability.spans WHERE name = $1")
        .bind(name)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Two writers (two layers, as two processes would have) on one database: the api's root
/// sends its context to the worker's root, which joins the trace. `worker_first`: the worker
/// finishes and flushes before the api's root closes.
async fn two_writers_one_trace(worker_first: bool) {
    let db = fresh_db().await;
    let (api_layer, api_guard) = Builder::new(&db.url).build_layer().unwrap();
    let (worker_layer, worker_guard) = Builder::new(&db.url).build_layer().unwrap();
    let api = Dispatch::new(tracing_subscriber::registry().with(api_layer));
    let worker = Dispatch::new(tracing_subscriber::registry().with(worker_layer));

    let run_worker = |traceparent: String| {
        tracing::dispatcher::with_default(&worker, || {
            let top = tracing::info_span!("worker_ingest", %traceparent);
            let _top = top.enter();
            tracing::info_span!(
                "embed",
                model = "text-embedding-3-small",
                prompt_tokens = 100,
                cost_usd = 0.002
            )
            .in_scope(|| {});
            tracing::info!(document_id = %Uuid::now_v7(), event_type = "embed", status = "success");
        });
        assert!(worker_guard.flush(Duration::from_secs(30)));
    };
    let (trace, call_span) = tracing::dispatcher::with_default(&api, || {
        let root = tracing::info_span!("api_request");
        let _root = root.enter();
        tracing::info_span!(
            "answer",
            model = "gpt-4o-mini",
            prompt_tokens = 10,
            completion_tokens = 5,
            cost_usd = 0.001
        )
        .in_scope(|| {});
        let call = tracing::info_span!("call_worker");
        let _call = call.enter();
        let ctx = TraceContext::current().unwrap();
        let tp = Span::current().traceparent().unwrap();
        assert_eq!(tp, ctx.traceparent());
        if worker_first {
            run_worker(tp.to_string());
        }
        (ctx.trace_id.as_uuid(), ctx.span_id.unwrap().as_uuid())
    });
    if !worker_first {
        // The api's rows land first, the worker's share minutes later in real life.
        assert!(api_guard.flush(Duration::from_secs(30)));
        let tp = TraceParent::of_span(TraceId(trace), SpanId(call_span));
        run_worker(tp.to_string());
    }
    assert!(api_guard.flush(Duration::from_secs(30)));

    // One traces row: the api's.
    let traces: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, name FROM observability.traces")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(traces, vec![(trace, "api_request".to_owned())]);
    // The worker's top span is the api's call span's child, in the api's trace; its own child
    // is below it.
    let top = spans_named(&db.pool, "worker_ingest").await;
    assert_eq!(top.len(), 1);
    assert_eq!((top[0].1, top[0].2), (trace, Some(call_span)));
    assert_eq!(top[0].0.as_bytes()[..8], trace.as_bytes()[..8]);
    let embed = spans_named(&db.pool, "embed").await;
    assert_eq!((embed[0].1, embed[0].2), (trace, Some(top[0].0)));
    let event_trace: Uuid =
        sqlx::query_scalar("SELECT trace_id FROM observability.document_events")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(event_trace, trace);
    // Totals: both processes' usage, once each.
    assert_eq!(
        common::trace_totals(&db.pool, trace).await,
        (110, 5, 115, Some("0.003000".to_owned()))
    );
    let parts: i64 = sqlx::query_scalar("SELECT count(*) FROM observability.trace_parts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(parts, 2);
    // The duration and status are the api's.
    let status: String = sqlx::query_scalar("SELECT status FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_joining_the_trace_adds_its_usage_once_when_it_finishes_last() {
    two_writers_one_trace(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_joining_the_trace_adds_its_usage_once_when_it_finishes_first() {
    two_writers_one_trace(true).await;
}

#[tokio::test]
async fn an_explicit_context_from_a_traceparent_continues_the_remote_trace() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    // The origin: an explicit trace that hands its context out.
    let origin = TraceContext::new();
    p.start_trace(&origin, "api_request", OperationType::Chat, None);
    let call = p.start_span(&origin, "call_worker", SpanType::Internal, None);
    let tp = origin.child(call).traceparent();
    p.log_llm_call(
        &origin,
        LlmCall {
            metrics: LlmMetrics {
                model: Some("gpt-4o".into()),
                prompt_tokens: Some(7),
                completion_tokens: Some(3),
                ..Default::default()
            },
            ..LlmCall::default()
        },
    );

    // The worker: a context from the header, tracestate kept.
    let ctx = TraceContext::from_traceparent(&tp.to_string())
        .unwrap()
        .with_tracestate("vendor=abc,other=1");
    assert!(ctx.is_remote());
    assert_eq!(ctx.trace_id, origin.trace_id);
    assert_eq!(ctx.span_id, Some(call));
    assert_eq!(ctx.tracestate(), Some("vendor=abc,other=1"));
    assert_eq!(ctx.traceparent().trace_id, origin.trace_id);
    // No second traces row: refused and counted.
    let before = guard.stats().rejected;
    p.start_trace(&ctx, "worker", OperationType::Document, None);
    assert_eq!(guard.stats().rejected, before + 1);
    let step = p.start_span(&ctx, "embed_batch", SpanType::Embedding, None);
    let llm = p.log_llm_call(
        &ctx.child(step),
        LlmCall {
            metrics: LlmMetrics {
                model: Some("text-embedding-3-small".into()),
                prompt_tokens: Some(50),
                ..Default::default()
            },
            ..LlmCall::default()
        },
    );
    p.end_span(&ctx, step, SpanEnd::default());
    p.end_span(&origin, call, SpanEnd::default());
    p.end_trace(&origin, Outcome::success(), TraceTotals::default());
    assert!(guard.flush(Duration::from_secs(30)));

    let parent: Option<Uuid> = sqlx::query_scalar(
        "SELECT parent_span_id FROM observability.spans WHERE name = 'embed_batch'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(parent, Some(call.as_uuid()));
    let llm_trace: Uuid =
        sqlx::query_scalar("SELECT trace_id FROM observability.spans WHERE id = $1")
            .bind(llm.as_uuid())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(llm_trace, origin.trace_id.as_uuid());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (prompt, completion, total, _) =
        common::trace_totals(&db.pool, origin.trace_id.as_uuid()).await;
    assert_eq!((prompt, completion, total), (57, 3, 60));
}

/// Values no `traceparent` may be: each root that carries one starts a trace of its own, and
/// the refusal is counted. `from_traceparent` gives `None` for each.
#[tokio::test]
async fn hostile_traceparents_start_new_traces_and_are_counted() {
    let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let hostile: Vec<String> = vec![
        good.replacen("00", "ff", 1),
        good[..54].to_owned(),
        format!("{good}0"),
        good.to_uppercase(),
        "00-00000000000000000000000000000000-b7ad6b7169203331-01".to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01".to_owned(),
        "x".repeat(10 * 1024),
        format!("00-{}-b7ad6b7169203331-01", "é".repeat(16)),
        good.replace('7', "\0"),
        good.replace('-', "_"),
    ];
    for h in &hostile {
        assert!(TraceContext::from_traceparent(h).is_none(), "{h:?}");
    }
    assert!(TraceContext::from_traceparent("").is_none());
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().unwrap();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for h in &hostile {
            let root = tracing::info_span!("request", traceparent = %h);
            root.in_scope(|| tracing::info_span!("step").in_scope(|| {}));
        }
        // A number is no header value either.
        tracing::info_span!("request", traceparent = 7).in_scope(|| {});
        // An empty value is a request without the header: a root, and nothing refused.
        tracing::info_span!("request", traceparent = "").in_scope(|| {});
    });
    assert!(guard.flush(Duration::from_secs(30)));
    let stats = guard.stats();
    assert_eq!(stats.rejected, hostile.len() as u64 + 1);
    let traces: i64 = sqlx::query_scalar("SELECT count(DISTINCT id) FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(traces, hostile.len() as i64 + 2);
    // No value was stored anywhere.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.traces WHERE metadata ? 'traceparent'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    let remote: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.spans WHERE trace_id = '0af76519-16cd-43dd-8448-eb211c80319c'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(remote, 0);
}

/// A root declared with `traceparent = Empty` joins when the value is recorded; one that never
/// gets a value is an ordinary root, written whole at its close. The remote flags and
/// `tracestate` are given back unchanged. A remote trace id that is not a UUIDv7 (from
/// another tracer) reads back through the query API by the trace id.
#[tokio::test]
async fn a_traceparent_recorded_late_joins_and_a_missing_one_leaves_a_root() {
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().unwrap();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let (out, state) = tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!(
            "handle",
            traceparent = tracing::field::Empty,
            tracestate = tracing::field::Empty
        );
        root.set_traceparent(remote);
        root.set_tracestate("congo=t61rcWkgMzE");
        // A root of its own (nothing entered yet), whose traceparent never comes.
        let lonely = tracing::info_span!("lonely", traceparent = tracing::field::Empty);
        drop(lonely);
        let _root = root.enter();
        let ctx = TraceContext::current().unwrap();
        tracing::info_span!("llm", model = "gpt-4o", prompt_tokens = 12).in_scope(|| {});
        (ctx.traceparent(), ctx.tracestate().map(str::to_owned))
    });
    assert!(guard.flush(Duration::from_secs(30)));
    let tp = TraceParent::parse(remote).unwrap();
    assert_eq!(out.trace_id, tp.trace_id);
    assert!(!out.sampled(), "the remote flags pass through");
    assert_eq!(state.as_deref(), Some("congo=t61rcWkgMzE"));

    let top = spans_named(&db.pool, "handle").await;
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].1, tp.trace_id.as_uuid());
    assert_eq!(top[0].2, Some(tp.parent_uuid()));
    // The origin is another tracer: no traces row here, and its share of the usage waits for
    // one.
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM observability.traces")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(names, vec!["lonely".to_owned()]);
    let share: (i64,) =
        sqlx::query_as("SELECT prompt_tokens FROM observability.trace_parts WHERE trace_id = $1")
            .bind(tp.trace_id.as_uuid())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(share, (12,));
    let tree = tracing_postgres::query::trace_tree(&db.pool, tp.trace_id.as_uuid())
        .await
        .unwrap()
        .expect("found by its spans");
    assert_eq!(tree.spans.len(), 2);
}
