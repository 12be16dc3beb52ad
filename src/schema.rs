//! The store's names: the schema, its five tables, their keys and columns (in the order the
//! writer sends them and the reader selects them), and the privileges the writer needs. Data
//! only: the writer and the query API both read it.

/// The schema every table lives in.
pub(crate) const SCHEMA: &str = "observability";

/// A table: its unqualified name, its primary key's columns, its columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    pub name: &'static str,
    /// The primary key's columns, comma-separated (as written in SQL).
    pub key: &'static str,
    pub columns: &'static [&'static str],
}

/// `observability.traces`.
pub(crate) const TRACES: Table = Table {
    name: "traces",
    key: "id, started_at",
    columns: TRACE_COLUMNS,
};

/// `observability.spans`.
pub(crate) const SPANS: Table = Table {
    name: "spans",
    key: "trace_id, id, started_at",
    columns: SPAN_COLUMNS,
};

/// `observability.chat_messages`.
pub(crate) const CHAT_MESSAGES: Table = Table {
    name: "chat_messages",
    key: "trace_id, id, created_at",
    columns: CHAT_MESSAGE_COLUMNS,
};

/// `observability.document_events`.
pub(crate) const DOCUMENT_EVENTS: Table = Table {
    name: "document_events",
    key: "trace_id, id, started_at",
    columns: DOCUMENT_EVENT_COLUMNS,
};

/// `observability.scores`.
pub(crate) const SCORES: Table = Table {
    name: "scores",
    key: "trace_id, id, created_at",
    columns: SCORE_COLUMNS,
};

/// The five time-partitioned tables' names.
pub(crate) const TABLES: [&str; 5] = [
    TRACES.name,
    SPANS.name,
    CHAT_MESSAGES.name,
    DOCUMENT_EVENTS.name,
    SCORES.name,
];

/// The privileges the writer needs on each of [`TABLES`]: `INSERT`, and `SELECT` and `UPDATE`
/// for the upsert of its retries (which reads the stored row).
pub(crate) const TABLE_PRIVILEGES: [&str; 3] = ["SELECT", "INSERT", "UPDATE"];

/// The columns of `traces`.
pub(crate) const TRACE_COLUMNS: &[&str] = &[
    "id",
    "trace_id",
    "name",
    "operation_type",
    "user_id",
    "session_id",
    "kb_id",
    "started_at",
    "ended_at",
    "duration_ms",
    "status",
    "error_type",
    "error_message",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "total_cost_usd",
    "metadata",
];

/// The columns every span row fills, whatever its type: the first of [`SPAN_COLUMNS`].
pub(crate) const SPAN_COMMON_COLUMNS: [&str; 10] = [
    "id",
    "trace_id",
    "parent_span_id",
    "span_id",
    "name",
    "span_type",
    "started_at",
    "ended_at",
    "duration_ms",
    "status",
];

/// `a`, then `b`, in an array of `N` entries (their lengths' sum, checked when compiled).
const fn concat<const A: usize, const B: usize, const N: usize>(
    a: [&'static str; A],
    b: [&'static str; B],
) -> [&'static str; N] {
    assert!(A + B == N, "N must be the sum of the two lengths");
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < A { a[i] } else { b[i - A] };
        i += 1;
    }
    out
}

/// The columns of `spans`: [`SPAN_COMMON_COLUMNS`], then the type-specific ones and
/// `metadata`.
pub(crate) const SPAN_COLUMNS: &[&str] = &concat::<10, 24, 34>(
    SPAN_COMMON_COLUMNS,
    [
        "error_type",
        "error_message",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "cost_source",
        "temperature",
        "embedding_model",
        "vector_count",
        "vector_dimensions",
        "query_text",
        "result_count",
        "top_score",
        "file_type",
        "file_size_bytes",
        "page_count",
        "chunk_count",
        "chunk_strategy",
        "vectors_upserted",
        "collection_name",
        "input_preview",
        "output_preview",
        "metadata",
    ],
);

/// The columns of a span row that holds none of the type-specific values (tokens, cost,
/// retrieval, parsing, previews, error): the span of an ordinary `#[instrument]`ed function.
/// Such a row is sent with these columns only, so the server does not read 23 NULL fields
/// (the saving is in `BENCHMARKS.md`). The columns left out have no default, so they are NULL
/// either way.
pub(crate) const SHORT_SPAN_COLUMNS: &[&str] =
    &concat::<10, 1, 11>(SPAN_COMMON_COLUMNS, ["metadata"]);

/// The columns of `chat_messages`.
pub(crate) const CHAT_MESSAGE_COLUMNS: &[&str] = &[
    "id",
    "trace_id",
    "span_id",
    "session_id",
    "user_id",
    "kb_id",
    "role",
    "content",
    "turn_number",
    "sources",
    "citations",
    "prompt_tokens",
    "completion_tokens",
    "response_time_ms",
    "created_at",
];

/// The columns of `document_events`.
pub(crate) const DOCUMENT_EVENT_COLUMNS: &[&str] = &[
    "id",
    "trace_id",
    "span_id",
    "document_id",
    "kb_id",
    "event_type",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "extracted_pages",
    "extracted_chars",
    "tables_found",
    "images_found",
    "chunks_created",
    "avg_chunk_size",
    "vectors_generated",
    "embedding_model",
    "vectors_upserted",
    "collection_name",
    "error_type",
    "error_message",
    "retryable",
    "retry_count",
    "metadata",
];

/// The columns of `scores`.
pub(crate) const SCORE_COLUMNS: &[&str] = &[
    "id",
    "trace_id",
    "span_id",
    "message_id",
    "name",
    "data_type",
    "value_numeric",
    "value_bool",
    "value_text",
    "comment",
    "source",
    "author",
    "created_at",
];
