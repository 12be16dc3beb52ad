//! Time partitions: made ahead (by `migrate` and by the writer itself), rows for a day with no
//! partition kept and moved in later, a change of step, and retention with and without a dry
//! run.

use tracing_postgres_test_support as common;

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::{count, eventually, fresh_db};
use sqlx::{AssertSqlSafe, PgPool};
use tracing_postgres::partitions::{self, Partition};
use tracing_postgres::*;

const FLUSH: Duration = Duration::from_secs(30);
const TABLES: [&str; 7] = [
    "traces",
    "spans",
    "chat_messages",
    "document_events",
    "scores",
    "usage_hourly",
    "usage_daily",
];
const DAY_MS: f64 = 86_400_000.0;

fn today() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::days(1)).unwrap()
}

fn covering(parts: &[Partition], table: &str, at: DateTime<Utc>) -> Option<String> {
    parts
        .iter()
        .find(|p| {
            p.table_name == table
                && !p.is_default
                && p.range_from.is_some_and(|f| f <= at)
                && p.range_to.is_some_and(|t| at < t)
        })
        .map(|p| p.name.clone())
}

/// Rows in the DEFAULT partition of `table`.
async fn in_default(pool: &PgPool, table: &str) -> i64 {
    count(pool, &format!("{table}_default")).await
}

#[tokio::test]
async fn migrate_makes_daily_partitions_ahead_and_a_default_for_each_table() {
    let db = fresh_db().await;
    let parts = partitions::list(&db.pool).await.unwrap();
    for table in TABLES {
        assert!(
            parts.iter().any(|p| p.table_name == table && p.is_default),
            "{table} has a DEFAULT partition"
        );
        for day in -1..=3 {
            let at = today() + TimeDelta::days(day) + TimeDelta::hours(12);
            let name = covering(&parts, table, at)
                .unwrap_or_else(|| panic!("{table} has a partition for day {day}"));
            assert_eq!(name, format!("{table}_p{}", at.format("%Y%m%d")));
        }
        // Daily: each partition is one UTC day.
        for p in parts
            .iter()
            .filter(|p| p.table_name == table && !p.is_default)
        {
            let (from, to) = (p.range_from.unwrap(), p.range_to.unwrap());
            assert_eq!(to - from, TimeDelta::days(1), "{}", p.name);
            assert_eq!(from, from.duration_trunc(TimeDelta::days(1)).unwrap());
        }
    }
    // Running it again creates nothing.
    let again = partitions::create_ahead(&db.pool, &PartitionPolicy::default())
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_row_for_a_day_without_a_partition_is_kept_then_moved_into_its_partition() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url)
        .partitions(PartitionPolicy {
            maintain: false,
            ..Default::default()
        })
        .build()
        .unwrap();
    let ctx = TraceContext::new();
    // 40 days back: no partition covers that day.
    let call = LlmCall {
        latency_ms: Some(40.0 * DAY_MS),
        metrics: LlmMetrics {
            model: Some("old-model".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    p.log_llm_call(&ctx, call);
    assert!(guard.flush(FLUSH));
    assert_eq!(guard.stats().written, 1);
    assert_eq!(in_default(&db.pool, "spans").await, 1);

    let day = (Utc::now() - TimeDelta::days(40))
        .duration_trunc(TimeDelta::days(1))
        .unwrap();
    let created = partitions::create_ahead(&db.pool, &PartitionPolicy::default())
        .await
        .unwrap();
    let moved: Vec<_> = created.iter().filter(|c| c.rows_moved > 0).collect();
    assert_eq!(moved.len(), 1, "{created:?}");
    assert_eq!(moved[0].name, format!("spans_p{}", day.format("%Y%m%d")));
    assert_eq!(moved[0].range_from, day);
    assert_eq!(in_default(&db.pool, "spans").await, 0);
    let model: String = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT model FROM observability.{} WHERE trace_id = $1",
        moved[0].name
    )))
    .bind(ctx.trace_id.as_uuid())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(model, "old-model");
}

#[tokio::test]
async fn the_writer_makes_the_partitions_ahead_by_itself() {
    let db = fresh_db().await;
    // A database migrated without partitions for the coming days.
    let dropped = partitions::prune_before(&db.pool, today() + TimeDelta::days(30), false)
        .await
        .unwrap();
    assert!(dropped.partitions.len() >= 20, "{dropped:?}");
    assert!(
        partitions::list(&db.pool)
            .await
            .unwrap()
            .iter()
            .all(|p| p.is_default)
    );

    let (_p, guard) = Builder::new(&db.url)
        .partitions(PartitionPolicy {
            ahead: 5,
            ..Default::default()
        })
        .build()
        .unwrap();
    let pool = db.pool.clone();
    let ready = eventually(Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            let parts = partitions::list(&pool).await.unwrap();
            TABLES.iter().all(|t| {
                (0..=5).all(|d| covering(&parts, t, today() + TimeDelta::days(d)).is_some())
            })
        }
    })
    .await;
    assert!(ready, "partitions for today and 5 days ahead");
    drop(guard);
}

#[tokio::test]
async fn a_new_step_leaves_existing_partitions_alone_and_fills_the_gaps() {
    let db = fresh_db().await;
    let weekly = PartitionPolicy {
        step: PartitionStep::Week,
        ahead: 3,
        ..Default::default()
    };
    partitions::create_ahead(&db.pool, &weekly).await.unwrap();
    let parts = partitions::list(&db.pool).await.unwrap();
    // Every day of the coming four weeks is covered exactly once.
    for table in TABLES {
        for d in 0..28 {
            let at = today() + TimeDelta::days(d);
            let n = parts
                .iter()
                .filter(|p| {
                    p.table_name == table
                        && !p.is_default
                        && p.range_from.unwrap() <= at
                        && at < p.range_to.unwrap()
                })
                .count();
            assert_eq!(n, 1, "{table} day {d}");
        }
    }
    // Weekly partitions start on a Monday.
    let far = today() + TimeDelta::days(27);
    let name = covering(&parts, "spans", far).unwrap();
    let p = parts.iter().find(|p| p.name == name).unwrap();
    assert_eq!(p.range_from.unwrap().format("%u").to_string(), "1");
    assert_eq!(
        p.range_to.unwrap() - p.range_from.unwrap(),
        TimeDelta::days(7)
    );
}

#[tokio::test]
async fn prune_dry_run_lists_and_keeps_then_prune_drops_whole_old_partitions() {
    let db = fresh_db().await;
    // Partitions 100 to 95 days back, with one span in them.
    let old = partitions::create(
        &db.pool,
        Utc::now() - TimeDelta::days(100),
        Utc::now() - TimeDelta::days(95),
        PartitionStep::Day,
    )
    .await
    .unwrap();
    assert!(old.len() >= 20, "{old:?}");
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = TraceContext::new();
    p.log_llm_call(
        &ctx,
        LlmCall {
            latency_ms: Some(97.0 * DAY_MS),
            ..Default::default()
        },
    );
    p.log_llm_call(&ctx, LlmCall::default());
    assert!(guard.flush(FLUSH));
    assert_eq!(count(&db.pool, "spans").await, 2);
    let before = partitions::list(&db.pool).await.unwrap();

    let dry = partitions::prune(&db.pool, partitions::DEFAULT_RETENTION, true)
        .await
        .unwrap();
    assert!(dry.dry_run);
    let mut listed: Vec<_> = dry.partitions.iter().map(|p| p.name.clone()).collect();
    let mut expected: Vec<_> = old.iter().map(|p| p.name.clone()).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(dry.partitions.iter().all(|p| p.range_to <= dry.cutoff));
    assert_eq!(partitions::list(&db.pool).await.unwrap(), before);
    assert_eq!(count(&db.pool, "spans").await, 2);

    let done = partitions::prune(&db.pool, partitions::DEFAULT_RETENTION, false)
        .await
        .unwrap();
    assert_eq!(done.partitions.len(), old.len());
    let after = partitions::list(&db.pool).await.unwrap();
    assert_eq!(after.len(), before.len() - old.len());
    assert!(after.iter().filter(|p| p.is_default).count() == TABLES.len());
    // The old span went with its partition; today's stays.
    assert_eq!(count(&db.pool, "spans").await, 1);
}

#[tokio::test]
async fn the_writer_prunes_by_itself_when_a_retention_is_set() {
    let db = fresh_db().await;
    let old = partitions::create(
        &db.pool,
        Utc::now() - TimeDelta::days(40),
        Utc::now() - TimeDelta::days(38),
        PartitionStep::Day,
    )
    .await
    .unwrap();
    assert!(!old.is_empty());
    let (_p, guard) = Builder::new(&db.url)
        .partitions(PartitionPolicy {
            retention: Some(Duration::from_secs(30 * 86_400)),
            ..Default::default()
        })
        .build()
        .unwrap();
    let pool = db.pool.clone();
    let pruned = eventually(Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            let parts = partitions::list(&pool).await.unwrap();
            parts
                .iter()
                .all(|p| p.is_default || p.range_to.unwrap() > Utc::now() - TimeDelta::days(30))
        }
    })
    .await;
    assert!(pruned, "old partitions dropped by the writer");
    // Today's partitions are kept.
    let parts = partitions::list(&db.pool).await.unwrap();
    assert!(covering(&parts, "spans", Utc::now()).is_some());
    drop(guard);
}

#[tokio::test]
async fn a_role_without_ownership_can_be_granted_partition_upkeep_and_nothing_more() {
    let db = fresh_db().await;
    let role = format!("tpg_upkeep_{}", &db.name[db.name.len() - 12..]);
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT USAGE ON SCHEMA observability TO {role}"),
        format!(
            "GRANT EXECUTE ON FUNCTION observability.create_partitions(timestamptz, timestamptz, text) TO {role}"
        ),
    ] {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let pool = PgPool::connect(&url).await.unwrap();
    let created = partitions::create(
        &pool,
        Utc::now() + TimeDelta::days(10),
        Utc::now() + TimeDelta::days(12),
        PartitionStep::Day,
    )
    .await
    .unwrap();
    assert_eq!(created.len(), TABLES.len() * 3);
    // Dropping was not granted.
    let refused = partitions::prune(&pool, Duration::ZERO, false).await;
    let Err(sqlx::Error::Database(e)) = refused else {
        panic!("prune without the grant: {refused:?}")
    };
    assert_eq!(e.code().as_deref(), Some("42501"));
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP OWNED BY {role}")))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn rows_written_before_partitioning_survive_the_migration_into_their_days() {
    let db = common::empty_db().await;
    // The schema as the first migration left it, with rows of today and of 50 days ago.
    let mut first = sqlx::migrate::Migrator::with_migrations(
        tracing_postgres::MIGRATOR.iter().take(1).cloned().collect(),
    );
    first.create_schema("observability");
    first.dangerous_set_table_name(tracing_postgres::migrations::HISTORY_TABLE);
    first.run(&db.pool).await.unwrap();
    let trace = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO observability.traces (id, name, operation_type, started_at) \
         VALUES ($1, 'old', 'chat', now() - interval '50 days')",
    )
    .bind(trace)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO observability.spans (id, trace_id, name, span_type, started_at, model) \
         VALUES ($1, $2, 'llm', 'llm', now(), 'm')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(trace)
    .execute(&db.pool)
    .await
    .unwrap();

    tracing_postgres::migrate(&db.pool).await.unwrap();
    assert_eq!(count(&db.pool, "traces").await, 1);
    assert_eq!(count(&db.pool, "spans").await, 1);
    for t in TABLES {
        assert_eq!(in_default(&db.pool, t).await, 0, "{t}");
    }
    let parts = partitions::list(&db.pool).await.unwrap();
    let old_day = Utc::now() - TimeDelta::days(50);
    let name = covering(&parts, "traces", old_day).unwrap();
    assert_eq!(count(&db.pool, &name).await, 1);
    let trace_id: String = sqlx::query_scalar("SELECT trace_id FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(trace_id, trace.simple().to_string());
}

#[tokio::test]
async fn upkeep_gives_up_behind_a_long_query_instead_of_blocking_everyone() {
    let db = fresh_db().await;
    // A long report holds its lock on every partition, the DEFAULT one included.
    let mut report = db.pool.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM observability.spans")
        .execute(&mut *report)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let pool = db.pool.clone();
    let upkeep = tokio::spawn(async move {
        partitions::create(
            &pool,
            Utc::now() + TimeDelta::days(20),
            Utc::now() + TimeDelta::days(21),
            PartitionStep::Day,
        )
        .await
    });
    // While it waits for its lock, today's rows are written as usual.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let insert = std::time::Instant::now();
    sqlx::query(
        "INSERT INTO observability.spans (id, trace_id, name, span_type, started_at) \
         VALUES ($1, $2, 'during upkeep', 'internal', now())",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(uuid::Uuid::now_v7())
    .execute(&db.pool)
    .await
    .unwrap();
    assert!(
        insert.elapsed() < Duration::from_secs(2),
        "{:?}",
        insert.elapsed()
    );
    assert!(!upkeep.is_finished(), "upkeep is still waiting");
    let result = upkeep.await.unwrap();
    let waited = started.elapsed();
    let Err(sqlx::Error::Database(e)) = result else {
        panic!("expected a lock timeout: {result:?}")
    };
    assert_eq!(e.code().as_deref(), Some("55P03"), "{e}");
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    // Nothing half-made: the function's transaction rolled back.
    report.rollback().await.unwrap();
    let parts = partitions::list(&db.pool).await.unwrap();
    assert!(covering(&parts, "spans", Utc::now() + TimeDelta::days(20)).is_none());
    // And once the report is done, it goes through.
    let created = partitions::create(
        &db.pool,
        Utc::now() + TimeDelta::days(20),
        Utc::now() + TimeDelta::days(21),
        PartitionStep::Day,
    )
    .await
    .unwrap();
    assert!(!created.is_empty());
}

#[tokio::test]
async fn rows_arriving_for_a_day_while_its_partition_is_made_all_end_in_it() {
    let db = fresh_db().await;
    // A stream of calls back-dated 40 days, a day without a partition (so into DEFAULT),
    // written every few milliseconds.
    let (p, guard) = Builder::new(&db.url)
        .flush_interval(Duration::from_millis(5))
        .partitions(PartitionPolicy {
            maintain: false,
            ..Default::default()
        })
        .build()
        .unwrap();
    let ctx = TraceContext::new();
    let emitter = std::thread::spawn(move || {
        for _ in 0..1500 {
            p.log_llm_call(
                &ctx,
                LlmCall {
                    latency_ms: Some(40.0 * DAY_MS),
                    ..Default::default()
                },
            );
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The day's partition is made (moving the rows so far) while they keep coming.
    let day = Utc::now() - TimeDelta::days(40);
    let created = partitions::create(&db.pool, day, day, PartitionStep::Day)
        .await
        .unwrap();
    assert!(
        created
            .iter()
            .any(|c| c.table_name == "spans" && c.rows_moved > 0),
        "{created:?}"
    );
    emitter.join().unwrap();
    assert!(guard.flush(FLUSH));
    let stats = guard.stats();
    assert_eq!((stats.written, stats.refused), (1500, 0), "{stats:?}");
    assert_eq!(count(&db.pool, "spans").await, 1500);
    assert_eq!(in_default(&db.pool, "spans").await, 0);
}

#[tokio::test]
async fn span_indexes_leave_out_rows_without_a_parent_and_still_serve_lookups_by_parent() {
    let db = fresh_db().await;
    let defs: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes \
         WHERE schemaname = 'observability' AND tablename = 'spans'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        defs.iter()
            .any(|d| d.contains("(parent_span_id) WHERE (parent_span_id IS NOT NULL)")),
        "{defs:?}"
    );
    assert!(
        defs.iter().any(|d| d.contains("(span_type, started_at)")),
        "{defs:?}"
    );
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM observability.spans \
         WHERE parent_span_id = '0195c0de-0000-7000-8000-000000000000'",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("parent_span_id_idx")),
        "{plan:#?}"
    );
}

/// The name, definition and `reloptions` of every index of `spans` and its partitions whose
/// definition contains `shape`.
async fn span_indexes(pool: &PgPool, shape: &str) -> Vec<(String, String, Option<Vec<String>>)> {
    sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid), c.reloptions FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'observability' AND t.relname LIKE 'spans%' \
           AND pg_get_indexdef(i.indexrelid) LIKE '%' || $1 || '%' ORDER BY 1",
    )
    .bind(shape)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The partitions of `spans`, its DEFAULT partition included.
async fn spans_partitions(pool: &PgPool) -> usize {
    partitions::list(pool)
        .await
        .unwrap()
        .iter()
        .filter(|p| p.table_name == "spans")
        .count()
}

#[tokio::test]
async fn the_type_index_leaves_out_internal_spans_and_still_serves_lookups_of_a_type() {
    let db = fresh_db().await;
    // A partition made after the migration, as the writer's upkeep makes them.
    let later = today() + TimeDelta::days(20);
    partitions::create(
        &db.pool,
        later,
        later + TimeDelta::days(1),
        PartitionStep::Day,
    )
    .await
    .unwrap();
    for (shape, filter) in [
        (
            "(span_type, started_at)",
            "WHERE (span_type <> 'internal'::text)",
        ),
        ("(model, started_at)", "WHERE (model IS NOT NULL)"),
    ] {
        let indexes = span_indexes(&db.pool, shape).await;
        // The partitioned index and one per partition (the later one and DEFAULT included).
        assert_eq!(
            indexes.len(),
            spans_partitions(&db.pool).await + 1,
            "{shape}: {indexes:?}"
        );
        assert!(
            indexes
                .iter()
                .any(|(name, ..)| name.contains(&later.format("%Y%m%d").to_string())),
            "{shape}: {indexes:?}"
        );
        for (name, def, options) in &indexes {
            assert!(def.ends_with(filter), "{def}");
            assert_eq!(
                options.as_deref(),
                Some(&["deduplicate_items=off".to_owned()][..]),
                "{name}"
            );
        }
    }

    let plan = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await
                .unwrap();
            let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            plan.join("\n")
        }
    };
    let typed = plan(
        "EXPLAIN SELECT id FROM observability.spans WHERE span_type = 'llm' \
         AND started_at >= now() - interval '1 day' ORDER BY started_at DESC LIMIT 20",
    )
    .await;
    assert!(typed.contains("span_type_started_at_idx"), "{typed}");
    let internal = plan(
        "EXPLAIN SELECT id FROM observability.spans WHERE span_type = 'internal' \
         AND started_at >= now() - interval '1 day'",
    )
    .await;
    assert!(!internal.contains("span_type_started_at_idx"), "{internal}");

    // A generic plan (the type a parameter) uses it when the query leaves `internal` out, as
    // the README advises.
    let mut tx = db.pool.begin().await.unwrap();
    for sql in [
        "SET LOCAL enable_seqscan = off",
        "SET LOCAL plan_cache_mode = force_generic_plan",
        "PREPARE typed(text) AS SELECT id FROM observability.spans WHERE span_type = $1 \
         AND span_type <> 'internal' AND started_at >= now() - interval '1 day'",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    let generic: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE typed('llm')")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DEALLOCATE typed")
        .execute(&mut *tx)
        .await
        .unwrap();
    let generic = generic.join("\n");
    assert!(generic.contains("span_type_started_at_idx"), "{generic}");
}

/// Migration `20261129000001` on a schema that has partitions and rows already, one of them
/// waiting in a DEFAULT partition: the W3C ids the server generated are kept (also through a
/// later move out of DEFAULT), the columns are plain from then on, and every partition, old
/// or new, gets the new span indexes.
#[tokio::test]
async fn an_existing_schema_keeps_its_w3c_ids_and_gets_the_new_span_indexes() {
    let db = common::db_migrated_before(20261129000001).await;
    partitions::create_ahead(&db.pool, &PartitionPolicy::default())
        .await
        .unwrap();
    let old_day = today() - TimeDelta::days(40);
    let ids: [Uuid; 3] = std::array::from_fn(|_| Uuid::now_v7());
    sqlx::query(
        "INSERT INTO observability.traces (id, name, operation_type, started_at) \
         VALUES ($1, 'request', 'chat', now())",
    )
    .bind(ids[0])
    .execute(&db.pool)
    .await
    .unwrap();
    for (id, at) in [
        (ids[1], Utc::now()),
        (ids[2], old_day + TimeDelta::hours(1)),
    ] {
        sqlx::query(
            "INSERT INTO observability.spans (id, trace_id, name, span_type, started_at) \
             VALUES ($1, $2, 'step', 'llm', $3)",
        )
        .bind(id)
        .bind(ids[0])
        .bind(at)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    assert_eq!(in_default(&db.pool, "spans").await, 1);

    tracing_postgres::migrate(&db.pool).await.unwrap();

    let generated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'observability' AND a.attname IN ('span_id', 'trace_id') \
           AND a.attgenerated <> ''",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(generated, 0);
    for shape in ["(span_type, started_at)", "(model, started_at)"] {
        let indexes = span_indexes(&db.pool, shape).await;
        assert_eq!(
            indexes.len(),
            spans_partitions(&db.pool).await + 1,
            "{indexes:?}"
        );
        for (name, def, options) in &indexes {
            assert!(def.contains(" WHERE "), "{def}");
            assert_eq!(
                options.as_deref(),
                Some(&["deduplicate_items=off".to_owned()][..]),
                "{name}"
            );
        }
    }
    // The row waiting in DEFAULT moves into its day's partition with its id's W3C form.
    partitions::create(&db.pool, old_day, old_day, PartitionStep::Day)
        .await
        .unwrap();
    assert_eq!(in_default(&db.pool, "spans").await, 0);
    let kept: Vec<(Uuid, Option<String>)> =
        sqlx::query_as("SELECT id, span_id::text FROM observability.spans ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let mut expected: Vec<(Uuid, Option<String>)> = ids[1..]
        .iter()
        .map(|id| (*id, Some(id.simple().to_string()[16..].to_owned())))
        .collect();
    // Span ids are not time-ordered (their first half is their trace's): as sets.
    expected.sort();
    assert_eq!(kept, expected);
    let trace_id: Option<String> =
        sqlx::query_scalar("SELECT trace_id::text FROM observability.traces")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(trace_id, Some(ids[0].simple().to_string()));
}

/// A transaction in the writer's order: a span first, its trace last (see
/// `writer::pg::sink::write_rows`), both for `day`, a day without partitions (so into their
/// DEFAULT partitions), with a pause between.
async fn write_like_a_batch(pool: &PgPool, day: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let trace = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO observability.spans (id, trace_id, name, span_type, started_at) \
         VALUES ($1, $2, 'batch', 'internal', $3)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(trace)
    .bind(day)
    .execute(&mut *tx)
    .await?;
    tokio::time::sleep(Duration::from_millis(30)).await;
    sqlx::query(
        "INSERT INTO observability.traces (id, name, operation_type, started_at) \
         VALUES ($1, 'batch', 'chat', $2)",
    )
    .bind(trace)
    .bind(day)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

#[tokio::test]
async fn making_partitions_while_batches_write_into_the_defaults_never_deadlocks() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let db = fresh_db().await;
    let stop = Arc::new(AtomicBool::new(false));
    // Batches back-dated to a new day each (their rows wait in the DEFAULT partitions),
    // one after another, as a writer's connection sends them.
    let batches = {
        let (pool, stop) = (db.pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                let day = today() - TimeDelta::days(100 + written);
                write_like_a_batch(&pool, day).await?;
                written += 1;
            }
            Ok::<i64, sqlx::Error>(written)
        })
    };
    // Meanwhile the upkeep makes a day ahead for every table, and the batches' days.
    for ahead in 0..12 {
        let day = today() + TimeDelta::days(30 + ahead);
        partitions::create(&db.pool, day, day, PartitionStep::Day)
            .await
            .unwrap_or_else(|e| panic!("upkeep {ahead}: {e}"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = batches.await.unwrap().expect("no batch aborted");
    assert!(written > 3, "{written}");
    assert_eq!(count(&db.pool, "spans").await, written);
    assert_eq!(count(&db.pool, "traces").await, written);
    // The last batches' rows may still wait in DEFAULT; one more pass moves them.
    let day = today() + TimeDelta::days(30);
    partitions::create(&db.pool, day, day, PartitionStep::Day)
        .await
        .unwrap();
    assert_eq!(in_default(&db.pool, "spans").await, 0);
    assert_eq!(in_default(&db.pool, "traces").await, 0);
}
