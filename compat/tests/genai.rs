//! genai 0.7 with its `otel` feature, driven against the loopback mock of the OpenAI and
//! Ollama APIs: the spans it emits, read back from PostgreSQL column by column.
//!
//! genai reads its content-capture switch (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`)
//! once per process, so this test has its own `main`: it sets the switch before any thread
//! exists and runs its cases one after the other.

use std::time::Duration;

use genai::adapter::AdapterKind;
use genai::chat::{ChatMessage, ChatRequest};
use genai::otel::agent::{AgentSpan, ExecuteToolSpan, set_error};
use genai::resolver::{AuthData, Endpoint, ServiceTargetResolver};
use genai::{Client, ModelIden, ServiceTarget};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Instrument};
use tracing_postgres::Builder;
use tracing_postgres_compat::*;
use tracing_postgres_test_support::fresh_db;
use tracing_subscriber::prelude::*;
use uuid::Uuid;

fn main() {
    // SAFETY: no other thread exists yet (the runtime is built below), so nothing reads the
    // environment while it is changed.
    unsafe { std::env::set_var(genai::otel::CAPTURE_CONTENT_ENV, "true") };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(an_agent_turn_is_stored_with_types_tokens_costs_previews_and_parents());
    runtime.block_on(a_provider_error_is_an_error_span_and_a_trace_error());
    println!("genai: 2 cases passed");
}

/// A genai client whose every model goes to the mock: `llama*` to its Ollama API, the rest
/// to its OpenAI API.
fn client(mock: &Providers) -> Client {
    let uri = mock.uri();
    let resolver = ServiceTargetResolver::from_resolver_fn(
        move |target: ServiceTarget| -> Result<ServiceTarget, genai::resolver::Error> {
            let name = target.model.model_name.to_string();
            let (kind, endpoint) = if name.starts_with("llama") {
                (AdapterKind::Ollama, format!("{uri}/"))
            } else {
                (AdapterKind::OpenAI, format!("{uri}/v1/"))
            };
            Ok(ServiceTarget {
                endpoint: Endpoint::from_owned(endpoint),
                auth: AuthData::from_single("test-key"),
                model: ModelIden::new(kind, name),
            })
        },
    );
    Client::builder()
        .with_service_target_resolver(resolver)
        .build()
        .expect("a genai client")
}

async fn spans(pool: &sqlx::PgPool) -> Vec<PgRow> {
    sqlx::query("SELECT * FROM observability.spans ORDER BY started_at")
        .fetch_all(pool)
        .await
        .expect("spans")
}

fn by_name<'a>(rows: &'a [PgRow], name: &str) -> &'a PgRow {
    rows.iter()
        .find(|r| r.get::<String, _>("name") == name)
        .unwrap_or_else(|| {
            let names: Vec<String> = rows.iter().map(|r| r.get("name")).collect();
            panic!("no span {name:?} among {names:?}")
        })
}

fn text(row: &PgRow, column: &str) -> Option<String> {
    row.get::<Option<String>, _>(column)
}

/// Micro-dollars of `tokens` at `per_million` dollars.
fn dollars(tokens: i64, per_million: Decimal) -> Decimal {
    Decimal::from(tokens) * per_million / Decimal::from(1_000_000)
}

async fn an_agent_turn_is_stored_with_types_tokens_costs_previews_and_parents() {
    let mock = Providers::start().await;
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().expect("a layer");
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let client = client(&mock);
    let user = Uuid::now_v7();

    let turn = async {
        let agent = AgentSpan::invoke_agent()
            .with_name("support")
            .with_model("gpt-4o-mini")
            .start();
        async {
            let request = ChatRequest::new(vec![
                ChatMessage::system("Answer from the policy."),
                ChatMessage::user("an earlier question"),
                ChatMessage::assistant("an earlier answer"),
                ChatMessage::user("What is the refund policy?"),
            ]);
            let answer = client
                .exec_chat("gpt-4o-mini", request, None)
                .await
                .expect("the mock answers");
            assert_eq!(answer.first_text(), Some(CHAT_ANSWER));
            let tool = ExecuteToolSpan::new("lookup_order")
                .with_call_id("call-1")
                .with_arguments(r#"{"order":"A-17"}"#)
                .start();
            set_error(&tool, "timeout");
            drop(tool);
            client
                .embed("text-embedding-3-small", "refund policy", None)
                .await
                .expect("the mock embeds");
            let local = ChatRequest::new(vec![ChatMessage::user("hi")]);
            client
                .exec_chat("llama3.1", local, None)
                .await
                .expect("the mock answers for Ollama");
        }
        .instrument(agent)
        .await;
    };
    let root = tracing::dispatcher::with_default(
        &dispatch,
        || tracing::info_span!("support_request", user_id = %user, session_id = "genai-s1"),
    );
    turn.instrument(root).with_subscriber(dispatch).await;
    assert!(guard.flush(Duration::from_secs(30)));

    let rows = spans(&db.pool).await;
    let agent = by_name(&rows, "invoke_agent support");
    let chat = by_name(&rows, "chat gpt-4o-mini");
    let tool = by_name(&rows, "execute_tool lookup_order");
    let embed = by_name(&rows, "embeddings text-embedding-3-small");
    let ollama = by_name(&rows, "chat llama3.1");

    assert_eq!(text(agent, "span_type").as_deref(), Some("agent"));
    assert_eq!(agent.get::<Option<i64>, _>("prompt_tokens"), None);
    let agent_id: Uuid = agent.get("id");
    for child in [chat, tool, embed, ollama] {
        assert_eq!(
            child.get::<Option<Uuid>, _>("parent_span_id"),
            Some(agent_id)
        );
    }

    // The chat call: model, tokens, a cost computed from the bundled prices with the cached
    // prompt tokens at gpt-4o-mini's cached rate, and the readable previews.
    assert_eq!(text(chat, "span_type").as_deref(), Some("llm"));
    assert_eq!(text(chat, "model").as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        chat.get::<Option<i64>, _>("prompt_tokens"),
        Some(CHAT_PROMPT_TOKENS)
    );
    assert_eq!(
        chat.get::<Option<i64>, _>("completion_tokens"),
        Some(CHAT_COMPLETION_TOKENS)
    );
    let chat_cost = dollars(CHAT_PROMPT_TOKENS - CHAT_CACHED_TOKENS, Decimal::new(15, 2))
        + dollars(CHAT_CACHED_TOKENS, Decimal::new(75, 3))
        + dollars(CHAT_COMPLETION_TOKENS, Decimal::new(60, 2));
    assert_eq!(
        chat.get::<Option<Decimal>, _>("cost_usd"),
        Some(chat_cost.round_dp(6))
    );
    assert_eq!(text(chat, "cost_source").as_deref(), Some("computed"));
    assert_eq!(
        text(chat, "input_preview").as_deref(),
        Some("What is the refund policy?")
    );
    assert_eq!(text(chat, "output_preview").as_deref(), Some(CHAT_ANSWER));
    assert_eq!(text(chat, "status").as_deref(), Some("success"));
    let meta: Value = chat.get("metadata");
    assert_eq!(meta["callsite_name"], "genai.chat");
    assert_eq!(
        meta["gen_ai.system_instructions"]
            .as_str()
            .map(|s| s.contains("policy")),
        Some(true)
    );
    for key in [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "otel.kind",
        "server.address",
        "server.port",
        "otel.name",
    ] {
        assert!(meta.get(key).is_none(), "{key} in {meta}");
    }

    assert_eq!(text(tool, "span_type").as_deref(), Some("tool"));
    assert_eq!(text(tool, "status").as_deref(), Some("error"));
    assert_eq!(text(tool, "error_type").as_deref(), Some("timeout"));
    assert_eq!(
        text(tool, "input_preview").as_deref(),
        Some(r#"{"order":"A-17"}"#)
    );

    assert_eq!(text(embed, "span_type").as_deref(), Some("embedding"));
    assert_eq!(
        text(embed, "model").as_deref(),
        Some("text-embedding-3-small")
    );
    assert_eq!(
        embed.get::<Option<i64>, _>("prompt_tokens"),
        Some(EMBED_PROMPT_TOKENS)
    );
    let embed_cost = dollars(EMBED_PROMPT_TOKENS, Decimal::new(2, 2));
    assert_eq!(
        embed.get::<Option<Decimal>, _>("cost_usd"),
        Some(embed_cost)
    );

    // A local model has no price: tokens, no cost.
    assert_eq!(text(ollama, "model").as_deref(), Some("llama3.1"));
    assert_eq!(
        ollama.get::<Option<i64>, _>("prompt_tokens"),
        Some(OLLAMA_TOKENS.0)
    );
    assert_eq!(
        ollama.get::<Option<i64>, _>("completion_tokens"),
        Some(OLLAMA_TOKENS.1)
    );
    assert_eq!(ollama.get::<Option<Decimal>, _>("cost_usd"), None);
    assert_eq!(
        text(ollama, "output_preview").as_deref(),
        Some("Hello from llama.")
    );

    // The trace's totals: every call once, the agent's (none of its own) not again.
    let trace = sqlx::query("SELECT * FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .expect("one trace");
    assert_eq!(
        trace.get::<Option<i64>, _>("prompt_tokens"),
        Some(CHAT_PROMPT_TOKENS + EMBED_PROMPT_TOKENS + OLLAMA_TOKENS.0)
    );
    assert_eq!(
        trace.get::<Option<i64>, _>("completion_tokens"),
        Some(CHAT_COMPLETION_TOKENS + OLLAMA_TOKENS.1)
    );
    assert_eq!(
        trace.get::<Option<Decimal>, _>("total_cost_usd"),
        Some((chat_cost + embed_cost).round_dp(6))
    );
    assert_eq!(trace.get::<Option<Uuid>, _>("user_id"), Some(user));
    println!("genai: an agent turn: ok");
}

async fn a_provider_error_is_an_error_span_and_a_trace_error() {
    let mock = Providers::start().await;
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().expect("a layer");
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let client = client(&mock);
    let call = async {
        let request = ChatRequest::new(vec![ChatMessage::user("fail please")]);
        let result = client.exec_chat(FAILING_MODEL, request, None).await;
        assert!(result.is_err(), "the mock answers 500");
    };
    let root =
        tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("failing_request"));
    call.instrument(root).with_subscriber(dispatch).await;
    assert!(guard.flush(Duration::from_secs(30)));

    let rows = spans(&db.pool).await;
    let chat = by_name(&rows, &format!("chat {FAILING_MODEL}"));
    assert_eq!(text(chat, "status").as_deref(), Some("error"));
    let error_type = text(chat, "error_type").expect("an error type");
    assert!(
        !error_type.is_empty() && error_type != "error",
        "{error_type}"
    );
    assert_eq!(chat.get::<Option<i64>, _>("prompt_tokens"), None);
    assert_eq!(text(chat, "input_preview").as_deref(), Some("fail please"));
    println!("genai: a provider error ({error_type}): ok");
}
