//! Usage statistics: calls, tokens, cost, latency percentiles and error rate, by model,
//! span type, knowledge base or user, per hour, day or week.
//!
//! Whole hours that the usage rollups hold (see [`crate::rollups`]) are read from them; the
//! rest of the range (its partial first and last hours, the current hour, hours with rows
//! written since their rollup) from the raw rows. Counts, tokens, cost and error rates are the
//! same either way; a percentile of a bucket that used the rollups is read from their latency
//! histograms, within 1% of the exact one.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rust_decimal::Decimal;
use sqlx::{Acquire, AssertSqlSafe, PgConnection, PgExecutor, Postgres};

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
    /// The raw table, the key, the filter and the cost column of this grouping.
    fn raw(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            UsageBy::Model => ("spans", "model", "model IS NOT NULL", "cost_usd"),
            UsageBy::SpanType => ("spans", "span_type", "true", "cost_usd"),
            UsageBy::Kb => ("traces", "kb_id::text", "true", "total_cost_usd"),
            UsageBy::User => ("traces", "user_id::text", "true", "total_cost_usd"),
        }
    }

    /// The rollup rows' `dim`, key and filter of this grouping.
    fn rollup(self) -> (&'static str, &'static str, &'static str) {
        match self {
            UsageBy::Model => ("span", "model", "model IS NOT NULL"),
            UsageBy::SpanType => ("span", "span_type", "true"),
            UsageBy::Kb => ("kb", "key", "true"),
            UsageBy::User => ("user", "key", "true"),
        }
    }
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
    // By user, an hour's rollup holds about one trace per user: on 10M spans reading it was
    // slower than the raw traces (150 ms against 116 ms over 24 h), so users read the raw rows.
    if q.by == UsageBy::User {
        return usage_raw(&mut *conn, q).await;
    }
    let covered = covered_hours(&mut *conn, q.from, q.to).await?;
    if covered.is_empty() {
        return usage_raw(&mut *conn, q).await;
    }
    let mut acc: BTreeMap<(DateTime<Utc>, Key), Acc> = BTreeMap::new();
    rollup_part(&mut *conn, q, &covered, &mut acc).await?;
    let raw = uncovered(q.from, q.to, &covered);
    if !raw.is_empty() {
        raw_part(&mut *conn, q, &raw, &mut acc).await?;
    }
    Ok(acc
        .into_iter()
        .map(|((bucket, key), a)| a.finish(bucket, key.0))
        .collect())
}

/// Usage as [`usage`] gives it, from the raw spans and traces only (never the rollups), with
/// exact percentiles: the reference the rollups are checked against, and the path for a
/// database whose rollups are not kept.
pub async fn usage_raw(db: impl PgExecutor<'_>, q: &UsageQuery) -> Result<Vec<Usage>, sqlx::Error> {
    let (table, key, filter, cost) = q.by.raw();
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
         GROUP BY 1, 2",
        p = sum("prompt_tokens"),
        c = sum("completion_tokens"),
    );
    let mut rows: Vec<Usage> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(q.bucket.as_str())
        .bind(q.from)
        .bind(q.to)
        .fetch_all(db)
        .await?;
    rows.sort_by(|a, b| {
        a.bucket
            .cmp(&b.bucket)
            .then_with(|| Key(a.key.clone()).cmp(&Key(b.key.clone())))
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
    fn finish(self, bucket: DateTime<Utc>, key: Option<String>) -> Usage {
        let sat = |v: i128| i64::try_from(v.clamp(0, i128::from(i64::MAX))).unwrap_or(i64::MAX);
        let (p50_ms, p95_ms) = match self.exact {
            Some(exact) if !self.from_rollups => exact,
            _ => {
                let hist: Vec<(i16, i64)> = self.hist.into_iter().collect();
                (
                    rollups::histogram_quantile(&hist, 0.5),
                    rollups::histogram_quantile(&hist, 0.95),
                )
            }
        };
        Usage {
            bucket,
            key,
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

/// The whole hours of `[from, to)` whose rollups are current: recomputed, and not marked
/// dirty since.
async fn covered_hours(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let hour = TimeDelta::hours(1);
    let Ok(down) = from.duration_trunc(hour) else {
        return Ok(Vec::new());
    };
    let first = if down == from { from } else { down + hour };
    if first + hour > to {
        return Ok(Vec::new());
    }
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
    i64,
    i64,
    Decimal,
    Decimal,
    Decimal,
);

/// One rollup row's latency histogram, with its bucket and key.
type RollupHistogram = (DateTime<Utc>, Option<String>, Vec<i16>, Vec<i64>);

/// Adds the rollup rows of the `covered` hours.
async fn rollup_part(
    conn: &mut PgConnection,
    q: &UsageQuery,
    covered: &[DateTime<Utc>],
    acc: &mut BTreeMap<(DateTime<Utc>, Key), Acc>,
) -> Result<(), sqlx::Error> {
    let (dim, key, filter) = q.by.rollup();
    let (Some(&lo), Some(&hi)) = (covered.first(), covered.last()) else {
        return Ok(());
    };
    // The range as well as the list: the range prunes partitions, the list picks the hours.
    let rows: Vec<RollupSums> = sqlx::query_as(AssertSqlSafe(format!(
        // Grouped by the key as stored (a uuid hashes faster than its text), cast after.
        "SELECT b, k::text, calls, errors, p, c, cost FROM ( \
             SELECT date_trunc($1, hour, 'UTC') AS b, {key} AS k, sum(calls)::int8 AS calls, \
                    sum(errors)::int8 AS errors, sum(prompt_tokens) AS p, \
                    sum(completion_tokens) AS c, sum(cost_usd) AS cost \
             FROM observability.usage_hourly \
             WHERE dim = $2 AND {filter} AND hour >= $3 AND hour <= $4 \
             AND hour IN (SELECT unnest($5::timestamptz[])) \
             GROUP BY 1, 2) s"
    )))
    .bind(q.bucket.as_str())
    .bind(dim)
    .bind(lo)
    .bind(hi)
    .bind(covered)
    .fetch_all(&mut *conn)
    .await?;
    for (bucket, k, calls, errors, p, c, cost) in rows {
        let a = acc.entry((bucket, Key(k))).or_default();
        a.calls += calls;
        a.errors += errors;
        a.prompt += decimal_i128(p);
        a.completion += decimal_i128(c);
        a.cost += cost;
        a.from_rollups = true;
    }
    // The histograms as stored, merged here: most rows hold a few buckets, and merging them
    // in SQL (unnest, then group) cost several times the scan.
    let hist: Vec<RollupHistogram> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT date_trunc($1, hour, 'UTC'), {key}::text, lat_idx, lat_n \
             FROM observability.usage_hourly \
             WHERE dim = $2 AND {filter} AND hour >= $3 AND hour <= $4 \
             AND hour IN (SELECT unnest($5::timestamptz[])) AND lat_idx <> '{{}}'"
    )))
    .bind(q.bucket.as_str())
    .bind(dim)
    .bind(lo)
    .bind(hi)
    .bind(covered)
    .fetch_all(&mut *conn)
    .await?;
    for (bucket, k, idx, n) in hist {
        let h = &mut acc.entry((bucket, Key(k))).or_default().hist;
        for (b, n) in idx.into_iter().zip(n) {
            *h.entry(b).or_default() += n;
        }
    }
    Ok(())
}

/// Adds the raw rows of the `ranges`: their sums and exact percentiles, and their latency
/// histogram for the buckets that also have rollup rows.
async fn raw_part(
    conn: &mut PgConnection,
    q: &UsageQuery,
    ranges: &[(DateTime<Utc>, DateTime<Utc>)],
    acc: &mut BTreeMap<(DateTime<Utc>, Key), Acc>,
) -> Result<(), sqlx::Error> {
    let (table, key, filter, cost) = q.by.raw();
    // The ranges as literal conditions (a few: the edges and the current hour, usually), so
    // the planner prunes the partitions outside them.
    let within = (0..ranges.len())
        .map(|i| {
            format!(
                "(started_at >= ${} AND started_at < ${})",
                2 * i + 2,
                2 * i + 3
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let sums = format!(
        "SELECT date_trunc($1, started_at, 'UTC'), {key}, count(*), \
                count(*) FILTER (WHERE status = 'error'), \
                coalesce(sum(prompt_tokens), 0)::numeric, \
                coalesce(sum(completion_tokens), 0)::numeric, coalesce(sum({cost}), 0)::numeric, \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), \
                percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) \
         FROM observability.{table} WHERE {filter} AND ({within}) GROUP BY 1, 2"
    );
    type SumRow = (
        DateTime<Utc>,
        Option<String>,
        i64,
        i64,
        Decimal,
        Decimal,
        Decimal,
        Option<f64>,
        Option<f64>,
    );
    let mut query = sqlx::query_as::<_, SumRow>(AssertSqlSafe(sums)).bind(q.bucket.as_str());
    for (a, b) in ranges {
        query = query.bind(*a).bind(*b);
    }
    let mut mixed = false;
    for (bucket, k, calls, errors, p, c, cost, p50, p95) in query.fetch_all(&mut *conn).await? {
        let a = acc.entry((bucket, Key(k))).or_default();
        mixed |= a.from_rollups;
        a.calls += calls;
        a.errors += errors;
        a.prompt += decimal_i128(p);
        a.completion += decimal_i128(c);
        a.cost += cost;
        a.exact = Some((p50, p95));
    }
    if !mixed {
        return Ok(());
    }
    let hist = format!(
        "SELECT date_trunc($1, started_at, 'UTC'), {key}, \
                observability.latency_bucket(duration_ms), count(*) \
         FROM observability.{table} \
         WHERE {filter} AND duration_ms IS NOT NULL AND ({within}) GROUP BY 1, 2, 3"
    );
    let mut query =
        sqlx::query_as::<_, (DateTime<Utc>, Option<String>, i16, i64)>(AssertSqlSafe(hist))
            .bind(q.bucket.as_str());
    for (a, b) in ranges {
        query = query.bind(*a).bind(*b);
    }
    for (bucket, k, b, n) in query.fetch_all(&mut *conn).await? {
        let a = acc.entry((bucket, Key(k))).or_default();
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
    fn keys_sort_in_byte_order_with_none_last() {
        let mut keys = vec![Key(None), Key(Some("b".into())), Key(Some("B".into()))];
        keys.sort();
        assert_eq!(
            keys,
            vec![Key(Some("B".into())), Key(Some("b".into())), Key(None)]
        );
    }
}
