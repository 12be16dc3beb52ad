//! Chat sessions: the recent ones, each summed up from its traces.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgExecutor;
use uuid::Uuid;

/// A chat session summed up from the traces that carry its id.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[non_exhaustive]
pub struct SessionSummary {
    /// The session's id.
    pub session_id: String,
    /// Its user (of its latest trace, when its traces name several).
    pub user_id: Option<Uuid>,
    /// Its traces in the range: one per request, usually one per turn.
    pub turns: i64,
    /// When its first trace in the range started.
    pub first_at: DateTime<Utc>,
    /// When its last trace in the range started.
    pub last_at: DateTime<Utc>,
    /// Tokens of its traces.
    pub total_tokens: i64,
    /// Cost of its traces in US dollars.
    pub cost_usd: Decimal,
    /// Its traces that ended in error.
    pub errors: i64,
}

/// The sessions with traces started in `[from, to)`, the latest activity first, at most
/// `limit` (1 to 1,000).
///
/// One query over the traces of the range (the time index, and only the partitions of the
/// range), grouped by session: its cost grows with the traces of the range, so keep the range
/// to what a page shows (a day, a week).
pub async fn recent_sessions(
    db: impl PgExecutor<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<SessionSummary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT session_id, \
                (array_agg(user_id ORDER BY started_at DESC) \
                    FILTER (WHERE user_id IS NOT NULL))[1] AS user_id, \
                count(*) AS turns, \
                least(greatest(min(started_at), '0001-01-01 00:00:00+00'), \
                      '9999-12-31 00:00:00+00') AS first_at, \
                least(greatest(max(started_at), '0001-01-01 00:00:00+00'), \
                      '9999-12-31 00:00:00+00') AS last_at, \
                least(coalesce(sum(total_tokens), 0), 9223372036854775807)::bigint \
                    AS total_tokens, \
                coalesce(sum(total_cost_usd), 0)::numeric AS cost_usd, \
                count(*) FILTER (WHERE status = 'error') AS errors \
         FROM observability.traces \
         WHERE session_id IS NOT NULL AND started_at >= $1 AND started_at < $2 \
         GROUP BY session_id ORDER BY max(started_at) DESC, session_id LIMIT $3",
    )
    .bind(from)
    .bind(to)
    .bind(i64::from(limit.clamp(1, 1000)))
    .fetch_all(db)
    .await
}
