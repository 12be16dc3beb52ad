//! Hostile input through the layer and the provider, each case read back from a real
//! PostgreSQL.
//!
//! Every case ends in one of two documented outcomes:
//!
//! * **stored** — the row is written and read back equal to the exact sanitised value (NUL bytes
//!   removed, text cut at a character boundary to the `TextLimits::default()` limit, non-finite
//!   numbers and negative counts stored as NULL, JSON deeper than `json_depth` replaced by
//!   `sanitize::JSON_TOO_DEEP`, non-UUID ids kept in `metadata`, anything else verbatim);
//! * **rejected** / **refused** — `stats().rejected` (before queueing) or `stats().refused` (by
//!   the database) grows by exactly one and no row appears.
//!
//! Every test also checks that nothing panicked, that `written + rejected + refused + dropped`
//! equals the records it emitted, and that the five tables still exist (injection did nothing).
//!
//! | #  | via      | hostile input                                                                    | outcome |
//! |----|----------|-----------------------------------------------------------------------------------|---------|
//! | 1  | provider | NUL in trace name, operation type, session id, trace error, metadata keys/values | stored, NULs removed |
//! | 2  | provider | NUL in span name, span type, previews, error, query text, end metadata           | stored, NULs removed |
//! | 3  | provider | NUL in LLM call name, model, previews, error, metadata (a key of only a NUL)     | stored, NULs removed |
//! | 4  | provider | NUL in embedding model, file type, chunk strategy, collection name               | stored, NULs removed |
//! | 5  | provider | NUL in chat role, content, session id, source and citation strings               | stored, NULs removed |
//! | 6  | provider | NUL in document event type, error, embedding model, collection, metadata         | stored, NULs removed |
//! | 7  | provider | 10 MB chat content, previews, query text, error, session id, name, model         | stored, cut to content / preview / error / label |
//! | 8  | provider | 10 MB metadata value and 10 MB metadata key                                      | stored, value cut to content, key to label |
//! | 9  | provider | 4-byte chars at the error (1000), preview (500), label (256), content limits      | stored, cut before or after the whole char |
//! | 10 | provider | NUL bytes interleaved with 4-byte chars past the preview limit                   | stored, NULs do not count toward the limit |
//! | 11 | provider | NaN / ±inf / negative temperature, tokens, latency                               | NULL (latency 0; negative temperature kept: not a count) |
//! | 12 | provider | NaN / ±inf / negative scores, counts, durations of spans                          | NULL; span duration measured instead; negative score kept |
//! | 13 | provider | NaN / ±inf / negative chat tokens, turn, response time, source scores            | NULL (JSON null in sources) |
//! | 14 | provider | NaN / ±inf / negative document duration, retry count, step metrics               | NULL |
//! | 15 | provider | i64::MAX prompt and completion tokens                                            | stored; trace total saturates at i64::MAX |
//! | 16 | provider | costs 9999.999999 / 9999.9999995 / 10000 / Decimal::MAX / MIN / negative; totals | stored / NULL |
//! | 17 | provider | metadata that is an array, a string, a number, a bool, null                      | stored as `{"value": ...}` (null: `{}`) |
//! | 18 | provider | metadata 10,000 deep (arrays, objects, under a key) on every call; 32 deep       | stored, marker at depth 32; 32 deep kept whole |
//! | 19 | provider | quotes, backslashes, tabs, CR/LF, a `\.` line, CSV commas, control chars         | stored verbatim in every text column and JSON |
//! | 20 | provider | SQL injection in every text field and metadata key                               | stored verbatim, tables intact |
//! | 21 | provider | end_span twice / unknown; end_trace unstarted / twice; start_trace twice         | rejected +1 each, no row |
//! | 22 | provider | chat message without a kb id                                                     | rejected +1, no row |
//! | 23 | provider | trace total cost over numeric(10,6) (two calls of $6,000)                        | stored, total NULL, spans keep their costs |
//! | 24 | provider | trace prompt tokens overflow (three calls of i64::MAX)                           | stored, saturated |
//! | 25 | layer    | NUL in span name, field name, model, previews, error, session, operation type    | stored, NULs removed |
//! | 26 | layer    | NUL in chat role/content/sources, document event fields, attached event          | stored, NULs removed (raw NUL in JSON text: kept as text) |
//! | 27 | layer    | 10 MB content, previews, query text, error, role, session, operation type, model | stored, cut |
//! | 28 | layer    | 10 MB metadata value                                                             | stored, cut to content |
//! | 29 | layer    | 4-byte chars at span name, model, session, preview, error, content limits        | stored, cut at a char boundary |
//! | 30 | layer    | f64 NaN / ±inf temperature, top score, cost; NaN/inf in metadata fields          | NULL; metadata keeps `"NaN"` / `"inf"` text |
//! | 31 | layer    | negative i64 tokens / counts / cost, negative temperature and score              | NULL (temperature and score kept) |
//! | 32 | layer    | u64::MAX / u128::MAX / i128::MIN tokens and counts, i32 overflow, fractional      | NULL; i64::MAX kept; trace total saturates |
//! | 33 | layer    | cost 10000.0 / 1e300 / "NaN" / "1e400" / "9999.999999"                           | NULL / stored |
//! | 34 | layer    | NaN / ±inf / negative / 1e15 chat and document numbers                           | NULL |
//! | 35 | layer    | user_id / kb_id not UUIDs (text, number, empty, injection) on spans              | columns NULL, kept in metadata |
//! | 36 | layer    | document_id not a UUID (text, number, injection); chat without valid ids         | rejected +1 each, no row |
//! | 37 | layer    | kb_id not a UUID on a document event                                             | stored, kept in metadata |
//! | 38 | layer    | field names with dots, quotes, backslash, non-ASCII, NUL, SQL, tab/newline, ""   | stored as metadata keys (NUL removed) |
//! | 39 | layer    | quotes, backslashes, tabs, CR/LF, a `\.` line, CSV commas, control chars         | stored verbatim (lower-cased where the layer lower-cases) |
//! | 40 | layer    | SQL injection in every text field, span type and status                          | stored verbatim; unknown status: `completed`; tables intact |
//! | 41 | layer    | sources/citations: invalid JSON, NUL, escaped NUL, 100 and 10,000 deep, number   | JSON string / cleaned / marker at 32 / string / number |
//! | 42 | layer    | a field whose `Debug` panics                                                     | stored as "[formatting panicked]" |
//! | 43 | layer    | trace total cost over numeric(10,6) (two spans of $6,000)                        | stored, total NULL |
//! | 44 | layer    | trace prompt tokens overflow (three spans of i64::MAX)                           | stored, saturated |
//! | 45 | redactor | a redaction hook returning a NUL and 2 M characters                              | stored, sanitised |
//! | 46 | provider | label limit raised to 1000, session id of 1000 random 4-byte chars (4,000 bytes) | refused +1 by the btree index, neighbours written |

use tracing_postgres_test_support as common;

use std::fmt;
use std::time::Duration;

use common::{count, fresh_db};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tracing::Dispatch;
use tracing_postgres::*;
use tracing_postgres::{JSON_TOO_DEEP, TextLimits};
use tracing_subscriber::prelude::*;
use uuid::Uuid;

const FLUSH: Duration = Duration::from_secs(30);

/// An injection attempt, stored verbatim wherever it goes.
pub(crate) const INJECTION: &str = "'); DROP TABLE observability.spans; --";

/// Text that breaks naive escaping: quotes, a backslash, a tab, CR/LF, a line holding only `\.`
/// (the end of a text COPY), CSV-like commas and quotes, control and non-ASCII characters.
/// Starts and ends with non-blank characters (the layer trims a span type).
pub(crate) const HOSTILE: &str =
    "it's \"quoted\" back\\slash\ttab\r\nline\n\\.\na,b,\"c,d\",,e\u{1}\u{1b}[31m\u{7f} é😀";

/// 255 `n`, a 4-byte character at position 256 (the label limit), then more.
pub(crate) const LONG_SPAN_NAME: &str = concat!(
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "😀",
    "tail"
);

/// 10 MB of text.
fn ten_mb(unit: &str) -> String {
    unit.repeat(10_000_000 / unit.len())
}

fn limits() -> TextLimits {
    TextLimits::default()
}

/// `leaf` inside `n` arrays, built without recursion.
fn nest_arrays(n: usize, leaf: Value) -> Value {
    let mut v = leaf;
    for _ in 0..n {
        v = Value::Array(vec![v]);
    }
    v
}

/// `leaf` inside `n` objects `{"k": ...}`, built without recursion.
fn nest_objects(n: usize, leaf: Value) -> Value {
    let mut v = leaf;
    for _ in 0..n {
        v = Value::Object(serde_json::Map::from_iter([("k".to_owned(), v)]));
    }
    v
}

fn marker() -> Value {
    Value::String(JSON_TOO_DEEP.to_owned())
}

fn ctx_with_ids() -> TraceContext {
    TraceContext::new()
        .with_user(Uuid::now_v7())
        .with_session("s")
        .with_kb(Uuid::now_v7())
}

async fn provider_setup() -> (common::TestDb, PostgresProvider, WriterGuard) {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url).build().unwrap();
    (db, p, guard)
}

async fn layer_setup() -> (common::TestDb, PostgresLayer, WriterGuard, Dispatch) {
    let db = fresh_db().await;
    let (layer, guard) = Builder::new(&db.url)
        .attach_events(tracing::level_filters::LevelFilter::WARN)
        .build_layer()
        .unwrap();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    (db, layer, guard, dispatch)
}

async fn by_id(pool: &PgPool, table: &str, id: Uuid) -> PgRow {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM observability.{table} WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("{table} row {id}: {e}"))
}

async fn span_by_name(pool: &PgPool, name: &str) -> PgRow {
    sqlx::query("SELECT * FROM observability.spans WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("span {name:?}: {e}"))
}

async fn only_row(pool: &PgPool, table: &str) -> PgRow {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM observability.{table}"
    )))
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("the one {table} row: {e}"))
}

fn text(row: &PgRow, col: &str) -> Option<String> {
    row.get::<Option<String>, _>(col)
}

fn meta(row: &PgRow) -> Value {
    row.get::<Value, _>("metadata")
}

/// `assert_eq!` for values too big to print: reports where they differ.
fn assert_big_eq<T: PartialEq + fmt::Debug>(got: &T, want: &T, what: &str) {
    if got == want {
        return;
    }
    let (g, w) = (format!("{got:?}"), format!("{want:?}"));
    let at = g
        .chars()
        .zip(w.chars())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| g.chars().count().min(w.chars().count()));
    let around = |s: &str| -> String { s.chars().skip(at.saturating_sub(40)).take(120).collect() };
    panic!(
        "{what}: differ at char {at} of their Debug forms ({} vs {} chars)\n  got: ...{}...\n want: ...{}...",
        g.chars().count(),
        w.chars().count(),
        around(&g),
        around(&w)
    );
}

/// Everything flushed; every record emitted is in exactly one counter; the tables survived.
async fn finish(db: &common::TestDb, guard: &WriterGuard, emitted: u64) -> Stats {
    assert!(guard.flush(FLUSH), "flush timed out: {:?}", guard.stats());
    let s = guard.stats();
    assert_eq!(s.pending(), 0, "{s:?}");
    assert_eq!(
        s.written + s.rejected + s.refused + s.dropped(),
        emitted,
        "records emitted vs. counted: {s:?}"
    );
    assert_tables_intact(&db.pool).await;
    s
}

async fn assert_tables_intact(pool: &PgPool) {
    for t in [
        "traces",
        "spans",
        "chat_messages",
        "document_events",
        "scores",
    ] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("observability.{t}"))
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(exists, "observability.{t} is gone");
        // Still readable.
        count(pool, t).await;
    }
}

// ------------------------------------------------------------------------------------------
// Provider
// ------------------------------------------------------------------------------------------

/// Cases 1-6.
#[tokio::test]
async fn provider_removes_nul_bytes_from_every_text() {
    let (db, p, guard) = provider_setup().await;
    let (user, kb, doc) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let ctx = TraceContext::new()
        .with_user(user)
        .with_session("se\0ss\0ion")
        .with_kb(kb);
    p.start_trace(
        &ctx,
        "tr\0ace",
        OperationType::Custom("op\0type".into()),
        Some(json!({"k\0ey": "va\0lue", "list": ["\0a", {"n\0": "\0"}]})),
    );
    let span = p.start_span(
        &ctx,
        "sp\0an",
        SpanType::Custom("cus\0tom".into()),
        Some(json!({"s\0k": "s\0v"})),
    );
    p.end_span(
        &ctx,
        span,
        SpanEnd {
            outcome: Outcome::error("Err\0Type", "mess\0age"),
            input_preview: Some("in\0put".into()),
            output_preview: Some("out\0put".into()),
            metrics: SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: Some("que\0ry".into()),
                ..Default::default()
            }),
            metadata: Some(json!({"e\0k": "e\0v"})),
            ..SpanEnd::default()
        },
    );
    let llm = p.log_llm_call(
        &ctx.child(span),
        LlmCall {
            name: Some("ll\0m".into()),
            metrics: LlmMetrics {
                model: Some("mo\0del".into()),
                ..Default::default()
            },
            input_preview: Some("\0\0".into()),
            output_preview: Some("a\0".into()),
            outcome: Outcome::error("\0E", "\0m"),
            metadata: Some(json!({"\0": "\0"})),
            ..LlmCall::default()
        },
    );
    let typed = [
        SpanMetrics::Embedding(EmbeddingMetrics {
            model: Some("em\0b".into()),
            ..Default::default()
        }),
        SpanMetrics::Parse(ParseMetrics {
            file_type: Some("p\0df".into()),
            ..Default::default()
        }),
        SpanMetrics::Chunk(ChunkMetrics {
            chunk_strategy: Some("rec\0ursive".into()),
            ..Default::default()
        }),
        SpanMetrics::Index(IndexMetrics {
            collection_name: Some("co\0ll".into()),
            ..Default::default()
        }),
    ];
    let mut typed_ids = Vec::new();
    for metrics in typed {
        let id = p.start_span(&ctx, "typed", SpanType::Internal, None);
        p.end_span(
            &ctx,
            id,
            SpanEnd {
                metrics,
                ..SpanEnd::default()
            },
        );
        typed_ids.push(id);
    }
    p.log_chat_message(
        &ctx,
        ChatMessage {
            sources: vec![Source {
                doc_name: Some("d\0oc".into()),
                chunk_id: Some("c\u{0}1".into()),
                excerpt: Some("ex\0".into()),
                ..Default::default()
            }],
            citations: vec![Citation {
                marker: "[\u{0}1]".into(),
                section: Some("se\0c".into()),
                ..Default::default()
            }],
            ..ChatMessage::new(ChatRole::Custom("ro\0le".into()), "con\0tent")
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent {
            error_type: Some("E\0T".into()),
            error_message: Some("m\0sg".into()),
            metrics: DocumentMetrics::Embed(DocumentEmbedMetrics {
                embedding_model: Some("e\0mb".into()),
                vectors_generated: Some(3),
            }),
            metadata: Some(json!({"d\0k": ["d\0v"]})),
            ..DocumentEvent::new(
                doc,
                DocumentEventType::Custom("ev\0ent".into()),
                DocumentEventStatus::Failed,
            )
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent {
            metrics: DocumentMetrics::Index(IndexMetrics {
                collection_name: Some("c\0ol".into()),
                vectors_upserted: Some(1),
            }),
            ..DocumentEvent::new(
                doc,
                DocumentEventType::Index,
                DocumentEventStatus::Completed,
            )
        },
    );
    p.end_trace(
        &ctx,
        Outcome::error("T\0", "tr\0ace failed"),
        TraceTotals::default(),
    );
    let s = finish(&db, &guard, 1 + 2 + 1 + 8 + 1 + 2 + 1).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    // 1: the trace.
    let t = by_id(&db.pool, "traces", ctx.trace_id.as_uuid()).await;
    assert_eq!(text(&t, "name").as_deref(), Some("trace"));
    assert_eq!(text(&t, "operation_type").as_deref(), Some("optype"));
    assert_eq!(text(&t, "session_id").as_deref(), Some("session"));
    assert_eq!(text(&t, "status").as_deref(), Some("error"));
    assert_eq!(text(&t, "error_type").as_deref(), Some("T"));
    assert_eq!(text(&t, "error_message").as_deref(), Some("trace failed"));
    assert_eq!(meta(&t), json!({"key": "value", "list": ["a", {"n": ""}]}));
    // 2: a span.
    let r = by_id(&db.pool, "spans", span.as_uuid()).await;
    assert_eq!(text(&r, "name").as_deref(), Some("span"));
    assert_eq!(text(&r, "span_type").as_deref(), Some("custom"));
    assert_eq!(text(&r, "error_type").as_deref(), Some("ErrType"));
    assert_eq!(text(&r, "error_message").as_deref(), Some("message"));
    assert_eq!(text(&r, "input_preview").as_deref(), Some("input"));
    assert_eq!(text(&r, "output_preview").as_deref(), Some("output"));
    assert_eq!(text(&r, "query_text").as_deref(), Some("query"));
    assert_eq!(meta(&r), json!({"sk": "sv", "ek": "ev"}));
    // 3: an LLM call.
    let r = by_id(&db.pool, "spans", llm.as_uuid()).await;
    assert_eq!(text(&r, "name").as_deref(), Some("llm"));
    assert_eq!(text(&r, "model").as_deref(), Some("model"));
    assert_eq!(text(&r, "input_preview").as_deref(), Some(""));
    assert_eq!(text(&r, "output_preview").as_deref(), Some("a"));
    assert_eq!(text(&r, "error_type").as_deref(), Some("E"));
    assert_eq!(text(&r, "error_message").as_deref(), Some("m"));
    assert_eq!(meta(&r), json!({"": ""}));
    // 4: typed span columns.
    let expected = [
        ("embedding_model", "emb"),
        ("file_type", "pdf"),
        ("chunk_strategy", "recursive"),
        ("collection_name", "coll"),
    ];
    for (id, (col, want)) in typed_ids.iter().zip(expected) {
        let r = by_id(&db.pool, "spans", id.as_uuid()).await;
        assert_eq!(text(&r, col).as_deref(), Some(want), "{col}");
    }
    // 5: the chat message.
    let c = only_row(&db.pool, "chat_messages").await;
    assert_eq!(text(&c, "role").as_deref(), Some("role"));
    assert_eq!(text(&c, "content").as_deref(), Some("content"));
    assert_eq!(text(&c, "session_id").as_deref(), Some("session"));
    assert_eq!(
        c.get::<Value, _>("sources"),
        json!([{"doc_id": null, "doc_name": "doc", "chunk_id": "c1", "score": null, "excerpt": "ex"}])
    );
    assert_eq!(
        c.get::<Value, _>("citations"),
        json!([{"marker": "[1]", "doc_id": null, "page": null, "section": "sec"}])
    );
    // 6: the document events.
    let d = sqlx::query("SELECT * FROM observability.document_events WHERE status = 'failed'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(text(&d, "event_type").as_deref(), Some("event"));
    assert_eq!(text(&d, "error_type").as_deref(), Some("ET"));
    assert_eq!(text(&d, "error_message").as_deref(), Some("msg"));
    assert_eq!(text(&d, "embedding_model").as_deref(), Some("emb"));
    assert_eq!(meta(&d), json!({"dk": ["dv"]}));
    let d = sqlx::query("SELECT * FROM observability.document_events WHERE status = 'completed'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(text(&d, "collection_name").as_deref(), Some("col"));
}

/// Cases 7 and 8.
#[tokio::test]
async fn provider_cuts_ten_megabyte_strings_and_keeps_metadata_whole() {
    let (db, p, guard) = provider_setup().await;
    let l = limits();
    let big = ten_mb("a");
    let big_emoji = ten_mb("😀");
    let ctx = TraceContext::new()
        .with_user(Uuid::now_v7())
        .with_session(big.clone())
        .with_kb(Uuid::now_v7());
    p.start_trace(&ctx, &big, OperationType::Custom(big.clone()), None);
    let llm = p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some(big.clone()),
            metrics: LlmMetrics {
                model: Some(big_emoji.clone()),
                ..Default::default()
            },
            input_preview: Some(big.clone()),
            output_preview: Some(big_emoji.clone()),
            outcome: Outcome::error(big.clone(), big_emoji.clone()),
            metadata: Some({
                let mut m = serde_json::Map::new();
                m.insert("blob".to_owned(), json!(big));
                m.insert(big_emoji.clone(), json!(1));
                Value::Object(m)
            }),
            ..LlmCall::default()
        },
    );
    let retrieval = p.start_span(&ctx, "retrieval", SpanType::Retrieval, None);
    p.end_span(
        &ctx,
        retrieval,
        SpanEnd {
            metrics: SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: Some(big_emoji.clone()),
                ..Default::default()
            }),
            ..SpanEnd::default()
        },
    );
    p.log_chat_message(&ctx, ChatMessage::new(ChatRole::User, big.clone()));
    p.log_chat_message(
        &ctx,
        ChatMessage::new(ChatRole::Assistant, big_emoji.clone()),
    );
    p.end_trace(
        &ctx,
        Outcome::error("E", big.clone()),
        TraceTotals::default(),
    );
    let s = finish(&db, &guard, 7).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let t = by_id(&db.pool, "traces", ctx.trace_id.as_uuid()).await;
    assert_eq!(text(&t, "name"), Some("a".repeat(l.label)));
    assert_eq!(text(&t, "operation_type"), Some("a".repeat(l.label)));
    assert_eq!(text(&t, "session_id"), Some("a".repeat(l.label)));
    assert_eq!(text(&t, "error_message"), Some("a".repeat(l.error_message)));
    let r = by_id(&db.pool, "spans", llm.as_uuid()).await;
    assert_eq!(text(&r, "name"), Some("a".repeat(l.label)));
    assert_eq!(text(&r, "model"), Some("😀".repeat(l.label)));
    assert_eq!(text(&r, "input_preview"), Some("a".repeat(l.preview)));
    assert_eq!(text(&r, "output_preview"), Some("😀".repeat(l.preview)));
    assert_eq!(text(&r, "error_type"), Some("a".repeat(l.label)));
    assert_eq!(
        text(&r, "error_message"),
        Some("😀".repeat(l.error_message))
    );
    // 8: JSON strings are cut to the content limit, keys to the label limit.
    let mut want = serde_json::Map::new();
    want.insert("blob".to_owned(), json!("a".repeat(l.content)));
    want.insert("😀".repeat(l.label), json!(1));
    assert_big_eq(&meta(&r), &Value::Object(want), "10 MB metadata");
    let r = by_id(&db.pool, "spans", retrieval.as_uuid()).await;
    assert_big_eq(
        &text(&r, "query_text"),
        &Some("😀".repeat(l.content)),
        "r.query_text",
    );
    let contents: Vec<String> =
        sqlx::query_scalar("SELECT content FROM observability.chat_messages ORDER BY role DESC")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_big_eq(
        &contents,
        &vec!["a".repeat(l.content), "😀".repeat(l.content)],
        "contents",
    );
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observability.chat_messages WHERE session_id = $1",
    )
    .bind("a".repeat(l.label))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(sessions, 2);
}

/// Cases 9 and 10.
#[tokio::test]
async fn provider_cuts_at_character_boundaries_where_four_byte_chars_straddle_the_limit() {
    let (db, p, guard) = provider_setup().await;
    let l = limits();
    let e = "😀";
    let ctx = TraceContext::new()
        .with_user(Uuid::now_v7())
        .with_session(format!("{}{e}x", "s".repeat(l.label - 1)))
        .with_kb(Uuid::now_v7());
    // The 4-byte char is the last one kept...
    let kept = p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some(format!("{}{e}x", "n".repeat(l.label - 1))),
            metrics: LlmMetrics {
                model: Some(format!("{}{e}{e}", "m".repeat(l.label - 1))),
                ..Default::default()
            },
            input_preview: Some(format!("{}{e}x", "p".repeat(l.preview - 1))),
            output_preview: Some(format!("{}{e}{e}", "o".repeat(l.preview - 1))),
            outcome: Outcome::error(
                format!("{}{e}", "t".repeat(l.label - 1)),
                format!("{}{e}x", "e".repeat(l.error_message - 1)),
            ),
            ..LlmCall::default()
        },
    );
    // ...or the first one cut.
    let cut = p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some(format!("{}{e}", "n".repeat(l.label))),
            metrics: LlmMetrics {
                model: Some(format!("{}{e}", "m".repeat(l.label))),
                ..Default::default()
            },
            input_preview: Some(format!("{}{e}", "p".repeat(l.preview))),
            // 10: NUL bytes do not count toward the limit.
            output_preview: Some(format!("\0{e}").repeat(l.preview + 10)),
            outcome: Outcome::error(
                format!("{}{e}", "t".repeat(l.label)),
                format!("{}{e}", "e".repeat(l.error_message)),
            ),
            ..LlmCall::default()
        },
    );
    p.log_chat_message(
        &ctx,
        ChatMessage::new(
            ChatRole::User,
            format!("{}{e}{e}", "c".repeat(l.content - 1)),
        ),
    );
    p.log_chat_message(
        &ctx,
        ChatMessage::new(ChatRole::Assistant, format!("{}{e}", "c".repeat(l.content))),
    );
    let s = finish(&db, &guard, 4).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let r = by_id(&db.pool, "spans", kept.as_uuid()).await;
    assert_eq!(
        text(&r, "name"),
        Some(format!("{}{e}", "n".repeat(l.label - 1)))
    );
    assert_eq!(
        text(&r, "model"),
        Some(format!("{}{e}", "m".repeat(l.label - 1)))
    );
    assert_eq!(
        text(&r, "input_preview"),
        Some(format!("{}{e}", "p".repeat(l.preview - 1)))
    );
    assert_eq!(
        text(&r, "output_preview"),
        Some(format!("{}{e}", "o".repeat(l.preview - 1)))
    );
    assert_eq!(
        text(&r, "error_type"),
        Some(format!("{}{e}", "t".repeat(l.label - 1)))
    );
    assert_eq!(
        text(&r, "error_message"),
        Some(format!("{}{e}", "e".repeat(l.error_message - 1)))
    );
    let r = by_id(&db.pool, "spans", cut.as_uuid()).await;
    assert_eq!(text(&r, "name"), Some("n".repeat(l.label)));
    assert_eq!(text(&r, "model"), Some("m".repeat(l.label)));
    assert_eq!(text(&r, "input_preview"), Some("p".repeat(l.preview)));
    assert_eq!(text(&r, "output_preview"), Some(e.repeat(l.preview)));
    assert_eq!(text(&r, "error_type"), Some("t".repeat(l.label)));
    assert_eq!(text(&r, "error_message"), Some("e".repeat(l.error_message)));
    let chats = sqlx::query("SELECT * FROM observability.chat_messages ORDER BY role DESC")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_big_eq(
        &text(&chats[0], "content"),
        &Some(format!("{}{e}", "c".repeat(l.content - 1))),
        "chats[0].content",
    );
    assert_big_eq(
        &text(&chats[1], "content"),
        &Some("c".repeat(l.content)),
        "chats[1].content",
    );
    assert_eq!(
        text(&chats[0], "session_id"),
        Some(format!("{}{e}", "s".repeat(l.label - 1)))
    );
}

/// Cases 11-14.
#[tokio::test]
async fn provider_stores_non_finite_and_negative_numbers_as_null() {
    let (db, p, guard) = provider_setup().await;
    let ctx = ctx_with_ids();
    let doc = Uuid::now_v7();
    let nonfinite = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    let mut emitted = 0;
    // 11: LLM calls.
    let mut llm_ids = Vec::new();
    for x in nonfinite {
        llm_ids.push(p.log_llm_call(
            &ctx,
            LlmCall {
                metrics: LlmMetrics {
                    model: Some("m".into()),
                    prompt_tokens: Some(-1),
                    completion_tokens: Some(i64::MIN),
                    temperature: Some(x),
                    ..Default::default()
                },
                latency_ms: Some(x),
                ..LlmCall::default()
            },
        ));
        emitted += 1;
    }
    let negative_llm = p.log_llm_call(
        &ctx,
        LlmCall {
            metrics: LlmMetrics {
                temperature: Some(-0.5),
                ..Default::default()
            },
            latency_ms: Some(-5.0),
            ..LlmCall::default()
        },
    );
    emitted += 1;
    // 12: typed spans.
    let mut span_ids = Vec::new();
    for (x, metrics) in [
        (
            f64::NAN,
            SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: None,
                result_count: Some(-1),
                top_score: Some(f64::NAN),
            }),
        ),
        (
            f64::NEG_INFINITY,
            SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: None,
                result_count: Some(i32::MIN),
                top_score: Some(f64::INFINITY),
            }),
        ),
        (
            -1.0,
            SpanMetrics::Embedding(EmbeddingMetrics {
                model: None,
                vector_count: Some(-1),
                vector_dimensions: Some(-384),
            }),
        ),
        (
            f64::INFINITY,
            SpanMetrics::Parse(ParseMetrics {
                file_type: None,
                file_size_bytes: Some(-1),
                page_count: Some(-1),
            }),
        ),
        (
            f64::NAN,
            SpanMetrics::Chunk(ChunkMetrics {
                chunk_count: Some(-1),
                chunk_strategy: None,
            }),
        ),
        (
            f64::NAN,
            SpanMetrics::Index(IndexMetrics {
                vectors_upserted: Some(-1),
                collection_name: None,
            }),
        ),
    ] {
        let id = p.start_span(&ctx, "typed", SpanType::Internal, None);
        p.end_span(
            &ctx,
            id,
            SpanEnd {
                duration_ms: Some(x),
                metrics,
                ..SpanEnd::default()
            },
        );
        span_ids.push(id);
        emitted += 2;
    }
    // A negative score is a score (cosine similarity can be negative): kept.
    let negative_score = p.start_span(&ctx, "negative score", SpanType::Retrieval, None);
    p.end_span(
        &ctx,
        negative_score,
        SpanEnd {
            metrics: SpanMetrics::Retrieval(RetrievalMetrics {
                top_score: Some(-0.25),
                ..Default::default()
            }),
            ..SpanEnd::default()
        },
    );
    emitted += 2;
    // 13: chat messages.
    for (turn, x) in nonfinite.into_iter().chain([-1.0]).enumerate() {
        p.log_chat_message(
            &ctx,
            ChatMessage {
                turn_number: Some(-(turn as i32) - 1),
                prompt_tokens: Some(-1),
                completion_tokens: Some(i64::MIN),
                response_time_ms: Some(x),
                sources: vec![Source {
                    score: Some(x),
                    ..Default::default()
                }],
                ..ChatMessage::new(ChatRole::Assistant, format!("message {turn}"))
            },
        );
        emitted += 1;
    }
    // 14: document events.
    for x in nonfinite.into_iter().chain([-1.0]) {
        p.log_document_event(
            &ctx,
            DocumentEvent {
                duration_ms: Some(x),
                retry_count: Some(-1),
                metrics: DocumentMetrics::Parse(DocumentParseMetrics {
                    extracted_pages: Some(-1),
                    extracted_chars: Some(i64::MIN),
                    tables_found: Some(-1),
                    images_found: Some(-1),
                }),
                ..DocumentEvent::new(
                    doc,
                    DocumentEventType::Parse,
                    DocumentEventStatus::Completed,
                )
            },
        );
        emitted += 1;
    }
    for metrics in [
        DocumentMetrics::Chunk(DocumentChunkMetrics {
            chunks_created: Some(-1),
            avg_chunk_size: Some(-1),
        }),
        DocumentMetrics::Embed(DocumentEmbedMetrics {
            vectors_generated: Some(-1),
            embedding_model: None,
        }),
        DocumentMetrics::Index(IndexMetrics {
            vectors_upserted: Some(-1),
            collection_name: None,
        }),
    ] {
        p.log_document_event(
            &ctx,
            DocumentEvent {
                metrics,
                ..DocumentEvent::new(
                    doc,
                    DocumentEventType::Chunk,
                    DocumentEventStatus::Completed,
                )
            },
        );
        emitted += 1;
    }
    let s = finish(&db, &guard, emitted).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    for id in llm_ids {
        let r = by_id(&db.pool, "spans", id.as_uuid()).await;
        assert_eq!(r.get::<Option<f64>, _>("temperature"), None);
        assert_eq!(r.get::<Option<i64>, _>("prompt_tokens"), None);
        assert_eq!(r.get::<Option<i64>, _>("completion_tokens"), None);
        // A latency that is not a duration: the call took no measurable time.
        assert_eq!(r.get::<Option<f64>, _>("duration_ms"), Some(0.0));
    }
    let r = by_id(&db.pool, "spans", negative_llm.as_uuid()).await;
    // Temperature is not a count: a finite negative one is kept as given.
    assert_eq!(r.get::<Option<f64>, _>("temperature"), Some(-0.5));
    assert_eq!(r.get::<Option<f64>, _>("duration_ms"), Some(0.0));
    for id in span_ids {
        let r = by_id(&db.pool, "spans", id.as_uuid()).await;
        for col in [
            "prompt_tokens",
            "vector_count",
            "file_size_bytes",
            "vectors_upserted",
        ] {
            assert_eq!(r.get::<Option<i64>, _>(col), None, "{col}");
        }
        for col in [
            "result_count",
            "vector_dimensions",
            "page_count",
            "chunk_count",
        ] {
            assert_eq!(r.get::<Option<i32>, _>(col), None, "{col}");
        }
        assert_eq!(r.get::<Option<f64>, _>("top_score"), None);
        // A given duration that is not one: the span's measured duration instead.
        let d = r.get::<Option<f64>, _>("duration_ms").expect("measured");
        assert!(d.is_finite() && (0.0..60_000.0).contains(&d), "{d}");
    }
    let r = by_id(&db.pool, "spans", negative_score.as_uuid()).await;
    assert_eq!(r.get::<Option<f64>, _>("top_score"), Some(-0.25));
    let chats = sqlx::query("SELECT * FROM observability.chat_messages")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(chats.len(), 4);
    for c in &chats {
        assert_eq!(c.get::<Option<i32>, _>("turn_number"), None);
        assert_eq!(c.get::<Option<i64>, _>("prompt_tokens"), None);
        assert_eq!(c.get::<Option<i64>, _>("completion_tokens"), None);
        assert_eq!(c.get::<Option<f64>, _>("response_time_ms"), None);
        let score = &c.get::<Value, _>("sources")[0]["score"];
        let content = text(c, "content").unwrap();
        // JSON has no NaN or infinity: null. A negative score is a score.
        let want = if content == "message 3" {
            json!(-1.0)
        } else {
            Value::Null
        };
        assert_eq!(*score, want, "{content}");
    }
    let docs = sqlx::query("SELECT * FROM observability.document_events")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(docs.len(), 7);
    for d in &docs {
        assert_eq!(d.get::<Option<f64>, _>("duration_ms"), None);
        for col in [
            "retry_count",
            "extracted_pages",
            "tables_found",
            "images_found",
            "chunks_created",
            "avg_chunk_size",
        ] {
            assert_eq!(d.get::<Option<i32>, _>(col), None, "{col}");
        }
        for col in ["extracted_chars", "vectors_generated", "vectors_upserted"] {
            assert_eq!(d.get::<Option<i64>, _>(col), None, "{col}");
        }
    }
}

/// Cases 15 and 16.
#[tokio::test]
async fn provider_keeps_huge_tokens_and_refuses_costs_numeric_cannot_hold() {
    let (db, p, guard) = provider_setup().await;
    let huge = ctx_with_ids();
    p.start_trace(&huge, "huge", OperationType::Chat, None);
    let max_tokens = p.log_llm_call(
        &huge,
        LlmCall {
            metrics: LlmMetrics {
                prompt_tokens: Some(i64::MAX),
                completion_tokens: Some(i64::MAX),
                ..Default::default()
            },
            ..LlmCall::default()
        },
    );
    p.end_trace(&huge, Outcome::success(), TraceTotals::default());

    let costs = ctx_with_ids();
    p.start_trace(&costs, "costs", OperationType::Chat, None);
    let cost = |c: Decimal| {
        p.log_llm_call(
            &costs,
            LlmCall {
                metrics: LlmMetrics {
                    cost_usd: Some(c),
                    ..Default::default()
                },
                ..LlmCall::default()
            },
        )
    };
    let largest = cost(Decimal::new(9_999_999_999, 6));
    let rounds_over = cost(Decimal::new(99_999_999_995, 7));
    let ten_thousand = cost(Decimal::from(10_000));
    let max = cost(Decimal::MAX);
    let negative = cost(Decimal::new(-1, 2));
    let min = cost(Decimal::MIN);
    p.end_trace(&costs, Outcome::success(), TraceTotals::default());

    // Given totals that are not totals.
    let given = ctx_with_ids();
    p.start_trace(&given, "given", OperationType::Chat, None);
    p.end_trace(
        &given,
        Outcome::success(),
        TraceTotals {
            prompt_tokens: Some(-1),
            completion_tokens: Some(i64::MAX),
            total_cost_usd: Some(Decimal::MAX),
        },
    );
    let s = finish(&db, &guard, 3 + 8 + 2).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let r = by_id(&db.pool, "spans", max_tokens.as_uuid()).await;
    assert_eq!(r.get::<Option<i64>, _>("prompt_tokens"), Some(i64::MAX));
    assert_eq!(r.get::<Option<i64>, _>("completion_tokens"), Some(i64::MAX));
    let t = by_id(&db.pool, "traces", huge.trace_id.as_uuid()).await;
    assert_eq!(t.get::<Option<i64>, _>("prompt_tokens"), Some(i64::MAX));
    assert_eq!(t.get::<Option<i64>, _>("completion_tokens"), Some(i64::MAX));
    assert_eq!(t.get::<Option<i64>, _>("total_tokens"), Some(i64::MAX));

    let r = by_id(&db.pool, "spans", largest.as_uuid()).await;
    assert_eq!(
        r.get::<Option<Decimal>, _>("cost_usd"),
        Some(Decimal::new(9_999_999_999, 6))
    );
    assert_eq!(text(&r, "cost_source").as_deref(), Some("given"));
    for id in [rounds_over, ten_thousand, max, negative, min] {
        let r = by_id(&db.pool, "spans", id.as_uuid()).await;
        assert_eq!(r.get::<Option<Decimal>, _>("cost_usd"), None);
        assert_eq!(text(&r, "cost_source"), None);
    }
    let t = by_id(&db.pool, "traces", costs.trace_id.as_uuid()).await;
    assert_eq!(
        t.get::<Option<Decimal>, _>("total_cost_usd"),
        Some(Decimal::new(9_999_999_999, 6))
    );
    let t = by_id(&db.pool, "traces", given.trace_id.as_uuid()).await;
    // A negative given total is not given: computed from the (absent) spans.
    assert_eq!(t.get::<Option<i64>, _>("prompt_tokens"), Some(0));
    assert_eq!(t.get::<Option<i64>, _>("completion_tokens"), Some(i64::MAX));
    assert_eq!(t.get::<Option<i64>, _>("total_tokens"), Some(i64::MAX));
    assert_eq!(t.get::<Option<Decimal>, _>("total_cost_usd"), None);
}

/// Case 17.
#[tokio::test]
async fn provider_keeps_metadata_that_is_not_an_object_under_value() {
    let (db, p, guard) = provider_setup().await;
    let ctx = ctx_with_ids();
    p.start_trace(
        &ctx,
        "t",
        OperationType::Chat,
        Some(json!([1, "two", null])),
    );
    let string = p.start_span(&ctx, "s", SpanType::Tool, Some(json!("just a string")));
    p.end_span(&ctx, string, SpanEnd::default());
    let number = p.log_llm_call(
        &ctx,
        LlmCall {
            metadata: Some(json!(42.5)),
            ..LlmCall::default()
        },
    );
    let null = p.log_llm_call(
        &ctx,
        LlmCall {
            metadata: Some(Value::Null),
            ..LlmCall::default()
        },
    );
    // An end's metadata that is not an object is merged as `value` over the start's.
    let merged = p.start_span(&ctx, "m", SpanType::Tool, Some(json!({"a": 1})));
    p.end_span(
        &ctx,
        merged,
        SpanEnd {
            metadata: Some(json!(["end"])),
            ..SpanEnd::default()
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent {
            metadata: Some(json!(true)),
            ..DocumentEvent::new(
                Uuid::now_v7(),
                DocumentEventType::Upload,
                DocumentEventStatus::Completed,
            )
        },
    );
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    let s = finish(&db, &guard, 1 + 2 + 2 + 2 + 1 + 1).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let t = by_id(&db.pool, "traces", ctx.trace_id.as_uuid()).await;
    assert_eq!(meta(&t), json!({"value": [1, "two", null]}));
    let r = by_id(&db.pool, "spans", string.as_uuid()).await;
    assert_eq!(meta(&r), json!({"value": "just a string"}));
    let r = by_id(&db.pool, "spans", number.as_uuid()).await;
    assert_eq!(meta(&r), json!({"value": 42.5}));
    let r = by_id(&db.pool, "spans", null.as_uuid()).await;
    assert_eq!(meta(&r), json!({}));
    let r = by_id(&db.pool, "spans", merged.as_uuid()).await;
    assert_eq!(meta(&r), json!({"a": 1, "value": ["end"]}));
    let d = only_row(&db.pool, "document_events").await;
    assert_eq!(meta(&d), json!({"value": true}));
}

/// Case 18. The 10,000-deep values are built and handed over on a thread with a big stack:
/// the test never drops one itself (serde_json's drop recurses), and should the crate drop one
/// recursively, the big stack keeps the test binary alive to report it.
#[tokio::test]
async fn provider_cuts_metadata_nested_ten_thousand_deep_at_the_depth_limit() {
    let (db, p, guard) = provider_setup().await;
    let ctx = ctx_with_ids();
    let ids = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn({
            let (p, ctx) = (p.clone(), ctx.clone());
            move || {
                let deep = |n| nest_arrays(n, json!(1));
                p.start_trace(&ctx, "deep", OperationType::Chat, Some(deep(10_000)));
                let span = p.start_span(
                    &ctx,
                    "deep span",
                    SpanType::Internal,
                    Some(nest_objects(10_000, json!("leaf"))),
                );
                p.end_span(
                    &ctx,
                    span,
                    SpanEnd {
                        metadata: Some(json!({"end": deep(10_000)})),
                        ..SpanEnd::default()
                    },
                );
                let llm = p.log_llm_call(
                    &ctx,
                    LlmCall {
                        metadata: Some(nest_objects(10_000, json!(null))),
                        ..LlmCall::default()
                    },
                );
                p.log_document_event(
                    &ctx,
                    DocumentEvent {
                        metadata: Some(json!({"deep": deep(10_000), "flat": 1})),
                        ..DocumentEvent::new(
                            Uuid::now_v7(),
                            DocumentEventType::Parse,
                            DocumentEventStatus::Completed,
                        )
                    },
                );
                // Exactly at the limit: kept whole.
                let at_limit = p.log_llm_call(
                    &ctx,
                    LlmCall {
                        metadata: Some(nest_objects(limits().json_depth, json!(7))),
                        ..LlmCall::default()
                    },
                );
                p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
                (span, llm, at_limit)
            }
        })
        .unwrap()
        .join();
    let (span, llm, at_limit) = ids.expect("no panic while sanitising deep metadata");
    let s = finish(&db, &guard, 1 + 2 + 1 + 1 + 1 + 1).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let depth = limits().json_depth;
    // Containers at nesting levels 0..depth are kept; the one at level `depth` is the marker.
    let t = by_id(&db.pool, "traces", ctx.trace_id.as_uuid()).await;
    assert_eq!(meta(&t), json!({"value": nest_arrays(depth, marker())}));
    let r = by_id(&db.pool, "spans", span.as_uuid()).await;
    let mut want = nest_objects(depth, marker());
    want["end"] = nest_arrays(depth - 1, marker());
    assert_eq!(meta(&r), want);
    let r = by_id(&db.pool, "spans", llm.as_uuid()).await;
    assert_eq!(meta(&r), nest_objects(depth, marker()));
    let r = by_id(&db.pool, "spans", at_limit.as_uuid()).await;
    assert_eq!(meta(&r), nest_objects(depth, json!(7)));
    let d = only_row(&db.pool, "document_events").await;
    assert_eq!(
        meta(&d),
        json!({"deep": nest_arrays(depth - 1, marker()), "flat": 1})
    );
}

/// Puts `s` (short, NUL-free) in every text field of the provider and reads it back verbatim.
async fn provider_round_trips_every_text_field(s: &str) {
    let (db, p, guard) = provider_setup().await;
    let (user, kb, doc) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let ctx = TraceContext::new()
        .with_user(user)
        .with_session(s)
        .with_kb(kb);
    let obj = || {
        let mut m = serde_json::Map::new();
        m.insert(s.to_owned(), Value::String(s.to_owned()));
        Value::Object(m)
    };
    p.start_trace(&ctx, s, OperationType::Custom(s.into()), Some(obj()));
    let span = p.start_span(&ctx, s, SpanType::Custom(s.into()), Some(obj()));
    p.end_span(
        &ctx,
        span,
        SpanEnd {
            outcome: Outcome::error(s, s),
            input_preview: Some(s.into()),
            output_preview: Some(s.into()),
            metrics: SpanMetrics::Retrieval(RetrievalMetrics {
                query_text: Some(s.into()),
                ..Default::default()
            }),
            ..SpanEnd::default()
        },
    );
    let llm = p.log_llm_call(
        &ctx,
        LlmCall {
            name: Some(s.into()),
            metrics: LlmMetrics {
                model: Some(s.into()),
                ..Default::default()
            },
            metadata: Some(obj()),
            ..LlmCall::default()
        },
    );
    let mut typed = Vec::new();
    for metrics in [
        SpanMetrics::Embedding(EmbeddingMetrics {
            model: Some(s.into()),
            ..Default::default()
        }),
        SpanMetrics::Parse(ParseMetrics {
            file_type: Some(s.into()),
            ..Default::default()
        }),
        SpanMetrics::Chunk(ChunkMetrics {
            chunk_strategy: Some(s.into()),
            ..Default::default()
        }),
        SpanMetrics::Index(IndexMetrics {
            collection_name: Some(s.into()),
            ..Default::default()
        }),
    ] {
        let id = p.start_span(&ctx, "typed", SpanType::Internal, None);
        p.end_span(
            &ctx,
            id,
            SpanEnd {
                metrics,
                ..SpanEnd::default()
            },
        );
        typed.push(id);
    }
    p.log_chat_message(
        &ctx,
        ChatMessage {
            sources: vec![Source {
                doc_name: Some(s.into()),
                chunk_id: Some(s.into()),
                excerpt: Some(s.into()),
                ..Default::default()
            }],
            citations: vec![Citation {
                marker: s.into(),
                section: Some(s.into()),
                ..Default::default()
            }],
            ..ChatMessage::new(ChatRole::Custom(s.into()), s)
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent {
            error_type: Some(s.into()),
            error_message: Some(s.into()),
            metrics: DocumentMetrics::Embed(DocumentEmbedMetrics {
                embedding_model: Some(s.into()),
                vectors_generated: None,
            }),
            metadata: Some(obj()),
            ..DocumentEvent::new(
                doc,
                DocumentEventType::Custom(s.into()),
                DocumentEventStatus::Failed,
            )
        },
    );
    p.log_document_event(
        &ctx,
        DocumentEvent {
            metrics: DocumentMetrics::Index(IndexMetrics {
                collection_name: Some(s.into()),
                vectors_upserted: None,
            }),
            ..DocumentEvent::new(
                doc,
                DocumentEventType::Index,
                DocumentEventStatus::Completed,
            )
        },
    );
    p.end_trace(&ctx, Outcome::error(s, s), TraceTotals::default());
    let stats = finish(&db, &guard, 1 + 2 + 1 + 8 + 1 + 2 + 1).await;
    assert_eq!((stats.rejected, stats.refused), (0, 0), "{stats:?}");

    let want = Some(s.to_owned());
    let t = by_id(&db.pool, "traces", ctx.trace_id.as_uuid()).await;
    for col in [
        "name",
        "operation_type",
        "session_id",
        "error_type",
        "error_message",
    ] {
        assert_eq!(text(&t, col), want, "traces.{col}");
    }
    assert_eq!(meta(&t), obj());
    let r = by_id(&db.pool, "spans", span.as_uuid()).await;
    for col in [
        "name",
        "span_type",
        "error_type",
        "error_message",
        "input_preview",
        "output_preview",
        "query_text",
    ] {
        assert_eq!(text(&r, col), want, "spans.{col}");
    }
    assert_eq!(meta(&r), obj());
    let r = by_id(&db.pool, "spans", llm.as_uuid()).await;
    assert_eq!(text(&r, "name"), want);
    assert_eq!(text(&r, "model"), want);
    assert_eq!(meta(&r), obj());
    for (id, col) in typed.iter().zip([
        "embedding_model",
        "file_type",
        "chunk_strategy",
        "collection_name",
    ]) {
        let r = by_id(&db.pool, "spans", id.as_uuid()).await;
        assert_eq!(text(&r, col), want, "spans.{col}");
    }
    let c = only_row(&db.pool, "chat_messages").await;
    for col in ["session_id", "role", "content"] {
        assert_eq!(text(&c, col), want, "chat_messages.{col}");
    }
    assert_eq!(
        c.get::<Value, _>("sources"),
        json!([{"doc_id": null, "doc_name": s, "chunk_id": s, "score": null, "excerpt": s}])
    );
    assert_eq!(
        c.get::<Value, _>("citations"),
        json!([{"marker": s, "doc_id": null, "page": null, "section": s}])
    );
    let d = sqlx::query("SELECT * FROM observability.document_events WHERE status = 'failed'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    for col in [
        "event_type",
        "error_type",
        "error_message",
        "embedding_model",
    ] {
        assert_eq!(text(&d, col), want, "document_events.{col}");
    }
    assert_eq!(meta(&d), obj());
    let d = sqlx::query("SELECT * FROM observability.document_events WHERE status = 'completed'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(text(&d, "collection_name"), want);
    assert_eq!(count(&db.pool, "spans").await, 6);
    assert_eq!(count(&db.pool, "traces").await, 1);
}

/// Case 19.
#[tokio::test]
async fn provider_stores_quotes_backslashes_control_chars_and_copy_markers_verbatim() {
    provider_round_trips_every_text_field(HOSTILE).await;
}

/// Case 20.
#[tokio::test]
async fn provider_stores_sql_injection_verbatim_in_every_text_field() {
    provider_round_trips_every_text_field(INJECTION).await;
}

/// Cases 21 and 22.
#[tokio::test]
async fn provider_rejects_and_counts_what_it_cannot_write() {
    let (db, p, guard) = provider_setup().await;
    let ctx = ctx_with_ids();
    let span = p.start_span(&ctx, "once", SpanType::Tool, None);
    p.end_span(&ctx, span, SpanEnd::default());
    let before = guard.stats().rejected;
    p.end_span(
        &ctx,
        span,
        SpanEnd {
            outcome: Outcome::error("twice", "ended twice"),
            ..SpanEnd::default()
        },
    );
    assert_eq!(guard.stats().rejected, before + 1, "end_span twice");
    p.end_span(&ctx, SpanId::new(), SpanEnd::default());
    assert_eq!(
        guard.stats().rejected,
        before + 2,
        "end_span of an unknown span"
    );
    let no_kb = TraceContext::new()
        .with_user(Uuid::now_v7())
        .with_session(INJECTION);
    p.log_chat_message(&no_kb, ChatMessage::new(ChatRole::User, INJECTION));
    assert_eq!(guard.stats().rejected, before + 3, "chat without a kb id");
    // A trace ended without being started, started twice, ended twice.
    p.end_trace(
        &TraceContext::new(),
        Outcome::success(),
        TraceTotals::default(),
    );
    assert_eq!(
        guard.stats().rejected,
        before + 4,
        "end_trace without start"
    );
    let trace = ctx_with_ids();
    p.start_trace(&trace, INJECTION, OperationType::Chat, None);
    p.start_trace(&trace, "again", OperationType::Chat, None);
    assert_eq!(guard.stats().rejected, before + 5, "start_trace twice");
    p.end_trace(&trace, Outcome::success(), TraceTotals::default());
    p.end_trace(&trace, Outcome::error("E", "again"), TraceTotals::default());
    assert_eq!(guard.stats().rejected, before + 6, "end_trace twice");
    let s = finish(&db, &guard, 2 + 2 + 1 + 1 + 2 + 2).await;
    assert_eq!((s.rejected, s.refused), (6, 0), "{s:?}");
    let t = by_id(&db.pool, "traces", trace.trace_id.as_uuid()).await;
    assert_eq!(text(&t, "name").as_deref(), Some(INJECTION));
    assert_eq!(text(&t, "status").as_deref(), Some("success"));
    assert_eq!(count(&db.pool, "traces").await, 1);
    let r = by_id(&db.pool, "spans", span.as_uuid()).await;
    assert_eq!(text(&r, "status").as_deref(), Some("success"));
    assert_eq!(count(&db.pool, "spans").await, 1);
    assert_eq!(count(&db.pool, "chat_messages").await, 0);
}

/// Case 23. Each call's cost fits `numeric(10,6)` but their sum does not: the trace's end row is
/// stored with `total_cost_usd` NULL (as a single call's cost that does not fit is), not
/// refused by the database.
#[tokio::test]
async fn provider_trace_total_cost_over_numeric_is_stored_as_null() {
    let (db, p, guard) = provider_setup().await;
    let ctx = ctx_with_ids();
    p.start_trace(&ctx, "expensive", OperationType::Chat, None);
    let calls: Vec<SpanId> = (0..2)
        .map(|_| {
            p.log_llm_call(
                &ctx,
                LlmCall {
                    metrics: LlmMetrics {
                        cost_usd: Some(Decimal::from(6_000)),
                        ..Default::default()
                    },
                    ..LlmCall::default()
                },
            )
        })
        .collect();
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    let s = finish(&db, &guard, 4).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
    let t = by_id(&db.pool, "traces", ctx.trace_id.as_uuid()).await;
    assert_eq!(text(&t, "status").as_deref(), Some("success"));
    assert_eq!(t.get::<Option<Decimal>, _>("total_cost_usd"), None);
    for id in calls {
        let r = by_id(&db.pool, "spans", id.as_uuid()).await;
        assert_eq!(
            r.get::<Option<Decimal>, _>("cost_usd"),
            Some(Decimal::from(6_000))
        );
    }
}

/// Case 24. Token totals are summed without overflow checks: three calls of `i64::MAX` prompt
/// tokens wrap around instead of saturating at `i64::MAX`.
#[tokio::test]
async fn provider_trace_token_totals_saturate() {
    let (db, p, guard) = provider_setup().await;
    let ctx = ctx_with_ids();
    p.start_trace(&ctx, "many tokens", OperationType::Chat, None);
    for _ in 0..3 {
        p.log_llm_call(
            &ctx,
            LlmCall {
                metrics: LlmMetrics {
                    prompt_tokens: Some(i64::MAX),
                    ..Default::default()
                },
                ..LlmCall::default()
            },
        );
    }
    p.end_trace(&ctx, Outcome::success(), TraceTotals::default());
    let s = finish(&db, &guard, 5).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
    let t = by_id(&db.pool, "traces", ctx.trace_id.as_uuid()).await;
    assert_eq!(t.get::<Option<i64>, _>("prompt_tokens"), Some(i64::MAX));
    assert_eq!(t.get::<Option<i64>, _>("total_tokens"), Some(i64::MAX));
}

// ------------------------------------------------------------------------------------------
// Layer
// ------------------------------------------------------------------------------------------

/// Cases 25 and 26.
#[tokio::test]
async fn layer_removes_nul_bytes_from_every_text() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    let (user, kb, doc) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!(
            "ro\0ot",
            session_id = "se\0ss",
            user_id = %user,
            kb_id = %kb,
            operation_type = "Op\0Type",
            "k\0ey" = "va\0l",
        )
        .entered();
        {
            let _s = tracing::info_span!(
                "ll\0m",
                model = "mo\0del",
                input_preview = "in\0",
                output_preview = "\0out",
                query_text = "q\0t",
                embedding_model = "e\0m",
                file_type = "p\0df",
                chunk_strategy = "c\0s",
                collection_name = "c\0n",
                "me\0ta" = "da\0ta",
            )
            .entered();
            tracing::error!(error_type = "Ty\0pe", error_message = "bo\0om");
        }
        {
            let _s = tracing::info_span!("warned").entered();
            tracing::warn!("no\0te" = 1, "wa\0rned");
        }
        tracing::info!(
            role = "Us\0er",
            content = "he\0llo",
            sources = "[\"\\u0000x\", \"y\0\"]",
            citations = "not json\0"
        );
        tracing::info!(
            document_id = %doc,
            event_type = "Pa\0rse",
            error_type = "E\0",
            error_message = "m\0",
            collection_name = "c\0",
            embedding_model = "e\0",
            "x\0" = "y\0",
            "m\0sg"
        );
    });
    let s = finish(&db, &guard, 2 + 1 + 1 + 1 + 1).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let t = only_row(&db.pool, "traces").await;
    assert_eq!(text(&t, "name").as_deref(), Some("root"));
    assert_eq!(text(&t, "operation_type").as_deref(), Some("optype"));
    assert_eq!(text(&t, "session_id").as_deref(), Some("sess"));
    assert_eq!(meta(&t), json!({"key": "val"}));
    let r = span_by_name(&db.pool, "llm").await;
    for (col, want) in [
        ("model", "model"),
        ("input_preview", "in"),
        ("output_preview", "out"),
        ("query_text", "qt"),
        ("embedding_model", "em"),
        ("file_type", "pdf"),
        ("chunk_strategy", "cs"),
        ("collection_name", "cn"),
        ("error_type", "Type"),
        ("error_message", "boom"),
    ] {
        assert_eq!(text(&r, col).as_deref(), Some(want), "{col}");
    }
    assert_eq!(meta(&r), json!({"meta": "data"}));
    let w = span_by_name(&db.pool, "warned").await;
    let events = meta(&w)["events"].clone();
    assert_eq!(events[0]["message"], "warned");
    assert_eq!(events[0]["note"], 1);
    let c = only_row(&db.pool, "chat_messages").await;
    assert_eq!(text(&c, "role").as_deref(), Some("user"));
    assert_eq!(text(&c, "content").as_deref(), Some("hello"));
    assert_eq!(text(&c, "session_id").as_deref(), Some("sess"));
    // A raw NUL inside a JSON string makes it invalid JSON: kept as text, without the NUL (the
    // escaped `\u0000` is six plain characters there).
    assert_eq!(c.get::<Value, _>("sources"), json!("[\"\\u0000x\", \"y\"]"));
    assert_eq!(c.get::<Value, _>("citations"), json!("not json"));
    let d = only_row(&db.pool, "document_events").await;
    assert_eq!(text(&d, "event_type").as_deref(), Some("parse"));
    assert_eq!(text(&d, "error_type").as_deref(), Some("E"));
    assert_eq!(text(&d, "error_message").as_deref(), Some("m"));
    assert_eq!(text(&d, "collection_name").as_deref(), Some("c"));
    assert_eq!(text(&d, "embedding_model").as_deref(), Some("e"));
    assert_eq!(meta(&d), json!({"x": "y", "message": "msg"}));
}

/// Cases 27 and 28.
#[tokio::test]
async fn layer_cuts_ten_megabyte_strings_and_keeps_metadata_whole() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    let l = limits();
    let big = ten_mb("a");
    let big_emoji = ten_mb("😀");
    let (user, kb) = (Uuid::now_v7(), Uuid::now_v7());
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!(
            "root",
            session_id = big.as_str(),
            user_id = %user,
            kb_id = %kb,
            operation_type = big.as_str()
        )
        .entered();
        {
            let _s = tracing::info_span!(
                "big",
                model = big_emoji.as_str(),
                input_preview = big.as_str(),
                output_preview = big_emoji.as_str(),
                query_text = big_emoji.as_str(),
                blob = big.as_str(),
            )
            .entered();
            tracing::error!(
                error_type = big.as_str(),
                error_message = big_emoji.as_str()
            );
        }
        tracing::info!(role = "user", content = big.as_str());
        tracing::info!(role = big.as_str(), content = big_emoji.as_str());
    });
    let s = finish(&db, &guard, 2 + 1 + 2).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let t = only_row(&db.pool, "traces").await;
    assert_eq!(text(&t, "session_id"), Some("a".repeat(l.label)));
    assert_eq!(text(&t, "operation_type"), Some("a".repeat(l.label)));
    let r = span_by_name(&db.pool, "big").await;
    assert_eq!(text(&r, "model"), Some("😀".repeat(l.label)));
    assert_eq!(text(&r, "input_preview"), Some("a".repeat(l.preview)));
    assert_eq!(text(&r, "output_preview"), Some("😀".repeat(l.preview)));
    assert_big_eq(
        &text(&r, "query_text"),
        &Some("😀".repeat(l.content)),
        "r.query_text",
    );
    assert_eq!(text(&r, "error_type"), Some("a".repeat(l.label)));
    assert_eq!(
        text(&r, "error_message"),
        Some("😀".repeat(l.error_message))
    );
    // 28: a JSON string is cut to the content limit.
    assert_big_eq(
        &meta(&r),
        &json!({"blob": "a".repeat(l.content)}),
        "10 MB metadata",
    );
    let chats =
        sqlx::query("SELECT role, content FROM observability.chat_messages ORDER BY length(role)")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(text(&chats[0], "role"), Some("user".to_owned()));
    assert_big_eq(
        &text(&chats[0], "content"),
        &Some("a".repeat(l.content)),
        "chats[0].content",
    );
    assert_eq!(text(&chats[1], "role"), Some("a".repeat(l.label)));
    assert_big_eq(
        &text(&chats[1], "content"),
        &Some("😀".repeat(l.content)),
        "chats[1].content",
    );
}

/// Case 29.
#[tokio::test]
async fn layer_cuts_at_character_boundaries_where_four_byte_chars_straddle_the_limit() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    let l = limits();
    let e = "😀";
    let (user, kb) = (Uuid::now_v7(), Uuid::now_v7());
    let session = e.repeat(l.label + 1);
    let model = format!("{}{e}{e}", "m".repeat(l.label - 1));
    let input = format!("{}{e}x", "p".repeat(l.preview - 1));
    let output = format!("\0{e}").repeat(l.preview + 1);
    let error = format!("{}{e}", "e".repeat(l.error_message));
    let error_kept = format!("{}{e}{e}", "e".repeat(l.error_message - 1));
    let content = format!("{}{e}{e}", "c".repeat(l.content - 1));
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!(
            "root",
            session_id = session.as_str(),
            user_id = %user,
            kb_id = %kb
        )
        .entered();
        {
            let _s = tracing::info_span!(
                LONG_SPAN_NAME,
                model = model.as_str(),
                input_preview = input.as_str(),
                output_preview = output.as_str(),
            )
            .entered();
            tracing::error!("{error}");
        }
        {
            let _s = tracing::info_span!("kept").entered();
            tracing::error!("{error_kept}");
        }
        tracing::info!(role = "user", content = content.as_str());
    });
    let s = finish(&db, &guard, 2 + 2 + 1).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let t = only_row(&db.pool, "traces").await;
    assert_eq!(text(&t, "session_id"), Some(e.repeat(l.label)));
    let want_name: String = LONG_SPAN_NAME.chars().take(l.label).collect();
    if l.label == 256 {
        assert_eq!(want_name, format!("{}{e}", "n".repeat(255)));
    }
    let r = span_by_name(&db.pool, &want_name).await;
    assert_eq!(
        text(&r, "model"),
        Some(format!("{}{e}", "m".repeat(l.label - 1)))
    );
    assert_eq!(
        text(&r, "input_preview"),
        Some(format!("{}{e}", "p".repeat(l.preview - 1)))
    );
    assert_eq!(text(&r, "output_preview"), Some(e.repeat(l.preview)));
    assert_eq!(text(&r, "error_message"), Some("e".repeat(l.error_message)));
    let r = span_by_name(&db.pool, "kept").await;
    assert_eq!(
        text(&r, "error_message"),
        Some(format!("{}{e}", "e".repeat(l.error_message - 1)))
    );
    let c = only_row(&db.pool, "chat_messages").await;
    assert_big_eq(
        &text(&c, "content"),
        &Some(format!("{}{e}", "c".repeat(l.content - 1))),
        "c.content",
    );
}

/// Cases 30-33.
#[tokio::test]
async fn layer_stores_non_finite_negative_and_out_of_range_numbers_as_null() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("root").entered();
        // 30
        drop(
            tracing::info_span!(
                "nan",
                model = "m",
                temperature = f64::NAN,
                top_score = f64::NAN,
                cost_usd = f64::NAN,
                score = f64::NAN,
                ratio = f64::NEG_INFINITY,
                big = f64::INFINITY,
            )
            .entered(),
        );
        drop(
            tracing::info_span!(
                "inf",
                model = "m",
                temperature = f64::INFINITY,
                top_score = f64::NEG_INFINITY,
                cost_usd = f64::INFINITY,
            )
            .entered(),
        );
        drop(
            tracing::info_span!(
                "text_nan",
                model = "m",
                temperature = "NaN",
                top_score = "inf",
                prompt_tokens = "NaN"
            )
            .entered(),
        );
        // 31
        drop(
            tracing::info_span!(
                "negative",
                model = "m",
                prompt_tokens = -5_i64,
                completion_tokens = i64::MIN,
                cost_usd = -1.0,
                temperature = -0.5,
                top_score = -0.25,
                vector_count = -1_i64,
                vector_dimensions = -384_i64,
                result_count = -1_i64,
                file_size_bytes = -1_i64,
                page_count = -1_i64,
                chunk_count = -1_i64,
                vectors_upserted = -1_i64,
            )
            .entered(),
        );
        // 32
        drop(
            tracing::info_span!(
                "huge",
                model = "m",
                prompt_tokens = u64::MAX,
                completion_tokens = i64::MAX as u64,
                file_size_bytes = u128::MAX,
                vector_count = i128::MIN,
                vectors_upserted = u64::MAX,
                result_count = i64::MAX,
                page_count = 1_i64 << 31,
                vector_dimensions = 1.5,
                chunk_count = 1e300,
            )
            .entered(),
        );
        // 33
        drop(tracing::info_span!("cost_10000", cost_usd = 10_000.0).entered());
        drop(tracing::info_span!("cost_1e300", cost_usd = 1e300).entered());
        drop(tracing::info_span!("cost_text_nan", cost_usd = "NaN").entered());
        drop(tracing::info_span!("cost_text_1e400", cost_usd = "1e400").entered());
        drop(tracing::info_span!("cost_max", cost_usd = "9999.999999").entered());
    });
    let s = finish(&db, &guard, 2 + 10).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    for name in ["nan", "inf", "text_nan"] {
        let r = span_by_name(&db.pool, name).await;
        assert_eq!(r.get::<Option<f64>, _>("temperature"), None, "{name}");
        assert_eq!(r.get::<Option<f64>, _>("top_score"), None, "{name}");
        assert_eq!(r.get::<Option<Decimal>, _>("cost_usd"), None, "{name}");
        assert_eq!(text(&r, "cost_source"), None, "{name}");
        assert_eq!(r.get::<Option<i64>, _>("prompt_tokens"), None, "{name}");
    }
    // Non-finite numbers in metadata: JSON has no NaN or infinity, so their text.
    let r = span_by_name(&db.pool, "nan").await;
    assert_eq!(
        meta(&r),
        json!({"score": "NaN", "ratio": "-inf", "big": "inf"})
    );
    let r = span_by_name(&db.pool, "negative").await;
    for col in [
        "prompt_tokens",
        "completion_tokens",
        "vector_count",
        "file_size_bytes",
        "vectors_upserted",
    ] {
        assert_eq!(r.get::<Option<i64>, _>(col), None, "negative {col}");
    }
    for col in [
        "vector_dimensions",
        "result_count",
        "page_count",
        "chunk_count",
    ] {
        assert_eq!(r.get::<Option<i32>, _>(col), None, "negative {col}");
    }
    assert_eq!(r.get::<Option<Decimal>, _>("cost_usd"), None);
    // Not counts: finite negative values are kept.
    assert_eq!(r.get::<Option<f64>, _>("temperature"), Some(-0.5));
    assert_eq!(r.get::<Option<f64>, _>("top_score"), Some(-0.25));
    let r = span_by_name(&db.pool, "huge").await;
    assert_eq!(r.get::<Option<i64>, _>("prompt_tokens"), None);
    assert_eq!(r.get::<Option<i64>, _>("completion_tokens"), Some(i64::MAX));
    for col in ["file_size_bytes", "vector_count", "vectors_upserted"] {
        assert_eq!(r.get::<Option<i64>, _>(col), None, "huge {col}");
    }
    for col in [
        "result_count",
        "page_count",
        "vector_dimensions",
        "chunk_count",
    ] {
        assert_eq!(r.get::<Option<i32>, _>(col), None, "huge {col}");
    }
    for name in [
        "cost_10000",
        "cost_1e300",
        "cost_text_nan",
        "cost_text_1e400",
    ] {
        let r = span_by_name(&db.pool, name).await;
        assert_eq!(r.get::<Option<Decimal>, _>("cost_usd"), None, "{name}");
        assert_eq!(text(&r, "cost_source"), None, "{name}");
    }
    let r = span_by_name(&db.pool, "cost_max").await;
    assert_eq!(
        r.get::<Option<Decimal>, _>("cost_usd"),
        Some(Decimal::new(9_999_999_999, 6))
    );
    // The trace: one usable completion count of i64::MAX, one usable cost.
    let t = only_row(&db.pool, "traces").await;
    assert_eq!(t.get::<Option<i64>, _>("prompt_tokens"), Some(0));
    assert_eq!(t.get::<Option<i64>, _>("completion_tokens"), Some(i64::MAX));
    assert_eq!(t.get::<Option<i64>, _>("total_tokens"), Some(i64::MAX));
    assert_eq!(
        t.get::<Option<Decimal>, _>("total_cost_usd"),
        Some(Decimal::new(9_999_999_999, 6))
    );
}

/// Case 34.
#[tokio::test]
async fn layer_stores_non_finite_and_negative_chat_and_document_numbers_as_null() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    let (user, kb, doc) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    tracing::dispatcher::with_default(&dispatch, || {
        let _root =
            tracing::info_span!("root", user_id = %user, kb_id = %kb, session_id = "s").entered();
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
            tracing::info!(
                role = "assistant",
                content = "c",
                turn_number = -1_i64,
                prompt_tokens = -1_i64,
                completion_tokens = u64::MAX,
                response_time_ms = x
            );
            tracing::info!(
                document_id = %doc,
                event_type = "parse",
                duration_ms = x,
                retry_count = -1_i64,
                extracted_pages = -1_i64,
                extracted_chars = u64::MAX,
                tables_found = i64::MIN,
                images_found = 1_i64 << 40,
                chunks_created = -1_i64,
                avg_chunk_size = -1_i64,
                vectors_generated = -1_i64,
                vectors_upserted = -1_i64
            );
        }
        // A duration too long to be one (over 31 years): NULL too.
        tracing::info!(document_id = %doc, event_type = "parse", duration_ms = 1e15);
    });
    let s = finish(&db, &guard, 2 + 8 + 1).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let chats = sqlx::query("SELECT * FROM observability.chat_messages")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(chats.len(), 4);
    for c in &chats {
        assert_eq!(c.get::<Option<i32>, _>("turn_number"), None);
        assert_eq!(c.get::<Option<i64>, _>("prompt_tokens"), None);
        assert_eq!(c.get::<Option<i64>, _>("completion_tokens"), None);
        assert_eq!(c.get::<Option<f64>, _>("response_time_ms"), None);
    }
    let docs = sqlx::query("SELECT * FROM observability.document_events")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(docs.len(), 5);
    for d in &docs {
        assert_eq!(d.get::<Option<f64>, _>("duration_ms"), None);
        for col in [
            "retry_count",
            "extracted_pages",
            "tables_found",
            "images_found",
            "chunks_created",
            "avg_chunk_size",
        ] {
            assert_eq!(d.get::<Option<i32>, _>(col), None, "{col}");
        }
        for col in ["extracted_chars", "vectors_generated", "vectors_upserted"] {
            assert_eq!(d.get::<Option<i64>, _>(col), None, "{col}");
        }
    }
}

/// Cases 35 and 36.
#[tokio::test]
async fn layer_keeps_ids_that_are_not_uuids_in_metadata_and_rejects_bad_document_ids() {
    let (db, layer, guard, dispatch) = layer_setup().await;
    let rejected = || layer.stats().rejected;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!(
            "root",
            user_id = "not-a-uuid",
            kb_id = 42_i64,
            session_id = "s"
        )
        .entered();
        drop(tracing::info_span!("child", user_id = INJECTION, "user.id" = "ignored").entered());
        drop(tracing::info_span!("child_kb", "gen_ai.data_source.id" = "").entered());
        // 36: the ids on the spans are not UUIDs, so a chat message has none.
        let before = rejected();
        tracing::info!(role = "user", content = "no ids");
        assert_eq!(rejected(), before + 1, "chat without valid ids");
        tracing::info!(
            role = "user",
            content = "a bad id on the event",
            user_id = "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
            kb_id = %Uuid::now_v7()
        );
        assert_eq!(rejected(), before + 2, "chat with a bad user id");
        tracing::info!(document_id = "doc-1", event_type = "upload");
        assert_eq!(rejected(), before + 3, "text document id");
        tracing::info!(document_id = 7_i64, event_type = "upload");
        assert_eq!(rejected(), before + 4, "number document id");
        tracing::info!(document_id = INJECTION, event_type = "upload");
        assert_eq!(rejected(), before + 5, "injected document id");
    });
    let s = finish(&db, &guard, 2 + 2 + 5).await;
    assert_eq!((s.rejected, s.refused), (5, 0), "{s:?}");

    let t = only_row(&db.pool, "traces").await;
    assert_eq!(t.get::<Option<Uuid>, _>("user_id"), None);
    assert_eq!(t.get::<Option<Uuid>, _>("kb_id"), None);
    assert_eq!(meta(&t), json!({"user_id": "not-a-uuid", "kb_id": 42}));
    let r = span_by_name(&db.pool, "child").await;
    assert_eq!(meta(&r), json!({"user_id": INJECTION}));
    let r = span_by_name(&db.pool, "child_kb").await;
    assert_eq!(meta(&r), json!({"kb_id": ""}));
    assert_eq!(count(&db.pool, "chat_messages").await, 0);
    assert_eq!(count(&db.pool, "document_events").await, 0);
}

/// Case 37. The README: "a user or kb id that is not a UUID is kept in `metadata`". On a
/// document event (which has a metadata column) such a kb id is dropped instead.
#[tokio::test]
async fn layer_keeps_a_non_uuid_kb_id_of_a_document_event_in_metadata() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    let doc = Uuid::now_v7();
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("root").entered();
        tracing::info!(document_id = %doc, event_type = "upload", kb_id = "kb-7");
    });
    let s = finish(&db, &guard, 3).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
    let d = only_row(&db.pool, "document_events").await;
    assert_eq!(d.get::<Option<Uuid>, _>("kb_id"), None);
    assert_eq!(meta(&d), json!({"kb_id": "kb-7"}));
}

/// Case 38.
#[tokio::test]
async fn layer_keeps_field_names_with_dots_quotes_and_non_ascii_as_metadata_keys() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("root").entered();
        drop(
            tracing::info_span!(
                "names",
                my.dotted.field = 1_i64,
                "quote\"d'key" = 2_i64,
                "ключ🔑" = 3_i64,
                "back\\slash" = 4_i64,
                "nul\0key" = 5_i64,
                "'); DROP TABLE observability.spans; --" = 6_i64,
                "tab\tnew\nline" = 7_i64,
                "" = 8_i64,
            )
            .entered(),
        );
    });
    let s = finish(&db, &guard, 3).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
    let r = span_by_name(&db.pool, "names").await;
    let mut want = serde_json::Map::new();
    for (k, v) in [
        ("my.dotted.field", 1),
        ("quote\"d'key", 2),
        ("ключ🔑", 3),
        ("back\\slash", 4),
        ("nulkey", 5),
        (INJECTION, 6),
        ("tab\tnew\nline", 7),
        ("", 8),
    ] {
        want.insert(k.to_owned(), json!(v));
    }
    assert_eq!(meta(&r), Value::Object(want));
}

/// Puts `s` (short, NUL-free, not JSON) in every text field the layer maps and reads it back.
async fn layer_round_trips_every_text_field(s: &str) {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    let (user, kb, doc) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!(
            "root",
            session_id = s,
            user_id = %user,
            kb_id = %kb,
            operation_type = s,
            note = s
        )
        .entered();
        {
            let _s = tracing::info_span!(
                "all_columns",
                span_type = s,
                model = s,
                input_preview = s,
                output_preview = s,
                query_text = s,
                embedding_model = s,
                file_type = s,
                chunk_strategy = s,
                collection_name = s,
                error_type = s,
                error_message = s,
                note = s,
            )
            .entered();
        }
        tracing::info!(role = s, content = s, sources = s, citations = s);
        tracing::info!(
            document_id = %doc,
            event_type = s,
            status = s,
            error_type = s,
            error_message = s,
            collection_name = s,
            embedding_model = s,
            note = s
        );
    });
    let stats = finish(&db, &guard, 2 + 1 + 1 + 1).await;
    assert_eq!((stats.rejected, stats.refused), (0, 0), "{stats:?}");

    let want = Some(s.to_owned());
    // The layer lower-cases operation types, span types, roles and event types.
    let lower = Some(s.to_ascii_lowercase());
    let t = only_row(&db.pool, "traces").await;
    assert_eq!(text(&t, "session_id"), want);
    assert_eq!(text(&t, "operation_type"), lower);
    assert_eq!(meta(&t), json!({"note": s}));
    let r = span_by_name(&db.pool, "all_columns").await;
    assert_eq!(text(&r, "span_type"), Some(s.trim().to_ascii_lowercase()));
    for col in [
        "model",
        "input_preview",
        "output_preview",
        "query_text",
        "embedding_model",
        "file_type",
        "chunk_strategy",
        "collection_name",
        "error_type",
        "error_message",
    ] {
        assert_eq!(text(&r, col), want, "spans.{col}");
    }
    assert_eq!(text(&r, "status").as_deref(), Some("error"));
    assert_eq!(meta(&r), json!({"note": s}));
    let c = only_row(&db.pool, "chat_messages").await;
    assert_eq!(text(&c, "role"), lower);
    assert_eq!(text(&c, "content"), want);
    assert_eq!(text(&c, "session_id"), want);
    // Text that is not JSON: kept as a JSON string.
    assert_eq!(c.get::<Value, _>("sources"), json!(s));
    assert_eq!(c.get::<Value, _>("citations"), json!(s));
    let d = only_row(&db.pool, "document_events").await;
    assert_eq!(text(&d, "event_type"), lower);
    // A status that is not one: the default, with the given text kept in metadata.
    assert_eq!(text(&d, "status").as_deref(), Some("completed"));
    for col in [
        "error_type",
        "error_message",
        "collection_name",
        "embedding_model",
    ] {
        assert_eq!(text(&d, col), want, "document_events.{col}");
    }
    assert_eq!(meta(&d), json!({"note": s, "status": want}));
    assert_eq!(count(&db.pool, "spans").await, 1);
}

/// Case 39.
#[tokio::test]
async fn layer_stores_quotes_backslashes_control_chars_and_copy_markers_verbatim() {
    layer_round_trips_every_text_field(HOSTILE).await;
}

/// Case 40.
#[tokio::test]
async fn layer_stores_sql_injection_verbatim_in_every_text_field() {
    layer_round_trips_every_text_field(INJECTION).await;
}

/// Case 41.
#[tokio::test]
async fn layer_keeps_invalid_or_deep_json_sources_sanitised() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    let (user, kb) = (Uuid::now_v7(), Uuid::now_v7());
    let depth = limits().json_depth;
    let deep_100 = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let deep_10k = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    tracing::dispatcher::with_default(&dispatch, || {
        let _root =
            tracing::info_span!("root", user_id = %user, kb_id = %kb, session_id = "s").entered();
        let chat = |turn: i64, sources: &str, citations: &str| {
            tracing::info!(
                role = "assistant",
                content = "c",
                turn_number = turn,
                sources = sources,
                citations = citations
            );
        };
        chat(1, "[{\"doc_id\": 1,]", "not json at all");
        chat(2, "{\"a\": \"\\u0000\", \"b\\u0000\": 1}", "[1, 2\0");
        chat(3, &deep_100, "{\"k\": {\"k\": ");
        chat(4, &deep_10k, "null");
        tracing::info!(
            role = "assistant",
            content = "c",
            turn_number = 5_i64,
            sources = 5_i64,
            citations = f64::NAN
        );
    });
    let s = finish(&db, &guard, 2 + 5).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");

    let rows: Vec<(i32, Value, Value)> = sqlx::query_as(
        "SELECT turn_number, sources, citations FROM observability.chat_messages ORDER BY turn_number",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let want = [
        (1, json!("[{\"doc_id\": 1,]"), json!("not json at all")),
        (2, json!({"a": "", "b": 1}), json!("[1, 2")),
        (3, nest_arrays(depth, marker()), json!("{\"k\": {\"k\": ")),
        // Too deep for the JSON parser: kept as text, like any other unparsable text.
        (4, json!(deep_10k), json!([])),
        (5, json!(5), json!("NaN")),
    ];
    assert_eq!(rows.len(), want.len());
    for (got, want) in rows.iter().zip(want) {
        assert_eq!(*got, want, "turn {}", want.0);
    }
}

/// Case 42.
#[tokio::test]
async fn layer_survives_a_debug_impl_that_panics() {
    struct Hostile;
    impl fmt::Debug for Hostile {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("hostile Debug impl")
        }
    }
    let (db, _layer, guard, dispatch) = layer_setup().await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("root").entered();
        drop(tracing::info_span!("debug", model = ?Hostile, note = ?Hostile).entered());
    });
    let s = finish(&db, &guard, 3).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
    let r = span_by_name(&db.pool, "debug").await;
    assert_eq!(text(&r, "model").as_deref(), Some("[formatting panicked]"));
    assert_eq!(meta(&r), json!({"note": "[formatting panicked]"}));
}

/// Case 42b. A value recorded late whose `Debug` impl records a late field on another span
/// while it is formatted: the layer re-enters `on_record` on the same thread, and each span
/// keeps its own fields (late fields are collected in vectors reused between calls).
#[tokio::test]
async fn layer_keeps_late_fields_apart_when_formatting_records_another_span() {
    struct RecordsElsewhere(tracing::Span);
    impl fmt::Debug for RecordsElsewhere {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.record("inner_note", "set while formatting");
            self.0.record("prompt_tokens", 7_i64);
            f.write_str("outer value")
        }
    }
    let (db, _layer, guard, dispatch) = layer_setup().await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("root").entered();
        let inner = tracing::info_span!(
            "inner",
            inner_note = tracing::field::Empty,
            prompt_tokens = tracing::field::Empty
        );
        let outer = tracing::info_span!(
            "outer",
            outer_note = tracing::field::Empty,
            completion_tokens = tracing::field::Empty
        );
        outer.record(
            "outer_note",
            tracing::field::debug(RecordsElsewhere(inner.clone())),
        );
        outer.record("completion_tokens", 3_i64);
        // A late record on the inner span after the nested one: nothing of the outer's leaks.
        inner.record("inner_note", "recorded last");
        drop(outer);
        drop(inner);
    });
    let s = finish(&db, &guard, 4).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
    let outer = span_by_name(&db.pool, "outer").await;
    assert_eq!(meta(&outer), json!({"outer_note": "outer value"}));
    assert_eq!(outer.get::<Option<i64>, _>("completion_tokens"), Some(3));
    assert_eq!(outer.get::<Option<i64>, _>("prompt_tokens"), None);
    let inner = span_by_name(&db.pool, "inner").await;
    assert_eq!(meta(&inner), json!({"inner_note": "recorded last"}));
    assert_eq!(inner.get::<Option<i64>, _>("prompt_tokens"), Some(7));
    assert_eq!(inner.get::<Option<i64>, _>("completion_tokens"), None);
}

/// Case 43. As case 23, through the layer.
#[tokio::test]
async fn layer_trace_total_cost_over_numeric_is_stored_as_null() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("expensive").entered();
        for _ in 0..2 {
            drop(tracing::info_span!("call", cost_usd = 6_000.0).entered());
        }
    });
    let s = finish(&db, &guard, 4).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
    let t = only_row(&db.pool, "traces").await;
    assert_eq!(text(&t, "status").as_deref(), Some("success"));
    assert_eq!(t.get::<Option<Decimal>, _>("total_cost_usd"), None);
    let costs: Vec<Option<Decimal>> =
        sqlx::query_scalar("SELECT cost_usd FROM observability.spans")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(costs, [Some(Decimal::from(6_000)); 2]);
}

/// Case 44. As case 24, through the layer.
#[tokio::test]
async fn layer_trace_token_totals_saturate() {
    let (db, _layer, guard, dispatch) = layer_setup().await;
    tracing::dispatcher::with_default(&dispatch, || {
        let _root = tracing::info_span!("many tokens").entered();
        for _ in 0..3 {
            drop(tracing::info_span!("call", prompt_tokens = i64::MAX).entered());
        }
    });
    let s = finish(&db, &guard, 5).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
    let t = only_row(&db.pool, "traces").await;
    assert_eq!(t.get::<Option<i64>, _>("prompt_tokens"), Some(i64::MAX));
    assert_eq!(t.get::<Option<i64>, _>("total_tokens"), Some(i64::MAX));
}

/// Case 45. A redaction hook runs after sanitation: text it returns must still be sanitised
/// (NULs removed, cut to the limit), not stored as returned or refused by the database.
#[tokio::test]
async fn redacted_text_is_sanitised_too() {
    let db = fresh_db().await;
    let l = limits();
    let (p, guard) = Builder::new(&db.url)
        .redact(|_, text: &mut String| {
            *text = format!("red\0acted{}", "x".repeat(2_000_000));
        })
        .build()
        .unwrap();
    let ctx = ctx_with_ids();
    let id = p.log_llm_call(
        &ctx,
        LlmCall {
            input_preview: Some("secret".into()),
            outcome: Outcome::error("E", "secret"),
            metadata: Some(json!({"k": "secret"})),
            ..LlmCall::default()
        },
    );
    p.log_chat_message(&ctx, ChatMessage::new(ChatRole::User, "secret"));
    let s = finish(&db, &guard, 2).await;
    assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
    let want = |n: usize| Some(format!("redacted{}", "x".repeat(n - 8)));
    let r = by_id(&db.pool, "spans", id.as_uuid()).await;
    assert_big_eq(
        &text(&r, "input_preview"),
        &want(l.preview),
        "redacted preview",
    );
    assert_big_eq(
        &text(&r, "error_message"),
        &want(l.error_message),
        "redacted error",
    );
    assert_big_eq(
        &meta(&r),
        &json!({"k": want(l.content)}),
        "redacted metadata",
    );
    let c = only_row(&db.pool, "chat_messages").await;
    assert_big_eq(&text(&c, "content"), &want(l.content), "redacted content");
}

/// Case 46. The label limit raised past the documented 600 characters: a session id of 1,000
/// incompressible 4-byte characters is too big for its btree index. The database refuses that
/// one row; it is counted and its neighbours in the batch are written.
#[tokio::test]
async fn an_index_entry_too_big_is_refused_alone_and_counted() {
    let db = fresh_db().await;
    let (p, guard) = Builder::new(&db.url)
        .text_limits(TextLimits {
            label: 1_000,
            ..TextLimits::default()
        })
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    // Pseudo-random supplementary-plane characters: 4 bytes each, nothing for pglz to squeeze.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let huge_session: String = (0..1_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_u32(0x1_0000 + (x % 0x10_0000) as u32).expect("a scalar value")
        })
        .collect();
    assert_eq!(huge_session.len(), 4_000);
    let (user, kb) = (Uuid::now_v7(), Uuid::now_v7());
    for (i, session) in ["before", huge_session.as_str(), "after", INJECTION]
        .into_iter()
        .enumerate()
    {
        let ctx = TraceContext::new()
            .with_user(user)
            .with_session(session)
            .with_kb(kb);
        p.log_chat_message(&ctx, ChatMessage::new(ChatRole::User, format!("{i}")));
    }
    let s = finish(&db, &guard, 4).await;
    assert_eq!((s.written, s.rejected, s.refused), (3, 0, 1), "{s:?}");
    assert!(
        s.last_error
            .as_ref()
            .map_or("", |e| e.message.as_str())
            .contains("index row"),
        "{s:?}"
    );
    let contents: Vec<String> =
        sqlx::query_scalar("SELECT content FROM observability.chat_messages ORDER BY content")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(contents, ["0", "2", "3"]);
}
