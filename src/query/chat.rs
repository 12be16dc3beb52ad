//! A chat session's history.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgExecutor};
use uuid::Uuid;

use super::sql::select_list;
use crate::schema;

/// A stored chat message.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[non_exhaustive]
pub struct Message {
    /// Its id.
    pub id: Uuid,
    /// The trace that wrote it.
    pub trace_id: Uuid,
    /// The span it was written in.
    pub span_id: Option<Uuid>,
    /// The session.
    pub session_id: String,
    /// The user.
    pub user_id: Uuid,
    /// The knowledge base.
    pub kb_id: Uuid,
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// Its text.
    pub content: String,
    /// Its position in the session.
    pub turn_number: Option<i32>,
    /// The sources an answer drew on (a JSON array of `{document_id, chunk_id, score, ...}`).
    pub sources: Value,
    /// The citations in an answer (a JSON array).
    pub citations: Value,
    /// Prompt tokens spent on it.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens spent on it.
    pub completion_tokens: Option<i64>,
    /// Time to answer, in milliseconds.
    pub response_time_ms: Option<f64>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

static SELECT: LazyLock<String> =
    LazyLock::new(|| select_list(schema::CHAT_MESSAGE_COLUMNS, &["created_at"], &[]));

/// The messages of a chat session in turn order (messages without a turn number last, by
/// time), with their sources and citations.
pub async fn chat_history(
    db: impl PgExecutor<'_>,
    session_id: &str,
) -> Result<Vec<Message>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {} FROM observability.chat_messages m WHERE session_id = $1 \
         ORDER BY m.turn_number NULLS LAST, m.created_at, m.id",
        *SELECT
    )))
    .bind(session_id)
    .fetch_all(db)
    .await
}

/// The messages a trace wrote in `[from, to)` (its time range, with slack), in turn order.
///
/// The table's key leads with the trace id, and the range keeps PostgreSQL to the partitions
/// of that time.
pub async fn trace_messages(
    db: impl PgExecutor<'_>,
    trace_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Message>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {} FROM observability.chat_messages m \
         WHERE trace_id = $1 AND created_at >= $2 AND created_at < $3 \
         ORDER BY m.turn_number NULLS LAST, m.created_at, m.id",
        *SELECT
    )))
    .bind(trace_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
}
