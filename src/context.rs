//! Ids and the [`TraceContext`] that explicit provider calls carry.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::record::{OperationType, SpanType};

/// A trace's id: a UUIDv7 made on the client (time-ordered, no round trip).
///
/// It is `traces.id` and the `trace_id` of every other row. `Display` prints it as a W3C trace
/// id (32 lowercase hex digits); `Debug` prints the UUID form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub Uuid);

/// A span's id: a UUIDv7 made on the client. `Display` prints it as a W3C span id (the last 16
/// hex digits, the random part), matching the `spans.span_id` column.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub Uuid);

impl TraceId {
    /// A new time-ordered trace id.
    pub fn new() -> Self {
        Self(crate::ids::v7_now())
    }
    /// The id as a UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl SpanId {
    /// A new time-ordered span id.
    pub fn new() -> Self {
        Self(crate::ids::v7_now())
    }
    /// The id as a UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for SpanId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        f.write_str(&self.0.simple().encode_lower(&mut buf)[16..])
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", self.0)
    }
}

impl From<Uuid> for TraceId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

impl From<Uuid> for SpanId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

/// What a trace needs to remember between its start and its end, shared by every clone of its
/// [`TraceContext`]: its header, its running token and cost totals, and the spans opened with
/// [`start_span`](crate::ObservabilityProvider::start_span) and not yet ended.
#[derive(Debug, Default)]
pub(crate) struct TraceState {
    pub(crate) header: Mutex<Option<TraceHeader>>,
    /// Set by the first `end_trace`: a second one is refused.
    pub(crate) ended: std::sync::atomic::AtomicBool,
    pub(crate) totals: Totals,
    pub(crate) open_spans: Mutex<HashMap<Uuid, OpenSpan>>,
}

/// The fields given to `start_trace`, kept so `end_trace` can write the full row.
#[derive(Debug, Clone)]
pub(crate) struct TraceHeader {
    pub(crate) name: String,
    pub(crate) operation_type: OperationType,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) metadata: serde_json::Value,
}

/// A span opened by `start_span` and not yet ended.
#[derive(Debug, Clone)]
pub(crate) struct OpenSpan {
    pub(crate) name: crate::record::Text,
    pub(crate) span_type: SpanType,
    pub(crate) parent_span_id: Option<Uuid>,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) metadata: serde_json::Value,
    /// A span below this one reported usage: this span's own usage is not counted again.
    pub(crate) usage_below: bool,
}

/// Token and cost totals of one trace, added to by its spans as they are logged.
///
/// Cost is kept in micro-dollars so it can be added atomically without rounding drift.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) prompt_tokens: AtomicI64,
    pub(crate) completion_tokens: AtomicI64,
    pub(crate) cost_micros: AtomicI64,
    pub(crate) has_cost: std::sync::atomic::AtomicBool,
}

impl Totals {
    pub(crate) fn add(
        &self,
        prompt: Option<i64>,
        completion: Option<i64>,
        cost_micros: Option<i64>,
    ) {
        // Sums saturate at i64::MAX rather than wrap: a wrapped total would be a wrong number
        // stored without a word.
        fn add(total: &AtomicI64, v: i64) {
            let _ = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(v.max(0)))
            });
        }
        if let Some(p) = prompt {
            add(&self.prompt_tokens, p);
        }
        if let Some(c) = completion {
            add(&self.completion_tokens, c);
        }
        if let Some(c) = cost_micros {
            add(&self.cost_micros, c);
            self.has_cost.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> (i64, i64, Option<i64>) {
        let p = self.prompt_tokens.load(Ordering::Relaxed);
        let c = self.completion_tokens.load(Ordering::Relaxed);
        let cost = self
            .has_cost
            .load(Ordering::Relaxed)
            .then(|| self.cost_micros.load(Ordering::Relaxed));
        (p, c, cost)
    }
}

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
    pub(crate) hook: crate::layer::WithContext,
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
}
