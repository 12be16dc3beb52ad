//! A document's ingestion timeline.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgExecutor};
use uuid::Uuid;

use super::sql::select_list;
use crate::schema;

/// A stored step of a document's ingestion.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[non_exhaustive]
pub struct DocumentStep {
    /// Its id.
    pub id: Uuid,
    /// The trace that wrote it.
    pub trace_id: Uuid,
    /// The span it was written in.
    pub span_id: Option<Uuid>,
    /// The document.
    pub document_id: Uuid,
    /// The knowledge base.
    pub kb_id: Option<Uuid>,
    /// `upload`, `parse`, `chunk`, `embed`, `index`, `delete` or `reprocess`.
    pub event_type: String,
    /// `started`, `completed`, `failed` or `skipped`.
    pub status: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// How long it took, in milliseconds.
    pub duration_ms: Option<f64>,
    /// Pages extracted (parse).
    pub extracted_pages: Option<i32>,
    /// Characters extracted (parse).
    pub extracted_chars: Option<i64>,
    /// Tables found (parse).
    pub tables_found: Option<i32>,
    /// Images found (parse).
    pub images_found: Option<i32>,
    /// Chunks made (chunk).
    pub chunks_created: Option<i32>,
    /// Their average size (chunk).
    pub avg_chunk_size: Option<i32>,
    /// Vectors made (embed).
    pub vectors_generated: Option<i64>,
    /// The embedding model (embed).
    pub embedding_model: Option<String>,
    /// Vectors written (index).
    pub vectors_upserted: Option<i64>,
    /// The collection (index).
    pub collection_name: Option<String>,
    /// The error's type.
    pub error_type: Option<String>,
    /// The error's message.
    pub error_message: Option<String>,
    /// Whether a failed step can be retried.
    pub retryable: Option<bool>,
    /// How many times it was retried.
    pub retry_count: Option<i32>,
    /// Everything else.
    pub metadata: Value,
}

static SELECT: LazyLock<String> = LazyLock::new(|| {
    select_list(
        schema::DOCUMENT_EVENT_COLUMNS,
        &["started_at", "completed_at"],
        &[],
    )
});

/// Every step of a document's ingestion, in time order.
pub async fn document_timeline(
    db: impl PgExecutor<'_>,
    document_id: Uuid,
) -> Result<Vec<DocumentStep>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {} FROM observability.document_events e WHERE document_id = $1 \
         ORDER BY e.started_at, e.id",
        *SELECT
    )))
    .bind(document_id)
    .fetch_all(db)
    .await
}

/// The document steps a trace wrote in `[from, to)` (its time range, with slack), in time
/// order. The table's key leads with the trace id.
pub async fn trace_document_steps(
    db: impl PgExecutor<'_>,
    trace_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DocumentStep>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {} FROM observability.document_events e \
         WHERE trace_id = $1 AND started_at >= $2 AND started_at < $3 \
         ORDER BY e.started_at, e.id",
        *SELECT
    )))
    .bind(trace_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
}

/// The latest failed ingestion steps started at or after `since`, newest first, at most
/// `limit` (1 to 1,000): the status index, newest first, within the partitions of the range.
pub async fn failed_steps(
    db: impl PgExecutor<'_>,
    since: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<DocumentStep>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {} FROM observability.document_events e \
         WHERE status = 'failed' AND started_at >= $1 \
         ORDER BY e.started_at DESC, e.id DESC LIMIT $2",
        *SELECT
    )))
    .bind(since)
    .bind(i64::from(limit.clamp(1, 1000)))
    .fetch_all(db)
    .await
}
