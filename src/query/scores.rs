//! Scores and feedback: the scores of a trace or a chat message, and their aggregates (count,
//! mean, share of negatives) by name, model, knowledge base or day.

use std::sync::LazyLock;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{AssertSqlSafe, PgExecutor};
use uuid::Uuid;

use super::sql::select_list;
use crate::model::score::ScoreValue;
use crate::schema;

/// A stored score.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[non_exhaustive]
pub struct StoredScore {
    /// Its id.
    pub id: Uuid,
    /// The trace it judges (which may not be stored).
    pub trace_id: Uuid,
    /// The span it judges, if any.
    pub span_id: Option<Uuid>,
    /// The chat message it judges, if any.
    pub message_id: Option<Uuid>,
    /// Its name (`helpfulness`, `thumbs`...).
    pub name: String,
    /// `numeric`, `boolean` or `categorical`: which value column is set.
    pub data_type: String,
    /// The value of a numeric score.
    pub value_numeric: Option<f64>,
    /// The value of a boolean score.
    pub value_bool: Option<bool>,
    /// The value of a categorical score.
    pub value_text: Option<String>,
    /// The comment given with it.
    pub comment: Option<String>,
    /// `user`, `model`, `rule` or `api`.
    pub source: String,
    /// Who gave it.
    pub author: Option<String>,
    /// When it was logged.
    pub created_at: DateTime<Utc>,
}

impl StoredScore {
    /// The value, from the column its data type names; `None` for a row another program wrote
    /// inconsistently.
    pub fn value(&self) -> Option<ScoreValue> {
        match self.data_type.as_str() {
            "numeric" => self.value_numeric.map(ScoreValue::Numeric),
            "boolean" => self.value_bool.map(ScoreValue::Bool),
            _ => self.value_text.clone().map(ScoreValue::Categorical),
        }
    }

    /// The value as text: a number as Rust prints it, `true` or `false`, or the label.
    pub fn value_text(&self) -> String {
        match self.value() {
            Some(ScoreValue::Numeric(x)) => x.to_string(),
            Some(ScoreValue::Bool(b)) => b.to_string(),
            Some(ScoreValue::Categorical(s)) => s,
            None => String::new(),
        }
    }
}

static SELECT: LazyLock<String> =
    LazyLock::new(|| select_list(schema::SCORE_COLUMNS, &["created_at"], &[]));

/// Every score of a trace (on the trace itself, its spans and its messages), oldest first.
///
/// Found by the table's key, which leads with the trace id, in every partition: a score may
/// come any time after its trace (or before it is stored), so no time bound is assumed.
pub async fn trace_scores(
    db: impl PgExecutor<'_>,
    trace_id: Uuid,
) -> Result<Vec<StoredScore>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {} FROM observability.scores WHERE trace_id = $1 ORDER BY created_at, id",
        *SELECT
    )))
    .bind(trace_id)
    .fetch_all(db)
    .await
}

/// Every score of a chat message (its `chat_messages.id`), oldest first.
pub async fn message_scores(
    db: impl PgExecutor<'_>,
    message_id: Uuid,
) -> Result<Vec<StoredScore>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {} FROM observability.scores WHERE message_id = $1 ORDER BY created_at, id",
        *SELECT
    )))
    .bind(message_id)
    .fetch_all(db)
    .await
}

/// What score aggregates are grouped by, besides the score's name (always: a mean of thumbs
/// and faithfulness together means nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScoreBy {
    /// The name only: one row per name, its key `None`.
    #[default]
    Name,
    /// The model judged: for a score of a span, that span's model; for any other score (of a
    /// trace or a message), or of a span without a model, the first model by name among the
    /// trace's spans. `None` when the trace has no span with a model, or is not stored.
    Model,
    /// The knowledge base: the scored message's, else the trace's. `None` when neither is
    /// stored or names one.
    Kb,
    /// The UTC day the score was logged (`2026-12-07`).
    Day,
}

/// A score aggregate query: the grouping, an optional name, and the time range of the
/// scores' `created_at` (when they were given, not when their traces ran).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreStatsQuery {
    /// Grouped by what, besides the name.
    pub by: ScoreBy,
    /// Only the scores of this name.
    pub name: Option<String>,
    /// From (inclusive).
    pub from: DateTime<Utc>,
    /// To (exclusive).
    pub to: DateTime<Utc>,
}

impl ScoreStatsQuery {
    /// Every score of the last `days` days, grouped by `by`.
    pub fn last_days(by: ScoreBy, days: i64) -> Self {
        let to = Utc::now();
        Self {
            by,
            name: None,
            from: to - TimeDelta::days(days),
            to,
        }
    }
}

/// The aggregate of one score name under one key.
///
/// A boolean counts as 1 (`true`) or 0 (`false`) in the mean. A score is **negative** when it
/// is boolean `false` or numeric at or below 0 (a thumbs-down as -1 or 0, a grade of 0 on a 0
/// to 1 scale); a categorical score is never negative, and counts in neither mean nor share.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[non_exhaustive]
pub struct ScoreStat {
    /// The model, knowledge base (as text) or day; `None` by name, or without one.
    pub key: Option<String>,
    /// The score's name.
    pub name: String,
    /// Scores, of every data type.
    pub count: i64,
    /// Numeric and boolean scores: those the mean and the share count.
    pub valued: i64,
    /// Mean of the numeric and boolean values; `None` when there is none.
    pub mean: Option<f64>,
    /// Negative scores.
    pub negatives: i64,
    /// `negatives / valued`, 0 to 1; `None` when nothing is valued.
    pub negative_share: Option<f64>,
}

/// Score aggregates: count, mean and share of negatives per name and key, by key (scores
/// without a key last), then name.
pub async fn score_stats(
    db: impl PgExecutor<'_>,
    q: &ScoreStatsQuery,
) -> Result<Vec<ScoreStat>, sqlx::Error> {
    // The keys are looked up once per trace (and per scored span or message) of the scores in
    // range, not once per score: a score's trace may be of any day, so each lookup probes
    // every partition's key index, and a trace has several scores. Measured on 500,000 scores
    // of 100,000 traces over 30 days: by model 1.1 s for 30 days instead of 19 s.
    let (with, key, join) = match q.by {
        ScoreBy::Name => ("", "NULL::text", ""),
        ScoreBy::Model => (
            ", tr AS (SELECT DISTINCT trace_id FROM s), \
             sp AS (SELECT sp.trace_id, sp.id, sp.model FROM tr \
                    JOIN observability.spans sp ON sp.trace_id = tr.trace_id \
                    WHERE sp.model IS NOT NULL), \
             first AS (SELECT trace_id, min(model) AS model FROM sp GROUP BY 1)",
            "coalesce(own.model, f.model)",
            "LEFT JOIN sp own ON own.trace_id = s.trace_id AND own.id = s.span_id \
             LEFT JOIN first f ON f.trace_id = s.trace_id",
        ),
        ScoreBy::Kb => (
            ", tr AS (SELECT DISTINCT trace_id FROM s), \
             tk AS (SELECT DISTINCT ON (t.id) t.id, t.kb_id FROM tr \
                    JOIN observability.traces t ON t.id = tr.trace_id), \
             ms AS (SELECT DISTINCT trace_id, message_id FROM s WHERE message_id IS NOT NULL), \
             mk AS (SELECT DISTINCT ON (cm.id) cm.trace_id, cm.id, cm.kb_id FROM ms \
                    JOIN observability.chat_messages cm \
                      ON cm.trace_id = ms.trace_id AND cm.id = ms.message_id)",
            "coalesce(mk.kb_id, tk.kb_id)::text",
            "LEFT JOIN mk ON mk.trace_id = s.trace_id AND mk.id = s.message_id \
             LEFT JOIN tk ON tk.id = s.trace_id",
        ),
        ScoreBy::Day => (
            "",
            "to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            "",
        ),
    };
    // The value as a number for the mean, and whether it is negative; NULL for a label.
    let num = "CASE s.data_type WHEN 'numeric' THEN s.value_numeric \
                WHEN 'boolean' THEN s.value_bool::int::float8 END";
    let neg = "CASE s.data_type WHEN 'numeric' THEN s.value_numeric <= 0 \
                WHEN 'boolean' THEN NOT s.value_bool END";
    let sql = format!(
        "WITH s AS (SELECT * FROM observability.scores \
                    WHERE created_at >= $1 AND created_at < $2 \
                      AND ($3::text IS NULL OR name = $3)){with} \
         SELECT {key} AS key, s.name, count(*) AS count, count({num}) AS valued, \
                avg({num}) AS mean, count(*) FILTER (WHERE {neg}) AS negatives, \
                (count(*) FILTER (WHERE {neg}))::float8 / nullif(count({num}), 0) \
                  AS negative_share \
         FROM s {join} \
         GROUP BY 1, 2 ORDER BY 1 NULLS LAST, 2"
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(q.from)
        .bind(q.to)
        .bind(q.name.as_deref())
        .fetch_all(db)
        .await
}
