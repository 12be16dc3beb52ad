//! [`SpanExt`]: W3C trace context in and out of a `tracing::Span`, in the style of
//! tracing-opentelemetry's `OpenTelemetrySpanExt`.

use super::context::TraceContext;
use crate::model::traceparent::TraceParent;

/// W3C trace context for spans a [`PostgresLayer`](crate::PostgresLayer) records.
///
/// ```
/// use tracing_postgres::SpanExt;
///
/// // The request's root span declares the field, so its start waits for the value.
/// let span = tracing::info_span!("handle_upload", traceparent = tracing::field::Empty);
/// span.set_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
/// let _entered = span.enter();
/// // ... and for an outgoing call, the current span's header value:
/// let header = tracing::Span::current().traceparent().map(|tp| tp.to_string());
/// # let _ = header;
/// ```
pub trait SpanExt {
    /// Makes this span continue the remote trace of a `traceparent` header value (and keeps
    /// `tracestate` to pass on, when given with [`set_tracestate`](Self::set_tracestate)
    /// afterwards). The span must be a root declared with a `traceparent` field
    /// (`traceparent = tracing::field::Empty`), and this must be called before any span is
    /// created inside it: spans created earlier already belong to the span's own trace.
    ///
    /// An invalid value leaves the span the root of a new trace, and the reason is counted in
    /// the writer's rejections ([`Stats`](crate::Stats)). Giving the value when the span is
    /// created (`traceparent = %value`) does the same as calling this.
    fn set_traceparent(&self, traceparent: &str);

    /// Keeps the `tracestate` header value that came with the span's `traceparent`; the span
    /// must declare a `tracestate` field. It is given back by
    /// [`TraceContext::tracestate`].
    fn set_tracestate(&self, tracestate: &str);

    /// The span's `traceparent` for an outgoing request or a queued job (see
    /// [`TraceContext::traceparent`]); `None` when no `PostgresLayer` records the span.
    fn traceparent(&self) -> Option<TraceParent>;
}

impl SpanExt for tracing::Span {
    fn set_traceparent(&self, traceparent: &str) {
        self.record("traceparent", traceparent);
    }

    fn set_tracestate(&self, tracestate: &str) {
        self.record("tracestate", tracestate);
    }

    fn traceparent(&self) -> Option<TraceParent> {
        TraceContext::of(self).map(|ctx| ctx.traceparent())
    }
}
