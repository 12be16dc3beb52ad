//! The writer under load and under failure, against a real PostgreSQL.

use tracing_postgres_test_support as common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, count, eventually, fresh_db, fresh_db_on};
use sqlx::Row;
use tracing_postgres::*;
use uuid::Uuid;

fn ctx() -> TraceContext {
    TraceContext::new()
        .with_user(Uuid::now_v7())
        .with_session("s")
        .with_kb(Uuid::now_v7())
}

/// A trace of `calls` LLM calls (tokens 0, 1, ...), started and ended.
fn one_trace(p: &impl ObservabilityProvider, ctx: &TraceContext, name: &str, calls: i64) {
    p.start_trace(ctx, name, OperationType::Chat, None);
    for i in 0..calls {
        p.log_llm_call(ctx, llm(i));
    }
    p.end_trace(ctx, Outcome::success(), TraceTotals::default());
}

/// Whether the writer retries a failed batch at least twice within 10 s.
async fn retries_twice(guard: &WriterGuard) -> bool {
    eventually(Duration::from_secs(10), || {
        let retries = guard.stats().retries;
        async move { retries >= 2 }
    })
    .await
}

fn llm(tokens: i64) -> LlmCall {
    LlmCall {
        metrics: LlmMetrics {
            model: Some("m".into()),
            prompt_tokens: Some(tokens),
            completion_tokens: Some(1),
            ..Default::default()
        },
        ..LlmCall::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_tasks_lose_nothing() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let ctx = ctx();
            p.start_trace(&ctx, &format!("task {t}"), OperationType::Chat, None);
            for i in 0..250 {
                p.log_llm_call(&ctx, llm(i));
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            p.log_chat_message(&ctx, ChatMessage::new(ChatRole::User, "hi"));
            p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = guard.shutdown(Duration::from_secs(60));
    assert!(report.complete, "{report:?}");
    assert_eq!(report.dropped(), 0);
    assert_eq!(count(&db.pool, "spans").await, 32 * 250);
    assert_eq!(count(&db.pool, "traces").await, 32);
    assert_eq!(count(&db.pool, "chat_messages").await, 32);
    // Each trace's totals are the sum of its own spans.
    let bad: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.traces t
         WHERE t.prompt_tokens <> (SELECT sum(prompt_tokens) FROM observability.spans s WHERE s.trace_id = t.id)
            OR t.status <> 'success'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(bad, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_then_guard_dropped_are_all_written() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url)
        .shutdown_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let ctx = ctx();
    for i in 0..100_000 {
        p.log_llm_call(&ctx, llm(i));
    }
    drop(guard);
    assert_eq!(count(&db.pool, "spans").await, 100_000);
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT prompt_tokens) FROM observability.spans")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(distinct, 100_000);
}

#[tokio::test]
async fn a_refused_row_does_not_take_its_batch_down() {
    let db = fresh_db().await;
    // A real refusal: the database rejects this one name.
    sqlx::query(
        "ALTER TABLE observability.spans ADD CONSTRAINT no_poison CHECK (name <> 'poison')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (p, guard) = Builder::new(&db.url)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let ctx = ctx();
    for i in 0..1000 {
        let name = if i == 500 {
            "poison".to_owned()
        } else {
            format!("ok {i}")
        };
        p.log_llm_call(
            &ctx,
            LlmCall {
                name: Some(name),
                ..llm(i)
            },
        );
    }
    assert!(guard.flush(Duration::from_secs(60)));
    let stats = guard.stats();
    assert_eq!(stats.refused, 1, "{stats:?}");
    assert_eq!(stats.written, 999);
    assert!(
        stats
            .last_error
            .as_ref()
            .map_or("", |e| e.message.as_str())
            .contains("no_poison"),
        "{stats:?}"
    );
    assert_eq!(count(&db.pool, "spans").await, 999);
    let poison: i64 =
        sqlx::query_scalar("SELECT count(*) FROM observability.spans WHERE name = 'poison'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(poison, 0);
}

#[tokio::test]
async fn text_is_cut_at_character_boundaries_and_nul_bytes_removed() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    // 999 ASCII characters then 4-byte characters: the cut falls inside the emoji run.
    let long_error = format!("{}{}", "e".repeat(999), "😀".repeat(10));
    let long_preview = format!("{}{}", "é".repeat(498), "😀🎉x");
    let id = p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some("with\0nul".into()),
            input_preview: Some(long_preview.clone()),
            output_preview: Some("a\0b\0c".into()),
            outcome: Outcome::error("Boom\0", long_error.clone()),
            metadata: Some(serde_json::json!({"k\0ey": "v\0al", "nested": [{"x": "\0"}]})),
            ..llm(1)
        },
    );
    p.log_chat_message(&ctx, ChatMessage::new(ChatRole::User, "hello\0world"));
    assert!(guard.flush(Duration::from_secs(30)));
    let row = sqlx::query("SELECT name, input_preview, output_preview, error_type, error_message, metadata FROM observability.spans WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("name"), "withnul");
    let preview: String = row.get("input_preview");
    assert_eq!(preview.chars().count(), 500);
    assert_eq!(preview, format!("{}{}", "é".repeat(498), "😀🎉"));
    assert_eq!(row.get::<String, _>("output_preview"), "abc");
    assert_eq!(row.get::<String, _>("error_type"), "Boom");
    let msg: String = row.get("error_message");
    assert_eq!(msg.chars().count(), 1000);
    assert_eq!(msg, format!("{}{}", "e".repeat(999), "😀"));
    assert_eq!(
        row.get::<serde_json::Value, _>("metadata"),
        serde_json::json!({"key": "val", "nested": [{"x": ""}]})
    );
    let content: String = sqlx::query_scalar("SELECT content FROM observability.chat_messages")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(content, "helloworld");
}

/// The server is stopped: calls return at once, nothing surfaces, the counters say what
/// happened. When it comes back, everything buffered is written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopped_then_restarted_loses_nothing() {
    let cluster = Cluster::start();
    let db = fresh_db_on(&cluster.url()).await;
    let (p, guard) = Builder::new(&db.url)
        .flush_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let ctx = ctx();
    p.log_llm_call(&ctx, llm(0));
    assert!(guard.flush(Duration::from_secs(30)));
    assert!(guard.stats().connected);
    db.pool.close().await;

    cluster.stop_server();
    let mut slowest = Duration::ZERO;
    for i in 1..=5_000 {
        let t = Instant::now();
        p.log_llm_call(&ctx, llm(i));
        slowest = slowest.max(t.elapsed());
    }
    // Nothing waits on the dead server (a generous bound: the call only queues).
    assert!(
        slowest < Duration::from_millis(100),
        "slowest call {slowest:?}"
    );
    let stats_down = {
        let mut s = guard.stats();
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.retries == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            s = guard.stats();
        }
        s
    };
    assert!(stats_down.retries > 0, "{stats_down:?}");
    assert!(!stats_down.connected);
    assert!(stats_down.last_error.is_some());
    assert_eq!(stats_down.enqueued, 5_001);
    assert_eq!(stats_down.written, 1);
    assert_eq!(stats_down.dropped(), 0);

    cluster.start_server();
    let report = guard.shutdown(Duration::from_secs(60));
    assert!(report.complete, "{report:?}");
    assert_eq!(report.written(), 5_001);
    assert_eq!(report.dropped(), 0);
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    assert_eq!(count(&pool, "spans").await, 5_001);
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT prompt_tokens) FROM observability.spans")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(distinct, 5_001);
}

/// Building and calling with no server at all: nothing blocks or fails, and a shutdown past its
/// deadline reports everything as dropped.
#[test]
fn no_server_at_all_never_blocks_and_reports_drops() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let (p, guard) = Builder::new(format!("postgres://u:secret-pw@127.0.0.1:{port}/db"))
        .build()
        .unwrap();
    let ctx = ctx();
    for i in 0..1000 {
        p.log_llm_call(&ctx, llm(i));
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    let p = Arc::new(p);
    let report = guard.shutdown(Duration::from_millis(500));
    assert!(!report.complete);
    assert_eq!(report.written(), 0);
    assert_eq!(report.dropped(), 1000);
    assert!(report.stats.retries > 0);
    let err = report
        .stats
        .last_error
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(!err.contains("secret-pw"), "{err}");
    // After shutdown, calls still return and are counted as dropped.
    p.log_llm_call(&ctx, llm(1));
    std::thread::sleep(Duration::from_millis(50));
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_exactly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (p, guard) = Builder::new(format!("postgres://u@127.0.0.1:{port}/db"))
        .queue_capacity(1_000)
        .batch_size(100)
        .build()
        .unwrap();
    let ctx = ctx();
    for i in 0..5_000 {
        p.log_llm_call(&ctx, llm(i));
    }
    let s = guard.stats();
    assert_eq!(s.enqueued + s.dropped_full, 5_000);
    // The queue holds 1,000 and the writer at most one batch per connection (3 by default)
    // and one being collected.
    assert!(s.enqueued <= 1_000 + 100 * (3 + 1), "{s:?}");
    assert!(s.dropped_full >= 3_600, "{s:?}");
    let report = guard.shutdown(Duration::from_millis(300));
    assert_eq!(report.written() + report.dropped(), 5_000);
}

#[tokio::test]
async fn writer_reconnects_when_the_database_appears_later() {
    let cluster = Cluster::start();
    cluster.stop_server();
    let (p, guard) = Builder::new(cluster.url())
        .flush_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let ctx = ctx();
    one_trace(&p, &ctx, "early", 100);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(guard.stats().written, 0);
    cluster.start_server();
    let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    migrate(&pool).await.unwrap();
    let ok = eventually(Duration::from_secs(30), || {
        let pool = pool.clone();
        async move { count(&pool, "spans").await == 100 }
    })
    .await;
    assert!(ok, "{:?}", guard.stats());
    assert!(guard.flush(Duration::from_secs(30)));
    let row = sqlx::query("SELECT status, prompt_tokens FROM observability.traces")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("status"), "success");
    assert_eq!(
        row.get::<Option<i64>, _>("prompt_tokens"),
        Some((0..100).sum())
    );
}

/// The flush interval counts from a record's arrival in the queue, not from when the writer
/// took it: after a backlog (here the table locked for longer than the interval), the rows
/// left when the queue runs dry have waited long enough and are written at once, not an
/// interval later.
#[tokio::test]
async fn the_rows_left_after_a_backlog_go_without_waiting_another_interval() {
    const INTERVAL: Duration = Duration::from_secs(6);
    let db = fresh_db().await;
    let mut locker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE observability.spans IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let (p, guard) = Builder::new(&db.url)
        .flush_interval(INTERVAL)
        .batch_size(100)
        .build()
        .unwrap();
    let ctx = ctx();
    // Ten full batches and a part of one, all queued at once: the last 50 rows make a batch
    // that only its deadline sends.
    for i in 0..1_050 {
        p.log_llm_call(&ctx, llm(i));
    }
    tokio::time::sleep(INTERVAL + Duration::from_secs(1)).await;
    assert_eq!(guard.stats().written, 0, "the lock holds every batch back");
    locker.rollback().await.unwrap();
    let released = Instant::now();
    // Counted from the writer taking them, the last rows would wait at least half the
    // interval (3 s) after the release; counted from their arrival, they are overdue.
    let all_written = eventually(INTERVAL / 2 - Duration::from_millis(500), || {
        let written = guard.stats().written;
        async move { written == 1_050 }
    })
    .await;
    assert!(
        all_written,
        "{} of 1,050 written {:?} after the release",
        guard.stats().written,
        released.elapsed()
    );
    assert_eq!(count(&db.pool, "spans").await, 1_050);
}

/// A database one migration behind (a column missing) is waited for, not taken for bad data:
/// nothing is refused, and everything is written once the column is back.
#[tokio::test]
async fn a_schema_error_is_retried_not_refused() {
    let db = fresh_db().await;
    sqlx::query("ALTER TABLE observability.spans DROP COLUMN collection_name")
        .execute(&db.pool)
        .await
        .unwrap();
    let (p, guard) = Builder::new(&db.url)
        .flush_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let ctx = ctx();
    for i in 0..100 {
        p.log_llm_call(&ctx, llm(i));
    }
    assert!(retries_twice(&guard).await);
    let s = guard.stats();
    assert_eq!((s.written, s.refused), (0, 0), "{s:?}");
    assert!(
        s.last_error
            .as_ref()
            .map_or("", |e| e.message.as_str())
            .contains("collection_name"),
        "{s:?}"
    );
    sqlx::query("ALTER TABLE observability.spans ADD COLUMN collection_name text")
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(guard.flush(Duration::from_secs(30)));
    assert_eq!(count(&db.pool, "spans").await, 100);
    assert_eq!(guard.stats().refused, 0);
}

/// A database from before migration `20261129000001` (the W3C ids still generated by the
/// server, so a `COPY` or upsert naming them fails) holds the rows back until it is migrated:
/// nothing is refused, and the rows written afterwards carry the ids the writer formats.
#[tokio::test]
async fn rows_wait_for_the_migration_that_lets_the_writer_fill_the_w3c_ids() {
    let db = fresh_db().await;
    for sql in [
        "ALTER TABLE observability.spans DROP COLUMN span_id, ADD COLUMN span_id char(16) \
         GENERATED ALWAYS AS (right(replace(id::text, '-', ''), 16)) STORED",
        "ALTER TABLE observability.traces DROP COLUMN trace_id, ADD COLUMN trace_id char(32) \
         GENERATED ALWAYS AS (replace(id::text, '-', '')) STORED",
    ] {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }
    let (p, guard) = Builder::new(&db.url)
        .flush_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let ctx = ctx();
    one_trace(&p, &ctx, "request", 100);
    assert!(retries_twice(&guard).await);
    let s = guard.stats();
    assert_eq!((s.written, s.refused), (0, 0), "{s:?}");
    assert!(
        s.last_error
            .as_ref()
            .map_or("", |e| e.message.as_str())
            .contains("_id"),
        "{s:?}"
    );
    // The migration's own statements.
    for sql in [
        "ALTER TABLE observability.spans ALTER COLUMN span_id DROP EXPRESSION",
        "ALTER TABLE observability.traces ALTER COLUMN trace_id DROP EXPRESSION",
    ] {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }
    assert!(guard.flush(Duration::from_secs(30)));
    assert_eq!(guard.stats().refused, 0);
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.spans \
         WHERE span_id IS DISTINCT FROM right(replace(id::text, '-', ''), 16)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((count(&db.pool, "spans").await, mismatched), (100, 0));
    let trace_id: Option<String> =
        sqlx::query_scalar("SELECT trace_id::text FROM observability.traces")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(trace_id, Some(ctx.trace_id.to_string()));
}

/// The byte budget counts what JSON holds: huge metadata fills it, and is counted as dropped.
#[tokio::test]
async fn the_byte_budget_counts_json_metadata() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (p, guard) = Builder::new(format!("postgres://u@127.0.0.1:{port}/db"))
        .max_queue_bytes(3 << 20)
        .shutdown_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let ctx = ctx();
    let big = "x".repeat(10 << 20);
    for _ in 0..10 {
        p.log_llm_call(
            &ctx,
            LlmCall {
                metadata: Some(serde_json::json!({ "blob": big })),
                ..LlmCall::default()
            },
        );
    }
    let s = guard.stats();
    // Each value is cut to the content limit (1,000,000 characters): about 1 MB a record.
    assert!(s.enqueued <= 3, "{s:?}");
    assert_eq!(s.enqueued + s.dropped_full, 10, "{s:?}");
    assert!(s.queued_bytes <= 3 << 20, "{s:?}");
}
