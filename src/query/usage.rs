//! Usage statistics: calls, tokens, cost, latency percentiles and error rate, by model,
//! span type, knowledge base or user, per hour, day or week.
//!
//! Whole hours that the usage rollups hold (see [`crate::rollups`]) are read from them; the
//! rest of the range (its partial first and last hours, the current hour, hours with rows
//! written since their rollup) from the raw rows. Counts, tokens, cost and error rates are the
//! same either way; a percentile of a bucket that used the rollups is read from their latency
//! histograms, within 1% of the exact one.
//!
//! With [`UsageQuery::top`], the other keys' row of a rolled-up bucket by knowledge base or
//! user is the bucket's total (every trace) less the top keys and the traces without a key,
//! so only the top keys' rollup rows are read.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, DurationRound, TimeDelta, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{Acquire, AssertSqlSafe, PgConnection, PgExecutor, Postgres};
use uuid::Uuid;

use crate::rollups;

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
    /// The type of each span (`llm`, `retrieval`, `embedding`...): a call is one span.
    SpanType,
}

impl UsageBy {
    /// The raw table, the key column, the filter and the cost column of this grouping.
    fn raw(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            UsageBy::Model => ("spans", "model", "model IS NOT NULL", "cost_usd"),
            UsageBy::SpanType => ("spans", "span_type", "true", "cost_usd"),
            UsageBy::Kb => ("traces", "kb_id", "true", "total_cost_usd"),
            UsageBy::User => ("traces", "user_id", "true", "total_cost_usd"),
        }
    }

    /// The rollup rows' `dim`, key column and filter of this grouping.
    fn rollup(self) -> (&'static str, &'static str, &'static str) {
        match self {
            UsageBy::Model => ("span", "model", "model IS NOT NULL"),
            UsageBy::SpanType => ("span", "span_type", "true"),
            UsageBy::Kb => ("kb", "key", "true"),
            UsageBy::User => ("user", "key", "true"),
        }
    }
}

/// The key and `others` expressions of a select list for key column `col`: the key and
/// `false`, or, with the top keys in parameter `top` (an array of the column's type), the key
/// only when it is among them, and `true` for the keys outside (which then group together).
fn key_exprs(col: &str, top: Option<&str>) -> (String, String) {
    match top {
        None => (col.to_owned(), "false".to_owned()),
        Some(top) => (
            format!("CASE WHEN {col} = ANY ({top}) THEN {col} END"),
            format!("({col} IS NOT NULL AND NOT {col} = ANY ({top}))"),
        ),
    }
}

/// The top keys, in the key column's own type: compared with each row without a cast.
#[derive(Debug)]
enum Top {
    Text(Vec<String>),
    Uuid(Vec<Uuid>),
}

impl Top {
    fn new(by: UsageBy, keys: Vec<String>) -> Self {
        match by {
            UsageBy::Model | UsageBy::SpanType => Top::Text(keys),
            // The keys are the text of stored uuids: each parses.
            UsageBy::Kb | UsageBy::User => Top::Uuid(
                keys.iter()
                    .filter_map(|k| Uuid::parse_str(k).ok())
                    .collect(),
            ),
        }
    }

    /// Binds the keys as the query's next parameter.
    fn bind<'q, O>(
        &'q self,
        q: QueryAs<'q, Postgres, O, PgArguments>,
    ) -> QueryAs<'q, Postgres, O, PgArguments> {
        match self {
            Top::Text(v) => q.bind(v),
            Top::Uuid(v) => q.bind(v),
        }
    }
}

/// `(col >= $a AND col < $b) OR ...` for `ranges` ranges of column `col`, numbering the
/// parameters from `first`. Literal ranges, so that the planner prunes the partitions outside
/// them and reads each through the time index.
fn within_sql(col: &str, ranges: usize, first: usize) -> String {
    (0..ranges)
        .map(|i| {
            format!(
                "({col} >= ${} AND {col} < ${})",
                first + 2 * i,
                first + 2 * i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Binds the bounds of `ranges` as the query's next parameters.
fn bind_ranges<'q, O>(
    mut q: QueryAs<'q, Postgres, O, PgArguments>,
    ranges: &[(DateTime<Utc>, DateTime<Utc>)],
) -> QueryAs<'q, Postgres, O, PgArguments> {
    for (a, b) in ranges {
        q = q.bind(*a).bind(*b);
    }
    q
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
    /// Only the `top` keys with the highest cost over the whole range (then the most calls,
    /// then the first in byte order) get rows of their own; the calls of every other key are
    /// summed into one row per bucket with [`Usage::others`] set. `None`: every key. What a
    /// dashboard shows of a grouping with many keys (users): the result stays a few rows per
    /// bucket however many keys the range holds.
    pub top: Option<usize>,
}

impl UsageQuery {
    /// This query, with only the `n` top keys in rows of their own (see [`UsageQuery::top`]).
    #[must_use]
    pub fn top(mut self, n: usize) -> Self {
        self.top = Some(n);
        self
    }

    /// The last 24 hours, per hour.
    pub fn last_24h(by: UsageBy) -> Self {
        let to = Utc::now();
        Self {
            by,
            bucket: Bucket::Hour,
            from: to - TimeDelta::hours(24),
            to,
            top: None,
        }
    }
}

/// Usage of one key in one bucket.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[non_exhaustive]
pub struct Usage {
    /// Start of the bucket.
    pub bucket: DateTime<Utc>,
    /// The model, knowledge base or user (as text); `None` for calls without one, and for the
    /// row of the other keys.
    pub key: Option<String>,
    /// This row sums the keys outside the query's [`top`](UsageQuery::top) (its `key` is
    /// `None`); it comes after the calls without a key.
    pub others: bool,
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

/// Usage by model, span type, knowledge base or user, per bucket: ordered by bucket (oldest
/// first), then by key in byte order, calls without a key last.
///
/// Reads the hourly rollups for the whole hours they hold and the raw rows for the rest (see
/// the [usage rollups](crate::rollups)); [`usage_raw`] reads only the raw rows.
pub async fn usage<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    q: &UsageQuery,
) -> Result<Vec<Usage>, sqlx::Error> {
    let mut conn = db.acquire().await?;
    let conn: &mut PgConnection = &mut conn;
    // Whole days from the daily rollups: for the data when the buckets are days or weeks (a UTC
    // day lies in one of each), and for ranking the top keys whatever the buckets.
    let whole_days = if q.top.is_some() || matches!(q.bucket, Bucket::Day | Bucket::Week) {
        covered_days(&mut *conn, q.from, q.to).await?
    } else {
        Vec::new()
    };
    // By user, an hour's rollup holds about one trace per user: on 10M spans reading every
    // user's rows was slower than the raw traces (150 ms against 116 ms over 24 h), so users
    // read the raw rows for what the days do not cover, unless only the top users' rows are
    // read (see `rollup_part`).
    let hours = if q.by == UsageBy::User && q.top.is_none() {
        Vec::new()
    } else {
        covered_hours(&mut *conn, q.from, q.to).await?
    };
    let data_days: &[DateTime<Utc>] = if matches!(q.bucket, Bucket::Day | Bucket::Week) {
        &whole_days
    } else {
        &[]
    };
    let (data_hours, raw) = split(q, data_days, &hours);
    let levels = [Level::days(data_days), Level::hours(&data_hours)];
    let top = match q.top {
        Some(n) => {
            // Ranked over the coarsest rows that cover the range: the whole weeks (see
            // below), the other whole days, the other rolled-up hours, the raw rows for the
            // rest.
            let (rank_hours, rank_raw) = split(q, &whole_days, &hours);
            // By knowledge base or user, whole weeks from the weekly ranking rows: a month of
            // users is 40,000 rows there against 300,000 daily ones.
            let weeks = if matches!(q.by, UsageBy::Kb | UsageBy::User) {
                covered_weeks(&mut *conn, &whole_days).await?
            } else {
                Vec::new()
            };
            let rank_days: Vec<DateTime<Utc>> = whole_days
                .iter()
                .copied()
                .filter(|d| !weeks.contains(&week_of(*d)))
                .collect();
            let rank = [
                Level::weeks(&weeks),
                Level::days(&rank_days),
                Level::hours(&rank_hours),
            ];
            let keys = top_keys(&mut *conn, q, &rank, &rank_raw, n).await?;
            Some(Top::new(q.by, keys))
        }
        None => None,
    };
    let top = top.as_ref();
    let mut acc: BTreeMap<Slot, Acc> = BTreeMap::new();
    for level in &levels {
        if !level.times.is_empty() {
            rollup_part(&mut *conn, q, level, top, &mut acc).await?;
        }
    }
    if !raw.is_empty() {
        raw_part(&mut *conn, q, &raw, top, &mut acc).await?;
    }
    Ok(acc
        .into_iter()
        // A bucket whose other keys' row came out of a subtraction as nothing has none.
        .filter(|(_, a)| a.calls > 0)
        .map(|((bucket, key, others), a)| a.finish(bucket, key.0, others))
        .collect())
}

/// A rollup table, the column of its rows' start times, and the start times a query reads
/// from it (sorted).
#[derive(Debug)]
struct Level<'a> {
    table: &'static str,
    column: &'static str,
    times: &'a [DateTime<Utc>],
    /// The time a row covers (an hour, a day).
    unit: TimeDelta,
}

impl<'a> Level<'a> {
    /// Weekly ranking rows: only a key's cost and calls (see `top_keys`).
    fn weeks(times: &'a [DateTime<Utc>]) -> Self {
        Level {
            table: "usage_weekly",
            column: "week",
            times,
            unit: TimeDelta::days(7),
        }
    }

    fn days(times: &'a [DateTime<Utc>]) -> Self {
        Level {
            table: "usage_daily",
            column: "day",
            times,
            unit: TimeDelta::days(1),
        }
    }

    fn hours(times: &'a [DateTime<Utc>]) -> Self {
        Level {
            table: "usage_hourly",
            column: "hour",
            times,
            unit: TimeDelta::hours(1),
        }
    }

    /// The level's times as ranges of consecutive ones: read through the time index, where
    /// `[first, last]` with a list would read (and throw away) every row in between.
    fn ranges(&self) -> Ranges {
        let mut out: Ranges = Vec::new();
        for &t in self.times {
            match out.last_mut() {
                Some((_, end)) if *end == t => *end = t + self.unit,
                _ => out.push((t, t + self.unit)),
            }
        }
        out
    }
}

/// The range of `q` read from `days`, the `hours` outside them, and the raw rows: the hours
/// to read and the raw ranges.
fn split(
    q: &UsageQuery,
    days: &[DateTime<Utc>],
    hours: &[DateTime<Utc>],
) -> (Vec<DateTime<Utc>>, Ranges) {
    let mut hours = hours.to_vec();
    hours.retain(|h| !days.contains(&day_of(*h)));
    let mut rolled: Vec<DateTime<Utc>> = days
        .iter()
        .flat_map(|d| (0..24).map(move |i| *d + TimeDelta::hours(i)))
        .chain(hours.iter().copied())
        .collect();
    rolled.sort_unstable();
    let raw = uncovered(q.from, q.to, &rolled);
    (hours, raw)
}

/// Time ranges, `[from, to)` each.
type Ranges = Vec<(DateTime<Utc>, DateTime<Utc>)>;

/// The UTC day an hour lies in.
fn day_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::days(1)).unwrap_or(t)
}

/// The UTC week (from Monday) a time lies in, as the weekly rollups' `date_trunc('week', ..)`.
fn week_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let day = day_of(t);
    day - TimeDelta::days(i64::from(day.weekday().num_days_from_monday()))
}

/// The weeks whose 7 days are all in `days` (sorted): the candidates for the weekly rows.
fn whole_weeks(days: &[DateTime<Utc>]) -> Vec<DateTime<Utc>> {
    let mut weeks: Vec<DateTime<Utc>> = days.iter().map(|d| week_of(*d)).collect();
    weeks.dedup();
    weeks.retain(|w| (0..7).all(|i| days.binary_search(&(*w + TimeDelta::days(i))).is_ok()));
    weeks
}

/// Where a row of the result sums into: its bucket, key and `others` flag (in result order).
type Slot = (DateTime<Utc>, Key, bool);

/// The `n` keys of the range with the highest cost, then the most calls, then first in byte
/// order: from the rollups for the `levels`' times and the raw rows for the `raw` ranges.
async fn top_keys(
    conn: &mut PgConnection,
    q: &UsageQuery,
    levels: &[Level<'_>],
    raw: &[(DateTime<Utc>, DateTime<Utc>)],
    n: usize,
) -> Result<Vec<String>, sqlx::Error> {
    let (dim, rcol, rfilter) = q.by.rollup();
    let (table, col, filter, cost) = q.by.raw();
    // Each level's ranges, then the raw ones, numbered after the limit and the dim. The rows
    // of every part are summed in one grouping by the key as stored: grouped part by part,
    // the parts ran one per worker and the month of daily rows on one core (170 against
    // 130 ms for users over 30 days).
    let mut ranges: Ranges = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    for l in levels {
        let r = l.ranges();
        if r.is_empty() {
            continue;
        }
        parts.push(format!(
            "SELECT {rcol} AS k, cost_usd AS cost, calls \
             FROM observability.{t} \
             WHERE dim = $2 AND {rfilter} AND {rcol} IS NOT NULL AND ({within})",
            t = l.table,
            within = within_sql(l.column, r.len(), 3 + 2 * ranges.len()),
        ));
        ranges.extend(r);
    }
    if !raw.is_empty() {
        parts.push(format!(
            "SELECT {col} AS k, coalesce({cost}, 0) AS cost, 1::int8 AS calls \
             FROM observability.{table} WHERE {filter} AND {col} IS NOT NULL AND ({})",
            within_sql("started_at", raw.len(), 3 + 2 * ranges.len())
        ));
        ranges.extend_from_slice(raw);
    }
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT k::text FROM ({}) x GROUP BY k \
         ORDER BY sum(cost) DESC, sum(calls) DESC, k::text COLLATE \"C\" LIMIT $1",
        parts.join(" UNION ALL ")
    );
    let query = sqlx::query_as::<_, (String,)>(AssertSqlSafe(sql))
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(dim);
    // Unnamed: prepared and cached, its sixth run on a connection would also be planned
    // generically (every partition of four tables, no pruning) to compare the costs, 60 ms
    // once for a plan the server then drops (80 against 140 ms in psql).
    let keys = bind_ranges(query, &ranges)
        .persistent(false)
        .fetch_all(conn)
        .await?;
    Ok(keys.into_iter().map(|(k,)| k).collect())
}

/// Usage as [`usage`] gives it, from the raw spans and traces only (never the rollups), with
/// exact percentiles: the reference the rollups are checked against, and the path for a
/// database whose rollups are not kept.
pub async fn usage_raw(db: impl PgExecutor<'_>, q: &UsageQuery) -> Result<Vec<Usage>, sqlx::Error> {
    let (table, col, filter, cost) = q.by.raw();
    // Sums of bigint are numeric: cut back to bigint, saturating rather than failing.
    let sum = |c: &str| format!("least(coalesce(sum({c}), 0), 9223372036854775807)::bigint");
    let range = "started_at >= $2 AND started_at < $3";
    // The top keys in the same statement (`LIMIT NULL` when every key is wanted).
    let sql = format!(
        "WITH top AS ( \
             SELECT {col} AS k FROM observability.{table} \
             WHERE {filter} AND {range} AND {col} IS NOT NULL GROUP BY {col} \
             ORDER BY coalesce(sum({cost}), 0) DESC, count(*) DESC, {col}::text COLLATE \"C\" \
             LIMIT $4) \
         SELECT date_trunc($1, started_at, 'UTC') AS bucket, \
                CASE WHEN {col} IN (SELECT k FROM top) THEN {col}::text END AS key, \
                ({col} IS NOT NULL AND {col} NOT IN (SELECT k FROM top)) AS others, \
                count(*) AS calls, {p} AS prompt_tokens, {c} AS completion_tokens, \
                coalesce(sum({cost}), 0)::numeric AS cost_usd, \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms, \
                percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms, \
                avg((status = 'error')::int)::float8 AS error_rate \
         FROM observability.{table} \
         WHERE {filter} AND {range} \
         GROUP BY 1, 2, 3",
        p = sum("prompt_tokens"),
        c = sum("completion_tokens"),
    );
    let mut rows: Vec<Usage> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(q.bucket.as_str())
        .bind(q.from)
        .bind(q.to)
        .bind(q.top.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .fetch_all(db)
        .await?;
    rows.sort_by(|a, b| {
        a.bucket
            .cmp(&b.bucket)
            .then_with(|| Key(a.key.clone()).cmp(&Key(b.key.clone())))
            .then(a.others.cmp(&b.others))
    });
    Ok(rows)
}

/// A usage key, ordered in byte order with `None` last (as `ORDER BY key` puts NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key(Option<String>);

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One bucket and key being summed from rollup and raw rows.
#[derive(Debug, Default)]
struct Acc {
    calls: i64,
    errors: i64,
    prompt: i128,
    completion: i128,
    cost: Decimal,
    /// Latency histogram: bucket to count.
    hist: BTreeMap<i16, i64>,
    /// Exact percentiles, when every row of the bucket came from the raw rows.
    exact: Option<(Option<f64>, Option<f64>)>,
    from_rollups: bool,
}

impl Acc {
    /// Adds (`sign` 1) or takes away (`sign` -1) a row's sums.
    fn add(&mut self, sign: i64, calls: i64, errors: i64, p: i128, c: i128, cost: Decimal) {
        self.calls = self.calls.saturating_add(sign.saturating_mul(calls));
        self.errors = self.errors.saturating_add(sign.saturating_mul(errors));
        self.prompt += i128::from(sign) * p;
        self.completion += i128::from(sign) * c;
        self.cost += Decimal::from(sign) * cost;
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) a rollup row's histogram.
    fn add_histogram(&mut self, sign: i64, idx: &[i16], n: &[i64]) {
        for (b, n) in idx.iter().zip(n) {
            let e = self.hist.entry(*b).or_default();
            *e = e.saturating_add(sign.saturating_mul(*n));
        }
    }

    fn finish(self, bucket: DateTime<Utc>, key: Option<String>, others: bool) -> Usage {
        let sat = |v: i128| i64::try_from(v.clamp(0, i128::from(i64::MAX))).unwrap_or(i64::MAX);
        let (p50_ms, p95_ms) = match self.exact {
            Some(exact) if !self.from_rollups => exact,
            _ => {
                // Buckets emptied by a subtraction (the other keys') hold nothing.
                let hist: Vec<(i16, i64)> = self.hist.into_iter().filter(|&(_, n)| n > 0).collect();
                (
                    rollups::histogram_quantile(&hist, 0.5),
                    rollups::histogram_quantile(&hist, 0.95),
                )
            }
        };
        Usage {
            bucket,
            key,
            others,
            calls: self.calls,
            prompt_tokens: sat(self.prompt),
            completion_tokens: sat(self.completion),
            cost_usd: self.cost,
            p50_ms,
            p95_ms,
            error_rate: if self.calls > 0 {
                self.errors as f64 / self.calls as f64
            } else {
                0.0
            },
        }
    }
}

/// The start of the first whole `unit` (an hour, a UTC day) inside `[from, to)`, if one fits.
fn first_whole(from: DateTime<Utc>, to: DateTime<Utc>, unit: TimeDelta) -> Option<DateTime<Utc>> {
    let down = from.duration_trunc(unit).ok()?;
    let first = if down == from { from } else { down + unit };
    (first + unit <= to).then_some(first)
}

/// The whole hours of `[from, to)` whose rollups are current: recomputed, and not marked
/// dirty since.
async fn covered_hours(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let Some(first) = first_whole(from, to, TimeDelta::hours(1)) else {
        return Ok(Vec::new());
    };
    sqlx::query_scalar(
        "SELECT r.hour FROM observability.usage_rollup_hours r \
         WHERE r.hour >= $1 AND r.hour + interval '1 hour' <= $2 \
           AND NOT EXISTS (SELECT 1 FROM observability.usage_dirty d WHERE d.hour = r.hour) \
         ORDER BY r.hour",
    )
    .bind(first)
    .bind(to)
    .fetch_all(conn)
    .await
}

/// The whole UTC days of `[from, to)` whose daily rollups are current: merged when their 24
/// hours were recomputed and clean, none of those recomputed or marked dirty since.
async fn covered_days(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let Some(first) = first_whole(from, to, TimeDelta::days(1)) else {
        return Ok(Vec::new());
    };
    sqlx::query_scalar(
        "SELECT d.day FROM observability.usage_rollup_days d \
         CROSS JOIN LATERAL ( \
             SELECT count(*) AS n, sum(r.version) AS v FROM observability.usage_rollup_hours r \
             WHERE r.hour >= d.day AND r.hour < d.day + interval '1 day') h \
         WHERE d.day >= $1 AND d.day + interval '1 day' <= $2 \
           AND h.n = 24 AND h.v = d.hours_version \
           AND NOT EXISTS (SELECT 1 FROM observability.usage_dirty x \
                           WHERE x.hour >= d.day AND x.hour < d.day + interval '1 day') \
         ORDER BY d.day",
    )
    .bind(first)
    .bind(to)
    .fetch_all(conn)
    .await
}

/// The weeks of `days` (the current whole days of a range, sorted) whose weekly ranking rows
/// are current: merged from those 7 days as they are now, by the sum of their versions.
async fn covered_weeks(
    conn: &mut PgConnection,
    days: &[DateTime<Utc>],
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let candidates = whole_weeks(days);
    if candidates.is_empty() {
        return Ok(candidates);
    }
    sqlx::query_scalar(
        "SELECT w.week FROM observability.usage_rollup_weeks w \
         WHERE w.week = ANY ($1) \
           AND w.days_version = (SELECT sum(d.hours_version) \
                                 FROM observability.usage_rollup_days d \
                                 WHERE d.day >= w.week AND d.day < w.week + interval '7 days') \
         ORDER BY w.week",
    )
    .bind(candidates)
    .fetch_all(conn)
    .await
}

/// `[from, to)` less the `covered` hours (sorted): the ranges read from the raw rows.
fn uncovered(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    covered: &[DateTime<Utc>],
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut cur = from;
    for &h in covered {
        if h > cur {
            out.push((cur, h));
        }
        cur = cur.max(h + TimeDelta::hours(1));
    }
    if cur < to {
        out.push((cur, to));
    }
    out
}

/// A bucket and key's sums from the rollups: calls, errors, prompt and completion tokens, cost.
type RollupSums = (
    DateTime<Utc>,
    Option<String>,
    bool,
    i64,
    i64,
    Decimal,
    Decimal,
    Decimal,
);

/// One rollup row's latency histogram, with its bucket and key.
type RollupHistogram = (DateTime<Utc>, Option<String>, bool, Vec<i16>, Vec<i64>);

/// Adds the rollup rows of a level's times.
///
/// With top keys by knowledge base or user, the row of the other keys is not summed from
/// their rows (ten thousand users' rows an hour, histograms and all) but taken as the
/// level's `total` rows (every trace) less the top keys' rows and those without a key:
/// counts, tokens, cost and histogram counts subtract exactly.
async fn rollup_part(
    conn: &mut PgConnection,
    q: &UsageQuery,
    level: &Level<'_>,
    top: Option<&Top>,
    acc: &mut BTreeMap<Slot, Acc>,
) -> Result<(), sqlx::Error> {
    let (dim, col, filter) = q.by.rollup();
    let ranges = level.ranges();
    if ranges.is_empty() {
        return Ok(());
    }
    // The top keys after the ranges.
    let top_param = format!("${}", 3 + 2 * ranges.len());
    let subtract = top.is_some() && matches!(q.by, UsageBy::Kb | UsageBy::User);
    // The rows read, their key and whether they count for the others: with `subtract`, the
    // top keys', the keyless and the totals (flagged, to be less the others).
    let (rows_filter, key, others) = if subtract {
        (
            format!(
                "((dim = $2 AND ({col} = ANY ({top_param}) OR {col} IS NULL)) OR dim = 'total')"
            ),
            col.to_owned(),
            "(dim = 'total')".to_owned(),
        )
    } else {
        let (key, others) = key_exprs(col, top.map(|_| top_param.as_str()));
        (format!("dim = $2 AND {filter}"), key, others)
    };
    let (table, t) = (level.table, level.column);
    let rows_of = format!(
        "FROM observability.{table} WHERE {rows_filter} AND ({})",
        within_sql(t, ranges.len(), 3)
    );
    let rows = sqlx::query_as(AssertSqlSafe(format!(
        // Grouped by the key as stored (a uuid hashes faster than its text), cast after.
        "SELECT b, k::text, o, calls, errors, p, c, cost FROM ( \
             SELECT date_trunc($1, {t}, 'UTC') AS b, {key} AS k, {others} AS o, \
                    sum(calls)::int8 AS calls, sum(errors)::int8 AS errors, \
                    sum(prompt_tokens) AS p, sum(completion_tokens) AS c, sum(cost_usd) AS cost \
             {rows_of} GROUP BY 1, 2, 3) s"
    )))
    .bind(q.bucket.as_str())
    .bind(dim);
    let rows = bind_ranges(rows, &ranges);
    let rows: Vec<RollupSums> = match top {
        Some(top) => top.bind(rows),
        None => rows,
    }
    .fetch_all(&mut *conn)
    .await?;
    for (bucket, k, o, calls, errors, p, c, cost) in rows {
        let (p, c) = (decimal_i128(p), decimal_i128(c));
        if subtract && !o {
            let a = acc.entry((bucket, Key(None), true)).or_default();
            a.add(-1, calls, errors, p, c, cost);
            a.from_rollups = true;
        }
        let a = acc.entry((bucket, Key(k), o)).or_default();
        a.add(1, calls, errors, p, c, cost);
        a.from_rollups = true;
    }
    // The histograms as stored, merged here: most rows hold a few buckets, and merging them
    // in SQL (unnest, then group) cost several times the scan.
    let hist = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT date_trunc($1, {t}, 'UTC'), ({key})::text, {others}, lat_idx, lat_n \
             {rows_of} AND lat_idx <> '{{}}'"
    )))
    .bind(q.bucket.as_str())
    .bind(dim);
    let hist = bind_ranges(hist, &ranges);
    let hist: Vec<RollupHistogram> = match top {
        Some(top) => top.bind(hist),
        None => hist,
    }
    .fetch_all(&mut *conn)
    .await?;
    for (bucket, k, o, idx, n) in hist {
        if subtract && !o {
            acc.entry((bucket, Key(None), true))
                .or_default()
                .add_histogram(-1, &idx, &n);
        }
        acc.entry((bucket, Key(k), o))
            .or_default()
            .add_histogram(1, &idx, &n);
    }
    Ok(())
}

/// Adds the raw rows of the `ranges`: their sums and exact percentiles, and their latency
/// histogram for the buckets that also have rollup rows.
async fn raw_part(
    conn: &mut PgConnection,
    q: &UsageQuery,
    ranges: &[(DateTime<Utc>, DateTime<Utc>)],
    top: Option<&Top>,
    acc: &mut BTreeMap<Slot, Acc>,
) -> Result<(), sqlx::Error> {
    let (table, col, filter, cost) = q.by.raw();
    // The top list after the ranges' parameters.
    let top_param = format!("${}", 2 + 2 * ranges.len());
    let (key, others) = key_exprs(col, top.map(|_| top_param.as_str()));
    // The ranges as literal conditions (a few: the edges and the current hour, usually), so
    // the planner prunes the partitions outside them.
    let within = within_sql("started_at", ranges.len(), 2);
    let sums = format!(
        "SELECT date_trunc($1, started_at, 'UTC'), ({key})::text, {others}, count(*), \
                count(*) FILTER (WHERE status = 'error'), \
                coalesce(sum(prompt_tokens), 0)::numeric, \
                coalesce(sum(completion_tokens), 0)::numeric, coalesce(sum({cost}), 0)::numeric, \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), \
                percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) \
         FROM observability.{table} WHERE {filter} AND ({within}) GROUP BY 1, 2, 3"
    );
    type SumRow = (
        DateTime<Utc>,
        Option<String>,
        bool,
        i64,
        i64,
        Decimal,
        Decimal,
        Decimal,
        Option<f64>,
        Option<f64>,
    );
    let query = sqlx::query_as::<_, SumRow>(AssertSqlSafe(sums)).bind(q.bucket.as_str());
    let mut query = bind_ranges(query, ranges);
    if let Some(top) = top {
        query = top.bind(query);
    }
    let mut mixed = false;
    for (bucket, k, o, calls, errors, p, c, cost, p50, p95) in query.fetch_all(&mut *conn).await? {
        let a = acc.entry((bucket, Key(k), o)).or_default();
        mixed |= a.from_rollups;
        a.add(1, calls, errors, decimal_i128(p), decimal_i128(c), cost);
        a.exact = Some((p50, p95));
    }
    if !mixed {
        return Ok(());
    }
    let hist = format!(
        "SELECT date_trunc($1, started_at, 'UTC'), ({key})::text, {others}, \
                observability.latency_bucket(duration_ms), count(*) \
         FROM observability.{table} \
         WHERE {filter} AND duration_ms IS NOT NULL AND ({within}) GROUP BY 1, 2, 3, 4"
    );
    let query =
        sqlx::query_as::<_, (DateTime<Utc>, Option<String>, bool, i16, i64)>(AssertSqlSafe(hist))
            .bind(q.bucket.as_str());
    let mut query = bind_ranges(query, ranges);
    if let Some(top) = top {
        query = top.bind(query);
    }
    for (bucket, k, o, b, n) in query.fetch_all(&mut *conn).await? {
        let a = acc.entry((bucket, Key(k), o)).or_default();
        if a.from_rollups {
            *a.hist.entry(b).or_default() += n;
        }
    }
    Ok(())
}

/// A whole-number sum as `i128` (sums of `bigint` columns: no fraction, far below `i128`'s
/// range), saturating should a value ever exceed it.
fn decimal_i128(d: Decimal) -> i128 {
    use rust_decimal::prelude::ToPrimitive;
    d.trunc().to_i128().unwrap_or(if d.is_sign_negative() {
        i128::MIN
    } else {
        i128::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(h * 3600, 0).unwrap_or_default()
    }

    #[test]
    fn the_raw_ranges_are_the_range_less_the_covered_hours() {
        let from = t(10) + TimeDelta::minutes(20);
        let to = t(15) + TimeDelta::minutes(5);
        // Hours 11, 12 and 14 rolled up; 13 dirty.
        let r = uncovered(from, to, &[t(11), t(12), t(14)]);
        assert_eq!(r, vec![(from, t(11)), (t(13), t(14)), (t(15), to)]);
        assert_eq!(uncovered(t(1), t(3), &[t(1), t(2)]), vec![]);
        assert_eq!(uncovered(t(1), t(3), &[]), vec![(t(1), t(3))]);
    }

    #[test]
    fn weeks_start_on_monday_and_are_whole_only_with_their_seven_days() {
        let day = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
        // 2026-12-07 is a Monday.
        let monday = day(2026, 12, 7);
        assert_eq!(week_of(monday), monday);
        assert_eq!(week_of(day(2026, 12, 13) + TimeDelta::hours(23)), monday);
        assert_eq!(week_of(day(2026, 12, 6)), day(2026, 11, 30));
        let days: Vec<_> = (0..20)
            .map(|i| day(2026, 11, 29) + TimeDelta::days(i))
            .collect();
        // Sunday 29 Nov to Thursday 17 Dec: the weeks of 30 Nov and 7 Dec.
        assert_eq!(whole_weeks(&days), vec![day(2026, 11, 30), monday]);
        let gap: Vec<_> = days
            .iter()
            .copied()
            .filter(|d| *d != day(2026, 12, 9))
            .collect();
        assert_eq!(whole_weeks(&gap), vec![day(2026, 11, 30)]);
        assert!(whole_weeks(&days[2..8]).is_empty());
    }

    #[test]
    fn the_first_whole_unit_starts_on_its_boundary_and_must_fit() {
        let hour = TimeDelta::hours(1);
        assert_eq!(first_whole(t(3), t(4), hour), Some(t(3)));
        let late = t(3) + TimeDelta::minutes(1);
        assert_eq!(first_whole(late, t(5), hour), Some(t(4)));
        assert_eq!(first_whole(late, t(4) + TimeDelta::minutes(59), hour), None);
        assert_eq!(first_whole(t(1), t(48), TimeDelta::days(1)), Some(t(24)));
        assert_eq!(first_whole(t(1), t(47), TimeDelta::days(1)), None);
    }

    #[test]
    fn keys_sort_in_byte_order_with_none_last() {
        let mut keys = vec![Key(None), Key(Some("b".into())), Key(Some("B".into()))];
        keys.sort();
        assert_eq!(
            keys,
            vec![Key(Some("B".into())), Key(Some("b".into())), Key(None)]
        );
    }
}
