//! The explicit provider interface of the spec and its PostgreSQL implementation.
//!
//! Every method builds a row on the caller's thread and queues it (`log_llm_call` queues the
//! call as given, mapped to its row on the writer's thread): nothing waits on the
//! database, nothing returns an error, nothing panics. Invalid input is either stored sanitised
//! or refused with a counted reason (see [`Stats::rejected`](crate::Stats::rejected)).

mod calls;

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::context::TraceContext;
use super::handle::Handle;
use crate::model::ids::SpanId;
use crate::model::inputs::{ChatMessage, DocumentEvent, LlmCall, Outcome, SpanEnd, TraceTotals};
use crate::model::kinds::{OperationType, SpanType};
use crate::model::record::Record;
use crate::model::sanitize::{TextLimits, clean_text};
use crate::model::score::Score;
use crate::model::stats::Stats;

/// The provider interface of the spec: seven fire-and-forget calls plus `name` and `enabled`,
/// and `log_score`.
///
/// Implementations must return at once, never return an error and never panic.
pub trait ObservabilityProvider: Send + Sync {
    /// The provider's name, such as `"postgresql"`.
    fn name(&self) -> &str;

    /// Whether the provider records anything.
    fn enabled(&self) -> bool;

    /// Starts the trace `ctx.trace_id`. Its row is visible as `in_progress` within one flush
    /// interval.
    fn start_trace(
        &self,
        ctx: &TraceContext,
        name: &str,
        operation_type: OperationType,
        metadata: Option<Value>,
    );

    /// Ends the trace: fills `duration_ms` from its start and its token and cost totals from
    /// its spans, unless `totals` gives them.
    fn end_trace(&self, ctx: &TraceContext, outcome: Outcome, totals: TraceTotals);

    /// Starts a span, a child of `ctx.span_id` (or a root span of the trace), and returns its
    /// id at once. Its row is visible as `in_progress` within one flush interval.
    fn start_span(
        &self,
        ctx: &TraceContext,
        name: &str,
        span_type: SpanType,
        metadata: Option<Value>,
    ) -> SpanId;

    /// Ends a span started with [`start_span`](Self::start_span) in the same trace.
    fn end_span(&self, ctx: &TraceContext, span_id: SpanId, end: SpanEnd);

    /// Records a finished language model call as an `llm` span, a child of `ctx.span_id`, and
    /// returns its id.
    fn log_llm_call(&self, ctx: &TraceContext, call: LlmCall) -> SpanId;

    /// Records a chat message. Refused (and counted) unless the context has a session, a user
    /// and a kb id.
    fn log_chat_message(&self, ctx: &TraceContext, message: ChatMessage);

    /// Records a step of document ingestion.
    fn log_document_event(&self, ctx: &TraceContext, event: DocumentEvent);

    /// Records a score of a trace, one of its spans or one of its chat messages. It needs
    /// only the ids, no live context: the trace may have ended long ago, in another process,
    /// or not be stored at all (the score is kept). Not one of the spec's calls: the default
    /// does nothing, so other implementations need not know it.
    fn log_score(&self, score: Score) {
        let _ = score;
    }
}

/// The PostgreSQL provider: queues rows for the background writer.
///
/// Cheap to clone (one reference count); every clone feeds the same queue. Made by
/// [`Builder::build`](crate::Builder::build).
#[derive(Debug, Clone)]
pub struct PostgresProvider {
    pub(crate) handle: Arc<Handle>,
}

impl PostgresProvider {
    /// The writer's counters now: the same as the [`WriterGuard`](crate::WriterGuard)'s
    /// [`stats`](crate::WriterGuard::stats), which this delegates to.
    pub fn stats(&self) -> Stats {
        self.handle.queue.shared.counters.snapshot()
    }

    fn limits(&self) -> &TextLimits {
        self.handle.limits()
    }

    fn label(&self, s: &str) -> String {
        clean_text(s, self.limits().label)
    }

    fn metadata(&self, v: Option<Value>) -> Value {
        crate::map::metadata(self.limits(), v)
    }

    fn push(&self, record: Record) {
        self.handle.push(record);
    }

    /// Tells the span a row was logged under (`parent`, an explicit span of this context, or
    /// else the instrumented span the context came from) that usage was reported below it.
    fn mark_usage_below(&self, ctx: &TraceContext, parent: Option<Uuid>) {
        let marked = parent.is_some_and(|p| {
            ctx.state
                .open_spans
                .lock()
                .ok()
                .and_then(|mut spans| spans.get_mut(&p).map(|s| s.usage_below = true))
                .is_some()
        });
        if !marked {
            ctx.mark_usage_below();
        }
    }
}
