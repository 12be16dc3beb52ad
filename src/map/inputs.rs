//! The explicit provider's inputs mapped to rows: an LLM call, a chat message, a document
//! event, a span's metrics and outcome, sanitised and cut to the text limits.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::config::Scope;
use crate::model::inputs::{ChatMessage, DocumentEvent, DocumentMetrics, Outcome, SpanMetrics};
use crate::model::kinds::{DocumentEventStatus, SpanType, Status};
use crate::model::money::cost_to_micros;
use crate::model::record::CapturedLlmCall;
use crate::model::rows::{ChatMessageRow, DocumentEventRow, SpanRow};
use crate::model::sanitize::{TextLimits, clean_json, clean_opt, clean_owned, clean_text};
use crate::model::values::{back_from, count, count32, finite};

/// Shallow merge of two JSON objects (`extra` wins); anything that is not an object is kept
/// under the key `"value"`.
pub(crate) fn merge_metadata(base: Value, extra: Option<Value>) -> Value {
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

/// Metadata given to a call: sanitised, an object (`{}` when none was given).
pub(crate) fn metadata(l: &TextLimits, v: Option<Value>) -> Value {
    match v {
        None => Value::Object(serde_json::Map::new()),
        Some(v) => merge_metadata(clean_json(v, l), None),
    }
}

/// Whether a span row reports token usage or cost.
pub(crate) fn has_usage(row: &SpanRow) -> bool {
    row.prompt_tokens.is_some() || row.completion_tokens.is_some() || row.cost_micros.is_some()
}

/// A finished span's status and error; `in_progress` given for a finished span means success.
pub(crate) fn outcome(
    l: &TextLimits,
    outcome: Outcome,
) -> (Status, Option<String>, Option<String>) {
    let status = match outcome.status {
        Status::InProgress => Status::Success,
        s => s,
    };
    (
        status,
        outcome.error_type.map(|s| clean_text(&s, l.label)),
        clean_opt(outcome.error_message, l.error_message),
    )
}

/// Fills a span row's type-specific columns from its metrics.
pub(crate) fn span_metrics(l: &TextLimits, row: &mut SpanRow, metrics: SpanMetrics) {
    match metrics {
        SpanMetrics::None => {}
        SpanMetrics::Llm(m) => {
            row.model = m.model.map(|s| clean_text(&s, l.label));
            row.prompt_tokens = count(m.prompt_tokens);
            row.completion_tokens = count(m.completion_tokens);
            row.cost_micros = m.cost_usd.and_then(cost_to_micros);
            row.cost_source = row.cost_micros.map(|_| "given");
            row.temperature = finite(m.temperature);
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

/// The row of a `log_chat_message` in `scope` (which has its session, user and kb ids).
pub(crate) fn chat_row(
    l: &TextLimits,
    scope: &Scope<'_>,
    (session_id, user_id, kb_id): (&str, uuid::Uuid, uuid::Uuid),
    message: ChatMessage,
) -> ChatMessageRow {
    let to_json = |v: Result<Value, serde_json::Error>| {
        v.map(|v| clean_json(v, l))
            .unwrap_or(Value::Array(Vec::new()))
    };
    ChatMessageRow {
        id: crate::model::ids::v7_now(),
        trace_id: scope.trace_id,
        span_id: scope.span_id,
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
    }
}

/// The row of a `log_document_event` in `scope`.
pub(crate) fn document_row(
    l: &TextLimits,
    scope: &Scope<'_>,
    event: DocumentEvent,
) -> DocumentEventRow {
    let now = Utc::now();
    let duration = finite(event.duration_ms).filter(|d| (0.0..1e12).contains(d));
    let finished = !matches!(event.status, DocumentEventStatus::Started);
    let mut row = DocumentEventRow {
        id: crate::model::ids::v7_now(),
        trace_id: scope.trace_id,
        span_id: scope.span_id,
        document_id: event.document_id,
        kb_id: scope.kb_id,
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
        metadata: metadata(l, event.metadata),
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
    row
}

/// The span row of a logged LLM call: sanitised, cut, metadata cleaned.
pub(crate) fn llm_call(l: &TextLimits, raw: CapturedLlmCall) -> SpanRow {
    let CapturedLlmCall {
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
