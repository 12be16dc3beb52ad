//! Binary `COPY` (what the writer uses) against `INSERT ... SELECT FROM UNNEST(...)` into the
//! spans table, same server, same batches, one connection, in one run. Prints figures.
//!
//! ```sh
//! DATABASE_URL=... cargo bench --bench copy_vs_unnest -- 200000
//! ```
//! The UNNEST statement writes only the 16 columns these rows fill (the others default to
//! NULL), so it does less work than the COPY, which sends all 34: if COPY still wins, it wins.

use std::time::Instant;

use chrono::Utc;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tracing_postgres::{Decimal, Uuid, migrate};

const BATCH: usize = 10_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
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
    let mut conn = PgConnection::connect(&url).await?;
    let trace = Uuid::now_v7();

    let mut results = Vec::new();
    for round in 0..3 {
        sqlx::query("TRUNCATE observability.spans")
            .execute(&mut conn)
            .await?;
        // COPY binary, one transaction per batch.
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            let k = BATCH.min(n - done);
            let (sql, bytes) =
                tracing_postgres::fuzzing::llm_spans_copy_data(done as i64, k, trace);
            let mut tx = conn.begin().await?;
            let mut copy = tx.copy_in_raw(&sql).await?;
            for chunk in bytes.chunks(256 * 1024) {
                copy.send(chunk).await?;
            }
            copy.finish().await?;
            tx.commit().await?;
            done += k;
        }
        let copy_rate = n as f64 / start.elapsed().as_secs_f64();

        sqlx::query("TRUNCATE observability.spans")
            .execute(&mut conn)
            .await?;
        // UNNEST, one transaction per batch, same rows.
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            let k = BATCH.min(n - done);
            let now = Utc::now();
            let ids: Vec<Uuid> = (0..k).map(|_| Uuid::now_v7()).collect();
            let span_ids: Vec<String> = ids
                .iter()
                .map(|u| u.simple().to_string()[16..].to_owned())
                .collect();
            let tokens: Vec<i64> = (done..done + k).map(|i| i as i64).collect();
            sqlx::query(
                "INSERT INTO observability.spans (id, trace_id, name, span_type, started_at, ended_at,
                    duration_ms, status, model, prompt_tokens, completion_tokens, cost_usd, cost_source,
                    temperature, metadata, span_id)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],
                    $6::timestamptz[], $7::float8[], $8::text[], $9::text[], $10::int8[], $11::int8[],
                    $12::numeric[], $13::text[], $14::float8[], $15::jsonb[], $16::text[])",
            )
            .bind(&ids)
            .bind(vec![trace; k])
            .bind(vec!["openai.chat"; k])
            .bind(vec!["llm"; k])
            .bind(vec![now; k])
            .bind(vec![now; k])
            .bind(vec![350.0f64; k])
            .bind(vec!["success"; k])
            .bind(vec!["gpt-4o-mini"; k])
            .bind(&tokens)
            .bind(vec![42i64; k])
            .bind(vec![Decimal::new(120, 6); k])
            .bind(vec!["given"; k])
            .bind(vec![0.2f64; k])
            .bind(vec![serde_json::json!({}); k])
            .bind(&span_ids)
            .execute(&mut conn)
            .await?;
            done += k;
        }
        let unnest_rate = n as f64 / start.elapsed().as_secs_f64();
        println!(
            "round {round}: binary COPY {copy_rate:.0} rows/s, UNNEST {unnest_rate:.0} rows/s, COPY/UNNEST {:.2}",
            copy_rate / unnest_rate
        );
        results.push(copy_rate / unnest_rate);
    }
    results.sort_by(f64::total_cmp);
    println!(
        "median COPY/UNNEST over 3 rounds of {n} rows: {:.2}",
        results[1]
    );
    drop(conn);
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&admin_pool)
        .await?;
    Ok(())
}
