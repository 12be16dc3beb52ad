//! Always-on observability for LLM and RAG services, stored in your own PostgreSQL.
//!
//! Every request trace, every span (LLM call, embedding, retrieval, parsing, chunking...), every
//! chat message with its sources and citations, and every step of document ingestion becomes a
//! row in the `observability` schema, which your team can query with SQL.
//!
//! * [`PostgresLayer`] is a [`tracing_subscriber::Layer`]: add it to your registry and
//!   instrument with `#[instrument]` and ordinary events.
//! * The same layer is an [`ObservabilityProvider`]: explicit calls (`log_llm_call`,
//!   `log_chat_message`, ...) for what a span does not fit, landing in the same traces
//!   ([`TraceContext::current`]). [`Builder::build`] gives a provider alone.
//! * Nothing waits on the database: every call captures what it was given and queues it. A
//!   background writer (its own threads, runtimes and connections) maps records to rows, writes
//!   batches with binary `COPY`, retries while
//!   the database is away, and isolates rows the database refuses. The queue is bounded; what
//!   does not fit is counted ([`Stats`]), never silently lost. The [`WriterGuard`] flushes on
//!   drop.
//! * The tables are partitioned by day; the writer keeps partitions ahead and, when asked,
//!   drops old ones whole ([`partitions`]).
//! * [`query`] reads it back: a trace's span tree, filtered lists, a chat session, a document's
//!   timeline, usage by model, kb or user. The `tracing-postgres` binary (feature `cli`) shows
//!   a trace as a waterfall in the terminal, tails traces, prints usage and prunes.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tracing_subscriber::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url = std::env::var("DATABASE_URL")
//!     .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
//! // Create or update the schema (needs DDL rights; the writer itself does not).
//! if let Ok(pool) = sqlx::PgPool::connect(&url).await {
//!     tracing_postgres::migrate(&pool).await?;
//! }
//!
//! // Building never touches the database: with the server down, records wait in the queue.
//! let (layer, guard) = tracing_postgres::Builder::new(&url).build_layer()?;
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     // A root span is a trace; spans inside it are its spans.
//!     let _request = tracing::info_span!("answer", operation_type = "chat").entered();
//!     let llm = tracing::info_span!(
//!         "llm",
//!         model = "gpt-4o-mini",
//!         prompt_tokens = 1200_i64,
//!         completion_tokens = tracing::field::Empty,
//!     );
//!     let _llm = llm.enter();
//!     llm.record("completion_tokens", 80_i64);
//! });
//!
//! // Keep the guard for the life of the program; its drop (or `shutdown`) flushes.
//! let report = guard.shutdown(Duration::from_secs(2));
//! println!("{} written, {} dropped", report.written(), report.dropped());
//! # Ok(())
//! # }
//! ```
//!
//! # How spans, fields and events become rows
//!
//! | `tracing` | row |
//! |---|---|
//! | a root span (no parent seen by the layer) | a `traces` row: `name` is the span's name, `operation_type` its `operation_type` field or else its name; written `in_progress` at start and finished at close |
//! | a span inside a trace | a `spans` row with its `trace_id`; `parent_span_id` is its parent span, or NULL when its parent is the root; across `.await` and across `tokio::spawn` of an `.instrument`ed future |
//! | `span_type` field, else `gen_ai.operation.name`, else `openinference.span.kind` | `spans.span_type` (`chat` → `llm`, `embeddings` → `embedding`, `RETRIEVER` → `retrieval`, `RERANKER` → `rerank`, ...); without them it is inferred: a model or token field means `llm`, then embedding, retrieval, parse, chunk and index fields, else `internal` |
//! | `model` / `gen_ai.request.model` / `llm.model_name` / `gen_ai.response.model` | `model` |
//! | `prompt_tokens` / `gen_ai.usage.input_tokens` / `llm.token_count.prompt` / `input_tokens` | `prompt_tokens` |
//! | `completion_tokens` / `gen_ai.usage.output_tokens` / `llm.token_count.completion` / `output_tokens` | `completion_tokens` |
//! | `cost_usd` / `llm.cost.total` / `gen_ai.usage.cost` / `cost` | `cost_usd`, `cost_source = 'given'`; when missing, computed from the [`PriceTable`] with `cost_source = 'computed'` |
//! | `temperature` / `gen_ai.request.temperature` | `temperature` |
//! | `session_id` / `gen_ai.conversation.id` / `session.id`; `user_id` / `user.id` / `enduser.id`; `kb_id` / `gen_ai.data_source.id` | the trace's ids, inherited by every span, message and event below (a user or kb id that is not a UUID is kept in `metadata`) |
//! | `embedding_model`, `vector_count`, `vector_dimensions` (`gen_ai.embeddings.dimension.count`) | embedding columns |
//! | `query_text` (`gen_ai.retrieval.query.text`), `result_count`, `top_score` | retrieval columns |
//! | `file_type`, `file_size_bytes`, `page_count`; `chunk_count`, `chunk_strategy`; `vectors_upserted`, `collection_name` | parse, chunk and index columns |
//! | `input_preview` / `input.value`; `output_preview` / `output.value` | previews, cut to 500 characters |
//! | any other field | `metadata`, under its own name |
//! | `Span::record` of a field declared `field::Empty` | the same mapping, at close |
//! | an event with `role` and `content` (and `turn_number`, `sources`, `citations` as JSON text, tokens, `response_time_ms`) | a `chat_messages` row; refused and counted without a session, user and kb id |
//! | an event with `document_id` and `event_type` (and `status`, `duration_ms`, step metrics, `error_type`, `error_message`, `retryable`, `retry_count`) | a `document_events` row |
//! | an ERROR event, or an `error` / `error.type` / `error.message` field | the span's `status = 'error'`, `error_type` (`error.type`, else `"error"`), `error_message` |
//! | a span closed while its thread panics | `status = 'error'`, `error_type = 'panic'` |
//! | other events at or above [`Builder::attach_events`] (default WARN) | appended to the span's `metadata.events`, at most [`Builder::max_events_per_span`] (more are counted in `metadata.events_dropped`); events outside spans are left out |
//!
//! When one span carries several names for one column, the spec's own name wins, then the
//! OpenTelemetry name, then the OpenInference one.
//!
//! **Roll-up rule.** A trace's `prompt_tokens`, `completion_tokens`, `total_tokens` and
//! `total_cost_usd` are the sum of its spans' usage, each usage counted once: a span's usage
//! counts unless a span below it (or an explicit call made in it) reported usage too. So a
//! wrapper span that repeats its model call's usage is not counted twice; both spans keep their
//! own figures in their rows. (A span that outlives its trace's root adds nothing to the trace.)
//!
//! # Explicit calls
//!
//! The [`ObservabilityProvider`] methods take a [`TraceContext`]. Inside instrumented code,
//! [`TraceContext::current`] gives the current span's, so explicit calls join its trace and
//! nest under it. Outside, make one with [`TraceContext::new`] and bracket the work with
//! `start_trace` / `end_trace`.
//!
//! # Delivery
//!
//! Every record ends in exactly one [`Stats`] counter: `written`, `dropped_full` (queue full by
//! records or bytes), `dropped_closed` (after shutdown), `dropped_unwritten` (past the shutdown
//! deadline), `rejected` (invalid, before queueing) or `refused` (by the database). While the
//! database is away, records stay queued and the writer retries with backoff, each batch in
//! one transaction, idempotently (a retried batch cannot write a row twice). The writer logs
//! drops, rejections, refusals and outages as rate-limited warnings, from its own thread.
//!
//! When nothing is written, [`Stats::state`] and [`Stats::last_error`] say why: the
//! [`WriterState`] (connecting, writing, retrying since when, stopped) and the
//! [`WriterError`] with its [`ErrorKind`] (server unreachable, login refused, database
//! missing, schema not migrated, a privilege missing, disk full, read-only), the server's
//! message and the fix. [`Builder::on_state_change`] reports each change;
//! [`doctor::run`] (the CLI's `doctor`) checks a database for everything the writer needs.
//!
//! Keep the [`WriterGuard`] alive (`let _guard = ...`): a guard bound to `_` is dropped at
//! once and stops the writer.
#![warn(missing_docs)]

mod builder;
mod capture;
pub mod doctor;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod map;
pub mod migrations;
mod model;
pub mod partitions;
pub mod query;
mod queue;
mod schema;
mod writer;

pub use builder::{
    BuildError, Builder, DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_SHUTDOWN_TIMEOUT, ShutdownReport, WriterGuard,
};
pub use capture::{ObservabilityProvider, PostgresLayer, PostgresProvider, TraceContext};
pub use map::privacy;
pub use migrations::{MIGRATOR, migrate};
pub use model::health;
pub use model::health::{ErrorKind, WriterError, WriterState};
pub use model::ids::{SpanId, TraceId};
pub use model::inputs::{
    ChatMessage, ChunkMetrics, Citation, DocumentChunkMetrics, DocumentEmbedMetrics, DocumentEvent,
    DocumentMetrics, DocumentParseMetrics, EmbeddingMetrics, IndexMetrics, LlmCall, LlmMetrics,
    Outcome, ParseMetrics, RetrievalMetrics, Source, SpanEnd, SpanMetrics, TraceTotals,
};
pub use model::kinds::{
    ChatRole, DocumentEventStatus, DocumentEventType, OperationType, SpanType, Status,
};
pub use model::money::micros_to_decimal;
pub use model::prices::PriceTable;
pub use model::sanitize::{JSON_TOO_DEEP, TextLimits};
pub use model::stats::Stats;
pub use partitions::{PartitionPolicy, PartitionStep};
pub use rust_decimal::Decimal;
pub use uuid::Uuid;

/// The README's Rust examples, compiled as doctests (`cargo test --doc`) so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
#[doc(hidden)]
pub use writer::nodelay::tcp_nodelay_of;
