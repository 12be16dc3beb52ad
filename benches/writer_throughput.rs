//! Writer throughput and the caller's cost of one provider call, against the server in
//! `DATABASE_URL` (a fresh database is created in it). Prints figures; asserts nothing.
//!
//! ```sh
//! ./scripts/bench-writer            # provisions a throwaway server
//! DATABASE_URL=... cargo bench --bench writer_throughput -- 200000
//! ```

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, PgPool};
use tracing_postgres::*;

fn llm(i: i64) -> LlmCall {
    LlmCall {
        name: Some("openai.chat".into()),
        metrics: LlmMetrics {
            model: Some("gpt-4o-mini".into()),
            prompt_tokens: Some(i),
            completion_tokens: Some(42),
            cost_usd: Some(Decimal::new(12, 5)),
            temperature: Some(0.2),
        },
        latency_ms: Some(350.0),
        ..LlmCall::default()
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let admin = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let name = format!("tpg_bench_{}", Uuid::now_v7().simple());
    let admin_pool = PgPool::connect(&admin).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin_pool)
        .await?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    let pool = PgPool::connect(&url).await?;
    migrate(&pool).await?;

    // 1. The caller's cost of one call, each call timed alone (the timer's own cost, measured
    //    on empty calls, is subtracted). The writer runs meanwhile, as in production.
    let (p, guard) = Builder::new(&url).build()?;
    let ctx = TraceContext::new();
    let samples = 100_000;
    let mut empty = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        empty.push(t.elapsed().as_nanos() as u64);
    }
    empty.sort_unstable();
    let timer = percentile(&empty, 0.5);
    let mut call = Vec::with_capacity(samples);
    for i in 0..samples as i64 {
        let record = llm(i);
        let t = Instant::now();
        p.log_llm_call(&ctx, record);
        call.push((t.elapsed().as_nanos() as u64).saturating_sub(timer));
    }
    call.sort_unstable();
    let (p50, p99) = (percentile(&call, 0.5), percentile(&call, 0.99));
    assert!(guard.flush(Duration::from_secs(120)));
    drop(guard);
    sqlx::query("TRUNCATE observability.spans")
        .execute(&pool)
        .await?;

    // 2. Sustained persisted rows/s: n calls as fast as one thread makes them, until the last
    //    row is committed.
    // Room for every record: this measures the writer, not the queue's bound.
    let (p, guard) = Builder::new(&url)
        .queue_capacity((n as usize).max(DEFAULT_QUEUE_CAPACITY))
        .build()?;
    let start = Instant::now();
    for i in 0..n {
        p.log_llm_call(&ctx, llm(i));
    }
    let emitted_in = start.elapsed();
    while guard.stats().written < n as u64 {
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("not written in 600 s: {:?}", guard.stats()).into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let persisted_in = start.elapsed();
    let stats = guard.stats();
    drop(guard);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM observability.spans")
        .fetch_one(&pool)
        .await?;
    assert_eq!(rows, n, "every record is a row");

    let rate = n as f64 / persisted_in.as_secs_f64();
    println!(
        "provider call on the caller's thread: p50 {p50} ns, p99 {p99} ns ({samples} calls, timer {timer} ns subtracted)"
    );
    println!(
        "persisted {n} records in {:.2} s: {:.0} records/s (emitted in {:.2} s; {} batches, {} dropped)",
        persisted_in.as_secs_f64(),
        rate,
        emitted_in.as_secs_f64(),
        stats.batches,
        stats.dropped()
    );
    println!(
        "{{\"provider_call_ns\":{{\"p50\":{p50},\"p99\":{p99}}},\"records\":{n},\"records_per_s\":{rate:.0}}}"
    );
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&admin_pool)
        .await?;
    Ok(())
}
