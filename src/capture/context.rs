//! The [`TraceContext`] that explicit provider calls carry, and how the current instrumented
//! span's is found.

use std::sync::Arc;

use uuid::Uuid;

use super::span_data::{SpanData, WithContext};
use super::trace_state::TraceState;
use crate::model::ids::{SpanId, TraceId};
use crate::model::traceparent::TraceParent;

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
    /// or a queued job: `00-<trace id>-<span id>-01`, the ids as stored (`traces.trace_id`, and
    /// `spans.span_id`, or the trace id's last 16 hex digits when the current span is the
    /// root). Inside instrumented code, `TraceContext::current()` gives the current span's.
    ///
    /// Only the header's text so far: a process receiving it does not yet join this trace
    /// (see `docs/propagation.md`).
    pub fn traceparent(&self) -> TraceParent {
        TraceParent::of_span(
            self.trace_id,
            self.span_id.unwrap_or(SpanId(self.trace_id.0)),
        )
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
        tracing::Span::current()
            .with_subscriber(|(id, dispatch)| {
                let hook = *dispatch.downcast_ref::<WithContext>()?;
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
