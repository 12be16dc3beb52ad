//! The cost on the application's thread of instrumented code under four subscribers, in one
//! run, against the PostgreSQL server in `DATABASE_URL` (a fresh database is created in it,
//! migrated, and dropped at the end):
//!
//! * `registry`: `tracing_subscriber::registry()` alone (behind a no-op layer), the floor;
//! * `pg_layer`: the registry and our `PostgresLayer`, its writer writing to the server;
//! * `otel`: the registry and `tracing-opentelemetry` over the SDK's `BatchSpanProcessor`,
//!   feeding an exporter that discards everything;
//! * `fmt_sink`: the registry and `tracing_subscriber::fmt` writing to `io::sink()`.
//!
//! Workloads (one criterion group each, one function per subscriber):
//!
//! * `span_3_fields_1_event`: a span with a `&str`, an `i64` and an `f64` field, entered, one
//!   `info!` event with one field inside, closed;
//! * `three_nested_spans`: three nested spans, each entered and closed;
//! * `llm_span_late_record`: an LLM span with six fields, four declared `field::Empty` and
//!   recorded late with `Span::record`.
//!
//! and `provider_call`: one explicit `ObservabilityProvider::log_llm_call` on the caller's
//! thread (the `LlmCall` is built outside the measured section).
//!
//! Criterion's estimates only reach its output files, so each configuration is also timed with
//! a plain loop (median of several runs) and the figures are printed as `SUMMARY {json}`,
//! together with criterion's medians when its files of this run are found. The loops also
//! report the measuring thread's CPU time per iteration: the wall time less the time it was
//! not running (its core taken by the writer, the server or anything else on the machine, or
//! the thread waiting, which the layer never does on purpose).
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench hot_path
//! DATABASE_URL=... cargo bench --bench hot_path -- --quick   # shorter
//! ```
//!
//! The writer writes on its own thread while the benchmark runs, as in production, so on a
//! small machine its work (and the server's) competes for the cores during `pg_layer`
//! measurements. It sustains far fewer rows per second than a thread emitting spans in a tight
//! loop, so its backlog is written (`WriterGuard::flush`) outside the measured sections:
//! between samples once it passes `BACKLOG_LIMIT` records, and after every `pg_layer`
//! measurement, so it never overlaps another subscriber's measurement. The queue is sized so
//! nothing is dropped (the counters are printed at the end).
//!
//! With a criterion filter, the plain loops still run for every configuration. For
//! experiments, `TPG_CONNECTIONS` sets the writer's connections (default 3).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, Criterion};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, PgPool};
use tracing::Dispatch;
use tracing::dispatcher::with_default;
use tracing_postgres::{
    Builder, Decimal, LlmCall, LlmMetrics, ObservabilityProvider, PostgresLayer, Stats,
    TraceContext, Uuid, WriterGuard,
};
use tracing_subscriber::layer::Identity;
use tracing_subscriber::prelude::*;

#[path = "support/llm_span.rs"]
mod llm_span;
#[path = "support/thread_cpu.rs"]
mod thread_cpu;
use thread_cpu::thread_cpu_ns;

const SUBSCRIBERS: [&str; 4] = ["registry", "pg_layer", "otel", "fmt_sink"];

/// Criterion samples per function.
const SAMPLE_SIZE: usize = 30;

/// Long enough for the backlog the writer accumulates during one measurement to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(900);

/// Records the writer may fall behind by before its backlog is written between two samples.
///
/// A thread emitting spans in a tight loop queues them far faster than the writer sustains
/// (tens of thousands of rows per second on a small machine, against hundreds of thousands of
/// spans per second here), so the backlog is written between samples, outside the measured
/// sections; otherwise it would grow to gigabytes, and the caller's thread would be measured
/// page-faulting fresh memory for every record, which no application whose writer keeps up
/// pays.
const BACKLOG_LIMIT: u64 = 500_000;

// ---------------------------------------------------------------------------------------------
// Workloads

struct Workload {
    name: &'static str,
    /// Spans created per iteration (for the OpenTelemetry export count).
    spans: u64,
    run: fn(),
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "span_3_fields_1_event",
        spans: 1,
        run: span_3_fields_1_event,
    },
    Workload {
        name: "three_nested_spans",
        spans: 3,
        run: three_nested_spans,
    },
    Workload {
        name: "llm_span_late_record",
        spans: 1,
        run: llm_span_late_record,
    },
];

fn span_3_fields_1_event() {
    let span = tracing::info_span!(
        "handle_request",
        route = black_box("/v1/chat"),
        attempt = black_box(2_i64),
        score = black_box(0.87_f64),
    );
    let _entered = span.enter();
    tracing::info!(documents = black_box(12_i64));
}

fn three_nested_spans() {
    let outer = tracing::info_span!("retrieve");
    let _outer = outer.enter();
    let middle = tracing::info_span!("embed_query");
    let _middle = middle.enter();
    let inner = tracing::info_span!("http_call");
    let _inner = inner.enter();
    // Dropped in reverse order: each guard exits its span, then the span closes.
}

fn llm_span_late_record() {
    llm_span::llm_span_late_record(1_200);
}

/// Runs `f` under `dispatch` inside a long-lived root span.
///
/// The root span is created and entered once, outside the measured loop, so the measured spans
/// are children of an existing trace, as in a real request: the root's own cost is not
/// measured, and what is measured is the per-span cost inside a trace (for `pg_layer`, one
/// `spans` row per measured span, inheriting the root's trace id and session id; the root's
/// `traces` row is written once, at its start and at its close).
fn in_root<R>(dispatch: &Dispatch, f: impl FnOnce() -> R) -> R {
    with_default(dispatch, || {
        let root = tracing::info_span!(
            "bench_request",
            operation_type = "chat",
            session_id = "bench-session"
        );
        let _root = root.enter();
        f()
    })
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry: the SDK's batch processor feeding an exporter that discards everything.

/// Spans handed to [`DiscardExporter`], to tell whether the batch processor dropped any.
static OTEL_EXPORTED: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
struct DiscardExporter;

impl SpanExporter for DiscardExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        OTEL_EXPORTED.fetch_add(batch.len() as u64, Relaxed);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL setup

/// `url` with its database replaced by `db` (user, host, port and parameters kept).
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

struct Database {
    rt: tokio::runtime::Runtime,
    admin: PgPool,
    name: String,
    url: String,
}

impl Database {
    fn create(admin_url: &str) -> Result<Database, Box<dyn std::error::Error>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let name = format!("tpg_bench_{}", Uuid::now_v7().simple());
        let url = with_database(admin_url, &name);
        let admin = rt.block_on(async {
            let admin = PgPool::connect(admin_url).await?;
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await?;
            let pool = PgPool::connect(&url).await?;
            tracing_postgres::migrate(&pool).await?;
            pool.close().await;
            Ok::<_, Box<dyn std::error::Error>>(admin)
        })?;
        Ok(Database {
            rt,
            admin,
            name,
            url,
        })
    }

    /// Rows in the tables, then the database dropped.
    fn count_and_drop(self) -> Result<(i64, i64), Box<dyn std::error::Error>> {
        self.rt.block_on(async {
            let pool = PgPool::connect(&self.url).await?;
            let spans: i64 = sqlx::query_scalar("SELECT count(*) FROM observability.spans")
                .fetch_one(&pool)
                .await?;
            let traces: i64 = sqlx::query_scalar("SELECT count(*) FROM observability.traces")
                .fetch_one(&pool)
                .await?;
            pool.close().await;
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE {} WITH (FORCE)",
                self.name
            )))
            .execute(&self.admin)
            .await?;
            Ok((spans, traces))
        })
    }
}

/// Our layer's writer, and the time spent writing its backlog outside measured sections.
struct Pg {
    layer: PostgresLayer,
    guard: WriterGuard,
    flushing: Cell<Duration>,
}

impl Pg {
    /// Writes the backlog, outside any measured section.
    fn flush(&self) -> bool {
        let start = Instant::now();
        let done = self.guard.flush(FLUSH_TIMEOUT);
        self.flushing.set(self.flushing.get() + start.elapsed());
        done
    }

    /// Writes the backlog when the writer has fallen [`BACKLOG_LIMIT`] records behind.
    fn settle(&self) {
        if self.layer.stats().pending() > BACKLOG_LIMIT {
            self.flush();
        }
    }

    /// Writes the backlog and reports it, after a `pg_layer` measurement.
    fn flush_after(&self, what: &str) {
        let before = self.layer.stats();
        let start = Instant::now();
        let done = self.flush();
        eprintln!(
            "pg_layer after {what}: backlog {} records (~{} MiB) written in {:.1} s{}",
            before.pending(),
            before.queued_bytes >> 20,
            start.elapsed().as_secs_f64(),
            if done { "" } else { " (FLUSH TIMED OUT)" },
        );
    }
}

fn print_stats(stats: &Stats) {
    eprintln!(
        "pg_layer stats: enqueued {}, written {}, dropped {} (full {}, closed {}, unwritten {}), \
         rejected {}, refused {}, retries {}, batches {}, last error {:?}",
        stats.enqueued,
        stats.written,
        stats.dropped(),
        stats.dropped_full,
        stats.dropped_closed,
        stats.dropped_unwritten,
        stats.rejected,
        stats.refused,
        stats.retries,
        stats.batches,
        stats.last_error,
    );
}

// ---------------------------------------------------------------------------------------------
// Plain timing

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Wall and CPU nanoseconds per iteration of `work` under each dispatch (the calling thread's
/// CPU time: the wall time less the time it was not running): the medians of `runs` timed runs
/// of `iters` iterations each. The subscribers take turns run by run, so a change in the
/// machine's load during the loops touches them all alike. Each run is in a root span of its
/// own, its first preceded by a warm-up of a tenth of a run; `between(k)` is called after each
/// run of dispatch `k` (and after its warm-up), outside the timed sections.
fn timed_loops(
    dispatches: &[Dispatch],
    work: fn(),
    iters: u64,
    runs: usize,
    between: &dyn Fn(usize),
) -> (Vec<f64>, Vec<f64>) {
    let mut samples = vec![Vec::with_capacity(runs); dispatches.len()];
    let mut cpu_samples = vec![Vec::with_capacity(runs); dispatches.len()];
    for run in 0..runs {
        for (k, dispatch) in dispatches.iter().enumerate() {
            let (ns, cpu_ns) = in_root(dispatch, || {
                if run == 0 {
                    for _ in 0..iters / 10 {
                        work();
                    }
                    between(k);
                }
                let start = Instant::now();
                let cpu = thread_cpu_ns();
                for _ in 0..iters {
                    work();
                }
                let cpu_ns = thread_cpu_ns().saturating_sub(cpu) as f64 / iters as f64;
                (start.elapsed().as_nanos() as f64 / iters as f64, cpu_ns)
            });
            between(k);
            samples[k].push(ns);
            cpu_samples[k].push(cpu_ns);
        }
    }
    (
        samples.into_iter().map(median).collect(),
        cpu_samples.into_iter().map(median).collect(),
    )
}

fn llm_call(i: i64) -> LlmCall {
    LlmCall {
        name: Some("openai.chat".into()),
        metrics: LlmMetrics {
            model: Some("gpt-4o-mini".into()),
            prompt_tokens: Some(1_000 + i % 1_000),
            completion_tokens: Some(42),
            cost_usd: Some(Decimal::new(12, 5)),
            temperature: Some(0.2),
        },
        latency_ms: Some(350.0),
        ..LlmCall::default()
    }
}

/// The caller's cost of single calls, each timed alone, minus the timer's own median cost.
struct CallTimes {
    p50: u64,
    p99: u64,
    mean: f64,
    timer: u64,
}

/// Times `samples` single `log_llm_call`s.
fn provider_call_times(layer: &PostgresLayer, samples: usize) -> CallTimes {
    let ctx = TraceContext::new();
    let mut empty = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        empty.push(black_box(t).elapsed().as_nanos() as u64);
    }
    empty.sort_unstable();
    let timer = percentile(&empty, 0.5);
    let mut calls = Vec::with_capacity(samples);
    for i in 0..samples as i64 {
        let call = llm_call(i);
        let t = Instant::now();
        black_box(layer.log_llm_call(&ctx, call));
        calls.push((t.elapsed().as_nanos() as u64).saturating_sub(timer));
    }
    calls.sort_unstable();
    CallTimes {
        p50: percentile(&calls, 0.5),
        p99: percentile(&calls, 0.99),
        mean: calls.iter().sum::<u64>() as f64 / samples as f64,
        timer,
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion's estimates

/// Criterion's estimates of one function, in ns per iteration.
#[derive(Debug, Clone, Copy)]
struct CritEstimate {
    /// The slope of time over iterations across its samples: the figure criterion prints as
    /// `time` for linearly sampled benchmarks.
    slope: f64,
    /// The median of the samples' per-iteration means (its `median` estimate).
    median: f64,
}

impl CritEstimate {
    /// Computed from the `(iterations, time)` pairs of the samples, as criterion does
    /// (an ordinary least-squares line through the origin, and a median).
    fn from_samples(samples: &[(u64, Duration)]) -> Option<CritEstimate> {
        if samples.is_empty() {
            return None;
        }
        let (mut xy, mut xx) = (0.0, 0.0);
        for (iters, time) in samples {
            let (x, y) = (*iters as f64, time.as_nanos() as f64);
            xy += x * y;
            xx += x * x;
        }
        let per_iter = samples
            .iter()
            .map(|(iters, time)| time.as_nanos() as f64 / *iters as f64)
            .collect();
        Some(CritEstimate {
            slope: xy / xx,
            median: median(per_iter),
        })
    }

    /// Read back from criterion's `estimates.json`, when written between `from` and `to`.
    fn from_file(group: &str, function: &str, from: SystemTime, to: SystemTime) -> Option<Self> {
        let path = criterion_dir()
            .join(group)
            .join(function)
            .join("new")
            .join("estimates.json");
        let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
        if modified < from || modified > to {
            return None;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        let median = v["median"]["point_estimate"].as_f64()?;
        Some(CritEstimate {
            slope: v["slope"]["point_estimate"].as_f64().unwrap_or(median),
            median,
        })
    }
}

/// Where criterion writes (as criterion finds it: `CRITERION_HOME`, else the target directory).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The bench binary is target/<profile>/deps/hot_path-<hash>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Per-subscriber figures as JSON, rounded to 0.1 ns.
fn by_subscriber(ns: &BTreeMap<&str, f64>) -> Value {
    ns.iter()
        .map(|(k, v)| ((*k).to_owned(), json!(round1(*v))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// One line of per-subscriber loop figures and the two ratios of the targets.
fn print_loop_line(workload: &str, what: &str, ns: &BTreeMap<&str, f64>) {
    println!(
        "{workload:<22} {what} registry {:.1}, pg_layer {:.1}, otel {:.1}, fmt_sink {:.1}; \
         pg_layer/otel {:.2}, pg_layer/registry {:.2}",
        ns["registry"],
        ns["pg_layer"],
        ns["otel"],
        ns["fmt_sink"],
        ns["pg_layer"] / ns["otel"],
        ns["pg_layer"] / ns["registry"],
    );
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_owned(),
    }
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.1}"))
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib >> 10)
}

// ---------------------------------------------------------------------------------------------

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    // Parsed first, so `--help` and bad arguments exit before a database is created.
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(SAMPLE_SIZE)
        .configure_from_args();
    let flag = |f: &str| std::env::args().any(|a| a == f);
    if flag("--list") {
        for w in &WORKLOADS {
            for sub in SUBSCRIBERS {
                println!("{}/{sub}: benchmark", w.name);
            }
        }
        println!("provider_call/log_llm_call: benchmark");
        return Ok(());
    }
    // The routine's last calls are criterion's samples: 30 of them, or 2 in quick mode; in
    // test and profile modes there are none.
    let criterion_samples = if flag("--test") || flag("--profile-time") {
        0
    } else if flag("--quick") {
        2
    } else {
        SAMPLE_SIZE
    };
    let (loop_iters, loop_runs, provider_samples): (u64, usize, usize) = if flag("--test") {
        (1_000, 1, 1_000)
    } else if flag("--quick") {
        (50_000, 3, 100_000)
    } else {
        (200_000, 5, 100_000)
    };

    let admin_url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL to a PostgreSQL server where databases may be created")?;
    let db = Database::create(&admin_url)?;
    eprintln!("database {} created and migrated", db.name);

    // The queue must never fill, by records or by bytes: it holds the largest backlog one
    // criterion call can leave (a warm-up or sample call of up to a second or so, before
    // `settle` writes it) many times over. Writer settings are otherwise the defaults.
    let (layer, guard) = Builder::new(&db.url)
        .queue_capacity(4_000_000)
        .max_queue_bytes(16 << 30)
        .shutdown_timeout(FLUSH_TIMEOUT)
        // For experiments only; the default is 3.
        .connections(
            std::env::var("TPG_CONNECTIONS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3),
        )
        .build_layer()?;
    let pg = Pg {
        layer,
        guard,
        flushing: Cell::new(Duration::ZERO),
    };

    let otel_provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(DiscardExporter).build())
        .build();
    let tracer = otel_provider.tracer("hot_path");

    let dispatches: [Dispatch; 4] = [
        // The registry behind a layer that does nothing: a bare `Registry` used as the
        // subscriber never frees a closed span (only `Layered` runs its close guard), so it
        // would leak every span and pay for fresh memory on each, which no real stack does.
        Dispatch::new(tracing_subscriber::registry().with(Identity::new())),
        Dispatch::new(tracing_subscriber::registry().with(pg.layer.clone())),
        Dispatch::new(
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer)),
        ),
        Dispatch::new(
            tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink)),
        ),
    ];

    // Per workload: subscriber -> ns/iteration from the plain loops (wall and the thread's CPU),
    // and criterion's estimates.
    let mut loops: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    let mut loops_cpu: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    let mut crit: BTreeMap<&str, BTreeMap<&str, Option<CritEstimate>>> = BTreeMap::new();
    let mut otel_drops: BTreeMap<&str, i64> = BTreeMap::new();

    for w in &WORKLOADS {
        let mut group = c.benchmark_group(w.name);
        let mut estimates = BTreeMap::new();
        for (sub, dispatch) in SUBSCRIBERS.iter().zip(&dispatches) {
            let is_pg = *sub == "pg_layer";
            // Every call's (iterations, measured time): its last calls are criterion's samples,
            // so its estimates are computed here rather than read back from its files.
            let mut calls: Vec<(u64, Duration)> = Vec::new();
            in_root(dispatch, || {
                // `iter_custom` times exactly what `iter` would (a loop of `iters` calls), and
                // lets the writer's backlog be written after the timed loop, unmeasured.
                group.bench_function(*sub, |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            (w.run)();
                        }
                        let elapsed = start.elapsed();
                        calls.push((iters, elapsed));
                        if is_pg {
                            pg.settle();
                        }
                        elapsed
                    })
                });
            });
            let samples = (criterion_samples > 0 && calls.len() >= criterion_samples)
                .then(|| &calls[calls.len() - criterion_samples..]);
            estimates.insert(*sub, samples.and_then(CritEstimate::from_samples));
            if is_pg {
                pg.flush_after(&format!("criterion {}", w.name));
            }
        }
        crit.insert(w.name, estimates);
        group.finish();

        let _ = otel_provider.force_flush();
        let exported_before = OTEL_EXPORTED.load(Relaxed);
        let between = |k: usize| {
            if SUBSCRIBERS[k] == "pg_layer" {
                pg.flush();
            }
        };
        let (ns, cpu_ns) = timed_loops(&dispatches, w.run, loop_iters, loop_runs, &between);
        pg.flush_after(&format!("timed loops {}", w.name));
        let _ = otel_provider.force_flush();
        // The measured spans, the warm-up's and one root per run.
        let created =
            w.spans * (loop_iters / 10 + loop_iters * loop_runs as u64) + loop_runs as u64;
        let exported = OTEL_EXPORTED.load(Relaxed) - exported_before;
        otel_drops.insert(w.name, created as i64 - exported as i64);
        let per_sub: BTreeMap<&str, f64> = SUBSCRIBERS.iter().copied().zip(ns).collect();
        loops.insert(w.name, per_sub);
        loops_cpu.insert(w.name, SUBSCRIBERS.iter().copied().zip(cpu_ns).collect());
    }

    // The explicit provider call, on the caller's thread, against the same writer and server.
    // `iter_batched` builds each batch's `LlmCall`s before its timed section; criterion's
    // estimate is read back from its file (when written during this group).
    let (provider_from, provider_to);
    {
        let ctx = TraceContext::new();
        provider_from = SystemTime::now();
        let mut group = c.benchmark_group("provider_call");
        let mut i = 0_i64;
        group.bench_function("log_llm_call", |b| {
            b.iter_batched(
                || {
                    // The setup runs before each batch's timed section.
                    i += 1;
                    if i % 4096 == 0 {
                        pg.settle();
                    }
                    llm_call(i)
                },
                |call| pg.layer.log_llm_call(&ctx, call),
                BatchSize::SmallInput,
            )
        });
        group.finish();
        provider_to = SystemTime::now();
        pg.flush_after("criterion provider_call");
    }
    let calls = provider_call_times(&pg.layer, provider_samples);
    pg.flush_after("timed provider calls");

    c.final_summary();

    // Summary: the plain loops, criterion's estimates, the ratios.
    let mut workloads = serde_json::Map::new();
    println!();
    for w in &WORKLOADS {
        let l = &loops[w.name];
        let cpu = &loops_cpu[w.name];
        let slope = |s: &str| crit[w.name][s].map(|e| e.slope);
        print_loop_line(w.name, "loop ns/iter:     ", l);
        print_loop_line("", "loop CPU ns/iter: ", cpu);
        println!(
            "{:<22} criterion ns/iter: registry {}, pg_layer {}, otel {}, fmt_sink {}; \
             pg_layer/otel {}, pg_layer/registry {}",
            "",
            fmt_opt(slope("registry")),
            fmt_opt(slope("pg_layer")),
            fmt_opt(slope("otel")),
            fmt_opt(slope("fmt_sink")),
            fmt_ratio(slope("pg_layer"), slope("otel")),
            fmt_ratio(slope("pg_layer"), slope("registry")),
        );
        let criterion_ns: serde_json::Map<String, Value> = crit[w.name]
            .iter()
            .map(|(k, e)| {
                let v = e.map(|e| json!({ "slope": round1(e.slope), "median": round1(e.median) }));
                ((*k).to_owned(), v.unwrap_or(Value::Null))
            })
            .collect();
        workloads.insert(
            w.name.to_owned(),
            json!({
                "registry": round1(l["registry"]),
                "pg_layer": round1(l["pg_layer"]),
                "otel": round1(l["otel"]),
                "fmt_sink": round1(l["fmt_sink"]),
                "pg_layer_over_otel": round3(l["pg_layer"] / l["otel"]),
                "pg_layer_over_registry": round3(l["pg_layer"] / l["registry"]),
                "cpu_ns": by_subscriber(cpu),
                "criterion_ns": criterion_ns,
                "otel_spans_dropped": otel_drops.get(w.name),
            }),
        );
    }
    let provider_crit =
        CritEstimate::from_file("provider_call", "log_llm_call", provider_from, provider_to);
    println!(
        "{:<22} log_llm_call p50 {} ns, p99 {} ns, mean {:.0} ns ({provider_samples} calls, \
         timer {} ns subtracted); criterion {} ns/iter",
        "provider_call",
        calls.p50,
        calls.p99,
        calls.mean,
        calls.timer,
        fmt_opt(provider_crit.map(|e| e.slope)),
    );

    let stats = pg.layer.stats();
    print_stats(&stats);
    let flushing = pg.flushing.get();
    drop(dispatches);
    let Pg { layer, guard, .. } = pg;
    drop(layer);
    let report = guard.shutdown(FLUSH_TIMEOUT);
    eprintln!(
        "pg_layer shutdown: written {}, dropped {}, complete {}",
        report.written(),
        report.dropped(),
        report.complete
    );
    let _ = otel_provider.shutdown();
    let (span_rows, trace_rows) = db.count_and_drop()?;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "rows written: {span_rows} spans, {trace_rows} traces; peak RSS {} MiB; \
         {:.0} s of {elapsed:.0} s spent writing backlogs outside measurements",
        peak_rss_mib().map_or("?".into(), |m| m.to_string()),
        flushing.as_secs_f64(),
    );

    let a = &loops[WORKLOADS[0].name];
    let a_cpu = &loops_cpu[WORKLOADS[0].name];
    let summary = json!({
        "hot_path_ns": by_subscriber(a),
        // The same loops' CPU time on the measuring thread: what the layer itself costs it,
        // without what the writer and the server took of its core meanwhile.
        "hot_path_cpu_ns": by_subscriber(a_cpu),
        "workloads": workloads,
        "provider_call_ns": {
            "p50": calls.p50,
            "p99": calls.p99,
            "mean": round1(calls.mean),
            "timer": calls.timer,
            "criterion": provider_crit.map(|e| json!({ "slope": round1(e.slope), "median": round1(e.median) })),
        },
        "loop": { "iterations": loop_iters, "runs": loop_runs },
        "pg_layer_stats": {
            "enqueued": stats.enqueued,
            "written": report.written(),
            "dropped": report.dropped(),
            "rejected": report.stats.rejected,
            "refused": report.stats.refused,
        },
        "elapsed_s": elapsed.round(),
    });
    println!("SUMMARY {summary}");
    Ok(())
}
