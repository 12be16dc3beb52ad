//! The `opentelemetry` feature: with tracing-opentelemetry (pinned in the dev-dependencies)
//! and an in-memory exporter in the same registry, every span's exported trace id and span id
//! are the ones stored here, and its exported parent is the stored parent.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanId as OtelSpanId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_postgres::*;
use tracing_postgres_test_support::fresh_db;
use tracing_subscriber::prelude::*;
use uuid::Uuid;

/// A remote caller's header, as another service would send it.
const REMOTE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What one test's spans look like in both stores.
struct Seen {
    exported: Vec<SpanData>,
    /// (trace id, span id, parent span id, name) of every `spans` row.
    spans: Vec<(Uuid, Uuid, Option<Uuid>, String)>,
    traces: Vec<(Uuid, String)>,
}

/// Runs `work` with the OpenTelemetry layer below a `PostgresLayer` (the supported order),
/// then reads both stores.
async fn run(ids: Option<OtelIds>, work: impl FnOnce()) -> Seen {
    let db = fresh_db().await;
    let exporter = InMemorySpanExporter::default();
    let mut provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone());
    if let Some(ids) = ids {
        provider = provider.with_id_generator(ids);
    }
    let provider = provider.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let (pg, guard) = Builder::new(&db.url).build_layer().unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(otel).with(pg));
    tracing::dispatcher::with_default(&dispatch, work);
    provider.force_flush().unwrap();
    assert!(guard.flush(Duration::from_secs(30)));
    let spans = sqlx::query_as(
        "SELECT trace_id, id, parent_span_id, name FROM observability.spans ORDER BY started_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let traces = sqlx::query_as("SELECT id, name FROM observability.traces")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    Seen {
        exported: exporter.get_finished_spans().unwrap(),
        spans,
        traces,
    }
}

fn trace_uuid(s: &SpanData) -> Uuid {
    Uuid::from_bytes(s.span_context.trace_id().to_bytes())
}

/// The stored uuid of an exported span id of `trace` (the trace id's first 8 bytes, then it).
fn span_uuid(trace: Uuid, id: OtelSpanId) -> Uuid {
    Uuid::from_u64_pair(trace.as_u64_pair().0, u64::from_be_bytes(id.to_bytes()))
}

/// The instrumented work of one request: nested spans, a span with an explicit parent made
/// before it is entered, fields recorded late, an async child, a chat message.
fn request(name: &'static str) {
    let root = tracing::info_span!("request", otel.name = name, operation_type = "chat");
    let _root = root.enter();
    let retrieve = tracing::info_span!("retrieve", span_type = "retrieval");
    retrieve.in_scope(|| {
        tracing::info_span!("embed query", span_type = "embedding").in_scope(|| {});
    });
    let late = tracing::info_span!(parent: &root, "rerank", top_score = tracing::field::Empty);
    late.record("top_score", 0.9);
    late.in_scope(|| {});
    drop(late);
    let llm = tracing::info_span!("llm", model = "gpt-4o-mini", prompt_tokens = 10_i64);
    block_on_ready(async {}.instrument(llm));
}

/// Polls a future that is ready at once (no runtime in these synchronous callbacks).
fn block_on_ready(f: impl std::future::Future<Output = ()>) {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(f.as_mut().poll(&mut cx).is_ready());
}

/// Every exported span has its stored twin under the same ids: a root is the `traces` row
/// (its span id the trace id's tail, with `OtelIds`), every other span a `spans` row whose
/// parent is the exported parent (NULL when that is the root).
fn assert_same_ids(seen: &Seen, roots_match: bool) {
    let by_name: HashMap<&str, usize> =
        seen.exported
            .iter()
            .map(|s| (s.name.as_ref(), 1))
            .fold(HashMap::new(), |mut m, (n, c)| {
                *m.entry(n).or_default() += c;
                m
            });
    assert!(!seen.exported.is_empty());
    let stored_roots: Vec<Uuid> = seen.traces.iter().map(|t| t.0).collect();
    let mut children = 0;
    for s in &seen.exported {
        let trace = trace_uuid(s);
        let local_root = s.parent_span_id == OtelSpanId::INVALID;
        if local_root {
            assert!(
                stored_roots.contains(&trace),
                "{} not stored as a trace",
                s.name
            );
            if roots_match {
                assert_eq!(
                    span_uuid(trace, s.span_context.span_id()),
                    trace,
                    "the root's span id is its trace id's tail"
                );
            }
            continue;
        }
        children += 1;
        let id = span_uuid(trace, s.span_context.span_id());
        let row = seen
            .spans
            .iter()
            .find(|r| r.1 == id)
            .unwrap_or_else(|| panic!("{} ({id}) not stored: {:?}", s.name, seen.spans));
        assert_eq!(row.0, trace, "{}: trace id", s.name);
        let parent = span_uuid(trace, s.parent_span_id);
        let parent_is_root = seen.exported.iter().any(|p| {
            p.span_context.span_id() == s.parent_span_id && p.parent_span_id == OtelSpanId::INVALID
        });
        if parent_is_root && roots_match {
            assert_eq!(row.2, None, "{}: child of the root", s.name);
        } else if !parent_is_root {
            assert_eq!(row.2, Some(parent), "{}: parent", s.name);
        }
    }
    assert_eq!(
        children,
        seen.spans.len(),
        "{by_name:?} vs {:?}",
        seen.spans
    );
}

#[tokio::test]
async fn with_otel_ids_every_exported_id_is_the_stored_one() {
    let handed_out = std::sync::Mutex::new(None);
    let seen = run(Some(OtelIds), || {
        request("first");
        request("second");
        // A root's context asked for before it is entered names OpenTelemetry's ids.
        let root = tracing::info_span!("handed out");
        *handed_out.lock().unwrap() = root.traceparent();
        root.in_scope(|| tracing::info_span!("after").in_scope(|| {}));
    })
    .await;
    assert_eq!(seen.traces.len(), 3);
    assert_eq!(seen.exported.len(), 12);
    assert_same_ids(&seen, true);
    let tp = handed_out.into_inner().unwrap().expect("a traceparent");
    let exported = seen
        .exported
        .iter()
        .find(|s| s.name == "handed out")
        .unwrap();
    assert_eq!(tp.trace_id.as_uuid(), trace_uuid(exported));
    assert_eq!(tp.parent_id, exported.span_context.span_id().to_bytes());
    // Time-ordered trace ids, as the ones made here.
    for (id, _) in &seen.traces {
        assert_eq!(id.get_version_num(), 7, "{id}");
    }
}

/// Without `OtelIds` (the SDK's random ids), trace ids and every span below the root still
/// match; only the root's own span id is OpenTelemetry's alone.
#[tokio::test]
async fn with_random_ids_trace_ids_and_spans_below_the_root_match() {
    let seen = run(None, || request("only")).await;
    assert_eq!(seen.traces.len(), 1);
    assert_same_ids(&seen, false);
}

/// A remote parent given to OpenTelemetry (`set_parent`, before the first entry) and one given
/// through the `traceparent` field both join the caller's trace, under the same ids as the
/// exported spans; neither writes a `traces` row here.
#[tokio::test]
async fn a_remote_parent_joins_under_the_exported_ids() {
    let seen = run(Some(OtelIds), || {
        let carrier = HashMap::from([("traceparent".to_owned(), REMOTE.to_owned())]);
        let remote = TraceContextPropagator::new().extract(&carrier);
        let via_otel = tracing::info_span!("via set_parent");
        via_otel.set_parent(remote.clone()).unwrap();
        via_otel.in_scope(|| tracing::info_span!("step a").in_scope(|| {}));

        let via_field = tracing::info_span!("via field", traceparent = REMOTE);
        via_field.set_parent(remote).unwrap();
        via_field.in_scope(|| tracing::info_span!("step b").in_scope(|| {}));
    })
    .await;
    assert!(seen.traces.is_empty(), "{:?}", seen.traces);
    let remote_trace = Uuid::parse_str("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let remote_span = Uuid::parse_str("4bf92f3577b34da600f067aa0ba902b7").unwrap();
    assert_eq!(seen.exported.len(), 4);
    for s in &seen.exported {
        let id = span_uuid(remote_trace, s.span_context.span_id());
        let row = seen.spans.iter().find(|r| r.1 == id).unwrap();
        assert_eq!(row.0, remote_trace);
        assert_eq!(trace_uuid(s), remote_trace);
        match s.name.as_ref() {
            // The field names the remote span; `set_parent` alone does not tell this layer
            // which one it is, so that span is stored under the trace's root.
            "via field" => assert_eq!(row.2, Some(remote_span)),
            "via set_parent" => assert_eq!(row.2, None),
            _ => assert_eq!(
                row.2,
                Some(span_uuid(remote_trace, s.parent_span_id)),
                "{}",
                s.name
            ),
        }
    }
}
