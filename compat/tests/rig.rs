//! rig-core and rig-agent 0.44 driven against the loopback mock of the OpenAI API: the spans
//! they emit for a chat completion, an embedding, a failing call and an agent's turn with a
//! failing tool (content telemetry on), read back from PostgreSQL column by column.

use std::future::IntoFuture;
use std::time::Duration;

use rig_core::completion::CompletionRequest;
use rig_core::providers::openai::OpenAIConfig;
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

async fn spans(pool: &sqlx::PgPool) -> Vec<PgRow> {
    sqlx::query("SELECT * FROM observability.spans ORDER BY started_at")
        .fetch_all(pool)
        .await
        .expect("spans")
}

fn text(row: &PgRow, column: &str) -> Option<String> {
    row.get::<Option<String>, _>(column)
}

fn of_model<'a>(rows: &'a [PgRow], model: &str) -> &'a PgRow {
    rows.iter()
        .find(|r| text(r, "model").as_deref() == Some(model))
        .unwrap_or_else(|| {
            let seen: Vec<(String, Option<String>)> = rows
                .iter()
                .map(|r| (r.get("name"), text(r, "model")))
                .collect();
            panic!("no span of model {model:?} among {seen:?}")
        })
}

#[tokio::test]
async fn a_completion_and_an_embedding_are_stored_with_tokens_and_costs() {
    let mock = Providers::start().await;
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().expect("a layer");
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let client = OpenAIConfig::new("test-key")
        .with_base_url(format!("{}/v1", mock.uri()))
        .client();
    let chat = client.chat("gpt-4o-mini");
    let embedder = client.embedding("text-embedding-3-small", Some(3));

    let work = async {
        let request = CompletionRequest::new("What is the refund policy?")
            .preamble("Answer from the policy.")
            .record_content_telemetry(true);
        chat.call(request).await.expect("the mock answers");
        embedder
            .call(vec!["refund policy".to_owned()])
            .await
            .expect("the mock embeds");
    };
    let root = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("rig_request"));
    work.instrument(root).with_subscriber(dispatch).await;
    assert!(guard.flush(Duration::from_secs(30)));

    let rows = spans(&db.pool).await;
    let chat = of_model(&rows, "gpt-4o-mini");
    assert_eq!(text(chat, "name").as_deref(), Some("chat"));
    assert_eq!(text(chat, "span_type").as_deref(), Some("llm"));
    assert_eq!(
        chat.get::<Option<i64>, _>("prompt_tokens"),
        Some(CHAT_PROMPT_TOKENS)
    );
    assert_eq!(
        chat.get::<Option<i64>, _>("completion_tokens"),
        Some(CHAT_COMPLETION_TOKENS)
    );
    let per_million =
        |tokens: i64, price: Decimal| Decimal::from(tokens) * price / Decimal::from(1_000_000);
    // rig reports the cached prompt tokens: they are priced at gpt-4o-mini's cached rate.
    let chat_cost = per_million(CHAT_PROMPT_TOKENS - CHAT_CACHED_TOKENS, Decimal::new(15, 2))
        + per_million(CHAT_CACHED_TOKENS, Decimal::new(75, 3))
        + per_million(CHAT_COMPLETION_TOKENS, Decimal::new(60, 2));
    assert_eq!(
        chat.get::<Option<Decimal>, _>("cost_usd"),
        Some(chat_cost.round_dp(6))
    );
    assert_eq!(text(chat, "cost_source").as_deref(), Some("computed"));
    // A bare rig-core call records no messages (rig-agent does, below): no previews.
    assert_eq!(text(chat, "input_preview"), None);
    let meta: Value = chat.get("metadata");
    assert_eq!(
        meta["gen_ai.usage.cache_read.input_tokens"],
        CHAT_CACHED_TOKENS
    );
    assert_eq!(meta["gen_ai.response.id"], "chatcmpl-mock-1");

    let embed = of_model(&rows, "text-embedding-3-small");
    assert_eq!(text(embed, "span_type").as_deref(), Some("embedding"));
    assert_eq!(
        embed.get::<Option<i64>, _>("prompt_tokens"),
        Some(EMBED_PROMPT_TOKENS)
    );
    let embed_cost = per_million(EMBED_PROMPT_TOKENS, Decimal::new(2, 2));
    assert_eq!(
        embed.get::<Option<Decimal>, _>("cost_usd"),
        Some(embed_cost)
    );

    let trace = sqlx::query("SELECT * FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .expect("one trace");
    let trace_id: Uuid = trace.get("id");
    for row in [chat, embed] {
        assert_eq!(row.get::<Uuid, _>("trace_id"), trace_id);
    }
    assert_eq!(
        trace.get::<Option<i64>, _>("prompt_tokens"),
        Some(CHAT_PROMPT_TOKENS + EMBED_PROMPT_TOKENS)
    );
    assert_eq!(
        trace.get::<Option<Decimal>, _>("total_cost_usd"),
        Some((chat_cost + embed_cost).round_dp(6))
    );
}

/// rig-core 0.44 records nothing on its span when the provider fails (no status, no error
/// field, no event): the call is stored as a span without usage, and its status can only be
/// `success`. This test pins that down so that a rig release that starts recording failures
/// shows up here.
#[tokio::test]
async fn a_provider_error_leaves_a_span_without_usage() {
    let mock = Providers::start().await;
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().expect("a layer");
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let chat = OpenAIConfig::new("test-key")
        .with_base_url(format!("{}/v1", mock.uri()))
        .client()
        .chat(FAILING_MODEL);
    let work = async {
        let result = chat.call(CompletionRequest::new("fail please")).await;
        assert!(result.is_err(), "the mock answers 500");
    };
    let root = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("rig_failing"));
    work.instrument(root).with_subscriber(dispatch).await;
    assert!(guard.flush(Duration::from_secs(30)));

    let rows = spans(&db.pool).await;
    let chat = of_model(&rows, FAILING_MODEL);
    assert_eq!(chat.get::<Option<i64>, _>("prompt_tokens"), None);
    assert_eq!(chat.get::<Option<Decimal>, _>("cost_usd"), None);
    assert_eq!(text(chat, "status").as_deref(), Some("success"));
    let meta: Value = chat.get("metadata");
    assert!(meta.get("gen_ai.response.id").is_none(), "{meta}");
}

/// A tool that always fails, as a lookup against a service that is down does.
#[derive(serde::Deserialize, serde::Serialize)]
struct LookupOrder;

#[derive(Debug)]
struct ServiceDown;

impl std::fmt::Display for ServiceDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the order service is down")
    }
}

impl std::error::Error for ServiceDown {}

#[derive(serde::Deserialize)]
struct LookupArgs {
    #[allow(dead_code)]
    order: String,
}

impl rig_agent::tool::Tool for LookupOrder {
    const NAME: &'static str = "lookup_order";
    type Error = ServiceDown;
    type Args = LookupArgs;
    type Output = String;

    fn description(&self) -> String {
        "Looks an order up".to_owned()
    }

    fn parameters(&self) -> Value {
        serde_json::json!({
            "type": "object",
            "properties": { "order": { "type": "string" } },
            "required": ["order"]
        })
    }

    async fn call(
        &self,
        _context: &mut rig_agent::tool::ToolContext,
        _args: Self::Args,
    ) -> Result<Self::Output, Self::Error> {
        Err(ServiceDown)
    }
}

#[tokio::test]
async fn an_agent_turn_with_a_failing_tool_is_one_trace_with_its_usage_counted_once() {
    let mock = Providers::start().await;
    mock.first_chat_calls_tool("lookup_order", r#"{"order":"A-17"}"#)
        .await;
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url).build_layer().expect("a layer");
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let model = OpenAIConfig::new("test-key")
        .with_base_url(format!("{}/v1", mock.uri()))
        .client()
        .chat("gpt-4o-mini");
    let agent = rig_agent::AgentBuilder::new(model)
        .name("support")
        .preamble("Answer from the policy.")
        .record_content_telemetry(true)
        .tool(LookupOrder)
        .build();
    // No span around the run: the agent opens its own `invoke_agent` root.
    let answer = agent
        .prompt("Where is order A-17?")
        .max_turns(3)
        .into_future()
        .with_subscriber(dispatch)
        .await
        .expect("the agent answers");
    assert!(format!("{answer:?}").contains("30 days"), "{answer:?}");
    assert!(guard.flush(Duration::from_secs(30)));

    let trace = sqlx::query("SELECT * FROM observability.traces")
        .fetch_one(&db.pool)
        .await
        .expect("one trace");
    assert_eq!(text(&trace, "name").as_deref(), Some("invoke_agent"));
    let rows = spans(&db.pool).await;
    let chats: Vec<&PgRow> = rows
        .iter()
        .filter(|r| text(r, "span_type").as_deref() == Some("llm"))
        .collect();
    assert_eq!(chats.len(), 2, "two model turns");
    let tool = rows
        .iter()
        .find(|r| text(r, "span_type").as_deref() == Some("tool"))
        .expect("a tool span");
    assert_eq!(text(tool, "status").as_deref(), Some("error"));
    assert!(text(tool, "error_type").is_some_and(|t| !t.is_empty()));
    assert_eq!(
        text(tool, "input_preview").as_deref(),
        Some(r#"{"order":"A-17"}"#)
    );
    for row in chats.iter().copied().chain([tool]) {
        assert_eq!(row.get::<Uuid, _>("trace_id"), trace.get::<Uuid, _>("id"));
    }
    // The first turn's prompt is the user's question; the last turn answers.
    assert_eq!(
        text(chats[0], "input_preview").as_deref(),
        Some("Where is order A-17?")
    );
    assert_eq!(
        text(chats[1], "output_preview").as_deref(),
        Some(CHAT_ANSWER)
    );
    // The agent's root repeats its turns' usage: counted once, at the turns.
    let turns_prompt = TOOL_TURN_TOKENS.0 + CHAT_PROMPT_TOKENS;
    assert_eq!(
        trace.get::<Option<i64>, _>("prompt_tokens"),
        Some(turns_prompt)
    );
    assert_eq!(
        trace.get::<Option<i64>, _>("completion_tokens"),
        Some(TOOL_TURN_TOKENS.1 + CHAT_COMPLETION_TOKENS)
    );
}
