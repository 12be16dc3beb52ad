//! One trace across services, with the crates services use: an axum service that continues
//! the caller's trace from the `traceparent` header, a reqwest client that sends the current
//! span's, and a job queued in a PostgreSQL table that carries it in its payload to a worker.
//!
//! ```sh
//! DATABASE_URL=postgres://... cargo run -p tracing-postgres-compat --example across_services
//! ```
//!
//! The three parts run in one process here, to be shown whole; in a real deployment each is
//! its own service with its own layer and writer, and the rows land in the same trace all the
//! same (`cli/tests/across_processes.rs` tests that with two real processes). The README's
//! "Across services" section quotes the functions below; `tests/across_services.rs` runs
//! [`run`] and reads the trace back.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use sqlx::PgPool;
use tracing::Instrument;
use tracing_postgres::{SpanExt, TraceContext};
use tracing_subscriber::prelude::*;

/// axum middleware: each request's root span continues the caller's trace. A request without
/// the header gives an empty value, which starts a trace of its own.
pub async fn continue_trace(req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "POST /answer",
        operation_type = "chat",
        traceparent = header(req.headers(), "traceparent"),
        tracestate = header(req.headers(), "tracestate"),
    );
    next.run(req).instrument(span).await
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// reqwest: sends the current span's `traceparent` (and the `tracestate` that came in) with an
/// outgoing request, so the service called adds its spans to this trace.
pub fn with_trace_context(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let Some(ctx) = TraceContext::current() else {
        return req;
    };
    let req = req.header("traceparent", ctx.traceparent().to_string());
    match ctx.tracestate() {
        Some(state) => req.header("tracestate", state),
        None => req,
    }
}

/// A job queue: the job carries the enqueuing span's `traceparent` in its payload.
pub async fn enqueue_ingestion(pool: &PgPool, document_id: &str) -> sqlx::Result<()> {
    let traceparent = tracing::Span::current()
        .traceparent()
        .map(|tp| tp.to_string());
    let payload = serde_json::json!({ "document_id": document_id, "traceparent": traceparent });
    sqlx::query("INSERT INTO example_jobs (payload) VALUES ($1)")
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(())
}

/// The worker: takes one job and runs it inside a root span that continues the job's trace,
/// however long after the request it runs. `false` when the queue was empty.
pub async fn work_one(pool: &PgPool) -> sqlx::Result<bool> {
    let job: Option<serde_json::Value> = sqlx::query_scalar(
        "DELETE FROM example_jobs WHERE id = \
         (SELECT id FROM example_jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING payload",
    )
    .fetch_optional(pool)
    .await?;
    let Some(job) = job else { return Ok(false) };
    let document_id = job["document_id"].as_str().unwrap_or_default().to_owned();
    let span = tracing::info_span!(
        "ingest document",
        operation_type = "document_ingestion",
        traceparent = job["traceparent"].as_str().unwrap_or_default(),
    );
    ingest(&document_id).instrument(span).await;
    Ok(true)
}

async fn ingest(document_id: &str) {
    tracing::info!(
        document_id,
        event_type = "parse",
        status = "completed",
        extracted_pages = 3_i64
    );
    let embed = tracing::info_span!(
        "embed chunks",
        span_type = "embedding",
        embedding_model = "text-embedding-3-small",
        prompt_tokens = 40_i64,
        vector_count = 12_i64,
    );
    async {}.instrument(embed).await;
    tracing::info!(document_id, event_type = "complete", status = "completed");
}

/// The answering service: one LLM call, then an ingestion job for the document it was given.
async fn answer(State(pool): State<PgPool>) -> &'static str {
    let llm = tracing::info_span!(
        "llm",
        model = "gpt-4o-mini",
        prompt_tokens = 100_i64,
        completion_tokens = 20_i64,
    );
    async {}.instrument(llm).await;
    if let Err(e) = enqueue_ingestion(&pool, "0190d7a4-7f00-7000-8000-00000000d0c1").await {
        tracing::warn!(error = %e, "enqueue failed");
    }
    "ok"
}

/// Runs the gateway's request, the service it calls and the worker's job, and returns the
/// trace's id (32 hex digits) once every row is written.
pub async fn run(database_url: &str) -> Result<String, Box<dyn std::error::Error>> {
    let pool = PgPool::connect(database_url).await?;
    tracing_postgres::migrate(&pool).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS example_jobs (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
        .execute(&pool)
        .await?;
    let (layer, guard) = tracing_postgres::Builder::new(database_url).build_layer()?;
    let _default = tracing_subscriber::registry().with(layer).set_default();

    let app = Router::new()
        .route("/answer", post(answer))
        .layer(middleware::from_fn(continue_trace))
        .with_state(pool.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The gateway: its request is the trace's root; the call to the service carries it.
    let gateway = tracing::info_span!("gateway request", operation_type = "chat");
    let trace_id = gateway
        .traceparent()
        .map(|tp| tp.trace_id.to_string())
        .unwrap_or_default();
    async {
        let call = tracing::info_span!("call rag service");
        async {
            let client = reqwest::Client::new();
            let sent = with_trace_context(client.post(format!("http://{addr}/answer")))
                .send()
                .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "service call failed");
            }
        }
        .instrument(call)
        .await;
    }
    .instrument(gateway)
    .await;

    // The worker, later: takes the job, continues the trace.
    while work_one(&pool).await? {}
    server.abort();
    guard.shutdown(Duration::from_secs(10));
    Ok(trace_id)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let trace_id = run(&url).await?;
    println!("one trace across services: tracing-postgres show {trace_id}");
    Ok(())
}
