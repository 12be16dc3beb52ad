//! What the layer keeps about an open span in the registry's extensions ([`SpanData`]), and
//! the hook ([`WithContext`]) through which explicit calls reach it from a `Dispatch`.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::span::Id;
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::registry::LookupSpan;
use uuid::Uuid;

use super::trace_state::TraceState;
use crate::map::{Scope, parse_uuid};
use crate::model::fields::{Fields, Slot};
use crate::model::ids::span_in;
use crate::model::record::{CapturedSpan, Rare, SpanHead};
use crate::model::traceparent::{TraceParent, valid_tracestate};

/// What the layer keeps about an open span, in the registry's extensions.
#[derive(Debug)]
pub(crate) struct SpanData {
    /// The record the span becomes at its close, made at its start: its ids and start time,
    /// and its fields, recorded into it in place. At the close it is queued as it is, so the
    /// fields are never copied from the span to the queue (and this, which the registry
    /// stores, stays small). A root's is never queued: the root becomes the trace's row.
    pub(crate) captured: Box<CapturedSpan>,
    pub(crate) is_root: bool,
    pub(crate) state: Arc<TraceState>,
    pub(crate) user_id: Option<Uuid>,
    /// Shared with the spans below: inherited by every span, so not copied for each.
    pub(crate) session_id: Option<Arc<str>>,
    pub(crate) kb_id: Option<Uuid>,
    /// A span below this one (or an explicit call made in it) reported token usage: this
    /// span's own usage is then not added to the trace (see the roll-up rule).
    pub(crate) usage_below: bool,
    /// This span continues a remote trace in this process (its parent is in another one): at
    /// its close it writes this process's share of the trace's usage.
    pub(crate) joined_top: bool,
    /// A root declared with a `traceparent` field not yet recorded: its start row waits, since
    /// the span may still join a remote trace (then it has no `traces` row here at all).
    pub(crate) start_pending: bool,
    /// A root whose ids OpenTelemetry has yet to give (the `opentelemetry` feature): read when
    /// it is first entered or gets a child, so that `set_parent` before that still counts.
    #[cfg(feature = "opentelemetry")]
    pub(crate) otel_pending: bool,
    /// A root whose `traces` start row waits for its ids: queued when it is first entered,
    /// else the row is written whole at its close.
    pub(crate) start_unsent: bool,
}

impl SpanData {
    /// Makes this root this process's part of the remote trace `tp`: a span of that trace,
    /// child of the remote span, with a new id of that trace.
    pub(crate) fn join_remote(
        &mut self,
        tp: TraceParent,
        tracestate: Option<&str>,
        at: SystemTime,
    ) {
        let trace = tp.trace_id.0;
        let parent = tp.parent_uuid();
        let state = TraceState::joined(tp);
        if let Some(ts) = tracestate.and_then(valid_tracestate) {
            let _ = state.tracestate.set(ts.to_owned());
        }
        self.state = Arc::new(state);
        self.is_root = false;
        self.joined_top = true;
        self.start_pending = false;
        let head = &mut self.captured.head;
        head.trace_id = trace;
        head.id = span_in(trace, at);
        // The remote root is the trace id itself: its children have no parent span, as a local
        // root's have none.
        head.parent = (parent != trace).then_some(parent);
    }

    /// The span's error and events, made on first use.
    pub(crate) fn rare(&mut self) -> &mut Rare {
        self.captured.rare.get_or_insert_with(Box::default)
    }

    /// The span's fields as recorded so far.
    pub(crate) fn fields(&self) -> &Fields {
        &self.captured.fields
    }

    /// The span's ids and start.
    pub(crate) fn head(&self) -> &SpanHead {
        &self.captured.head
    }

    /// The trace, span (none for a root) and ids rows made inside this span belong to.
    pub(crate) fn scope(&self) -> Scope<'_> {
        Scope {
            trace_id: self.head().trace_id,
            span_id: (!self.is_root).then_some(self.head().id),
            user_id: self.user_id,
            session_id: self.session_id.as_deref(),
            kb_id: self.kb_id,
        }
    }

    /// Takes the user, session and kb ids the span names, where given: in its own fields, or
    /// in `later` ones (recorded with `Span::record`).
    pub(crate) fn apply_ids(&mut self, later: Option<&Fields>) {
        let SpanData {
            captured,
            user_id,
            session_id,
            kb_id,
            ..
        } = self;
        let fields = later.unwrap_or(&captured.fields);
        if !fields.names_ids() {
            return;
        }
        let [user, session, kb] = fields.get_many([Slot::UserId, Slot::SessionId, Slot::KbId]);
        if let Some(v) = user {
            *user_id = parse_uuid(v).or(*user_id);
        }
        if let Some(v) = session {
            *session_id = Some(v.to_text().into());
        }
        if let Some(v) = kb {
            *kb_id = parse_uuid(v).or(*kb_id);
        }
    }
}

/// Reaches a span's [`SpanData`] through a `Dispatch`, whatever the subscriber's type; found by
/// `downcast_ref` on the dispatch. This is how [`TraceContext::current`] and explicit provider
/// calls find the instrumented span they run in.
///
/// [`TraceContext::current`]: crate::TraceContext::current
#[derive(Clone, Copy)]
pub(crate) struct WithContext(pub VisitSpanData);

/// Calls the closure with the span's data, if the span is recorded by a `PostgresLayer`.
pub(crate) type VisitSpanData = fn(&Dispatch, &Id, &mut dyn FnMut(&mut SpanData));

impl std::fmt::Debug for WithContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithContext")
    }
}

impl WithContext {
    /// The hook for a subscriber of type `S`.
    pub(crate) fn of<S>() -> Self
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        WithContext(visit::<S>)
    }
}

fn visit<S>(dispatch: &Dispatch, id: &Id, f: &mut dyn FnMut(&mut SpanData))
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(subscriber) = dispatch.downcast_ref::<S>() else {
        return;
    };
    let Some(span) = subscriber.span(id) else {
        return;
    };
    let mut ext = span.extensions_mut();
    if let Some(data) = ext.get_mut::<SpanData>() {
        f(data);
    }
}
