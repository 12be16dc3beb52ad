//! Traces: one with its span tree, and recent ones filtered and paged.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{Acquire, AssertSqlSafe, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::sql::{contains_pattern, select_list};
use crate::schema;

/// A stored trace.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[non_exhaustive]
pub struct Trace {
    /// Its id (a UUID; [`Trace::w3c_id`] gives the W3C form).
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its operation type (`chat`, `document_ingestion`, ... or a custom one).
    pub operation_type: String,
    /// The user it served.
    pub user_id: Option<Uuid>,
    /// The chat session it belongs to.
    pub session_id: Option<String>,
    /// The knowledge base it used.
    pub kb_id: Option<Uuid>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while in progress.
    pub ended_at: Option<DateTime<Utc>>,
    /// How long it took, in milliseconds.
    pub duration_ms: Option<f64>,
    /// `in_progress`, `success` or `error`.
    pub status: String,
    /// The error's type.
    pub error_type: Option<String>,
    /// The error's message.
    pub error_message: Option<String>,
    /// Prompt tokens of the whole trace.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens of the whole trace.
    pub completion_tokens: Option<i64>,
    /// All tokens of the whole trace.
    pub total_tokens: Option<i64>,
    /// Cost of the whole trace in US dollars.
    pub total_cost_usd: Option<Decimal>,
    /// Everything else.
    pub metadata: Value,
}

impl Trace {
    /// The id as a W3C trace id: 32 lowercase hex digits.
    pub fn w3c_id(&self) -> String {
        self.id.simple().to_string()
    }
}

/// A stored span.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[non_exhaustive]
pub struct Span {
    /// Its id.
    pub id: Uuid,
    /// Its trace.
    pub trace_id: Uuid,
    /// Its parent span; `None` under the trace's root.
    pub parent_span_id: Option<Uuid>,
    /// Its name.
    pub name: String,
    /// `llm`, `embedding`, `retrieval`, ... or a custom type.
    pub span_type: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while in progress.
    pub ended_at: Option<DateTime<Utc>>,
    /// How long it took, in milliseconds.
    pub duration_ms: Option<f64>,
    /// `in_progress`, `success` or `error`.
    pub status: String,
    /// The error's type.
    pub error_type: Option<String>,
    /// The error's message.
    pub error_message: Option<String>,
    /// The language model.
    pub model: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens.
    pub completion_tokens: Option<i64>,
    /// Cost in US dollars.
    pub cost_usd: Option<Decimal>,
    /// `given` or `computed` (from the price table).
    pub cost_source: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// The embedding model.
    pub embedding_model: Option<String>,
    /// Vectors embedded.
    pub vector_count: Option<i64>,
    /// Their dimensions.
    pub vector_dimensions: Option<i32>,
    /// The retrieval query.
    pub query_text: Option<String>,
    /// Results retrieved.
    pub result_count: Option<i32>,
    /// The best score.
    pub top_score: Option<f64>,
    /// The parsed file's type.
    pub file_type: Option<String>,
    /// Its size.
    pub file_size_bytes: Option<i64>,
    /// Its pages.
    pub page_count: Option<i32>,
    /// Chunks made.
    pub chunk_count: Option<i32>,
    /// How they were made.
    pub chunk_strategy: Option<String>,
    /// Vectors written to the index.
    pub vectors_upserted: Option<i64>,
    /// The index's collection.
    pub collection_name: Option<String>,
    /// The start of the input.
    pub input_preview: Option<String>,
    /// The start of the output.
    pub output_preview: Option<String>,
    /// Everything else.
    pub metadata: Value,
}

impl Span {
    /// Prompt and completion tokens together, when any is known.
    pub fn tokens(&self) -> Option<i64> {
        match (self.prompt_tokens, self.completion_tokens) {
            (None, None) => None,
            (p, c) => Some(p.unwrap_or(0).saturating_add(c.unwrap_or(0))),
        }
    }
}

/// The columns the writer writes are the columns read back, but the W3C forms of the ids (the
/// `Uuid` read back has them).
static TRACE_SELECT: LazyLock<String> = LazyLock::new(|| {
    select_list(
        schema::TRACE_COLUMNS,
        &["started_at", "ended_at"],
        &["trace_id"],
    )
});
static SPAN_SELECT: LazyLock<String> = LazyLock::new(|| {
    select_list(
        schema::SPAN_COLUMNS,
        &["started_at", "ended_at"],
        &["span_id"],
    )
});

/// A trace and its spans.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceTree {
    /// The trace's row; `None` when only spans of it were stored (its row was refused, or is
    /// still in a writer's queue).
    pub trace: Option<Trace>,
    /// Its spans, by start time.
    pub spans: Vec<Span>,
}

impl TraceTree {
    /// The spans in tree order (each followed by its children, by start time) with their
    /// depth: 0 for spans directly under the trace. A span whose parent is not stored is
    /// shown under the trace.
    pub fn walk(&self) -> Vec<(usize, &Span)> {
        let known: HashMap<Uuid, usize> = self
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let mut children: HashMap<Option<Uuid>, Vec<usize>> = HashMap::new();
        for (i, s) in self.spans.iter().enumerate() {
            let parent = s
                .parent_span_id
                .filter(|p| known.contains_key(p) && *p != s.id);
            children.entry(parent).or_default().push(i);
        }
        let mut out = Vec::with_capacity(self.spans.len());
        let mut visited = vec![false; self.spans.len()];
        // Iterative, children pushed in reverse so they pop in start order.
        let mut stack: Vec<(usize, usize)> = children
            .get(&None)
            .map(|c| c.iter().rev().map(|&i| (0, i)).collect())
            .unwrap_or_default();
        while let Some((depth, i)) = stack.pop() {
            if std::mem::replace(&mut visited[i], true) {
                continue;
            }
            let span = &self.spans[i];
            out.push((depth, span));
            if let Some(c) = children.get(&Some(span.id)) {
                stack.extend(c.iter().rev().map(|&j| (depth + 1, j)));
            }
        }
        // Spans in a parent cycle (never written by this crate, but possible by hand).
        for (i, s) in self.spans.iter().enumerate() {
            if !visited[i] {
                out.push((0, s));
            }
        }
        out
    }

    /// The time the trace covers: from its (or its first span's) start to the last end.
    pub fn bounds(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let starts = self.trace.iter().map(|t| t.started_at);
        let starts = starts.chain(self.spans.iter().map(|s| s.started_at));
        let start = starts.min()?;
        let ends = self.trace.iter().filter_map(|t| t.ended_at);
        let ends = ends.chain(self.spans.iter().filter_map(|s| s.ended_at));
        let spans_started = self.spans.iter().map(|s| s.started_at);
        let end = ends.chain(spans_started).max().unwrap_or(start);
        Some((start, end.max(start)))
    }
}

/// How far from the time in its id a trace's row is looked for first (a context made some
/// time before its trace starts).
const ID_TIME_SLACK: TimeDelta = TimeDelta::hours(1);
/// How long before its trace's start, and after its end, a span is looked for (clocks of
/// several hosts; spans of spawned work that outlive their root).
const SPAN_SLACK_BEFORE: TimeDelta = TimeDelta::hours(1);
const SPAN_SLACK_AFTER: TimeDelta = TimeDelta::days(1);

/// The time a UUIDv7 was made, `None` for other versions (W3C ids from elsewhere).
fn time_of(id: Uuid) -> Option<DateTime<Utc>> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// The trace `id` with its spans; `None` when nothing of it is stored.
///
/// A UUIDv7 id carries its time, so the trace's row is first looked for in the partitions
/// around that time only (an hour either side), and its spans from an hour before its start
/// to a day after its end: a few partitions instead of all of them.
pub async fn trace_tree<'c, A>(db: A, id: Uuid) -> Result<Option<TraceTree>, sqlx::Error>
where
    A: Acquire<'c, Database = Postgres>,
{
    let mut conn = db.acquire().await?;
    let db = &mut *conn;
    let mut trace: Option<Trace> = None;
    if let Some(t) = time_of(id) {
        trace = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {} FROM observability.traces \
             WHERE id = $1 AND started_at >= $2 AND started_at < $3",
            *TRACE_SELECT
        )))
        .bind(id)
        .bind(t - ID_TIME_SLACK)
        .bind(t + ID_TIME_SLACK)
        .fetch_optional(&mut *db)
        .await?;
    }
    if trace.is_none() {
        trace = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {} FROM observability.traces WHERE id = $1",
            *TRACE_SELECT
        )))
        .bind(id)
        .fetch_optional(&mut *db)
        .await?;
    }
    let spans: Vec<Span> = match &trace {
        Some(t) => {
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {} FROM observability.spans s \
                 WHERE trace_id = $1 AND started_at >= $2 AND started_at < $3 \
                 ORDER BY s.started_at, s.id",
                *SPAN_SELECT
            )))
            .bind(id)
            .bind(t.started_at - SPAN_SLACK_BEFORE)
            // A trace still in progress may have spans up to now.
            .bind(t.ended_at.unwrap_or_else(Utc::now).max(t.started_at) + SPAN_SLACK_AFTER)
            .fetch_all(&mut *db)
            .await?
        }
        None => {
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {} FROM observability.spans s WHERE trace_id = $1 \
                 ORDER BY s.started_at, s.id",
                *SPAN_SELECT
            )))
            .bind(id)
            .fetch_all(&mut *db)
            .await?
        }
    };
    if trace.is_none() && spans.is_empty() {
        return Ok(None);
    }
    Ok(Some(TraceTree { trace, spans }))
}

/// Where a page of [`recent_traces`] ends: pass it as [`TraceFilter::before`] for the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last trace's start.
    pub started_at: DateTime<Utc>,
    /// The last trace's id.
    pub id: Uuid,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The results, newest first.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Which traces [`recent_traces`] returns. Every set field must match.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFilter {
    /// Only this operation type.
    pub operation_type: Option<String>,
    /// Only this status (`in_progress`, `success` or `error`).
    pub status: Option<String>,
    /// Only finished traces (any status but `in_progress`).
    pub finished: bool,
    /// Only this user's.
    pub user_id: Option<Uuid>,
    /// Only this knowledge base's.
    pub kb_id: Option<Uuid>,
    /// Only this chat session's.
    pub session_id: Option<String>,
    /// Started at or after this.
    pub from: Option<DateTime<Utc>>,
    /// Started before this.
    pub to: Option<DateTime<Utc>>,
    /// Containing this text (case-insensitive) in the name or the error message.
    pub text: Option<String>,
    /// With a span of this model (looked for in each candidate trace's spans, by the span
    /// table's key, which leads with the trace id).
    pub model: Option<String>,
    /// Traces per page: 1 to 1,000 (default 50).
    pub limit: u32,
    /// Continue after this cursor (from [`Page::next`]).
    pub before: Option<Cursor>,
}

impl Default for TraceFilter {
    fn default() -> Self {
        Self {
            operation_type: None,
            status: None,
            finished: false,
            user_id: None,
            kb_id: None,
            session_id: None,
            from: None,
            to: None,
            text: None,
            model: None,
            limit: 50,
            before: None,
        }
    }
}

/// Recent traces, newest first, filtered and paged (by keyset: a page costs the same however
/// deep it is).
pub async fn recent_traces(
    db: impl PgExecutor<'_>,
    filter: &TraceFilter,
) -> Result<Page<Trace>, sqlx::Error> {
    let limit = filter.limit.clamp(1, 1000);
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {} FROM observability.traces t WHERE true",
        *TRACE_SELECT
    ));
    if let Some(v) = &filter.operation_type {
        q.push(" AND operation_type = ").push_bind(v.clone());
    }
    if let Some(v) = &filter.status {
        q.push(" AND status = ").push_bind(v.clone());
    }
    if filter.finished {
        q.push(" AND status <> 'in_progress'");
    }
    if let Some(v) = filter.user_id {
        q.push(" AND user_id = ").push_bind(v);
    }
    if let Some(v) = filter.kb_id {
        q.push(" AND kb_id = ").push_bind(v);
    }
    if let Some(v) = &filter.session_id {
        q.push(" AND session_id = ").push_bind(v.clone());
    }
    if let Some(v) = filter.from {
        q.push(" AND started_at >= ").push_bind(v);
    }
    if let Some(v) = filter.to {
        q.push(" AND started_at < ").push_bind(v);
    }
    if let Some(v) = &filter.text {
        let pattern = contains_pattern(v);
        q.push(" AND (name ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR error_message ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    if let Some(v) = &filter.model {
        // Spans start from an hour before their trace (clocks of several hosts) to a day
        // after its end; the bounds keep the look-up to those partitions.
        q.push(
            " AND EXISTS (SELECT 1 FROM observability.spans s WHERE s.trace_id = t.id \
               AND s.started_at >= t.started_at - interval '1 hour' \
               AND s.started_at < coalesce(t.ended_at, t.started_at) + interval '1 day' \
               AND s.model = ",
        )
        .push_bind(v.clone())
        .push(")");
    }
    if let Some(c) = filter.before {
        // The plain bound lets the time index and partition pruning apply; the row
        // comparison breaks ties between traces of the same microsecond.
        q.push(" AND started_at <= ")
            .push_bind(c.started_at)
            .push(" AND (started_at, id) < (")
            .push_bind(c.started_at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    // Qualified: unqualified, `started_at` would name the (clamped) output column, which no
    // index orders.
    q.push(" ORDER BY t.started_at DESC, t.id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let mut items: Vec<Trace> = q.build_query_as().fetch_all(db).await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|t| Cursor {
            started_at: t.started_at,
            id: t.id,
        })
    } else {
        None
    };
    Ok(Page { items, next })
}

/// The number of spans stored of each of `traces` (a page of [`recent_traces`]): one query by
/// the span table's key (trace id first), within the time the traces cover with the slack of
/// [`trace_tree`]. Traces without spans are absent from the map.
pub async fn span_counts(
    db: impl PgExecutor<'_>,
    traces: &[Trace],
) -> Result<HashMap<Uuid, i64>, sqlx::Error> {
    let (Some(from), Some(to)) = (
        traces.iter().map(|t| t.started_at).min(),
        traces
            .iter()
            .map(|t| t.ended_at.unwrap_or_else(Utc::now).max(t.started_at))
            .max(),
    ) else {
        return Ok(HashMap::new());
    };
    let ids: Vec<Uuid> = traces.iter().map(|t| t.id).collect();
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT trace_id, count(*) FROM observability.spans \
         WHERE trace_id = ANY($1) AND started_at >= $2 AND started_at < $3 \
         GROUP BY trace_id",
    )
    .bind(ids)
    .bind(from - SPAN_SLACK_BEFORE)
    .bind(to + SPAN_SLACK_AFTER)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}
