//! With the `opentelemetry` feature: the ids tracing-opentelemetry gives a span become the
//! ids stored for it, so a trace found in Jaeger or Tempo opens here by the same id, and back.
//!
//! tracing-opentelemetry (0.34) gives a span its ids only when it starts the OpenTelemetry
//! span: when the span is first entered, when a child is made under it, or when its context
//! is asked for. The layer reads them through [`tracing_opentelemetry::get_otel_context`]
//! (the only public way in, which starts the span if it has not started yet):
//!
//! - a span inside a trace, when it is made (starting it then changes nothing that
//!   OpenTelemetry exports: its start time was taken then already);
//! - a root, not before it is entered or gets a child, so that `OpenTelemetrySpanExt::set_parent`
//!   called between its creation and its first entry still works. Its `traces` row waits
//!   until then.
//!
//! Our model names a trace's root by the trace id itself (its W3C span id is the trace id's
//! last 8 bytes). [`OtelIds`], installed as the OpenTelemetry SDK's id generator, makes
//! OpenTelemetry's root span ids follow the same rule, and its trace ids time-ordered UUIDv7s.

use std::cell::Cell;

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use tracing::Dispatch;
use tracing::span::Id;
use uuid::Uuid;

use crate::capture::span_data::SpanData;
use crate::model::ids::{SpanId as SpanIdHere, TraceId as TraceIdHere, v7_now};
use crate::model::traceparent::TraceParent;

/// An id generator for the OpenTelemetry SDK that makes the ids OpenTelemetry exports the ones
/// this crate stores: trace ids are UUIDv7s (time-ordered, like the trace ids made here), and a
/// root span's id is its trace id's last 8 bytes, which is how a trace's root is named here.
///
/// Install it on the tracer provider beside the `PostgresLayer`:
///
/// ```
/// # use opentelemetry_sdk::trace::SdkTracerProvider;
/// let provider = SdkTracerProvider::builder()
///     .with_id_generator(tracing_postgres::OtelIds::default())
///     .build();
/// ```
///
/// Without it, the trace ids and the ids of every span below the root still match; only the
/// root's own span id differs (the layer logs this once).
#[derive(Debug, Clone, Copy, Default)]
pub struct OtelIds;

thread_local! {
    /// The UUID whose last 8 bytes are the last span id made on this thread. The SDK makes a
    /// root's span id and then, at once and on the same thread, its trace id: that one takes
    /// it. A span with a parent leaves it, for [`made_by_otel_ids`] to recognise.
    static LAST_SPAN: Cell<Option<Uuid>> = const { Cell::new(None) };
}

impl opentelemetry_sdk::trace::IdGenerator for OtelIds {
    fn new_trace_id(&self) -> TraceId {
        let id = LAST_SPAN.take().unwrap_or_else(v7_now);
        TraceId::from_bytes(*id.as_bytes())
    }

    fn new_span_id(&self) -> SpanId {
        let id = v7_now();
        LAST_SPAN.set(Some(id));
        SpanId::from_bytes(id.as_u64_pair().1.to_be_bytes())
    }
}

/// Whether `span` is the span id an [`OtelIds`] made last on this thread, for a span that
/// took its trace id from a parent: a root started just now with a remote parent.
fn made_by_otel_ids(span: u64) -> bool {
    LAST_SPAN.get().is_some_and(|id| id.as_u64_pair().1 == span)
}

/// The trace id and the (8-byte) span id OpenTelemetry gives the span `id`, starting its
/// OpenTelemetry span if needed; `None` without an OpenTelemetry layer below this one in
/// `dispatch`, or when the span is not sampled into a valid context.
///
/// The caller holds no lock on the span's extensions: OpenTelemetry takes them.
pub(crate) fn ids_of(dispatch: &Dispatch, id: &Id) -> Option<(Uuid, u64)> {
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        (
            Uuid::from_bytes(sc.trace_id().to_bytes()),
            u64::from_be_bytes(sc.span_id().to_bytes()),
        )
    })
}

/// The stored id of a span of `trace` whose W3C span id is `span` (see `SpanId::in_trace`).
pub(crate) fn span_uuid(trace: Uuid, span: u64) -> Uuid {
    Uuid::from_u64_pair(trace.as_u64_pair().0, span)
}

/// The trace id's last 8 bytes: the W3C span id of the trace's root here.
pub(crate) fn root_span_of(trace: Uuid) -> u64 {
    trace.as_u64_pair().1
}

/// Takes OpenTelemetry's ids (`ids`, from [`ids_of`]) for a root that waited for them. A
/// root that joined a remote trace through its `traceparent` field keeps that trace and
/// parent and takes OpenTelemetry's span id. A root whose span id [`OtelIds`] made but is not
/// its trace id's tail took its trace from a remote parent given to OpenTelemetry
/// (`set_parent`): it joins that trace, under the trace's root since the remote span is not
/// known here. Otherwise the root takes OpenTelemetry's trace id (its own span id, made by
/// another generator, is not kept).
pub(crate) fn adopt(data: &mut SpanData, ids: Option<(Uuid, u64)>) {
    if !data.otel_pending {
        return;
    }
    data.otel_pending = false;
    let Some((trace, span)) = ids else { return };
    if data.joined_top {
        if trace == data.head().trace_id {
            data.captured.head.id = span_uuid(trace, span);
        }
    } else if data.is_root {
        if span != root_span_of(trace) && made_by_otel_ids(span) {
            let remote_root = TraceParent::of_span(TraceIdHere(trace), SpanIdHere(trace));
            let at = data.head().started_at;
            data.join_remote(remote_root, None, at);
            data.captured.head.id = span_uuid(trace, span);
        } else {
            data.captured.head.trace_id = trace;
            data.captured.head.id = trace;
        }
    }
}
