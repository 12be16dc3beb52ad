//! The layer's mapping rules, each read back from a real PostgreSQL.

use tracing_postgres_test_support as common;

use std::time::Duration;

use common::{count, fresh_db};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::{PgPool, Row};
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Instrument, field};
use tracing_postgres::*;
use tracing_subscriber::prelude::*;
use uuid::Uuid;

const FLUSH: Duration = Duration::from_secs(30);

/// A database, a layer writing to it, and a dispatch with the layer on a registry.
async fn setup(
    builder: impl FnOnce(Builder) -> Builder,
) -> (common::TestDb, PostgresLayer, WriterGuard, Dispatch) {
    let db = fresh_db().await;
    let (layer, guard) = builder(Builder::new(&db.url)).build_layer().unwrap();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    (db, layer, guard, dispatch)
}

async fn span_by_name(pool: &PgPool, name: &str) -> sqlx::postgres::PgRow {
    sqlx::query("SELECT * FROM observability.spans WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("span {name}: {e}"))
}

#[tokio::test]
async fn root_span_becomes_a_trace_and_nested_spans_keep_their_parents() {
    let (db, _layer, guard, dispatch) = setup(|b| b).await;
    let user = Uuid::now_v7();
    let kb = Uuid::now_v7();
    tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("handle_chat", operation_type = "chat", user_id = %user, session_id = "s-1", kb_id = %kb, route = "/chat");
        let _r = root.enter();
        let retrieve = tracing::info_span!(
            "retrieve",
            query_text = "refunds?",
            result_count = 4_i64,
            top_score = 0.8
        );
        {
            let _g = retrieve.enter();
            let embed = tracing::info_span!(
                "embed",
                embedding_model = "bge",
                vector_count = 1_u64,
                vector_dimensions = 384_i64
            );
            let _e = embed.enter();
        }
        let custom = tracing::info_span!(
            "my_step",
            span_type = "postprocess",
            attempt = 2_i64,
            flag = true
        );
        let _c = custom.enter();
    });
    assert!(guard.flush(FLUSH));
    let t = sqlx::query("SELECT * FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(t.get::<String, _>("name"), "handle_chat");
    assert_eq!(t.get::<String, _>("operation_type"), "chat");
    assert_eq!(t.get::<String, _>("status"), "success");
    assert_eq!(t.get::<Option<Uuid>, _>("user_id"), Some(user));
    assert_eq!(t.get::<Option<Uuid>, _>("kb_id"), Some(kb));
    assert_eq!(
        t.get::<Option<String>, _>("session_id").as_deref(),
        Some("s-1")
    );
    assert_eq!(
        t.get::<serde_json::Value, _>("metadata"),
        json!({"route": "/chat"})
    );
    let trace_id: Uuid = t.get("id");
    // The W3C forms of the ids, written by the writer.
    assert_eq!(
        t.get::<String, _>("trace_id"),
        trace_id.simple().to_string()
    );

    let retrieve = span_by_name(&db.pool, "retrieve").await;
    let embed = span_by_name(&db.pool, "embed").await;
    let custom = span_by_name(&db.pool, "my_step").await;
    for s in [&retrieve, &embed, &custom] {
        assert_eq!(s.get::<Uuid, _>("trace_id"), trace_id);
        assert_eq!(
            s.get::<String, _>("span_id"),
            s.get::<Uuid, _>("id").simple().to_string()[16..]
        );
        assert_eq!(s.get::<String, _>("status"), "success");
        assert!(s.get::<Option<f64>, _>("duration_ms").is_some());
    }
    // Children of the root have no parent span (the root is the trace).
    assert_eq!(retrieve.get::<Option<Uuid>, _>("parent_span_id"), None);
    assert_eq!(
        embed.get::<Option<Uuid>, _>("parent_span_id"),
        Some(retrieve.get("id"))
    );
    assert_eq!(retrieve.get::<String, _>("span_type"), "retrieval");
    assert_eq!(
        retrieve.get::<Option<String>, _>("query_text").as_deref(),
        Some("refunds?")
    );
    assert_eq!(retrieve.get::<Option<i32>, _>("result_count"), Some(4));
    assert_eq!(retrieve.get::<Option<f64>, _>("top_score"), Some(0.8));
    assert_eq!(embed.get::<String, _>("span_type"), "embedding");
    assert_eq!(
        embed.get::<Option<String>, _>("embedding_model").as_deref(),
        Some("bge")
    );
    assert_eq!(embed.get::<Option<i64>, _>("vector_count"), Some(1));
    assert_eq!(embed.get::<Option<i32>, _>("vector_dimensions"), Some(384));
    assert_eq!(custom.get::<String, _>("span_type"), "postprocess");
    assert_eq!(
        custom.get::<serde_json::Value, _>("metadata"),
        json!({"attempt": 2, "flag": true})
    );
    assert_eq!(count(&db.pool, "spans").await, 3);
}

#[tokio::test]
async fn span_type_comes_from_span_type_then_gen_ai_then_openinference_then_fields() {
    let (db, _layer, guard, dispatch) = setup(|b| b).await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("root").entered();
        drop(
            tracing::info_span!("a", span_type = "tool", "gen_ai.operation.name" = "chat")
                .entered(),
        );
        drop(
            tracing::info_span!(
                "b",
                "gen_ai.operation.name" = "embeddings",
                "openinference.span.kind" = "LLM"
            )
            .entered(),
        );
        drop(tracing::info_span!("c", "openinference.span.kind" = "RERANKER").entered());
        drop(tracing::info_span!("d", model = "gpt-4o").entered());
        drop(tracing::info_span!("e", chunk_count = 3_i64).entered());
        drop(tracing::info_span!("f", file_type = "pdf").entered());
        drop(tracing::info_span!("g", vectors_upserted = 3_i64).entered());
        drop(tracing::info_span!("h").entered());
    });
    assert!(guard.flush(FLUSH));
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, span_type FROM observability.spans ORDER BY name")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let got: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        got,
        [
            ("a", "tool"),
            ("b", "embedding"),
            ("c", "rerank"),
            ("d", "llm"),
            ("e", "chunk"),
            ("f", "parse"),
            ("g", "index"),
            ("h", "internal"),
        ]
    );
}

#[tokio::test]
async fn alias_field_names_fill_the_spec_columns() {
    let (db, _layer, guard, dispatch) = setup(|b| b).await;
    let user = Uuid::now_v7();
    tracing::dispatcher::with_default(&dispatch, || {
        let _root =
            tracing::info_span!("root", "session.id" = "sess-oi", "user.id" = %user).entered();
        drop(
            tracing::info_span!(
                "otel",
                "gen_ai.operation.name" = "chat",
                "gen_ai.request.model" = "gpt-4o",
                "gen_ai.usage.input_tokens" = 10_i64,
                "gen_ai.usage.output_tokens" = 5_i64,
                "gen_ai.request.temperature" = 0.3,
            )
            .entered(),
        );
        drop(
            tracing::info_span!(
                "openinference",
                "openinference.span.kind" = "LLM",
                "llm.model_name" = "claude",
                "llm.token_count.prompt" = 7_i64,
                "llm.token_count.completion" = 3_i64,
                "llm.cost.total" = 0.25,
                "input.value" = "question",
                "output.value" = "answer",
            )
            .entered(),
        );
        // The spec's name wins over an alias, whatever the order.
        drop(
            tracing::info_span!("both", "gen_ai.request.model" = "alias", model = "spec").entered(),
        );
    });
    assert!(guard.flush(FLUSH));
    let o = span_by_name(&db.pool, "otel").await;
    assert_eq!(o.get::<String, _>("span_type"), "llm");
    assert_eq!(
        o.get::<Option<String>, _>("model").as_deref(),
        Some("gpt-4o")
    );
    assert_eq!(o.get::<Option<i64>, _>("prompt_tokens"), Some(10));
    assert_eq!(o.get::<Option<i64>, _>("completion_tokens"), Some(5));
    assert_eq!(o.get::<Option<f64>, _>("temperature"), Some(0.3));
    let oi = span_by_name(&db.pool, "openinference").await;
    assert_eq!(
        oi.get::<Option<String>, _>("model").as_deref(),
        Some("claude")
    );
    assert_eq!(oi.get::<Option<i64>, _>("prompt_tokens"), Some(7));
    assert_eq!(oi.get::<Option<i64>, _>("completion_tokens"), Some(3));
    assert_eq!(
        oi.get::<Option<Decimal>, _>("cost_usd"),
        Some(Decimal::new(25, 2))
    );
    assert_eq!(
        oi.get::<Option<String>, _>("cost_source").as_deref(),
        Some("given")
    );
    assert_eq!(
        oi.get::<Option<String>, _>("input_preview").as_deref(),
        Some("question")
    );
    assert_eq!(
        oi.get::<Option<String>, _>("output_preview").as_deref(),
        Some("answer")
    );
    assert_eq!(
        span_by_name(&db.pool, "both")
            .await
            .get::<Option<String>, _>("model")
            .as_deref(),
        Some("spec")
    );
    let t = sqlx::query("SELECT session_id, user_id FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        t.get::<Option<String>, _>("session_id").as_deref(),
        Some("sess-oi")
    );
    assert_eq!(t.get::<Option<Uuid>, _>("user_id"), Some(user));
}

#[tokio::test]
async fn fields_recorded_late_are_written() {
    let (db, _layer, guard, dispatch) = setup(|b| b).await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("root").entered();
        let span = tracing::info_span!(
            "llm",
            model = "gpt-4o",
            prompt_tokens = field::Empty,
            completion_tokens = field::Empty,
            output_preview = field::Empty,
            finish_reason = field::Empty,
        );
        let _g = span.enter();
        span.record("prompt_tokens", 321_i64);
        span.record("completion_tokens", 54_i64);
        span.record("output_preview", "the answer");
        span.record("finish_reason", "stop");
    });
    assert!(guard.flush(FLUSH));
    let s = span_by_name(&db.pool, "llm").await;
    assert_eq!(s.get::<Option<i64>, _>("prompt_tokens"), Some(321));
    assert_eq!(s.get::<Option<i64>, _>("completion_tokens"), Some(54));
    assert_eq!(
        s.get::<Option<String>, _>("output_preview").as_deref(),
        Some("the answer")
    );
    assert_eq!(
        s.get::<serde_json::Value, _>("metadata"),
        json!({"finish_reason": "stop"})
    );
}

#[tokio::test]
async fn error_events_and_error_fields_set_error_status() {
    let (db, _layer, guard, dispatch) = setup(|b| b).await;
    tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("root");
        let _r = root.enter();
        {
            let _s = tracing::info_span!("by_event").entered();
            tracing::error!(error.type = "TimeoutError", "model timed out after 30s");
        }
        {
            let _s = tracing::info_span!("by_field", error = field::Empty).entered();
            tracing::Span::current().record("error", "connection reset");
        }
        {
            let _s = tracing::info_span!("by_err_event").entered();
            let e = std::io::Error::other("disk full");
            tracing::warn!(
                error = &e as &(dyn std::error::Error + 'static),
                "write failed"
            );
        }
        {
            let _s = tracing::info_span!("fine").entered();
            tracing::info!("all good");
        }
        tracing::error!("request failed");
    });
    assert!(guard.flush(FLUSH));
    let e = span_by_name(&db.pool, "by_event").await;
    assert_eq!(e.get::<String, _>("status"), "error");
    assert_eq!(
        e.get::<Option<String>, _>("error_type").as_deref(),
        Some("TimeoutError")
    );
    assert_eq!(
        e.get::<Option<String>, _>("error_message").as_deref(),
        Some("model timed out after 30s")
    );
    let f = span_by_name(&db.pool, "by_field").await;
    assert_eq!(f.get::<String, _>("status"), "error");
    assert_eq!(
        f.get::<Option<String>, _>("error_message").as_deref(),
        Some("connection reset")
    );
    let w = span_by_name(&db.pool, "by_err_event").await;
    assert_eq!(w.get::<String, _>("status"), "error");
    assert_eq!(
        w.get::<Option<String>, _>("error_message").as_deref(),
        Some("disk full")
    );
    assert_eq!(
        span_by_name(&db.pool, "fine")
            .await
            .get::<String, _>("status"),
        "success"
    );
    let t = sqlx::query("SELECT status, error_message FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(t.get::<String, _>("status"), "error");
    assert_eq!(
        t.get::<Option<String>, _>("error_message").as_deref(),
        Some("request failed")
    );
}

/// With a redaction hook, a span's row is finished on the thread that closes it and the hook
/// sees every text of it there, before it is queued: columns, metadata, the error, events.
#[tokio::test]
async fn a_redaction_hook_sees_the_layers_spans_on_the_closing_thread() {
    use std::sync::{Arc, Mutex};
    let threads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&threads);
    let (db, _layer, guard, dispatch) = setup(move |b| {
        b.redact(move |_kind, text: &mut String| {
            seen.lock().unwrap().push(std::thread::current().id());
            if text.contains("secret") {
                *text = "[redacted]".to_owned();
            }
        })
    })
    .await;
    tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("root");
        let _r = root.enter();
        let _s = tracing::info_span!(
            "retrieve",
            span_type = "retrieval",
            query_text = "a secret query",
            note = "a secret note",
            top_k = 5_i64
        )
        .entered();
        tracing::warn!(detail = "a secret detail", "slow index");
        tracing::error!("a secret failure");
    });
    assert!(guard.flush(FLUSH));
    let r = span_by_name(&db.pool, "retrieve").await;
    assert_eq!(
        r.get::<Option<String>, _>("query_text").as_deref(),
        Some("[redacted]")
    );
    assert_eq!(
        r.get::<Option<String>, _>("error_message").as_deref(),
        Some("[redacted]")
    );
    let meta: serde_json::Value = r.get("metadata");
    assert_eq!(meta["note"], json!("[redacted]"), "{meta}");
    assert_eq!(meta["top_k"], json!(5), "{meta}");
    assert_eq!(meta["events"][0]["detail"], json!("[redacted]"), "{meta}");
    assert!(!meta.to_string().contains("secret"), "{meta}");
    let threads = threads.lock().unwrap();
    assert!(!threads.is_empty());
    assert!(
        threads.iter().all(|t| *t == std::thread::current().id()),
        "the hook ran on the span's own thread"
    );
}

#[tokio::test]
async fn other_events_are_attached_within_a_bound() {
    let (db, _layer, guard, dispatch) = setup(|b| {
        b.attach_events(tracing::level_filters::LevelFilter::INFO)
            .max_events_per_span(3)
    })
    .await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("root").entered();
        let _s = tracing::info_span!("busy").entered();
        for i in 0..10 {
            tracing::info!(i, "step");
        }
        tracing::debug!("left out: below the attach level");
    });
    assert!(guard.flush(FLUSH));
    let m: serde_json::Value = span_by_name(&db.pool, "busy").await.get("metadata");
    let events = m["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["message"], "step");
    assert_eq!(events[0]["i"], 0);
    assert_eq!(events[0]["level"], "INFO");
    assert_eq!(m["events_dropped"], 7);
}

#[tokio::test]
async fn chat_and_document_events_become_rows() {
    let (db, _layer, guard, dispatch) = setup(|b| b).await;
    let (user, kb, doc) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let sources = json!([{"doc_id": doc, "doc_name": "a.pdf", "chunk_id": "c1", "score": 0.9, "excerpt": "x"}]);
    let citations = json!([{"marker": "[1]", "doc_id": doc, "page": 2, "section": "Intro"}]);
    tracing::dispatcher::with_default(&dispatch, || {
        let _root =
            tracing::info_span!("chat", user_id = %user, kb_id = %kb, session_id = "s9").entered();
        let _answer = tracing::info_span!("answer").entered();
        tracing::info!(role = "user", content = "hi?", turn_number = 1_i64);
        tracing::info!(role = "assistant", content = "hello [1]", turn_number = 2_i64, sources = %sources, citations = %citations, prompt_tokens = 5_i64, completion_tokens = 2_i64, response_time_ms = 12.5);
        tracing::info!(document_id = %doc, event_type = "parse", status = "completed", duration_ms = 40.0, extracted_pages = 3_i64, extracted_chars = 900_i64, tables_found = 1_i64, images_found = 0_i64, parser = "pdfium");
        tracing::info!(document_id = %doc, event_type = "index", status = "failed", error_type = "Timeout", error_message = "qdrant timeout", retryable = true, retry_count = 1_i64, collection_name = "kb");
    });
    // Without the three ids, a chat event is refused and counted.
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("anonymous").entered();
        tracing::info!(role = "user", content = "lost");
    });
    assert!(guard.flush(FLUSH));
    assert_eq!(guard.stats().rejected, 1);
    let answer = span_by_name(&db.pool, "answer").await;
    let rows = sqlx::query("SELECT * FROM observability.chat_messages ORDER BY turn_number")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<String, _>("role"), "user");
    assert_eq!(rows[0].get::<String, _>("content"), "hi?");
    let a = &rows[1];
    assert_eq!(a.get::<String, _>("role"), "assistant");
    assert_eq!(a.get::<Uuid, _>("user_id"), user);
    assert_eq!(a.get::<Uuid, _>("kb_id"), kb);
    assert_eq!(a.get::<String, _>("session_id"), "s9");
    assert_eq!(a.get::<Option<Uuid>, _>("span_id"), Some(answer.get("id")));
    assert_eq!(
        a.get::<Uuid, _>("trace_id"),
        answer.get::<Uuid, _>("trace_id")
    );
    assert_eq!(a.get::<serde_json::Value, _>("sources"), sources);
    assert_eq!(a.get::<serde_json::Value, _>("citations"), citations);
    assert_eq!(a.get::<Option<i64>, _>("prompt_tokens"), Some(5));
    assert_eq!(a.get::<Option<f64>, _>("response_time_ms"), Some(12.5));
    let events = sqlx::query("SELECT * FROM observability.document_events ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    let p = &events[0];
    assert_eq!(p.get::<Uuid, _>("document_id"), doc);
    assert_eq!(p.get::<Option<Uuid>, _>("kb_id"), Some(kb));
    assert_eq!(p.get::<String, _>("event_type"), "parse");
    assert_eq!(p.get::<String, _>("status"), "completed");
    assert_eq!(p.get::<Option<f64>, _>("duration_ms"), Some(40.0));
    assert_eq!(p.get::<Option<i32>, _>("extracted_pages"), Some(3));
    assert_eq!(p.get::<Option<i64>, _>("extracted_chars"), Some(900));
    assert_eq!(p.get::<Option<i32>, _>("tables_found"), Some(1));
    assert_eq!(
        p.get::<serde_json::Value, _>("metadata"),
        json!({"parser": "pdfium"})
    );
    let i = &events[1];
    assert_eq!(i.get::<String, _>("status"), "failed");
    assert_eq!(
        i.get::<Option<String>, _>("error_type").as_deref(),
        Some("Timeout")
    );
    assert_eq!(
        i.get::<Option<String>, _>("error_message").as_deref(),
        Some("qdrant timeout")
    );
    assert_eq!(i.get::<Option<bool>, _>("retryable"), Some(true));
    assert_eq!(i.get::<Option<i32>, _>("retry_count"), Some(1));
    assert_eq!(
        i.get::<Option<String>, _>("collection_name").as_deref(),
        Some("kb")
    );
}

/// A wrapper span and the model span under it both carry usage: the trace counts it once,
/// from the deepest span.
#[tokio::test]
async fn usage_rolls_up_once_with_a_wrapper_span() {
    let (db, _layer, guard, dispatch) = setup(|b| b).await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("request").entered();
        {
            let wrapper = tracing::info_span!(
                "chat_completion",
                prompt_tokens = 100_i64,
                completion_tokens = 20_i64,
                cost_usd = 0.5
            );
            let _w = wrapper.enter();
            let _model = tracing::info_span!(
                "openai.call",
                model = "gpt-4o",
                prompt_tokens = 100_i64,
                completion_tokens = 20_i64,
                cost_usd = 0.5
            )
            .entered();
        }
        // A sibling with usage and nothing below it counts too.
        drop(
            tracing::info_span!("embed", span_type = "embedding", prompt_tokens = 7_i64).entered(),
        );
    });
    assert!(guard.flush(FLUSH));
    let t = sqlx::query("SELECT prompt_tokens, completion_tokens, total_tokens, total_cost_usd FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(t.get::<Option<i64>, _>("prompt_tokens"), Some(107));
    assert_eq!(t.get::<Option<i64>, _>("completion_tokens"), Some(20));
    assert_eq!(t.get::<Option<i64>, _>("total_tokens"), Some(127));
    assert_eq!(
        t.get::<Option<Decimal>, _>("total_cost_usd"),
        Some(Decimal::new(5, 1))
    );
    // Both spans keep their own usage.
    assert_eq!(
        span_by_name(&db.pool, "chat_completion")
            .await
            .get::<Option<i64>, _>("prompt_tokens"),
        Some(100)
    );
}

#[tokio::test]
async fn cost_is_computed_from_the_price_table_when_missing() {
    let prices = PriceTable::new().with("gpt-4o-mini*", Decimal::new(15, 5), Decimal::new(60, 5));
    let (db, _layer, guard, dispatch) = setup(|b| b.prices(prices)).await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("root").entered();
        drop(
            tracing::info_span!(
                "priced",
                model = "gpt-4o-mini-2024",
                prompt_tokens = 2000_i64,
                completion_tokens = 1000_i64
            )
            .entered(),
        );
        drop(
            tracing::info_span!(
                "given",
                model = "gpt-4o-mini",
                prompt_tokens = 2000_i64,
                cost_usd = "0.1"
            )
            .entered(),
        );
        drop(tracing::info_span!("unknown", model = "llama", prompt_tokens = 2000_i64).entered());
    });
    assert!(guard.flush(FLUSH));
    let p = span_by_name(&db.pool, "priced").await;
    assert_eq!(
        p.get::<Option<Decimal>, _>("cost_usd"),
        Some(Decimal::new(900, 6))
    );
    assert_eq!(
        p.get::<Option<String>, _>("cost_source").as_deref(),
        Some("computed")
    );
    let g = span_by_name(&db.pool, "given").await;
    assert_eq!(
        g.get::<Option<Decimal>, _>("cost_usd"),
        Some(Decimal::new(1, 1))
    );
    assert_eq!(
        g.get::<Option<String>, _>("cost_source").as_deref(),
        Some("given")
    );
    let u = span_by_name(&db.pool, "unknown").await;
    assert_eq!(u.get::<Option<Decimal>, _>("cost_usd"), None);
    assert_eq!(u.get::<Option<String>, _>("cost_source"), None);
    let total: Option<Decimal> =
        sqlx::query_scalar("SELECT total_cost_usd FROM observability.traces")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(total, Some(Decimal::new(100_900, 6)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parents_survive_await_and_tokio_spawn_on_a_multi_thread_runtime() {
    let (db, _layer, guard, dispatch) = setup(|b| b).await;
    async fn leaf(i: usize) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _s = tracing::info_span!("leaf", i).entered();
    }
    async fn handler() {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let span = tracing::info_span!("worker", i);
            tasks.push(tokio::spawn(
                async move {
                    tokio::task::yield_now().await;
                    leaf(i).await;
                }
                .instrument(span)
                .with_current_subscriber(),
            ));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let root = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("request"));
    handler()
        .instrument(root)
        .with_subscriber(dispatch.clone())
        .await;
    assert!(guard.flush(FLUSH));
    let trace_id: Uuid = sqlx::query_scalar("SELECT id FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let other_trace: i64 =
        sqlx::query_scalar("SELECT count(*) FROM observability.spans WHERE trace_id <> $1")
            .bind(trace_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(other_trace, 0);
    assert_eq!(count(&db.pool, "spans").await, 16);
    let leaves_under_workers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.spans l JOIN observability.spans w ON l.parent_span_id = w.id
         WHERE l.name = 'leaf' AND w.name = 'worker' AND w.parent_span_id IS NULL AND l.trace_id = $1 AND w.trace_id = $1
           AND (l.metadata->>'i') = (w.metadata->>'i')",
    )
    .bind(trace_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(leaves_under_workers, 8);
}

#[tokio::test]
async fn explicit_calls_join_the_current_instrumented_trace() {
    let (db, layer, guard, dispatch) = setup(|b| b).await;
    let user = Uuid::now_v7();
    let kb = Uuid::now_v7();
    let doc = Uuid::now_v7();
    tracing::dispatcher::with_default(&dispatch, || {
        assert!(TraceContext::current().is_none());
        let _root = tracing::info_span!("request", user_id = %user, kb_id = %kb, session_id = "s")
            .entered();
        let _gen = tracing::info_span!("generate", prompt_tokens = 999_i64).entered();
        let ctx = TraceContext::current().expect("inside an instrumented span");
        layer.log_llm_call(
            &ctx,
            LlmCall {
                metrics: LlmMetrics {
                    model: Some("gpt-4o".into()),
                    prompt_tokens: Some(10),
                    completion_tokens: Some(2),
                    ..Default::default()
                },
                ..LlmCall::default()
            },
        );
        let span = layer.start_span(&ctx, "explicit", SpanType::Tool, None);
        layer.end_span(&ctx, span, SpanEnd::default());
        layer.log_chat_message(&ctx, ChatMessage::new(ChatRole::Assistant, "answer"));
        layer.log_document_event(
            &ctx,
            DocumentEvent::new(
                doc,
                DocumentEventType::Upload,
                DocumentEventStatus::Completed,
            ),
        );
        // The root span is the trace: explicit start and end of it are refused and counted.
        layer.start_trace(&ctx, "again", OperationType::Chat, None);
        layer.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    });
    assert!(guard.flush(FLUSH));
    assert_eq!(guard.stats().rejected, 2);
    let trace: Uuid = sqlx::query_scalar("SELECT id FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let generate = span_by_name(&db.pool, "generate").await;
    let generate_id: Uuid = generate.get("id");
    let llm = span_by_name(&db.pool, "llm_call").await;
    assert_eq!(llm.get::<Uuid, _>("trace_id"), trace);
    assert_eq!(
        llm.get::<Option<Uuid>, _>("parent_span_id"),
        Some(generate_id)
    );
    let explicit = span_by_name(&db.pool, "explicit").await;
    assert_eq!(
        explicit.get::<Option<Uuid>, _>("parent_span_id"),
        Some(generate_id)
    );
    let chat =
        sqlx::query("SELECT trace_id, span_id, user_id, kb_id FROM observability.chat_messages")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(chat.get::<Uuid, _>("trace_id"), trace);
    assert_eq!(chat.get::<Option<Uuid>, _>("span_id"), Some(generate_id));
    assert_eq!(chat.get::<Uuid, _>("user_id"), user);
    let event_trace: Uuid =
        sqlx::query_scalar("SELECT trace_id FROM observability.document_events")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(event_trace, trace);
    // The explicit LLM call is below `generate`: its usage counts, the wrapper's does not.
    let tokens: Option<i64> = sqlx::query_scalar("SELECT total_tokens FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(tokens, Some(12));
}

#[tokio::test]
async fn stacks_with_fmt_and_tracing_opentelemetry() {
    use opentelemetry::trace::TracerProvider as _;
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().unwrap();
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::sink);
    // A per-layer filter on ours: it sees only spans at INFO or above.
    let ours = layer.with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let subscriber = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .with(ours);
    tracing::subscriber::with_default(subscriber, || {
        let _root = tracing::info_span!("root").entered();
        let _a = tracing::info_span!("kept", model = "m").entered();
        let _d = tracing::debug_span!("filtered_out").entered();
        let _b = tracing::info_span!("child_of_kept").entered();
    });
    assert!(guard.flush(FLUSH));
    let names: Vec<(String, Option<Uuid>)> =
        sqlx::query_as("SELECT name, parent_span_id FROM observability.spans ORDER BY name")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(names.len(), 2);
    let kept_id: Uuid = span_by_name(&db.pool, "kept").await.get("id");
    // The debug span is invisible to our layer: its child hangs under the nearest span we see.
    assert_eq!(names[0], ("child_of_kept".to_owned(), Some(kept_id)));
    assert_eq!(count(&db.pool, "traces").await, 1);
    // OpenTelemetry saw every span, including the one our filter left out.
    let otel_names: Vec<String> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(otel_names.len(), 4, "{otel_names:?}");
}

/// A user's panic inside an instrumented span: the span is still written, with status error,
/// and the layer adds no panic of its own.
#[tokio::test]
async fn a_panic_inside_a_span_is_recorded_as_an_error() {
    let (db, _layer, guard, dispatch) = setup(|b| b).await;
    let d = dispatch.clone();
    let result = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || {
            let _root = tracing::info_span!("request").entered();
            let _s = tracing::info_span!("doomed").entered();
            panic!("user code panicked");
        })
    })
    .join();
    assert!(result.is_err());
    assert!(guard.flush(FLUSH));
    let s = span_by_name(&db.pool, "doomed").await;
    assert_eq!(s.get::<String, _>("status"), "error");
    assert_eq!(
        s.get::<Option<String>, _>("error_type").as_deref(),
        Some("panic")
    );
    let t: String = sqlx::query_scalar("SELECT status FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(t, "error");
}

/// With `span_starts`, a long span is visible as `in_progress` within one flush interval of its
/// start, and its end replaces that row (one row, finished).
#[tokio::test]
async fn long_spans_are_visible_in_progress_with_span_starts() {
    let (db, _layer, guard, dispatch) = setup(|b| b.span_starts(true)).await;
    let root = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("request"));
    let long = tracing::dispatcher::with_default(
        &dispatch,
        || tracing::info_span!(parent: &root, "long_running", model = "m"),
    );
    assert!(guard.flush(FLUSH));
    let status: String =
        sqlx::query_scalar("SELECT status FROM observability.spans WHERE name = 'long_running'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(status, "in_progress");
    let trace_status: String = sqlx::query_scalar("SELECT status FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(trace_status, "in_progress");
    tracing::dispatcher::with_default(&dispatch, || {
        drop(long);
        drop(root);
    });
    assert!(guard.flush(FLUSH));
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, status FROM observability.spans")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rows, [("long_running".to_owned(), "success".to_owned())]);
    let trace_status: String = sqlx::query_scalar("SELECT status FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(trace_status, "success");
}

/// A batch of short span rows (no type-specific value: sent with fewer columns) and full ones
/// (an LLM span's), first copied straight in, then, after a refusal, staged and upserted while
/// the refused row is searched for: every row but the refused one is stored, each with its own
/// values.
#[tokio::test]
async fn short_and_full_span_rows_survive_the_search_for_a_refused_row() {
    let (db, layer, guard, dispatch) = setup(|b| b.flush_interval(Duration::from_secs(3600))).await;
    sqlx::query(
        "ALTER TABLE observability.spans ADD CONSTRAINT no_poison CHECK (name <> 'poison')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("request");
        let _r = root.enter();
        for i in 0..20_i64 {
            tracing::info_span!("plain", attempt = i).in_scope(|| {});
            tracing::info_span!("llm", model = "m", prompt_tokens = i).in_scope(|| {});
            if i == 10 {
                tracing::info_span!("poison").in_scope(|| {});
            }
        }
    });
    assert!(guard.flush(FLUSH));
    let stats = layer.stats();
    assert_eq!(stats.refused, 1, "{stats:?}");
    assert!(
        stats
            .last_error
            .as_ref()
            .map_or("", |e| e.message.as_str())
            .contains("no_poison"),
        "{stats:?}"
    );
    let rows = sqlx::query(
        "SELECT name, model, prompt_tokens, (metadata->>'attempt')::bigint AS attempt, status \
         FROM observability.spans WHERE name <> 'request' ORDER BY name, started_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    /// Name, model, prompt tokens, `metadata.attempt`, status.
    type Stored = (String, Option<String>, Option<i64>, Option<i64>, String);
    let got: Vec<Stored> = rows
        .iter()
        .map(|r| {
            (
                r.get("name"),
                r.get("model"),
                r.get("prompt_tokens"),
                r.get("attempt"),
                r.get("status"),
            )
        })
        .collect();
    let llm = (0..20).map(|i| ("llm".to_owned(), Some("m".to_owned()), Some(i), None));
    let plain = (0..20).map(|i| ("plain".to_owned(), None, None, Some(i)));
    let want: Vec<_> = llm
        .chain(plain)
        .map(|(n, m, p, a)| (n, m, p, a, "success".to_owned()))
        .collect();
    assert_eq!(got, want);
}
