//! The layer as the explicit provider: every call goes to the provider it feeds, so explicit
//! calls and instrumented code share one queue.

use serde_json::Value;

use super::PostgresLayer;
use crate::capture::context::TraceContext;
use crate::capture::provider::ObservabilityProvider;
use crate::model::ids::SpanId;
use crate::model::inputs::{ChatMessage, DocumentEvent, LlmCall, Outcome, SpanEnd, TraceTotals};
use crate::model::kinds::{OperationType, SpanType};
use crate::model::score::Score;

/// The layer is also the provider: explicit calls go to the same queue.
impl ObservabilityProvider for PostgresLayer {
    fn name(&self) -> &str {
        self.provider.name()
    }
    fn enabled(&self) -> bool {
        self.provider.enabled()
    }
    fn start_trace(
        &self,
        ctx: &TraceContext,
        name: &str,
        operation_type: OperationType,
        metadata: Option<Value>,
    ) {
        self.provider
            .start_trace(ctx, name, operation_type, metadata);
    }
    fn end_trace(&self, ctx: &TraceContext, outcome: Outcome, totals: TraceTotals) {
        self.provider.end_trace(ctx, outcome, totals);
    }
    fn start_span(
        &self,
        ctx: &TraceContext,
        name: &str,
        span_type: SpanType,
        metadata: Option<Value>,
    ) -> SpanId {
        self.provider.start_span(ctx, name, span_type, metadata)
    }
    fn end_span(&self, ctx: &TraceContext, span_id: SpanId, end: SpanEnd) {
        self.provider.end_span(ctx, span_id, end);
    }
    fn log_llm_call(&self, ctx: &TraceContext, call: LlmCall) -> SpanId {
        self.provider.log_llm_call(ctx, call)
    }
    fn log_chat_message(&self, ctx: &TraceContext, message: ChatMessage) {
        self.provider.log_chat_message(ctx, message);
    }
    fn log_document_event(&self, ctx: &TraceContext, event: DocumentEvent) {
        self.provider.log_document_event(ctx, event);
    }
    fn log_score(&self, score: Score) {
        self.provider.log_score(score);
    }
}
