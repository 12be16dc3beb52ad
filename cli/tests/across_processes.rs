//! One trace across two real processes: an "api" that handles an upload, calls a "worker" over
//! loopback HTTP with `traceparent`, and enqueues a document job in a PostgreSQL table, which
//! the worker picks up later and ingests. Each process has its own writer. Afterwards the
//! database holds one trace, drawn as one tree by `tracing-postgres show`.
//!
//! The two processes are this test binary run again with `TPG_ROLE` set: the `role_*` tests
//! below do nothing otherwise.
use tracing_postgres_test_support as common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fresh_db;
use sqlx::Row;
use tracing::Span;
use tracing_postgres::{Builder, SpanExt, TraceParent};
use tracing_subscriber::prelude::*;
use uuid::Uuid;

const FLUSH: Duration = Duration::from_secs(30);
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs this binary's test `name` as a process of its own, with `env`.
fn spawn_role(name: &str, env: &[(&str, String)]) -> Role {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Role(cmd.spawn().expect("spawn a role"))
}

/// A role's process, killed if the test fails before it ends (so a failure never leaves a
/// process waiting for a call that will not come).
struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Role {
    /// The value the role printed as `KEY value` on its stdout (the test harness prints on
    /// the same line, before it: `test role_api ... KEY value`).
    fn read_value(&mut self, key: &str) -> String {
        let out = self.0.stdout.as_mut().expect("piped stdout");
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let marker = format!("{key} ");
        loop {
            line.clear();
            let n = reader.read_line(&mut line).expect("read the role's output");
            assert!(n > 0, "the role ended without printing {key}");
            if let Some((_, v)) = line.trim_end().split_once(&marker) {
                return v.to_owned();
            }
        }
    }

    /// Waits for the role to end; true when it passed.
    fn passed(&mut self) -> bool {
        self.0.wait().expect("wait for the role").success()
    }
}

/// A runtime of its own for the roles' blocking calls to the job queue.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The role's layer as its global subscriber; the guard flushes at the end.
fn install(url: &str) -> tracing_postgres::WriterGuard {
    let (layer, guard) = Builder::new(url).build_layer().expect("a layer");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("the role's subscriber");
    guard
}

/// The `traceparent` header of an HTTP request read from `stream` (names are
/// case-insensitive).
fn read_traceparent(stream: &mut TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut found = None;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            return found;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("traceparent")
        {
            found = Some(value.trim().to_owned());
        }
    }
}

/// The first connection to `listener`; panics (failing the role) when none comes in time.
fn accept_within(listener: &TcpListener, patience: Duration) -> TcpStream {
    listener.set_nonblocking(true).expect("non-blocking accept");
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("a blocking stream");
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < patience, "the api never called");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// The worker: answers one search request inside the caller's trace, then ingests the first
/// ready job inside the trace named by the job's payload.
#[test]
fn role_worker() {
    if std::env::var("TPG_ROLE").as_deref() != Ok("worker") {
        return;
    }
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let guard = install(&url);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    println!(
        "PORT {}",
        listener.local_addr().expect("its address").port()
    );
    std::io::stdout().flush().expect("stdout");

    let mut stream = accept_within(&listener, PATIENCE);
    let traceparent = read_traceparent(&mut stream).expect("a traceparent header");
    {
        let span = tracing::info_span!("worker.search", traceparent = %traceparent);
        let _in = span.enter();
        tracing::info_span!(
            "embed_query",
            model = "text-embedding-3-small",
            prompt_tokens = 20,
            cost_usd = 0.0004
        )
        .in_scope(|| {});
    }
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .expect("answer");
    drop(stream);

    let rt = runtime();
    let pool = rt
        .block_on(sqlx::PgPool::connect(&url))
        .expect("the job queue");
    let start = Instant::now();
    let (job, payload): (i32, serde_json::Value) = loop {
        let next = rt
            .block_on(
                sqlx::query_as(
                    "SELECT id, payload FROM public.jobs WHERE ready AND NOT done ORDER BY id LIMIT 1",
                )
                .fetch_optional(&pool),
            )
            .expect("poll the jobs");
        if let Some(job) = next {
            break job;
        }
        assert!(start.elapsed() < PATIENCE, "no job came");
        std::thread::sleep(Duration::from_millis(50));
    };
    let traceparent = payload["traceparent"]
        .as_str()
        .expect("the job's traceparent");
    let document_id = payload["document_id"].as_str().expect("the job's document");
    {
        let span = tracing::info_span!("worker.ingest", traceparent = %traceparent);
        let _in = span.enter();
        tracing::info!(
            document_id,
            event_type = "parse",
            status = "success",
            extracted_pages = 3
        );
        tracing::info!(
            document_id,
            event_type = "chunk",
            status = "success",
            chunks_created = 12
        );
        tracing::info_span!(
            "embed_chunks",
            model = "text-embedding-3-small",
            prompt_tokens = 300,
            cost_usd = 0.006
        )
        .in_scope(|| {
            tracing::info!(
                document_id,
                event_type = "embed",
                status = "success",
                vectors_generated = 12
            );
        });
    }
    rt.block_on(
        sqlx::query("UPDATE public.jobs SET done = true WHERE id = $1")
            .bind(job)
            .execute(&pool),
    )
    .expect("mark the job done");
    assert!(guard.flush(FLUSH));
}

/// The api: one upload request. It calls the worker's search and enqueues the ingestion, the
/// job ready at once (`TPG_JOB_READY=1`; then it waits for the job before its request ends)
/// or later, when the test says so.
#[test]
fn role_api() {
    if std::env::var("TPG_ROLE").as_deref() != Ok("api") {
        return;
    }
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let port = std::env::var("TPG_WORKER_PORT").expect("the worker's port");
    let ready = std::env::var("TPG_JOB_READY").as_deref() == Ok("1");
    let guard = install(&url);
    let rt = runtime();
    let pool = rt
        .block_on(sqlx::PgPool::connect(&url))
        .expect("the job queue");
    {
        let root = tracing::info_span!("api.upload");
        let _root = root.enter();
        tracing::info_span!(
            "plan",
            model = "gpt-4o-mini",
            prompt_tokens = 40,
            completion_tokens = 10,
            cost_usd = 0.0001
        )
        .in_scope(|| {});
        tracing::info_span!("call_worker").in_scope(|| {
            let tp = Span::current().traceparent().expect("recorded by our layer");
            let mut s = TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("a port")))
                .expect("the worker");
            write!(
                s,
                "GET /search HTTP/1.1\r\nhost: 127.0.0.1\r\ntraceparent: {tp}\r\nconnection: close\r\n\r\n"
            )
            .expect("the request");
            let mut answer = String::new();
            s.read_to_string(&mut answer).expect("the answer");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        });
        let job: i32 = tracing::info_span!("enqueue_ingest").in_scope(|| {
            let tp = Span::current()
                .traceparent()
                .expect("recorded by our layer");
            let payload = serde_json::json!({
                "traceparent": tp.to_string(),
                "document_id": Uuid::now_v7().to_string(),
            });
            rt.block_on(
                sqlx::query_scalar(
                    "INSERT INTO public.jobs (payload, ready) VALUES ($1, $2) RETURNING id",
                )
                .bind(payload)
                .bind(ready)
                .fetch_one(&pool),
            )
            .expect("enqueue")
        });
        if ready {
            // The worker ingests while this request is still open, and finishes first.
            let start = Instant::now();
            while !rt
                .block_on(
                    sqlx::query_scalar::<_, bool>("SELECT done FROM public.jobs WHERE id = $1")
                        .bind(job)
                        .fetch_one(&pool),
                )
                .expect("poll the job")
            {
                assert!(start.elapsed() < PATIENCE, "the job was not done");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let trace = TraceParent::parse(&Span::current().traceparent().expect("ours").to_string())
            .expect("valid");
        println!("TRACE {}", trace.trace_id);
    }
    assert!(guard.flush(FLUSH));
}

/// Runs the api and the worker against a fresh database; `worker_last`: the job becomes ready
/// only once the api has ended (flushed and exited), so the worker's share lands last.
async fn across_processes(worker_last: bool) {
    let db = fresh_db().await;
    sqlx::query(
        "CREATE TABLE public.jobs (id serial PRIMARY KEY, payload jsonb NOT NULL, \
         ready boolean NOT NULL, done boolean NOT NULL DEFAULT false)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let url = db.url.clone();
    let mut worker = spawn_role(
        "role_worker",
        &[("TPG_ROLE", "worker".into()), ("DATABASE_URL", url.clone())],
    );
    let port = worker.read_value("PORT");
    let mut api = spawn_role(
        "role_api",
        &[
            ("TPG_ROLE", "api".into()),
            ("DATABASE_URL", url.clone()),
            ("TPG_WORKER_PORT", port),
            ("TPG_JOB_READY", if worker_last { "0" } else { "1" }.into()),
        ],
    );
    let trace = api.read_value("TRACE");
    assert!(api.passed(), "the api failed");
    if worker_last {
        sqlx::query("UPDATE public.jobs SET ready = true")
            .execute(&db.pool)
            .await
            .unwrap();
    }
    assert!(worker.passed(), "the worker failed");
    let trace_uuid = Uuid::parse_str(&trace).unwrap();

    // One traces row, the api's.
    assert_eq!(common::count(&db.pool, "traces").await, 1);
    let row = sqlx::query("SELECT name, status FROM observability.traces WHERE id = $1")
        .bind(trace_uuid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("name"), "api.upload");
    assert_eq!(row.get::<String, _>("status"), "success");
    // Both processes' usage, once each: 40 + 20 + 300 prompt tokens.
    assert_eq!(
        common::trace_totals(&db.pool, trace_uuid).await,
        (360, 10, 370, Some("0.006500".into()))
    );

    // Every span in the trace, the worker's under the api's.
    let spans: Vec<(String, Uuid, Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT name, id, trace_id, parent_span_id FROM observability.spans ORDER BY started_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.0 == name)
            .unwrap_or_else(|| panic!("no span {name}: {spans:?}"))
            .clone()
    };
    assert!(spans.iter().all(|s| s.2 == trace_uuid), "{spans:?}");
    assert_eq!(spans.len(), 7, "{spans:?}");
    assert_eq!(find("call_worker").3, None);
    assert_eq!(find("worker.search").3, Some(find("call_worker").1));
    assert_eq!(find("embed_query").3, Some(find("worker.search").1));
    assert_eq!(find("worker.ingest").3, Some(find("enqueue_ingest").1));
    assert_eq!(find("embed_chunks").3, Some(find("worker.ingest").1));
    let events: Vec<(String, Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT event_type, trace_id, span_id FROM observability.document_events ORDER BY started_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| e.1 == trace_uuid));
    assert_eq!(events[0].2, Some(find("worker.ingest").1));
    assert_eq!(events[2].2, Some(find("embed_chunks").1));

    // `show` draws it as one tree: the worker's spans indented under the api's.
    let out = Command::new(env!("CARGO_BIN_EXE_tracing-postgres"))
        .args(["show", &trace, "--color", "never"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().next().unwrap().starts_with("api.upload"),
        "{text}"
    );
    let depth = |name: &str| {
        let line = text
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not drawn: {text}"));
        line.find(name).unwrap()
    };
    assert!(depth("worker.search") > depth("call_worker"), "{text}");
    assert!(depth("embed_query") > depth("worker.search"), "{text}");
    assert!(depth("worker.ingest") > depth("enqueue_ingest"), "{text}");
    assert!(depth("embed_chunks") > depth("worker.ingest"), "{text}");
    assert!(text.contains("370 tokens"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_an_api_and_a_worker_that_finishes_last() {
    across_processes(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_an_api_and_a_worker_that_finishes_first() {
    across_processes(false).await;
}
