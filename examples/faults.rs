//! Fault scenarios against a real PostgreSQL that this harness stops, restarts, locks and
//! starves. Run by `./scripts/faults`, which provisions a throwaway server and exports how to
//! control it (`PG_BIN`, `PG_DATA`, `PG_LOG`, `PG_RUN_AS`, `DATABASE_URL`).
//!
//! ```sh
//! ./scripts/faults                      # every scenario, 10-minute soak
//! ./scripts/faults --quick              # soak shortened to 90 s
//! ./scripts/faults restart bad_row      # some scenarios
//! ```
//!
//! Writes `target/faults/summary.json` and exits non-zero when a scenario misses its promise.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, PgPool};
use tracing_postgres::*;
use tracing_subscriber::prelude::*;

static PANICS: AtomicU64 = AtomicU64::new(0);

/// The throwaway server, controlled with pg_ctl as its owner.
struct Server {
    bin: String,
    data: String,
    log: String,
    run_as: Vec<String>,
}

impl Server {
    fn from_env() -> Option<Server> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(Server {
            bin: var("PG_BIN")?,
            data: var("PG_DATA")?,
            log: var("PG_LOG")?,
            run_as: var("PG_RUN_AS")
                .map(|r| r.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    }

    fn pg_ctl(&self, args: &[&str]) {
        let exe = format!("{}/pg_ctl", self.bin);
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir("/")
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self) {
        self.pg_ctl(&["-D", &self.data, "-m", "immediate", "-w", "stop"]);
    }

    fn start(&self) {
        self.pg_ctl(&["-D", &self.data, "-l", &self.log, "-w", "-t", "60", "start"]);
    }
}

/// Log lines of the harness's own process (the writer's warnings land here).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn count(&self, needle: &str) -> usize {
        let text = self
            .0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        text.matches(needle).count()
    }
}

struct Env {
    admin: String,
    server: Option<Server>,
    log: Capture,
    rt: tokio::runtime::Runtime,
}

impl Env {
    /// A fresh, migrated database; returns its URL and a pool on it.
    fn database(&self) -> (String, PgPool) {
        self.rt.block_on(async {
            let name = format!("tpg_fault_{}", Uuid::now_v7().simple());
            let admin = PgPool::connect(&self.admin).await.expect("connect admin");
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .expect("create db");
            admin.close().await;
            let base = self
                .admin
                .rsplit_once('/')
                .map_or(self.admin.as_str(), |(b, _)| b);
            let url = format!("{base}/{name}");
            let pool = PgPool::connect(&url).await.expect("connect");
            migrate(&pool).await.expect("migrate");
            (url, pool)
        })
    }

    fn scalar(&self, pool: &PgPool, sql: &str) -> i64 {
        self.rt.block_on(async {
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
                .fetch_one(pool)
                .await
                .expect(sql)
        })
    }

    fn server(&self) -> &Server {
        self.server
            .as_ref()
            .expect("this scenario stops the server: run it through ./scripts/faults")
    }
}

fn llm(seq: i64) -> LlmCall {
    LlmCall {
        name: Some("fault.llm".into()),
        metrics: LlmMetrics {
            model: Some("m".into()),
            prompt_tokens: Some(seq),
            completion_tokens: Some(1),
            ..Default::default()
        },
        latency_ms: Some(1.0),
        ..LlmCall::default()
    }
}

/// Enqueue latencies of a load.
#[derive(Default)]
struct Load {
    emitted: i64,
    /// (seconds since start, microseconds of the call), one per call.
    calls: Vec<(f64, f64)>,
}

/// Emits `rate` records per second for `seconds`, numbering them from `first`.
fn run_load(p: &PostgresProvider, rate: u32, seconds: f64, first: i64) -> Load {
    let ctx = TraceContext::new();
    let start = Instant::now();
    let per_ms = (rate / 1000).max(1);
    let mut load = Load::default();
    let mut tick = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..per_ms {
            let record = llm(first + load.emitted);
            let t = Instant::now();
            p.log_llm_call(&ctx, record);
            let us = t.elapsed().as_secs_f64() * 1e6;
            load.calls.push((start.elapsed().as_secs_f64(), us));
            load.emitted += 1;
        }
        tick += 1;
        let next = start + Duration::from_millis(tick);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    load
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The server stopped for 10 s during a 5,000 records/s load.
fn restart(env: &Env) -> Value {
    let (url, pool) = env.database();
    let (p, guard) = Builder::new(&url).build().expect("build");
    let loader = std::thread::spawn(move || run_load(&p, 5_000, 25.0, 0));
    std::thread::sleep(Duration::from_secs(5));
    let down_at = Instant::now();
    env.server().stop();
    std::thread::sleep(Duration::from_secs(10));
    env.server().start();
    let outage = down_at.elapsed().as_secs_f64();
    let load = loader.join().expect("load thread");
    let report = guard.shutdown(Duration::from_secs(120));
    let pool = env.rt.block_on(async {
        pool.close().await;
        PgPool::connect(&url).await.expect("reconnect")
    });
    let rows = env.scalar(&pool, "SELECT count(*) FROM observability.spans");
    let distinct = env.scalar(
        &pool,
        "SELECT count(DISTINCT prompt_tokens) FROM observability.spans",
    );
    let normal: Vec<f64> = load
        .calls
        .iter()
        .filter(|(t, _)| *t < 4.5)
        .map(|c| c.1)
        .collect();
    let during: Vec<f64> = load
        .calls
        .iter()
        .filter(|(t, _)| *t >= 5.0 && *t <= 5.0 + outage)
        .map(|c| c.1)
        .collect();
    let bound = 10.0 * percentile(normal.clone(), 0.99);
    let slow_normal = normal.iter().filter(|us| **us > bound).count();
    let slow_during = during.iter().filter(|us| **us > bound).count();
    json!({
        "calls_over_10x_p99": {"normal": slow_normal, "normal_calls": normal.len(), "outage": slow_during, "outage_calls": during.len()},
        "emitted": load.emitted, "rows": rows, "duplicates": rows - distinct, "panics": PANICS.load(Ordering::Relaxed),
        "max_enqueue_us": during.iter().copied().fold(0.0, f64::max),
        "normal_max_enqueue_us": normal.iter().copied().fold(0.0, f64::max),
        "normal_p99_enqueue_us": percentile(normal, 0.99),
        "outage_p99_enqueue_us": percentile(during, 0.99),
        "dropped": report.dropped(), "retries": report.stats.retries,
        "ok": rows == load.emitted && distinct == load.emitted && report.dropped() == 0,
    })
}

/// The application starts while the server is down; the server comes up 10 s later.
fn start_down(env: &Env) -> Value {
    let (url, pool) = env.database();
    env.rt.block_on(pool.close());
    env.server().stop();
    let (p, guard) = Builder::new(&url).build().expect("build");
    let loader = std::thread::spawn(move || run_load(&p, 5_000, 15.0, 0));
    std::thread::sleep(Duration::from_secs(10));
    env.server().start();
    let load = loader.join().expect("load thread");
    let report = guard.shutdown(Duration::from_secs(120));
    let pool = env
        .rt
        .block_on(async { PgPool::connect(&url).await.expect("reconnect") });
    let rows = env.scalar(&pool, "SELECT count(*) FROM observability.spans");
    let distinct = env.scalar(
        &pool,
        "SELECT count(DISTINCT prompt_tokens) FROM observability.spans",
    );
    json!({
        "emitted": load.emitted, "rows": rows, "duplicates": rows - distinct, "panics": PANICS.load(Ordering::Relaxed),
        "dropped": report.dropped(),
        "ok": rows == load.emitted && distinct == load.emitted,
    })
}

/// A lock held on the spans table for 10 s during the load.
fn slow_db(env: &Env) -> Value {
    let (url, pool) = env.database();
    let (p, guard) = Builder::new(&url).build().expect("build");
    let loader = std::thread::spawn(move || run_load(&p, 5_000, 20.0, 0));
    std::thread::sleep(Duration::from_secs(5));
    env.rt.block_on(async {
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("LOCK TABLE observability.spans IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .expect("lock");
        tokio::time::sleep(Duration::from_secs(10)).await;
        tx.commit().await.expect("commit");
    });
    let load = loader.join().expect("load thread");
    let report = guard.shutdown(Duration::from_secs(120));
    let rows = env.scalar(&pool, "SELECT count(*) FROM observability.spans");
    let distinct = env.scalar(
        &pool,
        "SELECT count(DISTINCT prompt_tokens) FROM observability.spans",
    );
    let normal: Vec<f64> = load
        .calls
        .iter()
        .filter(|(t, _)| *t < 4.5)
        .map(|c| c.1)
        .collect();
    let locked: Vec<f64> = load
        .calls
        .iter()
        .filter(|(t, _)| *t >= 5.0 && *t <= 15.0)
        .map(|c| c.1)
        .collect();
    json!({
        "emitted": load.emitted, "rows": rows, "duplicates": rows - distinct, "panics": PANICS.load(Ordering::Relaxed),
        "max_enqueue_us": locked.iter().copied().fold(0.0, f64::max),
        "normal_p99_enqueue_us": percentile(normal, 0.99),
        "dropped": report.dropped(),
        "ok": rows == load.emitted && distinct == load.emitted,
    })
}

/// One record the database refuses, in the middle of a batch.
fn bad_row(env: &Env) -> Value {
    let (url, pool) = env.database();
    env.rt.block_on(async {
        sqlx::query("ALTER TABLE observability.spans ADD CONSTRAINT fault_no_poison CHECK (name <> 'poison')")
            .execute(&pool)
            .await
            .expect("constraint");
    });
    let (p, guard) = Builder::new(&url)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .expect("build");
    let ctx = TraceContext::new();
    let total = 10_000;
    for i in 0..total {
        let mut call = llm(i);
        if i == total / 2 {
            call.name = Some("poison".into());
        }
        p.log_llm_call(&ctx, call);
    }
    let report = guard.shutdown(Duration::from_secs(120));
    let rows = env.scalar(&pool, "SELECT count(*) FROM observability.spans");
    let distinct = env.scalar(
        &pool,
        "SELECT count(DISTINCT prompt_tokens) FROM observability.spans",
    );
    json!({
        "emitted": total - 1, "refused": report.stats.refused, "rows": rows, "duplicates": rows - distinct,
        "panics": PANICS.load(Ordering::Relaxed),
        "ok": rows == total - 1 && report.stats.refused == 1,
    })
}

/// An outage longer than the queue holds.
fn overflow(env: &Env) -> Value {
    let (url, pool) = env.database();
    env.rt.block_on(pool.close());
    let warnings_before = env.log.count("records dropped because the queue was full");
    env.server().stop();
    let (p, guard) = Builder::new(&url)
        .queue_capacity(20_000)
        .build()
        .expect("build");
    let ctx = TraceContext::new();
    let emitted: u64 = 60_000;
    for i in 0..emitted as i64 {
        p.log_llm_call(&ctx, llm(i));
        if i % 5_000 == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let during = guard.stats();
    env.server().start();
    let report = guard.shutdown(Duration::from_secs(120));
    let pool = env
        .rt
        .block_on(async { PgPool::connect(&url).await.expect("reconnect") });
    let rows = env.scalar(&pool, "SELECT count(*) FROM observability.spans");
    let warnings = env.log.count("records dropped because the queue was full") - warnings_before;
    json!({
        "emitted": emitted, "written": report.written(), "dropped": report.dropped(), "rows": rows,
        "dropped_full_during_outage": during.dropped_full, "warnings": warnings,
        "ok": report.written() + report.dropped() == emitted && rows as u64 == report.written() && report.dropped() > 0 && warnings >= 1,
    })
}

/// A role with only INSERT, UPDATE and SELECT on the tables (with TEMPORARY on the database and
/// EXECUTE on `create_partitions`) writes everything, starts and late ends included, and keeps
/// the partitions ahead.
fn least_privilege(env: &Env) -> Value {
    let (url, pool) = env.database();
    let db = url.rsplit('/').next().unwrap_or_default().to_owned();
    env.rt.block_on(async {
        for sql in [
            "DO $$ BEGIN CREATE ROLE tpg_writer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$".to_owned(),
            format!("GRANT CONNECT, TEMPORARY ON DATABASE {db} TO tpg_writer"),
            "GRANT USAGE ON SCHEMA observability TO tpg_writer".to_owned(),
            "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA observability TO tpg_writer".to_owned(),
            "GRANT EXECUTE ON FUNCTION observability.create_partitions(timestamptz, timestamptz, text) TO tpg_writer".to_owned(),
        ] {
            sqlx::query(AssertSqlSafe(sql)).execute(&pool).await.expect("grant");
        }
    });
    let writer_url = url.replacen("postgres://postgres@", "postgres://tpg_writer@", 1);
    // Partitions further ahead than `migrate` made: the writer must make them, as a role that
    // owns no table.
    let (p, guard) = Builder::new(&writer_url)
        .flush_interval(Duration::from_millis(50))
        .partitions(tracing_postgres::PartitionPolicy {
            ahead: 6,
            ..Default::default()
        })
        .build()
        .expect("build");
    let mut emitted = 0i64;
    for t in 0..200 {
        let ctx = TraceContext::new()
            .with_user(Uuid::now_v7())
            .with_session("s")
            .with_kb(Uuid::now_v7());
        p.start_trace(&ctx, "lp", OperationType::Chat, None);
        let span = p.start_span(&ctx, "long", SpanType::Retrieval, None);
        // The start goes out in one batch, the end in a later one: the end is an upsert.
        if t % 50 == 0 {
            std::thread::sleep(Duration::from_millis(120));
        }
        for i in 0..40 {
            p.log_llm_call(&ctx, llm(t * 100 + i));
        }
        p.end_span(&ctx, span, SpanEnd::default());
        p.log_chat_message(&ctx, ChatMessage::new(ChatRole::User, "q"));
        p.log_document_event(
            &ctx,
            DocumentEvent::new(
                Uuid::now_v7(),
                DocumentEventType::Upload,
                DocumentEventStatus::Completed,
            ),
        );
        p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
        emitted += 1 + 40 + 1 + 1 + 1;
    }
    let report = guard.shutdown(Duration::from_secs(120));
    let rows = env.scalar(
        &pool,
        "SELECT (SELECT count(*) FROM observability.traces WHERE status = 'success')
              + (SELECT count(*) FROM observability.spans WHERE status = 'success')
              + (SELECT count(*) FROM observability.chat_messages)
              + (SELECT count(*) FROM observability.document_events)",
    );
    let ahead = env.scalar(
        &pool,
        "SELECT count(*) FROM observability.partitions() \
         WHERE range_from <= now() + interval '6 days' AND range_to > now() + interval '6 days'",
    );
    // One partition per partitioned table covers the sixth day ahead.
    let tables = env.scalar(
        &pool,
        "SELECT count(*) FROM observability.partitioned_tables()",
    );
    json!({
        "emitted": emitted, "rows": rows, "refused": report.stats.refused, "dropped": report.dropped(),
        "retries": report.stats.retries, "last_error": report.stats.last_error.as_ref().map(ToString::to_string),
        "partitions_made_by_writer": ahead, "partitioned_tables": tables,
        "ok": rows == emitted && report.dropped() == 0 && ahead == tables && tables >= 6,
    })
}

/// Hostile input through the provider and the layer: every record is written or counted.
fn bad_input(env: &Env) -> Value {
    let (url, _pool) = env.database();
    let (layer, guard) = Builder::new(&url).build_layer().expect("build");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    let long = "x".repeat(10 << 20);
    let texts: Vec<String> = vec![
        "nul\0byte".into(),
        long.clone(),
        format!("{}😀", "a".repeat(499)),
        format!("{}😀", "a".repeat(999)),
        "quote ' \" back \\ tab \t newline \n".into(),
        "line\n\\.\nafter".into(),
        "'); DROP TABLE observability.spans; --".into(),
        "ünïcödé ✓ 中文".into(),
        String::new(),
    ];
    let numbers = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        1e300,
        -0.0,
    ];
    let mut deep = Value::Null;
    for _ in 0..10_000 {
        deep = Value::Array(vec![deep]);
    }
    // A case is one hostile value through one path (provider or layer, one kind of record).
    let mut cases = 0u64;
    let before = PANICS.load(Ordering::Relaxed);
    let ctx = TraceContext::new()
        .with_session("s\0")
        .with_user(Uuid::now_v7())
        .with_kb(Uuid::now_v7());
    for t in &texts {
        cases += 6;
        layer.log_llm_call(
            &ctx,
            LlmCall {
                name: Some(t.clone()),
                input_preview: Some(t.clone()),
                outcome: Outcome::error(t.clone(), t.clone()),
                metadata: Some(json!({ t.clone(): t.clone() })),
                metrics: LlmMetrics {
                    model: Some(t.clone()),
                    ..Default::default()
                },
                ..LlmCall::default()
            },
        );
        layer.log_chat_message(
            &ctx,
            ChatMessage::new(ChatRole::Custom(t.clone()), t.clone()),
        );
        tracing::dispatcher::with_default(&dispatch, || {
            let _root =
                tracing::info_span!("hostile", session_id = t.as_str(), user_id = t.as_str())
                    .entered();
            let _s = tracing::info_span!(
                "s",
                model = t.as_str(),
                "we\"ird.na me ü" = t.as_str(),
                query_text = t.as_str()
            )
            .entered();
            tracing::error!(error.message = t.as_str(), "x");
            tracing::info!(role = "user", content = t.as_str(), sources = t.as_str());
            tracing::info!(document_id = t.as_str(), event_type = t.as_str());
        });
    }
    for x in numbers {
        cases += 2;
        layer.log_llm_call(
            &ctx,
            LlmCall {
                metrics: LlmMetrics {
                    temperature: Some(x),
                    prompt_tokens: Some(x as i64),
                    completion_tokens: Some(-5),
                    cost_usd: Decimal::try_from(x).ok(),
                    ..Default::default()
                },
                latency_ms: Some(x),
                ..LlmCall::default()
            },
        );
        tracing::dispatcher::with_default(&dispatch, || {
            let _root = tracing::info_span!("numbers").entered();
            let _s = tracing::info_span!(
                "n",
                temperature = x,
                prompt_tokens = x,
                cost_usd = x,
                top_score = x,
                completion_tokens = u64::MAX
            )
            .entered();
        });
    }
    for metadata in [json!([1, 2]), json!("text"), json!(42), deep] {
        cases += 1;
        layer.log_llm_call(
            &ctx,
            LlmCall {
                metadata: Some(metadata),
                ..LlmCall::default()
            },
        );
    }
    let report = guard.shutdown(Duration::from_secs(120));
    let s = &report.stats;
    let accounted = s.written + s.rejected + s.refused + s.dropped();
    json!({
        "cases": cases, "panics": PANICS.load(Ordering::Relaxed) - before,
        "unaccounted": (s.enqueued + s.rejected + s.dropped_full + s.dropped_closed) as i64 - accounted as i64,
        "written": s.written, "rejected": s.rejected, "refused": s.refused,
        "ok": report.complete && PANICS.load(Ordering::Relaxed) == before,
    })
}

/// Runs the re-entrancy case in a child process, where the global default is real.
fn reentrancy(env: &Env) -> Value {
    let (url, _pool) = env.database();
    let exe = std::env::current_exe().expect("current exe");
    let started = Instant::now();
    let out = Command::new(exe)
        .arg("--child-reentrancy")
        .env("FAULT_DB", &url)
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("REENTRANCY "))
        .unwrap_or("{}");
    let mut v: Value = serde_json::from_str(line).unwrap_or(json!({}));
    v["completed"] = json!(out.status.success());
    v["seconds"] = json!(started.elapsed().as_secs_f64());
    let ok = out.status.success() && v["self_rows"] == json!(0);
    v["ok"] = json!(ok);
    v
}

fn child_reentrancy() {
    let url = std::env::var("FAULT_DB").expect("FAULT_DB");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (layer, guard) = Builder::new(&url)
        .attach_events(tracing::level_filters::LevelFilter::TRACE)
        .flush_interval(Duration::from_millis(10))
        .build_layer()
        .expect("build");
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("trace"))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(layer)
        .init();
    let requests = 2_000;
    let rss_before = rss_kib();
    let cpu = Instant::now();
    let pool = rt.block_on(async { PgPool::connect(&url).await.expect("connect") });
    rt.block_on(async {
        for i in 0..requests {
            let root = tracing::info_span!("app_request", i);
            let _r = root.enter();
            let _s = tracing::debug_span!("app_step", model = "m", prompt_tokens = 1_i64).entered();
            tracing::trace!(i, "application event at TRACE");
            let _: i64 = sqlx::query_scalar("SELECT $1::bigint")
                .bind(i)
                .fetch_one(&pool)
                .await
                .expect("query");
        }
    });
    let flushed = guard.flush(Duration::from_secs(60));
    let rows = rt.block_on(async {
        sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT count(*) FROM observability.traces WHERE name <> 'app_request')
                  + (SELECT count(*) FROM observability.spans WHERE name <> 'app_step')",
        )
        .fetch_one(&pool)
        .await
        .expect("count")
    });
    let app: i64 = rt.block_on(async {
        sqlx::query_scalar("SELECT (SELECT count(*) FROM observability.traces) + (SELECT count(*) FROM observability.spans)")
            .fetch_one(&pool)
            .await
            .expect("count")
    });
    println!(
        "REENTRANCY {}",
        json!({"self_rows": rows, "app_rows": app, "expected_app_rows": 2 * requests, "flushed": flushed,
               "seconds": cpu.elapsed().as_secs_f64(), "rss_growth_mib": (rss_kib() - rss_before) as f64 / 1024.0})
    );
    drop(guard);
    if rows != 0 || app != 2 * requests as i64 || !flushed {
        std::process::exit(1);
    }
}

fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// 5,000 spans/s through the layer; RSS growth after the first minute.
fn soak(env: &Env, seconds: u64) -> Value {
    let (url, pool) = env.database();
    let (layer, guard) = Builder::new(&url).build_layer().expect("build");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    let warmup = 60.min(seconds / 2);
    let start = Instant::now();
    let mut rss_at_warmup = None;
    let mut max_after = 0i64;
    let mut spans = 0u64;
    let mut tick = 0u64;
    tracing::dispatcher::with_default(&dispatch, || {
        while start.elapsed().as_secs() < seconds {
            // Each millisecond: one request of five spans (a trace and four spans).
            let _root = tracing::info_span!("soak_request", session_id = "s").entered();
            for i in 0..4_i64 {
                let _s = tracing::info_span!("soak_step", i, model = "m", prompt_tokens = 10_i64)
                    .entered();
            }
            drop(_root);
            spans += 5;
            tick += 1;
            if tick.is_multiple_of(1000) {
                let rss = rss_kib();
                if start.elapsed().as_secs() >= warmup {
                    rss_at_warmup.get_or_insert(rss);
                    max_after = max_after.max(rss);
                }
            }
            if let Some(wait) =
                (start + Duration::from_millis(tick)).checked_duration_since(Instant::now())
            {
                std::thread::sleep(wait);
            }
        }
    });
    let report = guard.shutdown(Duration::from_secs(120));
    let rows = env.scalar(&pool, "SELECT (SELECT count(*) FROM observability.traces) + (SELECT count(*) FROM observability.spans)");
    let growth = (max_after - rss_at_warmup.unwrap_or(max_after)) as f64 / 1024.0;
    json!({
        "seconds": seconds, "spans": spans, "rows": rows, "dropped": report.dropped(),
        "rss_growth_mib_after_warmup": growth, "rss_mib_end": rss_kib() as f64 / 1024.0,
        "ok": growth < 10.0 && rows as u64 == spans && report.dropped() == 0,
    })
}

fn main() {
    if std::env::args().any(|a| a == "--child-reentrancy") {
        child_reentrancy();
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        eprintln!("panic: {info}");
    }));
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--") || a == "--quick")
        .collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = [
        "restart",
        "start_down",
        "slow_db",
        "bad_row",
        "overflow",
        "bad_input",
        "reentrancy",
        "least_privilege",
        "soak",
    ];
    if chosen.is_empty() {
        chosen = all.to_vec();
    }
    let log = Capture::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let env = Env {
        admin: std::env::var("DATABASE_URL").expect("DATABASE_URL (run ./scripts/faults)"),
        server: Server::from_env(),
        log,
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    };
    let soak_seconds = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 90 } else { 600 });
    let mut summary = BTreeMap::new();
    let mut failed = Vec::new();
    for name in chosen {
        eprintln!("== {name}");
        let started = Instant::now();
        let result = match name {
            "restart" => restart(&env),
            "start_down" => start_down(&env),
            "slow_db" => slow_db(&env),
            "bad_row" => bad_row(&env),
            "overflow" => overflow(&env),
            "bad_input" => bad_input(&env),
            "reentrancy" => reentrancy(&env),
            "least_privilege" => least_privilege(&env),
            "soak" => soak(&env, soak_seconds),
            other => {
                eprintln!("unknown scenario {other}; known: {all:?}");
                std::process::exit(2);
            }
        };
        eprintln!("   {result} ({:.1} s)", started.elapsed().as_secs_f64());
        if result["ok"] != json!(true) {
            failed.push(name.to_owned());
        }
        summary.insert(name.to_owned(), result);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/faults");
    std::fs::create_dir_all(&dir).expect("target/faults");
    let text = serde_json::to_string_pretty(&summary).expect("json");
    std::fs::write(dir.join("summary.json"), &text).expect("write summary");
    println!("{text}");
    println!(
        "faults: {} passed, {} failed",
        summary.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        eprintln!("FAILED: {failed:?}");
        std::process::exit(1);
    }
}
