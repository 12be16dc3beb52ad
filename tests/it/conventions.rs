//! The conventions other instrumentation writes in, emitted as such code emits them (the
//! Langfuse attribute convention, OpenTelemetry's bridge fields, OpenInference's flattened
//! messages) and read back from a real PostgreSQL. The crates themselves (rig, genai) are
//! driven in the `compat` package.

use tracing_postgres_test_support as common;

use std::time::Duration;

use common::fresh_db;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use tracing::{Dispatch, field};
use tracing_postgres::*;
use tracing_subscriber::prelude::*;

const FLUSH: Duration = Duration::from_secs(30);

async fn setup(
    builder: impl FnOnce(Builder) -> Builder,
) -> (common::TestDb, WriterGuard, Dispatch) {
    let db = fresh_db().await;
    let (layer, guard) = builder(Builder::new(&db.url)).build_layer().unwrap();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    (db, guard, dispatch)
}

async fn span(pool: &PgPool, name: &str) -> sqlx::postgres::PgRow {
    sqlx::query("SELECT * FROM observability.spans WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("span {name}: {e}"))
}

fn text(row: &sqlx::postgres::PgRow, column: &str) -> Option<String> {
    row.get::<Option<String>, _>(column)
}

/// A Langfuse-style generation: a span typed `GENERATION` whose call is reported on a DEBUG
/// event inside it, with the usage as a JSON object in a string.
fn langfuse_generation(model: &str, prompt: i64, completion: i64) {
    let generation = tracing::info_span!(
        "llm_generation",
        langfuse.r#type = "GENERATION",
        langfuse.model = field::Empty
    );
    let _g = generation.enter();
    let usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion
    })
    .to_string();
    tracing::debug!(
        langfuse.model = model,
        langfuse.usage = usage.as_str(),
        langfuse.input = r#"[{"role":"system","content":"Answer briefly."},{"role":"user","content":"What is our refund policy?"}]"#,
        langfuse.output = "Refunds within 30 days.",
        langfuse.metadata = r#"{"prompt_version":"v3"}"#,
        "generation done"
    );
}

#[tokio::test]
async fn langfuse_generations_reported_on_events_fill_the_span_and_the_trace_totals() {
    let (db, guard, dispatch) =
        setup(|b| b.attach_events(tracing::level_filters::LevelFilter::TRACE)).await;
    let session = "sess-lf-1";
    tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("rag_request", langfuse.session_id = field::Empty);
        let _r = root.enter();
        root.record("langfuse.session_id", session);
        langfuse_generation("gpt-4o-mini", 1_000, 200);
        let tool = tracing::info_span!("lookup", langfuse.r#type = "TOOL");
        drop(tool.entered());
        let retriever = tracing::info_span!("search", langfuse.observation.r#type = "RETRIEVER");
        drop(retriever.entered());
        let agent = tracing::info_span!("planner", langfuse.r#type = "AGENT");
        let _a = agent.enter();
        langfuse_generation("claude-3-5-haiku-20241022", 2_000, 100);
    });
    assert!(guard.flush(FLUSH));

    let rows = sqlx::query(
        "SELECT * FROM observability.spans WHERE name = 'llm_generation' ORDER BY started_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    let g = &rows[0];
    assert_eq!(text(g, "span_type").as_deref(), Some("llm"));
    assert_eq!(text(g, "model").as_deref(), Some("gpt-4o-mini"));
    assert_eq!(g.get::<Option<i64>, _>("prompt_tokens"), Some(1_000));
    assert_eq!(g.get::<Option<i64>, _>("completion_tokens"), Some(200));
    // Bundled prices: $0.15 / $0.60 per million.
    assert_eq!(
        g.get::<Option<Decimal>, _>("cost_usd"),
        Some(Decimal::new(270, 6))
    );
    assert_eq!(text(g, "cost_source").as_deref(), Some("computed"));
    assert_eq!(
        text(g, "input_preview").as_deref(),
        Some("What is our refund policy?")
    );
    assert_eq!(
        text(g, "output_preview").as_deref(),
        Some("Refunds within 30 days.")
    );
    let meta: Value = g.get("metadata");
    assert_eq!(meta["langfuse.metadata"], r#"{"prompt_version":"v3"}"#);
    // The event filled the span: it is not attached as well, and nothing of the call is in
    // metadata twice.
    assert!(meta.get("events").is_none(), "{meta}");
    for key in [
        "langfuse.usage",
        "langfuse.input",
        "langfuse.output",
        "langfuse.type",
    ] {
        assert!(meta.get(key).is_none(), "{key} in {meta}");
    }
    let claude = &rows[1];
    assert_eq!(
        claude.get::<Option<Decimal>, _>("cost_usd"),
        Some(Decimal::new(2_000, 6)) // 2000 × $0.80 + 100 × $4 per million
    );

    assert_eq!(
        text(&span(&db.pool, "lookup").await, "span_type").as_deref(),
        Some("tool")
    );
    assert_eq!(
        text(&span(&db.pool, "search").await, "span_type").as_deref(),
        Some("retrieval")
    );
    // The agent's usage is its generation's: counted once, at the generation.
    let agent = span(&db.pool, "planner").await;
    assert_eq!(text(&agent, "span_type").as_deref(), Some("agent"));

    let trace = sqlx::query("SELECT * FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(text(&trace, "session_id").as_deref(), Some(session));
    assert_eq!(trace.get::<Option<i64>, _>("prompt_tokens"), Some(3_000));
    assert_eq!(trace.get::<Option<i64>, _>("completion_tokens"), Some(300));
    assert_eq!(
        trace.get::<Option<Decimal>, _>("total_cost_usd"),
        Some(Decimal::new(2_270, 6))
    );
}

#[tokio::test]
async fn otel_bridge_fields_name_the_span_and_say_its_status() {
    let (db, guard, dispatch) = setup(|b| b).await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("request").entered();
        let chat = tracing::info_span!(
            "genai.chat",
            "otel.name" = "chat gpt-4o-mini",
            "otel.kind" = "client",
            "otel.status_code" = field::Empty,
            "otel.status_description" = field::Empty,
            "error.type" = field::Empty,
            "server.address" = "api.openai.com",
            "server.port" = 443_i64,
            "gen_ai.request.model" = "gpt-4o-mini",
        );
        chat.record("otel.status_code", "error");
        chat.record("error.type", "http_500");
        chat.record("otel.status_description", "upstream failed");
        drop(chat);
        let tool = tracing::info_span!(
            "execute_tool",
            "otel.name" = "execute_tool get_weather",
            "gen_ai.operation.name" = "execute_tool",
            "gen_ai.tool.error.type" = "timeout",
            "gen_ai.tool.call.arguments" = r#"{"city":"Oslo"}"#,
        );
        drop(tool);
        let ok = tracing::info_span!(
            "explicit_ok",
            "otel.status_code" = "OK",
            "exception.message" = "handled and retried"
        );
        drop(ok);
        let exception = tracing::info_span!(
            "raised",
            "exception.type" = "ValueError",
            "exception.message" = "bad input"
        );
        drop(exception);
    });
    assert!(guard.flush(FLUSH));

    let chat = span(&db.pool, "chat gpt-4o-mini").await;
    assert_eq!(text(&chat, "status").as_deref(), Some("error"));
    assert_eq!(text(&chat, "error_type").as_deref(), Some("http_500"));
    assert_eq!(
        text(&chat, "error_message").as_deref(),
        Some("upstream failed")
    );
    let meta: Value = chat.get("metadata");
    assert_eq!(
        meta,
        json!({"callsite_name": "genai.chat"}),
        "transport fields are not kept"
    );

    let tool = span(&db.pool, "execute_tool get_weather").await;
    assert_eq!(text(&tool, "span_type").as_deref(), Some("tool"));
    assert_eq!(text(&tool, "status").as_deref(), Some("error"));
    assert_eq!(text(&tool, "error_type").as_deref(), Some("timeout"));
    assert_eq!(
        text(&tool, "input_preview").as_deref(),
        Some(r#"{"city":"Oslo"}"#)
    );

    let ok = span(&db.pool, "explicit_ok").await;
    assert_eq!(text(&ok, "status").as_deref(), Some("success"));
    let raised = span(&db.pool, "raised").await;
    assert_eq!(text(&raised, "status").as_deref(), Some("error"));
    assert_eq!(text(&raised, "error_type").as_deref(), Some("ValueError"));
    assert_eq!(text(&raised, "error_message").as_deref(), Some("bad input"));
}

/// A conversation long enough that keeping it in metadata would show.
fn long_conversation() -> String {
    let mut messages = Vec::new();
    for i in 0..200 {
        messages.push(json!({"role": "user", "parts": [{"type": "text", "content": format!("question {i} {}", "x".repeat(200))}]}));
        messages.push(json!({"role": "assistant", "parts": [{"type": "text", "content": format!("answer {i}")}]}));
    }
    messages
        .push(json!({"role": "user", "parts": [{"type": "text", "content": "the last question"}]}));
    Value::Array(messages).to_string()
}

#[tokio::test]
async fn message_attributes_become_previews_and_metadata_stays_small() {
    let (db, guard, dispatch) = setup(|b| b).await;
    let conversation = long_conversation();
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("request").entered();
        let chat = tracing::info_span!(
            "chat",
            "gen_ai.operation.name" = "chat",
            "gen_ai.request.model" = "gpt-4o",
            "gen_ai.system_instructions" = "y".repeat(5_000).as_str(),
            "gen_ai.input.messages" = conversation.as_str(),
            "gen_ai.output.messages" = field::Empty,
            "gen_ai.usage.input_tokens" = field::Empty,
            "gen_ai.usage.cache_read.input_tokens" = field::Empty,
        );
        chat.record(
            "gen_ai.output.messages",
            r#"[{"role":"assistant","parts":[{"type":"text","content":"the answer"}],"finish_reason":"stop"}]"#,
        );
        chat.record("gen_ai.usage.input_tokens", 1_000_000_i64);
        chat.record("gen_ai.usage.cache_read.input_tokens", 1_000_000_i64);
        drop(chat);
        let legacy = tracing::info_span!(
            "legacy",
            "gen_ai.prompt" = r#"[{"role":"user","content":"old style"}]"#,
            "gen_ai.completion" = r#"[{"role":"assistant","content":"old answer"}]"#,
        );
        drop(legacy);
        let oi = tracing::info_span!(
            "openinference",
            "openinference.span.kind" = "LLM",
            "llm.input_messages.0.message.role" = "system",
            "llm.input_messages.0.message.content" = "be nice",
            "llm.input_messages.1.message.role" = "user",
            "llm.input_messages.1.message.content" = "flat question",
            "llm.output_messages.0.message.role" = "assistant",
            "llm.output_messages.0.message.content" = "flat answer",
        );
        drop(oi);
    });
    assert!(guard.flush(FLUSH));

    let chat = span(&db.pool, "chat").await;
    assert_eq!(
        text(&chat, "input_preview").as_deref(),
        Some("the last question")
    );
    assert_eq!(text(&chat, "output_preview").as_deref(), Some("the answer"));
    // All of the prompt read from the cache: $1.25 per million for gpt-4o.
    assert_eq!(
        chat.get::<Option<Decimal>, _>("cost_usd"),
        Some(Decimal::new(125, 2))
    );
    let meta: Value = chat.get("metadata");
    let size = meta.to_string().len();
    assert!(size < 1_000, "metadata of {size} bytes: {meta}");
    assert_eq!(
        meta["gen_ai.system_instructions"]
            .as_str()
            .map(|s| s.chars().count()),
        Some(500)
    );
    assert_eq!(meta["gen_ai.usage.cache_read.input_tokens"], 1_000_000);
    assert!(meta.get("gen_ai.input.messages").is_none());

    let legacy = span(&db.pool, "legacy").await;
    assert_eq!(text(&legacy, "input_preview").as_deref(), Some("old style"));
    assert_eq!(
        text(&legacy, "output_preview").as_deref(),
        Some("old answer")
    );

    let oi = span(&db.pool, "openinference").await;
    assert_eq!(text(&oi, "input_preview").as_deref(), Some("flat question"));
    assert_eq!(text(&oi, "output_preview").as_deref(), Some("flat answer"));
    let meta: Value = oi.get("metadata");
    assert_eq!(
        meta,
        json!({}),
        "the flattened messages are the previews only"
    );
}

#[tokio::test]
async fn message_attributes_honour_capture_content_and_the_redaction_hook() {
    let emit = |dispatch: &Dispatch| {
        tracing::dispatcher::with_default(dispatch, || {
            let _root = tracing::info_span!("request").entered();
            let chat = tracing::info_span!(
                "chat",
                "gen_ai.input.messages" = r#"[{"role":"user","content":"mail me at a@b.example"}]"#,
                "langfuse.output" = "secret answer",
            );
            drop(chat);
        });
    };
    let (db, guard, dispatch) = setup(|b| b.capture_content(false)).await;
    emit(&dispatch);
    assert!(guard.flush(FLUSH));
    let row = span(&db.pool, "chat").await;
    assert_eq!(text(&row, "input_preview"), None);
    assert_eq!(text(&row, "output_preview"), None);
    let meta: Value = row.get("metadata");
    assert!(!meta.to_string().contains("a@b.example"), "{meta}");
    assert!(!meta.to_string().contains("secret"), "{meta}");

    let (db, guard, dispatch) = setup(|b| {
        b.redact(|_kind, text: &mut String| {
            if text.contains('@') {
                *text = "[email]".to_owned();
            }
        })
    })
    .await;
    emit(&dispatch);
    assert!(guard.flush(FLUSH));
    let row = span(&db.pool, "chat").await;
    assert_eq!(text(&row, "input_preview").as_deref(), Some("[email]"));
    assert_eq!(
        text(&row, "output_preview").as_deref(),
        Some("secret answer")
    );
}

#[tokio::test]
async fn the_bundled_prices_are_the_default_and_can_be_overridden_or_removed() {
    let emit = |dispatch: &Dispatch| {
        tracing::dispatcher::with_default(dispatch, || {
            let _root = tracing::info_span!("request").entered();
            for model in ["gpt-4o", "text-embedding-3-small", "my-local-llama"] {
                drop(
                    tracing::info_span!(
                        "call",
                        model = model,
                        prompt_tokens = 1_000_000_i64,
                        completion_tokens = 0_i64
                    )
                    .entered(),
                );
            }
        });
    };
    let costs = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, Option<Decimal>, Option<String>)>(
            "SELECT model, cost_usd, cost_source FROM observability.spans ORDER BY model",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let computed = Some("computed".to_owned());

    let (db, guard, dispatch) = setup(|b| b).await;
    emit(&dispatch);
    assert!(guard.flush(FLUSH));
    assert_eq!(
        costs(db.pool.clone()).await,
        vec![
            ("gpt-4o".into(), Some(Decimal::new(25, 1)), computed.clone()),
            ("my-local-llama".into(), None, None),
            (
                "text-embedding-3-small".into(),
                Some(Decimal::new(2, 2)),
                computed.clone()
            ),
        ]
    );

    let mine = PriceTable::bundled().with("my-local-*", Decimal::new(1, 4), Decimal::ZERO);
    let (db, guard, dispatch) = setup(|b| b.prices(mine)).await;
    emit(&dispatch);
    assert!(guard.flush(FLUSH));
    assert_eq!(
        costs(db.pool.clone()).await[1],
        (
            "my-local-llama".into(),
            Some(Decimal::new(1, 1)),
            computed.clone()
        )
    );

    let (db, guard, dispatch) = setup(|b| b.prices(PriceTable::empty())).await;
    emit(&dispatch);
    assert!(guard.flush(FLUSH));
    assert!(
        costs(db.pool.clone())
            .await
            .iter()
            .all(|(_, cost, source)| cost.is_none() && source.is_none())
    );
}

#[tokio::test]
async fn transport_fields_are_kept_only_when_asked_for() {
    let (db, guard, dispatch) = setup(|b| b.otel_transport_fields(true)).await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("request").entered();
        drop(tracing::info_span!(
            "genai.chat",
            "otel.kind" = "client",
            "server.address" = "api.openai.com",
            "server.port" = 443_i64,
            "gen_ai.request.model" = "gpt-4o-mini",
        ));
    });
    assert!(guard.flush(FLUSH));
    let meta: Value = span(&db.pool, "genai.chat").await.get("metadata");
    assert_eq!(
        meta,
        json!({"otel.kind": "client", "server.address": "api.openai.com", "server.port": 443})
    );
}
