//! The [`TraceContext`] that explicit provider calls carry, and how the current instrumented
//! span's is found.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use uuid::Uuid;

use super::span_data::{SpanData, WithContext};
use super::trace_state::TraceState;
use crate::model::ids::{SpanId, TraceId};
use crate::model::traceparent::{TraceParent, valid_tracestate};

/// The context an explicit provider call runs in: which trace, which span is current (the
/// parent of new spans), and who the request is for.
///
/// Cloning is cheap (one reference count) and clones share the trace's running totals, so a
/// context can be handed to spawned tasks. Build one with [`TraceContext::new`] and the setters,
/// or take the current instrumented span's with `PostgresLayer`'s current-context helper.
#[derive(Debug, Clone)]
pub struct TraceContext {
    /// The trace every row written with this context belongs to.
    pub trace_id: TraceId,
    /// The current span: the parent of spans started with this context, and the span that chat
    /// messages and document events are attached to.
    pub span_id: Option<SpanId>,
    /// The user the request is for.
    pub user_id: Option<Uuid>,
    /// The chat session the request belongs to.
    pub session_id: Option<String>,
    /// The knowledge base the request reads or writes.
    pub kb_id: Option<Uuid>,
    pub(crate) state: Arc<TraceState>,
    /// The instrumented span this context was taken from ([`TraceContext::current`]), so
    /// explicit calls can tell it that usage was reported below it (the roll-up rule).
    pub(crate) origin: Option<Origin>,
}

/// The instrumented span a context came from.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) id: tracing::span::Id,
    pub(crate) dispatch: tracing::Dispatch,
    pub(crate) hook: WithContext,
}

impl Default for TraceContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceContext {
    /// A context for a new trace with a fresh [`TraceId`], no current span and no ids.
    pub fn new() -> Self {
        Self {
            trace_id: TraceId::new(),
            span_id: None,
            user_id: None,
            session_id: None,
            kb_id: None,
            state: Arc::default(),
            origin: None,
        }
    }

    /// The W3C `traceparent` of this context's current span, to send with an outgoing request
    /// or a queued job: `00-<trace id>-<span id>-<flags>`, the ids as stored (`traces.trace_id`,
    /// and `spans.span_id`, or the trace id's last 16 hex digits when the current span is the
    /// root). The flags are those that came in with a remote parent, else `01` (sampled).
    /// Inside instrumented code, `TraceContext::current()` gives the current span's.
    ///
    /// A process that continues the trace from this value ([`TraceContext::from_traceparent`],
    /// or a root span's `traceparent` field) adds its rows, and its usage, to this trace.
    /// Calling this marks the trace as crossing processes: its row's totals are then the sum of
    /// every process's share (see "Across services" in the README).
    pub fn traceparent(&self) -> TraceParent {
        self.state.distributed.store(true, Ordering::Relaxed);
        let mut tp = TraceParent::of_span(
            self.trace_id,
            self.span_id.unwrap_or(SpanId(self.trace_id.0)),
        );
        if let Some(remote) = &self.state.remote {
            tp.flags = remote.flags;
        }
        tp
    }

    /// A context continuing the trace of a `traceparent` header value from another process:
    /// rows logged with it carry that trace's id, and spans started with it are children of
    /// the remote span. `None` for a value that is not a valid version-`00`-compatible
    /// `traceparent` ([`TraceParent::parse`] says why); never a panic.
    ///
    /// This process writes no `traces` row for the trace (its origin does), so `start_trace`
    /// and `end_trace` are refused with it. The usage of each call logged with it is written
    /// as this process's share of the trace's totals.
    pub fn from_traceparent(value: &str) -> Option<TraceContext> {
        let tp = TraceParent::parse(value).ok()?;
        Some(Self::joining(tp))
    }

    /// A context continuing the remote trace `tp` (see [`from_traceparent`](Self::from_traceparent)).
    pub fn joining(tp: TraceParent) -> TraceContext {
        let parent = tp.parent_uuid();
        TraceContext {
            trace_id: tp.trace_id,
            // A remote root is the trace id itself: its children have no parent span, as the
            // children of a root here have none.
            span_id: (parent != tp.trace_id.0).then_some(SpanId(parent)),
            user_id: None,
            session_id: None,
            kb_id: None,
            state: Arc::new(TraceState::joined(tp)),
            origin: None,
        }
    }

    /// Keeps the `tracestate` header value that came with this context's `traceparent`, to be
    /// given back unchanged by [`tracestate`](Self::tracestate). A value longer than 512 bytes
    /// or with characters outside printable ASCII is not a `tracestate` and is left out; so is
    /// one given after another.
    pub fn with_tracestate(self, value: &str) -> Self {
        if let Some(v) = valid_tracestate(value) {
            let _ = self.state.tracestate.set(v.to_owned());
        }
        self
    }

    /// The `tracestate` that came in with this trace's context, to send on unchanged.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.tracestate.get().map(String::as_str)
    }

    /// Whether this context continues a trace that another process started.
    pub fn is_remote(&self) -> bool {
        self.state.remote.is_some()
    }

    /// Tells the instrumented span this context came from that usage was reported below it,
    /// so its own usage is not counted a second time.
    pub(crate) fn mark_usage_below(&self) {
        if let Some(o) = &self.origin {
            (o.hook.0)(&o.dispatch, &o.id, &mut |data| data.usage_below = true);
        }
    }

    /// Sets the user id.
    pub fn with_user(mut self, user_id: Uuid) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// Sets the chat session id.
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets the knowledge base id.
    pub fn with_kb(mut self, kb_id: Uuid) -> Self {
        self.kb_id = Some(kb_id);
        self
    }

    /// A clone of this context whose current span is `span_id`: spans started with it become
    /// children of `span_id`, and messages and events logged with it attach to it.
    pub fn child(&self, span_id: SpanId) -> Self {
        let mut ctx = self.clone();
        ctx.span_id = Some(span_id);
        ctx
    }

    /// The context explicit calls made inside an instrumented span use.
    fn of_span(data: &SpanData) -> Self {
        TraceContext {
            trace_id: TraceId(data.head().trace_id),
            span_id: (!data.is_root).then_some(SpanId(data.head().id)),
            user_id: data.user_id,
            session_id: data.session_id.as_deref().map(str::to_owned),
            kb_id: data.kb_id,
            state: Arc::clone(&data.state),
            origin: None,
        }
    }

    /// The context of the current instrumented span, when a
    /// [`PostgresLayer`](crate::PostgresLayer) records it: its trace, the span itself as the
    /// parent of new spans, and the user, session and kb ids it carries or inherits. Explicit
    /// provider calls made with it join the instrumented trace.
    ///
    /// `None` outside any span, or when no `PostgresLayer` is installed.
    pub fn current() -> Option<TraceContext> {
        Self::of(&tracing::Span::current())
    }

    /// The context of `span`, as [`current`](Self::current) gives the current span's: `None`
    /// for a disabled span, or when no `PostgresLayer` records it.
    pub fn of(span: &tracing::Span) -> Option<TraceContext> {
        span.with_subscriber(|(id, dispatch)| {
            let hook = *dispatch.downcast_ref::<WithContext>()?;
            // A root waiting for OpenTelemetry's ids gets them now: the context names them.
            #[cfg(feature = "opentelemetry")]
            {
                let mut pending = false;
                (hook.0)(dispatch, id, &mut |data| pending = data.otel_pending);
                if pending {
                    let ids = crate::capture::otel::ids_of(dispatch, id);
                    (hook.0)(dispatch, id, &mut |data| {
                        crate::capture::otel::adopt(data, ids)
                    });
                }
            }
            let mut out = None;
            (hook.0)(dispatch, id, &mut |data| {
                let mut ctx = Self::of_span(data);
                ctx.origin = Some(Origin {
                    id: id.clone(),
                    dispatch: dispatch.clone(),
                    hook,
                });
                out = Some(ctx);
            });
            out
        })
        .flatten()
    }
}
