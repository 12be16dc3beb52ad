//! The hourly usage rollups: `query::usage` through them equals the raw rows, and the rollups
//! equal a full recomputation after late rows, two writers, a restart, a writer started with
//! the server down, retries, a refused row and a dropped partition.

use tracing_postgres_test_support as common;

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::{Cluster, fresh_db, fresh_db_on};
use sqlx::{AssertSqlSafe, PgPool};
use tracing_postgres::query::{self, Bucket, Usage, UsageBy, UsageQuery};
use tracing_postgres::*;
use uuid::Uuid;

const FLUSH: Duration = Duration::from_secs(30);
const ALL: [UsageBy; 4] = [
    UsageBy::Model,
    UsageBy::SpanType,
    UsageBy::Kb,
    UsageBy::User,
];

/// A "now" two hours ahead, at which the current hour counts as closed and settled, so the
/// rows a test just wrote can be rolled up.
fn later() -> DateTime<Utc> {
    Utc::now() + TimeDelta::hours(2)
}

/// Rolls up every dirty hour; returns how many.
async fn refresh_all(pool: &PgPool) -> usize {
    rollups::refresh(pool, later(), usize::MAX).await.unwrap()
}

/// Hours the rollups hold and that are not dirty.
async fn covered_hours(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM observability.usage_rollup_hours r WHERE NOT EXISTS \
         (SELECT 1 FROM observability.usage_dirty d WHERE d.hour = r.hour)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Asserts `usage` equals `usage_raw`: exactly for counts, tokens and cost, to float rounding
/// for error rates, within the histogram's 1% for percentiles.
async fn assert_usage_equals_raw(pool: &PgPool, q: &UsageQuery) {
    let fast = query::usage(pool, q).await.unwrap();
    let raw = query::usage_raw(pool, q).await.unwrap();
    let keys = |v: &[Usage]| {
        v.iter()
            .map(|u| (u.bucket, u.key.clone(), u.others))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&fast), keys(&raw), "{q:?}");
    for (f, r) in fast.iter().zip(&raw) {
        let at = format!("{q:?} {:?} {:?}", r.bucket, r.key);
        assert_eq!(
            (f.calls, f.prompt_tokens, f.completion_tokens, f.cost_usd),
            (r.calls, r.prompt_tokens, r.completion_tokens, r.cost_usd),
            "{at}"
        );
        assert!((f.error_rate - r.error_rate).abs() < 1e-12, "{at}");
        for (a, b) in [(f.p50_ms, r.p50_ms), (f.p95_ms, r.p95_ms)] {
            match (a, b) {
                (Some(a), Some(b)) => {
                    assert!((a - b).abs() <= 0.01 * b.abs() + 1e-9, "{at}: {a} vs {b}")
                }
                (a, b) => assert_eq!(a, b, "{at}"),
            }
        }
    }
}

/// Every grouping and bucket over `[from, to)`, with every key and with only the top ones.
async fn assert_all_equal_raw(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) {
    for by in ALL {
        for bucket in [Bucket::Hour, Bucket::Day, Bucket::Week] {
            let all = UsageQuery {
                by,
                bucket,
                from,
                to,
                top: None,
            };
            assert_usage_equals_raw(pool, &all).await;
            let every = query::usage_raw(pool, &all).await.unwrap();
            for n in [1, 2, 1000] {
                let q = all.clone().top(n);
                assert_usage_equals_raw(pool, &q).await;
                assert_top_of(&every, &query::usage(pool, &q).await.unwrap(), n, &q);
            }
        }
    }
}

/// A usage row's bucket, key and `others` flag.
type Slot<'a> = (DateTime<Utc>, Option<&'a str>, bool);
/// A usage row's calls, prompt tokens and cost.
type Sums = (i64, i64, rust_decimal::Decimal);

/// Asserts `top` (a query with the top `n` keys) is `every` (the same query with every key)
/// with the keys outside the `n` of highest cost (then calls, then byte order) summed into
/// one `others` row per bucket.
fn assert_top_of(every: &[Usage], top: &[Usage], n: usize, q: &UsageQuery) {
    use std::collections::BTreeMap;
    let mut totals: BTreeMap<&str, (rust_decimal::Decimal, i64)> = BTreeMap::new();
    for u in every {
        if let Some(k) = u.key.as_deref() {
            let t = totals.entry(k).or_default();
            t.0 += u.cost_usd;
            t.1 += u.calls;
        }
    }
    let mut ranked: Vec<(&str, (rust_decimal::Decimal, i64))> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let chosen: Vec<&str> = ranked.iter().take(n).map(|(k, _)| *k).collect();
    let mut expected: BTreeMap<Slot<'_>, Sums> = BTreeMap::new();
    for u in every {
        let (key, others) = match u.key.as_deref() {
            Some(k) if chosen.contains(&k) => (Some(k), false),
            Some(_) => (None, true),
            None => (None, false),
        };
        let e = expected.entry((u.bucket, key, others)).or_default();
        e.0 += u.calls;
        e.1 += u.prompt_tokens;
        e.2 += u.cost_usd;
    }
    let got: BTreeMap<_, _> = top
        .iter()
        .map(|u| {
            (
                (u.bucket, u.key.as_deref(), u.others),
                (u.calls, u.prompt_tokens, u.cost_usd),
            )
        })
        .collect();
    assert_eq!(got, expected, "{q:?}");
    assert!(
        top.iter()
            .filter(|u| u.key.is_some())
            .map(|u| u.key.as_deref())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            <= n,
        "{q:?}"
    );
}

/// Asserts the stored rollups equal a recomputation of every hour from scratch.
async fn assert_rollups_exact(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let c = &mut *conn;
    rollups::refresh(&mut *c, later(), usize::MAX)
        .await
        .unwrap();
    rollups::refresh_days(&mut *c, usize::MAX).await.unwrap();
    sqlx::raw_sql(
        "CREATE TEMP TABLE kept AS SELECT * FROM observability.usage_hourly; \
         CREATE TEMP TABLE kept_daily AS SELECT * FROM observability.usage_daily; \
         CREATE TEMP TABLE kept_weekly AS SELECT * FROM observability.usage_weekly; \
         DELETE FROM observability.usage_hourly; DELETE FROM observability.usage_rollup_hours; \
         DELETE FROM observability.usage_daily; DELETE FROM observability.usage_rollup_days; \
         DELETE FROM observability.usage_weekly; DELETE FROM observability.usage_rollup_weeks",
    )
    .execute(&mut *c)
    .await
    .unwrap();
    rollups::mark_range(&mut *c, Utc::now() - TimeDelta::days(36_500), later())
        .await
        .unwrap();
    rollups::refresh(&mut *c, later(), usize::MAX)
        .await
        .unwrap();
    rollups::refresh_days(&mut *c, usize::MAX).await.unwrap();
    for (kept, table) in [
        ("kept", "usage_hourly"),
        ("kept_daily", "usage_daily"),
        ("kept_weekly", "usage_weekly"),
    ] {
        let diff: (i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT (SELECT count(*) FROM (SELECT * FROM {kept} EXCEPT ALL \
                     SELECT * FROM observability.{table}) a), \
                    (SELECT count(*) FROM (SELECT * FROM observability.{table} EXCEPT ALL \
                     SELECT * FROM {kept}) b), \
                    (SELECT count(*) FROM {kept})"
        )))
        .fetch_one(&mut *c)
        .await
        .unwrap();
        assert_eq!(
            (diff.0, diff.1),
            (0, 0),
            "{table}: rollup rows differing from a recomputation"
        );
        // Hourly rows always; daily and weekly ones once a whole day or week was seeded.
        assert!(
            diff.2 > 0 || table != "usage_hourly",
            "no rollup rows at all"
        );
    }
    sqlx::raw_sql("DROP TABLE kept; DROP TABLE kept_daily; DROP TABLE kept_weekly")
        .execute(&mut *c)
        .await
        .unwrap();
}

/// Spans and traces over the `hours` before `end`, written with plain SQL (as a bulk load
/// would): several models (and none), types, kbs, users; durations of 0, NULL and a wide range;
/// errors; costs.
async fn seed(pool: &PgPool, end: DateTime<Utc>, hours: i64) {
    let from = end - TimeDelta::hours(hours);
    partitions::create(pool, from, end, PartitionStep::Day)
        .await
        .unwrap();
    let n = hours * 40;
    let step = (hours * 3600) as f64 / n as f64;
    sqlx::query(
        "INSERT INTO observability.traces (id, name, operation_type, user_id, kb_id, \
             started_at, duration_ms, status, prompt_tokens, completion_tokens, total_tokens, \
             total_cost_usd) \
         SELECT gen_random_uuid(), 't' || i, 'chat', \
                CASE WHEN i % 5 = 0 THEN NULL ELSE ('00000000-0000-0000-0000-00000000000' || (i % 3))::uuid END, \
                CASE WHEN i % 7 = 0 THEN NULL ELSE ('00000000-0000-0000-0001-00000000000' || (i % 2))::uuid END, \
                $1 + i * make_interval(secs => $2), \
                CASE WHEN i % 11 = 0 THEN NULL WHEN i % 17 = 0 THEN 0 ELSE (i * 37) % 9000 + 0.25 END, \
                CASE WHEN i % 13 = 0 THEN 'error' ELSE 'success' END, \
                i % 100, i % 10, i % 100 + i % 10, (i % 50) / 10000.0 \
         FROM generate_series(0, $3 - 1) i",
    )
    .bind(from)
    .bind(step)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO observability.spans (id, trace_id, name, span_type, started_at, \
             duration_ms, status, model, prompt_tokens, completion_tokens, cost_usd) \
         SELECT gen_random_uuid(), gen_random_uuid(), 's', \
                (ARRAY['llm', 'retrieval', 'embedding'])[1 + i % 3], \
                $1 + i * make_interval(secs => $2 / 3), \
                CASE WHEN i % 19 = 0 THEN NULL WHEN i % 23 = 0 THEN 0 \
                     ELSE exp((i % 97) / 9.0) END, \
                CASE WHEN i % 29 = 0 THEN 'error' ELSE 'success' END, \
                CASE WHEN i % 3 = 0 THEN (ARRAY['gpt-4o', 'small', 'Claude'])[1 + i % 9 / 3] END, \
                CASE WHEN i % 3 = 0 THEN i % 1000 END, CASE WHEN i % 3 = 0 THEN i % 77 END, \
                CASE WHEN i % 6 = 0 THEN (i % 1000) / 1000000.0 END \
         FROM generate_series(0, 3 * $3 - 1) i",
    )
    .bind(from)
    .bind(step)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn usage_through_the_rollups_equals_the_raw_rows_and_follows_a_dropped_partition() {
    let db = fresh_db().await;
    let end = Utc::now() - TimeDelta::hours(1);
    seed(&db.pool, end, 60).await;
    // Nothing rolled up yet: usage reads the raw rows.
    assert_eq!(covered_hours(&db.pool).await, 0);
    let (from, to) = (
        end - TimeDelta::hours(70) + TimeDelta::minutes(17),
        Utc::now() - TimeDelta::minutes(3),
    );
    assert_all_equal_raw(&db.pool, from, to).await;

    // Bulk-loaded rows are rolled up once marked.
    let marked = rollups::mark_range(&db.pool, from - TimeDelta::days(1), to)
        .await
        .unwrap();
    assert!(marked >= 60, "{marked}");
    assert!(refresh_all(&db.pool).await >= 60);
    assert!(covered_hours(&db.pool).await >= 60);
    // The rollups are read now: their rows exist, and a query over them gives the raw result.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM observability.usage_hourly")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(rows > 0);
    assert_all_equal_raw(&db.pool, from, to).await;
    // A range on whole hours only, and one inside one hour.
    let h = (end - TimeDelta::hours(30))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap();
    assert_all_equal_raw(&db.pool, h, h + TimeDelta::hours(5)).await;
    assert_all_equal_raw(
        &db.pool,
        h + TimeDelta::minutes(5),
        h + TimeDelta::minutes(50),
    )
    .await;
    assert_rollups_exact(&db.pool).await;

    // A stored rollup that disagrees would show: corrupt one hour's calls, and usage over it
    // no longer equals the raw rows (the comparison can fail).
    sqlx::query(
        "UPDATE observability.usage_hourly SET calls = calls + 1 \
         WHERE hour = $1 AND dim = 'span' AND model = 'gpt-4o'",
    )
    .bind(h)
    .execute(&db.pool)
    .await
    .unwrap();
    let q = UsageQuery {
        by: UsageBy::Model,
        bucket: Bucket::Day,
        from: h,
        to: h + TimeDelta::hours(2),
        top: None,
    };
    let fast = query::usage(&db.pool, &q).await.unwrap();
    let raw = query::usage_raw(&db.pool, &q).await.unwrap();
    assert_ne!(fast, raw);
    // Marked dirty, the hour is read raw again at once, and recomputed by the next refresh.
    rollups::mark_range(&db.pool, h, h + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_usage_equals_raw(&db.pool, &q).await;
    refresh_all(&db.pool).await;
    assert_usage_equals_raw(&db.pool, &q).await;

    // Whole days are read from the daily rollups: corrupt one, and a month by day shows it.
    let day = (end - TimeDelta::hours(24))
        .duration_trunc(TimeDelta::days(1))
        .unwrap();
    let merged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM observability.usage_rollup_days WHERE day = $1")
            .bind(day)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(merged, 1, "the day {day} was not merged");
    let by_day = UsageQuery {
        by: UsageBy::Kb,
        bucket: Bucket::Day,
        from: day - TimeDelta::days(1),
        to: day + TimeDelta::days(1),
        top: None,
    };
    assert_usage_equals_raw(&db.pool, &by_day).await;
    sqlx::query(
        "UPDATE observability.usage_daily SET calls = calls + 1 WHERE day = $1 AND dim = 'kb'",
    )
    .bind(day)
    .execute(&db.pool)
    .await
    .unwrap();
    let fast = query::usage(&db.pool, &by_day).await.unwrap();
    assert_ne!(fast, query::usage_raw(&db.pool, &by_day).await.unwrap());
    // An hour of the day recomputed since: the day is read from its hours again at once, and
    // merged anew by the next refresh.
    rollups::mark_range(
        &db.pool,
        day + TimeDelta::hours(7),
        day + TimeDelta::hours(8),
    )
    .await
    .unwrap();
    assert_usage_equals_raw(&db.pool, &by_day).await;
    rollups::refresh(&db.pool, later(), usize::MAX)
        .await
        .unwrap();
    assert_usage_equals_raw(&db.pool, &by_day).await;
    let corrupt: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.usage_daily d JOIN observability.usage_hourly h \
         ON h.hour >= d.day AND h.hour < d.day + interval '1 day' \
         WHERE d.day = $1 AND d.dim = 'kb' AND h.dim = 'kb' AND d.key IS NOT DISTINCT FROM h.key \
         GROUP BY d.key, d.calls HAVING d.calls <> sum(h.calls)",
    )
    .bind(day)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
    .unwrap_or(0);
    assert_eq!(corrupt, 0, "the day was not merged anew");
    assert_all_equal_raw(&db.pool, from, to).await;

    // Retention drops the oldest days' rollups with their rows.
    let cutoff = (end - TimeDelta::hours(36))
        .duration_trunc(TimeDelta::days(1))
        .unwrap();
    let report = partitions::prune_before(&db.pool, cutoff, false)
        .await
        .unwrap();
    assert!(
        report
            .partitions
            .iter()
            .any(|p| p.table_name == "usage_hourly"),
        "{report:?}"
    );
    let old: i64 =
        sqlx::query_scalar("SELECT count(*) FROM observability.usage_hourly WHERE hour < $1")
            .bind(cutoff)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(old, 0);
    assert_all_equal_raw(&db.pool, from, to).await;
    assert_rollups_exact(&db.pool).await;

    // A cut inside a day drops none of its partitions, so it keeps its hours' marks: the hours
    // before the cut stay read from their rollups, and a dirty one stays dirty (its stale
    // rollup is not read again).
    let stale = cutoff + TimeDelta::hours(2);
    sqlx::query(
        "UPDATE observability.usage_hourly SET calls = calls + 1 WHERE hour = $1 AND dim = 'kb'",
    )
    .bind(stale)
    .execute(&db.pool)
    .await
    .unwrap();
    rollups::mark_range(&db.pool, stale, stale + TimeDelta::hours(1))
        .await
        .unwrap();
    let covered = covered_hours(&db.pool).await;
    let report = partitions::prune_before(&db.pool, cutoff + TimeDelta::hours(6), false)
        .await
        .unwrap();
    assert!(report.partitions.is_empty(), "{report:?}");
    assert_eq!(covered_hours(&db.pool).await, covered);
    assert_all_equal_raw(&db.pool, cutoff, cutoff + TimeDelta::hours(6)).await;
    refresh_all(&db.pool).await;
    assert_all_equal_raw(&db.pool, from, to).await;
    assert_rollups_exact(&db.pool).await;
}

fn llm(model: &str, ms: f64, tokens: i64) -> LlmCall {
    LlmCall {
        latency_ms: Some(ms),
        metrics: LlmMetrics {
            model: Some(model.into()),
            prompt_tokens: Some(tokens),
            completion_tokens: Some(1),
            cost_usd: Some(Decimal::new(tokens, 6)),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `traces` traces of three LLM calls each, for one kb and user.
fn write(p: &PostgresProvider, traces: i64, tag: i64) {
    for t in 0..traces {
        let ctx = TraceContext::new()
            .with_kb(Uuid::from_u64_pair(1, tag as u64 % 2))
            .with_user(Uuid::from_u64_pair(2, tag as u64 % 3));
        p.start_trace(&ctx, "t", OperationType::Chat, None);
        for i in 0..3 {
            p.log_llm_call(
                &ctx,
                llm(["a", "b"][(t + i) as usize % 2], (t * 7 + i) as f64, t + i),
            );
        }
        p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    }
}

/// The current hour and the one before, with some margin: the span of a test run.
fn around_now() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        Utc::now() - TimeDelta::hours(2),
        Utc::now() + TimeDelta::hours(1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_written_after_a_refresh_mark_their_hour_and_two_writers_count_once() {
    let db = fresh_db().await;
    let (p1, g1) = Builder::new(&db.url).build().unwrap();
    let (p2, g2) = Builder::new(&db.url).build().unwrap();
    write(&p1, 50, 0);
    write(&p2, 50, 1);
    assert!(g1.flush(FLUSH) && g2.flush(FLUSH));
    // The writers marked the hour they wrote: a refresh (at a time the hour is closed) takes it.
    assert!(refresh_all(&db.pool).await >= 1);
    let covered = covered_hours(&db.pool).await;
    assert!(covered >= 1);
    let (from, to) = around_now();
    assert_all_equal_raw(&db.pool, from, to).await;

    // Late rows for a rolled-up hour: the writers mark it again, so usage reads it raw (never
    // the stale rollup), and the next refresh takes them in.
    write(&p1, 20, 2);
    write(&p2, 20, 3);
    assert!(g1.flush(FLUSH) && g2.flush(FLUSH));
    assert!(covered_hours(&db.pool).await < covered);
    assert_all_equal_raw(&db.pool, from, to).await;
    // Two refreshers at once, while both writers write: each hour is taken by one of them.
    let (a, b) = (db.pool.clone(), db.pool.clone());
    let r1 = tokio::spawn(async move { refresh_all(&a).await });
    let r2 = tokio::spawn(async move { refresh_all(&b).await });
    write(&p1, 20, 4);
    write(&p2, 20, 5);
    r1.await.unwrap();
    r2.await.unwrap();
    assert!(g1.flush(FLUSH) && g2.flush(FLUSH));
    refresh_all(&db.pool).await;
    assert_all_equal_raw(&db.pool, from, to).await;
    assert_rollups_exact(&db.pool).await;
    let calls: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::int8 FROM observability.usage_hourly \
         WHERE dim = 'span' AND model IS NOT NULL",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(calls, 3 * 180);
}

/// Whether the writer has retried at least `n` times within 20 s.
async fn retried(guard: &WriterGuard, n: u64) -> bool {
    common::eventually(Duration::from_secs(20), || {
        let retries = guard.stats().retries;
        async move { retries >= n }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollups_stay_exact_through_start_down_restart_retries_and_a_refused_row() {
    let cluster = Cluster::start();
    let db = fresh_db_on(&cluster.url()).await;
    // A real refusal: the database rejects this one name.
    sqlx::query(
        "ALTER TABLE observability.spans ADD CONSTRAINT no_poison CHECK (name <> 'poison')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    db.pool.close().await;
    // The writer starts with the server down.
    cluster.stop_server();
    let (p, guard) = Builder::new(&db.url)
        .flush_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    write(&p, 30, 0);
    assert!(retried(&guard, 1).await);
    cluster.start_server();
    assert!(guard.flush(FLUSH));
    // A restart in the middle of writing: the batches in flight are retried.
    write(&p, 30, 1);
    cluster.stop_server();
    write(&p, 30, 2);
    let ctx = TraceContext::new();
    p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some("poison".into()),
            ..llm("a", 1.0, 1)
        },
    );
    let before = guard.stats().retries;
    assert!(retried(&guard, before + 1).await);
    cluster.start_server();
    let report = guard.shutdown(Duration::from_secs(60));
    assert!(report.complete, "{report:?}");
    let stats = report.stats;
    assert!(stats.retries > 0, "{stats:?}");
    assert_eq!(stats.refused, 1, "{stats:?}");

    let pool = PgPool::connect(&db.url).await.unwrap();
    refresh_all(&pool).await;
    let (from, to) = around_now();
    assert_all_equal_raw(&pool, from, to).await;
    assert_rollups_exact(&pool).await;
    let calls: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::int8 FROM observability.usage_hourly \
         WHERE dim = 'span' AND model IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(calls, 3 * 90);
}

/// Rollups kept before the totals migration get their `total` rows from it (hours and days),
/// equal to a recomputation, and the top keys' queries over them equal the raw rows.
#[tokio::test]
async fn rollups_kept_before_the_totals_migration_get_their_totals() {
    let db = common::db_migrated_before(20261207000005).await;
    let end = Utc::now() - TimeDelta::hours(1);
    seed(&db.pool, end, 60).await;
    rollups::mark_range(&db.pool, end - TimeDelta::hours(61), end)
        .await
        .unwrap();
    refresh_all(&db.pool).await;
    migrate(&db.pool).await.unwrap();
    // Every hour and day with kb rows has its total, which sums them.
    for (table, col) in [("usage_hourly", "hour"), ("usage_daily", "day")] {
        let (times, totals, wrong): (i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT (SELECT count(DISTINCT {col}) FROM observability.{table} WHERE dim = 'kb'), \
                    (SELECT count(*) FROM observability.{table} WHERE dim = 'total'), \
                    (SELECT count(*) FROM observability.{table} t WHERE dim = 'total' AND \
                     ROW(calls, cost_usd) IS DISTINCT FROM \
                     (SELECT ROW(sum(calls)::int8, sum(cost_usd)) FROM observability.{table} k \
                      WHERE k.dim = 'kb' AND k.{col} = t.{col}))"
        )))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert!(times > 0, "{table}: nothing rolled up");
        assert_eq!((totals, wrong), (times, 0), "{table}");
    }
    assert_all_equal_raw(&db.pool, end - TimeDelta::hours(60), end).await;
    assert_rollups_exact(&db.pool).await;
}

/// The keys of a usage result, in order (the ranking a top query chose).
fn keys_of(v: &[Usage]) -> Vec<Option<String>> {
    v.iter().map(|u| u.key.clone()).collect()
}

#[tokio::test]
async fn top_keys_rank_whole_weeks_from_the_weekly_rows_while_they_are_current() {
    let db = fresh_db().await;
    // 15 days hold a whole week (Monday to Sunday) whatever day it is.
    let end = Utc::now() - TimeDelta::hours(1);
    seed(&db.pool, end, 15 * 24).await;
    let (from, to) = (end - TimeDelta::days(15), Utc::now());
    rollups::mark_range(&db.pool, from - TimeDelta::days(1), to)
        .await
        .unwrap();
    refresh_all(&db.pool).await;
    let weeks: Vec<DateTime<Utc>> =
        sqlx::query_scalar("SELECT week FROM observability.usage_rollup_weeks ORDER BY week")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(!weeks.is_empty(), "no week merged");
    let week = weeks[0];
    assert_eq!(
        week.format("%u %H:%M").to_string(),
        "1 00:00",
        "a week starts on Monday"
    );
    // The weekly rows are their days' rows summed.
    let off: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.usage_weekly w FULL JOIN ( \
             SELECT dim, key, sum(calls) AS calls, sum(cost_usd) AS cost \
             FROM observability.usage_daily \
             WHERE dim IN ('kb', 'user') AND key IS NOT NULL \
               AND day >= $1 AND day < $1 + interval '7 days' GROUP BY 1, 2) d \
         ON d.dim = w.dim AND d.key = w.key AND w.week = $1 \
         WHERE (w.week = $1 OR w.week IS NULL) \
           AND (w.calls IS DISTINCT FROM d.calls OR w.cost_usd IS DISTINCT FROM d.cost)",
    )
    .bind(week)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(off, 0, "weekly rows differ from their days");
    for by in [UsageBy::Kb, UsageBy::User] {
        for bucket in [Bucket::Hour, Bucket::Day] {
            for n in [1, 2] {
                let q = UsageQuery {
                    by,
                    bucket,
                    from,
                    to,
                    top: Some(n),
                };
                assert_usage_equals_raw(&db.pool, &q).await;
            }
        }
    }

    // The ranking reads them: make the user ranked last the first of that week, and the top
    // user of the range changes.
    let q = UsageQuery {
        by: UsageBy::User,
        bucket: Bucket::Day,
        from,
        to,
        top: Some(1),
    };
    let raw = query::usage_raw(&db.pool, &q).await.unwrap();
    let every = query::usage_raw(
        &db.pool,
        &UsageQuery {
            top: None,
            ..q.clone()
        },
    )
    .await
    .unwrap();
    let last = every
        .iter()
        .filter_map(|u| u.key.clone())
        .find(|k| raw.iter().all(|u| u.key.as_ref() != Some(k)))
        .expect("a user outside the top one");
    sqlx::query(
        "UPDATE observability.usage_weekly SET cost_usd = cost_usd + 1000 \
         WHERE week = $1 AND dim = 'user' AND key = $2::uuid",
    )
    .bind(week)
    .bind(&last)
    .execute(&db.pool)
    .await
    .unwrap();
    let fast = query::usage(&db.pool, &q).await.unwrap();
    assert!(
        fast.iter().any(|u| u.key.as_ref() == Some(&last)),
        "the weekly rows were not read: {:?}",
        keys_of(&fast)
    );
    // A week whose days' versions moved on (merged from other day rows) is not read.
    let shift_version = |delta: i64| {
        sqlx::query(
            "UPDATE observability.usage_rollup_weeks SET days_version = days_version + $2 \
             WHERE week = $1",
        )
        .bind(week)
        .bind(delta)
        .execute(&db.pool)
    };
    shift_version(-1).await.unwrap();
    assert_usage_equals_raw(&db.pool, &q).await;
    shift_version(1).await.unwrap();
    assert_ne!(
        keys_of(&query::usage(&db.pool, &q).await.unwrap()),
        keys_of(&raw)
    );
    // A dirty hour in the week: its day, so its week, is not read until merged anew; merging
    // the day merges the week again, from the rows as they are.
    let hour = week + TimeDelta::hours(50);
    rollups::mark_range(&db.pool, hour, hour + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_usage_equals_raw(&db.pool, &q).await;
    refresh_all(&db.pool).await;
    assert_usage_equals_raw(&db.pool, &q).await;
    let still: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.usage_weekly \
         WHERE week = $1 AND dim = 'user' AND key = $2::uuid AND cost_usd >= 1000",
    )
    .bind(week)
    .bind(last.clone())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(still, 0, "the week was not merged anew");
    assert_rollups_exact(&db.pool).await;

    // Retention: once the days of the first week are forgotten, the next merge forgets it.
    partitions::prune_before(&db.pool, week + TimeDelta::days(7), false)
        .await
        .unwrap();
    // The Monday after it: a whole day of the seed, merged again once recomputed.
    let next = week + TimeDelta::days(7) + TimeDelta::hours(2);
    rollups::mark_range(&db.pool, next, next + TimeDelta::hours(1))
        .await
        .unwrap();
    refresh_all(&db.pool).await;
    let kept: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM observability.usage_weekly WHERE week = $1) \
              + (SELECT count(*) FROM observability.usage_rollup_weeks WHERE week = $1)",
    )
    .bind(week)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(kept, 0, "a pruned week's ranking rows are kept");
    assert_usage_equals_raw(
        &db.pool,
        &UsageQuery {
            from: week + TimeDelta::days(7),
            ..q
        },
    )
    .await;
}
