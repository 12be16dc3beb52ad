//! The provider's calls: each builds its row on the caller's thread (with the mapping in
//! [`map`](crate::map)) and queues it; `log_llm_call` queues the call as given, mapped on the
//! writer's thread.

use std::borrow::Cow;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ObservabilityProvider, PostgresProvider};
use crate::capture::context::TraceContext;
use crate::capture::trace_state::{OpenSpan, TraceHeader};
use crate::map::{self, Scope};
use crate::model::ids::{SpanId, span_in};
use crate::model::inputs::{ChatMessage, DocumentEvent, LlmCall, Outcome, SpanEnd, TraceTotals};
use crate::model::kinds::{OperationType, SpanType, Status};
use crate::model::money::{cost_to_micros, money_in_range};
use crate::model::record::{CapturedLlmCall, Record};
use crate::model::rows::{SpanRow, TraceRow};
use crate::model::sanitize::{clean_cow, clean_opt, clean_text};
use crate::model::score::Score;
use crate::model::values::{count, finite, millis_between};

/// The scope rows logged with a context belong to.
fn scope(ctx: &TraceContext) -> Scope<'_> {
    Scope {
        trace_id: ctx.trace_id.as_uuid(),
        span_id: ctx.span_id.map(|s| s.as_uuid()),
        user_id: ctx.user_id,
        session_id: ctx.session_id.as_deref(),
        kb_id: ctx.kb_id,
    }
}

impl ObservabilityProvider for PostgresProvider {
    fn name(&self) -> &str {
        "postgresql"
    }

    fn enabled(&self) -> bool {
        true
    }

    fn start_trace(
        &self,
        ctx: &TraceContext,
        name: &str,
        operation_type: OperationType,
        metadata: Option<Value>,
    ) {
        if ctx.origin.is_some() {
            self.handle.queue.reject(
                "start_trace: called inside an instrumented trace, whose root span is the trace",
            );
            return;
        }
        if ctx.is_remote() {
            self.handle.queue.reject(
                "start_trace: the context continues a remote trace, whose origin writes its row",
            );
            return;
        }
        let header = TraceHeader {
            name: self.label(name),
            operation_type,
            started_at: Utc::now(),
            metadata: self.metadata(metadata),
        };
        let row = trace_row(ctx, &header, self.limits().label);
        let fresh = match ctx.state.header.lock() {
            Ok(mut h) if h.is_none() => {
                *h = Some(header);
                true
            }
            _ => false,
        };
        if !fresh {
            self.handle
                .queue
                .reject("start_trace: this trace context was already started");
            return;
        }
        self.push(Record::Trace(Box::new(row)));
    }

    fn end_trace(&self, ctx: &TraceContext, outcome: Outcome, totals: TraceTotals) {
        // Only the context that started the trace can end it, once: its start row's key
        // (id, started_at) is known only there, and a second end would contradict the first.
        let header = ctx.state.header.lock().ok().and_then(|h| h.clone());
        let Some(header) = header else {
            self.handle
                .queue
                .reject("end_trace: the trace was not started with this context (inside instrumented code the root span ends the trace)");
            return;
        };
        if ctx
            .state
            .ended
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.handle
                .queue
                .reject("end_trace: the trace was already ended");
            return;
        }
        let now = Utc::now();
        let mut row = trace_row(ctx, &header, self.limits().label);
        row.start_sent = true;
        let (status, error_type, error_message) = map::outcome(self.limits(), outcome);
        let (prompt, completion, cost) = ctx.state.totals.snapshot();
        row.ended_at = Some(now);
        row.duration_ms = Some(millis_between(header.started_at, now));
        row.status = status;
        row.error_type = error_type;
        row.error_message = error_message;
        row.prompt_tokens = count(totals.prompt_tokens).or(Some(prompt));
        row.completion_tokens = count(totals.completion_tokens).or(Some(completion));
        row.total_tokens = Some(
            row.prompt_tokens
                .unwrap_or(0)
                .saturating_add(row.completion_tokens.unwrap_or(0)),
        );
        row.total_cost_micros = match totals.total_cost_usd {
            Some(c) => cost_to_micros(c),
            // A sum of valid costs can still exceed numeric(10,6): stored NULL then.
            None => cost.and_then(money_in_range),
        };
        if ctx.state.is_distributed() {
            // Its share first: the row's recount (in this batch or a later one) includes it.
            let part = map::origin_part(&mut row);
            self.push(Record::Part(Box::new(part)));
        }
        self.push(Record::Trace(Box::new(row)));
    }

    fn start_span(
        &self,
        ctx: &TraceContext,
        name: &str,
        span_type: SpanType,
        metadata: Option<Value>,
    ) -> SpanId {
        let id = SpanId::in_trace(ctx.trace_id);
        let open = OpenSpan {
            name: Cow::Owned(self.label(name)),
            span_type,
            parent_span_id: ctx.span_id.map(|s| s.as_uuid()),
            started_at: Utc::now(),
            metadata: self.metadata(metadata),
            usage_below: false,
        };
        let row = span_row(ctx, id, open.clone(), self.limits().label);
        if let Ok(mut spans) = ctx.state.open_spans.lock() {
            spans.insert(id.as_uuid(), open);
        }
        self.push(Record::Span(Box::new(row)));
        id
    }

    fn end_span(&self, ctx: &TraceContext, span_id: SpanId, end: SpanEnd) {
        let open = ctx
            .state
            .open_spans
            .lock()
            .ok()
            .and_then(|mut spans| spans.remove(&span_id.as_uuid()));
        let Some(open) = open else {
            self.handle
                .queue
                .reject("end_span: span id not started with this trace context (or ended twice)");
            return;
        };
        let now = Utc::now();
        let started_at = open.started_at;
        let usage_below = open.usage_below;
        let mut row = span_row(ctx, span_id, open, self.limits().label);
        row.start_sent = true;
        let (status, error_type, error_message) = map::outcome(self.limits(), end.outcome);
        row.ended_at = Some(now);
        row.duration_ms = finite(end.duration_ms)
            .filter(|d| *d >= 0.0)
            .or(Some(millis_between(started_at, now)));
        row.status = Some(status);
        row.error_type = error_type;
        row.error_message = error_message;
        row.input_preview = clean_opt(end.input_preview, self.limits().preview);
        row.output_preview = clean_opt(end.output_preview, self.limits().preview);
        if end.metadata.is_some() {
            row.metadata = map::merge_metadata(row.metadata, Some(self.metadata(end.metadata)));
        }
        map::span_metrics(self.limits(), &mut row, end.metrics);
        if !usage_below {
            // The roll-up rule: not when usage was already reported below it.
            self.add_usage(
                ctx,
                span_id,
                started_at,
                (row.prompt_tokens, row.completion_tokens, row.cost_micros),
            );
        }
        if usage_below || map::has_usage(&row) {
            self.mark_usage_below(ctx, row.parent_span_id);
        }
        self.push(Record::Span(Box::new(row)));
    }

    fn log_llm_call(&self, ctx: &TraceContext, call: LlmCall) -> SpanId {
        // Only what must happen here does: the id, the clock, the trace's usage totals. The
        // row is built on the writer's thread (`map`), or here when privacy settings
        // must see it before it is queued.
        // One clock reading for the id and the end; converted to a date on the writer's thread.
        let now = SystemTime::now();
        let id = SpanId(span_in(ctx.trace_id.0, now));
        let m = &call.metrics;
        let (prompt, completion) = (count(m.prompt_tokens), count(m.completion_tokens));
        let cost = m.cost_usd.and_then(cost_to_micros);
        self.add_usage(ctx, id, now, (prompt, completion, cost));
        let parent = ctx.span_id.map(|s| s.as_uuid());
        if prompt.is_some() || completion.is_some() || cost.is_some() {
            self.mark_usage_below(ctx, parent);
        }
        let raw = CapturedLlmCall {
            id: id.as_uuid(),
            trace_id: ctx.trace_id.as_uuid(),
            parent,
            now,
            call,
        };
        self.push(Record::Llm(Box::new(raw)));
        id
    }

    fn log_chat_message(&self, ctx: &TraceContext, message: ChatMessage) {
        let (Some(session_id), Some(user_id), Some(kb_id)) =
            (ctx.session_id.as_deref(), ctx.user_id, ctx.kb_id)
        else {
            self.handle
                .queue
                .reject("log_chat_message: the context needs a session id, a user id and a kb id");
            return;
        };
        let row = map::chat_row(
            self.limits(),
            &scope(ctx),
            (session_id, user_id, kb_id),
            message,
        );
        self.push(Record::Chat(Box::new(row)));
    }

    fn log_document_event(&self, ctx: &TraceContext, event: DocumentEvent) {
        let row = map::document_row(self.limits(), &scope(ctx), event);
        self.push(Record::Document(Box::new(row)));
    }

    fn log_score(&self, score: Score) {
        // No trace state is looked up: the score stands on its ids alone.
        match map::score_row(self.limits(), score) {
            Ok(row) => self.push(Record::Score(Box::new(row))),
            Err(reason) => self.handle.queue.reject(reason),
        }
    }
}

impl PostgresProvider {
    /// Adds a span's usage to its trace's totals. In a remote trace continued outside any
    /// instrumented span (no span here closes to write this process's share), the usage is
    /// also queued as a share of its own, keyed by the span.
    fn add_usage(
        &self,
        ctx: &TraceContext,
        span: SpanId,
        started_at: impl Into<DateTime<Utc>>,
        (prompt, completion, cost): (Option<i64>, Option<i64>, Option<i64>),
    ) {
        ctx.state.totals.add(prompt, completion, cost);
        let any = prompt.is_some() || completion.is_some() || cost.is_some();
        if any && ctx.is_remote() && ctx.origin.is_none() {
            let totals = (prompt.unwrap_or(0), completion.unwrap_or(0), cost);
            let part = map::part(ctx.trace_id.0, span.0, started_at.into(), totals);
            self.push(Record::Part(Box::new(part)));
        }
    }
}

/// The start row of a trace.
fn trace_row(ctx: &TraceContext, header: &TraceHeader, label: usize) -> TraceRow {
    TraceRow {
        id: ctx.trace_id.as_uuid(),
        name: Cow::Owned(header.name.clone()),
        operation_type: clean_cow(header.operation_type.clone().into_text(), label),
        user_id: ctx.user_id,
        session_id: ctx.session_id.as_deref().map(|s| clean_text(s, label)),
        kb_id: ctx.kb_id,
        started_at: header.started_at,
        metadata: header.metadata.clone(),
        ..TraceRow::default()
    }
}

/// The start row of a span.
fn span_row(ctx: &TraceContext, id: SpanId, open: OpenSpan, label: usize) -> SpanRow {
    SpanRow {
        id: id.as_uuid(),
        trace_id: ctx.trace_id.as_uuid(),
        parent_span_id: open.parent_span_id,
        name: open.name,
        span_type: clean_cow(open.span_type.into_text(), label),
        started_at: open.started_at,
        status: Some(Status::InProgress),
        metadata: open.metadata,
        ..SpanRow::default()
    }
}
