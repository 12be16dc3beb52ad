//! Usage statistics: calls, tokens, cost, latency percentiles and error rate, by model,
//! knowledge base or user, per hour, day or week.

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use sqlx::{AssertSqlSafe, PgExecutor};

/// What usage is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageBy {
    /// The model of each LLM span: a call is one span with a model.
    Model,
    /// The knowledge base of each trace: a call is one trace (request), its tokens and cost
    /// the trace's totals.
    Kb,
    /// The user of each trace, counted as for [`UsageBy::Kb`].
    User,
}

/// The length of a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// One hour.
    Hour,
    /// One UTC day.
    Day,
    /// One week, from Monday 00:00 UTC.
    Week,
}

impl Bucket {
    fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Week => "week",
        }
    }
}

/// A usage query: the grouping, the bucket and the time range (of start times).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    /// Grouped by what.
    pub by: UsageBy,
    /// Per what length of time.
    pub bucket: Bucket,
    /// From (inclusive).
    pub from: DateTime<Utc>,
    /// To (exclusive).
    pub to: DateTime<Utc>,
}

impl UsageQuery {
    /// The last 24 hours, per hour.
    pub fn last_24h(by: UsageBy) -> Self {
        let to = Utc::now();
        Self {
            by,
            bucket: Bucket::Hour,
            from: to - TimeDelta::hours(24),
            to,
        }
    }
}

/// Usage of one key in one bucket.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[non_exhaustive]
pub struct Usage {
    /// Start of the bucket.
    pub bucket: DateTime<Utc>,
    /// The model, knowledge base or user (as text); `None` for calls without one.
    pub key: Option<String>,
    /// Calls: LLM spans (by model) or traces (by knowledge base or user).
    pub calls: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Cost in US dollars.
    pub cost_usd: Decimal,
    /// Median duration in milliseconds (of finished calls).
    pub p50_ms: Option<f64>,
    /// 95th percentile duration in milliseconds.
    pub p95_ms: Option<f64>,
    /// Share of calls that ended in error, 0 to 1.
    pub error_rate: f64,
}

/// Usage by model, knowledge base or user, per bucket, oldest bucket first.
pub async fn usage(db: impl PgExecutor<'_>, q: &UsageQuery) -> Result<Vec<Usage>, sqlx::Error> {
    let (table, key, filter, prompt, completion, cost) = match q.by {
        UsageBy::Model => (
            "spans",
            "model",
            "model IS NOT NULL",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
        ),
        UsageBy::Kb => (
            "traces",
            "kb_id::text",
            "true",
            "prompt_tokens",
            "completion_tokens",
            "total_cost_usd",
        ),
        UsageBy::User => (
            "traces",
            "user_id::text",
            "true",
            "prompt_tokens",
            "completion_tokens",
            "total_cost_usd",
        ),
    };
    // Sums of bigint are numeric: cut back to bigint, saturating rather than failing.
    let sum = |c: &str| format!("least(coalesce(sum({c}), 0), 9223372036854775807)::bigint");
    let sql = format!(
        "SELECT date_trunc($1, started_at, 'UTC') AS bucket, {key} AS key, \
                count(*) AS calls, {p} AS prompt_tokens, {c} AS completion_tokens, \
                coalesce(sum({cost}), 0)::numeric AS cost_usd, \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms, \
                percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms, \
                avg((status = 'error')::int)::float8 AS error_rate \
         FROM observability.{table} \
         WHERE {filter} AND started_at >= $2 AND started_at < $3 \
         GROUP BY 1, 2 ORDER BY 1, 2",
        p = sum(prompt),
        c = sum(completion),
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(q.bucket.as_str())
        .bind(q.from)
        .bind(q.to)
        .fetch_all(db)
        .await
}
