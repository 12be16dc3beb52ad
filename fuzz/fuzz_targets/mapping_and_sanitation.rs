//! Fuzzes the field mapping and the sanitation of `tracing-postgres`.
//!
//! Each input is
//! 1. handed to the crate's hidden invariant checks (`fuzzing::sanitize`, `fuzzing::encode`);
//! 2. read as a little program driving the real `PostgresLayer` through `tracing`'s public API:
//!    spans from fixed callsites declaring every well-known field (and a few odd ones) as
//!    `field::Empty`, `Span::record` of input-chosen values on input-chosen fields, chat,
//!    document, error and attached events, spans closed in input-chosen order,
//!    `TraceContext::current()` and the explicit `ObservabilityProvider` calls.
//!
//! No server listens on the layer's URL: records stay queued or are counted as dropped. Nothing
//! may panic, and the counters must add up: every record the program makes ends in exactly one
//! of `enqueued`, `dropped_full`, `dropped_closed` or `rejected`, and
//! `enqueued + dropped_full + rejected` never decreases between inputs.
#![no_main]

use std::fmt;
use std::sync::{LazyLock, Mutex};

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tracing::field::{Empty, debug, display};
use tracing::span::Id;
use tracing::{Dispatch, Span};
use tracing_postgres::{
    ChatMessage, ChatRole, Citation, Decimal, DocumentChunkMetrics, DocumentEmbedMetrics,
    DocumentEvent, DocumentEventStatus, DocumentEventType, DocumentMetrics, DocumentParseMetrics,
    IndexMetrics, LlmCall, LlmMetrics, ObservabilityProvider, OperationType, Outcome,
    PostgresLayer, SpanEnd, SpanId, SpanMetrics, SpanType, Source, Stats, Status, TraceContext,
    TraceTotals, Uuid, WriterGuard,
};
use tracing_subscriber::prelude::*;

const MAX_QUEUE_BYTES: usize = 1 << 20;
/// Bounds on one input's program, so a single input stays fast.
const MAX_OPS: usize = 400;
const MAX_OPEN_SPANS: usize = 48;

struct Harness {
    layer: PostgresLayer,
    dispatch: Dispatch,
    /// Never dropped: the writer runs for the life of the process.
    _guard: WriterGuard,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let (layer, guard) = tracing_postgres::Builder::new("postgres://fuzz@127.0.0.1:1/none")
        .queue_capacity(1024)
        .max_queue_bytes(MAX_QUEUE_BYTES)
        .build_layer()
        .expect("a valid configuration builds");
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer.clone()));
    Harness {
        layer,
        dispatch,
        _guard: guard,
    }
});

/// `enqueued + dropped_full + rejected` after the previous input.
static LAST_TOTAL: Mutex<u64> = Mutex::new(0);

/// Every field name the mapping knows (`slot_of` in src/fields.rs) plus a few it does not.
const ALL_NAMES: &[&str] = &[
    "span_type", "gen_ai.operation.name", "openinference.span.kind", "operation_type", "model",
    "gen_ai.request.model", "llm.model_name", "gen_ai.response.model", "prompt_tokens",
    "gen_ai.usage.input_tokens", "llm.token_count.prompt", "input_tokens", "completion_tokens",
    "gen_ai.usage.output_tokens", "llm.token_count.completion", "output_tokens", "cost_usd",
    "llm.cost.total", "gen_ai.usage.cost", "cost", "temperature", "gen_ai.request.temperature",
    "session_id", "gen_ai.conversation.id", "session.id", "user_id", "user.id", "enduser.id",
    "kb_id", "gen_ai.data_source.id", "embedding_model", "embedding.model_name", "vector_count",
    "vector_dimensions", "gen_ai.embeddings.dimension.count", "query_text",
    "gen_ai.retrieval.query.text", "retrieval.query", "result_count",
    "retrieval.documents.count", "top_score", "file_type", "file_size_bytes", "page_count",
    "chunk_count", "chunk_strategy", "vectors_upserted", "collection_name", "input_preview",
    "input.value", "output_preview", "output.value", "error", "exception", "error_type",
    "error.type", "exception.type", "error_message", "error.message", "exception.message",
    "message", "role", "gen_ai.message.role", "content", "gen_ai.message.content", "turn_number",
    "sources", "citations", "response_time_ms", "document_id", "event_type", "status",
    "duration_ms", "extracted_pages", "extracted_chars", "tables_found", "images_found",
    "chunks_created", "avg_chunk_size", "vectors_generated", "retryable", "retry_count",
    "we\"ird.na me ü", "metadata", "events", "events_dropped", "not_declared_anywhere",
];

/// Values the mapping looks for (span types, roles, statuses, steps, priced models, numbers
/// as text, JSON), so the fuzzer reaches those branches without guessing them.
const WORDS: &[&str] = &[
    "chat", "text_completion", "generate_content", "llm", "generation", "embeddings",
    "embedding", "retrieval", "RETRIEVER", "reranker", "RERANKER", "rerank", "execute_tool",
    "tool", "invoke_agent", "create_agent", "agent", "chain", "internal", "parse", "chunk",
    "index", "Custom Type", "user", "assistant", "system", "USER", "started", "completed",
    "failed", "skipped", "Started", "upload", "embed", "complete", "document", "search",
    "gpt-4o-mini", "gpt-4o", "gpt-4o-mini-2024-07-18", "claude-3-5-haiku-latest", "", " ",
    "0", " 42 ", "-1", "9223372036854775807", "18446744073709551615", "1e308", "-1e308", "NaN",
    "inf", "-inf", "0.000001", "0.0000001", "9999.999999", "10000", "99999999999", "1.5",
    "true", "false", "null", "[]", "{}", "[1,2,3]", "\"quoted\"",
    "[{\"doc_id\":null,\"score\":0.5,\"excerpt\":\"x\\u0000y\"}]",
    "{\"a\\u0000\":[\"\\u0000\",{\"b\":[[[[]]]]}]}", "\0", "a\0b", "\u{feff}", "é", "😀",
    "\u{10ffff}", "\\.", "\n\t\r", "\\N", "'; DROP TABLE observability.traces; --",
];

/// Reads the program's operations and values out of the input.
struct Input<'a>(&'a [u8], u8);

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let src = self.take(N);
        b[..src.len()].copy_from_slice(src);
        b
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
    fn i64(&mut self) -> i64 {
        match self.u8() % 8 {
            0 => i64::from(self.u8()),
            1 => -i64::from(self.u8()),
            2 => [0, -1, 1, i64::MIN, i64::MAX, i32::MAX as i64, i32::MAX as i64 + 1, i32::MIN as i64]
                [usize::from(self.u8() % 8)],
            _ => i64::from_le_bytes(self.array()),
        }
    }
    fn i32(&mut self) -> i32 {
        self.i64() as i32
    }
    fn u128(&mut self) -> u128 {
        u128::from_le_bytes(self.array())
    }
    fn i128(&mut self) -> i128 {
        i128::from_le_bytes(self.array())
    }
    fn f64(&mut self) -> f64 {
        match self.u8() % 6 {
            0 => [
                f64::NAN,
                -f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -0.0,
                f64::MIN_POSITIVE,
                f64::MAX,
                f64::MIN,
                1e12,
                9.0e15,
                0.000_000_1,
                f64::EPSILON,
            ][usize::from(self.u8() % 12)],
            1 => f64::from(self.u8()) / 8.0,
            2 => self.i64() as f64,
            _ => f64::from_bits(self.u64()),
        }
    }
    fn uuid(&mut self) -> Uuid {
        Uuid::from_bytes(self.array())
    }
    fn index(&mut self, len: usize) -> usize {
        if len == 0 {
            0
        } else {
            usize::from(self.u8()) % len
        }
    }
    /// Raw bytes from the input, as text.
    fn raw(&mut self) -> String {
        let n = match self.u8() {
            255 => usize::from(u16::from_le_bytes(self.array())),
            n => usize::from(n),
        };
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    /// Text of many shapes: raw bytes, a well-known word, a UUID in some format, a number, a
    /// long or deeply nested string.
    fn text(&mut self) -> String {
        match self.u8() % 12 {
            0..=3 => self.raw(),
            4 | 5 => WORDS[self.index(WORDS.len())].to_owned(),
            6 => {
                let u = self.uuid();
                match self.u8() % 6 {
                    0 => u.hyphenated().to_string(),
                    1 => u.simple().to_string(),
                    2 => u.braced().to_string(),
                    3 => u.urn().to_string(),
                    4 => format!("  {}\t", u.hyphenated().to_string().to_uppercase()),
                    _ => format!("{}\0", u.hyphenated()),
                }
            }
            7 => match self.u8() % 4 {
                0 => self.i64().to_string(),
                1 => self.f64().to_string(),
                2 => format!(" {} ", self.u64()),
                _ => format!("{:e}", self.f64()),
            },
            8 => {
                let c = char::from_u32(u32::from_le_bytes(self.array())).unwrap_or('\0');
                let n = usize::from(u16::from_le_bytes(self.array()) % 3000);
                std::iter::repeat_n(c, n).collect()
            }
            9 => {
                let n = usize::from(u16::from_le_bytes(self.array()) % 1500);
                let (open, close) = if self.bool() { ("[", "]") } else { ("{\"k\":", "}") };
                let mut s = open.repeat(n);
                s.push_str(if self.bool() { "\"\\u0000\"" } else { "1" });
                s.push_str(&close.repeat(n));
                s
            }
            // JSON text, nested at most once: each nesting escapes the text again, and an
            // unbounded chain of them grows exponentially.
            10 if self.1 == 0 => {
                self.1 += 1;
                let v = self.json(2);
                self.1 -= 1;
                serde_json::to_string(&v).unwrap_or_default()
            }
            _ => format!("{}{}", WORDS[self.index(WORDS.len())], self.raw()),
        }
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.u8() % 4 == 0 { None } else { Some(f(self)) }
    }
    fn opt_text(&mut self) -> Option<String> {
        self.opt(Self::text)
    }
    /// A JSON value built from the input (depth bounded so the harness itself can drop it).
    fn json(&mut self, depth: u32) -> Value {
        match self.u8() % 9 {
            0 => Value::Null,
            1 => Value::Bool(self.bool()),
            2 => Value::from(self.i64()),
            3 => serde_json::Number::from_f64(self.f64()).map_or(Value::Null, Value::Number),
            4 | 5 => Value::String(self.text()),
            6 if depth > 0 => {
                let n = usize::from(self.u8() % 5);
                Value::Array((0..n).map(|_| self.json(depth - 1)).collect())
            }
            7 if depth > 0 => {
                let n = usize::from(self.u8() % 5);
                Value::Object((0..n).map(|_| (self.text(), self.json(depth - 1))).collect())
            }
            8 => {
                // Deep nesting, built without recursion.
                let n = usize::from(u16::from_le_bytes(self.array()) % 2000);
                let mut v = Value::String(self.text());
                for i in 0..n {
                    v = if i % 2 == 0 {
                        Value::Array(vec![v])
                    } else {
                        Value::Object([("k\0".to_owned(), v)].into_iter().collect())
                    };
                }
                v
            }
            _ => serde_json::from_str(&self.raw()).unwrap_or(Value::Null),
        }
    }
    fn decimal(&mut self) -> Decimal {
        match self.u8() % 4 {
            0 => [Decimal::MAX, Decimal::MIN, Decimal::ZERO, Decimal::new(1, 6), Decimal::new(1, 7)]
                [usize::from(self.u8() % 5)],
            1 => Decimal::try_from(self.f64()).unwrap_or_default(),
            _ => {
                let (m, scale) = (self.i64(), u32::from(self.u8() % 32));
                Decimal::try_from_i128_with_scale(i128::from(m), scale).unwrap_or_default()
            }
        }
    }
}

/// A `Debug` value that uses `tracing` while the layer formats it: the layer formats values
/// before taking any lock, so this must neither deadlock nor panic. It emits only events that
/// make no record of their own (attached warnings, errors), so the counts stay exact.
struct Reentrant(String, u8);

impl fmt::Debug for Reentrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ctx = TraceContext::current();
        match self.1 % 3 {
            0 => tracing::warn!(nested = self.0.as_str(), "from inside Debug"),
            1 => tracing::error!(error = self.0.as_str(), "error.type" = "reentrant"),
            _ => {}
        }
        write!(f, "{:?} (context: {})", self.0, ctx.is_some())
    }
}

#[derive(Debug)]
struct FuzzError(String);

impl fmt::Display for FuzzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FuzzError {}

/// A span the program holds.
struct Open {
    span: Span,
    /// Which trace (tree of spans) it belongs to, in the program's numbering.
    tree: usize,
    root: bool,
}

/// The spans the layer knows, each declaring many fields as `Empty`. At most 32 fields fit on
/// one callsite, so the well-known names are spread over three callsites. `$($parent)*` is
/// either `parent: id,` or nothing (the contextual parent).
macro_rules! llm_span {
    ($($parent:tt)*) => {
        tracing::info_span!($($parent)* "llm_call",
            span_type = Empty, "gen_ai.operation.name" = Empty,
            "openinference.span.kind" = Empty, operation_type = Empty, model = Empty,
            "gen_ai.request.model" = Empty, "llm.model_name" = Empty,
            "gen_ai.response.model" = Empty, prompt_tokens = Empty,
            "gen_ai.usage.input_tokens" = Empty, "llm.token_count.prompt" = Empty,
            input_tokens = Empty, completion_tokens = Empty,
            "gen_ai.usage.output_tokens" = Empty, "llm.token_count.completion" = Empty,
            output_tokens = Empty, cost_usd = Empty, "llm.cost.total" = Empty,
            "gen_ai.usage.cost" = Empty, cost = Empty, temperature = Empty,
            "gen_ai.request.temperature" = Empty, session_id = Empty,
            "gen_ai.conversation.id" = Empty, "session.id" = Empty, user_id = Empty,
            "user.id" = Empty, "enduser.id" = Empty, kb_id = Empty,
            "gen_ai.data_source.id" = Empty, "we\"ird.na me ü" = Empty, metadata = Empty,
        )
    };
}

macro_rules! rag_span {
    ($($parent:tt)*) => {
        tracing::debug_span!($($parent)* "rag step",
            embedding_model = Empty, "embedding.model_name" = Empty, vector_count = Empty,
            vector_dimensions = Empty, "gen_ai.embeddings.dimension.count" = Empty,
            query_text = Empty, "gen_ai.retrieval.query.text" = Empty,
            "retrieval.query" = Empty, result_count = Empty,
            "retrieval.documents.count" = Empty, top_score = Empty, file_type = Empty,
            file_size_bytes = Empty, page_count = Empty, chunk_count = Empty,
            chunk_strategy = Empty, vectors_upserted = Empty, collection_name = Empty,
            input_preview = Empty, "input.value" = Empty, output_preview = Empty,
            "output.value" = Empty, error = Empty, exception = Empty, error_type = Empty,
            "error.type" = Empty, "exception.type" = Empty, error_message = Empty,
            "error.message" = Empty, "exception.message" = Empty, events = Empty,
            span_type = Empty,
        )
    };
}

macro_rules! event_fields_span {
    ($($parent:tt)*) => {
        tracing::error_span!($($parent)* "nul\0 span \"ü\"",
            message = Empty, role = Empty, "gen_ai.message.role" = Empty, content = Empty,
            "gen_ai.message.content" = Empty, turn_number = Empty, sources = Empty,
            citations = Empty, response_time_ms = Empty, document_id = Empty,
            event_type = Empty, status = Empty, duration_ms = Empty, extracted_pages = Empty,
            extracted_chars = Empty, tables_found = Empty, images_found = Empty,
            chunks_created = Empty, avg_chunk_size = Empty, vectors_generated = Empty,
            retryable = Empty, retry_count = Empty, user_id = Empty, kb_id = Empty,
            session_id = Empty, model = Empty, prompt_tokens = Empty, cost_usd = Empty,
            "we\"ird.na me ü" = Empty, metadata = Empty, events = Empty,
            events_dropped = Empty,
        )
    };
}

/// Values given when the span is created (so they take the `on_new_span` path).
struct Initial {
    s: [Option<String>; 7],
    i: Option<i64>,
    u: Option<u64>,
    f: [Option<f64>; 2],
    b: Option<bool>,
}

impl Initial {
    fn read(inp: &mut Input<'_>) -> Self {
        Initial {
            s: std::array::from_fn(|_| inp.opt_text()),
            i: inp.opt(Input::i64),
            u: inp.opt(Input::u64),
            f: [inp.opt(Input::f64), inp.opt(Input::f64)],
            b: inp.opt(Input::bool),
        }
    }
}

macro_rules! request_span {
    ($v:expr, $($parent:tt)*) => {{
        let v: &Initial = $v;
        tracing::info_span!($($parent)* "request",
            operation_type = v.s[0].as_deref(), session_id = v.s[1].as_deref(),
            user_id = v.s[2].as_deref(), kb_id = v.s[3].as_deref(), model = v.s[4].as_deref(),
            span_type = v.s[5].as_deref(), "llm.cost.total" = v.s[6].as_deref(),
            prompt_tokens = v.i, completion_tokens = v.u, cost_usd = v.f[0],
            temperature = v.f[1], "we\"ird.na me ü" = v.b, metadata = Empty, error = Empty,
            "error.type" = Empty, "error.message" = Empty, output_preview = Empty,
            "gen_ai.operation.name" = Empty, top_score = Empty, query_text = Empty,
            "gen_ai.conversation.id" = Empty, "user.id" = Empty, "gen_ai.data_source.id" = Empty,
        )
    }};
}

/// Creates a span of an input-chosen kind, with an explicit parent (or none) or, when
/// `contextual`, the current span as its parent.
fn new_span(inp: &mut Input<'_>, parent: Option<Id>, contextual: bool) -> Span {
    let kind = inp.u8() % 4;
    let initial = (kind == 3).then(|| Initial::read(inp));
    match (kind, contextual) {
        (0, false) => llm_span!(parent: parent,),
        (1, false) => rag_span!(parent: parent,),
        (2, false) => event_fields_span!(parent: parent,),
        (_, false) => request_span!(initial.as_ref().unwrap(), parent: parent,),
        (0, true) => llm_span!(),
        (1, true) => rag_span!(),
        (2, true) => event_fields_span!(),
        (_, true) => request_span!(initial.as_ref().unwrap(),),
    }
}

/// `Span::record` of an input-chosen value of an input-chosen type.
fn record(span: &Span, field: &str, inp: &mut Input<'_>) {
    match inp.u8() % 14 {
        0 | 1 => {
            let s = inp.text();
            span.record(field, s.as_str());
        }
        2 => {
            span.record(field, inp.i64());
        }
        3 => {
            span.record(field, inp.u64());
        }
        4 | 5 => {
            span.record(field, inp.f64());
        }
        6 => {
            span.record(field, inp.bool());
        }
        7 => {
            span.record(field, debug(inp.text()));
        }
        8 => {
            span.record(field, display(inp.text()));
        }
        9 => {
            span.record(field, inp.i128());
        }
        10 => {
            span.record(field, inp.u128());
        }
        11 => {
            let e = FuzzError(inp.text());
            span.record(field, &e as &(dyn std::error::Error + 'static));
        }
        12 => {
            span.record(field, debug(Reentrant(inp.text(), inp.u8())));
        }
        _ => {
            // Records nothing: the value stays unset.
            let v: Option<i64> = None;
            span.record(field, v);
        }
    }
}

/// An explicit parent for an event or span: one of the open spans, or none.
fn pick(inp: &mut Input<'_>, open: &[Open]) -> Option<usize> {
    let b = inp.u8();
    (b % 4 != 0 && !open.is_empty()).then(|| usize::from(b / 4) % open.len())
}

/// A chat event from one of three callsites. Always exactly one record (queued, dropped or
/// rejected for want of ids).
fn chat_event(inp: &mut Input<'_>, parent: Option<Id>) {
    match inp.u8() % 3 {
        0 => {
            let t: [Option<String>; 8] = std::array::from_fn(|_| inp.opt_text());
            let (turn, prompt, completion, time) = (
                inp.opt(Input::i64),
                inp.opt(Input::i64),
                inp.opt(Input::u64),
                inp.opt(Input::f64),
            );
            let msg = inp.text();
            tracing::info!(parent: parent, role = t[0].as_deref(), content = t[1].as_deref(),
                sources = t[2].as_deref(), citations = t[3].as_deref(), turn_number = turn,
                session_id = t[4].as_deref(), user_id = t[5].as_deref(),
                kb_id = t[6].as_deref(), prompt_tokens = prompt, completion_tokens = completion,
                response_time_ms = time, "we\"ird.na me ü" = t[7].as_deref(), "{}", msg);
        }
        1 => {
            let t: [String; 2] = std::array::from_fn(|_| inp.text());
            let o: [Option<String>; 5] = std::array::from_fn(|_| inp.opt_text());
            let (turn, sources, citations) =
                (inp.opt(Input::f64), inp.opt(Input::i64), inp.opt(Input::bool));
            // A string-literal field name cannot come first in tracing's event macros.
            tracing::warn!(parent: parent, turn_number = turn,
                "gen_ai.message.role" = debug(&t[0]), "gen_ai.message.content" = display(&t[1]),
                sources = sources, citations = citations,
                "gen_ai.conversation.id" = o[0].as_deref(), "user.id" = o[1].as_deref(),
                "gen_ai.data_source.id" = o[2].as_deref(), response_time_ms = o[3].as_deref(),
                error = o[4].as_deref());
        }
        _ => {
            let (role, content, turn) =
                (inp.opt(Input::u64), inp.opt(Input::i64), inp.opt_text());
            let o: [Option<String>; 4] = std::array::from_fn(|_| inp.opt_text());
            tracing::error!(parent: parent, role = role, content = content,
                turn_number = turn.as_deref(), "enduser.id" = o[0].as_deref(),
                "session.id" = o[1].as_deref(), kb_id = o[2].as_deref(),
                events = o[3].as_deref());
        }
    }
}

/// A document event from one of two callsites. Always exactly one record.
fn document_event(inp: &mut Input<'_>, parent: Option<Id>) {
    if inp.bool() {
        let t: [Option<String>; 10] = std::array::from_fn(|_| inp.opt_text());
        let f = [inp.opt(Input::f64), inp.opt(Input::f64)];
        let i: [Option<i64>; 6] = std::array::from_fn(|_| inp.opt(Input::i64));
        let u = [inp.opt(Input::u64), inp.opt(Input::u64)];
        let retryable = inp.opt(Input::bool);
        let msg = inp.text();
        tracing::info!(parent: parent, document_id = t[0].as_deref(),
            event_type = t[1].as_deref(), status = t[2].as_deref(), duration_ms = f[0],
            extracted_pages = i[0], extracted_chars = i[1], tables_found = u[0],
            images_found = i[2], chunks_created = i[3], avg_chunk_size = f[1],
            vectors_generated = i[4], embedding_model = t[3].as_deref(),
            model = t[4].as_deref(), vectors_upserted = u[1],
            collection_name = t[5].as_deref(), error_type = t[6].as_deref(),
            error_message = t[7].as_deref(), error = t[8].as_deref(), retryable = retryable,
            retry_count = i[5], kb_id = t[9].as_deref(), "{}", msg);
    } else {
        let t: [String; 2] = std::array::from_fn(|_| inp.text());
        let o: [Option<String>; 4] = std::array::from_fn(|_| inp.opt_text());
        let (status, retry) = (inp.opt(Input::i64), inp.opt(Input::f64));
        tracing::error!(parent: parent, document_id = display(&t[0]),
            event_type = debug(&t[1]), status = status, duration_ms = o[0].as_deref(),
            retryable = o[1].as_deref(), retry_count = retry,
            extracted_pages = o[2].as_deref(), message = o[3].as_deref());
    }
}

/// Error events (they mark the span, no record of their own).
fn error_event(inp: &mut Input<'_>, parent: Option<Id>) {
    match inp.u8() % 3 {
        0 => {
            let msg = inp.text();
            tracing::error!(parent: parent, "{}", msg);
        }
        1 => {
            let t: [Option<String>; 3] = std::array::from_fn(|_| inp.opt_text());
            tracing::info!(parent: parent, error = t[0].as_deref(),
                "error.type" = t[1].as_deref(), "error.message" = t[2].as_deref());
        }
        _ => {
            let (e, ty, m) = (inp.opt(Input::i64), inp.opt(Input::bool), inp.opt(Input::f64));
            let t = inp.opt_text();
            tracing::debug!(parent: parent, exception = e, "exception.type" = ty,
                "exception.message" = m, error_type = t.as_deref());
        }
    }
}

/// Events attached to the span's metadata (WARN), or left out (INFO, TRACE); repeated to go
/// past `max_events_per_span`.
fn attached_events(inp: &mut Input<'_>, parent: Option<Id>) {
    let n = 1 + usize::from(inp.u8() % 24);
    for _ in 0..n {
        match inp.u8() % 4 {
            0 | 1 => {
                let t: [Option<String>; 4] = std::array::from_fn(|_| inp.opt_text());
                let (i, u) = (inp.opt(Input::i64), inp.opt(Input::u64));
                let msg = inp.text();
                tracing::warn!(parent: parent.clone(), k = t[0].as_deref(),
                    "we\"ird.na me ü" = i, metadata = t[1].as_deref(), events = t[2].as_deref(),
                    events_dropped = u, model = t[3].as_deref(), "{}", msg);
            }
            2 => {
                let msg = inp.text();
                tracing::info!(parent: parent.clone(), prompt_tokens = 5, "{}", msg);
            }
            _ => {
                let v = inp.f64();
                tracing::trace!(parent: parent.clone(), value = v);
            }
        }
    }
}

/// A context with ids taken from the input (for explicit calls outside instrumented code).
fn fresh_context(inp: &mut Input<'_>) -> TraceContext {
    let mut ctx = TraceContext::new();
    if inp.bool() {
        ctx = ctx.with_user(inp.uuid());
    }
    if inp.bool() {
        ctx = ctx.with_session(inp.text());
    }
    if inp.bool() {
        ctx = ctx.with_kb(inp.uuid());
    }
    if inp.u8() % 4 == 0 {
        ctx = ctx.child(SpanId(inp.uuid()));
    }
    ctx
}

fn outcome(inp: &mut Input<'_>) -> Outcome {
    Outcome {
        status: [Status::Success, Status::Error, Status::InProgress][inp.index(3)].clone(),
        error_type: inp.opt_text(),
        error_message: inp.opt_text(),
    }
}

/// One explicit provider call on `ctx`. Each makes exactly one record (queued, dropped or
/// rejected); returns how many.
fn provider_call(
    layer: &PostgresLayer,
    ctx: &TraceContext,
    inp: &mut Input<'_>,
    started: &mut Vec<(TraceContext, SpanId)>,
    contexts: &mut Vec<TraceContext>,
) -> u64 {
    match inp.u8() % 7 {
        0 | 1 => {
            let call = LlmCall {
                name: inp.opt_text(),
                metrics: LlmMetrics {
                    model: inp.opt_text(),
                    prompt_tokens: inp.opt(Input::i64),
                    completion_tokens: inp.opt(Input::i64),
                    cost_usd: inp.opt(Input::decimal),
                    temperature: inp.opt(Input::f64),
                },
                latency_ms: inp.opt(Input::f64),
                input_preview: inp.opt_text(),
                output_preview: inp.opt_text(),
                outcome: outcome(inp),
                metadata: inp.opt(|i| i.json(3)),
            };
            let id = layer.log_llm_call(ctx, call);
            if inp.bool() {
                contexts.push(ctx.child(id));
            }
        }
        2 => {
            let mut ctx = ctx.clone();
            if inp.bool() {
                ctx = ctx.with_user(inp.uuid()).with_kb(inp.uuid()).with_session(inp.text());
            }
            let role = match inp.u8() % 5 {
                0 => ChatRole::User,
                1 => ChatRole::Assistant,
                2 => ChatRole::System,
                3 => ChatRole::Tool,
                _ => ChatRole::parse(&inp.text()).unwrap_or(ChatRole::User),
            };
            let mut m = ChatMessage::new(role, inp.text());
            m.turn_number = inp.opt(Input::i32);
            m.prompt_tokens = inp.opt(Input::i64);
            m.completion_tokens = inp.opt(Input::i64);
            m.response_time_ms = inp.opt(Input::f64);
            for _ in 0..inp.u8() % 4 {
                m.sources.push(Source {
                    doc_id: inp.opt(Input::uuid),
                    doc_name: inp.opt_text(),
                    chunk_id: inp.opt_text(),
                    score: inp.opt(Input::f64),
                    excerpt: inp.opt_text(),
                });
            }
            for _ in 0..inp.u8() % 4 {
                m.citations.push(Citation {
                    marker: inp.text(),
                    doc_id: inp.opt(Input::uuid),
                    page: inp.opt(Input::i32),
                    section: inp.opt_text(),
                });
            }
            layer.log_chat_message(&ctx, m);
        }
        3 => {
            let event_type = DocumentEventType::parse(&inp.text()).unwrap_or(DocumentEventType::Upload);
            let status = [
                DocumentEventStatus::Started,
                DocumentEventStatus::Completed,
                DocumentEventStatus::Failed,
                DocumentEventStatus::Skipped,
            ][inp.index(4)]
            .clone();
            let mut e = DocumentEvent::new(inp.uuid(), event_type, status);
            e.duration_ms = inp.opt(Input::f64);
            e.error_type = inp.opt_text();
            e.error_message = inp.opt_text();
            e.retryable = inp.opt(Input::bool);
            e.retry_count = inp.opt(Input::i32);
            e.metadata = inp.opt(|i| i.json(3));
            e.metrics = match inp.u8() % 5 {
                0 => DocumentMetrics::None,
                1 => DocumentMetrics::Parse(DocumentParseMetrics {
                    extracted_pages: inp.opt(Input::i32),
                    extracted_chars: inp.opt(Input::i64),
                    tables_found: inp.opt(Input::i32),
                    images_found: inp.opt(Input::i32),
                }),
                2 => DocumentMetrics::Chunk(DocumentChunkMetrics {
                    chunks_created: inp.opt(Input::i32),
                    avg_chunk_size: inp.opt(Input::i32),
                }),
                3 => DocumentMetrics::Embed(DocumentEmbedMetrics {
                    vectors_generated: inp.opt(Input::i64),
                    embedding_model: inp.opt_text(),
                }),
                _ => DocumentMetrics::Index(IndexMetrics {
                    vectors_upserted: inp.opt(Input::i64),
                    collection_name: inp.opt_text(),
                }),
            };
            layer.log_document_event(ctx, e);
        }
        4 => {
            let span_type = SpanType::parse(&inp.text()).unwrap_or(SpanType::Internal);
            let name = inp.text();
            let metadata = inp.opt(|i| i.json(3));
            let id = layer.start_span(ctx, &name, span_type, metadata);
            started.push((ctx.clone(), id));
        }
        5 => {
            let i = inp.index(started.len() + 1);
            let (ctx, id) = match started.get(i) {
                Some(s) => s.clone(),
                None => (ctx.clone(), SpanId(inp.uuid())),
            };
            let end = SpanEnd {
                outcome: outcome(inp),
                duration_ms: inp.opt(Input::f64),
                metrics: match inp.u8() % 3 {
                    0 => SpanMetrics::None,
                    1 => SpanMetrics::Llm(LlmMetrics {
                        model: inp.opt_text(),
                        prompt_tokens: inp.opt(Input::i64),
                        completion_tokens: inp.opt(Input::i64),
                        cost_usd: inp.opt(Input::decimal),
                        temperature: inp.opt(Input::f64),
                    }),
                    _ => SpanMetrics::Retrieval(tracing_postgres::RetrievalMetrics {
                        query_text: inp.opt_text(),
                        result_count: inp.opt(Input::i32),
                        top_score: inp.opt(Input::f64),
                    }),
                },
                input_preview: inp.opt_text(),
                output_preview: inp.opt_text(),
                metadata: inp.opt(|i| i.json(3)),
            };
            layer.end_span(&ctx, id, end);
        }
        _ => {
            // A trace bracketed explicitly: a start and an end, each one record (refused
            // inside instrumented code, or when repeated).
            let op = OperationType::parse(&inp.text()).unwrap_or(OperationType::Chat);
            let name = inp.text();
            let metadata = inp.opt(|i| i.json(3));
            layer.start_trace(ctx, &name, op, metadata);
            let totals = TraceTotals {
                prompt_tokens: inp.opt(Input::i64),
                completion_tokens: inp.opt(Input::i64),
                total_cost_usd: inp.opt(Input::decimal),
            };
            let o = outcome(inp);
            layer.end_trace(ctx, o, totals);
            return 2;
        }
    }
    1
}

/// Records accounted for so far: each record the program makes ends in exactly one of these.
fn accounted(s: &Stats) -> u64 {
    s.enqueued + s.dropped_full + s.dropped_closed + s.rejected
}

fn run(data: &[u8], layer: &PostgresLayer) {
    let before = layer.stats();
    let mut expected: u64 = 0;
    let mut inp = Input(data, 0);
    let mut open: Vec<Open> = Vec::new();
    let mut trees: Vec<Option<Uuid>> = Vec::new();
    let mut started: Vec<(TraceContext, SpanId)> = Vec::new();
    let mut contexts: Vec<TraceContext> = Vec::new();

    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 16 {
            // A span with an explicit parent (or a new root).
            0 | 1 if open.len() < MAX_OPEN_SPANS => {
                let parent = pick(&mut inp, &open);
                let parent_id = parent.and_then(|i| open[i].span.id());
                let span = new_span(&mut inp, parent_id, false);
                let (tree, root) = match parent {
                    Some(i) => (open[i].tree, false),
                    None => {
                        trees.push(None);
                        (trees.len() - 1, true)
                    }
                };
                // A root makes a start and an end record, any other span an end record.
                expected += if root { 2 } else { 1 };
                open.push(Open { span, tree, root });
            }
            // A span whose parent is the current span (none: a new root).
            2 if open.len() < MAX_OPEN_SPANS => {
                let parent = pick(&mut inp, &open);
                let (span, tree, root) = match parent {
                    Some(i) => {
                        let span = open[i].span.in_scope(|| new_span(&mut inp, None, true));
                        (span, open[i].tree, false)
                    }
                    None => {
                        trees.push(None);
                        (new_span(&mut inp, None, true), trees.len() - 1, true)
                    }
                };
                expected += if root { 2 } else { 1 };
                open.push(Open { span, tree, root });
            }
            // Span::record on a field the span declares (or, sometimes, on any name).
            3..=5 if !open.is_empty() => {
                let i = inp.index(open.len());
                let span = open[i].span.clone();
                let b = inp.u8();
                let declared: Vec<&'static str> = span
                    .metadata()
                    .map(|m| m.fields().iter().map(|f| f.name()).collect())
                    .unwrap_or_default();
                let name = if b % 8 == 0 || declared.is_empty() {
                    ALL_NAMES[usize::from(b / 8) % ALL_NAMES.len()]
                } else {
                    declared[usize::from(b / 8) % declared.len()]
                };
                record(&span, name, &mut inp);
            }
            // Close a span (drop the handle); it closes once its children are closed too.
            6 if !open.is_empty() => {
                let i = inp.index(open.len());
                drop(open.remove(i));
            }
            7 => {
                let p = pick(&mut inp, &open).and_then(|i| open[i].span.id());
                chat_event(&mut inp, p);
                expected += 1;
            }
            8 => {
                let p = pick(&mut inp, &open).and_then(|i| open[i].span.id());
                document_event(&mut inp, p);
                expected += 1;
            }
            9 => {
                let p = pick(&mut inp, &open).and_then(|i| open[i].span.id());
                error_event(&mut inp, p);
            }
            10 => {
                let p = pick(&mut inp, &open).and_then(|i| open[i].span.id());
                attached_events(&mut inp, p);
            }
            // Inside a span: its context, contextual events and explicit calls.
            11 | 12 if !open.is_empty() => {
                let i = inp.index(open.len());
                let (tree, root) = (open[i].tree, open[i].root);
                let span = open[i].span.clone();
                span.in_scope(|| {
                    let ctx = TraceContext::current()
                        .expect("TraceContext::current() inside a live span the layer records");
                    assert_eq!(
                        ctx.span_id.is_none(),
                        root,
                        "a root span's context has no span id, any other span's has one"
                    );
                    let trace = ctx.trace_id.as_uuid();
                    match trees[tree] {
                        Some(t) => assert_eq!(t, trace, "spans of one tree share one trace id"),
                        None => trees[tree] = Some(trace),
                    }
                    match inp.u8() % 4 {
                        0 => {
                            // Outside any span (explicit `parent: None`), then in context.
                            chat_event(&mut inp, None);
                            expected += 1;
                            let t = inp.text();
                            tracing::info!(role = "assistant", content = t.as_str());
                            expected += 1;
                        }
                        1 => {
                            let t = inp.text();
                            tracing::error!(error = t.as_str());
                        }
                        _ => {}
                    }
                    for _ in 0..1 + inp.u8() % 3 {
                        expected +=
                            provider_call(layer, &ctx, &mut inp, &mut started, &mut contexts);
                    }
                    contexts.push(ctx);
                });
            }
            // Explicit calls outside instrumented code, or with a context kept from earlier
            // (its span possibly closed by now).
            13 | 14 => {
                let i = inp.index(contexts.len() + 1);
                let ctx = match contexts.get(i) {
                    Some(c) => c.clone(),
                    None => fresh_context(&mut inp),
                };
                expected += provider_call(layer, &ctx, &mut inp, &mut started, &mut contexts);
                if contexts.len() < 64 {
                    contexts.push(ctx);
                }
            }
            // The same slot recorded several times under different names, in input order.
            15 if !open.is_empty() => {
                let i = inp.index(open.len());
                let span = open[i].span.clone();
                for _ in 0..1 + inp.u8() % 6 {
                    let name = ALL_NAMES[inp.index(ALL_NAMES.len())];
                    record(&span, name, &mut inp);
                }
            }
            _ => {}
        }
    }

    // Close the rest in an input-chosen order.
    while !open.is_empty() {
        let i = inp.index(open.len());
        drop(open.remove(i));
    }
    drop(contexts);
    drop(started);

    let after = layer.stats();
    assert_eq!(
        i128::from(accounted(&after)) - i128::from(accounted(&before)),
        i128::from(expected),
        "every record ends in exactly one counter: before {before:?}, after {after:?}"
    );
    assert!(
        after.queued_bytes <= MAX_QUEUE_BYTES,
        "the queue holds at most max_queue_bytes: {after:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    tracing_postgres::fuzzing::sanitize(data);
    tracing_postgres::fuzzing::encode(data);

    let h = &*HARNESS;
    tracing::dispatcher::with_default(&h.dispatch, || run(data, &h.layer));

    let stats = h.layer.stats();
    let total = stats.enqueued + stats.dropped_full + stats.rejected;
    let mut last = LAST_TOTAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        total >= *last,
        "enqueued + dropped_full + rejected decreased: {} -> {total} ({stats:?})",
        *last
    );
    *last = total;
});
