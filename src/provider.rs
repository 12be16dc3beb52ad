//! The explicit provider interface of the spec and its PostgreSQL implementation.
//!
//! Every method builds a row on the caller's thread and queues it (`log_llm_call` queues the
//! call as given, mapped to its row on the writer's thread): nothing waits on the
//! database, nothing returns an error, nothing panics. Invalid input is either stored sanitised
//! or refused with a counted reason (see [`Stats::rejected`](crate::Stats::rejected)).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::context::{OpenSpan, SpanId, TraceContext, TraceHeader};
use crate::handle::Handle;
use crate::record::{
    ChatMessageRow, ChatRole, Citation, DocumentEventRow, DocumentEventStatus, DocumentEventType,
    DocumentMetrics, LlmMetrics, OperationType, Outcome, Record, Source, SpanMetrics, SpanRow,
    SpanType, Status, TraceRow, cost_to_micros, money_in_range,
};
use crate::sanitize::{TextLimits, clean_cow, clean_json, clean_opt, clean_owned, clean_text};
use crate::values::{back_from, count, count32, finite, millis_between};

/// The provider interface of the spec: seven fire-and-forget calls plus `name` and `enabled`.
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
}

/// Totals given to [`end_trace`](ObservabilityProvider::end_trace); a `None` is computed from
/// the trace's spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceTotals {
    /// Prompt tokens of the whole trace.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens of the whole trace.
    pub completion_tokens: Option<i64>,
    /// Cost of the whole trace in US dollars.
    pub total_cost_usd: Option<Decimal>,
}

/// How a span ended, for [`end_span`](ObservabilityProvider::end_span).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanEnd {
    /// Status and error.
    pub outcome: Outcome,
    /// Duration; computed from the span's start when `None`.
    pub duration_ms: Option<f64>,
    /// Type-specific metrics.
    pub metrics: SpanMetrics,
    /// The start of the input (cut to the preview limit).
    pub input_preview: Option<String>,
    /// The start of the output (cut to the preview limit).
    pub output_preview: Option<String>,
    /// More metadata, merged over the metadata given at the start.
    pub metadata: Option<Value>,
}

/// A finished language model call, for [`log_llm_call`](ObservabilityProvider::log_llm_call).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmCall {
    /// The span's name; `"llm_call"` when `None`.
    pub name: Option<String>,
    /// Model, tokens, cost and temperature.
    pub metrics: LlmMetrics,
    /// How long the call took; the span starts that long before now.
    pub latency_ms: Option<f64>,
    /// The start of the prompt.
    pub input_preview: Option<String>,
    /// The start of the answer.
    pub output_preview: Option<String>,
    /// Status and error.
    pub outcome: Outcome,
    /// Anything else worth keeping.
    pub metadata: Option<Value>,
}

/// A chat message, for [`log_chat_message`](ObservabilityProvider::log_chat_message).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: ChatRole,
    /// Its text.
    pub content: String,
    /// Its position in the session.
    pub turn_number: Option<i32>,
    /// The sources an answer drew on.
    pub sources: Vec<Source>,
    /// The citations in an answer.
    pub citations: Vec<Citation>,
    /// Prompt tokens spent on it.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens spent on it.
    pub completion_tokens: Option<i64>,
    /// Time to answer.
    pub response_time_ms: Option<f64>,
}

impl ChatMessage {
    /// A message with the given role and text and nothing else.
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            turn_number: None,
            sources: Vec::new(),
            citations: Vec::new(),
            prompt_tokens: None,
            completion_tokens: None,
            response_time_ms: None,
        }
    }
}

/// A step of document ingestion, for
/// [`log_document_event`](ObservabilityProvider::log_document_event).
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentEvent {
    /// The document.
    pub document_id: Uuid,
    /// The step.
    pub event_type: DocumentEventType,
    /// Its outcome.
    pub status: DocumentEventStatus,
    /// How long it took; the event starts that long before now.
    pub duration_ms: Option<f64>,
    /// The error's type, for a failed step.
    pub error_type: Option<String>,
    /// The error's message, for a failed step.
    pub error_message: Option<String>,
    /// Whether a failed step can be retried.
    pub retryable: Option<bool>,
    /// How many times the step was retried.
    pub retry_count: Option<i32>,
    /// Step-specific metrics.
    pub metrics: DocumentMetrics,
    /// Anything else worth keeping.
    pub metadata: Option<Value>,
}

impl DocumentEvent {
    /// An event of the given document, step and status and nothing else.
    pub fn new(
        document_id: Uuid,
        event_type: DocumentEventType,
        status: DocumentEventStatus,
    ) -> Self {
        Self {
            document_id,
            event_type,
            status,
            duration_ms: None,
            error_type: None,
            error_message: None,
            retryable: None,
            retry_count: None,
            metrics: DocumentMetrics::None,
            metadata: None,
        }
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

/// Whether a span row reports token usage or cost.
fn has_usage(row: &SpanRow) -> bool {
    row.prompt_tokens.is_some() || row.completion_tokens.is_some() || row.cost_micros.is_some()
}

/// Shallow merge of two JSON objects (`extra` wins); anything that is not an object is kept
/// under the key `"value"`.
fn merge_metadata(base: Value, extra: Option<Value>) -> Value {
    let as_object = |v: Value| match v {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        other => serde_json::Map::from_iter([("value".to_owned(), other)]),
    };
    match extra {
        None => Value::Object(as_object(base)),
        Some(extra) => {
            let mut m = as_object(base);
            m.extend(as_object(extra));
            Value::Object(m)
        }
    }
}

impl PostgresProvider {
    /// The writer's counters now.
    pub fn stats(&self) -> crate::Stats {
        self.handle.queue.shared.counters.snapshot()
    }

    fn limits(&self) -> &crate::sanitize::TextLimits {
        &self.handle.limits
    }

    fn label(&self, s: &str) -> String {
        clean_text(s, self.limits().label)
    }

    fn metadata(&self, v: Option<Value>) -> Value {
        match v {
            None => Value::Object(serde_json::Map::new()),
            Some(v) => merge_metadata(clean_json(v, self.limits()), None),
        }
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

    /// Fills a span row's type-specific columns, and adds its usage to the trace when it
    /// `counts` (the roll-up rule: not when usage was already reported below it).
    fn apply_metrics(
        &self,
        ctx: &TraceContext,
        row: &mut SpanRow,
        metrics: SpanMetrics,
        counts: bool,
    ) {
        let l = *self.limits();
        match metrics {
            SpanMetrics::None => {}
            SpanMetrics::Llm(m) => {
                row.model = m.model.map(|s| clean_text(&s, l.label));
                row.prompt_tokens = count(m.prompt_tokens);
                row.completion_tokens = count(m.completion_tokens);
                row.cost_micros = m.cost_usd.and_then(cost_to_micros);
                row.cost_source = row.cost_micros.map(|_| "given");
                row.temperature = finite(m.temperature);
                if counts {
                    ctx.state
                        .totals
                        .add(row.prompt_tokens, row.completion_tokens, row.cost_micros);
                }
            }
            SpanMetrics::Embedding(m) => {
                row.embedding_model = m.model.map(|s| clean_text(&s, l.label));
                row.vector_count = count(m.vector_count);
                row.vector_dimensions = count32(m.vector_dimensions);
            }
            SpanMetrics::Retrieval(m) => {
                row.query_text = clean_opt(m.query_text, l.content);
                row.result_count = count32(m.result_count);
                row.top_score = finite(m.top_score);
            }
            SpanMetrics::Parse(m) => {
                row.file_type = m.file_type.map(|s| clean_text(&s, l.label));
                row.file_size_bytes = count(m.file_size_bytes);
                row.page_count = count32(m.page_count);
            }
            SpanMetrics::Chunk(m) => {
                row.chunk_count = count32(m.chunk_count);
                row.chunk_strategy = m.chunk_strategy.map(|s| clean_text(&s, l.label));
            }
            SpanMetrics::Index(m) => {
                row.vectors_upserted = count(m.vectors_upserted);
                row.collection_name = m.collection_name.map(|s| clean_text(&s, l.label));
            }
        }
    }

    fn apply_outcome(&self, outcome: Outcome) -> (Status, Option<String>, Option<String>) {
        let status = match outcome.status {
            Status::InProgress => Status::Success,
            s => s,
        };
        (
            status,
            outcome
                .error_type
                .map(|s| clean_text(&s, self.limits().label)),
            clean_opt(outcome.error_message, self.limits().error_message),
        )
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
        let (status, error_type, error_message) = self.apply_outcome(outcome);
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
        self.push(Record::Trace(Box::new(row)));
    }

    fn start_span(
        &self,
        ctx: &TraceContext,
        name: &str,
        span_type: SpanType,
        metadata: Option<Value>,
    ) -> SpanId {
        let id = SpanId::new();
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
        let (status, error_type, error_message) = self.apply_outcome(end.outcome);
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
            row.metadata = merge_metadata(row.metadata, Some(self.metadata(end.metadata)));
        }
        self.apply_metrics(ctx, &mut row, end.metrics, !usage_below);
        if usage_below || has_usage(&row) {
            self.mark_usage_below(ctx, row.parent_span_id);
        }
        self.push(Record::Span(Box::new(row)));
    }

    fn log_llm_call(&self, ctx: &TraceContext, call: LlmCall) -> SpanId {
        // Only what must happen here does: the id, the clock, the trace's usage totals. The
        // row is built on the writer's thread (`finish_llm`), or here when privacy settings
        // must see it before it is queued.
        // One clock reading for the id and the end; converted to a date on the writer's thread.
        let now = SystemTime::now();
        let id = SpanId(crate::ids::v7_at(now));
        let m = &call.metrics;
        let (prompt, completion) = (count(m.prompt_tokens), count(m.completion_tokens));
        let cost = m.cost_usd.and_then(cost_to_micros);
        ctx.state.totals.add(prompt, completion, cost);
        let parent = ctx.span_id.map(|s| s.as_uuid());
        if prompt.is_some() || completion.is_some() || cost.is_some() {
            self.mark_usage_below(ctx, parent);
        }
        let raw = RawLlmCall {
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
        let l = *self.limits();
        let to_json = |v: Result<Value, serde_json::Error>| {
            v.map(|v| clean_json(v, &l))
                .unwrap_or(Value::Array(Vec::new()))
        };
        let row = ChatMessageRow {
            id: crate::ids::v7_now(),
            trace_id: ctx.trace_id.as_uuid(),
            span_id: ctx.span_id.map(|s| s.as_uuid()),
            session_id: clean_text(session_id, l.label),
            user_id,
            kb_id,
            role: clean_text(message.role.as_str(), l.label),
            content: clean_owned(message.content, l.content),
            turn_number: count32(message.turn_number),
            sources: to_json(serde_json::to_value(&message.sources)),
            citations: to_json(serde_json::to_value(&message.citations)),
            prompt_tokens: count(message.prompt_tokens),
            completion_tokens: count(message.completion_tokens),
            response_time_ms: finite(message.response_time_ms).filter(|d| *d >= 0.0),
            created_at: Utc::now(),
        };
        self.push(Record::Chat(Box::new(row)));
    }

    fn log_document_event(&self, ctx: &TraceContext, event: DocumentEvent) {
        let l = *self.limits();
        let now = Utc::now();
        let duration = finite(event.duration_ms).filter(|d| (0.0..1e12).contains(d));
        let finished = !matches!(event.status, DocumentEventStatus::Started);
        let mut row = DocumentEventRow {
            id: crate::ids::v7_now(),
            trace_id: ctx.trace_id.as_uuid(),
            span_id: ctx.span_id.map(|s| s.as_uuid()),
            document_id: event.document_id,
            kb_id: ctx.kb_id,
            event_type: clean_text(event.event_type.as_str(), l.label),
            status: event.status.as_str().to_owned(),
            started_at: if finished {
                back_from(now, duration)
            } else {
                now
            },
            completed_at: finished.then_some(now),
            duration_ms: duration,
            error_type: event.error_type.map(|s| clean_text(&s, l.label)),
            error_message: clean_opt(event.error_message, l.error_message),
            retryable: event.retryable,
            retry_count: count32(event.retry_count),
            metadata: self.metadata(event.metadata),
            ..DocumentEventRow::default()
        };
        match event.metrics {
            DocumentMetrics::None => {}
            DocumentMetrics::Parse(m) => {
                row.extracted_pages = count32(m.extracted_pages);
                row.extracted_chars = count(m.extracted_chars);
                row.tables_found = count32(m.tables_found);
                row.images_found = count32(m.images_found);
            }
            DocumentMetrics::Chunk(m) => {
                row.chunks_created = count32(m.chunks_created);
                row.avg_chunk_size = count32(m.avg_chunk_size);
            }
            DocumentMetrics::Embed(m) => {
                row.vectors_generated = count(m.vectors_generated);
                row.embedding_model = m.embedding_model.map(|s| clean_text(&s, l.label));
            }
            DocumentMetrics::Index(m) => {
                row.vectors_upserted = count(m.vectors_upserted);
                row.collection_name = m.collection_name.map(|s| clean_text(&s, l.label));
            }
        }
        self.push(Record::Document(Box::new(row)));
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

/// A `log_llm_call` as queued: the call as given, mapped to its row by [`finish_llm`] on the
/// writer's thread.
#[derive(Debug)]
pub(crate) struct RawLlmCall {
    id: Uuid,
    trace_id: Uuid,
    parent: Option<Uuid>,
    /// When the call was logged: the span's end.
    now: SystemTime,
    call: LlmCall,
}

impl RawLlmCall {
    /// Approximate heap bytes, for the queue's byte budget.
    pub(crate) fn approx_bytes(&self) -> usize {
        fn s(x: &Option<String>) -> usize {
            x.as_ref().map_or(0, String::len)
        }
        let c = &self.call;
        std::mem::size_of::<RawLlmCall>()
            + s(&c.name)
            + s(&c.metrics.model)
            + s(&c.input_preview)
            + s(&c.output_preview)
            + s(&c.outcome.error_type)
            + s(&c.outcome.error_message)
            + c.metadata.as_ref().map_or(0, crate::record::json_bytes)
    }
}

/// The span row of a logged LLM call: sanitised, cut, metadata cleaned.
pub(crate) fn finish_llm(l: &TextLimits, raw: RawLlmCall) -> SpanRow {
    let RawLlmCall {
        id,
        trace_id,
        parent,
        now,
        call,
    } = raw;
    let now = DateTime::<Utc>::from(now);
    let latency = finite(call.latency_ms).filter(|d| *d >= 0.0);
    let status = match call.outcome.status {
        Status::InProgress => Status::Success,
        s => s,
    };
    let m = call.metrics;
    let cost_micros = m.cost_usd.and_then(cost_to_micros);
    SpanRow {
        id,
        trace_id,
        parent_span_id: parent,
        name: call.name.map_or(Cow::Borrowed("llm_call"), |n| {
            Cow::Owned(clean_owned(n, l.label))
        }),
        span_type: SpanType::Llm.into_text(),
        started_at: back_from(now, latency),
        ended_at: Some(now),
        duration_ms: latency.or(Some(0.0)),
        status: Some(status),
        error_type: call.outcome.error_type.map(|s| clean_text(&s, l.label)),
        error_message: clean_opt(call.outcome.error_message, l.error_message),
        model: m.model.map(|s| clean_owned(s, l.label)),
        prompt_tokens: count(m.prompt_tokens),
        completion_tokens: count(m.completion_tokens),
        cost_micros,
        cost_source: cost_micros.map(|_| "given"),
        temperature: finite(m.temperature),
        input_preview: clean_opt(call.input_preview, l.preview),
        output_preview: clean_opt(call.output_preview, l.preview),
        metadata: match call.metadata {
            None => Value::Object(serde_json::Map::new()),
            Some(v) => merge_metadata(clean_json(v, l), None),
        },
        ..SpanRow::default()
    }
}
