//! Hourly and daily usage rollups: what [`query::usage`](crate::query::usage) reads for whole
//! hours and days instead of the raw spans and traces.
//!
//! `observability.usage_hourly` holds, per hour, the calls, errors, tokens, cost and a latency
//! histogram of the spans by span type and model, and of the traces by knowledge base and by
//! user. The writer marks the hours its rows fall in dirty, in the rows' own transaction; the
//! writer's upkeep recomputes each dirty hour from the raw rows once the hour has closed
//! (every [`REFRESH_EVERY`], a few minutes), replacing the hour's rollup rows whole. Reads use
//! the rollups only for hours recomputed and not dirty since, so they always equal the raw
//! rows (see the README, "Usage rollups"). `observability.usage_daily` merges the 24 hours of
//! each day once they are all recomputed and clean; a day is read from it only while none of
//! its hours was recomputed since. `observability.usage_weekly` holds only the cost and calls
//! of each knowledge base and user per UTC week, merged with the week's days, for ranking the
//! top keys of a long range; a week is read only while its 7 days are.
//!
//! Rows written around the writer (a bulk `INSERT`, a restore) are not marked: mark their
//! range with [`mark_range`], then [`refresh`] (or let the upkeep do it).
//!
//! ```no_run
//! # async fn f(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
//! use chrono::{TimeDelta, Utc};
//! use tracing_postgres::rollups;
//!
//! // After loading a month of rows with plain SQL:
//! rollups::mark_range(&pool, Utc::now() - TimeDelta::days(31), Utc::now()).await?;
//! let hours = rollups::refresh(&pool, Utc::now(), usize::MAX).await?;
//! println!("{hours} hours rolled up");
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Acquire, PgConnection, PgExecutor, Postgres};

/// How often the writer's upkeep recomputes the dirty hours.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// How long after an hour ends the upkeep waits before recomputing it: the ends of spans that
/// started in it arrive for a while, and each would mark it dirty again.
pub const SETTLE: TimeDelta = TimeDelta::minutes(5);

/// The ratio between the bounds of a latency histogram bucket: bucket `i` holds durations in
/// `[RATIO^i, RATIO^(i+1))` milliseconds.
pub const RATIO: f64 = 1.02;

/// The bucket of durations of 0 ms or less, read as 0.
pub const ZERO_BUCKET: i16 = i16::MIN;

/// The histogram bucket of a duration in milliseconds, as `observability.latency_bucket`
/// computes it in SQL.
pub fn latency_bucket(ms: f64) -> i16 {
    if ms <= 0.0 {
        return ZERO_BUCKET;
    }
    if ms.is_nan() {
        // PostgreSQL sorts NaN above every number: the top bucket, as in SQL.
        return 1400;
    }
    // Clamped to [-400, 1400] before the cast, so the cast cannot truncate.
    (ms.max(0.001).ln() / RATIO.ln())
        .floor()
        .clamp(-400.0, 1400.0) as i16
}

/// The value a duration of bucket `b` is read as: the bucket's geometric middle, within
/// `RATIO.sqrt() - 1` (under 1%) of any duration in it.
pub fn bucket_value(b: i16) -> f64 {
    if b == ZERO_BUCKET {
        0.0
    } else {
        RATIO.powf(f64::from(b) + 0.5)
    }
}

/// The `p` quantile (0 to 1) of a histogram of `(bucket, count)` pairs sorted by bucket, as
/// `percentile_cont` interpolates between the two nearest ranks; `None` when it is empty.
pub fn histogram_quantile(hist: &[(i16, i64)], p: f64) -> Option<f64> {
    let total: i64 = hist.iter().map(|&(_, n)| n.max(0)).sum();
    if total == 0 {
        return None;
    }
    let pos = p.clamp(0.0, 1.0) * (total - 1) as f64;
    let (lo, hi) = (pos.floor() as i64, pos.ceil() as i64);
    let at = |rank: i64| {
        let mut seen = 0i64;
        for &(b, n) in hist {
            seen += n.max(0);
            if seen > rank {
                return bucket_value(b);
            }
        }
        hist.last().map_or(0.0, |&(b, _)| bucket_value(b))
    };
    let (a, b) = (at(lo), at(hi));
    Some(a + (pos - lo as f64) * (b - a))
}

/// Recomputes the dirty hours that ended at least [`SETTLE`] before `now`, newest first, at
/// most `max_hours` of them, each in a transaction of its own; then merges each day whose 24
/// hours are recomputed and clean into its daily rollup, if its hours changed since it was
/// merged (one transaction per day). Returns how many hours it recomputed. Safe to run from
/// several processes at once: each hour is taken by one of them, days one at a time.
///
/// Needs `EXECUTE` on `observability.refresh_usage_hour` and `observability.refresh_usage_day`
/// (revoked from `PUBLIC` by the migrations; grant them to the writer's role so its upkeep
/// keeps the rollups current).
pub async fn refresh<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    now: DateTime<Utc>,
    max_hours: usize,
) -> Result<usize, sqlx::Error> {
    let mut conn = db.acquire().await?;
    let mut done = 0;
    while done < max_hours {
        let hour: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT observability.refresh_usage_hour($1)")
                .bind(now - SETTLE)
                .fetch_one(&mut *conn)
                .await?;
        if hour.is_none() {
            break;
        }
        done += 1;
    }
    merge_days(&mut conn, max_hours.max(1)).await?;
    Ok(done)
}

/// Merges the days whose 24 hours are recomputed and clean and changed since the day was last
/// merged (or never were) into their daily rollups, newest first, at most `max_days`, one
/// transaction each; returns how many. [`refresh`] calls it after the hours. Needs `EXECUTE`
/// on `observability.refresh_usage_day`.
pub async fn refresh_days<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    max_days: usize,
) -> Result<usize, sqlx::Error> {
    let mut conn = db.acquire().await?;
    merge_days(&mut conn, max_days).await
}

/// [`refresh_days`] on one connection.
async fn merge_days(conn: &mut PgConnection, max_days: usize) -> Result<usize, sqlx::Error> {
    let mut done = 0;
    while done < max_days {
        let day: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT observability.refresh_usage_day()")
                .fetch_one(&mut *conn)
                .await?;
        if day.is_none() {
            break;
        }
        done += 1;
    }
    Ok(done)
}

/// Marks every hour with span or trace rows starting in `[from, to)` dirty, so that
/// [`refresh`] recomputes it; returns how many hours it marked. For rows written without the
/// writer; the migration marks the rows stored before it.
pub async fn mark_range(
    db: impl PgExecutor<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT observability.mark_usage_range($1, $2)")
        .bind(from)
        .bind(to)
        .fetch_one(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_reads_within_one_percent_of_its_durations() {
        for ms in [0.0011, 0.5, 1.0, 3.7, 250.0, 1234.5, 99_999.0] {
            let v = bucket_value(latency_bucket(ms));
            assert!(
                (v - ms).abs() / ms <= RATIO.sqrt() - 1.0 + 1e-12,
                "{ms} read as {v}"
            );
        }
        assert_eq!(bucket_value(latency_bucket(0.0)), 0.0);
        assert_eq!(bucket_value(latency_bucket(-3.0)), 0.0);
        assert_eq!(latency_bucket(f64::INFINITY), 1400);
        assert_eq!(latency_bucket(f64::NAN), 1400);
    }

    #[test]
    fn quantiles_interpolate_between_ranks_like_percentile_cont() {
        // Durations 1, 2, 3, 4 ms: p50 is 2.5, each within a bucket's error.
        let mut hist: Vec<(i16, i64)> = [1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(|&ms| (latency_bucket(ms), 1))
            .collect();
        hist.sort_unstable();
        let p50 = histogram_quantile(&hist, 0.5).unwrap();
        assert!((p50 - 2.5).abs() / 2.5 < 0.01, "{p50}");
        let p0 = histogram_quantile(&hist, 0.0).unwrap();
        assert!((p0 - 1.0).abs() < 0.01, "{p0}");
        assert_eq!(histogram_quantile(&[], 0.5), None);
    }
}
