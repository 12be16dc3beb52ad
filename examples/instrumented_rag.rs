//! An async RAG service instrumented with `#[instrument]` and events alone: no explicit
//! provider call. It answers one chat question (retrieve, embed the query, rerank, call the
//! LLM, record the user and assistant messages with sources and citations) and ingests one
//! document (upload, parse, chunk, embed, index), then checks what landed in PostgreSQL.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --release --example instrumented_rag
//! ```

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tracing::{Instrument, Span, field, info, instrument};
use tracing_postgres::{Builder, Decimal, PriceTable};
use tracing_subscriber::prelude::*;
use uuid::Uuid;

/// Pretend work, so durations are visible.
async fn work(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[instrument(fields(
    embedding_model = "bge-small-en",
    vector_count = 1_i64,
    vector_dimensions = 384_i64
))]
async fn embed_query(question: &str) -> Vec<f32> {
    work(6).await;
    vec![0.1; 384]
}

#[instrument(skip(question), fields(query_text = question, result_count = field::Empty, top_score = field::Empty))]
async fn retrieve(question: &str) -> Vec<(Uuid, &'static str, f64)> {
    let _vector = embed_query(question).await;
    work(10).await;
    let hits = vec![
        (Uuid::now_v7(), "refund-policy.pdf", 0.91),
        (Uuid::now_v7(), "faq.md", 0.77),
        (Uuid::now_v7(), "terms.pdf", 0.52),
    ];
    Span::current().record("result_count", hits.len() as i64);
    Span::current().record("top_score", hits[0].2);
    hits
}

#[instrument(skip(hits), fields(span_type = "rerank", candidates = hits.len()))]
async fn rerank(hits: Vec<(Uuid, &'static str, f64)>) -> Vec<(Uuid, &'static str, f64)> {
    work(4).await;
    hits.into_iter().take(2).collect()
}

#[instrument(
    skip(prompt),
    fields(
        model = "gpt-4o-mini",
        temperature = 0.2,
        input_preview = prompt,
        prompt_tokens = field::Empty,
        completion_tokens = field::Empty,
        output_preview = field::Empty,
    )
)]
async fn call_llm(prompt: &str) -> String {
    work(40).await;
    let answer =
        "Refunds are processed within 5 business days [1], by the original payment method [2].";
    // Usage is known only when the model answers: recorded late.
    Span::current().record("prompt_tokens", 1_312_i64);
    Span::current().record("completion_tokens", 96_i64);
    Span::current().record("output_preview", answer);
    answer.to_owned()
}

#[instrument(fields(operation_type = "chat", user_id = %user, session_id = session, kb_id = %kb))]
async fn answer_question(user: Uuid, session: &str, kb: Uuid, question: &str) -> String {
    let started = std::time::Instant::now();
    info!(
        role = "user",
        content = question,
        turn_number = 1_i64,
        "user message"
    );
    let hits = retrieve(question).await;
    let top = rerank(hits).await;
    let context: Vec<&str> = top.iter().map(|h| h.1).collect();
    let answer = call_llm(&format!("Answer from {context:?}: {question}")).await;
    let sources = json!(top
        .iter()
        .map(|(id, name, score)| json!({"doc_id": id, "doc_name": name, "chunk_id": format!("{name}#3"), "score": score, "excerpt": "Refunds are processed..."}))
        .collect::<Vec<_>>());
    let citations = json!([
        {"marker": "[1]", "doc_id": top[0].0, "page": 2, "section": "Refunds"},
        {"marker": "[2]", "doc_id": top[1].0, "page": 1, "section": "Payments"},
    ]);
    info!(
        role = "assistant",
        content = answer.as_str(),
        turn_number = 2_i64,
        sources = %sources,
        citations = %citations,
        prompt_tokens = 1_312_i64,
        completion_tokens = 96_i64,
        response_time_ms = started.elapsed().as_secs_f64() * 1000.0,
        "assistant message"
    );
    answer
}

#[instrument(fields(file_type = "pdf", file_size_bytes = 482_113_i64, page_count = field::Empty))]
async fn parse(document_id: Uuid) -> String {
    work(15).await;
    Span::current().record("page_count", 6_i64);
    info!(%document_id, event_type = "parse", status = "completed", duration_ms = 15.0, extracted_pages = 6_i64, extracted_chars = 18_400_i64, tables_found = 1_i64, images_found = 0_i64);
    "text ".repeat(3_680)
}

#[instrument(skip(text), fields(chunk_strategy = "recursive-800", chunk_count = field::Empty))]
async fn chunk(document_id: Uuid, text: &str) -> Vec<String> {
    work(3).await;
    let chunks: Vec<String> = text
        .as_bytes()
        .chunks(800)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    Span::current().record("chunk_count", chunks.len() as i64);
    info!(%document_id, event_type = "chunk", status = "completed", duration_ms = 3.0, chunks_created = chunks.len() as i64, avg_chunk_size = 800_i64);
    chunks
}

#[instrument(skip(batch), fields(span_type = "embedding", embedding_model = "bge-small-en", vector_count = batch.len() as i64, vector_dimensions = 384_i64))]
async fn embed_batch(batch: Vec<String>) -> usize {
    work(8).await;
    batch.len()
}

#[instrument(skip(chunks))]
async fn embed(document_id: Uuid, chunks: Vec<String>) -> usize {
    // Batches embedded concurrently on the runtime's threads: `.instrument` keeps each task
    // under this span.
    let tasks: Vec<_> = chunks
        .chunks(8)
        .map(|b| tokio::spawn(embed_batch(b.to_vec()).in_current_span()))
        .collect();
    let mut vectors = 0;
    for t in tasks {
        vectors += t.await.unwrap_or(0);
    }
    info!(%document_id, event_type = "embed", status = "completed", duration_ms = 8.0, vectors_generated = vectors as i64, embedding_model = "bge-small-en");
    vectors
}

#[instrument(fields(collection_name = "kb-demo", vectors_upserted = field::Empty))]
async fn index(document_id: Uuid, vectors: usize) {
    work(5).await;
    Span::current().record("vectors_upserted", vectors as i64);
    info!(%document_id, event_type = "index", status = "completed", duration_ms = 5.0, vectors_upserted = vectors as i64, collection_name = "kb-demo");
}

#[instrument(fields(operation_type = "document", kb_id = %kb))]
async fn ingest_document(kb: Uuid, document_id: Uuid) {
    info!(%document_id, event_type = "upload", status = "completed", duration_ms = 2.0, filename = "refund-policy.pdf");
    let text = parse(document_id).await;
    let chunks = chunk(document_id, &text).await;
    let vectors = embed(document_id, chunks).await;
    index(document_id, vectors).await;
    info!(%document_id, event_type = "complete", status = "completed");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL (./scripts/demo does)")?;
    let pool = PgPool::connect(&url).await?;
    tracing_postgres::migrate(&pool).await?;

    let prices = PriceTable::new().with("gpt-4o-mini*", Decimal::new(15, 5), Decimal::new(60, 5));
    let (layer, guard) = Builder::from_pool(&pool).prices(prices).build_layer()?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(tracing_subscriber::EnvFilter::new("warn")),
        )
        .with(layer)
        .init();

    let (user, kb, doc) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let answer = answer_question(user, "session-42", kb, "How long do refunds take?").await;
    ingest_document(kb, doc).await;
    println!("answer: {answer}");

    let report = guard.shutdown(Duration::from_secs(10));
    println!(
        "writer: {} records written, {} dropped, {} refused",
        report.written(),
        report.dropped(),
        report.stats.refused
    );

    let (traces, spans, messages, events): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM observability.traces), (SELECT count(*) FROM observability.spans),
                (SELECT count(*) FROM observability.chat_messages), (SELECT count(*) FROM observability.document_events)",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "rows: {traces} traces, {spans} spans, {messages} chat messages, {events} document events"
    );
    let types: Vec<(String, i64)> =
        sqlx::query_as("SELECT span_type, count(*) FROM observability.spans GROUP BY 1 ORDER BY 1")
            .fetch_all(&pool)
            .await?;
    println!("span types: {types:?}");
    let nested: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.spans WHERE parent_span_id IS NOT NULL",
    )
    .fetch_one(&pool)
    .await?;
    println!("nested spans (with a parent span): {nested}");
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.traces t
         WHERE t.total_tokens IS DISTINCT FROM (SELECT coalesce(sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)), 0)
                                               FROM observability.spans s WHERE s.trace_id = t.id)",
    )
    .fetch_one(&pool)
    .await?;
    println!("traces whose total_tokens differ from the sum of their spans: {mismatched}");
    let doc_events: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM observability.document_events WHERE document_id = $1 ORDER BY id",
    )
    .bind(doc)
    .fetch_all(&pool)
    .await?;
    println!("document events: {}", doc_events.join(", "));
    Ok(())
}
