//! The queue's item: what the application's threads hand to the writer.

use std::time::SystemTime;

use serde_json::Value;
use uuid::Uuid;

use super::fields::Fields;
use super::inputs::LlmCall;
use super::rows::{ChatMessageRow, DocumentEventRow, PartRow, ScoreRow, SpanRow, TraceRow};

/// A record in the queue with its bytes as counted against the byte budget, counted once when
/// it is queued so the writer releases exactly that much.
pub(crate) type Queued = (Record, usize);

/// One item of the queue between the application's threads and the writer.
///
/// Rows are boxed so the queue's slots stay small: a full queue of small slots costs little
/// memory, and the heap behind a slot exists only while a record is queued.
#[derive(Debug)]
pub(crate) enum Record {
    Trace(Box<TraceRow>),
    Span(Box<SpanRow>),
    Chat(Box<ChatMessageRow>),
    Document(Box<DocumentEventRow>),
    /// A closed span of the layer, not yet mapped to its row: the writer maps it, so the
    /// caller's thread does not.
    Closed(Box<CapturedSpan>),
    /// A `log_llm_call` not yet mapped to its row: the writer maps it.
    Llm(Box<CapturedLlmCall>),
    /// One process's share of a distributed trace's usage.
    Part(Box<PartRow>),
    /// A score of a trace, span or message.
    Score(Box<ScoreRow>),
}

impl Record {
    /// Approximate heap bytes this record holds, for the queue's byte budget.
    pub fn approx_bytes(&self) -> usize {
        fn s(x: &Option<String>) -> usize {
            x.as_ref().map_or(0, String::len)
        }
        let j = json_bytes;
        match self {
            Record::Trace(r) => {
                std::mem::size_of::<TraceRow>()
                    + r.name.len()
                    + r.operation_type.len()
                    + s(&r.session_id)
                    + s(&r.error_type)
                    + s(&r.error_message)
                    + j(&r.metadata)
            }
            Record::Span(r) => {
                std::mem::size_of::<SpanRow>()
                    + r.name.len()
                    + r.span_type.len()
                    + s(&r.error_type)
                    + s(&r.error_message)
                    + s(&r.model)
                    + s(&r.embedding_model)
                    + s(&r.query_text)
                    + s(&r.file_type)
                    + s(&r.chunk_strategy)
                    + s(&r.collection_name)
                    + s(&r.input_preview)
                    + s(&r.output_preview)
                    + j(&r.metadata)
            }
            Record::Chat(r) => {
                std::mem::size_of::<ChatMessageRow>()
                    + r.session_id.len()
                    + r.role.len()
                    + r.content.len()
                    + j(&r.sources)
                    + j(&r.citations)
            }
            Record::Closed(r) => r.approx_bytes(),
            Record::Llm(r) => r.approx_bytes(),
            Record::Part(_) => std::mem::size_of::<PartRow>(),
            Record::Score(r) => {
                std::mem::size_of::<ScoreRow>()
                    + r.name.len()
                    + s(&r.value_text)
                    + s(&r.comment)
                    + s(&r.author)
            }
            Record::Document(r) => {
                std::mem::size_of::<DocumentEventRow>()
                    + r.event_type.len()
                    + r.status.len()
                    + s(&r.embedding_model)
                    + s(&r.collection_name)
                    + s(&r.error_type)
                    + s(&r.error_message)
                    + j(&r.metadata)
            }
        }
    }
}

/// Approximate heap bytes of a JSON value: its strings and keys, and a node's overhead for
/// every value (depth is bounded by the sanitiser, so the walk is short for the JSON records
/// carry).
pub(crate) fn json_bytes(v: &Value) -> usize {
    // A value's own bytes; containers go on the stack. Most records carry a flat object or
    // nothing, so the stack rarely allocates.
    fn one<'a>(v: &'a Value, stack: &mut Vec<&'a Value>) -> usize {
        match v {
            Value::Array(_) | Value::Object(_) => {
                stack.push(v);
                32
            }
            Value::String(s) => 32 + s.len(),
            _ => 32,
        }
    }
    let mut stack = Vec::new();
    let mut bytes = one(v, &mut stack);
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => a.iter().for_each(|v| bytes += one(v, &mut stack)),
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| bytes += k.len() + one(v, &mut stack)),
            _ => {}
        }
    }
    bytes
}

/// A span inside a trace as it is queued at its close: one allocation holding its fields
/// (inline, see [`Fields`] for why), what few spans have (an error, attached events) boxed
/// apart. Made at the span's start and filled while it is open (see [`SpanData`]).
/// [`into_raw`](Self::into_raw) makes the [`RawSpan`] the writer maps to a row.
#[derive(Debug)]
pub(crate) struct CapturedSpan {
    pub(crate) head: SpanHead,
    /// The fields as captured on the span's thread.
    pub(crate) fields: Fields,
    /// An error or attached events; `None` for most spans.
    pub(crate) rare: Option<Box<Rare>>,
}

/// What a closed span is besides its fields: ids, name, clock readings.
#[derive(Debug)]
pub(crate) struct SpanHead {
    /// The span's name, from its callsite.
    pub(crate) name: &'static str,
    /// The span's row id.
    pub(crate) id: Uuid,
    /// The trace (root span) it belongs to.
    pub(crate) trace_id: Uuid,
    /// The parent span's row id; `None` directly under the root.
    pub(crate) parent: Option<Uuid>,
    /// The clock at the span's start, as read (converted to a date by the writer).
    pub(crate) started_at: SystemTime,
    /// The clock at its close, as read.
    pub(crate) ended_at: SystemTime,
    /// Whether the span closed while its thread panicked (known only on that thread).
    pub(crate) panicking: bool,
}

/// An error reported in a span: its type, and its message if any.
pub(crate) type SpanError = (String, Option<String>);

/// What only some spans carry, kept out of [`SpanData`] and [`CapturedSpan`] to keep them small.
#[derive(Debug, Default)]
pub(crate) struct Rare {
    /// The error type and message of an error event.
    pub(crate) error: Option<SpanError>,
    /// Events attached to the span, as JSON.
    pub(crate) events: Vec<Value>,
    /// Events past the per-span limit, counted only.
    pub(crate) events_dropped: u32,
}

impl CapturedSpan {
    /// Approximate heap bytes, for the queue's byte budget.
    pub(crate) fn approx_bytes(&self) -> usize {
        let rare = self.rare.as_ref().map_or(0, |r| {
            let error = r
                .error
                .as_ref()
                .map_or(0, |(t, m)| t.len() + m.as_ref().map_or(0, String::len));
            std::mem::size_of::<Rare>()
                + error
                + r.events.len() * 32
                + r.events.iter().map(json_bytes).sum::<usize>()
        });
        std::mem::size_of::<CapturedSpan>() + self.fields.approx_bytes() + rare
    }
}

/// A `log_llm_call` as queued: the call as given, mapped to its row by `map::llm_call` on the
/// writer's thread.
#[derive(Debug)]
pub(crate) struct CapturedLlmCall {
    pub(crate) id: Uuid,
    pub(crate) trace_id: Uuid,
    pub(crate) parent: Option<Uuid>,
    /// When the call was logged: the span's end.
    pub(crate) now: SystemTime,
    pub(crate) call: LlmCall,
}

impl CapturedLlmCall {
    /// Approximate heap bytes, for the queue's byte budget.
    pub(crate) fn approx_bytes(&self) -> usize {
        fn s(x: &Option<String>) -> usize {
            x.as_ref().map_or(0, String::len)
        }
        let c = &self.call;
        std::mem::size_of::<CapturedLlmCall>()
            + s(&c.name)
            + s(&c.metrics.model)
            + s(&c.input_preview)
            + s(&c.output_preview)
            + s(&c.outcome.error_type)
            + s(&c.outcome.error_message)
            + c.metadata.as_ref().map_or(0, json_bytes)
    }
}
