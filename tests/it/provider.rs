//! The seven provider methods, each read back from a real PostgreSQL.

use tracing_postgres_test_support as common;

use std::time::Duration;

use common::{count, fresh_db};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::Row;
use tracing_postgres::*;
use uuid::Uuid;

const FLUSH: Duration = Duration::from_secs(30);

fn ctx() -> TraceContext {
    TraceContext::new()
        .with_user(Uuid::now_v7())
        .with_session("session-1")
        .with_kb(Uuid::now_v7())
}

#[tokio::test]
async fn start_and_end_trace_write_every_field_and_roll_up_totals() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    p.start_trace(
        &ctx,
        "chat request",
        OperationType::Chat,
        Some(json!({"route": "/chat"})),
    );
    assert!(guard.flush(FLUSH));

    // Visible as in_progress before it ends.
    let row = sqlx::query(
        "SELECT status, name, ended_at IS NULL AS open FROM observability.traces WHERE id = $1",
    )
    .bind(ctx.trace_id.as_uuid())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("status"), "in_progress");
    assert!(row.get::<bool, _>("open"));

    let span_ctx = ctx.clone();
    p.log_llm_call(
        &span_ctx,
        LlmCall {
            metrics: LlmMetrics {
                model: Some("gpt-4o".into()),
                prompt_tokens: Some(100),
                completion_tokens: Some(20),
                cost_usd: Some(Decimal::new(1_250, 6)),
                temperature: Some(0.2),
            },
            latency_ms: Some(12.5),
            ..LlmCall::default()
        },
    );
    p.log_llm_call(
        &span_ctx,
        LlmCall {
            metrics: LlmMetrics {
                model: Some("gpt-4o-mini".into()),
                prompt_tokens: Some(7),
                completion_tokens: Some(3),
                cost_usd: Some(Decimal::new(5, 6)),
                temperature: None,
            },
            ..LlmCall::default()
        },
    );
    std::thread::sleep(Duration::from_millis(5));
    p.end_trace(
        &ctx,
        Outcome::error("TimeoutError", "model timed out"),
        TraceTotals::default(),
    );
    assert!(guard.flush(FLUSH));

    let row = sqlx::query(
        "SELECT id, trace_id, name, operation_type, user_id, session_id, kb_id, started_at, ended_at,
                duration_ms, status, error_type, error_message, prompt_tokens, completion_tokens,
                total_tokens, total_cost_usd, metadata
         FROM observability.traces",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<Uuid, _>("id"), ctx.trace_id.as_uuid());
    assert_eq!(row.get::<String, _>("trace_id"), ctx.trace_id.to_string());
    assert_eq!(row.get::<String, _>("trace_id").len(), 32);
    assert_eq!(row.get::<String, _>("name"), "chat request");
    assert_eq!(row.get::<String, _>("operation_type"), "chat");
    assert_eq!(row.get::<Option<Uuid>, _>("user_id"), ctx.user_id);
    assert_eq!(
        row.get::<Option<String>, _>("session_id").as_deref(),
        Some("session-1")
    );
    assert_eq!(row.get::<Option<Uuid>, _>("kb_id"), ctx.kb_id);
    let started: chrono::DateTime<chrono::Utc> = row.get("started_at");
    let ended: chrono::DateTime<chrono::Utc> = row.get("ended_at");
    let duration: f64 = row.get("duration_ms");
    assert!(duration >= 5.0, "duration {duration}");
    let expected = (ended - started).num_microseconds().unwrap() as f64 / 1000.0;
    assert!(
        (duration - expected).abs() < 0.01,
        "{duration} vs {expected}"
    );
    assert_eq!(row.get::<String, _>("status"), "error");
    assert_eq!(
        row.get::<Option<String>, _>("error_type").as_deref(),
        Some("TimeoutError")
    );
    assert_eq!(
        row.get::<Option<String>, _>("error_message").as_deref(),
        Some("model timed out")
    );
    assert_eq!(row.get::<Option<i64>, _>("prompt_tokens"), Some(107));
    assert_eq!(row.get::<Option<i64>, _>("completion_tokens"), Some(23));
    assert_eq!(row.get::<Option<i64>, _>("total_tokens"), Some(130));
    assert_eq!(
        row.get::<Option<Decimal>, _>("total_cost_usd"),
        Some(Decimal::new(1_255, 6))
    );
    assert_eq!(
        row.get::<serde_json::Value, _>("metadata"),
        json!({"route": "/chat"})
    );
    assert_eq!(count(&db.pool, "traces").await, 1);
    drop(guard);
}

#[tokio::test]
async fn end_trace_keeps_totals_the_caller_gives() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    p.start_trace(&ctx, "t", OperationType::Search, None);
    p.log_llm_call(
        &ctx,
        LlmCall {
            metrics: LlmMetrics {
                prompt_tokens: Some(10),
                completion_tokens: Some(10),
                ..Default::default()
            },
            ..LlmCall::default()
        },
    );
    p.end_trace(
        &ctx,
        Outcome::success(),
        TraceTotals {
            prompt_tokens: Some(1),
            completion_tokens: Some(2),
            total_cost_usd: Some(Decimal::new(3, 0)),
        },
    );
    assert!(guard.flush(FLUSH));
    let row = sqlx::query("SELECT prompt_tokens, completion_tokens, total_tokens, total_cost_usd, status FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<Option<i64>, _>("prompt_tokens"), Some(1));
    assert_eq!(row.get::<Option<i64>, _>("completion_tokens"), Some(2));
    assert_eq!(row.get::<Option<i64>, _>("total_tokens"), Some(3));
    assert_eq!(
        row.get::<Option<Decimal>, _>("total_cost_usd"),
        Some(Decimal::new(3_000_000, 6))
    );
    assert_eq!(row.get::<String, _>("status"), "success");
}

#[tokio::test]
async fn start_span_is_visible_in_progress_then_end_span_writes_metrics() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    p.start_trace(&ctx, "ingest", OperationType::Document, None);
    let parent = p.start_span(&ctx, "pipeline", SpanType::Internal, None);
    let child_ctx = ctx.child(parent);
    let retrieval = p.start_span(
        &child_ctx,
        "search",
        SpanType::Retrieval,
        Some(json!({"k": 5})),
    );
    assert!(guard.flush(FLUSH));

    // In the order started (span ids are not time-ordered).
    let open: Vec<(Uuid, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT id, status, parent_span_id FROM observability.spans \
         ORDER BY array_position($1, id)",
    )
    .bind(vec![parent.as_uuid(), retrieval.as_uuid()])
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(open.len(), 2);
    assert!(open.iter().all(|(_, s, _)| s == "in_progress"));
    assert_eq!(open[0], (parent.as_uuid(), "in_progress".into(), None));
    assert_eq!(
        open[1],
        (
            retrieval.as_uuid(),
            "in_progress".into(),
            Some(parent.as_uuid())
        )
    );

    p.end_span(
        &child_ctx,
        retrieval,
        SpanEnd {
            metrics: SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: Some("what is rust".into()),
                result_count: Some(5),
                top_score: Some(0.91),
            }),
            input_preview: Some("what is rust".into()),
            output_preview: Some("Rust is...".into()),
            metadata: Some(json!({"index": "main"})),
            ..SpanEnd::default()
        },
    );
    p.end_span(
        &ctx,
        parent,
        SpanEnd {
            outcome: Outcome::error("ParseError", "bad pdf"),
            duration_ms: Some(42.0),
            ..SpanEnd::default()
        },
    );
    assert!(guard.flush(FLUSH));

    let row = sqlx::query(
        "SELECT trace_id, parent_span_id, span_id, name, span_type, status, ended_at IS NOT NULL AS ended,
                duration_ms, query_text, result_count, top_score, input_preview, output_preview, metadata
         FROM observability.spans WHERE id = $1",
    )
    .bind(retrieval.as_uuid())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<Uuid, _>("trace_id"), ctx.trace_id.as_uuid());
    assert_eq!(
        row.get::<Option<Uuid>, _>("parent_span_id"),
        Some(parent.as_uuid())
    );
    assert_eq!(row.get::<String, _>("span_id"), retrieval.to_string());
    assert_eq!(row.get::<String, _>("name"), "search");
    assert_eq!(row.get::<String, _>("span_type"), "retrieval");
    assert_eq!(row.get::<String, _>("status"), "success");
    assert!(row.get::<bool, _>("ended"));
    assert!(row.get::<f64, _>("duration_ms") >= 0.0);
    assert_eq!(
        row.get::<Option<String>, _>("query_text").as_deref(),
        Some("what is rust")
    );
    assert_eq!(row.get::<Option<i32>, _>("result_count"), Some(5));
    assert_eq!(row.get::<Option<f64>, _>("top_score"), Some(0.91));
    assert_eq!(
        row.get::<Option<String>, _>("input_preview").as_deref(),
        Some("what is rust")
    );
    assert_eq!(
        row.get::<Option<String>, _>("output_preview").as_deref(),
        Some("Rust is...")
    );
    assert_eq!(
        row.get::<serde_json::Value, _>("metadata"),
        json!({"k": 5, "index": "main"})
    );

    let row = sqlx::query("SELECT status, error_type, error_message, duration_ms FROM observability.spans WHERE id = $1")
        .bind(parent.as_uuid())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("status"), "error");
    assert_eq!(
        row.get::<Option<String>, _>("error_type").as_deref(),
        Some("ParseError")
    );
    assert_eq!(
        row.get::<Option<String>, _>("error_message").as_deref(),
        Some("bad pdf")
    );
    assert_eq!(row.get::<f64, _>("duration_ms"), 42.0);
    assert_eq!(count(&db.pool, "spans").await, 2);
}

#[tokio::test]
async fn end_span_writes_each_metric_set() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    let cases: Vec<(SpanType, SpanMetrics)> = vec![
        (
            SpanType::Embedding,
            SpanMetrics::Embedding(EmbeddingMetrics {
                model: Some("text-embedding-3-small".into()),
                vector_count: Some(64),
                vector_dimensions: Some(1536),
            }),
        ),
        (
            SpanType::Parse,
            SpanMetrics::Parse(ParseMetrics {
                file_type: Some("pdf".into()),
                file_size_bytes: Some(123_456),
                page_count: Some(12),
            }),
        ),
        (
            SpanType::Chunk,
            SpanMetrics::Chunk(ChunkMetrics {
                chunk_count: Some(40),
                chunk_strategy: Some("recursive".into()),
            }),
        ),
        (
            SpanType::Index,
            SpanMetrics::Index(IndexMetrics {
                vectors_upserted: Some(40),
                collection_name: Some("docs".into()),
            }),
        ),
        (SpanType::Custom("rerank_v2".into()), SpanMetrics::None),
    ];
    let mut ids = Vec::new();
    for (ty, m) in cases {
        let id = p.start_span(&ctx, "step", ty, None);
        p.end_span(
            &ctx,
            id,
            SpanEnd {
                metrics: m,
                ..SpanEnd::default()
            },
        );
        ids.push(id.as_uuid());
    }
    assert!(guard.flush(FLUSH));
    let rows = sqlx::query(
        "SELECT span_type, embedding_model, vector_count, vector_dimensions, file_type, file_size_bytes,
                page_count, chunk_count, chunk_strategy, vectors_upserted, collection_name, status
         FROM observability.spans ORDER BY array_position($1, id)",
    )
    .bind(&ids)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| r.get::<String, _>("status") == "success")
    );
    assert_eq!(rows[0].get::<String, _>("span_type"), "embedding");
    assert_eq!(
        rows[0]
            .get::<Option<String>, _>("embedding_model")
            .as_deref(),
        Some("text-embedding-3-small")
    );
    assert_eq!(rows[0].get::<Option<i64>, _>("vector_count"), Some(64));
    assert_eq!(
        rows[0].get::<Option<i32>, _>("vector_dimensions"),
        Some(1536)
    );
    assert_eq!(
        rows[1].get::<Option<String>, _>("file_type").as_deref(),
        Some("pdf")
    );
    assert_eq!(
        rows[1].get::<Option<i64>, _>("file_size_bytes"),
        Some(123_456)
    );
    assert_eq!(rows[1].get::<Option<i32>, _>("page_count"), Some(12));
    assert_eq!(rows[2].get::<Option<i32>, _>("chunk_count"), Some(40));
    assert_eq!(
        rows[2]
            .get::<Option<String>, _>("chunk_strategy")
            .as_deref(),
        Some("recursive")
    );
    assert_eq!(rows[3].get::<Option<i64>, _>("vectors_upserted"), Some(40));
    assert_eq!(
        rows[3]
            .get::<Option<String>, _>("collection_name")
            .as_deref(),
        Some("docs")
    );
    assert_eq!(rows[4].get::<String, _>("span_type"), "rerank_v2");
    // Starts and ends in one batch became one row each.
    assert_eq!(guard.stats().written, 10);
}

#[tokio::test]
async fn log_llm_call_writes_every_llm_field() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    let parent = p.start_span(&ctx, "answer", SpanType::Internal, None);
    let id = p.log_llm_call(
        &ctx.child(parent),
        LlmCall {
            name: Some("openai.chat".into()),
            metrics: LlmMetrics {
                model: Some("gpt-4o".into()),
                prompt_tokens: Some(1200),
                completion_tokens: Some(300),
                cost_usd: Some("0.012345".parse().unwrap()),
                temperature: Some(0.7),
            },
            latency_ms: Some(850.0),
            input_preview: Some("You are a helpful assistant".into()),
            output_preview: Some("Here is the answer".into()),
            outcome: Outcome::success(),
            metadata: Some(json!({"provider": "openai"})),
        },
    );
    assert!(guard.flush(FLUSH));
    let row = sqlx::query(
        "SELECT name, span_type, parent_span_id, trace_id, model, prompt_tokens, completion_tokens, cost_usd,
                cost_source, temperature, duration_ms, input_preview, output_preview, status, metadata,
                extract(epoch FROM ended_at - started_at) * 1000 AS span_ms
         FROM observability.spans WHERE id = $1",
    )
    .bind(id.as_uuid())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("name"), "openai.chat");
    assert_eq!(row.get::<String, _>("span_type"), "llm");
    assert_eq!(
        row.get::<Option<Uuid>, _>("parent_span_id"),
        Some(parent.as_uuid())
    );
    assert_eq!(row.get::<Uuid, _>("trace_id"), ctx.trace_id.as_uuid());
    assert_eq!(
        row.get::<Option<String>, _>("model").as_deref(),
        Some("gpt-4o")
    );
    assert_eq!(row.get::<Option<i64>, _>("prompt_tokens"), Some(1200));
    assert_eq!(row.get::<Option<i64>, _>("completion_tokens"), Some(300));
    assert_eq!(
        row.get::<Option<Decimal>, _>("cost_usd"),
        Some("0.012345".parse().unwrap())
    );
    assert_eq!(
        row.get::<Option<String>, _>("cost_source").as_deref(),
        Some("given")
    );
    assert_eq!(row.get::<Option<f64>, _>("temperature"), Some(0.7));
    assert_eq!(row.get::<f64, _>("duration_ms"), 850.0);
    let span_ms: Decimal = row.get("span_ms");
    assert_eq!(span_ms, Decimal::new(850, 0));
    assert_eq!(
        row.get::<Option<String>, _>("input_preview").as_deref(),
        Some("You are a helpful assistant")
    );
    assert_eq!(
        row.get::<Option<String>, _>("output_preview").as_deref(),
        Some("Here is the answer")
    );
    assert_eq!(row.get::<String, _>("status"), "success");
    assert_eq!(
        row.get::<serde_json::Value, _>("metadata"),
        json!({"provider": "openai"})
    );
}

#[tokio::test]
async fn log_chat_message_writes_sources_and_citations() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    let span = p.start_span(&ctx, "chat", SpanType::Internal, None);
    let doc = Uuid::now_v7();
    p.log_chat_message(
        &ctx.child(span),
        ChatMessage::new(ChatRole::User, "What is our refund policy?"),
    );
    p.log_chat_message(
        &ctx.child(span),
        ChatMessage {
            turn_number: Some(2),
            sources: vec![Source {
                doc_id: Some(doc),
                doc_name: Some("policy.pdf".into()),
                chunk_id: Some("c-7".into()),
                score: Some(0.87),
                excerpt: Some("Refunds within 30 days".into()),
            }],
            citations: vec![Citation {
                marker: "[1]".into(),
                doc_id: Some(doc),
                page: Some(3),
                section: Some("Refunds".into()),
            }],
            prompt_tokens: Some(900),
            completion_tokens: Some(80),
            response_time_ms: Some(1234.5),
            ..ChatMessage::new(ChatRole::Assistant, "Within 30 days [1].")
        },
    );
    // Without session, user and kb: refused and counted.
    p.log_chat_message(
        &TraceContext::new(),
        ChatMessage::new(ChatRole::User, "lost"),
    );
    p.log_chat_message(
        &TraceContext::new()
            .with_user(Uuid::now_v7())
            .with_session("s"),
        ChatMessage::new(ChatRole::User, "lost"),
    );
    assert!(guard.flush(FLUSH));
    assert_eq!(guard.stats().rejected, 2);
    assert_eq!(count(&db.pool, "chat_messages").await, 2);

    let rows = sqlx::query(
        "SELECT trace_id, span_id, session_id, user_id, kb_id, role, content, turn_number, sources, citations,
                prompt_tokens, completion_tokens, response_time_ms, created_at
         FROM observability.chat_messages ORDER BY created_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let user = &rows[0];
    assert_eq!(user.get::<String, _>("role"), "user");
    assert_eq!(user.get::<serde_json::Value, _>("sources"), json!([]));
    assert_eq!(user.get::<serde_json::Value, _>("citations"), json!([]));
    let a = &rows[1];
    assert_eq!(a.get::<Uuid, _>("trace_id"), ctx.trace_id.as_uuid());
    assert_eq!(a.get::<Option<Uuid>, _>("span_id"), Some(span.as_uuid()));
    assert_eq!(a.get::<String, _>("session_id"), "session-1");
    assert_eq!(a.get::<Uuid, _>("user_id"), ctx.user_id.unwrap());
    assert_eq!(a.get::<Uuid, _>("kb_id"), ctx.kb_id.unwrap());
    assert_eq!(a.get::<String, _>("role"), "assistant");
    assert_eq!(a.get::<String, _>("content"), "Within 30 days [1].");
    assert_eq!(a.get::<Option<i32>, _>("turn_number"), Some(2));
    assert_eq!(
        a.get::<serde_json::Value, _>("sources"),
        json!([{"doc_id": doc, "doc_name": "policy.pdf", "chunk_id": "c-7", "score": 0.87, "excerpt": "Refunds within 30 days"}])
    );
    assert_eq!(
        a.get::<serde_json::Value, _>("citations"),
        json!([{"marker": "[1]", "doc_id": doc, "page": 3, "section": "Refunds"}])
    );
    assert_eq!(a.get::<Option<i64>, _>("prompt_tokens"), Some(900));
    assert_eq!(a.get::<Option<i64>, _>("completion_tokens"), Some(80));
    assert_eq!(a.get::<Option<f64>, _>("response_time_ms"), Some(1234.5));
}

#[tokio::test]
async fn log_document_event_writes_each_event_type_and_metrics() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    let doc = Uuid::now_v7();
    p.log_document_event(
        &ctx,
        DocumentEvent {
            duration_ms: Some(3.0),
            metadata: Some(json!({"filename": "a.pdf"})),
            ..DocumentEvent::new(
                doc,
                DocumentEventType::Upload,
                DocumentEventStatus::Completed,
            )
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent {
            metrics: DocumentMetrics::Parse(DocumentParseMetrics {
                extracted_pages: Some(12),
                extracted_chars: Some(34_000),
                tables_found: Some(2),
                images_found: Some(1),
            }),
            ..DocumentEvent::new(
                doc,
                DocumentEventType::Parse,
                DocumentEventStatus::Completed,
            )
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent {
            metrics: DocumentMetrics::Chunk(DocumentChunkMetrics {
                chunks_created: Some(40),
                avg_chunk_size: Some(850),
            }),
            ..DocumentEvent::new(
                doc,
                DocumentEventType::Chunk,
                DocumentEventStatus::Completed,
            )
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent {
            metrics: DocumentMetrics::Embed(DocumentEmbedMetrics {
                vectors_generated: Some(40),
                embedding_model: Some("bge-small".into()),
            }),
            ..DocumentEvent::new(
                doc,
                DocumentEventType::Embed,
                DocumentEventStatus::Completed,
            )
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent {
            error_type: Some("QdrantError".into()),
            error_message: Some("collection missing".into()),
            retryable: Some(true),
            retry_count: Some(2),
            metrics: DocumentMetrics::Index(IndexMetrics {
                vectors_upserted: Some(0),
                collection_name: Some("kb".into()),
            }),
            ..DocumentEvent::new(doc, DocumentEventType::Index, DocumentEventStatus::Failed)
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent::new(
            doc,
            DocumentEventType::Complete,
            DocumentEventStatus::Skipped,
        ),
    );
    assert!(guard.flush(FLUSH));
    let rows = sqlx::query(
        "SELECT * FROM observability.document_events WHERE document_id = $1 ORDER BY id",
    )
    .bind(doc)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let types: Vec<String> = rows.iter().map(|r| r.get("event_type")).collect();
    assert_eq!(
        types,
        ["upload", "parse", "chunk", "embed", "index", "complete"]
    );
    for r in &rows {
        assert_eq!(r.get::<Uuid, _>("trace_id"), ctx.trace_id.as_uuid());
        assert_eq!(r.get::<Option<Uuid>, _>("kb_id"), ctx.kb_id);
    }
    assert_eq!(rows[0].get::<Option<f64>, _>("duration_ms"), Some(3.0));
    assert_eq!(rows[0].get::<String, _>("status"), "completed");
    assert!(
        rows[0]
            .get::<Option<chrono::DateTime<chrono::Utc>>, _>("completed_at")
            .is_some()
    );
    assert_eq!(
        rows[0].get::<serde_json::Value, _>("metadata"),
        json!({"filename": "a.pdf"})
    );
    assert_eq!(rows[1].get::<Option<i32>, _>("extracted_pages"), Some(12));
    assert_eq!(
        rows[1].get::<Option<i64>, _>("extracted_chars"),
        Some(34_000)
    );
    assert_eq!(rows[1].get::<Option<i32>, _>("tables_found"), Some(2));
    assert_eq!(rows[1].get::<Option<i32>, _>("images_found"), Some(1));
    assert_eq!(rows[2].get::<Option<i32>, _>("chunks_created"), Some(40));
    assert_eq!(rows[2].get::<Option<i32>, _>("avg_chunk_size"), Some(850));
    assert_eq!(rows[3].get::<Option<i64>, _>("vectors_generated"), Some(40));
    assert_eq!(
        rows[3]
            .get::<Option<String>, _>("embedding_model")
            .as_deref(),
        Some("bge-small")
    );
    assert_eq!(rows[4].get::<String, _>("status"), "failed");
    assert_eq!(
        rows[4].get::<Option<String>, _>("error_type").as_deref(),
        Some("QdrantError")
    );
    assert_eq!(
        rows[4].get::<Option<String>, _>("error_message").as_deref(),
        Some("collection missing")
    );
    assert_eq!(rows[4].get::<Option<bool>, _>("retryable"), Some(true));
    assert_eq!(rows[4].get::<Option<i32>, _>("retry_count"), Some(2));
    assert_eq!(rows[4].get::<Option<i64>, _>("vectors_upserted"), Some(0));
    assert_eq!(
        rows[4]
            .get::<Option<String>, _>("collection_name")
            .as_deref(),
        Some("kb")
    );
    assert_eq!(rows[5].get::<String, _>("status"), "skipped");
}

#[tokio::test]
async fn provider_reports_name_and_enabled() {
    let (p, guard) = Builder::new("postgres://nobody@127.0.0.1:1/none")
        .build()
        .unwrap();
    assert_eq!(p.name(), "postgresql");
    assert!(p.enabled());
    drop(guard);
}

#[tokio::test]
async fn a_trace_ends_once_and_only_from_the_context_that_started_it() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    p.start_trace(&ctx, "t", OperationType::Chat, None);
    p.start_trace(&ctx, "again", OperationType::Chat, None);
    assert!(guard.flush(FLUSH));
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    p.end_trace(
        &ctx,
        Outcome::error("Late", "second end"),
        TraceTotals::default(),
    );
    // A context that never started a trace cannot end one.
    p.end_trace(
        &TraceContext::new(),
        Outcome::success(),
        TraceTotals::default(),
    );
    assert!(guard.flush(FLUSH));
    assert_eq!(guard.stats().rejected, 3);
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, status FROM observability.traces")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rows, [("t".to_owned(), "success".to_owned())]);
    // The writer goes on.
    let later = TraceContext::new();
    p.start_trace(&later, "later", OperationType::Search, None);
    p.end_trace(&later, Outcome::success(), TraceTotals::default());
    assert!(guard.flush(FLUSH));
    assert_eq!(count(&db.pool, "traces").await, 2);
}

#[tokio::test]
async fn usage_under_an_explicit_span_counts_once() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    p.start_trace(&ctx, "t", OperationType::Chat, None);
    let wrapper = p.start_span(&ctx, "chat_completion", SpanType::Llm, None);
    p.log_llm_call(
        &ctx.child(wrapper),
        LlmCall {
            metrics: LlmMetrics {
                prompt_tokens: Some(100),
                completion_tokens: Some(10),
                ..Default::default()
            },
            ..LlmCall::default()
        },
    );
    p.end_span(
        &ctx,
        wrapper,
        SpanEnd {
            metrics: SpanMetrics::Llm(LlmMetrics {
                prompt_tokens: Some(100),
                completion_tokens: Some(10),
                ..Default::default()
            }),
            ..SpanEnd::default()
        },
    );
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    assert!(guard.flush(FLUSH));
    let total: Option<i64> = sqlx::query_scalar("SELECT total_tokens FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(total, Some(110));
}

#[tokio::test]
async fn a_total_cost_too_large_for_the_column_is_stored_null_not_lost() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    let ctx = ctx();
    p.start_trace(&ctx, "expensive", OperationType::Generation, None);
    for _ in 0..2 {
        p.log_llm_call(
            &ctx,
            LlmCall {
                metrics: LlmMetrics {
                    cost_usd: Some(Decimal::new(6_000, 0)),
                    ..Default::default()
                },
                ..LlmCall::default()
            },
        );
    }
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    assert!(guard.flush(FLUSH));
    assert_eq!(guard.stats().refused, 0);
    let row = sqlx::query("SELECT status, total_cost_usd FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("status"), "success");
    assert_eq!(row.get::<Option<Decimal>, _>("total_cost_usd"), None);
    assert_eq!(count(&db.pool, "spans").await, 2);
}

#[tokio::test]
async fn content_capture_off_and_a_redaction_hook_apply_before_queueing() {
    use tracing_postgres::privacy::{NOT_CAPTURED, TextKind};
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url)
        .capture_content(false)
        .build()
        .unwrap();
    let ctx = ctx();
    p.log_chat_message(
        &ctx,
        ChatMessage {
            sources: vec![Source {
                excerpt: Some("secret excerpt".into()),
                doc_name: Some("a.pdf".into()),
                ..Source::default()
            }],
            ..ChatMessage::new(ChatRole::User, "my secret question")
        },
    );
    let span = p.start_span(&ctx, "search", SpanType::Retrieval, None);
    p.end_span(
        &ctx,
        span,
        SpanEnd {
            metrics: SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: Some("secret query".into()),
                result_count: Some(3),
                ..Default::default()
            }),
            input_preview: Some("secret input".into()),
            output_preview: Some("secret output".into()),
            ..SpanEnd::default()
        },
    );
    assert!(guard.flush(FLUSH));
    let chat = sqlx::query("SELECT content, sources FROM observability.chat_messages")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(chat.get::<String, _>("content"), NOT_CAPTURED);
    assert_eq!(
        chat.get::<serde_json::Value, _>("sources"),
        json!([{"doc_id": null, "doc_name": "a.pdf", "chunk_id": null, "score": null}])
    );
    let s = sqlx::query(
        "SELECT query_text, input_preview, output_preview, result_count FROM observability.spans",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(s.get::<Option<String>, _>("query_text"), None);
    assert_eq!(s.get::<Option<String>, _>("input_preview"), None);
    assert_eq!(s.get::<Option<String>, _>("output_preview"), None);
    assert_eq!(s.get::<Option<i32>, _>("result_count"), Some(3));
    drop(guard);

    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url)
        .redact(|kind: TextKind, text: &mut String| {
            *text = text.replace("alice@example.com", "[email]");
            if kind == TextKind::ErrorMessage {
                text.push_str(" (redacted)");
            }
        })
        .build()
        .unwrap();
    p.log_chat_message(
        &ctx,
        ChatMessage::new(ChatRole::User, "mail alice@example.com"),
    );
    p.log_llm_call(
        &ctx,
        LlmCall {
            input_preview: Some("to alice@example.com".into()),
            outcome: Outcome::error("SendError", "bounced for alice@example.com"),
            metadata: Some(json!({"to": ["alice@example.com"]})),
            ..LlmCall::default()
        },
    );
    assert!(guard.flush(FLUSH));
    let content: String = sqlx::query_scalar("SELECT content FROM observability.chat_messages")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(content, "mail [email]");
    let s = sqlx::query("SELECT input_preview, error_message, metadata FROM observability.spans")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        s.get::<Option<String>, _>("input_preview").as_deref(),
        Some("to [email]")
    );
    assert_eq!(
        s.get::<Option<String>, _>("error_message").as_deref(),
        Some("bounced for [email] (redacted)")
    );
    assert_eq!(
        s.get::<serde_json::Value, _>("metadata"),
        json!({"to": ["[email]"]})
    );
}
