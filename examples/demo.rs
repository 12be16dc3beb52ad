//! Plays one RAG chat request and one document ingestion through the explicit provider, then
//! reads the stored traces back from PostgreSQL and prints them as trees.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example demo
//! ```

use std::collections::HashMap;
use std::thread::sleep;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use sqlx::{PgPool, Row};
use tracing_postgres::*;
use uuid::Uuid;

fn work(ms: u64) {
    sleep(Duration::from_millis(ms));
}

/// A chat turn: retrieve (embedding the query), rerank, generate, and the two messages.
fn chat_request(p: &PostgresProvider, user: Uuid, kb: Uuid) -> TraceContext {
    let ctx = TraceContext::new()
        .with_user(user)
        .with_session("demo-session")
        .with_kb(kb);
    p.start_trace(
        &ctx,
        "POST /chat",
        OperationType::Chat,
        Some(json!({"route": "/chat"})),
    );
    p.log_chat_message(
        &ctx,
        ChatMessage {
            turn_number: Some(1),
            ..ChatMessage::new(ChatRole::User, "How long do refunds take?")
        },
    );

    let retrieve = p.start_span(&ctx, "retrieve", SpanType::Retrieval, None);
    let rctx = ctx.child(retrieve);
    let embed = p.start_span(&rctx, "embed query", SpanType::Embedding, None);
    work(8);
    p.end_span(
        &rctx,
        embed,
        SpanEnd {
            metrics: SpanMetrics::Embedding(EmbeddingMetrics {
                model: Some("text-embedding-3-small".into()),
                vector_count: Some(1),
                vector_dimensions: Some(1536),
            }),
            ..SpanEnd::default()
        },
    );
    work(12);
    p.end_span(
        &ctx,
        retrieve,
        SpanEnd {
            metrics: SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: Some("How long do refunds take?".into()),
                result_count: Some(8),
                top_score: Some(0.89),
            }),
            ..SpanEnd::default()
        },
    );

    let rerank = p.start_span(&ctx, "rerank", SpanType::Rerank, Some(json!({"top_k": 3})));
    work(6);
    p.end_span(&ctx, rerank, SpanEnd::default());

    let generate = p.start_span(&ctx, "generate answer", SpanType::Internal, None);
    work(30);
    p.log_llm_call(
        &ctx.child(generate),
        LlmCall {
            name: Some("openai.chat".into()),
            metrics: LlmMetrics {
                model: Some("gpt-4o-mini".into()),
                prompt_tokens: Some(1_350),
                completion_tokens: Some(120),
                cost_usd: Some(Decimal::new(2_745, 7)),
                temperature: Some(0.2),
            },
            latency_ms: Some(30.0),
            input_preview: Some("Answer from the context: ...".into()),
            output_preview: Some("Refunds are processed within 5 business days [1].".into()),
            ..LlmCall::default()
        },
    );
    p.end_span(&ctx, generate, SpanEnd::default());

    let doc = Uuid::now_v7();
    p.log_chat_message(
        &ctx,
        ChatMessage {
            turn_number: Some(2),
            sources: vec![Source {
                doc_id: Some(doc),
                doc_name: Some("refund-policy.pdf".into()),
                chunk_id: Some("refund-policy.pdf#4".into()),
                score: Some(0.89),
                excerpt: Some("Refunds are processed within 5 business days".into()),
            }],
            citations: vec![Citation {
                marker: "[1]".into(),
                doc_id: Some(doc),
                page: Some(2),
                section: Some("Refunds".into()),
            }],
            prompt_tokens: Some(1_350),
            completion_tokens: Some(120),
            response_time_ms: Some(60.0),
            ..ChatMessage::new(
                ChatRole::Assistant,
                "Refunds are processed within 5 business days [1].",
            )
        },
    );
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    ctx
}

/// A document ingestion: upload, parse, chunk, embed, index, complete.
fn ingest_document(p: &PostgresProvider, user: Uuid, kb: Uuid) -> TraceContext {
    let ctx = TraceContext::new().with_user(user).with_kb(kb);
    let doc = Uuid::now_v7();
    p.start_trace(
        &ctx,
        "ingest refund-policy.pdf",
        OperationType::Document,
        Some(json!({"document_id": doc})),
    );
    let event = |ctx: &TraceContext, ty, ms, metrics| {
        p.log_document_event(
            ctx,
            DocumentEvent {
                duration_ms: Some(ms),
                metrics,
                ..DocumentEvent::new(doc, ty, DocumentEventStatus::Completed)
            },
        )
    };
    event(&ctx, DocumentEventType::Upload, 2.0, DocumentMetrics::None);

    let parse = p.start_span(&ctx, "parse pdf", SpanType::Parse, None);
    work(15);
    p.end_span(
        &ctx,
        parse,
        SpanEnd {
            metrics: SpanMetrics::Parse(ParseMetrics {
                file_type: Some("pdf".into()),
                file_size_bytes: Some(482_113),
                page_count: Some(6),
            }),
            ..SpanEnd::default()
        },
    );
    event(
        &ctx.child(parse),
        DocumentEventType::Parse,
        15.0,
        DocumentMetrics::Parse(DocumentParseMetrics {
            extracted_pages: Some(6),
            extracted_chars: Some(18_400),
            tables_found: Some(1),
            images_found: Some(0),
        }),
    );

    let chunk = p.start_span(&ctx, "chunk", SpanType::Chunk, None);
    work(4);
    p.end_span(
        &ctx,
        chunk,
        SpanEnd {
            metrics: SpanMetrics::Chunk(ChunkMetrics {
                chunk_count: Some(23),
                chunk_strategy: Some("recursive-800".into()),
            }),
            ..SpanEnd::default()
        },
    );
    event(
        &ctx.child(chunk),
        DocumentEventType::Chunk,
        4.0,
        DocumentMetrics::Chunk(DocumentChunkMetrics {
            chunks_created: Some(23),
            avg_chunk_size: Some(800),
        }),
    );

    let embed = p.start_span(&ctx, "embed chunks", SpanType::Embedding, None);
    work(20);
    p.end_span(
        &ctx,
        embed,
        SpanEnd {
            metrics: SpanMetrics::Embedding(EmbeddingMetrics {
                model: Some("text-embedding-3-small".into()),
                vector_count: Some(23),
                vector_dimensions: Some(1536),
            }),
            ..SpanEnd::default()
        },
    );
    event(
        &ctx.child(embed),
        DocumentEventType::Embed,
        20.0,
        DocumentMetrics::Embed(DocumentEmbedMetrics {
            vectors_generated: Some(23),
            embedding_model: Some("text-embedding-3-small".into()),
        }),
    );

    let index = p.start_span(&ctx, "index", SpanType::Index, None);
    work(7);
    p.end_span(
        &ctx,
        index,
        SpanEnd {
            metrics: SpanMetrics::Index(IndexMetrics {
                vectors_upserted: Some(23),
                collection_name: Some("kb-demo".into()),
            }),
            ..SpanEnd::default()
        },
    );
    event(
        &ctx.child(index),
        DocumentEventType::Index,
        7.0,
        DocumentMetrics::Index(IndexMetrics {
            vectors_upserted: Some(23),
            collection_name: Some("kb-demo".into()),
        }),
    );
    event(
        &ctx,
        DocumentEventType::Complete,
        48.0,
        DocumentMetrics::None,
    );
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    ctx
}

/// Reads a trace and its spans back and prints them as a tree.
async fn print_trace(pool: &PgPool, trace: TraceId) -> Result<(), sqlx::Error> {
    let t = sqlx::query(
        "SELECT trace_id, name, operation_type, status, duration_ms, total_tokens, total_cost_usd
         FROM observability.traces WHERE id = $1",
    )
    .bind(trace.as_uuid())
    .fetch_one(pool)
    .await?;
    println!(
        "trace {} {:?} [{}] {} {:.1} ms, {} tokens, ${}",
        t.get::<String, _>("trace_id"),
        t.get::<String, _>("name"),
        t.get::<String, _>("operation_type"),
        t.get::<String, _>("status"),
        t.get::<Option<f64>, _>("duration_ms").unwrap_or_default(),
        t.get::<Option<i64>, _>("total_tokens").unwrap_or_default(),
        t.get::<Option<Decimal>, _>("total_cost_usd")
            .unwrap_or_default(),
    );
    let spans = sqlx::query(
        "SELECT id, parent_span_id, name, span_type, status, duration_ms, model,
                coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0) AS tokens, cost_usd
         FROM observability.spans WHERE trace_id = $1 ORDER BY started_at, id",
    )
    .bind(trace.as_uuid())
    .fetch_all(pool)
    .await?;
    let mut children: HashMap<Option<Uuid>, Vec<&sqlx::postgres::PgRow>> = HashMap::new();
    for s in &spans {
        children.entry(s.get("parent_span_id")).or_default().push(s);
    }
    fn walk(
        children: &HashMap<Option<Uuid>, Vec<&sqlx::postgres::PgRow>>,
        parent: Option<Uuid>,
        prefix: &str,
    ) {
        let Some(kids) = children.get(&parent) else {
            return;
        };
        for (i, s) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let mut line = format!(
                "{prefix}{} {} ({}) {} {:.1} ms",
                if last { "└─" } else { "├─" },
                s.get::<String, _>("name"),
                s.get::<String, _>("span_type"),
                s.get::<String, _>("status"),
                s.get::<Option<f64>, _>("duration_ms").unwrap_or_default(),
            );
            if let Some(model) = s.get::<Option<String>, _>("model") {
                line += &format!(", {model}");
            }
            let tokens: i64 = s.get("tokens");
            if tokens > 0 {
                line += &format!(", {tokens} tokens");
            }
            if let Some(cost) = s.get::<Option<Decimal>, _>("cost_usd") {
                line += &format!(", ${cost}");
            }
            println!("{line}");
            let next = format!("{prefix}{}", if last { "   " } else { "│  " });
            walk(children, Some(s.get("id")), &next);
        }
    }
    walk(&children, None, "  ");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL (./scripts/demo does)")?;
    let pool = PgPool::connect(&url).await?;
    migrate(&pool).await?;

    let (provider, guard) = Builder::from_pool(&pool).build()?;
    let (user, kb) = (Uuid::now_v7(), Uuid::now_v7());
    let chat = chat_request(&provider, user, kb);
    let ingest = ingest_document(&provider, user, kb);

    // Writes everything queued before returning.
    let report = guard.shutdown(Duration::from_secs(10));
    println!(
        "writer: {} records written, {} dropped, {} refused\n",
        report.written(),
        report.dropped(),
        report.stats.refused
    );

    print_trace(&pool, chat.trace_id).await?;
    println!();
    print_trace(&pool, ingest.trace_id).await?;
    println!();
    let messages = sqlx::query("SELECT role, content, jsonb_array_length(sources) AS sources, jsonb_array_length(citations) AS citations FROM observability.chat_messages WHERE trace_id = $1 ORDER BY turn_number")
        .bind(chat.trace_id.as_uuid())
        .fetch_all(&pool)
        .await?;
    for m in messages {
        println!(
            "chat {:<9} {:?} ({} sources, {} citations)",
            m.get::<String, _>("role"),
            m.get::<String, _>("content"),
            m.get::<i32, _>("sources"),
            m.get::<i32, _>("citations"),
        );
    }
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT event_type, status FROM observability.document_events WHERE trace_id = $1 ORDER BY id",
    )
    .bind(ingest.trace_id.as_uuid())
    .fetch_all(&pool)
    .await?;
    let events: Vec<String> = events
        .into_iter()
        .map(|(t, s)| format!("{t}:{s}"))
        .collect();
    println!("document events: {}", events.join(" → "));
    Ok(())
}
