//! The row each table receives. A row's `status` says what it is: `in_progress` rows are
//! starts (visible while the work runs); any other status is the finished row, which replaces
//! the start.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::kinds::{ScoreDataType, ScoreSource, Status};

/// Text that is often a `&'static str` (a span's name, a built-in type): no copy then.
pub(crate) type Text = std::borrow::Cow<'static, str>;

/// A row of `observability.traces`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceRow {
    pub id: Uuid,
    pub name: Text,
    pub operation_type: Text,
    pub user_id: Option<Uuid>,
    pub session_id: Option<String>,
    pub kb_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    pub status: Status,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub total_cost_micros: Option<i64>,
    pub metadata: Value,
    /// For a finished row: whether a start row was queued before it. A finished row without a
    /// start cannot meet a stored row and is written by plain `COPY`.
    pub start_sent: bool,
    /// The trace crossed processes: once this row is written, its totals are set to the sum
    /// of the trace's parts (`trace_parts`), its own part queued before it included.
    pub recount: bool,
}

/// A row of `observability.trace_parts`: one process's share of a distributed trace's usage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartRow {
    pub trace_id: Uuid,
    /// The trace id for the trace's origin; the top span (or the call) that counted the usage
    /// in a process that joined it.
    pub part_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: Option<i64>,
}

/// A row of `observability.spans`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct SpanRow {
    pub id: Uuid,
    pub trace_id: Uuid,
    pub parent_span_id: Option<Uuid>,
    pub name: Text,
    pub span_type: Text,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    pub status: Option<Status>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cost_micros: Option<i64>,
    pub cost_source: Option<&'static str>,
    pub temperature: Option<f64>,
    pub embedding_model: Option<String>,
    pub vector_count: Option<i64>,
    pub vector_dimensions: Option<i32>,
    pub query_text: Option<String>,
    pub result_count: Option<i32>,
    pub top_score: Option<f64>,
    pub file_type: Option<String>,
    pub file_size_bytes: Option<i64>,
    pub page_count: Option<i32>,
    pub chunk_count: Option<i32>,
    pub chunk_strategy: Option<String>,
    pub vectors_upserted: Option<i64>,
    pub collection_name: Option<String>,
    pub input_preview: Option<String>,
    pub output_preview: Option<String>,
    pub metadata: Value,
    /// For a finished row: whether a start row was queued before it (see [`TraceRow`]).
    pub start_sent: bool,
}

impl SpanRow {
    /// `true` for a start row, which a later finished row replaces.
    pub fn is_start(&self) -> bool {
        matches!(self.status, None | Some(Status::InProgress))
    }
}

/// An empty start row: what a trace row is before its fields are filled.
impl Default for TraceRow {
    fn default() -> Self {
        Self {
            id: Uuid::nil(),
            name: Text::Borrowed(""),
            operation_type: Text::Borrowed(""),
            user_id: None,
            session_id: None,
            kb_id: None,
            started_at: DateTime::default(),
            ended_at: None,
            duration_ms: None,
            status: Status::InProgress,
            error_type: None,
            error_message: None,
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            total_cost_micros: None,
            metadata: Value::Null,
            start_sent: false,
            recount: false,
        }
    }
}

impl TraceRow {
    /// `true` for a start row, which a later finished row replaces.
    pub fn is_start(&self) -> bool {
        self.status == Status::InProgress
    }
}

/// A row of `observability.chat_messages`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatMessageRow {
    pub id: Uuid,
    pub trace_id: Uuid,
    pub span_id: Option<Uuid>,
    pub session_id: String,
    pub user_id: Uuid,
    pub kb_id: Uuid,
    pub role: String,
    pub content: String,
    pub turn_number: Option<i32>,
    pub sources: Value,
    pub citations: Value,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub response_time_ms: Option<f64>,
    pub created_at: DateTime<Utc>,
}

/// A row of `observability.document_events`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct DocumentEventRow {
    pub id: Uuid,
    pub trace_id: Uuid,
    pub span_id: Option<Uuid>,
    pub document_id: Uuid,
    pub kb_id: Option<Uuid>,
    pub event_type: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    pub extracted_pages: Option<i32>,
    pub extracted_chars: Option<i64>,
    pub tables_found: Option<i32>,
    pub images_found: Option<i32>,
    pub chunks_created: Option<i32>,
    pub avg_chunk_size: Option<i32>,
    pub vectors_generated: Option<i64>,
    pub embedding_model: Option<String>,
    pub vectors_upserted: Option<i64>,
    pub collection_name: Option<String>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub retryable: Option<bool>,
    pub retry_count: Option<i32>,
    pub metadata: Value,
}

/// A row of `observability.scores`: insert-only, one value column filled by its data type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScoreRow {
    pub id: Uuid,
    pub trace_id: Uuid,
    pub span_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub name: String,
    pub data_type: ScoreDataType,
    pub value_numeric: Option<f64>,
    pub value_bool: Option<bool>,
    pub value_text: Option<String>,
    pub comment: Option<String>,
    pub source: ScoreSource,
    pub author: Option<String>,
    pub created_at: DateTime<Utc>,
}
