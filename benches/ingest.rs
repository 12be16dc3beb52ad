//! Ingest harness, run by `./scripts/bench` (which provisions a throwaway server and stops it
//! for the outage run). Each mode prints one JSON object on its last line of stdout; asserts
//! nothing.
//!
//! * `ingest`: 1,000,000 spans through the layer from 4 threads into an empty database, timed
//!   until the last row is visible to a `SELECT`; then, in the same run, the ceiling: the very
//!   rows written, exported with `psql \copy ... TO` and loaded with `psql \copy ... FROM` into
//!   an identical empty table (a second database migrated by the crate's own migrator, so same
//!   columns and indexes); and the spec's design: 20,000 of those rows, one `INSERT` per
//!   transaction (autocommit, one connection) into a third fresh database.
//! * `outage`: 1,000,000 spans emitted while the server is down (the script stops it first);
//!   prints the process's peak RSS and the queue's byte cap.
//! * `visibility`: 10,000 spans/s for 20 s with the default flush interval; a poller on its own
//!   connection notes when each span's row first becomes visible; prints the p50/p99 latency
//!   from span close to row visible.
//!
//! ```sh
//! ./scripts/bench                                   # everything, a throwaway server
//! DATABASE_URL=... cargo bench --bench ingest -- ingest [spans]
//! ```
//! `PSQL` names the psql binary (default `psql` on `PATH`). For experiments, `TPG_CONNECTIONS`
//! and `TPG_BATCH` set the writer's connections and batch size in `ingest` (defaults: the
//! crate's, 3 and 10,000), `TPG_LOWER_PRIORITY=0` turns `lower_writer_priority` off, and
//! `TPG_LAYER_ONLY=1` stops after the layer's part (for alternating A/B runs of the writer).
//! `hot [spans]`, `hot-llm [spans]` and `provider [calls]` run one thread of the layer (the
//! hot-path bench's first or third workload) or of `log_llm_call` alone, for `perf record` or
//! callgrind; `hot` and `hot-llm` also print the thread's CPU time per span.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, PgPool, Row};
use tracing::dispatcher::with_default;
use tracing::{Dispatch, Level};
use tracing_postgres::{Builder, DEFAULT_FLUSH_INTERVAL, Uuid};
use tracing_subscriber::prelude::*;

#[path = "support/llm_span.rs"]
mod llm_span;
#[path = "support/thread_cpu.rs"]
mod thread_cpu;
use thread_cpu::thread_cpu_ns;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const THREADS: usize = 4;
/// Spans per root span (one `traces` row per this many `spans` rows).
const SPANS_PER_ROOT: usize = 1_000;
const PER_ROW_COMMIT_ROWS: usize = 20_000;

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// Creates and migrates a fresh database; returns its name and URL.
async fn fresh_database(admin: &PgPool, admin_url: &str, tag: &str) -> Res<(String, String)> {
    let name = format!("tpg_ingest_{tag}_{}", Uuid::now_v7().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin)
        .await?;
    let url = with_database(admin_url, &name);
    let pool = PgPool::connect(&url).await?;
    tracing_postgres::migrate(&pool).await?;
    pool.close().await;
    Ok((name, url))
}

async fn drop_database(admin: &PgPool, name: &str) -> Res<()> {
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(admin)
        .await?;
    Ok(())
}

async fn count_spans(conn: &mut PgConnection) -> Res<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM observability.spans")
            .fetch_one(conn)
            .await?,
    )
}

/// The span workload of the hot-path benchmark: a span with three fields and one event.
fn one_span(i: usize) {
    let span = tracing::info_span!(
        "handle_request",
        route = "/v1/chat",
        attempt = i as i64,
        score = 0.87_f64
    );
    let _entered = span.enter();
    tracing::info!(documents = 12_i64);
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn psql() -> String {
    std::env::var("PSQL").unwrap_or_else(|_| "psql".to_owned())
}

/// Runs one psql command; returns the wall time it took.
fn run_psql(url: &str, command: &str) -> Res<Duration> {
    let start = Instant::now();
    let out = Command::new(psql())
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            command,
        ])
        .output()?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "psql failed: {}: {}",
            command,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(took)
}

/// The writable (not generated) columns of `observability.spans`, with their SQL types.
async fn span_columns(conn: &mut PgConnection) -> Res<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'observability.spans'::regclass AND attnum > 0 \
         AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect())
}

async fn ingest(admin_url: &str, spans: usize) -> Res<Value> {
    let admin = PgPool::connect(admin_url).await?;
    let (db_a, url_a) = fresh_database(&admin, admin_url, "layer").await?;
    eprintln!("ingest: database {db_a}");

    // The queue holds every record: this measures the writer and the server, not the queue's
    // bound (the outage run measures that).
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    let (layer, guard) = Builder::new(&url_a)
        .connections(env("TPG_CONNECTIONS").unwrap_or(3))
        .batch_size(env("TPG_BATCH").unwrap_or(10_000) as usize)
        .lower_writer_priority(env("TPG_LOWER_PRIORITY") != Some(0))
        .queue_capacity(spans * 2 + 100_000)
        .max_queue_bytes(8 << 30)
        .shutdown_timeout(Duration::from_secs(600))
        .build_layer()?;
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    let mut watcher = PgConnection::connect(&url_a).await?;

    let per_thread = spans / THREADS;
    let start = Instant::now();
    let emitters: Vec<_> = (0..THREADS)
        .map(|_| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                with_default(&dispatch, || {
                    let mut i = 0;
                    while i < per_thread {
                        let root = tracing::info_span!("ingest_request", operation_type = "chat");
                        let _root = root.enter();
                        for _ in 0..SPANS_PER_ROOT.min(per_thread - i) {
                            one_span(i);
                            i += 1;
                        }
                    }
                })
            })
        })
        .collect();
    for e in emitters {
        e.join().map_err(|_| "an emitting thread panicked")?;
    }
    let emitted_in = start.elapsed();
    let expected = (per_thread * THREADS) as i64;
    // Committed, hence visible: the writer counts a record written once its transaction
    // commits (polling `count(*)` instead would take the server's CPU from the writer). The
    // count is checked with a SELECT below.
    loop {
        let s = layer.stats();
        if s.written + s.refused + s.dropped() >= s.enqueued {
            break;
        }
        if start.elapsed() > Duration::from_secs(1_200) {
            return Err(format!("not written in 1200 s: {s:?}").into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let visible_in = start.elapsed();
    let stats = layer.stats();
    drop(dispatch);
    drop(layer);
    let report = guard.shutdown(Duration::from_secs(60));
    let rows = count_spans(&mut watcher).await?;
    if rows < expected {
        eprintln!("ingest: WARNING only {rows} of {expected} span rows visible");
    }
    let layer_rate = rows as f64 / visible_in.as_secs_f64();
    eprintln!(
        "ingest: {rows} span rows visible in {:.2} s ({layer_rate:.0} rows/s; emitted in {:.2} s; \
         {} batches, {} dropped)",
        visible_in.as_secs_f64(),
        emitted_in.as_secs_f64(),
        stats.batches,
        report.dropped()
    );

    if std::env::var_os("TPG_LAYER_ONLY").is_some_and(|v| v == "1") {
        watcher.close().await?;
        drop_database(&admin, &db_a).await?;
        return Ok(json!({ "ingest_rows_per_s": { "pg_layer": layer_rate.round() } }));
    }
    // The ceiling: psql \copy of the very rows written, into an identical empty table.
    let cols = span_columns(&mut watcher).await?;
    let col_list = cols
        .iter()
        .map(|(c, _)| c.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let dir = std::env::temp_dir().join(format!("tpg_ingest_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // The server's owner may not be us: the file is written and read by psql, client side.
    let file = dir.join("spans.copy");
    let file_s = file.to_string_lossy().replace('\'', "''");
    let export = run_psql(
        &url_a,
        &format!("\\copy (SELECT {col_list} FROM observability.spans ORDER BY id) TO '{file_s}'"),
    )?;
    let (db_b, url_b) = fresh_database(&admin, admin_url, "copy").await?;
    let copy_took = run_psql(
        &url_b,
        &format!("\\copy observability.spans ({col_list}) FROM '{file_s}'"),
    )?;
    let mut check = PgConnection::connect(&url_b).await?;
    let copied = count_spans(&mut check).await?;
    check.close().await?;
    let copy_rate = copied as f64 / copy_took.as_secs_f64();
    eprintln!(
        "psql \\copy: {copied} rows in {:.2} s ({copy_rate:.0} rows/s; export took {:.2} s, {} MiB)",
        copy_took.as_secs_f64(),
        export.as_secs_f64(),
        std::fs::metadata(&file).map(|m| m.len() >> 20).unwrap_or(0)
    );

    // The spec's design: one INSERT per transaction, text parameters as a driver sends them.
    let text_cols = cols
        .iter()
        .map(|(c, _)| format!("{c}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let sample: Vec<Vec<Option<String>>> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {text_cols} FROM observability.spans ORDER BY id LIMIT {PER_ROW_COMMIT_ROWS}"
    )))
    .fetch_all(&mut watcher)
    .await?
    .iter()
    .map(|r| {
        (0..cols.len())
            .map(|i| r.get::<Option<String>, _>(i))
            .collect()
    })
    .collect();
    let (db_c, url_c) = fresh_database(&admin, admin_url, "perrow").await?;
    let params = cols
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!("INSERT INTO observability.spans ({col_list}) VALUES ({params})");
    let mut conn = PgConnection::connect(&url_c).await?;
    let per_row_start = Instant::now();
    for row in &sample {
        let mut q = sqlx::query(AssertSqlSafe(insert.as_str()));
        for v in row {
            q = q.bind(v.as_deref());
        }
        q.execute(&mut conn).await?;
    }
    let per_row_took = per_row_start.elapsed();
    let inserted = count_spans(&mut conn).await?;
    conn.close().await?;
    let per_row_rate = inserted as f64 / per_row_took.as_secs_f64();
    eprintln!(
        "one INSERT per transaction: {inserted} rows in {:.2} s ({per_row_rate:.0} rows/s)",
        per_row_took.as_secs_f64()
    );

    watcher.close().await?;
    let _ = std::fs::remove_dir_all(&dir);
    for db in [&db_a, &db_b, &db_c] {
        drop_database(&admin, db).await?;
    }
    Ok(json!({
        "ingest_rows_per_s": {
            "pg_layer": layer_rate.round(),
            "psql_copy": copy_rate.round(),
            "per_row_commit": per_row_rate.round(),
        },
        "ingest": {
            "spans": rows,
            "threads": THREADS,
            "emitted_s": emitted_in.as_secs_f64(),
            "visible_s": visible_in.as_secs_f64(),
            "batches": stats.batches,
            "dropped": report.dropped(),
            "psql_copy_rows": copied,
            "psql_copy_s": copy_took.as_secs_f64(),
            "per_row_commit_rows": inserted,
            "per_row_commit_s": per_row_took.as_secs_f64(),
            "pg_layer_over_psql_copy": layer_rate / copy_rate,
            "pg_layer_over_per_row_commit": layer_rate / per_row_rate,
        },
    }))
}

/// Spans emitted while the server is down: the queue's byte cap bounds the process's memory.
fn outage(url: &str, spans: usize, cap_mib: usize) -> Res<Value> {
    let before = peak_rss_mib();
    let (layer, guard) = Builder::new(url)
        .max_queue_bytes(cap_mib << 20)
        .shutdown_timeout(Duration::from_millis(500))
        .build_layer()?;
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    let per_thread = spans / THREADS;
    let emitters: Vec<_> = (0..THREADS)
        .map(|_| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                with_default(&dispatch, || {
                    let mut i = 0;
                    while i < per_thread {
                        let root = tracing::info_span!("outage_request", operation_type = "chat");
                        let _root = root.enter();
                        for _ in 0..SPANS_PER_ROOT.min(per_thread - i) {
                            one_span(i);
                            i += 1;
                        }
                    }
                })
            })
        })
        .collect();
    for e in emitters {
        e.join().map_err(|_| "an emitting thread panicked")?;
    }
    let stats = layer.stats();
    let peak = peak_rss_mib();
    drop(dispatch);
    drop(layer);
    let report = guard.shutdown(Duration::from_millis(500));
    eprintln!(
        "outage: {spans} spans emitted with the server down; queued {} ({} MiB by count), \
         dropped full {}; peak RSS {peak:.1} MiB (before: {before:.1} MiB), cap {cap_mib} MiB",
        stats.enqueued,
        stats.queued_bytes >> 20,
        stats.dropped_full
    );
    Ok(json!({
        "outage_peak_rss_mib": (peak * 10.0).round() / 10.0,
        "queue_cap_mib": cap_mib,
        "outage": {
            "spans": spans,
            "rss_before_mib": before,
            "enqueued": stats.enqueued,
            "dropped_full": stats.dropped_full,
            "queued_bytes_peak": stats.queued_bytes,
            "dropped_at_shutdown": report.dropped(),
        },
    }))
}

/// Latency from span close to row visible, at a steady 10,000 spans/s.
async fn visibility(admin_url: &str, rate: u64, seconds: u64) -> Res<Value> {
    let admin = PgPool::connect(admin_url).await?;
    let (db, url) = fresh_database(&admin, admin_url, "vis").await?;
    let (layer, guard) = Builder::new(&url).build_layer()?;
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    let total = (rate * seconds) as usize;
    let closed: Arc<Vec<std::sync::OnceLock<Instant>>> =
        Arc::new((0..total).map(|_| std::sync::OnceLock::new()).collect());
    let done = Arc::new(AtomicBool::new(false));
    let (trace_tx, trace_rx) = std::sync::mpsc::channel();
    let emitter = {
        let (closed, done) = (Arc::clone(&closed), Arc::clone(&done));
        std::thread::spawn(move || {
            with_default(&dispatch, || {
                let root = tracing::info_span!("visibility_request", operation_type = "chat");
                let _root = root.enter();
                let trace = tracing_postgres::TraceContext::current().map(|c| c.trace_id.as_uuid());
                let _ = trace_tx.send(trace.unwrap_or_default());
                let start = Instant::now();
                // Ticks of 1 ms, `rate / 1000` spans each.
                let per_tick = (rate / 1_000).max(1) as usize;
                let mut seq = 0;
                let mut tick = 0u64;
                while seq < total {
                    for _ in 0..per_tick.min(total - seq) {
                        {
                            let span = tracing::span!(
                                Level::INFO,
                                "probe",
                                seq = seq as i64,
                                route = "/v1/chat",
                                score = 0.5_f64
                            );
                            let _e = span.enter();
                        }
                        let _ = closed[seq].set(Instant::now());
                        seq += 1;
                    }
                    tick += 1;
                    let next = start + Duration::from_millis(tick);
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            });
            done.store(true, Relaxed);
        })
    };
    // Spans start in order on the one emitting thread, all in one trace: every row not seen yet
    // started no earlier than the last of the longest run of seen rows, so each poll reads only
    // new rows, through the (trace_id, started_at) index. (Span ids are random within their
    // trace, so they cannot be the watermark.)
    let trace = trace_rx.recv()?;
    let mut conn = PgConnection::connect(&url).await?;
    let mut seen: Vec<Option<Instant>> = vec![None; total];
    let mut contiguous = 0usize;
    let mut watermark = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let mut starts: BTreeMap<usize, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    while contiguous < total && Instant::now() < deadline {
        let rows = sqlx::query(
            "SELECT started_at, (metadata->>'seq')::int8 FROM observability.spans \
             WHERE trace_id = $1 AND started_at >= $2",
        )
        .bind(trace)
        .bind(watermark)
        .fetch_all(&mut conn)
        .await?;
        let now = Instant::now();
        for r in rows {
            let started: chrono::DateTime<chrono::Utc> = r.get(0);
            let Some(seq) = r.get::<Option<i64>, _>(1) else {
                continue;
            };
            let seq = seq as usize;
            if seq < total && seen[seq].is_none() {
                seen[seq] = Some(now);
                starts.insert(seq, started);
            }
        }
        while contiguous < total && seen[contiguous].is_some() {
            if let Some(started) = starts.remove(&contiguous) {
                watermark = watermark.max(started);
            }
            contiguous += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    emitter.join().map_err(|_| "the emitting thread panicked")?;
    let mut lat: Vec<f64> = (0..total)
        .filter_map(|i| {
            let c = closed[i].get()?;
            let s = seen[i]?;
            Some(s.saturating_duration_since(*c).as_secs_f64() * 1e3)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let missing = total - lat.len();
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (p50, p99, max) = (pct(0.5), pct(0.99), pct(1.0));
    drop(layer);
    let _ = guard.shutdown(Duration::from_secs(10));
    conn.close().await?;
    drop_database(&admin, &db).await?;
    eprintln!(
        "visibility at {rate} spans/s for {seconds} s: p50 {p50:.1} ms, p99 {p99:.1} ms, max \
         {max:.1} ms ({missing} never seen); flush interval {} ms",
        DEFAULT_FLUSH_INTERVAL.as_millis()
    );
    Ok(json!({
        "visibility_p99_ms": (p99 * 10.0).round() / 10.0,
        "flush_interval_ms": DEFAULT_FLUSH_INTERVAL.as_millis() as u64,
        "visibility": {
            "rate_per_s": rate,
            "seconds": seconds,
            "p50_ms": p50,
            "max_ms": max,
            "never_seen": missing,
        },
    }))
}

/// The third hot-path workload (an LLM span with four fields recorded late), its prompt
/// tokens varying with `i`.
fn llm_span(i: usize) {
    llm_span::llm_span_late_record(1_000 + (i % 1_000) as i64);
}

/// One thread running a hot-path workload (`one_span` or `llm_span`) under the layer alone,
/// for profiling (`perf record`): ns per span, with the writer running.
fn hot(url: &str, spans: usize, workload: fn(usize)) -> Res<Value> {
    let (layer, guard) = Builder::new(url)
        .queue_capacity(spans + 10_000)
        .max_queue_bytes(8 << 30)
        .shutdown_timeout(Duration::from_secs(600))
        .build_layer()?;
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    let (ns, cpu_ns) = with_default(&dispatch, || {
        let root = tracing::info_span!("hot_request", operation_type = "chat");
        let _root = root.enter();
        let start = Instant::now();
        let cpu = thread_cpu_ns();
        for i in 0..spans {
            workload(i);
        }
        let cpu_ns = (thread_cpu_ns() - cpu) as f64 / spans as f64;
        (start.elapsed().as_nanos() as f64 / spans as f64, cpu_ns)
    });
    eprintln!("hot: {ns:.0} ns per span, {cpu_ns:.0} ns of the thread's CPU");
    drop(dispatch);
    drop(layer);
    let report = guard.shutdown(Duration::from_secs(600));
    eprintln!("hot: written {}", report.written());
    Ok(json!({ "ns_per_span": ns, "cpu_ns_per_span": cpu_ns }))
}

/// One thread making explicit `log_llm_call`s, for profiling: ns per call, the writer running.
fn provider(url: &str, calls: usize) -> Res<Value> {
    use tracing_postgres::{Decimal, LlmCall, LlmMetrics, ObservabilityProvider, TraceContext};
    let (p, guard) = Builder::new(url)
        .queue_capacity(calls + 10_000)
        .max_queue_bytes(8 << 30)
        .shutdown_timeout(Duration::from_secs(600))
        .build()?;
    let ctx = TraceContext::new();
    let mut total = Duration::ZERO;
    for i in 0..calls {
        let call = LlmCall {
            name: Some("openai.chat".into()),
            metrics: LlmMetrics {
                model: Some("gpt-4o-mini".into()),
                prompt_tokens: Some(1_000 + i as i64 % 1_000),
                completion_tokens: Some(42),
                cost_usd: Some(Decimal::new(12, 5)),
                temperature: Some(0.2),
            },
            latency_ms: Some(350.0),
            ..LlmCall::default()
        };
        let t = Instant::now();
        std::hint::black_box(p.log_llm_call(&ctx, call));
        total += t.elapsed();
    }
    let ns = total.as_nanos() as f64 / calls as f64;
    drop(p);
    let report = guard.shutdown(Duration::from_secs(600));
    eprintln!(
        "provider: {ns:.0} ns per call (mean, timer included); written {}",
        report.written()
    );
    Ok(json!({ "ns_per_call": ns }))
}

#[tokio::main]
async fn main() -> Res<()> {
    // Positional arguments only: `cargo bench` adds `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mode = args.first().map_or("ingest", String::as_str);
    let n = |default: usize| {
        args.get(1)
            .and_then(|a| a.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL to a server where databases may be created")?;
    let out = match mode {
        "ingest" => ingest(&url, n(1_000_000)).await?,
        "outage" => {
            let cap = std::env::var("OUTAGE_QUEUE_MIB")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(64);
            // The writer's own runtime does the connecting: this thread only emits.
            tokio::task::block_in_place(|| outage(&url, n(1_000_000), cap))?
        }
        "visibility" => visibility(&url, 10_000, n(20) as u64).await?,
        "hot" => tokio::task::block_in_place(|| hot(&url, n(1_000_000), one_span))?,
        "hot-llm" => tokio::task::block_in_place(|| hot(&url, n(1_000_000), llm_span))?,
        "provider" => tokio::task::block_in_place(|| provider(&url, n(1_000_000)))?,
        other => return Err(format!("unknown mode {other}: ingest, outage or visibility").into()),
    };
    println!("{out}");
    Ok(())
}
